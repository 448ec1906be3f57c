"""Run a tracker over a benchmark: pytracking-layout raw results, resumable, in parallel, scored.

    scores = evaluate("runs/full/last.pth", "synthetic_lasot", "runs/full/eval_lasot", samples=5)

<out>/<seq>.txt (x, y, w, h per frame, frame 1 = the initial box) and <out>/<seq>_time.txt
(seconds per frame) are written atomically by `dmtrack.eval.write_results` once a sequence is
done, so a stopped run leaves only whole files. A sequence counts as finished when both files
hold one row per frame to track; a new run skips those and removes temp files left by a killed
one. Sequences run in worker processes (spawned; each with cores / workers torch threads).
The run ends by scoring the results under the pytracking and the official protocols
(<out>/scores_<protocol>.json). <out>/evaluate.json records the run's settings, and a
resumed run with other settings (checkpoint, k, seed) is refused rather than mixed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.readers import DatasetError
from dmtrack.io import atomic_open, atomic_write_json

PROTOCOLS = ("pytracking", "official")


class FrameError(DatasetError, FileNotFoundError):
    """A frame image is missing or cannot be decoded; the message names the file."""


def read_frame(path) -> np.ndarray:
    """HxWx3 uint8 RGB image read with OpenCV; a missing or undecodable file raises FrameError."""
    path = Path(path)
    if not path.is_file():
        raise FrameError(f"missing frame image: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"cannot decode frame image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- one sequence
def track_sequence(tracker, seq, frames: int | None = None, keep_masks=(), record_crop_masks: bool = False,
                   on_frame=None) -> dict:
    """Track `seq` (a dmtrack Sequence) from its first ground-truth box with its sentence (`seq.text`).

    frames: track only the first `frames` frames (None = all); keep_masks: frame indices
    (0-based) whose mask is returned in image coordinates (True = every frame);
    record_crop_masks: also return every frame's mask in search-crop coordinates (float16)
    with its crop window (x0, y0, side), the compact form `--save-masks` stores.
    Returns {'boxes': (n,4), 'times': (n,) seconds of the tracker calls only (image reading
    excluded, as pytracking), 'scores': (n,) (NaN for frame 0), 'masks': {index: HxW float32}}
    (+ 'crop_masks' (n-1,M,M), 'windows' (n-1,3) with record_crop_masks)."""
    n = len(seq) if frames is None else min(int(frames), len(seq))
    if n < 1:
        raise ValueError(f"{seq.name}: nothing to track (frames={frames})")
    keep = range(n) if keep_masks is True else set(int(i) for i in keep_masks)
    boxes, times, scores = np.zeros((n, 4)), np.zeros(n), np.full(n, np.nan)
    masks, crop_masks, windows = {}, [], []
    for i in range(n):
        image = read_frame(seq.frames[i])
        t0 = time.perf_counter()
        if i == 0:
            tracker.initialize(image, seq.boxes[0], seq.text)  # the cleaned sentence, as in training
            boxes[0] = seq.boxes[0]
        else:
            out = tracker.track(image, return_mask=i in keep)
            boxes[i], scores[i] = out["box"], out["score"]
            if out["mask"] is not None:
                masks[i] = out["mask"]
        times[i] = time.perf_counter() - t0
        if i > 0 and record_crop_masks and tracker.last.get("mask") is not None:
            crop_masks.append(tracker.last["mask"].to("cpu", torch.float16).numpy())
            windows.append(tracker.last["window"])
        if on_frame is not None:
            on_frame()
    result = {"boxes": boxes, "times": times, "scores": scores, "masks": masks}
    if record_crop_masks:
        result["crop_masks"] = np.stack(crop_masks) if crop_masks else np.zeros((0, 0, 0), np.float16)
        result["windows"] = np.asarray(windows, dtype=np.float32).reshape(-1, 3)
    return result


def write_masks(path: Path, result: dict, image_hw) -> None:
    """Atomically write the crop-space masks of one sequence (npz: masks, windows, frames, image_size)."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, masks=result["crop_masks"], windows=result["windows"],
                            frames=np.arange(1, len(result["windows"]) + 1), image_size=np.asarray(image_hw))


def load_masks(path, frame: int) -> np.ndarray:
    """The mask of 0-based `frame` (>= 1) from a `--save-masks` npz, pasted into image coordinates."""
    from .tracker import mask_to_image

    with np.load(path) as z:
        i = int(np.searchsorted(z["frames"], frame))
        if i >= len(z["frames"]) or z["frames"][i] != frame:
            raise KeyError(f"{path}: no mask for frame {frame}")
        return mask_to_image(z["masks"][i].astype(np.float32), z["windows"][i], z["image_size"])


