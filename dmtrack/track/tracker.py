"""The online tracker: one template, one search crop per frame, OSTrack's inference recipe.

    tracker = Tracker(model, cfg)                 # model in eval mode, any device
    tracker.initialize(frame0, box_xywh, "a red car on the left")
    out = tracker.track(frame1)                   # {'box': xywh, 'score': float, 'mask': HxW or None}

Images are numpy HxWx3 uint8 arrays in RGB order (pass bgr=True for OpenCV frames).
Per sequence: the sentence is encoded once and the template cropped once (factor
`template_factor`, side `template_size`). Per frame: the search region is cropped around the
previous box (factor `search_factor`, side `search_size`), the network runs once with k
diffusion samplings batched inside the model on one set of backbone features, the score map
is multiplied by a centred Hann window, the arg-max box is decoded, mapped back to the image
with the crop's resize factor and clipped to the image with a 10-pixel margin.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.profiler import record_function

from ..boxes import clip_xywh, cxcywh_to_xywh
from ..data.sequence import clean_text
from ..data.crop import IMAGENET_MEAN, IMAGENET_STD, box_from_crop, crop_square
from ..model import decode_boxes, resolve_eta
from ..precision import autocast, enable_tf32, resolve_precision

CLIP_MARGIN = 10  # pixels of the box kept inside the image (OSTrack's clip_box margin)


def hann1d(n: int) -> torch.Tensor:
    """Centred Hann window of length n: 0.5 (1 - cos(2 pi k / (n + 1))), k = 1..n (no zero ends)."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return (0.5 * (1 - torch.cos(2 * math.pi * k / (n + 1)))).float()


def hann2d(n: int) -> torch.Tensor:
    """(1,1,n,n) outer product of two centred Hann windows, the score-map prior of OSTrack."""
    w = hann1d(n)
    return (w[:, None] * w[None, :])[None, None]


def box_to_image(pred_cxcywh, prev_box_xywh, resize_factor: float, search_size: int) -> np.ndarray:
    """A box predicted in the search crop (cxcywh normalised to [0,1] of the crop side) -> image xywh.

    The crop was centred on the previous box, so the crop-pixel box is shifted back by the crop's
    top-left corner in the image and divided by `resize_factor` (= search_size / crop side)."""
    crop_box = cxcywh_to_xywh(np.asarray(pred_cxcywh, dtype=np.float64) * search_size)
    return box_from_crop(crop_box, prev_box_xywh, resize_factor, search_size)


def crop_window(prev_box_xywh, resize_factor: float, search_size: int) -> tuple[float, float, float]:
    """(x0, y0, side) of the search crop in image pixels (OSTrack's map-back convention)."""
    x, y, w, h = [float(v) for v in prev_box_xywh]
    side = search_size / resize_factor
    return x + 0.5 * w - 0.5 * side, y + 0.5 * h - 0.5 * side, side


def mask_to_image(mask: np.ndarray, window, image_hw) -> np.ndarray:
    """Paste an MxM mask over the search crop `window` = (x0, y0, side) into an HxW float32 map:
    bilinear inside the crop (edge cells extended, not faded into zero), zero outside it."""
    m = mask.shape[-1]
    x0, y0, side = [float(v) for v in window]
    s = side / m
    # mask cell i is centred at image pixel index x0 + s (i + 0.5) - 0.5
    affine = np.array([[s, 0, x0 + 0.5 * s - 0.5], [0, s, y0 + 0.5 * s - 0.5]], dtype=np.float64)
    H, W = int(image_hw[0]), int(image_hw[1])
    out = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), affine, (W, H),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # pixels whose centre lies in [x0, x0 + side) x [y0, y0 + side) are inside the crop
    clamp = lambda v, hi: min(hi, max(0, math.ceil(v - 0.5)))
    c0, c1, r0, r1 = clamp(x0, W), clamp(x0 + side, W), clamp(y0, H), clamp(y0 + side, H)
    out[:r0], out[r1:], out[:, :c0], out[:, c1:] = 0.0, 0.0, 0.0, 0.0
    return out


