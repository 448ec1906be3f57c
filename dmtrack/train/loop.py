"""The training loop: the paper's recipe, exact resume, DDP through torchrun, logging.

    train(cfg, "runs/demo/full")                 # fresh run
    train(cfg, "runs/demo/full", resume=True)    # continue exactly where last.pth stopped

Run folder: run.json (config, git commit, versions, hardware, sessions), losses.csv (every
loss term, averaged over `log_every` steps), last.pth (training state: model, optimiser, lr scheduler, GradScaler,
every rank's RNG states (the CUDA one of its own GPU), position in the epoch), model.pth (the final weights, what
`dmtrack evaluate --checkpoint` loads). One run at a time holds the folder (a second one
raises dmtrack.io.RunLocked); a run starting there deletes temp files of killed writers. Under torchrun every rank trains on its own share
of each epoch's pairs; cfg.batch_size is the global batch (each rank takes batch_size / W),
so steps per epoch and the lr do not depend on the number of processes.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import sys
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, ConfigError, config_from_dict
from ..data.crop import normalize_images
from ..io import RunLocked, atomic_open, atomic_write_text, exclusive_lock, remove_stale_temps
from ..precision import autocast, enable_tf32, resolve_precision
from ..provenance import file_sha256, provenance, resolve_device
from .sampler import (PairDataset, PairSampler, collate, data_workers, load_train_sequences, single_threaded_workers,
                      worker_init)

# Keys that may differ between an interrupted run and its resume without changing the result.
RESUME_FREE_KEYS = {"num_workers", "device", "frame_cache_mb", "checkpoint_every", "log_every", "deterministic"}


# ----------------------------------------------------------------------------- helpers
def config_diff(cfg: Config, saved: dict) -> list[str]:
    """Keys where `cfg` differs from a checkpoint's saved config in a way that changes the result."""
    saved = config_from_dict(saved).to_dict()
    return sorted(k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in RESUME_FREE_KEYS)


def pretrained_sha256(cfg: Config) -> str | None:
    """SHA-256 of the file that initialises the model (None: random initialisation), saved in every
    checkpoint: a base tracker retrained under the same path must not let a fine-tuned run resume or count as done."""
    return file_sha256(cfg.pretrained_file) if cfg.pretrained_file else None


def run_diff(cfg: Config, ckpt: dict) -> list[str]:
    """What makes a checkpoint another run than `cfg`'s: its config's keys (config_diff), and
    'pretrained (file content)' when the pretrained file's SHA-256 is not the one it started from."""
    diff = config_diff(cfg, ckpt["config"])
    if cfg.pretrained_file and ckpt.get("pretrained_sha256") != pretrained_sha256(cfg):
        diff.append("pretrained (file content)")
    return diff


def setup_distributed(cfg: Config) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, initialised_here). Under torchrun (WORLD_SIZE > 1) join the
    process group: nccl when training on cuda, gloo on cpu. On cuda each rank takes cuda:LOCAL_RANK."""
    cuda = resolve_device(cfg.device).startswith("cuda")  # auto in a process handed GPUs: on them or an error
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and cfg.device not in ("auto", "cuda", "cpu"):  # NCCL refuses two ranks on one GPU
        raise ConfigError(f"device={cfg.device} under torchrun with {world} processes puts every rank on that one "
                          "device; use device=auto or cuda (each rank takes cuda:LOCAL_RANK)")
    if cuda and cfg.device in ("auto", "cuda") and local >= torch.cuda.device_count():
        raise RuntimeError(f"torchrun rank with LOCAL_RANK={local} but this process sees {torch.cuda.device_count()} "
                           f"GPU(s) (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): "
                           "--nproc_per_node is more than the GPUs")
    device = torch.device(f"cuda:{local}" if cuda else "cpu") if cfg.device in ("auto", "cuda") else torch.device(cfg.device)
    if cuda:
        torch.cuda.set_device(device)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        here = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device, here


@contextmanager
def deterministic_kernels(on: bool):
    """cfg.deterministic: within, every op runs its deterministic kernel (an op that has none raises,
    naming itself, rather than making the run silently unrepeatable), cuBLAS uses a fixed workspace
    (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS starts: so set before the process's first GPU matmul)
    and cuDNN neither autotunes nor picks non-deterministic algorithms. Restored on exit. Off: untouched."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.benchmark, cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # a user's own valid setting (e.g. :16:8) is kept
    torch.use_deterministic_algorithms(True)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.benchmark, cudnn.deterministic = saved[2], saved[3]


def make_scheduler(optimizer, cfg: Config):
    """lr / 10 from epoch round(lr_drop_frac * epochs) on (0-based; paper: epochs 80..99 of 100).
    Stepped once per epoch."""
    drop = int(round(cfg.lr_drop_frac * cfg.epochs))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[drop], gamma=0.1)


