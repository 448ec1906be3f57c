"""The assembled DMTrack: every Table 2 variant, double sampling, GT-CE, k-sample batching, the paper size."""
import math

import pytest
import torch

from dmtrack import build_model, load_config
from dmtrack.config import VARIANTS
from dmtrack.model import DMTrack, box_mask, decode_boxes
from dmtrack.model.diffusion import logits_to_x0

torch.set_num_threads(1)  # shared CPU: with 2 threads tiny ops spin-wait on each other (up to 200x slower)
SENTENCES = ["a red car on the road", "a dog running on grass", "a red car on the road", "the man in black"]
# boxes that overlap but neither contain nor sit inside the untrained predictions, so the centre
# offsets get a gradient (a box fully inside another has an IoU/L1 independent of its centre)
GT = torch.tensor([[0.30, 0.35, 0.30, 0.40], [0.65, 0.60, 0.25, 0.20], [0.20, 0.75, 0.35, 0.30], [0.72, 0.28, 0.40, 0.45]])


def inputs(cfg, b):
    torch.manual_seed(0)
    return torch.randn(b, 3, cfg.template_size, cfg.template_size), torch.randn(b, 3, cfg.search_size, cfg.search_size)


@pytest.fixture(scope="module")
def demo_models():
    return {v: build_model(load_config("demo", v)) for v in VARIANTS}