class Tracker:
    """Runs a DMTrack model online over one sequence at a time (see the module docstring).

    model: a `dmtrack.model` network (put in eval mode here); config: its `Config`;
    device: torch device (default: the model's); samples: k diffusion samplings per frame
    (default `config.test_samples`); steps: DDIM steps per chain (default `config.sampling_steps`;
    final reading only); average: the reading of "k samplings", final | chain (default
    `config.test_average`, see dmtrack.model.sampling_plan); eta: the sampler's DDIM eta (default
    `config.sampler_eta`; 1 = the paper's stochastic reverse step, each step drawing fresh noise, 0 =
    deterministic DDIM, the chains differing only in x_T); bgr: frames come in OpenCV's BGR order;
    seed: torch RNG seed set at every `initialize`, so a sequence's result (its x_T and every step's
    noise) does not depend on which worker or in what order it ran (None = leave the global RNG alone);
    precision: fp32 | bf16 | fp16 | auto (dmtrack.precision), the autocast of the network (the
    Hann window and the box decoding run in float32). fp32 by default whatever the config's
    `train_precision`: bf16 tracking is opt-in until it is shown to keep the
    AUC (docs/tracking.md)."""

    def __init__(self, model, config, device=None, samples: int | None = None, bgr: bool = False, seed: int | None = 0,
                 steps: int | None = None, average: str | None = None, precision: str = "fp32",
                 eta: float | None = None):
        self.cfg = config
        self.samples = int(samples if samples is not None else config.test_samples)
        if self.samples < 1:
            raise ValueError(f"samples (k) must be >= 1, got {self.samples}")
        self.eta = resolve_eta(config, eta)  # None under reading=authors (its own sampler)
        self.steps, self.average = steps, average
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        # once, after the move (the fused constants live on the device), for the steps this tracker runs
        self.model = model.to(self.device).fuse_for_inference(self.samples, steps, average)
        self.precision = resolve_precision(precision, self.device)
        enable_tf32(self.precision, self.device)
        self.bgr, self.seed = bgr, seed
        S, T = config.search_size, config.template_size
        # Buffers reused every frame: the search tensor is filled in place (no per-frame allocation).
        self._search = torch.empty(1, 3, S, S, device=self.device)
        self._template = torch.empty(1, 3, T, T, device=self.device)
        self._mean = torch.from_numpy(IMAGENET_MEAN * 255).view(3, 1, 1).to(self.device)
        self._std = torch.from_numpy(IMAGENET_STD * 255).view(3, 1, 1).to(self.device)
        self._hann = None  # built on the first frame from the score map's grid size
        self.text = None
        self.box = None
        self.frame = 0
        self.last = {}  # internals of the last frame: window, crop-space mask (a tensor, not synced), sample spread (float)

    # ------------------------------------------------------------------ helpers
    def _rgb(self, image) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
        return image

    def _load(self, crop: np.ndarray, out: torch.Tensor) -> torch.Tensor:
        """uint8 HxWx3 crop -> `out` (1,3,S,S) normalised as crop.normalize, filled in place."""
        if self.bgr:  # swap channels on the small crop, not on the whole frame
            crop = np.ascontiguousarray(crop[..., ::-1])
        out[0].copy_(torch.from_numpy(crop).permute(2, 0, 1), non_blocking=True)
        return out[0].sub_(self._mean).div_(self._std).unsqueeze(0)

    # ------------------------------------------------------------------ API
    @torch.inference_mode()
    def initialize(self, image, box_xywh, text: str | None) -> None:
        """Start a sequence: crop the template around `box_xywh` (x, y, w, h in image pixels) and
        encode `text` once (after `clean_text`, as in training). An empty sentence is an error
        unless the model ignores language."""
        image = self._rgb(image)
        box = np.asarray(box_xywh, dtype=np.float64).reshape(4)
        if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"initial box must have positive width and height, got {box.tolist()}")
        if self.seed is not None:
            torch.manual_seed(self.seed)
        uses_language = getattr(self.cfg, "use_language", True)
        text = clean_text(text or "")  # the caption cleaning training applies (idempotent)
        if uses_language and not text:
            raise ValueError("empty sentence: this model variant needs a description of the target "
                             "(only the no_language variant tracks without one)")
        tokens = self.model.tokenize([text]) if uses_language else None
        with autocast(self.precision, self.device):
            self.text = self.model.encode_text(tokens) if tokens is not None else None
        crop, _, _ = crop_square(image, box, self.cfg.template_factor, self.cfg.template_size)
        self._load(crop, self._template)
        self.box, self.frame, self.last = box, 0, {}

    @torch.inference_mode()
    def track(self, image, return_mask: bool = True, return_chain: bool = False) -> dict:
        """Track one frame. Returns {'box': (4,) float64 xywh in image pixels, 'score': float
        (Hann-windowed peak), 'mask': HxW float32 in [0,1] in image coordinates or None
        (no_diffusion, or return_mask=False)}. return_chain adds this frame's diffusion sampling
        (`chain_arrays`): 'crop' (S,S,3 RGB search crop), 'chain' (steps+1, chains, M, M: x_T .. x_0 in
        [0,1]), 'samples' (k, M, M: the k averaged masks), 'filtered' (M, M: what the head used)."""
        if self.box is None:
            raise RuntimeError("call initialize(image, box, text) before track(image)")
        if return_chain and not self.cfg.use_diffusion:
            raise ValueError(f"variant {self.cfg.variant} has no diffusion module: no sampling chain to show")
        image = self._rgb(image)
        H, W = image.shape[:2]
        S = self.cfg.search_size
        with record_function("track/crop"):
            crop, resize_factor, _ = crop_square(image, self.box, self.cfg.search_factor, S)
            search = self._load(crop, self._search)
        with record_function("track/network"), autocast(self.precision, self.device):
            out = self.model(self._template, search, self.text, return_chain=return_chain, samples=self.samples,
                             steps=self.steps, average=self.average, eta=self.eta)
        with record_function("track/decode"):
            pred, score, spread = self.decode(out)[0]  # the one unavoidable host copy (6 numbers)
        window = crop_window(self.box, resize_factor, S)
        box = box_to_image(pred, self.box, resize_factor, S)
        self.box = clip_xywh(box, W, H, margin=CLIP_MARGIN)
        self.frame += 1
        mask = out.mask
        self.last = {"window": window, "mask": None if mask is None else mask[0, 0],
                     "spread": None if out.samples_masks is None else spread}
        image_mask = None
        if return_mask and mask is not None:
            with record_function("track/mask"):
                image_mask = mask_to_image(mask[0, 0].float().cpu().numpy(), window, (H, W))
        result = {"box": self.box.copy(), "score": float(score), "mask": image_mask}
        if return_chain:
            result.update(crop=crop[..., ::-1].copy() if self.bgr else crop, **chain_arrays(out))
        return result

    def decode(self, out) -> list[tuple[np.ndarray, float, float]]:
        """(box cxcywh in the search crop as float64, Hann-windowed peak, sample spread or NaN without
        samples) of each crop of a forward: the model's own decoding on the windowed score map, in
        float32 whatever the autocast. One host copy for all of them: each copy waits for the GPU."""
        score_map = out.score_map.float()
        if self._hann is None or self._hann.shape[-1] != score_map.shape[-1]:
            self._hann = hann2d(score_map.shape[-1]).to(score_map.device)
        windowed = score_map * self._hann
        pred = decode_boxes(windowed, out.offset_map.float(), out.size_map.float())
        spread = (torch.full_like(pred[:, :1], float("nan")) if out.samples_masks is None
                  else sample_spread(out.samples_masks).float()[:, None])
        rows = torch.cat([pred, windowed.flatten(1).amax(1, keepdim=True), spread], 1).double().cpu().numpy()
        return [(row[:4], row[4], row[5]) for row in rows]


def spread_map(samples: torch.Tensor) -> torch.Tensor:
    """The per-pixel range (max - min) over the k averaged masks of one frame: (k, ...) -> (...)."""
    return samples.amax(0) - samples.amin(0)


def sample_spread(samples: torch.Tensor) -> torch.Tensor:
    """How far apart the k averaged masks of one frame are: the largest per-pixel range
    (`spread_map`), taken over the pixels; samples (..., k,1,M,M) -> (...).
    0 when k = 1 or when every sample is the same mask (the diversity measure of docs/method.md)."""
    return spread_map(samples.movedim(-4, 0)).flatten(-3).amax(-1)


def chain_arrays(out) -> dict:
    """The first crop's diffusion sampling from a model output run with return_chain=True, as numpy."""
    return dict(chain=torch.stack([c[0, :, 0] for c in out.chain]).float().cpu().numpy(),
                samples=out.samples_masks[0, :, 0].float().cpu().numpy(),
                filtered=out.mask[0, 0].float().cpu().numpy())
