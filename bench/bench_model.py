"""Parameter counts and per-frame CPU latency of the paper-size DMTrack (ViT-B, 128/256, MiniLM text).

One run times no_diffusion, full k=1 and full k=5 at batch 1 in inference mode, interleaving
the three so a shared CPU slows them alike, and reports medians. The text is encoded once per
sequence (as the tracker does), so it is outside the per-frame time.

    .venv/bin/python bench/bench_model.py [--iters 15] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dmtrack import build_model, load_config
from dmtrack.io import atomic_write_json


def count(model):
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_model.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {v: build_model(load_config("paper", v)).eval() for v in ("no_diffusion", "full")}
    cfg = models["full"].cfg
    z = torch.randn(1, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size)
    runs = {"no_diffusion": ("no_diffusion", None), "full_k1": ("full", 1), "full_k5": ("full", 5)}
    times = {r: [] for r in runs}
    with torch.inference_mode():
        texts = {v: m.encode_text(m.tokenize(["a black dog running on the grass"])) for v, m in models.items()}
        for it in range(args.iters + 2):  # 2 warm-up rounds
            for r, (v, k) in runs.items():
                t0 = time.perf_counter()
                models[v](z, x, texts[v], samples=k)
                if it >= 2:
                    times[r].append(time.perf_counter() - t0)
    med = {r: statistics.median(t) * 1000 for r, t in times.items()}
    best = {r: min(t) * 1000 for r, t in times.items()}
    # per-round ratios: the three runs of a round are back to back, so a shared CPU's load
    # drifts cancel better than in a ratio of medians
    paired = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    params = {}
    for v, m in models.items():
        total, trainable = count(m)
        parts = {n: sum(p.numel() for p in getattr(m, n).parameters()) for n in ("visual", "text", "fusion", "denoiser", "filter", "mask_proj", "head") if getattr(m, n, None) is not None}
        params[v] = {"total": total, "trainable": trainable, "parts": parts}
    result = {
        "profile": "paper", "batch": 1, "threads": args.threads, "iters": args.iters, "sampling_steps": cfg.sampling_steps,
        "latency_ms_median": med,
        "latency_ms_all": {r: [round(t * 1000, 2) for t in ts] for r, ts in times.items()},
        "latency_ms_min": best,
        "ratio_full_k1_over_no_diffusion": paired("full_k1", "no_diffusion"),
        "ratio_full_k5_over_full_k1": paired("full_k5", "full_k1"),
        "ratio_of_medians": {"full_k1/no_diffusion": med["full_k1"] / med["no_diffusion"], "full_k5/full_k1": med["full_k5"] / med["full_k1"]},
        "ratio_of_minima": {"full_k1/no_diffusion": best["full_k1"] / best["no_diffusion"], "full_k5/full_k1": best["full_k5"] / best["full_k1"]},
        "params": params,
    }
    print(f"{'model':<14}{'median ms':>10}{'min ms':>10}{'fps(med)':>9}")
    for r, ms in med.items():
        print(f"{r:<14}{ms:>10.1f}{best[r]:>10.1f}{1000 / ms:>9.2f}")
    print(f"median of per-round ratios: full k=1 / no_diffusion = {result['ratio_full_k1_over_no_diffusion']:.3f}   "
          f"full k=5 / full k=1 = {result['ratio_full_k5_over_full_k1']:.3f}")
    print(f"ratio of minima: {result['ratio_of_minima']}")
    for v, p in params.items():
        print(f"params {v:<13} total {p['total'] / 1e6:7.2f} M  trainable {p['trainable'] / 1e6:7.2f} M  "
              + "  ".join(f"{n} {c / 1e6:.2f}M" for n, c in p["parts"].items()))
    out = Path(args.out)
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