def test_every_variant_trains_a_step_and_predicts_a_box_at_demo_size(demo_models):
    for variant, model in demo_models.items():
        cfg = model.cfg
        G, M = model.grid, 8 * cfg.mask_scale
        z, x = inputs(cfg, 2)
        text = model.encode_text(model.tokenize(SENTENCES[:2]))
        assert (text is None) == (variant == "no_language")
        model.train()
        opt = torch.optim.AdamW(model.param_groups())
        out = model(z, x, text, gt_boxes=GT[:2], epoch=cfg.gt_ce_start_epoch)
        losses = model.loss(out, GT[:2])
        assert all(torch.isfinite(v) for v in losses.values()), variant
        assert (losses["struct"].item() == 0) == (variant == "no_diffusion")
        before = model.head.score[0].weight.detach().clone()
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        assert not torch.equal(before, model.head.score[0].weight), variant

        model.eval()
        with torch.inference_mode():
            out = model(z, x, text, samples=2, return_chain=True)
        assert out.score_map.shape == (2, 1, G, G) and out.offset_map.shape == (2, 2, G, G)
        assert out.size_map.shape == (2, 2, G, G) and out.removed.shape == (2, G * G)
        box = out.pred_boxes
        assert box.shape == (2, 4) and torch.isfinite(box).all() and (box[:, 2:] > 0).all() and (box[:, 2:] < 1).all()
        assert torch.equal(box, decode_boxes(out.score_map, out.offset_map, out.size_map))
        if variant == "no_diffusion":
            assert out.mask is None and out.samples_masks is None
        else:
            assert out.mask.shape == (2, 1, M, M) and out.samples_masks.shape == (2, 2, 1, M, M)
            assert len(out.chain) == cfg.sampling_steps + 1 and out.chain[0].shape == (2, 2, 1, M, M)
            assert torch.allclose(out.mask, model.filter(out.samples_masks.mean(1)))
            assert out.mask.min() >= 0 and out.mask.max() <= 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_trainable_parameter(variant):
    over = dict(double_sample_mode="mean", head_channels=32)
    if variant == "full":
        over["text_finetune"] = True  # also check that a fine-tuned BERT gets gradients
    cfg = load_config("smoke", variant, **over)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    z, x = inputs(cfg, 4)
    text = model.encode_text(model.tokenize(SENTENCES))
    out = model(z, x, text, gt_boxes=GT, epoch=cfg.gt_ce_start_epoch + 5)
    assert out.removed.any()  # CE ran (keep rate < 1)
    if variant in ("full", "no_language", "not_mask_driven", "single_sample_train"):
        assert out.gt_ce
    model.loss(out, GT)["total"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{variant}: no gradient for {missing}"
    if variant == "full":
        assert any(n.startswith("text.bert.") for n, _ in trainable)


def _spy_denoiser(model):
    calls = []

    def hook(mod, args, output):
        calls.append({"x": args[0].detach().clone(), "t": args[1].clone(), "out": output.detach().clone()})

    return calls, model.denoiser.register_forward_hook(hook)


def test_double_sample_first_input_is_pure_noise_independent_of_gt():
    cfg = load_config("smoke", "full", double_sample_mode="first")
    model = build_model(cfg).train()
    z, x = inputs(cfg, 2)
    text = model.encode_text(model.tokenize(SENTENCES[:2]))
    calls, h = _spy_denoiser(model)
    firsts = []
    for gt in (GT[:2], GT[2:]):
        torch.manual_seed(7)
        calls.clear()
        out = model(z, x, text, gt_boxes=gt, epoch=10)
        assert len(calls) == 2 and out.mask_select == "first"
        assert (calls[0]["t"] == model.schedule.T - 1).all()  # abar_{T} = 0: pure noise
        firsts.append(calls[0]["x"])
    h.remove()
    assert torch.equal(firsts[0], firsts[1])
    assert not torch.equal(box_mask(GT[:2], model.mask_size), box_mask(GT[2:], model.mask_size))


def test_double_sample_second_input_is_the_first_output():
    z = x = None
    for how in ("direct", "renoise"):
        cfg = load_config("smoke", "full", double_sample_input=how, double_sample_mode="second")
        model = build_model(cfg).train()
        z, x = inputs(cfg, 2)
        text = model.encode_text(model.tokenize(SENTENCES[:2]))
        calls, h = _spy_denoiser(model)
        renoised = []
        q_sample = model.schedule.q_sample
        model.schedule.q_sample = lambda x0, t, noise=None: renoised.append((x0.clone(), t.clone())) or q_sample(x0, t, noise)
        out = model(z, x, text, gt_boxes=GT[:2], epoch=10)
        h.remove()
        first_x0 = logits_to_x0(calls[0]["out"])
        if how == "direct":
            assert torch.equal(calls[1]["x"], first_x0) and not renoised
        else:
            (x0_arg, t_arg), = renoised
            assert torch.equal(x0_arg, first_x0) and torch.equal(t_arg, calls[1]["t"])
        assert torch.equal(out.mask_logits[0].detach(), calls[1]["out"])  # the loss is on the 2nd sampling


def test_double_sample_loss_choice():
    cfg = load_config("smoke", "full")
    model = build_model(cfg).train()
    torch.manual_seed(0)
    cond = model.denoiser.encode_cond(torch.randn(2, cfg.embed_dim, model.grid, model.grid))
    seen = {model._double_sample(cond)[2] for _ in range(40)}
    assert seen == {"first", "second", "mean"}  # double_sample_mode='random' draws all three
    model.cfg = cfg.replace(double_sample_mode="mean")
    (l1, l2), used, mode, _ = model._double_sample(cond)
    assert mode == "mean" and torch.allclose(used.sigmoid(), (l1.sigmoid() + l2.sigmoid()) / 2, atol=1e-5)


def test_single_sample_training_noises_the_ground_truth():
    cfg = load_config("smoke", "single_sample_train")
    model = build_model(cfg).train()
    z, x = inputs(cfg, 2)
    text = model.encode_text(model.tokenize(SENTENCES[:2]))
    calls, h = _spy_denoiser(model)
    noised = []
    q_sample = model.schedule.q_sample

    def spy(x0, t, noise=None):
        noised.append((x0.clone(), t.clone(), q_sample(x0, t, noise)))
        return noised[-1][2]

    model.schedule.q_sample = spy
    out = model(z, x, text, gt_boxes=GT[:2], epoch=0)
    h.remove()
    assert len(calls) == 1 and len(noised) == 1 and out.mask_select == "single"
    x0, t, x_t = noised[0]
    assert torch.equal(x0, 2 * box_mask(GT[:2], model.mask_size) - 1)  # x_t = q_sample(2 m - 1, t): built on the GT
    assert torch.equal(calls[0]["t"], t) and torch.equal(calls[0]["x"], x_t)


def test_gt_ce_removes_exactly_the_eliminated_tokens_inside_the_box():
    for scale in (1, 2):
        cfg = load_config("smoke", "full", mask_scale=scale)
        model = build_model(cfg)
        G, s = model.grid, scale
        gt = torch.tensor([[0.55, 0.55, 0.50, 0.50]])
        removed = torch.zeros(1, G * G, dtype=torch.bool)
        removed[0, [0, 5, 6, 15]] = True  # tokens (0,0), (1,1), (1,2), (3,3) of the 4x4 grid
        plain = model.mask_target(gt, None)
        cut = model.mask_target(gt, removed)
        tok_removed = removed.view(G, G).repeat_interleave(s, 0).repeat_interleave(s, 1)
        changed = (plain[0, 0] != cut[0, 0])
        assert torch.equal(changed, tok_removed & (plain[0, 0] > 0))  # removed AND inside the box
        assert (cut[0, 0][tok_removed] == 0).all()
        assert changed.any() and not changed[0, 0]  # (0,0) is removed but outside the box: unchanged

    # in the forward pass: GT-CE from gt_ce_start_epoch on, only with CE active, never in no_gt_ce
    for variant, epoch, want in (("full", 5, True), ("full", 0, False), ("no_gt_ce", 5, False)):
        cfg = load_config("smoke", variant, gt_ce_start_epoch=1)
        model = build_model(cfg).train()
        z, x = inputs(cfg, 2)
        out = model(z, x, model.encode_text(model.tokenize(SENTENCES[:2])), gt_boxes=GT[:2], epoch=epoch)
        assert out.gt_ce == want
        expect = box_mask(GT[:2], model.mask_size)
        if want:
            assert out.removed.any()
            expect = expect * (~out.removed).float().view(2, 1, model.grid, model.grid)
        assert torch.equal(out.mask_target, expect)


def test_k_samples_run_backbone_and_language_once(demo_models):
    model = demo_models["full"].eval()
    counts = {"visual": 0, "text": 0, "fusion": 0}
    batches = []
    hooks = [getattr(model, n).register_forward_hook(lambda *a, n=n: counts.__setitem__(n, counts[n] + 1)) for n in counts]
    hooks.append(model.denoiser.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0])))
    z, x = inputs(model.cfg, 2)
    with torch.inference_mode():
        text = model.encode_text(model.tokenize(SENTENCES[:1]))  # once per sequence, broadcast to the batch
        out = model(z, x, text, samples=5)
    for h in hooks:
        h.remove()
    assert counts == {"visual": 1, "text": 1, "fusion": 1}
    assert batches == [10] * model.cfg.sampling_steps  # B = 2 frames x k = 5 chains, one batch per step
    assert out.samples_masks.shape[:2] == (2, 5)
    assert torch.allclose(out.mask, model.filter(out.samples_masks.mean(1)))


