"""One timed training step, the same for the chain's cost estimate (dmtrack.chain.estimate) and every
benchmark under bench/, so the ETA and the benchmarks measure one thing: the full model's optimiser
step as `dmtrack.train.loop` runs it (AdamW, the GradScaler of fp16, TF32 for fp32 on a GPU, the text
encoder's output cache) at the training's middle epoch, where candidate elimination's keep rate is
partly decayed and GT-CE on, as on average over a run. Not included: torch.compile (its warm-up
would dominate a few timed steps) and the data loader (bench_training times it apart).

    step = TrainingStep(cfg, device)                      # builds cfg's model (seed 0) unless given one
    seconds, losses = step.median(random_pairs(cfg, 8), steps=3)   # after one warm-up step
"""
from __future__ import annotations

import statistics
import time

import torch

from ..config import Config
from ..precision import enable_tf32, resolve_precision
from .loop import train_step


def representative_epoch(cfg: Config) -> float:
    """The epoch a timed step runs at: the middle of the training, so that its cost is a run's
    average step, not the cheapest (CE at its final keep rate) nor the dearest (no CE)."""
    return cfg.epochs / 2


def random_pairs(cfg: Config, batch: int, seed: int = 0) -> dict:
    """A collated batch of `batch` random pairs as the loader hands it over (float crops are taken as
    normalised by dmtrack.train.loop.model_input), a distinct sentence each."""
    g = torch.Generator().manual_seed(seed)
    return dict(template=torch.rand(batch, 3, cfg.template_size, cfg.template_size, generator=g),
                search=torch.rand(batch, 3, cfg.search_size, cfg.search_size, generator=g),
                box=torch.tensor([[0.5, 0.5, 0.25, 0.25]] * batch),
                text=[f"the red car number {i} on the left" for i in range(batch)])


class TrainingStep:
    """step(batch) -> (seconds, losses) of one optimiser step, the device synchronised. precision: the
    config value (None: cfg.train_precision), resolved for `device` and TF32 set as the training sets them,
    before the model is built (a build that runs out of memory has already set them)."""

    def __init__(self, cfg: Config, device, model=None, precision: str | None = None):
        device = torch.device(device)
        self.precision = resolve_precision(precision or cfg.train_precision, device)
        enable_tf32(self.precision, device)  # fp32 on a GPU is TF32 in the training, not full float32
        if model is None:
            from ..model import build_model

            torch.manual_seed(0)
            model = build_model(cfg).to(device)
        self.model, self.cfg, self.epoch = model.train(), cfg, representative_epoch(cfg)
        if getattr(model, "text", None) is not None:  # None in the no_language variant
            model.text.cache_outputs(cfg.text_cache)  # as the training does (demo: on; paper: off)
        self.optimizer = torch.optim.AdamW(model.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")

    def __call__(self, batch: dict) -> tuple[float, dict]:
        t = time.perf_counter()
        losses = train_step(self.model, self.model, self.optimizer, self.scaler, batch, self.epoch, self.cfg.grad_clip,
                            self.precision)
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        return time.perf_counter() - t, losses

    def median(self, batches, steps: int) -> tuple[float, dict]:
        """Median seconds of `steps` steps after one warm-up step (allocator, cuDNN plans, text cache),
        and the last step's losses. batches: one batch for every step, or a list of 1 + steps."""
        batches = [batches] * (1 + steps) if isinstance(batches, dict) else list(batches)
        if len(batches) != 1 + steps:
            raise ValueError(f"{len(batches)} batches for 1 warm-up + {steps} timed steps")
        times = []
        for batch in batches:
            seconds, losses = self(batch)
            times.append(seconds)
        return statistics.median(times[1:]), losses
