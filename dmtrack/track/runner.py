"""Run a tracker over a benchmark: pytracking-layout raw results, resumable, in parallel, scored.

    scores = evaluate("runs/full/model.pth", "synthetic_lasot", "runs/full/eval_lasot", TrackSettings(samples=5),
                      DataSelection(root="data/synthetic", max_frames=50), Execution(workers=2))
    track_benchmark(make_tracker, sequences, out, meta)   # the core, for any tracker factory

What evaluate takes comes in three frozen value objects: TrackSettings (how the tracker runs),
DataSelection (which sequences, which frames, which sentence) and Execution (processes, GPUs,
progress, what to do with stale results); a trained variant's results folder is
dmtrack.layout.EvalRun's.

<out>/<seq>.txt (x, y, w, h per frame, frame 1 = the initial box) and <out>/<seq>_time.txt
(seconds per frame) are written atomically by `dmtrack.eval.write_results` once a sequence is
done, so a stopped run leaves only whole files; a diffusion model's per-frame sample spread goes
to <out>/spread/<seq>.csv (dmtrack.layout.spread_path) before them. A sequence counts as finished
when its files hold one row per frame to track; a new run skips those and removes temp files left by a killed
one. Sequences run in worker processes (spawned; each with cores / workers torch threads),
which are stopped when the run is (an exception, Ctrl-C, SIGTERM) and end by themselves when
it is killed. The run ends by scoring the results under the pytracking and the official
protocols (<out>/scores_<protocol>.json). <out>/evaluate.json records the run's settings and
a fingerprint of each sequence's inputs: a resumed run with other settings (weights, k,
seed) or whose data give a finished sequence other inputs is refused rather than mixed. One
run at a time holds <out> (dmtrack.io.exclusive_lock).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import config_from_dict
from ..data import FrameError, load_benchmark, read_frame, truncate
from ..data.sentences import with_sentence
from ..eval.metrics import PROTOCOLS
from ..eval.results import save_scores, write_results
from ..io import (LOCK_NAME, atomic_open, atomic_write_text, exclusive_lock, exit_with_parent, remove_stale_temps,
                  sigterm_as_interrupt)
from ..layout import RUN_META, read_run_meta, spread_dir, spread_path, write_run_meta
from ..model import build_model, load_checkpoint, load_weights, resolve_eta, sampling_plan
from ..precision import resolve_precision
from ..provenance import check_gpus, cpu_cores, file_sha256, gpu_environment, resolve_device, visible_gpus
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
    excluded, as pytracking), 'scores': (n,) (NaN for frame 0), 'spread': (n,) the sample spread
    of each frame (`dmtrack.track.tracker.sample_spread`; NaN for frame 0 and trackers without samples),
    'masks': {index: HxW float32}} (+ 'crop_masks' (n-1,M,M), 'windows' (n-1,3) with record_crop_masks).
    A frame whose size differs from the first frame's raises FrameError naming both files: no
    benchmark read here changes resolution within a video, and the boxes would not match it."""
    n = len(seq) if frames is None else min(int(frames), len(seq))
    if n < 1:
        raise ValueError(f"{seq.name}: nothing to track (frames={frames})")
    if seq.frames is None:
        raise ValueError(f"{seq.name}: loaded without its frames (load_benchmark(..., frames=False))")
    x, y, w, h = first = [float(v) for v in seq.boxes[0]]
    if not (np.isfinite([x, y]).all() and w > 0 and h > 0):  # a NaN w or h fails the comparison
        raise ValueError(f"sequence {seq.name}: the first box {first} is not a box with w, h > 0 "
                         f"(the tracker starts from it)")
    keep = range(n) if keep_masks is True else set(int(i) for i in keep_masks)
    boxes, times, scores, spread = np.zeros((n, 4)), np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    masks, crop_masks, windows = {}, [], []
    for i in range(n):
        image = read_frame(seq.frames[i])
        if i == 0:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise FrameError(f"{seq.frames[i]}: {image.shape[1]}x{image.shape[0]} pixels, but the first frame of "
                             f"{seq.name} ({seq.frames[0]}) is {size[1]}x{size[0]}; a sequence's frames must share "
                             f"one size")
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
        if i > 0 and getattr(tracker, "last", {}).get("spread") is not None:
            spread[i] = tracker.last["spread"]  # a float, copied with the box in decode()
        if i > 0 and record_crop_masks and tracker.last.get("mask") is not None:
            crop_masks.append(tracker.last["mask"].to("cpu", torch.float16).numpy())
            windows.append(tracker.last["window"])
        if on_frame is not None:
            on_frame()
    result = {"boxes": boxes, "times": times, "scores": scores, "spread": spread, "masks": masks}
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


