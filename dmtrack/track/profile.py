"""What a DMTrack model costs: parameters per part, FLOPs per sequence and per tracked frame, fps.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode while the real `Tracker` runs:
`initialize()` once (the per-sequence cost: the sentence goes through the language encoder;
the template is only cropped, the one-stream backbone sees it again every frame) and one
`track()` (the per-frame cost: backbone, fusion, k diffusion chains of `sampling_steps`
denoiser calls, filter, head). FlopCounterMode counts a multiply-add as 2 FLOPs and counts only
ops with a FLOP formula (matmuls, convolutions, attention); norms, activations and the
sampler's elementwise arithmetic are not counted. Counts do not depend on the weights or the
image: candidate elimination keeps a fixed number of tokens.

    rows = profile_model(load_config("paper", "full", text_encoder="bert-base-random"), frames=3)
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import Config
from ..model import build_model
from ..provenance import resolve_device
from .tracker import Tracker

PARTS = {  # reported part -> DMTrack attributes that hold it
    "backbone": ("visual",),
    "language": ("text",),  # BERT + projection to the visual width
    "fusion": ("fusion",),
    "diffusion": ("denoiser", "schedule"),  # the schedule holds buffers only
    "filter": ("filter",),
    "head": ("mask_proj", "head"),  # the mask-driven head (Sec. 3.3): mask projection + centre head
}


def parameter_counts(model) -> dict:
    """{'params_total', 'params_trainable', 'params_<part>' for every part in PARTS}."""
    out = {"params_total": sum(p.numel() for p in model.parameters()),
           "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    for part, attrs in PARTS.items():
        mods = [getattr(model, a, None) for a in attrs]
        out[f"params_{part}"] = sum(p.numel() for m in mods if m is not None for p in m.parameters())
    return out


def _count(fn) -> tuple[int, dict]:
    """(total FLOPs, FLOPs per module name) of fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops(), by_module


def frame_flops_by_part(total: int, by_module: dict) -> dict:
    """Per-frame FLOPs split into PARTS (language: 0 when the tracker encodes the sentence once per
    sequence, as it should). The diffusion part is the rest of the total: the denoiser's condition
    encoder runs as a method (`encode_cond`), outside the denoiser's forward, where the module
    tracker would not attribute it to the denoiser; the glue between parts has no counted ops, so
    nothing else is left (a model without diffusion has a rest of 0)."""
    out = {part: sum(by_module.get(f"DMTrack.{a}", 0) for a in attrs) for part, attrs in PARTS.items() if part != "diffusion"}
    out["diffusion"] = total - sum(out.values())
    return out


@contextmanager
def _sampling_steps(model, steps: int):
    """The model reads the denoising steps per chain from its config at every forward: set it for a while."""
    saved = model.cfg
    model.cfg = saved.replace(sampling_steps=steps)
    try:
        yield
    finally:
        model.cfg = saved


def _frame(cfg: Config, seed: int = 0):
    """A random RGB frame (1.5 x 2 search crops) and a box in its middle (a quarter crop side)."""
    S = cfg.search_size
    image = np.random.default_rng(seed).integers(0, 256, (3 * S // 2, 2 * S, 3), dtype=np.uint8)
    side = S // 4
    return image, [S - side / 2, 3 * S / 4 - side / 2, side, side]


def profile_model(cfg: Config, ks=(1, 5, 10), steps=(1, 2, 3, 5, 10), frames: int = 0,
                  device: str | None = None, text: str = "a red car driving on the left") -> list[dict]:
    """One row per setting: every k of `ks` at cfg.sampling_steps, then every denoising-step count
    of `steps` at k = 1 (a model without diffusion has one row, k and steps None). Each row holds
    the parameter counts, GFLOPs per sequence (language) and per frame (total and by part), and,
    when frames > 0, the median and best ms and the median fps of `frames` timed track() calls
    after one warm-up, on `device` (default: the config's; track() ends with a host copy, so a
    GPU's queue is drained inside each timed call)."""

    torch.manual_seed(cfg.seed)
    device = device or resolve_device(cfg.device)
    model = build_model(cfg).to(device).eval()
    params = parameter_counts(model)
    image, box = _frame(cfg)
    if cfg.use_diffusion:
        settings = [(k, cfg.sampling_steps) for k in ks]
        settings += [(1, s) for s in steps if (1, s) not in settings]
    else:
        settings = [(None, None)]
    rows = []
    for k, n_steps in settings:
        with _sampling_steps(model, n_steps or cfg.sampling_steps):
            tracker = Tracker(model, cfg, samples=k or 1, seed=cfg.seed)  # fuses the model for these steps
            seq_total, _ = _count(lambda: tracker.initialize(image, box, text))
            tracker.track(image, return_mask=False)  # warm-up
            frame_total, by_module = _count(lambda: tracker.track(image, return_mask=False))
            times = []
            for _ in range(frames):
                t0 = time.perf_counter()
                tracker.track(image, return_mask=False)
                times.append(time.perf_counter() - t0)
        row = {"profile": cfg.profile, "variant": cfg.variant, "k": k, "sampling_steps": n_steps, "device": device, **params,
               "seq_gflops": seq_total / 1e9, "frame_gflops": frame_total / 1e9}
        row.update({f"frame_gflops_{p}": f / 1e9 for p, f in frame_flops_by_part(frame_total, by_module).items()})
        if frames:
            ms = statistics.median(times) * 1000
            row.update(ms_per_frame=ms, ms_best=min(times) * 1000, fps=1000 / ms, timed_frames=frames)
        rows.append(row)
    return rows