def _rows(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return -1


def is_finished(out: Path, name: str, n_frames: int, masks: bool = False) -> bool:
    """Both result files exist with one row per frame (and the mask file, when masks are saved)."""
    ok = _rows(out / f"{name}.txt") == n_frames and _rows(out / f"{name}_time.txt") == n_frames
    return ok and (not masks or (out / "masks" / f"{name}.npz").is_file())


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete temp files of atomic writes a killed run left behind (.<file>.<random>.tmp)."""
    stale = [p for d in (out, out / "masks") if d.is_dir() for p in d.glob(".*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def run_sequence(tracker, seq, out: Path, max_frames: int | None = None, save_masks: bool = False,
                 on_frame=None) -> int:
    """Track one sequence and write its files (masks, then times and boxes); returns frames tracked."""
    from ..eval.results import write_results

    res = track_sequence(tracker, seq, frames=max_frames, record_crop_masks=save_masks, on_frame=on_frame)
    if save_masks:
        h, w = read_frame(seq.frames[0]).shape[:2]
        write_masks(out / "masks" / f"{seq.name}.npz", res, (h, w))
    write_results(out, seq.name, res["boxes"], res["times"])
    return len(res["boxes"])


# ----------------------------------------------------------------------------- model loading
def load_model(checkpoint, device=None, ckpt: dict | None = None):
    """(model in eval mode, Config) from a `save_checkpoint` file (or its already-read dict `ckpt`)."""
    from ..config import config_from_dict
    from ..model import build_model, load_checkpoint

    ckpt = ckpt if ckpt is not None else load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt["config"])
    # The trained weights replace any pretrained start point; do not require that file to exist.
    model = build_model(cfg.replace(pretrained=""))
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(cfg, device)).eval(), cfg


def resolve_device(cfg, device=None) -> str:
    """`device` if given, else the config's ("auto" = cuda when available, else cpu)."""
    return device or (("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)


def make_tracker(model, cfg, samples=None, device=None, seed=None):
    from .tracker import Tracker

    return Tracker(model, cfg, device=device, samples=samples, seed=cfg.seed if seed is None else seed)


# ----------------------------------------------------------------------------- worker processes
_WORKER = {}


def _worker_init(source, samples, device, seed, threads):
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    if isinstance(source, dict):  # an in-memory model shipped as (state_dict, config dict)
        from ..config import config_from_dict
        from ..model import build_model

        cfg = config_from_dict(source["config"])
        model = build_model(cfg.replace(pretrained=""))
        model.load_state_dict(source["model"])
        model = model.to(resolve_device(cfg, device)).eval()
    else:
        model, cfg = load_model(source, device)
    _WORKER["tracker"] = make_tracker(model, cfg, samples, device, seed)


def _worker_run(seq, out, max_frames, save_masks):
    t0 = time.perf_counter()
    n = run_sequence(_WORKER["tracker"], seq, Path(out), max_frames, save_masks)
    return seq.name, n, time.perf_counter() - t0


# ----------------------------------------------------------------------------- the run
def _truncate(seq, n: int | None):
    """The first n frames of a sequence (for scoring --max-frames runs against matching ground truth)."""
    if n is None or n >= len(seq):
        return seq
    cut = lambda a: None if a is None else a[:n]
    return dataclasses.replace(seq, frames=seq.frames[:n], boxes=seq.boxes[:n], visible=cut(seq.visible),
                               drift=cut(seq.drift))


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_manifest(out: Path, manifest: dict, replace_stale: bool = False) -> None:
    """Refuse to resume into a folder whose results came from other settings (or, with
    replace_stale, delete those results: the pipeline re-evaluates a retrained model)."""
    path = out / "evaluate.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in manifest.items()
                if k in ("checkpoint", "weights_sha256", "benchmark", "samples", "seed", "variant") and old.get(k) != v}
        if diff and replace_stale:
            shutil.rmtree(out)
            out.mkdir(parents=True)
        elif diff:
            raise ValueError(f"{path}: the results in {out} come from other settings "
                             + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
                             + "; use another --out or delete that folder")
    atomic_write_json(path, manifest)


def score_results(out, sequences, protocols=PROTOCOLS, benchmark: str = "") -> dict:
    """Score <out>/<seq>.txt under each protocol; writes <out>/scores_<protocol>.json, returns {protocol: Scores}."""
    from ..eval.results import score_folder

    out = Path(out)
    scores = {}
    for protocol in protocols:
        s = score_folder(out, sequences, protocol=protocol, benchmark=benchmark)
        atomic_write_json(out / f"scores_{protocol}.json", s.to_json())
        scores[protocol] = s
    return scores


def evaluate(checkpoint_or_model, benchmark: str, out, samples: int | None = None, *, data_root=None,
             split: str | None = None, workers: int = 1, max_frames: int | None = None, sequences=None,
             protocol: str = "both", save_masks: bool = False, device=None, seed: int | None = None,
             progress: bool | None = None, config=None, weights_id: str | None = None,
             replace_stale: bool = False) -> dict:
    """Track every sequence of `benchmark` and score it; returns {protocol: Scores}.

    checkpoint_or_model: a checkpoint path, or a model (then `config` is its Config);
    samples: k (default: the config's test_samples); data_root: the benchmark's folder
    (default: `dataset_root`); workers: parallel processes (1 = in this process);
    max_frames: track only the first N frames of each sequence (scored against the same N);
    sequences: names to run (list or "a,b"); protocol: both | pytracking | official | none;
    save_masks: also write <out>/masks/<seq>.npz (crop-space masks + windows, see load_masks);
    seed: torch seed set at each sequence start (default: the config's seed);
    weights_id: identifies an in-memory model's weights (e.g. file_sha256 of its checkpoint; a
    checkpoint path is hashed here): finished sequences are resumed only from the same weights,
    so a retrained model.pth never reuses old results; replace_stale: delete results that came
    from other settings or weights instead of raising (the pipeline's re-evaluation)."""
    from tqdm.auto import tqdm

    from ..config import config_from_dict
    from ..data import load_benchmark
    from ..model import load_checkpoint

    if protocol not in ("both", "none") + PROTOCOLS:
        raise ValueError(f"protocol must be both, none, {' or '.join(PROTOCOLS)}; got {protocol!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(checkpoint_or_model, (str, os.PathLike)):
        # the network is built only if this process tracks (workers build their own)
        ckpt = load_checkpoint(checkpoint_or_model)
        model, cfg = None, config_from_dict(ckpt["config"])
        source = ckpt_name = str(Path(checkpoint_or_model).resolve())
    else:
        if config is None:
            raise ValueError("pass config= together with an in-memory model")
        model, cfg = checkpoint_or_model, config
        source, ckpt_name = None, f"<in-memory {cfg.profile}/{cfg.variant}>"
    k = int(samples if samples is not None else cfg.test_samples)
    seed = cfg.seed if seed is None else seed

    seqs = load_benchmark(benchmark, root=data_root, split=split, progress=False)
    if sequences:
        wanted = [s.strip() for s in sequences.split(",")] if isinstance(sequences, str) else list(sequences)
        known = {s.name for s in seqs}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise KeyError(f"{benchmark}: unknown sequence(s) {', '.join(unknown)}")
        seqs = [s for s in seqs if s.name in set(wanted)]
    if not seqs:
        raise ValueError(f"{benchmark}: no sequences to evaluate")
    # Sentences are checked up front: one empty description must not stop a long run midway.
    if cfg.use_language:
        empty = [s.name for s in seqs if not s.text.strip()]
        if empty:
            raise ValueError(f"{benchmark}: empty description for sequence(s) {', '.join(empty)}")
    has_masks = save_masks and cfg.use_diffusion

    # the checkpoint's content, not only its path: a retrained model.pth must not reuse old results
    digest = file_sha256(checkpoint_or_model) if source is not None else weights_id
    _check_manifest(out, {"checkpoint": ckpt_name, "weights_sha256": digest, "benchmark": benchmark, "samples": k, "seed": seed,
                          "variant": cfg.variant, "profile": cfg.profile, "max_frames": max_frames,
                          "data_root": str(data_root) if data_root else None}, replace_stale)
    remove_stale_temps(out)
    n_of = {s.name: len(s) if max_frames is None else min(len(s), int(max_frames)) for s in seqs}
    todo = [s for s in seqs if not is_finished(out, s.name, n_of[s.name], has_masks)]
    todo.sort(key=lambda s: -n_of[s.name])  # longest first: better load balance across workers
    total = sum(n_of[s.name] for s in todo)
    desc = f"{benchmark} k={k}"
    workers = max(1, min(int(workers), len(todo) or 1))
    with tqdm(total=total, desc=desc, unit="frame", disable=(None if progress is None else not progress)) as bar:
        bar.set_postfix(done=len(seqs) - len(todo), of=len(seqs))
        if workers == 1 and todo:
            if model is None:
                model, cfg = load_model(source, device, ckpt)
            tracker = make_tracker(model, cfg, k, device, seed)
            for s in todo:
                run_sequence(tracker, s, out, max_frames, has_masks, on_frame=lambda: bar.update(1))
        elif todo:
            _run_pool(model, cfg, source, k, device, seed, todo, out, max_frames, has_masks, workers, bar)

    protocols = PROTOCOLS if protocol == "both" else () if protocol == "none" else (protocol,)
    return score_results(out, [_truncate(s, max_frames) for s in seqs], protocols, benchmark)


def _run_pool(model, cfg, source, k, device, seed, todo, out, max_frames, save_masks, workers, bar):
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    if source is None:  # an in-memory model: ship its weights to the workers
        source = {"model": {n: t.detach().cpu() for n, t in model.state_dict().items()}, "config": cfg.to_dict()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(source, k, device, seed, threads)) as pool:
        futures = [pool.submit(_worker_run, s, str(out), max_frames, save_masks) for s in todo]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
                name, n, _ = f.result()
                bar.update(n)
                bar.set_postfix(last=name)