def is_finished(out: Path, name: str, n_frames: int, masks: bool = False, spread: bool = False) -> bool:
    """Both result files exist with one row per frame (and the mask file, when masks are saved, and
    the spread file with one row per tracked frame, when the tracker samples masks)."""
    ok = _rows(out / f"{name}.txt") == n_frames and _rows(out / f"{name}_time.txt") == n_frames
    ok = ok and (not spread or n_frames < 2 or _rows(spread_path(out, name)) == n_frames - 1)
    return ok and (not masks or (out / "masks" / f"{name}.npz").is_file())


def result_files(out: Path, name: str) -> list[Path]:
    """Every file a run writes for sequence `name` (boxes, times, masks)."""
    return [out / f"{name}.txt", out / f"{name}_time.txt", out / "masks" / f"{name}.npz", spread_path(out, name)]


def sequence_inputs(seq, max_frames: int | None = None) -> str:
    """A fingerprint of what a sequence's tracking result depends on besides the tracker: the
    number of frames tracked, the first ground-truth box, the cleaned sentence and the size in
    bytes of the first image. Cheap (no image is read) and free of paths, so a moved dataset
    keeps its results while an edited or regenerated one does not."""
    s = truncate(seq, max_frames)
    try:
        size = s.frames[0].stat().st_size
    except FileNotFoundError:
        raise FrameError(f"missing frame image: {s.frames[0]}") from None
    blob = json.dumps([len(s), [float(v) for v in s.boxes[0]], s.text, size])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_sequence(tracker, seq, out: Path, max_frames: int | None = None, save_masks: bool = False,
                 on_frame=None) -> int:
    """Track one sequence and write its files (masks and spread, then times and boxes); returns frames tracked."""
    res = track_sequence(tracker, seq, frames=max_frames, record_crop_masks=save_masks, on_frame=on_frame)
    return write_sequence(out, seq, res, save_masks)


def write_sequence(out: Path, seq, res: dict, save_masks: bool) -> int:
    """Write one tracked sequence's files (spread and masks, then times and boxes); returns its frame count."""
    spread = res.get("spread")
    if spread is not None and np.isfinite(spread[1:]).any():
        atomic_write_text(spread_path(out, seq.name), "".join(f"{v:.6f}\n" for v in spread[1:]))
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
class TrackSettings:
    """How the tracker runs (None = the checkpoint config's value): k samplings, the torch seed set at
    each sequence start, the reading of "k samplings" (final | chain, dmtrack.model.sampling_plan), DDIM
    steps per chain (final reading only), the autocast (dmtrack.precision; fp32 whatever the training's),
    the device, the sequences tracked at once in one process (dmtrack.track.batched), and the sampler's
    DDIM eta (None = the config's sampler_eta; 1 = the paper's stochastic reverse step, 0 = deterministic)."""
    samples: int | None = None
    seed: int | None = None
    average: str | None = None
    steps: int | None = None
    precision: str = "fp32"
    device: str | None = None
    batch: int = 1
    eta: float | None = None

    def tracker(self, model, cfg) -> Tracker:
        return Tracker(model, cfg, device=self.device, samples=self.samples, seed=self.seed, steps=self.steps,
                       average=self.average, precision=self.precision, eta=self.eta)


@dataclass(frozen=True)
class DataSelection:
    """What evaluate tracks: the benchmark's folder (None = `dataset_root`) and split (None = its test
    split), the sequences by name (None = all), the first max_frames frames of each (None = all), and the
    sentence each is tracked with (true | misleading | uninformative: dmtrack.data.sentences)."""
    root: str | Path | None = None
    split: str | None = None
    sequences: list[str] | None = None
    max_frames: int | None = None
    sentence: str = "true"


@dataclass(frozen=True)
class Execution:
    """How a run executes: worker processes, the GPUs they spread over (track_benchmark), the progress bar
    (None = tqdm's default), and replace_stale: delete results of other settings or inputs and redo them
    (the chain's way) instead of refusing them."""
    workers: int = 1
    gpus: list | None = None
    progress: bool | None = None
    replace_stale: bool = False


@dataclass(frozen=True)
class CheckpointTracker:
    """A tracker factory for `track_benchmark`: the Tracker of a checkpoint with `settings`, built in
    whichever process calls it (picklable, so each worker process loads its own copy)."""
    checkpoint: str
    settings: TrackSettings = TrackSettings()

    def __call__(self) -> Tracker:
        model, cfg = load_model(self.checkpoint, self.settings.device)
        return self.settings.tracker(model, cfg)