def rng_state(device: torch.device) -> dict:
    """python, numpy and torch RNG states as plain values/tensors (weights_only=True loadable), and the
    CUDA generator of this rank's own `device` only: a resume on a node with fewer GPUs must not need them all."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore `rng_state`'s states; its CUDA one goes to `device` (this rank's GPU, whatever its index was)."""
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        cuda = state["cuda"]  # a list in checkpoints written before issue 19: every visible GPU's state
        torch.cuda.set_rng_state(cuda[device.index or 0] if isinstance(cuda, list) else cuda, device)


def run_info(cfg: Config, world: int, device: torch.device) -> dict:
    """run.json's header: the config, the provenance record (dmtrack.provenance), the device and argv."""
    return {"config": cfg.to_dict(), **provenance(), "device": str(device), "world_size": world,
            "torch_threads": torch.get_num_threads(), "argv": sys.argv, "sessions": []}


def replica_check(model, first_batch, world: int) -> dict:
    """Every rank's SHA-256 of its parameters and its first batch's pair keys, gathered: DDP must
    leave identical replicas (buffers such as BN statistics are rank 0's at each forward, so
    parameters are what is compared) while each rank trained on its own pairs."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    mine = {"params_sha256": digest.hexdigest(), "first_batch": first_batch}
    every = [None] * world
    dist.all_gather_object(every, mine)
    same = all(r["params_sha256"] == every[0]["params_sha256"] for r in every)
    if not same:
        warnings.warn("DDP replicas ended with different parameters")
    return {"world_size": world, "backend": dist.get_backend(), "replicas_identical": same, "ranks": every}


class LossLog:
    """losses.csv: one row per `log_every` optimiser steps and at each checkpoint (epoch, step,
    lr_<param group>, the mean of every loss term over the steps since the previous row, seconds)."""

    def __init__(self, path: Path, resume_step: int):
        self.path, self.fields, self.file = path, None, None
        if path.exists():  # drop rows past the checkpoint we resume from (they will be redone)
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            keep = [r for r in rows if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0].keys())
                with atomic_open(path, "w", newline="") as f:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(keep)

    def write(self, row: dict) -> None:
        if self.file is None:
            new = self.fields is None
            self.fields = self.fields or list(row)
            self.file = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.file, self.fields)
            if new:
                self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


class LossWindow:
    """The loss terms of the steps since the last losses.csv row, summed on the device: adding a
    step never makes the host wait for the device; only taking a row does (`row`)."""

    def __init__(self):
        self.names, self.sum, self.steps = None, None, 0

    def add(self, losses: dict) -> None:
        self.names = self.names or sorted(losses)
        vals = torch.stack([losses[k].detach().float() for k in self.names])
        self.sum, self.steps = vals if self.sum is None else self.sum + vals, self.steps + 1

    def row(self, run: "TrainRun", epoch: int, world: int) -> dict:
        """One losses.csv row (epoch, step, each param group's lr, every loss term's mean over the
        window and the ranks); empties the window. Every rank calls it at the same steps."""
        vals = self.sum / self.steps
        if world > 1:  # on the device: nccl reduces cuda tensors, gloo cpu ones
            dist.all_reduce(vals)
            vals /= world
        row = {"epoch": epoch, "step": run.global_step}
        row.update({f"lr_{str(g.get('name', i)).removesuffix('_no_decay')}": g["lr"] for i, g in enumerate(run.optimizer.param_groups)})
        row.update({k: round(float(v), 6) for k, v in zip(self.names, vals.cpu())})
        self.sum, self.steps = None, 0
        return row


# ----------------------------------------------------------------------------- train
def model_input(crops: torch.Tensor) -> torch.Tensor:
    """The data loader's uint8 (B, H, W, 3) crops normalised on their device; a float (B, 3, H, W)
    batch (benchmarks, tests) is taken as normalised already."""
    return normalize_images(crops) if crops.dtype == torch.uint8 else crops


def train_step(model, net, optimizer, scaler, batch: dict, epoch: float, grad_clip: float, precision: str = "fp32") -> dict:
    """One optimiser step on a collated batch; returns the loss dict (device tensors, never read
    here, so the host runs ahead of the device). `net` is the model, its DDP wrapper or its
    compiled form (the forward goes through it so DDP syncs the gradients). precision: resolved
    (dmtrack.precision): bf16 and fp16 autocast the forward and the losses; fp16 also scales the
    loss (a disabled scaler is a no-op for the others)."""
    device = model.device
    template, search = (model_input(batch[k].to(device, non_blocking=True)) for k in ("template", "search"))
    gt = batch["box"].to(device, non_blocking=True)
    tokens = model.tokenize(batch["text"])  # on the host, where encode_text finds the distinct sentences
    with autocast(precision, device):
        text = model.encode_text(tokens)  # BERT once per distinct sentence of the batch
        outputs = net(template, search, text, gt_boxes=gt, epoch=epoch)
        losses = model.loss(outputs, gt)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return losses


@dataclass
class TrainRun:
    """Everything a training step touches, and where the run stands (global optimiser steps)."""
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DDP wrapper (the forward goes through it)
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    precision: str  # cfg.train_precision resolved for the device (dmtrack.precision)
    global_step: int = 0


def build_run(cfg: Config, device: torch.device, rank: int) -> TrainRun:
    """Model, AdamW, lr schedule and GradScaler; the same init on every rank (DDP also broadcasts
    rank 0's weights), then a per-rank RNG stream for the model's own noise."""
    from ..model import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    precision = resolve_precision(cfg.train_precision, device)
    enable_tf32(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    run = TrainRun(model, model, optimizer, make_scheduler(optimizer, cfg), scaler, precision)
    ss = np.random.SeedSequence([cfg.seed, 7919, rank])
    random.seed(int(ss.generate_state(1)[0]))
    np.random.seed(int(ss.generate_state(2)[1]))
    torch.manual_seed(int(ss.generate_state(3)[2]))
    return run


def resume_run(run: TrainRun, last: Path, cfg: Config, rank: int, world: int) -> None:
    """Load last.pth into `run`: weights, optimiser, schedule, scaler, this rank's RNG, position."""
    from ..model import load_checkpoint, load_weights

    state = load_checkpoint(last)
    diff = run_diff(cfg, state)
    if diff:
        raise ValueError(f"{last}: config differs from the run being resumed in {diff}; resume with the same settings")
    if state["world_size"] != world:
        raise ValueError(f"{last} was written by {state['world_size']} processes, resuming with {world} would not be exact")
    load_weights(run.model, state, last)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rank], run.model.device)
    run.global_step = state["global_step"]


