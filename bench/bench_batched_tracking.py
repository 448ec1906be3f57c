"""Several sequences at once (BatchTracker) against one at a time (Tracker): frames/s, same boxes.

Tracks the first --sequences sequences of a synthetic suite (--frames each) with a model of the
chosen profile (random weights: speed does not depend on them), one at a time and then --batches
at once, in one process, and reports frames/s (wall clock and process CPU time, frame reading
included in both, as in `dmtrack evaluate`) and the largest box difference from one at a time.
Box differences stay at float rounding while no frame's arg-max is a near tie; an untrained
paper-size model's flat score maps amplify them (see docs/tracking.md).

    PYTHONPATH=. python bench/bench_batched_tracking.py [--data-root data/synthetic] [--profile demo]
        [--samples 1] [--batches 2,4,8] [--sequences 8] [--frames 60] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dmtrack.config import load_config
from dmtrack.data import load_benchmark
from dmtrack.io import atomic_write_json
from dmtrack.model import build_model
from dmtrack.track import BatchTracker, Tracker, track_sequence


def run(tracker, seqs, frames: int, batch: int) -> tuple[dict, float, float]:
    t, c = time.perf_counter(), time.process_time()
    if batch == 1:
        boxes = {s.name: track_sequence(tracker, s, frames=frames)["boxes"] for s in seqs}
    else:
        boxes = {n: r["boxes"] for n, r in BatchTracker(tracker, batch).run(seqs, frames).items()}
    return boxes, time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None, help="synthetic benchmark folder (default: smoke preset generated in a temp dir)")
    ap.add_argument("--suite", default="synthetic_lasot")
    ap.add_argument("--profile", default="demo", choices=("smoke", "demo", "paper"))
    ap.add_argument("--samples", type=int, default=1, help="k diffusion samplings per frame")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batches", default="2,4,8")
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from dmtrack.data.synthetic import generate
            root = Path(tmp) / "smoke"
            generate(root, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
        seqs = load_benchmark(args.suite, root=root, progress=False)[:args.sequences]
        torch.manual_seed(0)
        cfg = load_config(args.profile, "full", text_encoder="bert-base-random" if args.profile == "paper" else "minilm")
        tracker = Tracker(build_model(cfg).eval(), cfg, samples=args.samples, precision=args.precision)
        frames = sum(min(len(s), args.frames) for s in seqs)
        rows = {}
        for batch in [1] + [int(b) for b in args.batches.split(",")]:
            boxes, wall, cpu = run(tracker, seqs, args.frames, batch)
            if batch == 1:
                ref = boxes
            diff = max(float(np.abs(boxes[n] - ref[n]).max()) for n in ref)
            rows[batch] = {"fps": round(frames / wall, 2), "fps_cpu_time": round(frames / cpu, 2), "max_box_diff_px": diff}
            print(f"batch {batch:2d}: {rows[batch]['fps']:8.2f} frames/s ({rows[batch]['fps_cpu_time']:8.2f} per CPU second), "
                  f"largest box difference from one at a time {diff:.2g} px", flush=True)
    for b, r in rows.items():
        r["speedup"] = round(r["fps"] / rows[1]["fps"], 2)
        r["speedup_cpu_time"] = round(r["fps_cpu_time"] / rows[1]["fps_cpu_time"], 2)
    result = {"profile": args.profile, "samples": args.samples, "precision": args.precision, "suite": args.suite,
              "sequences": len(seqs), "frames": frames, "threads": args.threads, "cores": os.cpu_count(),
              "load_average": os.getloadavg(), "batches": rows}
    out = Path(__file__).resolve().parent / "results" / "bench_batched_tracking.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
