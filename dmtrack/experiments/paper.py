"""The paper profile: the paper's model sizes and recipe (dmtrack.config's defaults) on the real datasets."""


def get_config() -> dict:
    model = dict(train_precision="auto", log_every=50)  # bf16 on GPUs that have it (docs/training.md)
    chain = dict(
        synthetic=False,  # True: generate and use the synthetic stand-ins; False: the real datasets
        preset=None,  # synthetic preset (the experiment's "synthetic")
        seeds=3,  # training seeds per variant
        k_sweep=tuple(range(1, 11)),  # test-time samplings k for the accuracy / speed sweep (full variant, Table 2 benchmark)
        steps_sweep=(1, 2, 3, 5, 10),  # DDIM steps per chain at k = 1 for the same sweep
        readings=("final", "chain"),  # readings of "k samplings" Table 2 is evaluated under (final is primary)
        drift=False,  # run the language-drift sweep (synthetic suites only)
        drift_variants=("full", "no_language", "not_mask_driven"),
        drift_k=1,
        sweep_seeds=None,  # seeds evaluated in the k, drift and robustness sweeps beyond Tables 1 and 2 (None = all)
        # the language-robustness test (dmtrack.data.sentences): these variants at k = 1 on the same drift-free
        # videos under the true, a misleading and an uninformative sentence. The LaSOT stand-in has a twin in
        # every sequence (the misleading sentence describes it); real LaSOT gives another video's sentence of the class.
        robust_variants=("full", "not_mask_driven", "no_diffusion", "no_language"),
        robust_benchmark="lasot",
        robust_seeds=None,  # seeds of the robustness test (None = the sweep seeds; a verdict needs 2)
        max_frames=None,  # track only the first N frames of each sequence (smoke)
        train={},  # config overrides for every training run of the chain
        workers=1,  # tracking processes inside one evaluation
        # sequences tracked at once in one evaluation process (dmtrack.track.batched: one batched forward per
        # frame; the same boxes up to float rounding, 0.00018 px at most on trained demo models, though an
        # untrained model's chaotic tracks can drift apart); the fps in the results is then each sequence's
        # share of the batched step, so every evaluation of a chain uses the same
        track_batch=1,
        jobs=1,  # notebooks run at the same time (each gets cores // jobs torch threads)
        fig7_sequences=3,  # hard sequences shown in the Fig. 7 panels
        budget_minutes=None,  # the wall time the chain must fit in on its reference machine (None = none)
        require_weights=True,  # refuse to start without pretrained= and a BERT text_encoder= (preflight.py)
        gpus_per_train=1,  # processes (GPUs) per training: torchrun DDP when > 1
        # the base tracker: True trains one (ViT + CE + centre head, no language, no diffusion; config variant
        # "base") on the training sets before the variants, and fine-tunes every variant and seed from it
        # (pretrained=<its model.pth>); False: the variants start from `pretrained` as given (the paper: the
        # user's OSTrack file is the base). pretrained=none in `train` trains every variant from scratch instead.
        base_stage=False,
        # the arms: {arm: variants} also trained beside the chain's own trainings, with the arm's config overrides
        # (dmtrack.layout.ARMS), and evaluated at their Table 2 rows on its benchmark. "scratch": from random
        # initialisation (pretrained=none, the profile's scratch recipe), so the report measures the noise budget
        # of both protocols in one run (dmtrack.report.claims.noise_budget); "authors" / "authors-noscramble":
        # under reading=authors with / without its scrambling `.view`, fine-tuned from the same base tracker, also
        # under the authors' test-time averaging (maps), so the report measures the paper against the authors'
        # reading and the scramble's effect (dmtrack.report.paper_vs_authors)
        arms={},
        arm_seeds={},  # {arm: n}: an arm trains the first n seeds (an arm not named: every seed)
        # the test-time samplers (DDIM eta) the k and steps sweeps run under; the first is the config's
        # sampler_eta (the primary one, Table 2's), every other one gets its own results folders (EvalRun.eta)
        sweep_etas=(1.0, 0.0),
    )
    # reading=authors (dmtrack.config._READINGS): the authors' one runnable configuration, E:vitb_text_ep384.yaml
    # (docs/authors_code.md rows 1, 17, 18): 192/384 crops at search factor 5, CE at blocks 5, 8, 11 keeping 0.8 each
    # (training: the first ratio at every layer), 50 epochs on LaSOT alone, lr 1e-4 (backbone x 0.1) dropped at 45
    authors = dict(template_size=192, search_size=384, search_factor=5.0, ce_layers=(5, 8, 11), ce_keep_ratio=0.8,
                   ce_keep_ratios=(0.8, 0.8, 0.8), ce_start_epoch=30, ce_warm_epochs=40, epochs=50, lr_drop_frac=0.9,
                   batch_size=32, lr=1e-4, backbone_lr=1e-5, train_datasets={"lasot": 1.0},
                   search_center_jitter=4.5, search_scale_jitter=0.5)
    return dict(model=model, synthetic=None, scratch={}, base={}, readings={"authors": authors}, chain=chain)
