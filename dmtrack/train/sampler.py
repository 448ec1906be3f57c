"""Template/search pair sampling for training, as OSTrack's causal sampler and processing.

One training sample (a "pair") is drawn as follows, every random choice coming from a
numpy Generator seeded by (seed, epoch, index), so an epoch is the same whatever the
number of workers, and a resumed run sees the very samples the interrupted one would have:

1. a dataset by its ratio in `cfg.train_datasets`, then a sequence uniformly (RefCOCOg: only
   non-crowd references with w, h > 50, JointNLT's rule; see `visible_frames`);
2. a visible template frame t, then a visible search frame in (t, t + max_gap]; when the
   chosen t has no visible frame in that window, the gap widens by 5 and t is redrawn
   (OSTrack `causal` mode). One-frame sequences (RefCOCOg) use their frame twice;
3. the template crop: factor `template_factor` around the box, to `template_size`, no jitter;
   the search crop: factor `search_factor` around a jittered box (size * exp(N(0,1) * scale
   jitter), centre + (U(0,1) - 0.5) * sqrt(w'h') * centre jitter), to `search_size`; zero
   padding, and a draw is rejected when the padding covers the whole token grid;
4. with probability `flip_prob` both crops are mirrored and the sentence's left/right words
   swapped, so the picture and the sentence keep agreeing; brightness jitter per crop; no
   grayscale (it would contradict colour words);
5. the target box in search-crop coordinates, cxcywh normalised by the crop side (what the
   model's losses and its token-grid box mask take).

A crop that shrinks its frame region 2x or more is cut from the JPEG decoded at 1/2, 1/4 or
1/8 of its size (`reduced_decode`, `dmtrack.data.crop.decode_scale`): same boxes and padding
masks, pixels within a few grey levels, several times less decoding (bench/bench_data_pipeline.py).
The frame stays in OpenCV's BGR order until it is cropped (the channel swap runs on the small
crop), and items carry uint8 crops: the training step normalises them on its device
(`dmtrack.data.crop.normalize_images`), which takes that work off the data workers and sends
a quarter of the bytes to the GPU (timm's PrefetchLoader does the same).
Data workers default to the cores per training process (`data_workers`), one thread each.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data import Sequence, load_benchmark
from ..data.crop import box_in_crop, crop_square, decode_scale
from ..data.files import read_frame_reduced
from ..data.sequence import dataset_root
from ..provenance import cpu_cores

# cfg.train_datasets key -> (benchmark name for dmtrack.data.load_benchmark, split)
TRAIN_SETS = {
    "lasot": ("lasot", "train"),
    "tnl2k": ("tnl2k", "train"),
    "otb_lang": ("otb_lang", "train"),
    "refcocog": ("refcocog", "train"),
    "synthetic": ("synthetic_train", "train"),
}

# Words a horizontal flip turns into each other. "right" as in "correct" is rare in
# tracking captions, so every "right" is read as a direction.
_PAIRS = [("left", "right"), ("leftmost", "rightmost"), ("lefthand", "righthand"),
          ("leftward", "rightward"), ("leftwards", "rightwards"), ("counterclockwise", "clockwise")]
_MIRROR = {**dict(_PAIRS), **{b: a for a, b in _PAIRS}, "counter clockwise": "clockwise", "anticlockwise": "clockwise"}
_MIRROR_RE = re.compile(r"\b(" + "|".join(sorted(_MIRROR, key=len, reverse=True)) + r")\b")


def mirror_sentence(text: str) -> str:
    """The sentence for the horizontally flipped picture: left <-> right (and kin) swapped."""
    return _MIRROR_RE.sub(lambda m: _MIRROR[m.group(1)], text)


def train_roots(cfg, roots: dict | None = None) -> dict[str, tuple[str, Path, str]]:
    """{dataset: (benchmark, root folder, split)} of every dataset with a positive ratio in cfg.train_datasets
    (roots: {dataset: folder} overriding $DMTRACK_DATA / $DMTRACK_<NAME>_ROOT)."""
    roots = roots or {}
    out = {}
    for name, ratio in cfg.train_datasets.items():
        if ratio <= 0:
            continue
        if name not in TRAIN_SETS:
            raise KeyError(f"unknown training dataset {name!r} in train_datasets; known: {', '.join(TRAIN_SETS)}")
        bench, split = TRAIN_SETS[name]
        out[name] = bench, Path(roots[name]) if roots.get(name) else dataset_root(bench), split
    return out


def missing_train_data(cfg, roots: dict | None = None) -> list[str]:
    """A line per training dataset whose root folder is absent (a check that costs nothing, before loading)."""
    gone = [f"{name} at {root}" for name, (_, root, _) in train_roots(cfg, roots).items() if not root.is_dir()]
    return [f"no training data for {', '.join(gone)} (set --data-root or $DMTRACK_DATA)"] if gone else []


def load_train_sequences(cfg, roots: dict | None = None) -> dict[str, list[Sequence]]:
    """The training sequences of every dataset with a positive ratio in cfg.train_datasets."""
    return {name: load_benchmark(bench, root=root, split=split)
            for name, (bench, root, split) in train_roots(cfg, roots).items()}


# RefCOCOg references that are training targets: JointNLT's rule (lib/train/dataset/refcoco_seq.py:
# train refs with iscrowd == 0, a box valid only when w > 50 and h > 50; MMTrack's loader also asks
# w, h > 50). A crowd box covers a group, and a small box gives a search crop of mostly context.
REFERENCE_MIN_SIDE = 50


def visible_frames(seq: Sequence) -> np.ndarray:
    """(N,) bool: frames whose target is visible (dataset flag, if any) and has a real box; for
    RefCOCOg, a non-crowd reference whose box is over REFERENCE_MIN_SIDE pixels each way."""
    b = np.asarray(seq.boxes, dtype=np.float64)
    ok = np.isfinite(b).all(1) & (b[:, 2] > 0) & (b[:, 3] > 0)
    if seq.visible is not None:
        ok &= np.asarray(seq.visible, dtype=bool)
    if seq.dataset == "refcocog":
        ok &= (b[:, 2] > REFERENCE_MIN_SIDE) & (b[:, 3] > REFERENCE_MIN_SIDE) & (not seq.extra.get("iscrowd", False))
    return ok


def sample_frame_ids(visible: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[int, int]:
    """(template, search) frame indices, OSTrack causal mode: a visible template frame t,
    a visible search frame in (t, t + gap]; on failure gap += 5 and t is redrawn."""
    if len(visible) == 1:
        return 0, 0
    ids = np.flatnonzero(visible)
    if len(ids) < 2:
        raise ValueError("a video sequence needs at least 2 visible frames")
    gap = max_gap
    while True:
        t = int(rng.choice(ids[:-1]))  # the last visible frame has no visible successor
        later = ids[(ids > t) & (ids <= t + gap)]
        if len(later):
            return t, int(rng.choice(later))
        gap += 5


def jitter_box(box_xywh, center_jitter: float, scale_jitter: float, rng: np.random.Generator) -> np.ndarray:
    """OSTrack's `_get_jittered_box`: scale w, h by exp(N(0,1) s) each, move the centre by
    (U(0,1) - 0.5) * sqrt(w'h') * c in x and y."""
    x, y, w, h = [float(v) for v in box_xywh]
    wj, hj = np.array([w, h]) * np.exp(rng.standard_normal(2) * scale_jitter)
    cx, cy = np.array([x + w / 2, y + h / 2]) + (rng.random(2) - 0.5) * np.sqrt(wj * hj) * center_jitter
    return np.array([cx - wj / 2, cy - hj / 2, wj, hj])


MAX_AUTO_WORKERS = 16


def data_workers(cfg) -> int:
    """DataLoader workers: cfg.num_workers, or for "auto" the cores this process may use shared by
    the training processes of this node (torchrun's LOCAL_WORLD_SIZE, else WORLD_SIZE, else 1),
    at most MAX_AUTO_WORKERS."""
    if cfg.num_workers != "auto":
        return cfg.num_workers
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return min(cpu_cores() // max(processes, 1), MAX_AUTO_WORKERS)


def single_threaded_workers(workers: int) -> None:
    """One thread per data worker: the workers are the parallelism, and OpenCV's and torch's own
    thread pools in every worker would oversubscribe the cores. OpenCV's is set here, in the
    process the workers fork from (which then does no image work): cv2.setNumThreads called in a
    forked worker deadlocks once this process's OpenCV pool has run (seen with OpenCV 5.0)."""
    if workers > 0:
        cv2.setNumThreads(1)


def worker_init(_worker_id: int) -> None:
    """A data worker's start (see single_threaded_workers): torch single-threaded."""
    torch.set_num_threads(1)


def brightness(crop: np.ndarray, factor: float) -> np.ndarray:
    """uint8 crop times `factor`, clipped to [0, 255] and truncated to uint8 (OSTrack's jitter on
    0..255 values), through a 256-entry table: the same numbers as the float64 product per pixel."""
    table = np.clip(np.arange(256) * factor, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(crop), table)  # a flipped crop is a negative-stride view


class FrameCache:
    """Decoded BGR frames by (path, reduce), least recently used dropped beyond `max_mb` (0 = no cache).

    A call returns `read_frame_reduced(path, reduce, rgb=False)`: (BGR image, the scale it was
    decoded at, full (H, W))."""

    def __init__(self, max_mb: int = 0):
        self.max_bytes, self.bytes, self.frames = max_mb * 2**20, 0, OrderedDict()

    def __call__(self, path, reduce: int = 1) -> tuple[np.ndarray, int, tuple[int, int]]:
        key = (str(path), reduce)
        if key in self.frames:
            self.frames.move_to_end(key)
            return self.frames[key]
        frame = read_frame_reduced(key[0], reduce, rgb=False)
        if self.max_bytes > 0 and frame[0].nbytes <= self.max_bytes:
            self.frames[key] = frame
            self.bytes += frame[0].nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self.frames.popitem(last=False)[1][0].nbytes
        return frame


class PairDataset(Dataset):
    """Training pairs; item (epoch, index) is deterministic in (seed, epoch, index).

    Items are dicts: template (T, T, 3) and search (S, S, 3) uint8 RGB crops (normalised on the
    training device: `dmtrack.data.crop.normalize_images`), box (4,) float32 cxcywh normalised to the
    search crop, text (the cleaned sentence, mirrored when flipped), flipped, dataset, seq, key. The
    crops' padding masks stay in `raw`: they only reject crops here, and the model never reads them, so
    they do not travel through the workers' shared memory (/dev/shm) and the pinned copies."""

    def __init__(self, cfg, sequences: dict[str, list[Sequence]], seed: int | None = None):
        self.cfg = cfg
        self.seed = cfg.seed if seed is None else seed
        self.names, self.seqs, ratios = [], [], []
        for name, ratio in cfg.train_datasets.items():
            if ratio <= 0:
                continue
            if name not in sequences:
                raise KeyError(f"training dataset {name!r} has a ratio but no sequences were loaded")
            usable = [(s, v) for s in sequences[name] for v in [visible_frames(s)] if v.sum() >= min(2, len(s))]
            if not usable:
                raise ValueError(f"training dataset {name!r} has no sequence with enough visible frames")
            self.names.append(name)
            self.seqs.append(usable)
            ratios.append(float(ratio))
        self.p = np.array(ratios) / sum(ratios)
        self.read = FrameCache(cfg.frame_cache_mb)

    def __len__(self) -> int:
        return self.cfg.pairs_per_epoch

    def __getitem__(self, key) -> dict:
        s = self.raw(*key) if isinstance(key, tuple) else self.raw(0, key)
        return dict(template=torch.from_numpy(s["template"]), search=torch.from_numpy(s["search"]),
                    box=torch.from_numpy(s["box"]), text=s["text"], flipped=s["flipped"],
                    dataset=s["dataset"], seq=s["seq"], key=key if isinstance(key, tuple) else (0, key))

    def raw(self, epoch: int, index: int) -> dict:
        """The sample before normalisation: uint8 RGB crops and their bool padding masks (template_pad,
        search_pad), plus frame ids and image-space boxes."""
        rng = np.random.default_rng([self.seed, epoch, index])
        for _ in range(100):
            d = int(rng.choice(len(self.names), p=self.p))
            seq, vis = self.seqs[d][int(rng.integers(len(self.seqs[d])))]
            t, s = sample_frame_ids(vis, self.cfg.max_gap, rng)
            out = self._pair(seq, t, s, rng)
            if out is not None:
                out["dataset"] = self.names[d]
                return out
        raise RuntimeError(f"no valid training pair after 100 draws (epoch {epoch}, index {index})")

    def _pair(self, seq: Sequence, t: int, s: int, rng: np.random.Generator) -> dict | None:
        cfg = self.cfg
        tbox, sbox = np.asarray(seq.boxes[t], float), np.asarray(seq.boxes[s], float)
        tcrop, _, tpad = self._crop(seq.frames[t], tbox, cfg.template_factor, cfg.template_size)
        jbox = jitter_box(sbox, cfg.search_center_jitter, cfg.search_scale_jitter, rng)
        scrop, rf, spad = self._crop(seq.frames[s], jbox, cfg.search_factor, cfg.search_size)
        grid = cfg.search_size // cfg.patch_size
        if cv2.resize(spad.astype(np.uint8), (grid, grid), interpolation=cv2.INTER_NEAREST).all():
            return None  # OSTrack: a search crop that is padding on every token is useless
        box = box_in_crop(sbox, jbox, rf, cfg.search_size)  # xywh, crop pixels
        if box[2] <= 0 or box[3] <= 0:
            return None
        text = seq.text
        flipped = bool(rng.random() < cfg.flip_prob)
        if flipped:  # mirror picture and sentence together
            tcrop, tpad, scrop, spad = tcrop[:, ::-1], tpad[:, ::-1], scrop[:, ::-1], spad[:, ::-1]
            box[0] = cfg.search_size - box[0] - box[2]
            text = mirror_sentence(text)
        b = cfg.brightness_jitter
        if b > 0:  # per crop, as OSTrack's ToTensorAndJitter
            tcrop = brightness(tcrop, rng.uniform(max(0.0, 1 - b), 1 + b))
            scrop = brightness(scrop, rng.uniform(max(0.0, 1 - b), 1 + b))
        cxcywh = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]]) / cfg.search_size
        return dict(template=np.ascontiguousarray(tcrop), search=np.ascontiguousarray(scrop),
                    template_pad=np.ascontiguousarray(tpad), search_pad=np.ascontiguousarray(spad),
                    box=cxcywh.astype(np.float32), text=text, flipped=flipped, seq=seq.name,
                    frame_ids=(t, s), search_box_image=sbox, jittered_box=jbox)


    def _crop(self, path, box, factor: float, out_size: int):
        """crop_square of the frame, decoded at reduced size when the crop shrinks it 2x or more."""
        reduce = decode_scale(box, factor, out_size) if self.cfg.reduced_decode else 1
        image, scale, size = self.read(path, reduce)
        crop, resize_factor, pad = crop_square(image, box, factor, out_size, scale=scale, size=size)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), resize_factor, pad  # zero padding: the same in both orders


class PairSampler(Sampler):
    """Yields (epoch, index) keys for one rank: the epoch's global indices rank, rank + W,
    rank + 2W, ... (DistributedSampler-style sharding without shuffling: every index is
    already a random draw), starting `start` samples into this rank's share (resume)."""

    def __init__(self, pairs_per_epoch: int, rank: int = 0, world_size: int = 1):
        self.per_rank = pairs_per_epoch // world_size
        self.rank, self.world_size, self.epoch, self.start = rank, world_size, 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self):
        for k in range(self.start, self.per_rank):
            yield self.epoch, self.rank + k * self.world_size


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep strings and flags as lists."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("template", "search", "box")}
    out.update({k: [it[k] for it in items] for k in ("text", "flipped", "dataset", "seq", "key")})
    return out
