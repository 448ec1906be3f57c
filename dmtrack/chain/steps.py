"""What each notebook of the chain does, as plain functions (the notebooks call these and plot).

The work folder's layout (train/, results/) is dmtrack.layout's; the tables read it back in
tables.py. This module never imports tables.py, nor the reverse.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import torch

from dmtrack.config import load_config
from dmtrack.data import load_benchmark, read_frame, truncate
from dmtrack.data.benchmarks import synthetic_name
from dmtrack.data.sequence import root_env
from dmtrack.data.synthetic import generate
from dmtrack.eval.metrics import PROTOCOLS
from dmtrack.eval.results import find_result_files, read_results, save_scores
from dmtrack.layout import (OTHER_PARAM, model_path, results_dir, train_dir, write_run_meta)
from dmtrack.model.weights import load_checkpoint
from dmtrack.provenance import visible_gpus
from dmtrack.chain.plan import CHAIN_BENCHMARKS as BENCHMARKS
from dmtrack.track.runner import (CheckpointTracker, DataSelection, Execution, TrackSettings, evaluate,
                                  track_sequence)
from dmtrack.track.tracker import spread_map
from dmtrack.train import load_train_sequences, train
from dmtrack.train.loop import run_diff


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))
    cv2.setNumThreads(1)


def load_sequences(benchmark: str, data_dir=None, max_frames: int | None = None):
    """A benchmark's sequences (data_dir: the synthetic root, or None for the real dataset's root)."""
    seqs = load_benchmark(benchmark, root=data_dir if benchmark.startswith("synthetic") else None, progress=False)
    return [truncate(s, max_frames) for s in seqs]


# --- 00_data ----------------------------------------------------------------------------------------
def prepare_data(synthetic: bool, data_dir, preset: str | None = None, seed: int = 0) -> dict:
    """Generate the synthetic benchmark (with its drift sweep) at data_dir, or check that the four real
    test sets load. Returns {benchmark: number of sequences}."""
    if synthetic:
        try:
            manifest = generate(data_dir, preset=preset, seed=seed, sweep=True, progress=False)
        except FileExistsError as e:  # made with other settings (e.g. an edited preset): the chain's data, regenerate
            print(f"{e}\nregenerating it")
            manifest = generate(data_dir, preset=preset, seed=seed, sweep=True, progress=False, force=True)
        return {name: s["sequences"] for name, s in manifest["suites"].items()}
    return {b: len(load_sequences(b)) for b in BENCHMARKS}


# --- 10_train ---------------------------------------------------------------------------------------
def torchrun_command(profile: str, variant: str, seed: int, out, overrides: dict, processes: int, threads: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N -m dmtrack train ...` resuming one variant's run in `out`
    (torch.distributed.run is torchrun's module: the venv's own, whatever PATH holds; --standalone picks a
    free port, so trainings on one node do not meet). Overrides go as key=<JSON>, which the CLI reads back exactly."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "dmtrack", "train", "--profile", profile, "--variant", variant, "--seed", str(seed), "--out", str(out),
            "--resume", "--no-progress", "--threads", str(max(1, threads // processes)),
            "--allow-minilm",  # the chain's preflight has already refused MiniLM on the paper profile unless allowed
            *(f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))]


def train_variant(profile: str, variant: str, seed: int, work, data_dir=None, overrides: dict | None = None,
                  progress: bool = False, processes: int = 1, threads: int = 1, arm: str = "") -> Path:
    """Train one Table 2 variant, or the base tracker (variant 'base'), into train/<variant>[-<arm>]/seed<N>
    (resumes a stopped run); returns model.pth. processes > 1: DDP over that many processes with torchrun
    (one per GPU of this kernel's CUDA_VISIBLE_DEVICES, gloo on a CPU)."""
    cfg = load_config(profile, variant, seed=seed, **(overrides or {}))
    out = train_dir(work, variant, seed, arm)
    model = model_path(work, variant, seed, arm)
    done = model if model.exists() else out / "last.pth" if (out / "last.pth").exists() else None
    if done is not None:
        diff = run_diff(cfg, load_checkpoint(done))
        if not diff and model.exists():  # finished before (the pipeline's stamp was lost): nothing to redo
            return model
        if diff:  # a run of another config (e.g. the profile changed): keep it aside, train afresh
            aside = out.with_name(out.name + ".replaced")
            shutil.rmtree(aside, ignore_errors=True)
            out.rename(aside)
            print(f"{out} was trained with other settings ({', '.join(diff[:6])}); moved to {aside}, training afresh")
    if processes > 1:
        return _torchrun(torchrun_command(profile, variant, seed, out, overrides or {}, processes, threads), data_dir, model)
    roots = {"synthetic": str(data_dir)} if data_dir else None
    sequences = load_train_sequences(cfg, roots=roots)
    return train(cfg, out, resume=True, sequences=sequences, progress=progress)


def _torchrun(cmd: list[str], data_dir, model: Path) -> Path:
    """Run a torchrun training (the synthetic root passed as its environment variable); its output is
    printed into the notebook; a failure raises with the end of its stderr, its error line first. An
    interrupt here (Ctrl-C in a notebook) stops torchrun, which stops its workers; a SIGKILL of this
    kernel's process group kills torchrun, and the workers follow (dmtrack.train.cli)."""
    env = dict(os.environ, **({root_env("synthetic"): str(data_dir)} if data_dir else {}))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.terminate()  # torchrun forwards SIGTERM to its workers and waits for them
        proc.wait()
        raise
    print(stdout)
    if proc.returncode != 0 or not model.exists():
        lines = [ln for ln in (stderr + stdout).splitlines() if ln.strip()]
        # the workers' own one-line errors; else torchrun's last words that are not its frames of '='
        errors = [ln for ln in lines if ln.startswith("dmtrack train: error:")] or \
            [ln for ln in lines if ln.strip("= ")] or ["(no output)"]
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:5])} ... exited with {proc.returncode} without writing {model}: "
                           f"{errors[-1].strip()}\n{tail}")
    return model