# ----------------------------------------------------------------------------- the run
SETTINGS = ("weights_sha256", "benchmark", "samples", "seed", "variant", "average", "steps", "sentence", "precision",
            "sampler_eta")  # what evaluate.json must share to resume


def _clear(out: Path) -> None:
    """Delete everything in `out` but the lock this run holds."""
    for p in out.iterdir():
        if p.name != LOCK_NAME:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _check_settings(out: Path, old: dict | None, meta: dict, replace_stale: bool) -> dict | None:
    """Refuse to resume into a folder whose results came from other settings (or, with
    replace_stale, delete those results: the pipeline re-evaluates a retrained model). Paths
    are not compared: the weights' SHA-256 says whether the checkpoint is the same. Returns the
    old record, or None when the folder was emptied."""
    if old is None:
        return None
    # records from before the two readings were final-reading runs, those from before the robustness test true-sentence ones;
    # those from before the per-run eta sampled with the config's sampler_eta, the one a run without an eta override
    # uses now when the weights (compared too) are the same
    config_eta = meta.get("sampler_eta") if meta.get("eta") is None else None
    old = {"average": "final", "steps": None, "sentence": "true", "precision": "fp32", "sampler_eta": config_eta, **old}
    diff = {k: (old.get(k), meta.get(k)) for k in SETTINGS if k in meta and old.get(k) != meta[k]}
    if diff and replace_stale:
        _clear(out)
        return None
    if diff:
        raise ValueError(f"{out / RUN_META}: the results in {out} come from other settings "
                         + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
                         + "; use another --out or delete that folder")
    return old


def _stale_inputs(out: Path, old: dict | None, inputs: dict, finished: set, replace_stale: bool) -> set:
    """Finished sequences whose recorded input fingerprint differs from `inputs` (or was never
    recorded): with replace_stale their files are deleted and they are returned to be redone,
    else the first is refused naming its result file."""
    recorded = (old or {}).get("inputs") or {}
    stale = sorted(n for n in finished if recorded.get(n) != inputs[n])
    if stale and not replace_stale:
        why = (f"other inputs (first box, sentence, frame count or first image differ from those in {RUN_META})"
               if stale[0] in recorded else f"inputs {RUN_META} does not record (none there, or an older dmtrack's)")
        more = f" (and {len(stale) - 1} more: {', '.join(stale[1:4])}{', ...' if len(stale) > 4 else ''})"
        raise ValueError(f"{out / (stale[0] + '.txt')}: sequence {stale[0]} was tracked on {why}"
                         f"{more if len(stale) > 1 else ''}; use another --out or delete those results")
    for name in stale:
        for p in result_files(out, name):
            p.unlink(missing_ok=True)
    return set(stale)


def _plan_run(out: Path, sequences, meta: dict, max_frames, save_masks: bool, replace_stale: bool,
              spread: bool = False) -> list:
    """Check `out` against this run, record the run in evaluate.json and return the sequences to track.
    The record is written before any tracking, so every result file in `out` has its inputs recorded."""
    old = _check_settings(out, read_run_meta(out), meta, replace_stale)
    for d in (out, out / "masks", spread_dir(out)):
        remove_stale_temps(d)
    n_of = {s.name: len(truncate(s, max_frames)) for s in sequences}
    inputs = {s.name: sequence_inputs(s, max_frames) for s in sequences}
    finished = {s.name for s in sequences if is_finished(out, s.name, n_of[s.name], save_masks, spread)}
    finished -= _stale_inputs(out, old, inputs, finished, replace_stale)
    write_run_meta(out, {**meta, "inputs": {**((old or {}).get("inputs") or {}), **inputs}})
    return sorted((s for s in sequences if s.name not in finished), key=lambda s: -n_of[s.name])  # longest first


