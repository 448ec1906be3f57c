"""Training throughput (pairs per second) at the demo and paper sizes on this machine.

Writes a small LaSOT-layout training set to a temp folder (frames of the size the profile
trains on), then per profile: the data pipeline alone (PairDataset + DataLoader, pairs/s),
and full optimiser steps (loading + the step that dmtrack.train.timing times for the chain's
estimate: forward + backward + AdamW at the training's middle epoch, pairs/s), after a warm-up
step. The paper profile runs at batch 1-2 (a ViT-B step takes seconds on a CPU); its language
encoder is the local MiniLM, as bert-base-uncased is not on disk here.

    .venv/bin/python bench/bench_training.py [--steps 5] [--paper-batch 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dmtrack.config import load_config
from dmtrack.data import load_benchmark
from dmtrack.train.timing import TrainingStep
from dmtrack.train.sampler import PairDataset, PairSampler, collate, data_workers, single_threaded_workers, worker_init
from dmtrack.io import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import write_lasot_tree  # noqa: E402


def measure(cfg, seqs, steps: int) -> dict:
    torch.manual_seed(0)
    data = PairDataset(cfg, {"synthetic": seqs})
    sampler = PairSampler(cfg.pairs_per_epoch)
    single_threaded_workers(data_workers(cfg))
    loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, num_workers=data_workers(cfg),
                        worker_init_fn=worker_init, collate_fn=collate, drop_last=True)
    n = 1 + steps  # one warm-up batch
    batches = iter(loader)
    t = time.perf_counter()
    cached = [next(batches) for _ in range(n)]
    data_pps = n * cfg.batch_size / (time.perf_counter() - t)

    step = TrainingStep(cfg, "cpu")  # the step the chain's estimate times (dmtrack.train.timing)
    model = step.model
    step_s = step.median(cached, steps)[0]
    load_s = cfg.batch_size / data_pps
    return {"profile": cfg.profile, "batch": cfg.batch_size, "steps": steps, "data_pairs_per_s": round(data_pps, 1),
            "step_s_median": round(step_s, 3), "train_pairs_per_s": round(cfg.batch_size / (step_s + load_s), 2),
            "model_params_M": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2),
            "search_size": cfg.search_size, "embed_dim": cfg.embed_dim, "depth": cfg.depth}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per profile (after 1 warm-up step)")
    ap.add_argument("--paper-batch", type=int, default=2, help="batch size at the paper size")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--profiles", default="demo,paper")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0, rows = os.getloadavg()[0], []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.profiles.split(","):
            over = {"batch_size": args.paper_batch, "num_workers": 0} if profile == "paper" else {}
            cfg = load_config(profile, "full", train_datasets={"synthetic": 1.0}, **over)
            # frames of the size the profile tracks in: the demo suites are 256x192, real videos ~640x360
            size = (256, 192) if profile != "paper" else (640, 360)
            root = Path(tmp) / profile
            write_lasot_tree(root / "train", 4, 40, *size)
            seqs = load_benchmark("synthetic_train", root=root, progress=False)
            rows.append(measure(cfg, seqs, args.steps))
            print(rows[-1], flush=True)
    print(f"\n{'profile':8} {'batch':>5} {'data pairs/s':>13} {'s/step':>8} {'train pairs/s':>14} {'params M':>9}")
    for r in rows:
        print(f"{r['profile']:8} {r['batch']:>5} {r['data_pairs_per_s']:>13} {r['step_s_median']:>8} "
              f"{r['train_pairs_per_s']:>14} {r['model_params_M']:>9}")
    out = Path(__file__).resolve().parent / "results" / "bench_training.json"
    meta = {"threads": args.threads, "cpu_count": os.cpu_count(), "loadavg_1min_at_start": load0, "loadavg_1min_at_end": os.getloadavg()[0],
            "torch": torch.__version__}
    atomic_write_json(out, {"meta": meta, "rows": rows})
    print(f"written {out}")


if __name__ == "__main__":
    main()