def _randomised_smoke(**overrides):
    """A smoke-size full model whose denoiser has non-trivial weights (mask_in starts at zero)."""
    torch.manual_seed(0)
    model = build_model(load_config("smoke", "full", **overrides)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def test_chain_reading_averages_the_x0_predictions_of_one_chain_by_hand():
    """test_average=chain, eta = 0: k = 1 is one denoiser pass from x_T at t = T-1; k = 2 is the DDIM
    chain T-1 -> 499 -> clean, and the mask is the mean of the two steps' sigmoid(x0 logits)."""
    model = _randomised_smoke(test_average="chain", sampler_eta=0.0)
    den, sch, B, M = model.denoiser, model.schedule, 2, model.mask_size
    cond = den.encode_cond(torch.randn(B, model.cfg.embed_dim, model.grid, model.grid)).detach()
    with torch.inference_mode():
        torch.manual_seed(3)
        p1, extra1 = model._test_masks(cond, B, False, samples=1)
        torch.manual_seed(3)
        p2, extra2 = model._test_masks(cond, B, True, samples=2)
        torch.manual_seed(3)
        x_T = torch.randn(B, 1, M, M)  # the draw the sampler makes first
        T = sch.T
        l1 = den(x_T, torch.full((B,), T - 1), cond)
        assert torch.allclose(p1, l1.sigmoid(), atol=1e-6) and extra1["samples_masks"].shape == (B, 1, 1, M, M)
        assert sch.sample_timesteps(2) == [(T - 1, 499), (499, -1)]
        a_t, a_n = sch.alphas_cumprod[T - 1], sch.alphas_cumprod[499]
        x0 = torch.tanh(l1 / 2)
        x_mid = a_n.sqrt() * x0 + (1 - a_n).sqrt() * (x_T - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # DDIM, eta = 0
        l2 = den(x_mid, torch.full((B,), 499), cond)
    assert torch.allclose(p2, (l1.sigmoid() + l2.sigmoid()) / 2, atol=1e-5)
    assert torch.allclose(extra2["samples_masks"][:, 1], l2.sigmoid(), atol=1e-5)  # (B, k, 1, M, M): the k steps
    assert len(extra2["chain"]) == 3 and extra2["chain"][0].shape == (B, 1, 1, M, M)  # x_T, x_mid, x_0 of one chain
    assert torch.allclose(extra2["chain"][1][:, 0], ((x_mid + 1) / 2).clamp(0, 1), atol=1e-5)


def test_the_stochastic_sampler_draws_the_ddpm_posterior_at_each_step_by_hand():
    """The config's default sampler (eta = 1, the paper's Eq. 5): the chain reading at k = 2 draws x_T, runs the
    denoiser at T-1, then draws x_499 from the DDPM posterior q(x_499 | x_T, x0_hat) with the second draw z of
    the same RNG, and averages the two predictions. eta=None is the config's, and an eta given per call
    leaves the config alone."""
    model = _randomised_smoke(test_average="chain")
    assert model.cfg.sampler_eta == 1.0
    den, sch, B, M = model.denoiser, model.schedule, 2, model.mask_size
    cond = den.encode_cond(torch.randn(B, model.cfg.embed_dim, model.grid, model.grid)).detach()
    with torch.inference_mode():
        torch.manual_seed(3)
        p2, _ = model._test_masks(cond, B, False, samples=2)
        torch.manual_seed(3)
        p2_eta1, _ = model._test_masks(cond, B, False, samples=2, eta=1.0)
        torch.manual_seed(3)
        p2_eta0, _ = model._test_masks(cond, B, False, samples=2, eta=0.0)
        torch.manual_seed(3)
        x_T, z = torch.randn(B, 1, M, M), torch.randn(B, 1, M, M)  # the sampler's two draws, in its order
        l1 = den(x_T, torch.full((B,), sch.T - 1), cond)
        a_t, a_s = sch.alphas_cumprod[sch.T - 1].double(), sch.alphas_cumprod[499].double()
        x0, alpha = torch.tanh(l1 / 2).double(), a_t / a_s
        mean = a_s.sqrt() * (1 - alpha) / (1 - a_t) * x0 + alpha.sqrt() * (1 - a_s) / (1 - a_t) * x_T.double()
        x_mid = (mean + ((1 - a_s) * (1 - alpha) / (1 - a_t)).sqrt() * z.double()).float()
        l2 = den(x_mid, torch.full((B,), 499), cond)
    assert torch.allclose(p2, (l1.sigmoid() + l2.sigmoid()) / 2, atol=1e-5)
    assert torch.equal(p2, p2_eta1) and not torch.allclose(p2, p2_eta0, atol=1e-4)
    assert model.cfg.sampler_eta == 1.0
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        model._test_masks(cond, B, False, samples=2, eta=1.5)


def test_the_eta_a_forward_samples_with():
    from dmtrack.model import resolve_eta

    paper = load_config("smoke", "full")
    assert (resolve_eta(paper), resolve_eta(paper, 0), resolve_eta(paper.replace(sampler_eta=0.0))) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\], got 1.5"):
        resolve_eta(paper, 1.5)
    authors = load_config("smoke", "full", reading="authors")  # the authors' ancestral sampler has no DDIM eta
    assert resolve_eta(authors) is None and resolve_eta(authors, 1.0) is None
    with pytest.raises(ValueError, match="reading=authors samples with the authors' ancestral sampler"):
        resolve_eta(authors, 0.0)


def test_sampling_plan_of_both_readings():
    from dmtrack.model import sampling_plan

    cfg = load_config("demo", "full")  # sampling_steps 3
    assert sampling_plan(cfg) == (1, 3, "final") and sampling_plan(cfg, 5) == (5, 3, "final")
    assert sampling_plan(cfg, 5, 2) == (5, 2, "final") and sampling_plan(cfg, 5, average="chain") == (1, 5, "chain")
    assert sampling_plan(cfg.replace(test_average="chain", test_samples=5)) == (1, 5, "chain")
    with pytest.raises(ValueError, match="one chain of k = 5 steps"):
        sampling_plan(cfg, 5, 3, "chain")
    assert sampling_plan(cfg, 5, average="maps") == (1, 5, "maps")  # the authors': one chain of k steps as well
    with pytest.raises(ValueError, match="the maps reading runs one chain of k = 5 steps"):
        sampling_plan(cfg, 5, 3, "maps")
    with pytest.raises(ValueError, match="final, chain or maps"):
        sampling_plan(cfg, 5, average="mean")
    with pytest.raises(ValueError, match="test_average"):
        cfg.replace(test_average="both")


def test_param_groups(demo_models):
    model = demo_models["full"]
    cfg = model.cfg
    groups = {g["name"]: g for g in model.param_groups()}
    assert groups["backbone"]["lr"] == cfg.backbone_lr and groups["rest"]["lr"] == cfg.lr
    assert groups["rest"]["weight_decay"] == cfg.weight_decay and groups["rest_no_decay"]["weight_decay"] == 0
    no_decay = {id(p) for g in groups.values() if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.visual.pos_embed_x) in no_decay and id(model.fusion.gate) in no_decay
    assert id(model.head.score[0].weight) not in no_decay and "text" not in groups  # frozen BERT: no group
    n_grouped = sum(len(g["params"]) for g in groups.values())
    assert n_grouped == sum(1 for p in model.parameters() if p.requires_grad)


def test_paper_size_forward_backward_batch_1():
    cfg = load_config("paper", "full", double_sample_mode="mean")
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.template_size, cfg.search_size) == (768, 12, 12, 128, 256)
    model = build_model(cfg).train()
    assert isinstance(model, DMTrack) and model.grid == 16 and model.mask_size == 16
    z, x = inputs(cfg, 1)
    out = model(z, x, model.encode_text(model.tokenize(SENTENCES[:1])), gt_boxes=GT[:1], epoch=cfg.epochs)
    assert out.removed.sum() == 256 - 89  # 256 -> 180 -> 126 -> 89 kept
    losses = model.loss(out, GT[:1])
    losses["total"].backward()
    assert math.isfinite(losses["total"].item()) and model.struct_kernel == 3
    assert model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.denoiser.mask_in.weight.grad.abs().sum() > 0


