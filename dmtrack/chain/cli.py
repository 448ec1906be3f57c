"""`python -m dmtrack report --profile smoke|demo|paper [--seeds N] [--force]`: the notebook chain + HTML report.

    dmtrack report                          # demo: synthetic stand-ins, 6 variants x 3 seeds, ~1 h on 2 cores
    dmtrack report --profile smoke          # the whole chain at toy sizes (minutes)
    dmtrack report --profile paper --set pretrained=/w/OSTrack_ep0300.pth.tar --set text_encoder=/w/bert-base-uncased \
        --other MMTrack=/results/mmtrack  # the GPU run on the real datasets

Executed notebooks are kept under <reports>/runs/<profile>/ with a JSON stamp each; a rerun skips
the steps done for the same parameters. A failing notebook stops the chain and is named (exit 1);
Ctrl-C or SIGTERM kills the running notebooks' kernels and names the steps left undone (exit 130 / 143).
`--plan` prints every step with its work and estimated duration on this machine, and runs nothing;
`--plan --json` adds each step's dependencies and the command that runs it alone (`--step NAME`), for
a cluster scheduler (README: a SLURM example). `--gpus 0,1,...` (default: every GPU visible) runs
independent steps at once, one GPU each (`--gpus-per-train N`: trainings over N GPUs with torchrun).
"""
from __future__ import annotations

import argparse

from ..cli import gpu_list


def k_list(text: str) -> list[int]:
    """'1,5' -> [1, 5] (argparse names this function when a value is not a list of integers)."""
    return [int(k) for k in text.split(",")]


def name_tuple(text: str) -> tuple[str, ...]:
    """'final,chain' -> ('final', 'chain'); '' -> () (e.g. --robust-variants '' runs no robustness test)."""
    return tuple(x for x in text.split(",") if x)


def add_arguments(p) -> None:
    from ..config import add_override_arguments
    from .plan import CHAINS

    p.add_argument("--profile", default="demo", choices=list(CHAINS), help="smoke | demo (default) | paper")
    p.add_argument("--seeds", type=int, default=None, help="training seeds per variant (default: the profile's)")
    p.add_argument("--force", action="store_true", help="rerun every step even where its outputs exist")
    p.add_argument("--reports", default="reports", help="where index.html and runs/<profile>/ go (default: reports)")
    p.add_argument("--work", default=None, help="checkpoints and raw results (default: runs/<profile>)")
    p.add_argument("--data-root", "--data", default=None, dest="data_root",
                   help="synthetic profiles: the synthetic benchmark's root (default: $DMTRACK_DATA/synthetic[_<preset>]); "
                        "the real datasets' roots come from DMTRACK_DATA / DMTRACK_<NAME>_ROOT")
    p.add_argument("--jobs", type=int, default=None, help="notebooks run at the same time (default: the profile's)")
    p.add_argument("--max-frames", type=int, default=None, help="track and score only the first N frames of each sequence")
    p.add_argument("--k-sweep", default=None, metavar="K,K,...", type=k_list,
                   help="the test-time samplings of the accuracy / speed sweep (default: the profile's, 1..10)")
    p.add_argument("--steps-sweep", default=None, metavar="N,N,...", type=k_list,
                   help="the DDIM steps per chain of the accuracy / speed sweep at k = 1 (default: the profile's, 1,2,3,5,10)")
    p.add_argument("--readings", default=None, metavar="final[,chain]", type=name_tuple,
                   help="readings of 'k samplings' Table 2 is evaluated under (default: final,chain; final is primary)")
    p.add_argument("--robust-variants", default=None, metavar="V,V,...", type=name_tuple,
                   help="variants of the language-robustness test (default: the profile's; an empty value runs none)")
    p.add_argument("--allow-minilm", action="store_true",
                   help="paper profile: run with the packaged MiniLM instead of a bert-base-uncased directory")
    p.add_argument("--gpus", default=None, metavar="ID,ID,...", type=gpu_list,
                   help="GPUs to spread the steps over, one running step each, as CUDA_VISIBLE_DEVICES names them "
                        "(default: every GPU this process sees; none: the kernels see this process's GPUs, one step per --jobs); "
                        "an id this process does not see is an error")
    p.add_argument("--gpus-per-train", type=int, default=None, metavar="N",
                   help="train each variant with torchrun DDP over N GPUs (processes); default 1")
    p.add_argument("--step", default=None, metavar="NAME",
                   help="run only this step (e.g. 10_train/full_seed0), skip-if-done; the steps it reads from must be done")
    p.add_argument("--plan", action="store_true", help="print every step, its work and estimated duration; run nothing")
    p.add_argument("--json", action="store_true",
                   help="with --plan: print the plan as JSON, with each step's dependencies and the command running it alone")
    add_override_arguments(p)  # for every training run, e.g. --set pretrained=/w/OSTrack_ep0300.pth.tar
    p.add_argument("--chain", action="append", default=[], metavar="KEY=VALUE", dest="chain_overrides",
                   help="a chain setting of the profile (dmtrack/experiments/), e.g. --chain track_batch=4 "
                        "--chain fig7_sequences=3; repeatable; checked as --set checks config keys")
    p.add_argument("--other", action="append", default=[], metavar="NAME=DIR", type=_other,
                   help="another tracker's raw results: DIR/<benchmark>/<seq>.txt (benchmark = lasot, lasot_ext, tnl2k, "
                        "otb_lang); re-scored under both protocols and drawn in the Fig. 7 panels. NAME: letters, digits, "
                        "_ - . (not one of our trackers' names). Repeatable.")


