"""Several sequences tracked at once: one search crop per sequence in one batched forward.

    results = BatchTracker(Tracker(model, cfg, samples=5), batch=8).run(sequences)   # {name: track_sequence's dict}

A Tracker at batch 1 leaves a large GPU mostly idle. Here up to `batch` sequences are tracked
side by side: each keeps its own template, sentence features (encoded once, by the Tracker's
own `initialize`), previous box and diffusion noise stream; every step crops one search region
per sequence and runs the network once on all of them. When a sequence ends, the next one takes
its place. The result of each sequence is the one the Tracker gives it alone: the network treats
the crops of a batch independently (per-sample attention, candidate elimination, norms, top-k),
and the noise of each sequence's k samplings (x_T, and each step's z under the ancestral sampler,
eta > 0) comes from its own generator seeded as the Tracker seeds torch at `initialize`,
drawn in the same order (tests/test_batched.py checks the boxes under both samplers).

Times: a sequence's `initialize` is its own; a batched step's wall time is shared equally by the
sequences in it, so `<seq>_time.txt` sums to the run's tracking time.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..boxes import clip_xywh
from ..data import read_frame, truncate
from ..data.crop import crop_square
from ..model import sampling_plan
from ..precision import autocast
from .tracker import CLIP_MARGIN, Tracker, box_to_image, crop_window


@dataclass
class _Slot:
    """One sequence being tracked: what the Tracker keeps per sequence, and its results so far."""
    seq: object
    n: int  # frames to track
    box: np.ndarray
    template: torch.Tensor  # (1,3,T,T)
    text: tuple | None
    noise: torch.Generator | None
    boxes: np.ndarray
    times: np.ndarray
    scores: np.ndarray
    spread: np.ndarray | None = None  # (n,) the sample spread of each frame (NaN for frame 0)
    crop_masks: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    i: int = 1  # next frame


class BatchTracker:
    """Runs `tracker`'s model, settings and precision over up to `batch` sequences at once."""

    def __init__(self, tracker: Tracker, batch: int):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.tracker, self.batch = tracker, batch
        S = tracker.cfg.search_size
        self._search = torch.empty(batch, 3, S, S, device=tracker.device)

    @torch.inference_mode()
    def _start(self, seq, frames: int | None) -> _Slot:
        """Initialise a sequence as the Tracker does (its checks, sentence, template), keep its state."""
        tr = self.tracker
        n = len(truncate(seq, frames))
        image = read_frame(seq.frames[0])
        t0 = time.perf_counter()
        tr.initialize(image, seq.boxes[0], seq.text)
        noise = None  # seed None: the global RNG, as the Tracker's (no reproducible stream to match then)
        if tr.cfg.use_diffusion and tr.seed is not None:  # the stream torch.manual_seed(seed) starts in the Tracker
            noise = torch.Generator(device=tr.device).manual_seed(tr.seed)
        times = np.zeros(n)
        times[0] = time.perf_counter() - t0
        boxes = np.zeros((n, 4))
        boxes[0] = seq.boxes[0]
        return _Slot(seq, n, tr.box.copy(), tr._template.clone(), tr.text, noise, boxes, times, np.full(n, np.nan),
                     np.full(n, np.nan))

    @torch.inference_mode()
    def _step(self, active: list[_Slot], record_crop_masks: bool) -> None:
        """One frame of every active sequence in one forward."""
        tr, cfg, S = self.tracker, self.tracker.cfg, self.tracker.cfg.search_size
        images = [read_frame(s.seq.frames[s.i]) for s in active]
        t0 = time.perf_counter()
        factors = []
        for j, (s, image) in enumerate(zip(active, images)):
            crop, factor, _ = crop_square(tr._rgb(image), s.box, cfg.search_factor, S)
            tr._load(crop, self._search[j:j + 1])
            factors.append(factor)
        n = len(active)
        text = None
        if active[0].text is not None:
            text = tuple(torch.cat(parts) for parts in zip(*(s.text for s in active)))
        noise = None
        if cfg.use_diffusion:  # x_T, then each ancestral step's noise, of each crop's chains, from its own stream
            M, chains = tr.model.mask_size, sampling_plan(cfg, tr.samples, tr.steps, tr.average)[0]
            noise = lambda: torch.cat([torch.randn(chains, 1, M, M, generator=s.noise, device=tr.device) for s in active])
        with autocast(tr.precision, tr.device):
            out = tr.model(torch.cat([s.template for s in active]), self._search[:n], text, noise=noise,
                           samples=tr.samples, steps=tr.steps, average=tr.average, eta=tr.eta)
        decoded = tr.decode(out)
        for j, (s, image, factor, (pred, score, spread)) in enumerate(zip(active, images, factors, decoded)):
            H, W = image.shape[:2]
            window = crop_window(s.box, factor, S)
            s.box = clip_xywh(box_to_image(pred, s.box, factor, S), W, H, margin=CLIP_MARGIN)
            s.boxes[s.i], s.scores[s.i] = s.box, score
            s.spread[s.i] = spread  # NaN without samples
            if record_crop_masks and out.mask is not None:
                s.crop_masks.append(out.mask[j, 0].to("cpu", torch.float16).numpy())
                s.windows.append(window)
        share = (time.perf_counter() - t0) / n
        for s in active:
            s.times[s.i] = share
            s.i += 1

    def run(self, sequences, frames: int | None = None, record_crop_masks: bool = False, on_done=None,
            on_frame=None) -> dict:
        """Track every sequence from its first box; returns {name: result} in `track_sequence`'s
        form (boxes, times, scores, masks {} and, with record_crop_masks, crop_masks and windows).
        on_done(seq, result) is called as each sequence finishes (the runner writes its files
        then); on_frame() once per frame tracked."""
        pending, active, results = deque(sequences), [], {}
        while pending or active:
            while pending and len(active) < self.batch:
                active.append(self._start(pending.popleft(), frames))
                if on_frame is not None:
                    on_frame()
            todo = [s for s in active if s.i < s.n]
            if todo:
                self._step(todo, record_crop_masks)
                for _ in todo if on_frame is not None else ():
                    on_frame()
            for s in [s for s in active if s.i >= s.n]:
                active.remove(s)
                results[s.seq.name] = res = _result(s, record_crop_masks)
                if on_done is not None:
                    on_done(s.seq, res)
        return results


def _result(s: _Slot, record_crop_masks: bool) -> dict:
    res = {"boxes": s.boxes, "times": s.times, "scores": s.scores, "spread": s.spread, "masks": {}}
    if record_crop_masks:
        res["crop_masks"] = np.stack(s.crop_masks) if s.crop_masks else np.zeros((0, 0, 0), np.float16)
        res["windows"] = np.asarray(s.windows, dtype=np.float32).reshape(-1, 3)
    return res