def save_state(run: TrainRun, last: Path, cfg: Config, steps_per_epoch: int, main: bool, world: int) -> None:
    """last.pth: the whole training state, every rank's RNG gathered on rank 0."""
    from ..model import save_checkpoint

    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, rng_state(run.model.device))
    else:
        states = [rng_state(run.model.device)]
    if main:
        epoch, step = divmod(run.global_step, steps_per_epoch)
        save_checkpoint(last, run.model, cfg, optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                        scaler=run.scaler.state_dict(), rng=states, epoch=epoch, step=step,
                        global_step=run.global_step, world_size=world, pretrained_sha256=pretrained_sha256(cfg))


def make_loader(cfg: Config, sequences, rank: int, world: int, device: torch.device):
    """(DataLoader, PairSampler) over this rank's share of each epoch's pairs."""
    data = PairDataset(cfg, sequences if sequences is not None else load_train_sequences(cfg))
    sampler = PairSampler(cfg.pairs_per_epoch, rank, world)
    workers = data_workers(cfg)
    single_threaded_workers(workers)
    loader = DataLoader(data, batch_size=cfg.batch_size // world, sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=True, persistent_workers=workers > 0, worker_init_fn=worker_init,
                        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global torch RNG untouched
                        pin_memory=device.type == "cuda")
    return loader, sampler


