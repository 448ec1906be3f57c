"""bf16 autocast against fp32 on this CPU: the paper-size tracker and demo training, speed and AUC.

1. Tracker.track at the paper size (full k=1 and no_diffusion, random weights: latency does not
   depend on them) under fp32 and bf16, interleaved round by round;
2. a demo training step (dmtrack.train.timing's, the chain estimate's: batch 32, in-memory pairs, the
   training's middle epoch) under fp32 and bf16, interleaved;
3. with --checkpoint (and --data-root): that model tracked at fp32 and at bf16 on the synthetic
   suites, AUC (pytracking protocol) of each and the paired difference with its 95 % bootstrap CI;
   with --against, a second model (e.g. the same recipe trained under bf16) tracked at fp32 and
   compared with the first the same way.

Medians of wall time and of process CPU time: on a shared machine wall times swing with the other
jobs, CPU time much less; compare the ratios. Writes bench/results/bench_precision.json.

    PYTHONPATH=. python bench/bench_precision.py [--threads 2] [--rounds 3] \
        [--checkpoint runs/demo/full/model.pth --data-root data/synthetic [--against runs/demo/full_bf16/model.pth]]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dmtrack.config import load_config
from dmtrack.io import atomic_write_json

SUITES = ("synthetic_lasot", "synthetic_lasot_ext", "synthetic_tnl2k", "synthetic_otb_lang")
PRECISIONS = ("fp32", "bf16")


def timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def summary(samples: dict) -> dict:
    """{name: [(wall, cpu), ...]} -> medians in ms and the bf16 / fp32 ratios."""
    med = {k: {"wall_ms": round(1000 * statistics.median(w for w, _ in v), 2),
               "cpu_ms": round(1000 * statistics.median(c for _, c in v), 2)} for k, v in samples.items()}
    ratios = {}
    for k in med:
        if k.endswith("bf16"):
            base = med[k.replace("bf16", "fp32")]
            ratios[k.replace("_bf16", "")] = {"wall": round(med[k]["wall_ms"] / base["wall_ms"], 3),
                                              "cpu": round(med[k]["cpu_ms"] / base["cpu_ms"], 3)}
    return {"median": med, "bf16_over_fp32": ratios}


def tracker_speed(frames: int, rounds: int) -> dict:
    from dmtrack.model import build_model
    from dmtrack.track import Tracker

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(frames + 1)]
    trackers = {}
    for variant in ("full", "no_diffusion"):
        torch.manual_seed(0)
        cfg = load_config("paper", variant, text_encoder="bert-base-random")
        model = build_model(cfg).eval()
        for p in PRECISIONS:
            trackers[f"{variant}_{p}"] = Tracker(model, cfg, precision=p)
    samples = {k: [] for k in trackers}
    for _ in range(rounds):
        for name, tr in trackers.items():
            tr.initialize(images[0], [280, 200, 80, 80], "the textured square")
            tr.track(images[1], return_mask=False)  # warm-up
            samples[name] += [timed(lambda: tr.track(img, return_mask=False)) for img in images[1:]]
    return summary(samples)


def training_speed(steps: int, rounds: int) -> dict:
    """The demo's training step as the chain's estimate times it (dmtrack.train.timing), per precision."""
    from dmtrack.train.timing import TrainingStep, random_pairs

    cfg = load_config("demo", "full")
    batch = random_pairs(cfg, cfg.batch_size)
    runs = {f"demo_step_{p}": TrainingStep(cfg, "cpu", precision=p) for p in PRECISIONS}
    for step in runs.values():
        step(batch)  # warm-up (text cache, allocator)
    samples = {k: [] for k in runs}
    for _ in range(rounds):
        for name, step in runs.items():
            samples[name] += [timed(lambda: step(batch)) for _ in range(steps)]
    return summary(samples)


def suite_aucs(model, cfg, root, precision: str) -> dict:
    """{suite: per-sequence AUC Series} of `model` tracked at `precision` over the synthetic suites."""
    from dmtrack.data import load_benchmark
    from dmtrack.eval import score_sequences
    from dmtrack.track import Tracker, track_sequence

    tracker = Tracker(model, cfg, precision=precision)
    out = {}
    for suite in SUITES:
        seqs = load_benchmark(suite, root=root, progress=False)
        boxes = {s.name: track_sequence(tracker, s)["boxes"] for s in seqs}
        out[suite] = score_sequences(boxes, seqs, benchmark=suite).per_sequence()["auc"]
    return out


def compare(a: dict, b: dict) -> dict:
    """Mean AUC of a and b per suite and pooled over every sequence, and the paired difference b - a."""
    import pandas as pd

    from dmtrack.eval import paired_difference_ci

    out = {}
    for suite in [*a, "pooled"]:
        x = pd.concat(a.values(), keys=list(a)) if suite == "pooled" else a[suite]
        y = pd.concat(b.values(), keys=list(b)) if suite == "pooled" else b[suite]
        ci = paired_difference_ci(y, x)
        out[suite] = {"a": round(float(x.mean()), 2), "b": round(float(y.mean()), 2),
                      "b_minus_a": [round(ci.estimate, 2), round(ci.low, 2), round(ci.high, 2)], "n": ci.n}
    return out


def accuracy(checkpoint: str, against: str | None, root) -> dict:
    from dmtrack.track import load_model

    model, cfg = load_model(checkpoint, "cpu")
    aucs = {p: suite_aucs(model, cfg, root, p) for p in PRECISIONS}
    out = {"checkpoint": checkpoint, "tracked_bf16_vs_fp32": compare(aucs["fp32"], aucs["bf16"])}
    if against:
        other, ocfg = load_model(against, "cpu")
        out["against"] = against
        out["against_vs_checkpoint_fp32_tracking"] = compare(aucs["fp32"], suite_aucs(other, ocfg, root, "fp32"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=4, help="timed frames per tracker per round")
    ap.add_argument("--steps", type=int, default=3, help="timed demo steps per precision per round")
    ap.add_argument("--checkpoint", default=None, help="a trained model.pth: AUC at fp32 vs bf16 tracking")
    ap.add_argument("--against", default=None, help="a second model.pth compared with --checkpoint (fp32 tracking)")
    ap.add_argument("--data-root", default=None, help="the synthetic benchmark's folder (default: $DMTRACK_DATA/synthetic)")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = {"avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported(),
           "capability": torch.backends.cpu.get_cpu_capability()}
    result = {"threads": args.threads, "cores": os.cpu_count(), "cpu": cpu, "load_average_start": os.getloadavg()}
    if not args.skip_speed:
        result["paper_tracker"] = tracker_speed(args.frames, args.rounds)
        print("paper tracker", result["paper_tracker"], flush=True)
        result["demo_training"] = training_speed(args.steps, args.rounds)
        print("demo training", result["demo_training"], flush=True)
    if args.checkpoint:
        result["accuracy"] = accuracy(args.checkpoint, args.against, args.data_root)
        for what in ("tracked_bf16_vs_fp32", "against_vs_checkpoint_fp32_tracking"):
            for suite, r in result["accuracy"].get(what, {}).items():
                print(f"{what:38s} {suite:20s} AUC a {r['a']:6.2f}  b {r['b']:6.2f}  b - a {r['b_minus_a']} (n={r['n']})")
    result["load_average_end"] = os.getloadavg()
    out = Path(__file__).resolve().parent / "results" / "bench_precision.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
