"""The GPU acceptance check: what a developer who is lent a GPU runs first (README, "GPU acceptance").

    PYTHONPATH=. python scripts/gpu_check.py [--device cuda|cpu] [--size paper] [--out runs/bench/gpu_check.json]

One command, under 8 minutes on one H100/H200 at the paper size. It needs torch, torchvision,
timm, transformers, opencv-python-headless, numpy and tqdm: no pandas, papermill, jupyter, seaborn
or MiniLM (the text encoder is `bert-base-random`; every weight is random: the numbers are costs
and agreements, never accuracies). Each section writes the JSON, then prints one verdict line
`[ok|FAIL|skipped] <section>: ...`; a failing section is recorded (error and traceback) and the
others still run. Exit status 1 when a section failed.

    train     a training step of every Table 2 variant under fp32 (TF32 on a GPU, as the training
              runs it), bf16 and fp16: pairs/s, peak memory, finite loss and gradients
    resume    deterministic mode: 4 optimiser steps in one go against 2, stop, resume, 2 more: the
              weights must be bitwise equal
    ddp       one 2-process torchrun (nccl) training where 2 GPUs are visible; else skipped
    tracking  frames/s at k = 1 and 5 under fp32 and bf16, one sequence at a time and batched
              (8 and 32 sequences at once), and the largest box difference between them
    data      the data pipeline's pairs/s (PairDataset + DataLoader, auto workers) on 1280x720 JPEGs
    jpeg      torchvision.io.decode_jpeg(device="cuda") against OpenCV on those JPEGs (pairs/s): the
              data pipeline's remaining 2x goal

On a CPU (`--device cpu`) the same sections run with the CPU settings below (batch 1, a few frames,
4 sequences batched 2 and 4), recorded under "settings" in the JSON; `--size smoke` also shrinks
the model (the test suite runs that).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (resume); set before CUDA starts

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_gpu  # noqa: E402
from dmtrack.bench import checked_out, default_out  # noqa: E402
from dmtrack.cli import Parser, UsageError, run_command  # noqa: E402
from dmtrack.config import VARIANTS, load_config  # noqa: E402
from dmtrack.io import atomic_write_json  # noqa: E402
from frames import write_lasot_tree  # noqa: E402

TEXT = dict(bench_gpu.PAPER)  # {"text_encoder": "bert-base-random"}: no files needed; --text-encoder changes it
SETTINGS = {
    "cuda": dict(train_batch=32, train_steps=3, resume_batch=4, seqs=32, frames=10, batches=(8, 32), data_batches=10,
                 data_batch=64, jpeg_frames=64),
    "cpu": dict(train_batch=1, train_steps=1, resume_batch=2, seqs=4, frames=3, batches=(2, 4), data_batches=2,
                data_batch=4, jpeg_frames=8),
}


def train_section(device, size: str, st: dict, variants) -> dict:
    """Every variant x precision; fp16's GradScaler skips an overflowing step by design, so its
    gradients' finiteness is reported, not required."""
    runs, failed = {}, []
    for variant in variants:
        for precision in ("fp32", "bf16", "fp16"):
            try:
                r = bench_gpu.train_speed(precision, st["train_batch"], st["train_steps"], device, variant, size, TEXT)
            except Exception as e:  # noqa: BLE001 - a failing variant is the finding; the others still run
                r = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
            runs[f"{variant}/{precision}"] = r
            if "error" in r or not r["loss_finite"] or not (r["grads_finite"] or precision == "fp16"):
                failed.append(f"{variant}/{precision}")
    first = {p: runs[f"{variants[0]}/{p}"].get("pairs_per_s") for p in ("fp32", "bf16", "fp16")}
    line = (f"{len(runs)} runs, " + (f"failed: {', '.join(failed)}" if failed else "losses and gradients finite")
            + f"; {variants[0]} pairs/s at batch {st['train_batch']}: " + ", ".join(f"{p} {v}" for p, v in first.items()))
    return {"verdict": "FAIL" if failed else "ok", "line": line, "runs": runs}