def track_benchmark(make_tracker, sequences, out, meta: dict, execution: Execution = Execution(), *,
                    max_frames: int | None = None, save_masks: bool = False, spread: bool = False, batch: int = 1) -> None:
    """Track `sequences` into `out` (raw results in pytracking's layout), resuming a stopped run.

    make_tracker: a zero-argument callable returning a Tracker, called once in this process
    (workers=1) or once in each worker process (then it must be picklable, e.g. CheckpointTracker);
    meta: what identifies the results (written to evaluate.json with each sequence's
    `sequence_inputs`; a folder holding results of other settings is refused, or emptied with
    execution.replace_stale; a finished sequence whose inputs changed is refused, or redone with
    replace_stale); execution: workers, gpus, progress, replace_stale (Execution); max_frames: track only the first N frames of each sequence; save_masks: also
    write <out>/masks/<seq>.npz (see load_masks); spread: the tracker samples masks, so a sequence is
    finished only with its spread file; execution.gpus: worker i sees only GPU gpus[i % len(gpus)] (its
    CUDA_VISIBLE_DEVICES; ids as `dmtrack.provenance.visible_gpus` lists them; device=auto there runs on it
    or stops), tracking in this process runs on gpus[0]; batch: sequences tracked
    at once in one process (dmtrack.track.batched: the same results, one batched forward per frame), with
    workers=1. Holds <out>'s lock: a second run into the same folder raises dmtrack.io.RunLocked."""
    from tqdm.auto import tqdm

    out, gpus, progress = Path(out), execution.gpus, execution.progress
    with exclusive_lock(out, "dmtrack evaluate"):
        todo = _plan_run(out, sequences, meta, max_frames, save_masks, execution.replace_stale, spread)
        n_of = {s.name: len(truncate(s, max_frames)) for s in todo}
        workers = max(1, min(int(execution.workers), len(todo) or 1))
        if batch > 1 and workers > 1:
            raise ValueError(f"batch {batch} tracks sequences together in one process; use workers=1 with it")
        with tqdm(total=sum(n_of.values()), desc=f"{meta.get('benchmark', '')} k={meta.get('samples')}", unit="frame",
                  disable=(None if progress is None else not progress)) as bar:
            bar.set_postfix(done=len(sequences) - len(todo), of=len(sequences))
            if batch > 1 and todo:
                from .batched import BatchTracker
                with _on_first_gpu(gpus):
                    tracker = make_tracker()
                BatchTracker(tracker, batch).run(todo, max_frames, save_masks, on_frame=lambda: bar.update(1),
                                                 on_done=lambda s, res: write_sequence(out, s, res, save_masks))
            elif workers == 1 and todo:
                with _on_first_gpu(gpus):
                    tracker = make_tracker()
                for s in todo:
                    run_sequence(tracker, s, out, max_frames, save_masks, on_frame=lambda: bar.update(1))
            elif todo:
                _run_pool(make_tracker, todo, out, max_frames, save_masks, workers, bar, gpus)


def _on_first_gpu(gpus):
    """Tracking in this process with a GPU list: build the tracker with gpus[0] as the current CUDA device, so
    that "cuda" (device=auto) means that GPU, not cuda:0; an explicit cuda:N still wins."""
    if not gpus:
        return nullcontext()
    return torch.cuda.device(visible_gpus().index(check_gpus([str(gpus[0])])[0]))


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


def unseeded_seed(out) -> int:
    """The seed of an evaluation left unseeded (test_seeded=false; the authors' tracking sets no seed): a fresh
    one from the OS's entropy, or the one an earlier unseeded run into `out` drew, so that run resumes. It is
    recorded as evaluate.json's seed (with "seeded": false): any such run can be replayed with --seed."""
    old = read_run_meta(out)
    return int(old["seed"]) if old and old.get("seeded") is False else secrets.randbits(63)


