"""Training loop at smoke size: run folder, lr drop, exact resume, DDP with 2 processes, CLI errors."""
import csv
import json
from importlib import metadata
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from dmtrack.cli import main as cli_main
from dmtrack.config import config_from_dict, load_config
from dmtrack.model import build_model, load_checkpoint
from dmtrack.train import make_scheduler, train
from dmtrack.train.loop import TrainRun, train_step, wrap_net

SENTENCES = ["the red square on the left", "a small green box moving right", "blue block"]


def write_lasot_train(root, n_seq=3, n_frames=12):
    """A tiny synthetic_train set in the real LaSOT layout: <root>/train/<class>/<class>-<k>/..."""
    rng = np.random.default_rng(0)
    for k in range(n_seq):
        cls = ["square", "box", "block"][k]
        folder = root / "train" / cls / f"{cls}-{k + 1}"
        (folder / "img").mkdir(parents=True)
        boxes, occ = [], []
        colour = [(0, 0, 255), (0, 255, 0), (255, 0, 0)][k]  # BGR
        for i in range(n_frames):
            img = np.full((96, 128, 3), 90, np.uint8)
            img[:] += rng.integers(0, 40, img.shape, dtype=np.uint8)
            x, y, w, h = 10 + 5 * i, 20 + 2 * k + i, 18 + k, 14
            img[y:y + h, x:x + w] = colour
            cv2.imwrite(str(folder / "img" / f"{i + 1:08d}.jpg"), img)
            boxes.append(f"{x},{y},{w},{h}")
            occ.append("1" if i == 5 else "0")
        (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
        (folder / "full_occlusion.txt").write_text(",".join(occ) + "\n")
        (folder / "out_of_view.txt").write_text(",".join("0" * n_frames) + "\n")
        (folder / "nlp.txt").write_text(SENTENCES[k] + "\n")
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_lasot_train(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def env(data_root, monkeypatch):
    monkeypatch.setenv("DMTRACK_SYNTHETIC_ROOT", str(data_root))
    torch.set_num_threads(1)  # tiny smoke ops: one thread is as fast, and far faster on a loaded CPU


def smoke(variant="full", **kw):
    return load_config("smoke", variant, **{**dict(pairs_per_epoch=8, batch_size=4, epochs=2), **kw})


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_losses_lr_drop_and_model(env, tmp_path):
    cfg = smoke(epochs=3, lr_drop_frac=0.67, lr=1e-3, backbone_lr=2e-4, precision="bf16")  # drop from epoch round(2.01) = 2
    path = train(cfg, tmp_path / "run", progress=False)
    assert path == tmp_path / "run" / "model.pth"
    rows = read_rows(tmp_path / "run" / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert {"focal", "giou", "l1", "struct", "iou", "total", "lr_backbone", "lr_rest", "seconds"} <= set(rows[0])
    assert [float(r["lr_rest"]) for r in rows] == pytest.approx([1e-3] * 4 + [1e-4] * 2)
    assert [float(r["lr_backbone"]) for r in rows] == pytest.approx([2e-4] * 4 + [2e-5] * 2)
    for r in rows:  # Eq. 6 with the smoke weights 1, 2, 5, 5
        parts = float(r["focal"]) + 2 * float(r["giou"]) + 5 * float(r["l1"]) + 5 * float(r["struct"])
        assert float(r["total"]) == pytest.approx(parts, abs=1e-4) and np.isfinite(float(r["total"]))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"] == json.loads(cfg.to_json())
    assert len(info["git"]["commit"]) == 40 and isinstance(info["git"]["dirty"], bool)
    assert info["packages"]["torch"] == metadata.version("torch") and info["hardware"]["cores"] >= 1
    assert info["world_size"] == 1 and info["device"] == "cpu"
    session = info["sessions"][0]
    assert session["from_step"] == 0 and session["to_step"] == 6 and session["pairs_per_second"] > 0
    assert session["precision"] == "bf16" and session["compile"] is False  # bf16 autocast runs on a CPU too
    ckpt = load_checkpoint(path)  # weights_only=True
    assert ckpt["config"] == cfg.to_dict() and ckpt["global_step"] == 6
    build_model(config_from_dict(ckpt["config"])).load_state_dict(ckpt["model"])
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 0 and len(state["rng"]) == 1
    with pytest.raises(FileExistsError, match="last.pth"):
        train(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize("variant", ["no_language", "no_diffusion"])
def test_variants_without_text_or_diffusion_train(env, tmp_path, variant):
    path = train(smoke(variant, epochs=1, pairs_per_epoch=4), tmp_path / variant, progress=False)
    rows = read_rows(tmp_path / variant / "losses.csv")
    assert len(rows) == 1 and np.isfinite(float(rows[0]["total"]))
    if variant == "no_diffusion":
        assert float(rows[0]["struct"]) == 0.0  # no mask, no structure loss
    assert load_checkpoint(path)["config"]["variant"] == variant


def test_paper_schedule_drops_after_epoch_80():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = make_scheduler(opt, load_config("paper", "full"))
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:80] == pytest.approx([2e-4] * 80) and lrs[80:] == pytest.approx([2e-5] * 20)


def test_resume_reproduces_the_uninterrupted_run(env, tmp_path):
    cfg = smoke(pairs_per_epoch=12, flip_prob=0.5)  # 3 steps per epoch, 6 in all
    train(cfg, tmp_path / "full", progress=False)
    # stopped mid-epoch 0, then mid-epoch 1, then to the end
    assert train(cfg, tmp_path / "cut", max_steps=2, progress=False) is None
    assert not (tmp_path / "cut" / "model.pth").exists()
    assert train(cfg, tmp_path / "cut", resume=True, max_steps=4, progress=False) is None
    with pytest.raises(ValueError, match="lr"):
        train(cfg.replace(lr=0.5), tmp_path / "cut", resume=True, progress=False)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "model.pth")["model"]
    b = load_checkpoint(tmp_path / "cut" / "model.pth")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_rows(tmp_path / "full" / "losses.csv"), read_rows(tmp_path / "cut" / "losses.csv")
    assert [int(r["step"]) for r in rb] == [1, 2, 3, 4, 5, 6]
    assert [r["total"] for r in ra] == [r["total"] for r in rb]
    sessions = json.loads((tmp_path / "cut" / "run.json").read_text())["sessions"]
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 2), (2, 4), (4, 6)]


