"""`python -m dmtrack <command>` (also installed as `dmtrack`).

Each command lives in the module that owns its concept and exposes
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their
command runs, so `--help` stays fast (torch is not imported for it).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "data": ("dmtrack.data.cli", "generate the synthetic benchmark, or list a benchmark's sequences"),
    "score": ("dmtrack.eval.cli", "score raw tracking results under the pytracking or official protocol"),
    "train": ("dmtrack.train.cli", "train a Table 2 variant (works under torchrun for DDP)"),
    "evaluate": ("dmtrack.track.cli", "run a trained tracker over a benchmark and score it"),
    "track": ("dmtrack.track.video_cli", "track a target through your own video (file or folder of frames)"),
    "report": ("dmtrack.report.cli", "run the notebook chain and render the HTML report"),
    "bench": ("dmtrack.bench", "speed benchmarks (scoring, tracking, training throughput)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="dmtrack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd = argparse.ArgumentParser(prog=f"dmtrack {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