def _other(item: str) -> tuple[str, str]:
    """`--other NAME=DIR` -> (NAME, absolute DIR), checked now: a bad one is a one-line usage error."""
    from .plan import check_other

    if "=" not in item:
        raise argparse.ArgumentTypeError(f"expects NAME=DIR, got {item!r}")
    name, folder = item.split("=", 1)
    try:
        return name, str(check_other(name, folder))
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# the parser above is the one definition of the options: a step's command writes each option back from the
# parsed value with the inverse of the argparse type that read it (a new type needs its inverse here; the
# round-trip test in tests/test_report.py fails until it has one)
_joined = lambda values: ",".join(map(str, values))  # noqa: E731
_WRITE = {None: str, int: str, k_list: _joined, name_tuple: _joined, _other: "=".join}
# left out of a step's command: which step and what to do with it (--step is appended per step), --gpus (a
# cluster job runs on the GPUs it was given), --force (a resubmitted job skips what is done) and the
# overrides (written below as --set with absolute paths)
_NOT_PER_STEP = {"help", "step", "plan", "json", "force", "gpus", "set_overrides", "overrides"}
_PATHS = {"reports", "work", "data_root"}  # made absolute: a cluster job may start in another folder


def step_base_command(args, overrides: dict) -> list[str]:
    """This chain's `python -m dmtrack report` command line, paths absolute, that `--step NAME` completes:
    every option of `add_arguments` that was given (or has a default) but those of _NOT_PER_STEP, so
    the step re-plans exactly the chain of this command."""
    import json
    from pathlib import Path

    from .preflight import absolute_path_overrides

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    cmd = ["python", "-m", "dmtrack", "report"]
    for action in parser._actions:
        value = None if action.dest in _NOT_PER_STEP else getattr(args, action.dest)
        if value is None or value is False:
            continue
        flag = action.option_strings[0]
        if action.dest in _PATHS:
            value = Path(value).resolve()
        if action.nargs == 0:  # store_true
            cmd.append(flag)
        elif isinstance(action, argparse._AppendAction):
            cmd += [part for item in value for part in (flag, _WRITE[action.type](item))]
        else:
            cmd += [flag, _WRITE[action.type](value)]
    for key, value in absolute_path_overrides(overrides).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]  # read back exactly (JSON values)
    return cmd


def chain_options(args, overrides: dict):
    """The ChainOptions of parsed `dmtrack report` arguments: each of its fields is the option of that
    name (train_overrides: the parsed --set / key=value overrides)."""
    from dataclasses import fields

    from .plan import ChainOptions

    return ChainOptions(train_overrides=overrides,
                        **{f.name: getattr(args, f.name) for f in fields(ChainOptions) if f.name != "train_overrides"})


def run(args) -> int:
    import json

    from ..cli import UsageError
    from ..config import overrides_from_args
    from .estimate import format_plan
    from .pipeline import plan_estimate, reproduce
    names = [name.casefold() for name, _ in args.other]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--other NAME given twice (names are compared ignoring case): {', '.join(twice)}")
    overrides = overrides_from_args(args)
    options = chain_options(args, overrides)
    where = dict(reports=args.reports, work=args.work, data=args.data_root, others=dict(args.other))
    if args.plan:
        est = plan_estimate(args.profile, options, command=step_base_command(args, overrides), **where)
        print(json.dumps(est, indent=1) if args.json else format_plan(est))
        return 0
    reproduce(args.profile, options, force=args.force, step=args.step, **where)
    return 0