def test_ddp_two_processes_identical_replicas_different_data(data_root, tmp_path):
    env = {**os.environ, "DMTRACK_SYNTHETIC_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dmtrack", "train", "--profile", "smoke", "--out", str(tmp_path / "ddp"), "--no-progress",
           "pairs_per_epoch=16", "batch_size=4", "epochs=1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    ddp = info["sessions"][0]["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["replicas_identical"] is True
    r0, r1 = (r["first_batch"] for r in ddp["ranks"])
    # global batch 4 = 2 pairs per rank: rank 0 takes indices 0, 2; rank 1 takes 1, 3
    assert r0["keys"] == [[0, 0], [0, 2]] and r1["keys"] == [[0, 1], [0, 3]]
    assert r0["box"] != r1["box"]
    rows = read_rows(tmp_path / "ddp" / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "ddp" / "model.pth")["global_step"] == 4


def test_frozen_text_cache_matches_the_model_and_counts_hits():
    cfg = load_config("smoke", "full")
    model = build_model(cfg).eval()
    tokens = model.tokenize(SENTENCES + SENTENCES[:1])
    plain = model.encode_text(tokens)[0]
    single = torch.cat([model.encode_text(model.tokenize([s]))[0] for s in SENTENCES + SENTENCES[:1]])
    assert model.text.cache_outputs(2)
    cached = model.encode_text(tokens)[0]  # 3 distinct sentences: all misses, computed one by one
    assert torch.equal(cached, single)  # exactly what the tracker computes (batch 1)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    assert (model.text.cache_hits, model.text.cache_misses, len(model.text._cache)) == (0, 3, 2)  # LRU keeps 2
    assert torch.equal(model.encode_text(model.tokenize(SENTENCES[2:]))[0], single[2:3])
    assert model.text.cache_hits == 1
    assert not build_model(cfg.replace(text_finetune=True)).text.cache_outputs(10)  # fine-tuned: never cached
    assert not model.text.cache_outputs(0) and model.text._cache is None
    assert "text.bert.embeddings.word_embeddings.weight" in model.state_dict()  # keys untouched


def test_cli_rejects_unknown_override(tmp_path):
    with pytest.raises(KeyError, match="no_such_key"):
        cli_main(["train", "--profile", "smoke", "--out", str(tmp_path / "x"), "no_such_key=3"])
    assert not (tmp_path / "x").exists()


def test_log_every_writes_the_mean_of_the_steps_since_the_last_row(env, tmp_path):
    cfg = smoke(pairs_per_epoch=12)  # 3 steps per epoch, 6 in all
    train(cfg, tmp_path / "every", progress=False)
    train(cfg.replace(log_every=2), tmp_path / "two", progress=False)
    each = {int(r["step"]): r for r in read_rows(tmp_path / "every" / "losses.csv")}
    rows = read_rows(tmp_path / "two" / "losses.csv")
    # every 2nd step, and at each checkpoint (the epoch ends, 3 and 6), so no window spans a resume point
    windows = {2: [1, 2], 3: [3], 4: [4], 6: [5, 6]}
    assert [int(r["step"]) for r in rows] == list(windows)
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1]
    for r in rows:
        for term in ("total", "focal", "giou", "l1", "struct", "iou"):
            want = np.mean([float(each[s][term]) for s in windows[int(r["step"])]])
            assert float(r[term]) == pytest.approx(want, abs=2e-6), (r["step"], term)
    a = load_checkpoint(tmp_path / "every" / "model.pth")["model"]
    b = load_checkpoint(tmp_path / "two" / "model.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # logging less never changes the training


@pytest.mark.parametrize("variant", ["full", "no_diffusion", "not_mask_driven", "no_language", "no_gt_ce",
                                     "single_sample_train"])
def test_every_trainable_parameter_gets_a_gradient_at_every_step(variant):
    """What lets DDP run without find_unused_parameters: one training step of every variant, at
    every choice the random double-sampling mode can make, with candidate elimination and GT-CE on."""
    modes = ["first", "second", "mean"] if variant != "single_sample_train" else ["random"]
    for mode in modes:
        cfg = load_config("smoke", variant, double_sample_mode=mode)
        torch.manual_seed(0)
        model = build_model(cfg).train()
        opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        batch = {"template": torch.randn(4, 3, 32, 32, generator=g), "search": torch.randn(4, 3, 64, 64, generator=g),
                 "box": torch.rand(4, 4, generator=g) * 0.4 + 0.3, "text": SENTENCES + SENTENCES[:1]}
        train_step(model, model, opt, torch.amp.GradScaler("cpu", enabled=False), batch, cfg.gt_ce_start_epoch + 1.0,
                   cfg.grad_clip, "fp32")
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{variant}, {mode}: no gradient for {missing}"


def test_distinct_sentences_are_found_on_the_host_before_the_tokens_move(monkeypatch):
    model = build_model(load_config("smoke", "full"))
    tokens = model.tokenize(SENTENCES + SENTENCES[:1])
    events, real_unique, real_to = [], torch.unique, torch.Tensor.to
    monkeypatch.setattr(torch, "unique", lambda x, *a, **k: events.append(("unique", x.device.type)) or real_unique(x, *a, **k))
    monkeypatch.setattr(torch.Tensor, "to", lambda x, *a, **k: events.append(("to",)) or real_to(x, *a, **k))
    feats, mask = model.encode_text(tokens)
    assert events[0] == ("unique", "cpu")  # found first, on the host; only then do the rows travel
    assert feats.shape == (4, 36, 48) and torch.equal(feats[0], feats[3])


def test_compile_compiles_the_parts_and_keeps_the_weights_names():
    cfg = load_config("smoke", "full", compile=True, depth=3, ce_layers=(1,))
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.param_groups())
    run = TrainRun(model, model, opt, make_scheduler(opt, cfg), torch.amp.GradScaler("cpu", enabled=False), "fp32")
    wrap_net(run, cfg, world=1)
    compiled = lambda m: m._compiled_call_impl is not None
    assert [compiled(b) for b in model.visual.blocks] == [True, False, True]  # the CE block's top-k stays eager
    assert compiled(model.fusion) and compiled(model.denoiser) and compiled(model.head) and not compiled(model.visual)
    assert run.net is model and list(model.state_dict()) == list(build_model(cfg).state_dict())  # checkpoints unchanged