# --- 20_evaluate ------------------------------------------------------------------------------------
def evaluate_variant(runs, benchmarks, work, data_dir=None, max_frames: int | None = None, workers: int = 1,
                     batch: int = 1):
    """Track `benchmarks` with the trained model of each EvalRun in `runs` (dmtrack.layout: a variant's
    seed at k samplings, its reading, steps per chain, sentence and sampler eta) into its results folder (batch:
    sequences tracked at once, in one process: with more tracking processes, one GPU each, every process
    tracks one), scored under both protocols; returns the overall scores (one row per benchmark, seed and
    protocol). Results of an earlier model.pth (retrained since) are redone, never resumed."""
    import pandas as pd

    gpus = visible_gpus()  # this kernel's: one tracking process per GPU
    workers = max(workers, len(gpus))
    batch = batch if workers == 1 else 1  # the batched tracker runs in one process (track_benchmark)
    execution = Execution(workers=workers, gpus=gpus or None, progress=False, replace_stale=True)
    rows = []
    for run in runs:
        path = run.model_path(work)
        if not path.exists():
            raise FileNotFoundError(f"{path}: {run.model} seed {run.seed} has not been trained (run 10_train)")
        settings = TrackSettings(samples=run.k, seed=run.seed, average=run.average, steps=run.steps, batch=batch,
                                 eta=run.eta)
        for bench in benchmarks:
            data = DataSelection(root=data_dir if bench.startswith("synthetic") else None, max_frames=max_frames,
                                 sentence=run.sentence)
            scores = evaluate(path, bench, run.folder(work, bench), settings, data, execution)
            for protocol, sc in scores.items():
                rows.append(dict(benchmark=bench, variant=run.variant, k=run.k, average=run.average, steps=run.steps,
                                 sentence=run.sentence, eta=run.eta, seed=run.seed, protocol=protocol, **sc.overall()))
    return pd.DataFrame(rows)


# --- 30_visualize -----------------------------------------------------------------------------------
def load_tracker(work, variant: str, seed: int, k: int):
    """A Tracker for the trained model of (variant, seed) with k samplings."""
    return CheckpointTracker(str(model_path(work, variant, seed)), TrackSettings(samples=k, seed=seed))()


def track_for_figure(tracker, seq, keep_frames) -> dict:
    """Boxes of every frame and the diffusion masks (image coordinates) of `keep_frames`."""
    return track_sequence(tracker, seq, keep_masks=keep_frames)