def test_load_config_variants_and_unknown_keys():
    import dmtrack
    switches = {"full": {}, "no_diffusion": {"use_diffusion": False}, "not_mask_driven": {"mask_driven": False},
                "no_language": {"use_language": False}, "no_gt_ce": {"gt_ce": False},
                "single_sample_train": {"double_sample": False}}
    base = dmtrack.load_config("demo", "full")
    keys = ("use_diffusion", "mask_driven", "use_language", "gt_ce", "double_sample")
    for variant, flips in switches.items():
        cfg = dmtrack.load_config("demo", variant)
        assert {k: getattr(cfg, k) for k in keys} == {k: flips.get(k, getattr(base, k)) for k in keys}, variant
    paper = dmtrack.load_config("paper")
    assert (paper.w_focal, paper.w_giou, paper.w_l1, paper.w_struct, paper.text_max_len) == (1.0, 2.0, 5.0, 5.0, 36)
    with pytest.raises(KeyError, match="unknown config key.*bogus_b, zz_a"):
        dmtrack.load_config("demo", "full", zz_a=1, bogus_b=2)
    with pytest.raises(KeyError, match="nope"):
        dmtrack.load_config("demo", "nope")


@pytest.mark.parametrize("variant,head_features", [("full", "visual"), ("full", "fused"), ("not_mask_driven", "visual"),
                                                   ("no_diffusion", "visual")])
