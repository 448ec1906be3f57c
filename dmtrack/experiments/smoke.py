"""The smoke profile: the whole demo chain at toy sizes (minutes on 2 cores), for tests and a first try."""
from dmtrack.experiments import demo, suite


def get_config() -> dict:
    c = demo.get_config()
    c["model"].update(
        template_size=32, search_size=64, embed_dim=48, depth=2, ce_layers=(1,), ce_start_epoch=0, ce_warm_epochs=1,
        sampling_steps=2, denoiser_channels=8, head_channels=16,
        gt_ce_start_epoch=1, epochs=2, pairs_per_epoch=16, batch_size=4, backbone_lr=1e-4, max_gap=20,
    )
    c["scratch"] = dict(backbone_lr=1e-3)
    c["base"] = {}
    c["synthetic"] = dict(
        name="smoke", width=96, height=96, size=(11, 17), speed=(1.0, 2.0), quality=90,
        suites=dict(
            train=suite(4, (20, 24), (1, 2), (0, 1), (0, 1)),
            lasot=suite(2, (30, 36), (1, 2), (1, 1), (1, 1)),
            lasot_ext=suite(2, (30, 36), (1, 2), (0, 1), (0, 1), ext_classes=True),
            tnl2k=suite(2, (25, 30), (2, 3), (1, 2), (0, 1)),
            otb_lang=suite(2, (20, 24), (1, 1), (0, 1), (0, 1), wrap=0.0),
        ),
        sweep_levels=(0.5, 1.0), sweep=suite(2, (30, 30), (1, 1), (1, 1), (0, 1)),
    )
    # the robustness test with its control only (5 notebooks more, not 11); no time budget, every seed swept
    c["chain"].update(preset="smoke", seeds=1, k_sweep=(1, 2, 5), steps_sweep=(1, 2), max_frames=12,
                      robust_variants=("full", "no_language"), track_batch=2, sweep_seeds=None, robust_seeds=None,
                      budget_minutes=None)
    return c
