"""How long `dmtrack score` takes end to end on a LaSOT-sized test tree (target: at most 2 s).

Writes a fake LaSOT root (default 280 sequences x 2,450 frames = 686,000 empty frame files,
70 classes x 4, with groundtruth/flag/sentence files and testing_set.txt) and one raw-result
file per sequence, then times

    python -m dmtrack score --benchmark lasot --data-root <root> --results <results>

as a new process (imports, reading the annotations and the results, scoring, printing), the
first run and the median of --repeat more, in wall and CPU seconds (the target is judged on
CPU time when the shared machine is busy, as bench_scoring.py does). It also times, in this process, loading the
benchmark with and without listing the frames (`load_benchmark(..., frames=True/False)`):
scoring never opens a frame, and listing 686k frame paths was most of the old command's time.
--repo times another checkout's `dmtrack score` on the same tree (e.g. a worktree of an older
commit, for a before/after). Prints a table and writes bench/results/bench_scoring_tree.json.

    .venv/bin/python bench/bench_scoring_tree.py [--sequences 280] [--frames 2450] [--repeat 3] [--repo DIR] [--tree DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dmtrack.data import load_benchmark  # noqa: E402
from dmtrack.data.lasot import write_sequence, write_split  # noqa: E402
from dmtrack.eval import write_results  # noqa: E402
from dmtrack.io import atomic_write_json  # noqa: E402

TARGET_S = 2.0


def write_tree(root: Path, results: Path, n_seq: int, n_frames: int) -> None:
    """The LaSOT test layout with empty frame files, and a results folder of gt + 3 px noise."""
    rng = np.random.default_rng(0)
    gt = np.stack([10 + np.arange(n_frames) % 50, 20 + np.arange(n_frames) % 30,
                   40 + np.arange(n_frames) % 7, 30 + np.arange(n_frames) % 5], 1)
    names = []
    for s in range(n_seq):
        cls = f"class{s // 4:02d}"
        name = f"{cls}-{s % 4 + 1}"
        write_sequence(root / cls / name, gt.tolist(), "a small object moving on the left\n", frames=[b""] * n_frames)
        write_results(results, name, gt + rng.normal(0, 3, gt.shape))
        names.append(name)
    write_split(root, names)


def time_cli(repo: Path, root: Path, results: Path, repeat: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of each `python -m dmtrack score` run, the first one included. CPU time
    (user + system of the child) is what the command costs; wall time grows with the machine's load."""
    cmd = [sys.executable, "-m", "dmtrack", "score", "--benchmark", "lasot", "--data-root", str(root),
           "--results", str(results)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    wall, cpu = [], []
    for _ in range(1 + repeat):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        run = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall.append(time.perf_counter() - t0)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (rc {run.returncode}):\n{run.stderr[-2000:]}")
    return wall, cpu


def summary(prefix: str, wall: list[float], cpu: list[float]) -> dict:
    return {f"{prefix}first_wall_s": round(wall[0], 2), f"{prefix}wall_s_median": round(statistics.median(wall[1:]), 2),
            f"{prefix}cpu_s_median": round(statistics.median(cpu[1:]), 2)}


def time_load(root: Path, frames: bool, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        load_benchmark("lasot", root, frames=frames, progress=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=280)
    ap.add_argument("--frames", type=int, default=2450)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", type=Path, help="also time this checkout's `dmtrack score` (before/after)")
    ap.add_argument("--tree", type=Path, help="write the tree into this folder and keep it; a later run with "
                                              "the same --sequences/--frames reuses it (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_scoring_tree.json")
    args = ap.parse_args()
    os.environ["DMTRACK_LASOT_SPLIT_CHECK"] = "0"  # class00-1 ... are not LaSOT's test names (here and in `score`)
    with tempfile.TemporaryDirectory(prefix="bench_scoring_tree_") as tmp:
        base = args.tree or Path(tmp)
        root, results = base / "LaSOT", base / "results"
        t0 = time.perf_counter()
        if not (root / "testing_set.txt").is_file():  # written last: a tree that has it is complete
            write_tree(root, results, args.sequences, args.frames)
        res = {"benchmark": "dmtrack score, LaSOT-sized tree", "sequences": args.sequences,
               "frames_per_sequence": args.frames, "total_frames": args.sequences * args.frames,
               "write_tree_s": round(time.perf_counter() - t0, 1), "target_s": TARGET_S}
        res.update(summary("score_", *time_cli(REPO, root, results, args.repeat)))
        res["meets_target"] = min(res["score_wall_s_median"], res["score_cpu_s_median"]) <= TARGET_S
        if args.repo:
            res.update(other_repo=str(args.repo), **summary("other_score_", *time_cli(args.repo.resolve(), root,
                                                                                     results, args.repeat)))
        res["load_annotations_only_s"] = round(time_load(root, False, args.repeat), 3)
        res["load_with_frames_s"] = round(time_load(root, True, args.repeat), 3)
    res.update(load_average_1min=round(os.getloadavg()[0], 2), cpu_count=os.cpu_count(),
               python=platform.python_version())
    print(f"{'quantity':<28}{'value':>12}")
    for k, v in res.items():
        if k not in ("benchmark", "python", "other_repo"):
            print(f"{k:<28}{v!s:>12}")
    atomic_write_json(args.out, res)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
