"""Training pairs per second per core: the pipeline before issue 14, whole-frame decoding, and reduced JPEG decoding.

Writes a LaSOT-layout root in a temporary folder (--sequences sequences of --frames textured
1280x720 JPEGs; the target's sqrt(w h) is log-uniform in [--min-side, --max-side] pixels, one
size per sequence, moving and breathing), loads it with the real LaSOT reader, and draws the
same pairs from PairDataset at the paper profile's crop sizes (template 128 at factor 2, search
256 at factor 4) in three ways, one thread each, alternating rounds so that all see the same
machine load:
- before: the code at --baseline-rev (default beae5b7, the commit before issue 14's data-pipeline
  work: every frame decoded whole and turned to RGB, brightness in float64, crops normalised to
  float32 in the worker), checked out with `git worktree` and timed in a child process;
- whole frames: this code with reduced_decode=False;
- reduced decode: this code as configured (reduced_decode=True).
This code keeps frames in BGR until they are cropped, jitters brightness through a table and
leaves normalisation to the training device (uint8 items). Pairs per second per core = pairs / CPU
seconds of the timing process (wall-clock rates are printed too). Prints a table and writes
bench/results/bench_data_pipeline.json.

    .venv/bin/python bench/bench_data_pipeline.py [--pairs 200] [--rounds 5] [--baseline-rev REV|'']
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import write_lasot_tree  # noqa: E402
from dmtrack.config import load_config  # noqa: E402
from dmtrack.data import load_benchmark  # noqa: E402
from dmtrack.data.crop import decode_scale  # noqa: E402
from dmtrack.io import atomic_write_json  # noqa: E402
from dmtrack.provenance import provenance  # noqa: E402
from dmtrack.train.sampler import PairDataset  # noqa: E402

W, H = 1280, 720
REPO = Path(__file__).resolve().parents[1]

# What a child process runs to time the baseline checkout on the same keys (prints "cpu wall" pairs/s).
_BASELINE = """
import sys, time, warnings
warnings.simplefilter("ignore")
import cv2, torch
cv2.setNumThreads(1); torch.set_num_threads(1)
from pathlib import Path
from dmtrack.config import load_config
from dmtrack.data import load_benchmark
from dmtrack.train.sampler import PairDataset
root, first, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seqs = load_benchmark("lasot", root, split="train", custom_split=True, progress=False)
data = PairDataset(load_config("paper", train_datasets={"lasot": 1.0}, pairs_per_epoch=10**6), {"lasot": seqs})
for k in range(3):
    data[(1, k)]
c0, w0 = time.process_time(), time.perf_counter()
for k in range(first, first + n):
    data[(0, k)]
print(n / (time.process_time() - c0), n / (time.perf_counter() - w0))
"""


def baseline_rate(checkout: Path, root: Path, keys: list[int]) -> tuple[float, float]:
    """(pairs per CPU second, pairs per wall second) of the baseline checkout's PairDataset on `keys`."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", _BASELINE, str(root), str(keys[0]), str(len(keys))],
                         env=env, capture_output=True, text=True, check=True, cwd=checkout)
    cpu, wall = out.stdout.split()[-2:]
    return float(cpu), float(wall)


def baseline_checkout(rev: str, tmp: Path) -> Path | None:
    """A detached `git worktree` of this repository at `rev` under `tmp`, or None (said why) without git history."""
    where = tmp / "baseline"
    made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(where), rev],
                          capture_output=True, text=True)
    if made.returncode:
        print(f"no baseline: git worktree at {rev} failed: {made.stderr.strip().splitlines()[-1:]}")
        return None
    return where


BEFORE = "before (baseline rev: whole frames, worker normalises)"
WHOLE = "whole frames (reduced_decode=False)"
REDUCED = "reduced decode (reduced_decode=True)"


