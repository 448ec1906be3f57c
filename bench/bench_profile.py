"""Model cost of every Table 2 variant: parameters, GFLOPs per sequence and per frame, CPU fps.

For each size and variant, `dmtrack.track.profile.profile_model` runs the real Tracker:
initialize() once under FlopCounterMode (per sequence: the language encoder) and track() once
(per frame: backbone, fusion, k diffusion chains, filter, head), at k = 1, 5, 10 test samplings
(the size's sampling_steps) and 1, 2, 3, 5, 10 denoising steps per chain (k = 1); then the
median wall time of --frames track() calls. GFLOPs count a multiply-add as 2 FLOPs (halve
them for the GMACs that tracking papers often call FLOPs). At paper size the language
encoder is a randomly initialised bert-base-uncased-shaped BERT (`bert-base-random`: the
paper's model cannot be downloaded here; weights do not change the cost).

    python -m dmtrack bench profile [--sizes demo,paper] [--variants full,no_diffusion] [--frames 3] [--threads N]
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from dmtrack.bench import checked_out, default_out
from dmtrack.config import VARIANTS, load_config
from dmtrack.io import atomic_write_json
from dmtrack.track.profile import PARTS, profile_model
from dmtrack.paper import SPEEDS


def print_tables(df: pd.DataFrame) -> None:
    keys = ["profile", "variant"]
    params = df.drop_duplicates(keys)[keys + ["params_total", "params_trainable"] + [f"params_{p}" for p in PARTS]]
    params = params.rename(columns=lambda c: c.removeprefix("params_"))
    print("Parameters (millions)")
    print(params.set_index(keys).div(1e6).round(3).reset_index().to_string(index=False))
    cols = {"seq_gflops": "seq", "frame_gflops": "frame"} | {f"frame_gflops_{p}": p for p in PARTS if p != "language"}
    cols |= {"ms_per_frame": "ms", "ms_best": "best ms", "fps": "fps"} if "fps" in df else {}
    table = df[keys + ["k", "sampling_steps"] + list(cols)].rename(columns=cols | {"sampling_steps": "steps"})
    print("\nGFLOPs (FlopCounterMode: 1 multiply-add = 2 FLOPs): seq = per sequence (language encoder, once "
          "at initialize), frame = per track() call and its parts; ms (median), best ms and fps (of the median): "
          "track() time here")
    print(table.round({c: 3 for c in cols.values()} | {"ms": 1, "best ms": 1, "fps": 2}).to_string(index=False, na_rep="-"))


def print_speed_comparison(df: pd.DataFrame, threads: int) -> None:
    """The paper's stated speed next to ours (paper size, full, k = 1, the paper profile's steps)."""
    here = df[(df.profile == "paper") & (df.variant == "full") & (df.k == 1)]
    for s in SPEEDS:
        stated = f"{s.fps:g} fps" if s.fps is not None else "not stated"
        print(f"published: {s.tracker}: {stated} ({s.hardware}; {s.source})")
    if "fps" in df and len(here):
        row = here[here.sampling_steps == load_config("paper").sampling_steps].iloc[0]
        where = f"{threads} CPU threads, {os.cpu_count()} cores" if row.device == "cpu" else row.device
        print(f"measured:  DMTrack paper size, full, k=1, {int(row.sampling_steps)} steps: {row.fps:.2f} fps "
              f"(median; best frame {1000 / row.ms_best:.2f} fps) on this machine ({where})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="demo,paper", help="comma-separated profiles (smoke, demo, paper)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated Table 2 variants")
    ap.add_argument("--frames", type=int, default=3, help="timed track() calls per setting (0 = FLOPs only)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default=None, help="cpu | cuda | ... (default: the config's, auto = cuda when available)")
    ap.add_argument("--paper-text-encoder", default="bert-base-random",
                    help="text_encoder at paper size: bert-base-random, or a local bert-base-uncased directory")
    ap.add_argument("--out", default=default_out("profile"), help="the JSON written (default: %(default)s)")
    args = ap.parse_args()
    out = checked_out(args.out)  # now, not after the run
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        text = {"text_encoder": args.paper_text_encoder} if size == "paper" else {}
        for variant in args.variants.split(","):
            cfg = load_config(size, variant, **text)
            rows += profile_model(cfg, frames=args.frames, device=args.device)
            print(f"profiled {size} {variant} (text encoder {cfg.text_encoder})", flush=True)
    df = pd.DataFrame(rows).astype({"k": "Int64", "sampling_steps": "Int64"})  # None (no diffusion) -> <NA>
    print_tables(df)
    print_speed_comparison(df, args.threads)
    result = {"threads": args.threads, "cores": os.cpu_count(), "load_average": os.getloadavg(),
              "frames": args.frames, "flops_convention": "torch FlopCounterMode: 1 multiply-add = 2 FLOPs",
              "paper_text_encoder": args.paper_text_encoder, "rows": rows,
              "published_speeds": [vars(s) for s in SPEEDS]}
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
