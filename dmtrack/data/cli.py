"""`dmtrack data`: generate the synthetic benchmark, or list a benchmark's sequences.

    dmtrack data synth --preset demo --out data/synthetic [--seed 0] [--drift 0.5]
    dmtrack data list --benchmark synthetic_lasot --data-root data/synthetic
"""
from __future__ import annotations

import math


def add_arguments(p) -> None:
    from .benchmarks import STAND_IN, drift_benchmark
    from .synthetic import PRESETS

    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    s = sub.add_parser("synth", help=f"generate the {STAND_IN} benchmark (all suites, real layouts)")
    s.add_argument("--preset", choices=list(PRESETS), default="demo",
                   help="smoke: seconds, 96x96 frames (tests); demo: the default of `make reproduce`")
    s.add_argument("--out", default=None, help="output folder (default: $DMTRACK_DATA/synthetic)")
    s.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    s.add_argument("--drift", type=_fraction, default=None,
                   help="language drift for the 4 test suites: the sentence stops fitting after this fraction "
                        "of each sequence (0..1; default: never). The training split never drifts")
    s.add_argument("--no-sweep", action="store_true", help="skip the drift sweep suites (<out>/drift/<level>)")
    s.add_argument("--workers", type=int, default=None, help="processes rendering sequences (default: 1 for smoke, 2 for demo)")
    s.add_argument("--force", action="store_true", help="replace a benchmark generated with other arguments")
    ls = sub.add_parser("list", help="print a benchmark's sequences (name, frames, description)")
    ls.add_argument("--benchmark", required=True, help=f"e.g. synthetic_lasot, {drift_benchmark(0.5)}, lasot, tnl2k")
    ls.add_argument("--data-root", default=None, help="dataset root (default: $DMTRACK_DATA/<dataset folder>)")
    ls.add_argument("--split", default=None, help="train or test (default: the benchmark's usual split)")


def _fraction(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"expects a number in [0, 1], got {text!r}")
    return value


def run(args) -> int:
    if args.action == "synth":
        from .sequence import dataset_root
        from .synthetic import generate

        out = args.out or dataset_root("synthetic")
        m = generate(out, args.preset, args.seed, args.drift, sweep=not args.no_sweep, workers=args.workers,
                     force=args.force)  # a benchmark of other arguments at `out`: FileExistsError, exit 2 (dmtrack.cli)
        print(f"{m['note']}\n{'benchmark':<24}{'sequences':>10}{'frames':>9}  classes")
        for name, s in m["suites"].items():
            print(f"{name:<24}{s['sequences']:>10}{s['frames']:>9}  {','.join(s['classes'])}")
        print(f"written to {out}")
        return 0
    from . import load_benchmark

    seqs = load_benchmark(args.benchmark, args.data_root, args.split)
    print(f"{'sequence':<34}{'frames':>7}{'absent':>7}{'drift':>6}  description")
    for s in seqs:
        absent = "-" if s.visible is None else str(int((~s.visible).sum()))
        drift = "-" if s.drift is None else str(int(s.drift.sum()))
        print(f"{s.name:<34}{len(s):>7}{absent:>7}{drift:>6}  {s.description}")
    print(f"{len(seqs)} sequences, {sum(len(s) for s in seqs)} frames ({args.benchmark})")
    return 0