def resume_section(device, size: str, st: dict, root: Path, tmp: Path) -> dict:
    from dmtrack.data import load_benchmark
    from dmtrack.model import load_checkpoint
    from dmtrack.train import train

    b = st["resume_batch"]  # 2 steps an epoch, 2 epochs
    cfg = load_config(size, "full", train_datasets={"synthetic": 1.0}, batch_size=b, pairs_per_epoch=2 * b, epochs=2,
                      device=str(device), **TEXT)
    own = "deterministic" not in {f.name for f in dataclasses.fields(cfg)}  # the config key, where this checkout has it
    cfg = cfg if own else cfg.replace(deterministic=True)
    seqs = {"synthetic": load_benchmark("synthetic_train", root=root, progress=False)}
    if own:
        torch.use_deterministic_algorithms(True)
    try:
        train(cfg, tmp / "straight", sequences=seqs, progress=False)
        train(cfg, tmp / "cut", sequences=seqs, max_steps=2, progress=False)
        train(cfg, tmp / "cut", resume=True, sequences=seqs, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)  # the timings below run as the training does by default
    a, b = (load_checkpoint(tmp / d / "model.pth")["model"] for d in ("straight", "cut"))
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in differ), default=0.0)
    how = "torch.use_deterministic_algorithms set here" if own else "config deterministic=true"
    from dmtrack.precision import resolve_precision

    line = (f"4 steps straight vs 2 + resume + 2 ({resolve_precision(cfg.train_precision, device)}, {how}): "
            + (f"{len(differ)} of {len(a)} tensors differ, by up to {diff:.3g}" if differ
               else f"all {len(a)} tensors bitwise equal"))
    return {"verdict": "FAIL" if differ else "ok", "line": line, "tensors": len(a), "differ": differ[:20],
            "max_abs_diff": diff, "deterministic_by": how}


