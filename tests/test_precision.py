"""`precision` (fp32 | bf16 | fp16 | auto): how it resolves, what a training step and the tracker
run under it, the GradScaler of fp16, TF32 on CUDA; every path the CPU can take is run here."""
import numpy as np
import pytest
import torch

from dmtrack import build_model, load_config
from dmtrack.precision import autocast, enable_tf32, resolve_precision
from dmtrack.track import Tracker
from dmtrack.train.loop import train_step

torch.set_num_threads(1)
SENTENCES = ["a red car", "a dog running", "a red car", "the blue box"]


def batch(cfg, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"template": torch.randn(b, 3, cfg.template_size, cfg.template_size, generator=g),
            "search": torch.randn(b, 3, cfg.search_size, cfg.search_size, generator=g),
            "box": torch.rand(b, 4, generator=g) * 0.4 + 0.3, "text": SENTENCES[:b]}


def linear_dtypes(model):
    """dtypes of the first ViT block's qkv Linear outputs: what autocast made of the matmuls."""
    seen = []
    hook = model.visual.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen, hook


def test_auto_is_bf16_only_where_the_gpu_has_it(monkeypatch):
    from types import SimpleNamespace

    from dmtrack.precision import native_bf16

    assert resolve_precision("auto", "cpu") == "fp32" and not native_bf16(torch.device("cpu"))
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    majors = {0: 7, 1: 9}  # a V100 as cuda:0 (the current device) next to an H100: bf16 only emulated on the first
    index = lambda d: d if isinstance(d, int) else torch.device(d).index if torch.device(d).index is not None else 0  # noqa: E731
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: SimpleNamespace(major=majors[index(d)]))
    assert native_bf16(torch.device("cuda:1")) and resolve_precision("auto", "cuda:1") == "bf16"  # the GPU passed in
    assert not native_bf16(torch.device("cuda:0")) and resolve_precision("auto", "cuda:0") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp32"  # "cuda" is the current device
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_tf32_only_for_fp32_on_cuda():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        enable_tf32("fp32", "cpu")
        enable_tf32("bf16", "cuda")
        assert torch.get_float32_matmul_precision() == "highest"
        enable_tf32("fp32", "cuda")  # sets a flag only: no GPU needed
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_training_step_under_each_precision(precision, dtype):
    cfg = load_config("smoke", "full", double_sample_mode="mean")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16")
    seen, hook = linear_dtypes(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = train_step(model, model, opt, scaler, batch(cfg), 5.0, cfg.grad_clip, precision)
    hook.remove()
    assert seen == [dtype]  # the forward ran under this autocast ...
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())  # ... the losses in float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    if precision == "fp16":
        # the loss was scaled by 2^16; the scaler found the overflow of that first step, skipped it
        # and halved its scale (PyTorch's GradScaler), else the update would have used scaled gradients
        assert scaler.get_scale() == 2.0 ** 15
    else:
        changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
        assert len(changed) == len(before)


def test_fp16_clips_the_unscaled_gradients(monkeypatch):
    cfg = load_config("smoke", "full", double_sample_mode="mean", grad_clip=0.5)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, enabled=True)  # small: no overflow
    norms = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda ps, c: norms.append(real(ps, c)) or norms[-1])
    train_step(model, model, opt, scaler, batch(cfg), 5.0, cfg.grad_clip, "fp16")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    clipped = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert scaler.get_scale() == 4.0  # no overflow: the step was taken
    assert norms[0] > 0.5 and clipped.item() == pytest.approx(0.5, rel=1e-4)  # the true norm, clipped to 0.5


def test_tracker_runs_the_network_under_its_precision():
    cfg = load_config("smoke", "full")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    img = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    for precision in ("fp32", "bf16"):
        tr = Tracker(model, cfg, samples=2, precision=precision)
        assert tr.precision == precision
        seen, hook = linear_dtypes(model)
        tr.initialize(img, [30, 30, 16, 14], "the red star")
        out = tr.track(img)
        hook.remove()
        assert seen == [torch.float32 if precision == "fp32" else torch.bfloat16]
        assert np.isfinite(out["box"]).all() and isinstance(out["score"], float) and out["mask"].dtype == np.float32
    assert Tracker(model, cfg.replace(train_precision="bf16")).precision == "fp32"  # the config's is the training's
    assert Tracker(model, cfg, precision="auto").precision == "fp32"  # auto: fp32 on a CPU


def test_autocast_is_a_no_op_for_fp32():
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_evaluate_records_the_precision_and_never_mixes_two(tmp_path, monkeypatch):
    import json

    import dmtrack.track.runner as runner
    from dmtrack.data.synthetic import generate
    from dmtrack.model import save_checkpoint
    from dmtrack.track import DataSelection, Execution, TrackSettings, evaluate

    root = tmp_path / "synthetic"
    generate(root, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    cfg = load_config("smoke", "full")
    ckpt = save_checkpoint(tmp_path / "model.pth", build_model(cfg), cfg)
    run = lambda p: evaluate(ckpt, "synthetic_otb_lang", tmp_path / "eval", TrackSettings(precision=p),
                             DataSelection(root=root, max_frames=3), Execution(progress=False))
    run("auto")
    assert json.loads((tmp_path / "eval" / "evaluate.json").read_text())["precision"] == "fp32"  # auto on a CPU
    with pytest.raises(ValueError, match=r"other settings precision='fp32' \(now 'bf16'\)"):
        run("bf16")
    monkeypatch.setattr(runner, "resolve_precision", lambda requested, device: "bf16")  # auto where bf16 runs
    with pytest.raises(ValueError, match=r"other settings precision='fp32' \(now 'bf16'\)"):
        run("auto")
