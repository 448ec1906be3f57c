"""`python -m dmtrack bench NAME|all`: run the speed benchmarks in the project's bench/ folder.

Benchmarks are plain scripts (`bench/bench_<name>.py`), each printing a table and writing
`bench/results/bench_<name>.json` (gpu and profile: `--out`, default `runs/bench/bench_<name>.json`,
checked before they start). Speed targets live there, never in timed tests: the machines are
shared and noisy, so compare ratios measured in one run.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
from pathlib import Path

from dmtrack.cli import UsageError

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def default_out(name: str) -> str:
    """Where benchmark `name` writes its JSON by default: runs/bench/ under the current folder, with
    the project's other outputs (runs/ is git-ignored), not next to the code, which may be a
    read-only or shared checkout."""
    return str(Path("runs") / "bench" / f"bench_{name}.json")


def checked_out(path) -> Path:
    """--out, checked before a benchmark starts (found unwritable at the end, the whole run is
    lost): a file path whose folder exists or can be made, and takes a new file."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"--out {path}: is a folder; give the path of a .json file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=p.parent).close()  # what atomic_write_json does there (also as root on a read-only disk)
    except OSError as e:
        raise UsageError(f"--out {path}: cannot write in {p.parent}: {e.strerror or e}") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"--out {path}: not writable")
    return p


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
