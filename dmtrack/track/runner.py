"""Run a tracker over a benchmark: pytracking-layout raw results, resumable, in parallel, scored.

    scores = evaluate("runs/full/model.pth", "synthetic_lasot", "runs/full/eval_lasot", samples=5)
    track_benchmark(make_tracker, sequences, out, meta)   # the core, for any tracker factory

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

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import config_from_dict
from ..data import load_benchmark, read_frame, truncate
from ..eval.metrics import PROTOCOLS
from ..eval.results import save_scores, write_results
from ..io import atomic_open
from ..layout import RUN_META, read_run_meta, write_run_meta
from ..model import build_model, load_checkpoint, load_weights
from ..precision import resolve_precision
from ..provenance import cpu_cores, resolve_device
from .tracker import Tracker, mask_to_image


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
    res = track_sequence(tracker, seq, frames=max_frames, record_crop_masks=save_masks, on_frame=on_frame)
    return write_sequence(out, seq, res, save_masks)


def write_sequence(out: Path, seq, res: dict, save_masks: bool) -> int:
    """Write one tracked sequence's files (masks, then times and boxes); returns its frame count."""
    if save_masks:
        h, w = read_frame(seq.frames[0]).shape[:2]
        write_masks(out / "masks" / f"{seq.name}.npz", res, (h, w))
    write_results(out, seq.name, res["boxes"], res["times"])
    return len(res["boxes"])