def test_head_input_is_the_documented_linear_combination(demo_models, variant, head_features):
    """mask-driven: H_x (or F_s) + Conv1x1(filtered mask); not_mask_driven: the mask term alone; no_diffusion: F_s."""
    model = demo_models[variant].eval()
    cfg = model.cfg = model.cfg.replace(head_features=head_features)  # read by forward; same modules
    z, x = inputs(cfg, 2)
    text = model.encode_text(model.tokenize(SENTENCES[:2]))
    seen = {}
    hooks = [model.visual.register_forward_hook(lambda mod, args, out: seen.__setitem__("h_x", out.search)),
             model.fusion.register_forward_hook(lambda mod, args, out: seen.__setitem__("f_s", out)),
             model.head.register_forward_hook(lambda mod, args, out: seen.__setitem__("head_in", args[0]))]
    with torch.inference_mode():
        out = model(z, x, text, samples=1)
        mask_feat = model.mask_proj(out.mask) if out.mask is not None else 0  # mask_scale 1: unshuffle = identity
    for h in hooks:
        h.remove()
    model.cfg = cfg.replace(head_features="visual")
    to_map = lambda t: t.transpose(1, 2).reshape(2, cfg.embed_dim, model.grid, model.grid)
    want = {("full", "visual"): to_map(seen["h_x"]) + mask_feat, ("full", "fused"): to_map(seen["f_s"]) + mask_feat,
            ("not_mask_driven", "visual"): mask_feat, ("no_diffusion", "visual"): to_map(seen["f_s"])}[variant, head_features]
    torch.testing.assert_close(seen["head_in"], want)
    assert not torch.allclose(seen["f_s"], seen["h_x"])  # the language did change the search features


