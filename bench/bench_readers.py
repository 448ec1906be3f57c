"""How long `load_benchmark("lasot")` takes on a LaSOT-sized test split.

Writes a fake LaSOT root (default the official 280 test sequences x 2,500 frames, zero-byte
frame files: the readers list folders but never decode images) in a temporary folder,
then times load_benchmark over it: once right after writing, then the median of --repeat
runs. Prints a table and writes bench/results/bench_readers.json.

    .venv/bin/python bench/bench_readers.py [--sequences 280] [--frames 2500] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dmtrack.data import load_benchmark  # noqa: E402
from dmtrack.data.lasot import official_test_names, write_sequence, write_split  # noqa: E402
from dmtrack.io import atomic_write_json


def write_fake_lasot(root: Path, n_seq: int, n_frames: int) -> None:
    rows = [(10 + i % 50, 20 + i % 30, 40 + i % 7, 30 + i % 5) for i in range(n_frames)]
    names = official_test_names()[:n_seq]
    for name in names:
        write_sequence(root / name.rsplit("-", 1)[0] / name, rows, "a small object moving on the left\n",
                       frames=[b""] * n_frames)
    write_split(root, names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=280, help="the first N official test names (N < 280: a custom split)")
    ap.add_argument("--frames", type=int, default=2500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_readers_") as tmp:
        root = Path(tmp) / "LaSOT"
        t0 = time.perf_counter()
        write_fake_lasot(root, args.sequences, args.frames)
        t_write = time.perf_counter() - t0
        times = []
        for _ in range(1 + args.repeat):
            t0 = time.perf_counter()
            seqs = load_benchmark("lasot", root, progress=False, custom_split=args.sequences != 280)
            times.append(time.perf_counter() - t0)
        assert len(seqs) == args.sequences and sum(map(len, seqs)) == args.sequences * args.frames
    first, warm = times[0], statistics.median(times[1:])
    frames = args.sequences * args.frames
    res = {"benchmark": "load_benchmark('lasot')", "sequences": args.sequences, "frames_per_sequence": args.frames,
           "total_frames": frames, "write_fixture_s": round(t_write, 2), "first_load_s": round(first, 3),
           "warm_load_s_median": round(warm, 3), "warm_ms_per_sequence": round(1000 * warm / args.sequences, 2),
           "warm_us_per_frame": round(1e6 * warm / frames, 3), "cpu_count": os.cpu_count(),
           "python": platform.python_version()}
    print(f"{'quantity':<28}{'value':>12}")
    for k in ("sequences", "total_frames", "first_load_s", "warm_load_s_median", "warm_ms_per_sequence",
              "warm_us_per_frame"):
        print(f"{k:<28}{res[k]:>12}")
    out = Path(__file__).resolve().parent / "results" / "bench_readers.json"
    atomic_write_json(out, res)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
