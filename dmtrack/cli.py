"""`python -m dmtrack [--debug] <command>` (also installed as `dmtrack`).

Each command lives in the module that owns its concept and exposes
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their
command runs, so `--help` stays fast (torch is not imported for it).

An error a user can cause (a bad config key, a missing file, a refused resume, a dataset error,
Ctrl-C) prints one line `dmtrack <command>: error: <message>` and exits non-zero, without a
traceback; `--debug` (or DMTRACK_DEBUG=1) prints the traceback too. Any other exception is a bug
and shows its traceback (see `exit_status`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback

COMMANDS = {
    "data": ("dmtrack.data.cli", "generate the synthetic benchmark, or list a benchmark's sequences"),
    "score": ("dmtrack.eval.cli", "score raw tracking results under the pytracking or official protocol"),
    "train": ("dmtrack.train.cli", "train a Table 2 variant (works under torchrun for DDP)"),
    "evaluate": ("dmtrack.track.cli", "run a trained tracker over a benchmark and score it"),
    "track": ("dmtrack.track.video_cli", "track a target through your own video (file or folder of frames)"),
    "report": ("dmtrack.chain.cli", "run the notebook chain and render the HTML report"),
    "bench": ("dmtrack.bench", "speed benchmarks (scoring, tracking, training throughput)"),
}


class UsageError(ValueError):
    """The command line asks for something that cannot be done as given (exit status 2)."""


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (frames, steps, processes): 0 or -1 is a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a positive integer, got {text!r}")
    return value


def gpu_list(text: str) -> list[str]:
    """'0,1' -> ['0', '1'] (CUDA_VISIBLE_DEVICES ids, checked against the visible GPUs where used:
    dmtrack.provenance.check_gpus); 'none' or '' -> [] (no GPU pool)."""
    ids = [] if text.strip().lower() in ("", "none") else [g.strip() for g in text.split(",")]
    if any(not g for g in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"expects distinct GPU ids separated by commas (or none), got {text!r}")
    return ids


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage block first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def exit_status(e: BaseException) -> int | None:
    """The exit status of an error a user can cause; None for a bug (its traceback is shown).

    2: the command line or the config is wrong: UsageError, a config value (ConfigError), a KeyError
       naming an unknown key or name, FileExistsError (a command refusing to overwrite or resume).
    1: the input or the run failed: ValueError (DatasetError, bad results), OSError (a missing file,
       a locked folder), RuntimeError (a failed notebook step, a corrupt checkpoint).
    128 + N: interrupted by signal N (130 for Ctrl-C).
    A KeyError carrying a bare key (a dict lookup gone wrong) and NotImplementedError and
    RecursionError are bugs, as are TypeError, AttributeError, IndexError and the rest.
    """
    from dmtrack.config import ConfigError

    if isinstance(e, KeyboardInterrupt):
        return 128 + int(getattr(e, "signum", signal.SIGINT))
    if isinstance(e, KeyError):  # the project's KeyErrors are sentences ("unknown config key(s): ...")
        return 2 if len(e.args) == 1 and isinstance(e.args[0], str) and " " in e.args[0] else None
    if isinstance(e, (UsageError, ConfigError, FileExistsError)):
        return 2
    if isinstance(e, (NotImplementedError, RecursionError)):
        return None
    if isinstance(e, (ValueError, OSError, RuntimeError)):
        return 1
    return None


def error_message(e: BaseException) -> str:
    """The error as one readable line (a KeyError's str() adds quotes; an OSError names its file)."""
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    elif isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}" + (f" (and {e.filename2})" if e.filename2 is not None else "")
    else:
        text = str(e) or ("interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__)
    return " ".join(text.split())


def run_command(command: str, fn, debug: bool = False) -> int:
    """Return fn()'s exit status; an error a user can cause becomes one line on stderr and its status."""
    try:
        return int(fn() or 0)
    except BaseException as e:  # noqa: B036 - KeyboardInterrupt too; everything else is re-raised below
        status = exit_status(e)
        if status is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"dmtrack {command}: error: {error_message(e)}", file=sys.stderr)
        return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("DMTRACK_DEBUG", "") not in ("", "0")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    parser = Parser(prog="dmtrack", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also DMTRACK_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd = Parser(prog=f"dmtrack {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(argv[1:])
    return run_command(name, lambda: module.run(args), debug)


if __name__ == "__main__":
    sys.exit(main())