# ----------------------------------------------------------------------------- trackers
def load_model(checkpoint, device=None, ckpt: dict | None = None):
    """(model in eval mode, Config) from a `save_checkpoint` file (or its already-read dict `ckpt`)."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt["config"])
    # The trained weights replace any pretrained start point; do not require that file to exist.
    model = build_model(cfg.replace(pretrained=""))
    load_weights(model, ckpt, checkpoint)  # strict; a frozen BERT the checkpoint left out comes from cfg.text_encoder
    return model.to(device or resolve_device(cfg.device)).eval(), cfg


@dataclass(frozen=True)
class CheckpointTracker:
    """A tracker factory for `track_benchmark`: the Tracker of a checkpoint at k samplings, built in
    whichever process calls it (picklable, so each worker process loads its own copy)."""
    checkpoint: str
    samples: int
    seed: int
    device: str | None = None

    def __call__(self) -> Tracker:
        model, cfg = load_model(self.checkpoint, self.device)
        return Tracker(model, cfg, device=self.device, samples=self.samples, seed=self.seed)


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ----------------------------------------------------------------------------- the run
def _check_meta(out: Path, meta: dict, replace_stale: bool = False) -> None:
    """Refuse to resume into a folder whose results came from other settings (or, with
    replace_stale, delete those results: the pipeline re-evaluates a retrained model)."""
    old = read_run_meta(out)
    if old is not None:
        diff = {k: (old.get(k), v) for k, v in meta.items()
                if k in ("checkpoint", "weights_sha256", "benchmark", "samples", "seed", "variant") and old.get(k) != v}
        if "precision" in meta and old.get("precision", "fp32") != meta["precision"]:  # unrecorded: the fp32 of before
            diff["precision"] = (old.get("precision", "fp32"), meta["precision"])
        if diff and replace_stale:
            shutil.rmtree(out)
            out.mkdir(parents=True)
        elif diff:
            raise ValueError(f"{out / RUN_META}: the results in {out} come from other settings "
                             + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
                             + "; use another --out or delete that folder")
    write_run_meta(out, meta)


def track_benchmark(make_tracker, sequences, out, meta: dict, *, workers: int = 1, max_frames: int | None = None,
                    save_masks: bool = False, progress: bool | None = None, replace_stale: bool = False,
                    batch: int = 1) -> None:
    """Track `sequences` into `out` (raw results in pytracking's layout), resuming a stopped run.

    make_tracker: a zero-argument callable returning a Tracker, called once in this process
    (workers=1) or once in each worker process (then it must be picklable, e.g. CheckpointTracker);
    meta: what identifies the results (written to evaluate.json; a folder holding results of
    other settings is refused, or emptied with replace_stale); max_frames: track only the first N
    frames of each sequence; save_masks: also write <out>/masks/<seq>.npz (see load_masks); batch:
    sequences tracked at once in one process (dmtrack.track.batched: the same results, one
    batched forward per frame), with workers=1."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_meta(out, meta, replace_stale)
    remove_stale_temps(out)
    n_of = {s.name: len(truncate(s, max_frames)) for s in sequences}
    todo = [s for s in sequences if not is_finished(out, s.name, n_of[s.name], save_masks)]
    todo.sort(key=lambda s: -n_of[s.name])  # longest first: better load balance across workers
    workers = max(1, min(int(workers), len(todo) or 1))
    if batch > 1 and workers > 1:
        raise ValueError(f"batch {batch} tracks sequences together in one process; use workers=1 with it")
    with tqdm(total=sum(n_of[s.name] for s in todo), desc=f"{meta.get('benchmark', '')} k={meta.get('samples')}",
              unit="frame", disable=(None if progress is None else not progress)) as bar:
        bar.set_postfix(done=len(sequences) - len(todo), of=len(sequences))
        if batch > 1 and todo:
            from .batched import BatchTracker
            BatchTracker(make_tracker(), batch).run(todo, max_frames, save_masks, on_frame=lambda: bar.update(1),
                                                    on_done=lambda s, res: write_sequence(out, s, res, save_masks))
        elif workers == 1 and todo:
            tracker = make_tracker()
            for s in todo:
                run_sequence(tracker, s, out, max_frames, save_masks, on_frame=lambda: bar.update(1))
        elif todo:
            _run_pool(make_tracker, todo, out, max_frames, save_masks, workers, bar)


def select_sequences(seqs: list, names: list[str] | None, benchmark: str) -> list:
    """The sequences named in `names` (None = all), in the benchmark's order; an unknown name raises."""
    if not names:
        return seqs
    if isinstance(names, str):  # "a,b" would be read letter by letter; the CLI splits comma lists
        raise TypeError(f"sequences must be a list of names, got the string {names!r}")
    unknown = sorted(set(names) - {s.name for s in seqs})
    if unknown:
        raise KeyError(f"{benchmark}: unknown sequence(s) {', '.join(unknown)}")
    return [s for s in seqs if s.name in set(names)]


def evaluate(checkpoint, benchmark: str, out, samples: int | None = None, *, data_root=None,
             split: str | None = None, workers: int = 1, max_frames: int | None = None,
             sequences: list[str] | None = None, protocols=PROTOCOLS, save_masks: bool = False, device=None,
             seed: int | None = None, progress: bool | None = None, replace_stale: bool = False, batch: int = 1) -> dict:
    """Track every sequence of `benchmark` with a checkpoint's model and score it; returns {protocol: Scores}.

    samples: k (default: the config's test_samples); data_root: the benchmark's folder (default:
    `dataset_root`); sequences: names to run (default all); protocols: those to score at the end;
    seed: torch seed set at each sequence start (default: the config's seed); batch: sequences
    tracked at once (track_benchmark). Finished sequences
    are resumed only from the same weights (the checkpoint's SHA-256), so a retrained model.pth
    never reuses old results; replace_stale deletes such results instead of raising."""
    cfg = config_from_dict(load_checkpoint(checkpoint)["config"])
    k = int(samples if samples is not None else cfg.test_samples)
    seed = cfg.seed if seed is None else seed
    seqs = select_sequences(load_benchmark(benchmark, root=data_root, split=split, progress=False), sequences, benchmark)
    if not seqs:
        raise ValueError(f"{benchmark}: no sequences to evaluate")
    # Sentences are checked up front: one empty description must not stop a long run midway.
    empty = [s.name for s in seqs if cfg.use_language and not s.text.strip()]
    if empty:
        raise ValueError(f"{benchmark}: empty description for sequence(s) {', '.join(empty)}")
    meta = {"checkpoint": str(Path(checkpoint).resolve()), "weights_sha256": file_sha256(checkpoint),
            "benchmark": benchmark, "samples": k, "seed": seed, "variant": cfg.variant, "profile": cfg.profile,
            "max_frames": max_frames, "data_root": str(data_root) if data_root else None,
            "precision": resolve_precision(cfg.precision, device or resolve_device(cfg.device))}
    track_benchmark(CheckpointTracker(str(checkpoint), k, seed, device), seqs, out, meta, workers=workers,
                    max_frames=max_frames, save_masks=save_masks and cfg.use_diffusion, progress=progress,
                    replace_stale=replace_stale, batch=batch)
    return save_scores(out, [truncate(s, max_frames) for s in seqs], protocols, benchmark)


# ----------------------------------------------------------------------------- worker processes
_WORKER = {}


def _worker_init(make_tracker, threads):
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    _WORKER["tracker"] = make_tracker()


def _worker_run(seq, out, max_frames, save_masks):
    t0 = time.perf_counter()
    n = run_sequence(_WORKER["tracker"], seq, Path(out), max_frames, save_masks)
    return seq.name, n, time.perf_counter() - t0


def _run_pool(make_tracker, todo, out, max_frames, save_masks, workers, bar):
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(make_tracker, max(1, cpu_cores() // workers))) as pool:
        pending = {pool.submit(_worker_run, s, str(out), max_frames, save_masks) for s in todo}
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
