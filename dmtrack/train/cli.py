"""`python -m dmtrack train --profile demo --variant full --out runs/demo/full [--resume] [--data-root DIR] [key=value ...]`.

Works unchanged under `torchrun --nproc_per_node=N -m dmtrack train ...` (DDP: gloo on cpu,
nccl on cuda); rank 0 writes the run folder. torchrun starts every worker in a session of its own:
a worker ends (SIGTERM) when its torchrun dies, even by SIGKILL, so no worker outlives a stopped run.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import BASE, PROFILES, VARIANTS, add_override_arguments


def add_arguments(parser):
    parser.add_argument("--profile", default="demo", choices=PROFILES, help="sizes and recipe (default: demo)")
    parser.add_argument("--variant", default="full", choices=VARIANTS + (BASE,), help="Table 2 variant, or base: the base tracker the embedded profiles fine-tune every variant from (default: full)")
    parser.add_argument("--out", required=True, help="run folder: losses.csv, run.json, last.pth, model.pth")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from <out>/last.pth if it exists")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a CPU shared with other jobs)")
    parser.add_argument("--data-root", default=None,
                        help="folder holding the training datasets under their default names (LaSOT/, TNL2K/, OTB_lang/, "
                             "refcoco/, synthetic/), as $DMTRACK_DATA (default: $DMTRACK_DATA or data/)")
    parser.add_argument("--allow-minilm", action="store_true",
                        help="paper profile: train with the packaged MiniLM instead of a bert-base-uncased directory")
    add_override_arguments(parser)


def run(args) -> int:
    from ..config import load_config, overrides_from_args
    from ..data.files import MissingFileError
    from ..data.sequence import DEFAULT_SUBDIRS
    from .preconditions import check_weights
    from .loop import train
    from .sampler import load_train_sequences, missing_train_data

    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker, in a session of its own: killing torchrun's
        from ..io import exit_with_parent     # process group (the chain stopping a step) does not reach it

        exit_with_parent(os.getppid())
    overrides = overrides_from_args(args)
    if args.seed is not None:
        overrides["seed"] = args.seed
    cfg = load_config(args.profile, args.variant, **overrides)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    roots = {k: Path(args.data_root) / sub for k, sub in DEFAULT_SUBDIRS.items()} if args.data_root else None
    # every missing precondition in one message, the weights (a stat each) before the data (a folder each)
    missing = missing_train_data(cfg, roots)
    check_weights(args.profile, overrides, required=args.profile == "paper", allow_minilm=args.allow_minilm, more=missing)
    if missing:
        raise MissingFileError("; ".join(missing))
    sequences = load_train_sequences(cfg, roots)
    path = train(cfg, args.out, resume=args.resume, sequences=sequences, max_steps=args.max_steps,
                 progress=not args.no_progress)
    if path is not None:
        print(f"model written to {path}")
    return 0
