"""Does `compile=true` pay? Eager against compiled (DMTrack.compile_parts) demo training steps.

The same in-memory batch (demo `full`, batch 32) at fractional epochs across the keep-rate
warm-up, where candidate elimination keeps a different number of tokens at almost every step,
first eager, then compiled: the time of every step (wall and CPU time of this process and its
compile workers), and dynamo's graph and recompile counts. The first compiled step includes the
compilation: on 2 shared cores about 11 minutes with an empty inductor cache, under 1 with a warm one.

    PYTHONPATH=. python bench/bench_compile.py [--threads 1] [--profile demo]
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
import torch._dynamo

from dmtrack import build_model, load_config
from dmtrack.io import atomic_write_json
from dmtrack.train.loop import train_step

EPOCHS = [0.0, 0.5, 3.0, 3.25, 3.5, 3.75, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0]  # demo: CE from epoch 3 over 5 epochs


def cpu_seconds() -> float:
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="demo")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.profile, "full")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g, B = torch.Generator().manual_seed(0), cfg.batch_size
    batch = {"template": torch.randn(B, 3, cfg.template_size, cfg.template_size, generator=g),
             "search": torch.randn(B, 3, cfg.search_size, cfg.search_size, generator=g),
             "box": torch.rand(B, 4, generator=g) * 0.4 + 0.3, "text": [f"the red star number {i % 8}" for i in range(B)]}
    result = {"profile": args.profile, "threads": args.threads, "device": str(device), "epochs": EPOCHS}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(cfg).to(device).train()
        if model.text is not None:
            model.text.cache_outputs(cfg.text_cache)
        if mode == "compiled":
            model.compile_parts()
        opt = torch.optim.AdamW(model.param_groups(), lr=cfg.lr)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        steps = []
        for epoch in EPOCHS:
            t, c = time.perf_counter(), cpu_seconds()
            train_step(model, model, opt, scaler, batch, epoch, cfg.grad_clip, "fp32")
            if device.type == "cuda":
                torch.cuda.synchronize()
            steps.append({"epoch": epoch, "wall_s": round(time.perf_counter() - t, 3), "cpu_s": round(cpu_seconds() - c, 3)})
            print(mode, steps[-1], flush=True)
        result[mode] = steps
    result["dynamo"] = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if k in ("stats", "recompiles")}
    out = Path(__file__).resolve().parent / "results" / "bench_compile.json"
    atomic_write_json(out, result)
    print(result["dynamo"], f"\nwrote {out}")


if __name__ == "__main__":
    main()
