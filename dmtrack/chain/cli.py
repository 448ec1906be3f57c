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
    p.add_argument("--readings", default=None, metavar="final[,chain]", type=lambda v: tuple(v.split(",")),
                   help="readings of 'k samplings' Table 2 is evaluated under (default: final,chain; final is primary)")
    p.add_argument("--robust-variants", default=None, metavar="V,V,...", type=lambda v: tuple(x for x in v.split(",") if x),
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


def step_base_command(args, overrides: dict) -> list[str]:
    """This chain's `python -m dmtrack report` command line, paths absolute, that `--step NAME` completes
    (--gpus is left out: a cluster job runs on the GPUs it was given)."""
    import json
    from pathlib import Path

    from .preflight import absolute_path_overrides

    cmd = ["python", "-m", "dmtrack", "report", "--profile", args.profile, "--reports", str(Path(args.reports).resolve())]
    for flag, value in (("--seeds", args.seeds), ("--work", args.work and Path(args.work).resolve()),
                        ("--data-root", args.data_root and Path(args.data_root).resolve()), ("--jobs", args.jobs),
                        ("--max-frames", args.max_frames), ("--k-sweep", args.k_sweep and ",".join(map(str, args.k_sweep))),
                        ("--gpus-per-train", args.gpus_per_train)):
        cmd += [flag, str(value)] if value is not None else []
    cmd += ["--allow-minilm"] if args.allow_minilm else []
    for name, folder in args.other:
        cmd += ["--other", f"{name}={folder}"]
    for key, value in absolute_path_overrides(overrides).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]  # read back exactly (JSON values)
    return cmd


def run(args) -> int:
    import json

    from ..cli import UsageError
    from ..config import overrides_from_args
    from .estimate import format_plan
    from .pipeline import plan_estimate, reproduce
    from .plan import ChainOptions

    names = [name.casefold() for name, _ in args.other]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--other NAME given twice (names are compared ignoring case): {', '.join(twice)}")
    overrides = overrides_from_args(args)
    options = ChainOptions(seeds=args.seeds, jobs=args.jobs, train_overrides=overrides, max_frames=args.max_frames,
                           k_sweep=args.k_sweep, steps_sweep=args.steps_sweep, readings=args.readings,
                           robust_variants=args.robust_variants, gpus_per_train=args.gpus_per_train, gpus=args.gpus,
                           allow_minilm=args.allow_minilm)
    where = dict(reports=args.reports, work=args.work, data=args.data_root, others=dict(args.other))
    if args.plan:
        est = plan_estimate(args.profile, options, command=step_base_command(args, overrides), **where)
        print(json.dumps(est, indent=1) if args.json else format_plan(est))
        return 0
    reproduce(args.profile, options, force=args.force, step=args.step, **where)
    return 0