def wrap_net(run: TrainRun, cfg: Config, world: int) -> None:
    """DDP over the ranks (every trainable parameter gets a gradient at every step in every
    variant, tests/test_train.py checks it, so no find_unused_parameters and its extra graph
    walk), with the model's parts compiled first when `compile` (DMTrack.compile_parts).
    Under DDP on GPUs the head's BatchNorms become SyncBatchNorms: batch statistics over the global
    batch, so the result does not depend on the number of processes (the same parameter and buffer
    tensors: the optimiser and the checkpoint's keys are untouched). SyncBatchNorm refuses CPU tensors,
    so gloo ranks on a CPU normalise their own shares (docs/training.md, DDP)."""
    if world > 1 and run.model.device.type == "cuda":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(run.model)  # in place below the top module
    if cfg.compile:
        run.model.compile_parts()
    if world > 1:
        run.net = DistributedDataParallel(run.model)


def start_session(out: Path, cfg: Config, resume: bool, world: int, device, run: TrainRun) -> dict:
    """run.json with a new session appended (the file of an earlier session is kept on resume)."""
    info = json.loads((out / "run.json").read_text()) if resume and (out / "run.json").exists() else run_info(cfg, world, device)
    info["sessions"].append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "from_step": run.global_step, "precision": run.precision, "compile": cfg.compile,
                             "num_workers": data_workers(cfg)})
    atomic_write_text(out / "run.json", json.dumps(info, indent=2))
    return info


def end_session(out: Path, info: dict, run: TrainRun, cfg: Config, seconds: float, start_step: int,
                ddp_report: dict | None, text_cache) -> None:
    """Close this session's entry of run.json: where it stopped, its speed, the DDP check, the text cache."""
    session = info["sessions"][-1]
    if ddp_report:
        session["ddp"] = ddp_report
    if text_cache is not None:
        session["text_cache"] = {"hits": text_cache.cache_hits, "misses": text_cache.cache_misses}
    session.update({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "to_step": run.global_step,
                    "seconds": round(seconds, 2),
                    "pairs_per_second": round((run.global_step - start_step) * cfg.batch_size / max(seconds, 1e-9), 2)})
    atomic_write_text(out / "run.json", json.dumps(info, indent=2))


def first_batch_keys(batch: dict) -> dict:
    """What a rank trained on first (run.json, the DDP replica check)."""
    return {"keys": [list(k) for k in batch["key"]], "seq": batch["seq"],
            "box": [[round(v, 5) for v in b] for b in batch["box"].tolist()]}


@contextmanager
def run_lock(out: Path, main: bool, world: int):
    """Hold the run folder's lock on rank 0 (the other ranks write nothing there). Under DDP rank 0
    tells every rank whether it got the lock, so all of them stop when another run holds it."""
    with ExitStack() as stack:
        holder = [None]
        if main:
            try:
                stack.enter_context(exclusive_lock(out, "dmtrack train"))
            except RunLocked as e:
                holder = [e.holder]
                if world == 1:
                    raise
        if world > 1:
            dist.broadcast_object_list(holder, src=0)
            if holder[0] is not None:
                raise RunLocked(out, "dmtrack train", holder[0])
        yield


def train(cfg: Config, out_dir, resume: bool = False, *, sequences: dict | None = None,
          max_steps: int | None = None, progress: bool = True) -> Path | None:
    """Train cfg's model into `out_dir`; returns the path of model.pth (None when `max_steps`
    stopped the run early: last.pth then holds the state to resume from).

    sequences: {train_datasets key: list[Sequence]} to train on instead of loading the
    readers (tests). resume: continue from out_dir/last.pth if it exists (else start fresh);
    without it an existing last.pth is an error rather than silently overwritten. Another run
    holding out_dir raises RunLocked."""
    out = Path(out_dir)
    with deterministic_kernels(cfg.deterministic):
        return train_process(cfg, out, resume, sequences, max_steps, progress)


