"""`python -m dmtrack bench NAME|all`: run the speed benchmarks in the project's bench/ folder.

Benchmarks are plain scripts (`bench/bench_<name>.py`), each printing a table and writing
`bench/results/bench_<name>.json`. Speed targets live there, never in timed tests: the
machines are shared and noisy, so compare ratios measured in one run.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from dmtrack.cli import UsageError

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def add_arguments(parser):
    parser.add_argument("name", help=f"which benchmark, or 'all' (found: {', '.join(available()) or 'none'})")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed on to the benchmark script")


def run(args) -> int:
    names = available() if args.name == "all" else [args.name]
    for name in names:
        script = BENCH_DIR / f"bench_{name}.py"
        if not script.exists():
            raise UsageError(f"no benchmark {script} (found: {', '.join(available())})")
        print(f"== bench {name} ({script})", flush=True)
        saved = sys.argv
        sys.argv = [str(script), *args.args]
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = saved
    return 0
