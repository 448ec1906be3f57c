"""`python -m dmtrack train --profile demo --variant full --out runs/demo/full [--resume] [key=value ...]`.

Works unchanged under `torchrun --nproc_per_node=N -m dmtrack train ...` (DDP: gloo on cpu,
nccl on cuda); rank 0 writes the run folder.
"""
from __future__ import annotations

from ..config import PROFILES, VARIANTS


def add_arguments(parser):
    parser.add_argument("--profile", default="demo", choices=PROFILES, help="sizes and recipe (default: demo)")
    parser.add_argument("--variant", default="full", choices=VARIANTS, help="Table 2 variant (default: full)")
    parser.add_argument("--out", required=True, help="run folder: losses.csv, run.json, last.pth, model.pth")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from <out>/last.pth if it exists")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a CPU shared with other jobs)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=3 lr=1e-4")


def run(args) -> int:
    from ..config import load_config, parse_overrides
    from .loop import train

    overrides = parse_overrides(args.overrides)
    if args.seed is not None:
        overrides["seed"] = args.seed
    cfg = load_config(args.profile, args.variant, **overrides)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    path = train(cfg, args.out, resume=args.resume, max_steps=args.max_steps, progress=not args.no_progress)
    if path is not None:
        print(f"model written to {path}")
    return 0