def ddp_section(device, size: str, root: Path, tmp: Path) -> dict:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        why = "no GPU (--device cpu; the test suite runs gloo DDP)" if device.type != "cuda" else f"{gpus} GPU visible, 2 needed"
        return {"verdict": "skipped", "line": why}
    out = tmp / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dmtrack", "train",
           "--profile", size, "--out", str(out), "--no-progress", 'train_datasets={"synthetic": 1.0}',
           f'text_encoder="{TEXT["text_encoder"]}"', "batch_size=8", "pairs_per_epoch=16", "epochs=1"]
    env = {**os.environ, "DMTRACK_SYNTHETIC_ROOT": str(root), "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        return {"verdict": "FAIL", "line": f"torchrun exited with {res.returncode}", "stderr": res.stderr[-3000:]}
    ddp = json.loads((out / "run.json").read_text())["sessions"][0]["ddp"]
    ok = ddp["replicas_identical"] is True and ddp["world_size"] == 2
    return {"verdict": "ok" if ok else "FAIL", "ddp": ddp,
            "line": f"2 processes, backend {ddp['backend']}, replicas identical: {ddp['replicas_identical']}"}


def tracking_section(device, size: str, st: dict, seqs: list) -> dict:
    """One tracker per (precision, k), seeded: batched tracking draws each sequence's own noise, so
    it must give the boxes of one at a time up to the kernels' rounding."""
    from dmtrack.model import build_model
    from dmtrack.track import Tracker

    torch.manual_seed(0)
    cfg = load_config(size, "full", **TEXT)
    model = build_model(cfg).to(device).eval()
    runs, worst = {}, 0.0
    for precision in ("fp32", "bf16"):
        for k in (1, 5):
            tracker = Tracker(model, cfg, samples=k, precision=precision, device=device, seed=0)
            bench_gpu.track_all(tracker, seqs[:1], 3)  # warm-up: allocator, kernels' plans
            alone, fps = bench_gpu.track_all(tracker, seqs, st["frames"])
            r = {"fps_one_at_a_time": round(fps, 2)}
            for b in st["batches"]:
                boxes, fps_b = bench_gpu.track_all(tracker, seqs[:b], st["frames"], batch=b)
                diff = max(float(np.abs(boxes[n] - alone[n]).max()) for n in boxes)
                r[f"batch_{b}"] = {"fps": round(fps_b, 2), "max_box_diff_px": diff}
                worst = max(worst, diff) if np.isfinite(diff) else float("inf")
            runs[f"{precision}/k{k}"] = r
    b = st["batches"][-1]
    line = ", ".join(f"{n} {r['fps_one_at_a_time']} fps ({r[f'batch_{b}']['fps']} at batch {b})" for n, r in runs.items())
    return {"verdict": "ok" if np.isfinite(worst) else "FAIL", "runs": runs, "max_box_diff_px": worst,
            "sequences": len(seqs), "frames_each": st["frames"],
            "line": f"{line}; largest box difference batched vs one at a time {worst:.3g} px"}


def data_section(st: dict, root: Path) -> dict:
    r = bench_gpu.data_speed(root, st["data_batches"], st["data_batch"])
    return {"verdict": "ok", "line": f"{r['pairs_per_s']} pairs/s with {r['workers']} workers (auto)", **r}


def jpeg_section(device, st: dict, root: Path) -> dict:
    """Decoding only (a training pair decodes 2 frames): OpenCV on the CPU, as the data pipeline does,
    against nvJPEG through torchvision on the GPU, a batch of files at a time."""
    import torchvision
    from torchvision.io import decode_jpeg

    files = sorted(root.rglob("*.jpg"))[:st["jpeg_frames"]]
    raw = [np.fromfile(f, np.uint8) for f in files]
    t = time.perf_counter()
    cv = [cv2.imdecode(r, cv2.IMREAD_COLOR) for r in raw]
    cv_pairs = len(raw) / 2 / (time.perf_counter() - t)
    out = {"frames": len(raw), "size": f"{cv[0].shape[1]}x{cv[0].shape[0]}", "opencv_pairs_per_s": round(cv_pairs, 1),
           "torchvision": torchvision.__version__}
    if device.type != "cuda":
        return {"verdict": "skipped", **out, "line": f"OpenCV {cv_pairs:.1f} pairs/s; no GPU: decode_jpeg(device='cuda') not run"}
    data = [torch.from_numpy(r) for r in raw]
    decode_jpeg(data[:2], device=device)  # warm-up: nvJPEG's handle
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    gpu = decode_jpeg(data, device=device)
    torch.cuda.synchronize(device)
    gpu_pairs = len(raw) / 2 / (time.perf_counter() - t)
    diff = float(np.abs(gpu[0].permute(1, 2, 0).cpu().numpy().astype(int) - cv[0][..., ::-1]).mean())
    out.update(cuda_pairs_per_s=round(gpu_pairs, 1), speedup=round(gpu_pairs / cv_pairs, 2), mean_abs_pixel_diff=round(diff, 3))
    return {"verdict": "ok", **out, "line": f"nvJPEG {gpu_pairs:.1f} vs OpenCV {cv_pairs:.1f} pairs/s "
                                           f"({gpu_pairs / cv_pairs:.2f}x); mean pixel difference {diff:.3f}"}


def run_section(result: dict, name: str, fn, out: Path) -> None:
    """Run one section, record it (its error and traceback if it fails), write the JSON, print its verdict."""
    t = time.perf_counter()
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - a failing section is the finding; the others still run
        r = {"verdict": "FAIL", "line": " ".join(f"{type(e).__name__}: {e}".split())[:300], "traceback": traceback.format_exc()}
    r["seconds"] = round(time.perf_counter() - t, 1)
    result["sections"][name] = r
    atomic_write_json(out, result)
    print(f"[{r['verdict']}] {name}: {r['line']} ({r['seconds']} s)", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    ap = Parser(prog="dmtrack gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:N or cpu")
    ap.add_argument("--size", default="paper", choices=("paper", "demo", "smoke"), help="the model's profile")
    ap.add_argument("--out", default=default_out("gpu_check"), help="the JSON written after each section (default: %(default)s)")
    ap.add_argument("--text-encoder", default=TEXT["text_encoder"],
                    help="bert-base-random (default), minilm (smaller: the test suite's) or a local BERT directory")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="the train section's Table 2 variants (default: all)")
    args = ap.parse_args(argv)
    variants = args.variants.split(",")
    if not set(variants) <= set(VARIANTS):
        raise UsageError(f"--variants {args.variants}: unknown {sorted(set(variants) - set(VARIANTS))}; "
                         f"choose from {', '.join(VARIANTS)}")
    out = checked_out(args.out)
    TEXT["text_encoder"] = args.text_encoder
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no GPU visible (torch.cuda.is_available() is False); use --device cpu")
    st = SETTINGS["cuda" if device.type == "cuda" else "cpu"]
    result = {"environment": bench_gpu.environment(device), "size": args.size, "text_encoder": args.text_encoder,
              "variants": variants, "settings": st, "sections": {}}
    if device.type != "cuda":  # the paper size at the GPU's batches and frame counts would take hours on a few cores
        result["settings_note"] = ("CPU settings (smaller batches, fewer steps, sequences and frames); "
                                   f"on a GPU: {SETTINGS['cuda']}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_lasot_tree(tmp / "jpeg" / "train", st["seqs"], st["frames"] + 2)
        root = tmp / "jpeg"
        from dmtrack.data import load_benchmark

        seqs = load_benchmark("synthetic_train", root=root, progress=False)
        run_section(result, "train", lambda: train_section(device, args.size, st, variants), out)
        run_section(result, "resume", lambda: resume_section(device, args.size, st, root, tmp), out)
        run_section(result, "ddp", lambda: ddp_section(device, args.size, root, tmp), out)
        run_section(result, "tracking", lambda: tracking_section(device, args.size, st, seqs), out)
        run_section(result, "data", lambda: data_section(st, root), out)
        run_section(result, "jpeg", lambda: jpeg_section(device, st, root), out)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out, result)
    failed = [n for n, r in result["sections"].items() if r["verdict"] == "FAIL"]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all sections passed or skipped'}; "
          f"{result['seconds']} s; wrote {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command("gpu_check", main))