def train_process(cfg: Config, out: Path, resume: bool, sequences, max_steps: int | None, progress: bool) -> Path | None:
    """`train` after the kernels are chosen: join the ranks, hold the folder, train, leave the group."""
    rank, world, device, own_group = setup_distributed(cfg)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    with run_lock(out, rank == 0, world):
        if (out / "last.pth").exists() and not resume:
            raise FileExistsError(f"{out / 'last.pth'} exists: pass resume=True (--resume) to continue it, "
                                  "or use another folder")
        if rank == 0:
            remove_stale_temps(out)  # of a killed run's checkpoint or log writes (dead writers only)
        result = train_locked(cfg, out, resume, rank, world, device, sequences, max_steps, progress)
    if world > 1:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return result


def train_locked(cfg: Config, out: Path, resume: bool, rank: int, world: int, device, sequences,
                 max_steps: int | None, progress: bool) -> Path | None:
    """The body of `train`, run while rank 0 holds the folder."""
    from ..model import save_checkpoint

    last, main = out / "last.pth", rank == 0
    steps_per_epoch = cfg.pairs_per_epoch // cfg.batch_size  # >= 1: Config.validate
    run = build_run(cfg, device, rank)
    text = getattr(run.model, "text", None)  # None in the no_language variant
    text_cached = text is not None and text.cache_outputs(cfg.text_cache)
    if resume and last.exists():
        resume_run(run, last, cfg, rank, world)
    wrap_net(run, cfg, world)
    loader, sampler = make_loader(cfg, sequences, rank, world, device)
    info = start_session(out, cfg, resume, world, device, run) if main else None
    log = LossLog(out / "losses.csv", run.global_step) if main else None
    total = cfg.epochs * steps_per_epoch
    stop_at = total if max_steps is None else min(total, max_steps)
    bar = tqdm(total=total, initial=run.global_step, disable=not (main and progress), desc=f"train {cfg.variant}",
               dynamic_ncols=True)
    t0, start_step, saved_at, batches, first_batch = time.time(), run.global_step, run.global_step, None, None
    window = LossWindow()
    try:
        while run.global_step < stop_at:
            epoch, step = divmod(run.global_step, steps_per_epoch)
            if batches is None or step == 0:  # a new epoch, or the middle of the one a resume continues
                sampler.set_epoch(epoch, start=step * (cfg.batch_size // world))
                batches = iter(loader)
            batch = next(batches)
            first_batch = first_batch or first_batch_keys(batch)
            # fractional epoch: CE keep rate and GT-CE start (compile_parts keeps it out of compiled code)
            window.add(train_step(run.model, run.net, run.optimizer, run.scaler, batch, epoch + step / steps_per_epoch,
                                  cfg.grad_clip, run.precision))
            run.global_step += 1
            bar.update(1)
            save = step + 1 == steps_per_epoch or (cfg.checkpoint_every and run.global_step % cfg.checkpoint_every == 0)
            if save or run.global_step % cfg.log_every == 0 or run.global_step == stop_at:  # no window spans a checkpoint
                row = window.row(run, epoch, world)
                if main:
                    log.write({**row, "seconds": round(time.time() - t0, 3)})
                    bar.set_postfix({k: f"{row[k]:.3f}" for k in ("total", "focal", "giou", "l1", "struct") if k in row},
                                    refresh=False)
            if step + 1 == steps_per_epoch:
                run.scheduler.step()  # epoch end: next epoch's lr, then checkpoint
            if save:
                save_state(run, last, cfg, steps_per_epoch, main, world)
                saved_at = run.global_step
        if run.global_step < total and saved_at != run.global_step:  # stopped by max_steps mid-epoch
            save_state(run, last, cfg, steps_per_epoch, main, world)
    finally:
        bar.close()
        if log:
            log.close()
    ddp_report = replica_check(run.model, first_batch, world) if world > 1 else None
    result = None
    if main:
        if run.global_step >= total:
            result = save_checkpoint(out / "model.pth", run.model, cfg, epoch=cfg.epochs, global_step=run.global_step,
                                     pretrained_sha256=pretrained_sha256(cfg))
        end_session(out, info, run, cfg, time.time() - t0, start_step, ddp_report, text if text_cached else None)
    return result