def evaluate(checkpoint, benchmark: str, out, settings: TrackSettings = TrackSettings(),
             data: DataSelection = DataSelection(), execution: Execution = Execution(), *,
             save_masks: bool = False, protocols=PROTOCOLS) -> dict:
    """Track the sequences `data` selects of `benchmark` with a checkpoint's model run with `settings`,
    write them into `out` and score them under `protocols`; returns {protocol: Scores}.

    The settings left None take the config's: samples its test_samples, steps its sampling_steps, average
    its test_average, seed its seed (test_seeded=false: a fresh seed, `unseeded_seed`), eta its sampler_eta; a
    plan that cannot run (steps with the chain reading, k, steps or eta out of the config's ranges) fails before
    any sequence is loaded. Each sentence (data.sentence) gets its own `out`. execution: workers and GPUs
    (track_benchmark), progress; save_masks: <out>/masks/<seq>.npz (diffusion models). Finished sequences are
    resumed only from the same weights (the checkpoint's SHA-256), k, seed, reading, steps, sentence, precision,
    sampler eta (evaluate.json's sampler_eta, the eta used) and sequence inputs (`sequence_inputs`), so a
    retrained model.pth or another data root never reuses old results; execution.replace_stale deletes such
    results and redoes them instead of raising."""
    cfg = config_from_dict(load_checkpoint(checkpoint)["config"])
    k = int(settings.samples if settings.samples is not None else cfg.test_samples)
    steps, device = settings.steps, settings.device
    cfg.replace(test_samples=k, sampling_steps=cfg.sampling_steps if steps is None else steps,
                sampler_eta=cfg.sampler_eta if settings.eta is None else float(settings.eta))  # the config's ranges
    eta = resolve_eta(cfg, settings.eta)  # what the sampler runs with (None: reading=authors, the authors' sampler)
    _, n_steps, average = sampling_plan(cfg, k, steps, settings.average)  # a plan that cannot run fails here, not midway
    seeded = settings.seed is not None or cfg.test_seeded
    seed = settings.seed if settings.seed is not None else cfg.seed if seeded else unseeded_seed(out)
    settings = replace(settings, samples=k, seed=seed)
    seqs = with_sentence(load_benchmark(benchmark, root=data.root, split=data.split, progress=False), data.sentence)
    seqs = select_sequences(seqs, data.sequences, benchmark)  # after: a misleading sentence may come from another sequence
    if not seqs:
        raise ValueError(f"{benchmark}: no sequences to evaluate")
    # Sentences are checked up front: one empty description must not stop a long run midway.
    empty = [s.name for s in seqs if cfg.use_language and not s.text.strip()]
    if empty:
        raise ValueError(f"{benchmark}: empty description for sequence(s) {', '.join(empty)}")
    meta = {"checkpoint": str(Path(checkpoint).resolve()), "weights_sha256": file_sha256(checkpoint),
            "benchmark": benchmark, "samples": k, "seed": settings.seed, "seeded": seeded,
            "variant": cfg.variant, "profile": cfg.profile, "reading": cfg.reading,
            "max_frames": data.max_frames, "data_root": str(data.root) if data.root else None,
            "average": average, "steps": steps, "sampling_steps": n_steps if cfg.use_diffusion else None,
            "sentence": data.sentence, "eta": settings.eta, "sampler_eta": eta if cfg.use_diffusion else None,
            "precision": resolve_precision(settings.precision, device or resolve_device(cfg.device)),
            "batch": settings.batch}  # recorded, not compared on resume: the times (fps) are each sequence's share of a batched step
    with exclusive_lock(out, "dmtrack evaluate"):  # scoring too: no second run rewrites the folder meanwhile
        track_benchmark(CheckpointTracker(str(checkpoint), settings), seqs, out, meta, execution,
                        max_frames=data.max_frames, save_masks=save_masks and cfg.use_diffusion,
                        spread=cfg.use_diffusion, batch=settings.batch)
        return save_scores(out, [truncate(s, data.max_frames) for s in seqs], protocols, benchmark)


# ----------------------------------------------------------------------------- worker processes
_WORKER = {}


def _worker_init(make_tracker, threads, parent, gpus=None):
    exit_with_parent(parent)  # a killed evaluate must not leave workers writing into its folder
    if gpus is not None:  # before anything touches CUDA (it reads the variable once, when it starts)
        os.environ.update(gpu_environment([gpus.get()]))  # device=auto: on that GPU or an error
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    try:
        _WORKER["tracker"] = make_tracker()
    except Exception as e:  # raised by the first sequence, so that the parent names it (a failed initializer only breaks the pool)
        _WORKER["error"] = e


def _worker_run(seq, out, max_frames, save_masks):
    if "error" in _WORKER:
        raise _WORKER["error"]
    t0 = time.perf_counter()
    n = run_sequence(_WORKER["tracker"], seq, Path(out), max_frames, save_masks)
    return seq.name, n, time.perf_counter() - t0


def _stop_pool(pool) -> None:
    """Stop the pool's workers now, mid-sequence (their temp files are removed by the next run).
    ProcessPoolExecutor has no public way before Python 3.14 (terminate_workers): use its processes."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()


def _run_pool(make_tracker, todo, out, max_frames, save_masks, workers, bar, gpus=None):
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    handout = None
    if gpus:  # each worker takes one id as it starts (the initializer's arguments are the same for all)
        handout = ctx.Queue()
        for i in range(workers):
            handout.put(str(gpus[i % len(gpus)]))
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(make_tracker, max(1, cpu_cores() // workers), os.getpid(), handout))
    try:
        with sigterm_as_interrupt():  # SIGTERM, like Ctrl-C, reaches the cleanup below
            pending = {pool.submit(_worker_run, s, str(out), max_frames, save_masks) for s in todo}
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()
                    name, n, _ = f.result()
                    bar.update(n)
                    bar.set_postfix(last=name)
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown()
