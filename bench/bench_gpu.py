"""What this machine does at the paper size, in a few minutes: `python -m dmtrack bench gpu`.

Runs from a plain checkout (`PYTHONPATH=. python bench/bench_gpu.py`) on a stock PyTorch GPU
image: it needs torch, torchvision, timm, transformers, opencv, numpy, pandas (part 4 only) and tqdm, not this
project's venv, papermill or the MiniLM package. The language encoder is `bert-base-random` (a
seeded random BERT of bert-base's shape; a character tokenizer when MiniLM is absent), so every
number is a cost, never an accuracy. Measures, each in one run:

1. training pairs/s at the paper size under fp32 / bf16 / fp16 (dmtrack.train.timing's step, the
   one the chain's estimate times, on in-memory pairs, batch 64 or as large as fits, halved on
   out-of-memory);
2. the data pipeline's pairs/s (PairDataset + DataLoader with the paper profile's workers) on
   generated 1280x720 JPEGs in LaSOT's layout;
3. tracking frames/s at batch 1 for no_diffusion, full k=1 and full k=5 under each precision,
   and the ratios of issue 4 (k=1 <= 1.15 x no_diffusion, k=5 <= 1.5 x k=1);
4. tracking the smoke synthetic sequences (generated here) at fp32 and bf16: AUC of each and
   their paired difference; with the same fp32 model, all sequences at once (BatchTracker)
   against one at a time (frames/s, largest box difference). Weights are random unless
   --checkpoint gives a paper-size model: then the AUCs are that model's.

Without a GPU it says so and runs smaller settings (batch 2, fewer steps and frames; fp16, which
CPUs emulate slowly, skipped in training) to finish in a few minutes. Writes --out (default
runs/bench/bench_gpu.json) after each part, so a failure keeps the parts that finished.

    PYTHONPATH=. python bench/bench_gpu.py [--quick] [--checkpoint runs/paper/full/model.pth] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dmtrack.bench import checked_out, default_out
from dmtrack.config import load_config
from dmtrack.io import atomic_write_json
from dmtrack.precision import native_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import write_lasot_tree  # noqa: E402

TEXT = "the textured square moving to the right"
PAPER = dict(text_encoder="bert-base-random")


def environment(device) -> dict:
    env = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
           "arch_list": torch.cuda.get_arch_list() if torch.cuda.is_available() else [],
           "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "native_bf16": native_bf16(device)}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                   memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return env


# ----------------------------------------------------------------------------- 1. training
def train_speed(precision: str, batch: int, steps: int, device, variant: str = "full", size: str = "paper",
                text: dict | None = None) -> dict:
    """pairs/s of the training step at `size` as dmtrack.train.timing times it for the chain's estimate
    (the training's middle epoch; fp32 runs as the training runs it: TF32 matmuls on a GPU); the batch
    is halved while it does not fit. text: config overrides of the text encoder (default PAPER's)."""
    from dmtrack.train.timing import TrainingStep, random_pairs

    cfg = load_config(size, variant, train_precision=precision, **{**PAPER, **(text or {})})
    while True:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # this precision's (and batch's) own peak
        try:
            step = TrainingStep(cfg, device)
            data = random_pairs(cfg, batch)
            if device.type == "cuda":  # as the loader hands a batch over
                data = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in data.items()}
            step_s, losses = step.median(data, steps)  # the first step warms up (allocator, cuDNN plans)
            grads = [p.grad for p in step.model.parameters() if p.grad is not None]
            out = {"batch": batch, "steps": steps, "step_s_median": round(step_s, 4), "pairs_per_s": round(batch / step_s, 2),
                   "loss_finite": bool(torch.isfinite(losses["total"]).item()),
                   "grads_finite": bool(torch.stack([g.float().abs().max() for g in grads]).isfinite().all().item())}
            if device.type == "cuda":
                out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            return out
        except torch.cuda.OutOfMemoryError:
            step = data = None  # free them (a `del` raised NameError when building the model ran out)
            torch.cuda.empty_cache()
            if batch == 1:
                raise
            batch //= 2


# ----------------------------------------------------------------------------- 2. data pipeline
def data_speed(root: Path, batches: int, batch: int) -> dict:
    """pairs/s of PairDataset through the DataLoader with the paper profile's workers (after the
    first batch, which starts the workers)."""
    from torch.utils.data import DataLoader

    from dmtrack.data import load_benchmark
    from dmtrack.train.sampler import (PairDataset, PairSampler, collate, data_workers, single_threaded_workers,
                                       worker_init)

    cfg = load_config("paper", "full", train_datasets={"synthetic": 1.0}, batch_size=batch, **PAPER)
    data = PairDataset(cfg, {"synthetic": load_benchmark("synthetic_train", root=root, progress=False)})
    workers = data_workers(cfg)  # num_workers=auto resolved as the training resolves it
    single_threaded_workers(workers)
    loader = DataLoader(data, batch_size=batch, sampler=PairSampler(batch * (batches + 1)), num_workers=workers,
                        worker_init_fn=worker_init, collate_fn=collate, drop_last=True)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = sum(len(b["text"]) for b in it)
    s = time.perf_counter() - t
    return {"workers": workers, "batch": batch, "pairs": n, "pairs_per_s": round(n / s, 1),
            "frame_size": "1280x720", "per_worker": round(n / s / max(workers, 1), 1)}


# ----------------------------------------------------------------------------- 3. tracking speed
def moving_frames(n: int, h: int = 480, w: int = 640, seed: int = 0):
    """n RGB frames of a textured square moving over a textured background, and its first box."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    patch = rng.integers(0, 256, (h // 8, h // 8, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        f = bg.copy()
        x, y = w // 3 + 2 * i, h // 3 + i
        f[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
        frames.append(f)
    return frames, [w // 3, h // 3, patch.shape[1], patch.shape[0]]


def tracking_speed(precisions, frames: int, warmup: int, device) -> dict:
    """ms per frame (median) of Tracker.track at batch 1 for the three trackers of issue 4."""
    from dmtrack.model import build_model
    from dmtrack.track import Tracker

    images, box = moving_frames(frames + warmup + 1)
    models = {}
    for variant in ("no_diffusion", "full"):
        torch.manual_seed(0)
        cfg = load_config("paper", variant, **PAPER)
        models[variant] = (build_model(cfg).to(device).eval(), cfg)
    out = {}
    for precision in precisions:
        ms = {}
        for name, variant, k in (("no_diffusion", "no_diffusion", 1), ("full_k1", "full", 1), ("full_k5", "full", 5)):
            tr = Tracker(*models[variant], samples=k, precision=precision, device=device)
            tr.initialize(images[0], box, TEXT)
            times = []
            for i, img in enumerate(images[1:]):
                t = time.perf_counter()
                tr.track(img, return_mask=False)  # ends with the box's host copy: the device is done
                if i >= warmup:
                    times.append(time.perf_counter() - t)
            ms[name] = statistics.median(times) * 1000
        out[precision] = {"ms_per_frame": {k: round(v, 2) for k, v in ms.items()},
                          "fps": {k: round(1000 / v, 1) for k, v in ms.items()},
                          "full_k1_over_no_diffusion": round(ms["full_k1"] / ms["no_diffusion"], 3),
                          "full_k5_over_k1": round(ms["full_k5"] / ms["full_k1"], 3)}
    return out


# ----------------------------------------------------------------------------- 4. accuracy, batching
def smoke_sequences(root: Path, n: int):
    """The test sequences of the smoke synthetic benchmark (generated into root), n at most."""
    from dmtrack.data import load_benchmark
    from dmtrack.data.synthetic import generate

    generate(root, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    seqs = [s for b in ("synthetic_lasot", "synthetic_lasot_ext", "synthetic_tnl2k", "synthetic_otb_lang")
            for s in load_benchmark(b, root=root, progress=False)]
    return seqs[:n]


def track_all(tracker, seqs, frames: int, batch: int = 1) -> tuple[dict, float]:
    """({name: boxes}, frames/s) of tracking seqs one at a time, or `batch` at once."""
    from dmtrack.track import BatchTracker, track_sequence

    t = time.perf_counter()
    if batch == 1:
        boxes = {s.name: track_sequence(tracker, s, frames=frames)["boxes"] for s in seqs}
    else:
        boxes = {n: r["boxes"] for n, r in BatchTracker(tracker, batch).run(seqs, frames).items()}
    return boxes, sum(len(b) for b in boxes.values()) / (time.perf_counter() - t)


def accuracy_and_batching(seqs, frames: int, checkpoint: str | None, device) -> dict:
    """AUC (pytracking protocol) at fp32 and bf16 and their paired difference; fp32 batched against
    one at a time (same model): frames/s and the largest box difference."""
    from dmtrack.data import truncate
    from dmtrack.eval import paired_difference_ci, score_sequences
    from dmtrack.model import build_model
    from dmtrack.track import Tracker, load_model

    if checkpoint:
        model, cfg = load_model(checkpoint, device)
    else:
        torch.manual_seed(0)
        cfg = load_config("paper", "full", **PAPER)
        model = build_model(cfg).to(device).eval()
    cut = [truncate(s, frames) for s in seqs]
    out, per_seq, boxes = {"weights": checkpoint or "random (seeded)", "sequences": len(seqs), "frames_each": frames}, {}, {}
    for precision in ("fp32", "bf16"):
        boxes[precision], fps = track_all(Tracker(model, cfg, precision=precision, device=device), seqs, frames)
        scores = score_sequences(boxes[precision], cut, benchmark="synthetic smoke")
        per_seq[precision] = scores.per_sequence()["auc"]
        out[precision] = {"auc": round(scores.overall()["auc"], 2), "fps": round(fps, 2)}
    ci = paired_difference_ci(per_seq["bf16"], per_seq["fp32"])
    out["auc_bf16_minus_fp32"] = {"mean": round(ci.estimate, 2), "ci95": [round(ci.low, 2), round(ci.high, 2)]}
    batched, fps = track_all(Tracker(model, cfg, precision="fp32", device=device), seqs, frames, batch=len(seqs))
    diff = np.concatenate([np.abs(batched[n] - boxes["fp32"][n]).max(1) for n in batched])
    out["batched"] = {"batch": len(seqs), "fps": round(fps, 2), "fps_one_at_a_time": out["fp32"]["fps"],
                      "speedup": round(fps / out["fp32"]["fps"], 2), "max_box_diff_px": float(diff.max()),
                      "frames_within_0.01px": round(float((diff <= 0.01).mean()), 4),
                      "auc": round(score_sequences(batched, cut, benchmark="synthetic smoke").overall()["auc"], 2)}
    return out


# ----------------------------------------------------------------------------- main
SETTINGS = {  # GPU: the real sizes, a few minutes; CPU (or --quick): the same measurements, smaller
    "gpu": dict(train_batch=64, train_steps=5, train_precisions=("fp32", "bf16", "fp16"), data_seqs=8, data_frames=40,
                data_batches=10, data_batch=64, track_frames=30, track_warmup=5, track_precisions=("fp32", "bf16", "fp16"),
                auc_seqs=8, auc_frames=None),
    "cpu": dict(train_batch=2, train_steps=2, train_precisions=("fp32", "bf16"), data_seqs=4, data_frames=20,
                data_batches=3, data_batch=16, track_frames=5, track_warmup=1, track_precisions=("fp32", "bf16"),
                auc_seqs=4, auc_frames=15),
}


def report(result: dict) -> None:
    env = result["environment"]
    print(f"device {env['device']} {env.get('gpu', '(no GPU: CPU settings)')} torch {env['torch']} native bf16 {env['native_bf16']}")
    for p, r in result["train"].items():
        print(f"train {p:5s} batch {r['batch']:3d}: {r['pairs_per_s']:8.2f} pairs/s ({r['step_s_median']} s/step)")
    d = result["data"]
    print(f"data pipeline, {d['workers']} workers, {d['frame_size']} JPEGs: {d['pairs_per_s']} pairs/s ({d['per_worker']} per worker)")
    for p, r in result["tracking"].items():
        print(f"track {p:5s} fps " + ", ".join(f"{k} {v}" for k, v in r["fps"].items())
              + f"; k1/no_diffusion {r['full_k1_over_no_diffusion']} (goal <= 1.15), k5/k1 {r['full_k5_over_k1']} (goal <= 1.5)")
    a = result["accuracy"]
    print(f"AUC on {a['sequences']} smoke sequences ({a['weights']} weights): fp32 {a['fp32']['auc']}, bf16 {a['bf16']['auc']}, "
          f"bf16 - fp32 {a['auc_bf16_minus_fp32']['mean']} {a['auc_bf16_minus_fp32']['ci95']}")
    b = a["batched"]
    print(f"batched tracking, {b['batch']} sequences at once: {b['fps']} fps vs {b['fps_one_at_a_time']} one at a time "
          f"({b['speedup']}x); boxes within 0.01 px of one at a time on {100 * b['frames_within_0.01px']:.1f} % of frames "
          f"(largest difference {b['max_box_diff_px']:.2g} px), AUC {b['auc']} vs {a['fp32']['auc']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the CPU settings on any device")
    ap.add_argument("--checkpoint", default=None, help="a paper-size model.pth for the AUC part (default: random weights)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=default_out("gpu"), help="the JSON written after each part (default: %(default)s)")
    args = ap.parse_args()
    out = checked_out(args.out)  # now: found unwritable at the end, the whole run would be lost
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = "gpu" if device.type == "cuda" and not args.quick else "cpu"
    if device.type != "cuda":
        print("no GPU visible: running the CPU settings (smaller batches, fewer steps and frames)", flush=True)
    st, t0 = SETTINGS[kind], time.perf_counter()
    result = {"environment": environment(device), "settings": kind, "train": {}}
    for precision in st["train_precisions"]:
        result["train"][precision] = train_speed(precision, st["train_batch"], st["train_steps"], device)
        print("train", precision, result["train"][precision], flush=True)
        atomic_write_json(out, result)  # after each part: a later failure keeps what finished
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpeg"
        write_lasot_tree(root / "train", st["data_seqs"], st["data_frames"])
        result["data"] = data_speed(root, st["data_batches"], st["data_batch"])
        print("data", result["data"], flush=True)
        atomic_write_json(out, result)
        result["tracking"] = tracking_speed(st["track_precisions"], st["track_frames"], st["track_warmup"], device)
        print("tracking", result["tracking"], flush=True)
        atomic_write_json(out, result)
        seqs = smoke_sequences(Path(tmp) / "smoke", st["auc_seqs"])
        result["accuracy"] = accuracy_and_batching(seqs, st["auc_frames"], args.checkpoint, device)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out, result)
    report(result)
    print(f"{result['seconds']} s; wrote {out}")


if __name__ == "__main__":
    main()