def other_boxes(folder, seq):
    """Another tracker's boxes for `seq` from its raw results folder (any of the layouts dmtrack.eval reads)."""
    found, _ = find_result_files(folder, [seq.name], skip_missing=True)
    return read_results(found[seq.name], root=folder)[: len(seq)] if seq.name in found else None


def sample_frame(seqs: dict, benchmark: str, name: str, frame: int | None):
    """(sequence, 0-based index) of the frame whose diffusion sampling 30_visualize draws: `name` of the
    benchmark's sequences `seqs` ({name: Sequence}) and `frame` numbered as the figures show it (1 is the
    initialisation frame, so 2..length); None: the middle frame."""
    if name not in seqs:
        raise ValueError(f"{benchmark}: no sequence {name!r} (it has {', '.join(list(seqs)[:5])}{', ...' if len(seqs) > 5 else ''})")
    seq = seqs[name]
    if frame is None:
        return seq, len(seq) // 2
    if not 2 <= frame <= len(seq):
        raise ValueError(f"{benchmark}/{name}: frame {frame} is outside 2..{len(seq)} (1 is the initialisation frame)")
    return seq, frame - 1


def sampling_chain(tracker, seq, frame: int) -> dict:
    """The diffusion sampling of one frame, as the tracker runs it: track up to frame - 1, then track
    `frame` (0-based) with return_chain=True (see Tracker.track): 'chain' (steps+1, chains, M, M) holds
    every chain. Adds 'average' (M, M), the mean of the k sampled masks, which the head uses after
    filtering, and 'spread' (M, M), their per-pixel range (`spread_map`; its maximum is the spread the
    evaluation records per frame)."""
    if not 1 <= frame < len(seq):
        raise ValueError(f"{seq.name}: frame {frame} is outside 1..{len(seq) - 1}")
    tracker.initialize(read_frame(seq.frames[0]), seq.boxes[0], seq.text)
    for i in range(1, frame):
        tracker.track(read_frame(seq.frames[i]), return_mask=False)
    out = tracker.track(read_frame(seq.frames[frame]), return_mask=False, return_chain=True)
    return dict(crop=out["crop"], chain=out["chain"], samples=out["samples"], average=out["samples"].mean(0),
                spread=spread_map(torch.from_numpy(out["samples"])).numpy(), filtered=out["filtered"])


# --- 40_report --------------------------------------------------------------------------------------
def score_others(others: dict, results_root, synthetic: bool, data_dir=None) -> list[str]:
    """Re-score other trackers' raw results (others = {name: DIR}, DIR/<benchmark>/<seq>.txt with
    benchmark one of lasot, lasot_ext, tnl2k, otb_lang) under both protocols; returns what was scored."""
    done = []
    for name, folder in (others or {}).items():
        for b in BENCHMARKS:
            src = Path(folder) / b
            if not src.is_dir():
                continue
            bench = synthetic_name(b, synthetic)
            seqs = load_sequences(bench, data_dir)
            out = results_dir(results_root, bench, name, OTHER_PARAM)
            write_run_meta(out, dict(benchmark=bench, variant=name, samples=None, seed=0, source=str(src)))
            save_scores(src, seqs, PROTOCOLS, bench, dest=out, skip_missing=True)  # the raw files stay in src
            done.append(f"{name} on {bench}")
    return done


def notebook_figures(path) -> list[tuple[str, bytes]]:
    """(heading, PNG bytes) of every figure in an executed notebook, in order; heading = the last
    markdown heading above it, in a markdown cell or displayed by a code cell (a figure's own heading,
    e.g. the benchmark it shows). The report shows the data and Fig. 7 figures this way instead of redrawing them."""
    import nbformat

    def last_heading(text: str, current: str) -> str:
        lines = [ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")]
        return lines[-1] if lines else current

    nb = nbformat.read(str(path), as_version=4)
    heading, out = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = last_heading(cell.source, heading)
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            heading = last_heading(o.get("data", {}).get("text/markdown", ""), heading)
            png = o.get("data", {}).get("image/png")
            if png:
                out.append((heading, base64.b64decode(png)))
    return out