def test_head_features_and_text_batch_errors():
    with pytest.raises(ValueError, match="head_features"):
        build_model(load_config("smoke", "no_language", head_features="both"))
    cfg = load_config("smoke", "no_diffusion")
    model = build_model(cfg).eval()
    text = model.encode_text(model.tokenize(SENTENCES[:2]))
    with pytest.raises(ValueError, match="text features for 2 sentences but 3 search crops"):
        model(*inputs(cfg, 3), text)


def test_mixed_precision_forward_and_losses_stay_finite():
    cfg = load_config("smoke", "full", double_sample_mode="mean")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    z, x = inputs(cfg, 2)
    text = model.encode_text(model.tokenize(SENTENCES[:2]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(z, x, text, gt_boxes=GT[:2], epoch=5)
        losses = model.loss(out, GT[:2])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    # saturated float16 predictions: float32 inside the losses keeps them finite
    from dmtrack.model.losses import focal_loss, structure_loss
    score = torch.full((1, 1, 4, 4), 1 - 1e-4, dtype=torch.float16)
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 1
    assert torch.isfinite(focal_loss(score, target))
    logits = torch.full((1, 1, 64, 64), 30.0, dtype=torch.float16)
    mask = torch.ones(1, 1, 64, 64)
    assert math.isclose(structure_loss(logits, mask, 9).item(), structure_loss(logits.float(), mask, 9).item(), rel_tol=1e-6)