def pairs_rate(data: PairDataset, keys: list[int]) -> tuple[float, float]:
    """(pairs per CPU second, pairs per wall second) over `keys`, full items as the DataLoader gets them."""
    c0, w0 = time.process_time(), time.perf_counter()
    for k in keys:
        data[(0, k)]
    return len(keys) / (time.process_time() - c0), len(keys) / (time.perf_counter() - w0)


def scales_used(cfg, data: PairDataset, keys: list[int]) -> dict:
    """How many template and search crops decode at 1/1, 1/2, 1/4, 1/8 (the same draws as the timed ones)."""
    count = Counter()
    for k in keys:
        s = data.raw(0, k)
        seq = next(q for qs in data.seqs for q, _ in qs if q.name == s["seq"])
        count[decode_scale(seq.boxes[s["frame_ids"][0]], cfg.template_factor, cfg.template_size)] += 1
        count[decode_scale(s["jittered_box"], cfg.search_factor, cfg.search_size)] += 1
    return {f"1/{f}": count[f] for f in sorted(count)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=6)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--min-side", type=float, default=48.0, help="smallest target sqrt(w h), pixels")
    ap.add_argument("--max-side", type=float, default=320.0, help="largest target sqrt(w h), pixels")
    ap.add_argument("--pairs", type=int, default=200, help="pairs per mode per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-rev", default="beae5b7", help="git revision of the 'before' pipeline ('' = none)")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core, as one data worker (dmtrack.train.sampler.worker_init)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_data_pipeline_") as tmp:
        root = Path(tmp) / "LaSOT"
        sizes = write_lasot_tree(root, args.sequences, args.frames, sides=(args.min_side, args.max_side))
        seqs = load_benchmark("lasot", root, split="train", custom_split=True, progress=False)
        paper = load_config("paper", train_datasets={"lasot": 1.0}, pairs_per_epoch=10**6)
        modes = {WHOLE: paper.replace(reduced_decode=False), REDUCED: paper.replace(reduced_decode=True)}
        data = {name: PairDataset(cfg, {"lasot": seqs}) for name, cfg in modes.items()}
        checkout = baseline_checkout(args.baseline_rev, Path(tmp)) if args.baseline_rev else None
        rates = {name: [] for name in ([BEFORE] if checkout else []) + list(modes)}
        try:
            for r in range(args.rounds):
                keys = list(range(r * args.pairs, (r + 1) * args.pairs))
                if checkout:
                    rates[BEFORE].append(baseline_rate(checkout, root, keys))
                for name in modes:
                    rates[name].append(pairs_rate(data[name], keys))
        finally:
            if checkout:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)], capture_output=True)
        scales = scales_used(paper, data[WHOLE], list(range(args.rounds * args.pairs)))
    cpu = {name: statistics.median(c for c, _ in v) for name, v in rates.items()}
    wall = {name: statistics.median(w for _, w in v) for name, v in rates.items()}
    base = cpu.get(BEFORE, cpu[WHOLE])
    ratios = {name: cpu[name] / base for name in cpu}
    print(f"{'mode':52s} {'pairs/s/core (CPU)':>19s} {'pairs/s (wall)':>15s} {'ratio':>6s}")
    for name in rates:
        print(f"{name:52s} {cpu[name]:19.1f} {wall[name]:15.1f} {ratios[name]:5.2f}x")
    print(f"ratios against: {BEFORE if BEFORE in cpu else WHOLE}; crops by decode scale: {scales}")
    out = Path(__file__).with_name("results") / "bench_data_pipeline.json"
    atomic_write_json(out, {
        "pairs_per_cpu_second": cpu, "pairs_per_wall_second": wall, "ratio": ratios[REDUCED], "ratios": ratios,
        "baseline_rev": args.baseline_rev if checkout else None,
        "rounds": {name: [list(x) for x in v] for name, v in rates.items()}, "crops_by_decode_scale": scales,
        "target_sqrt_wh": sizes, "frame_size": [W, H], "template": [paper.template_size, paper.template_factor],
        "search": [paper.search_size, paper.search_factor], "args": vars(args), **provenance()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
