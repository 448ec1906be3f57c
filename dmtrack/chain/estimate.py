"""What a chain costs before it runs (`dmtrack report --plan`), and its ETA while it runs.

The cost model, in seconds on this machine, from a short calibration at the chain's resolved sizes:

    10_train      pairs (epochs x steps per epoch x batch_size)  x  seconds per training pair
    20_evaluate   frames x seeds  x  seconds per tracked frame at k
    30_visualize  variants x sequences x mean frames per sequence  x  seconds per frame at k
    00_data       3 x the time it took here to read the test sets (the notebook reads them three times)
    40_report     not calibrated (tables from the scored results)
    + each step   the start of a notebook: a fresh Python importing the library (measured)

The calibration times a few optimiser steps of the full model on `batch` random crops as every
benchmark does (dmtrack.train.timing: the training's middle epoch, candidate elimination partly on,
as on average; TF32 and the text cache as the training sets them), `batch` being the
training's own batch on a GPU, and on a CPU too when 8 pairs show that it takes under 4 s (else
8): a step has a fixed cost (the optimiser, the text encoder, Python), so at 2 pairs the demo's
cost per pair came out 3x too high; and a few tracked frames, one sequence at a time, at k = 1
and at the chain's largest k (seconds per frame are taken as linear in k). Steps run
`jobs` at a time, each on cores // jobs threads, which is what the calibration uses: wall time
= sum / jobs. Not included: reading the training sets at the start of each training. A chain calibrates
in a child process on the first GPU of its pool (`calibrate_on`), never in its own process.

    est = estimate(steps, sizes, calibrate(cfg, ks=[1, 10], threads=2), profile="paper", jobs=1)
    print(format_plan(est))
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from dmtrack.config import Config, config_from_dict, load_config
from dmtrack.data import load_benchmark
from dmtrack.data.benchmarks import OFFICIAL_SIZE, drift_level, suite_location
from dmtrack.data.files import DatasetError
from dmtrack.data.synthetic import PRESETS


@dataclass
class Calibration:
    device: str
    threads: int
    batch: int  # pairs in each timed training step
    train_s_per_pair: float
    frame_s: dict  # {k: seconds per tracked frame}
    seconds: float  # what the calibration took
    text_encoder: str  # what it ran with (a BERT directory that is not there is replaced by minilm)
    notebook_s: float = 0.0  # starting one notebook: a fresh Python importing what the notebooks import
    loadavg: float | None = None  # 1-min load average at the end: on a shared machine every time above is inflated by it

    def frame(self, k: int) -> float:
        """Seconds per tracked frame at k samplings: linear through the two calibrated k."""
        ks = sorted(int(x) for x in self.frame_s)
        lo, hi = self.frame_s[ks[0]], self.frame_s[ks[-1]]
        slope = (hi - lo) / (ks[-1] - ks[0]) if ks[-1] != ks[0] else 0.0
        return max(lo + slope * (int(k) - ks[0]), 0.0)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_seconds(model, cfg: Config, batch: int, steps: int) -> float:
    """Median seconds of one optimiser step on `batch` random crops (after one warm-up step), timed as
    every benchmark times it (dmtrack.train.timing: the training's middle epoch, TF32 as it sets it)."""
    from dmtrack.train.timing import TrainingStep, random_pairs

    return TrainingStep(cfg, model.device, model).median(random_pairs(cfg, batch), steps)[0]


def _frame_seconds(model, cfg: Config, k: int, frames: int) -> float:
    """Median seconds of one Tracker.track call at k samplings on 640 x 360 frames (after one warm-up)."""
    import numpy as np
    from dmtrack.track import Tracker

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (frames + 2, 360, 640, 3), dtype=np.uint8)
    tracker = Tracker(model, cfg, samples=k, seed=0)
    tracker.initialize(images[0], [300, 150, 60, 40], "the red car on the left")
    times = []
    for img in images[1:]:
        t = time.perf_counter()
        tracker.track(img, return_mask=False)
        _sync(tracker.device)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


_NOTEBOOK_START = ("import ipykernel.kernelapp, dmtrack.chain.steps, dmtrack.report.plots, dmtrack.report.tables, time; "
                   "print(time.time())")


def calibrate(cfg: Config, ks, threads: int, batch: int | None = None, steps: int = 1, frames: int = 2) -> Calibration:
    """Time `steps` training steps of `batch` pairs (None: cfg.batch_size on a GPU, at most 8 on a
    CPU) and `frames` tracked frames at k = min and max of `ks`, with the model of `cfg` (full
    variant, random weights: the time does not depend on them), and, meanwhile, the start of a
    notebook's process."""
    import torch
    from dmtrack.model import build_model
    from dmtrack.model.language import resolve_text_encoder
    from dmtrack.provenance import resolve_device

    launched = time.time()
    start = subprocess.Popen([sys.executable, "-c", _NOTEBOOK_START], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, old = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        try:
            resolve_text_encoder(cfg.text_encoder)
        except (FileNotFoundError, ModuleNotFoundError):
            cfg = cfg.replace(text_encoder="minilm")
        cfg = cfg.replace(pretrained="", variant="full", use_diffusion=True)
        torch.manual_seed(0)
        model = build_model(cfg).to(resolve_device(cfg.device))
        chosen = batch is not None
        if not chosen:
            batch = cfg.batch_size if model.device.type == "cuda" else min(cfg.batch_size, 8)
        step_s = _train_seconds(model, cfg, batch, steps)
        if not chosen and batch < cfg.batch_size and step_s * cfg.batch_size / batch < 4.0:
            batch = cfg.batch_size  # cheap enough (the demo on a CPU): time the training's own batch
            step_s = _train_seconds(model, cfg, batch, steps)
        per_pair = step_s / batch
        model.eval()
        frame_s = {k: _frame_seconds(model, cfg, k, frames) for k in sorted({min(ks), max(ks)})}
        device = str(model.device)
        del model
    finally:
        torch.set_num_threads(old)
        if torch.cuda.is_available():  # the chain's notebooks need the GPU memory, not this process
            torch.cuda.empty_cache()
    out, err = start.communicate()
    if start.returncode:
        raise RuntimeError(f"a fresh {sys.executable} cannot import the notebooks' modules: {err.strip().splitlines()[-1:]}")
    notebook_s = float(out.split()[-1]) - launched  # an upper bound: it ran next to the timings above
    return Calibration(device, threads, batch, per_pair, frame_s, time.perf_counter() - t0, cfg.text_encoder, notebook_s,
                       round(os.getloadavg()[0], 1))


# --- the sizes of the benchmarks a chain tracks -----------------------------------------------------
def benchmark_size(bench: str, data_dir=None, max_frames: int | None = None, preset: str | None = None) -> dict:
    """{sequences, frames, source, seconds}: read from the dataset when it loads; else from the
    synthetic preset (mean length) or the official counts, and `source` says why."""
    clip = (lambda n: min(n, max_frames)) if max_frames else (lambda n: n)
    t0 = time.perf_counter()
    try:
        seqs = load_benchmark(bench, root=data_dir if bench.startswith("synthetic") else None, progress=False)
        return dict(sequences=len(seqs), frames=sum(clip(len(s)) for s in seqs), source="read from the dataset",
                    seconds=time.perf_counter() - t0)
    except (DatasetError, FileNotFoundError, NotADirectoryError) as e:
        why = str(e).splitlines()[0][:160]
    if bench.startswith("synthetic") and preset:
        folder, _ = suite_location(bench)
        spec = PRESETS[preset].sweep if drift_level(bench) else PRESETS[preset].suites[folder]
        n, mean = spec.n_seq, sum(spec.length) / 2
        return dict(sequences=n, frames=round(n * clip(mean)), source=f"preset {preset} (not generated yet)", seconds=None)
    n, frames = OFFICIAL_SIZE[bench]
    if max_frames:
        frames = n * max_frames if frames is None else min(frames, n * max_frames)
    return dict(sequences=n, frames=frames, source=f"official counts; the dataset did not load here: {why}", seconds=None)


# --- the cost of each step ---------------------------------------------------------------------------
@dataclass
class StepCost:
    step: str
    work: dict  # what the step does, in the units the cost model counts
    seconds: float | None  # None: not estimated, `why` says why
    why: str = ""


def _train_cost(profile: str, name: str, p: dict, cal: Calibration) -> StepCost:
    cfg = load_config(profile, p["variant"], seed=p["seed"], **p["overrides"])
    steps = cfg.epochs * (cfg.pairs_per_epoch // cfg.batch_size)  # the loop's steps (dmtrack.train.loop)
    work = dict(variant=p["variant"], seed=p["seed"], epochs=cfg.epochs, steps=steps, batch=cfg.batch_size,
                pairs=steps * cfg.batch_size)
    return StepCost(name, work, work["pairs"] * cal.train_s_per_pair)


def _eval_cost(name: str, p: dict, sizes: dict, cal: Calibration) -> StepCost:
    k = 1 if p["variant"] == "no_diffusion" else p["k"]  # nothing is sampled without diffusion
    benches = [dict(benchmark=b, sequences=sizes[b]["sequences"], frames=sizes[b]["frames"]) for b in p["benchmarks"]]
    frames = sum(b["frames"] or 0 for b in benches)
    work = dict(variant=p["variant"], k=p["k"], seeds=list(p["seeds"]), benchmarks=benches, frames=frames,
                batch=p.get("batch", 1))  # timed at batch 1: an upper bound for sequences tracked together
    if any(b["frames"] is None for b in benches):
        return StepCost(name, work, None, "frame count unknown")
    return StepCost(name, work, frames * len(p["seeds"]) * cal.frame(k))


def _visualize_cost(name: str, p: dict, sizes: dict, cal: Calibration) -> StepCost:
    size = sizes[p["benchmark"]]
    n = min(p["n_sequences"], size["sequences"])
    mean = (size["frames"] or 0) / max(1, size["sequences"])
    work = dict(benchmark=p["benchmark"], sequences=n, frames_per_sequence=round(mean), variants=len(p["variants"]), k=p["k"])
    if size["frames"] is None:
        return StepCost(name, work, None, "frame count unknown")
    return StepCost(name, work, sum(n * mean * cal.frame(1 if v == "no_diffusion" else p["k"]) for v in p["variants"]))


def step_costs(profile: str, steps, sizes: dict, cal: Calibration) -> list[StepCost]:
    """One StepCost per step of the chain (see the module docstring for the model)."""
    out = []
    for st in steps:
        kind, p = st.name.split("/")[0], st.params
        if kind == "10_train":
            out.append(_train_cost(profile, st.name, p, cal))
        elif kind == "20_evaluate":
            out.append(_eval_cost(st.name, p, sizes, cal))
        elif kind == "30_visualize":
            out.append(_visualize_cost(st.name, p, sizes, cal))
        elif kind == "00_data":
            reads = [s["seconds"] for s in sizes.values()]
            work = dict(benchmarks=len(sizes), frames=sum(s["frames"] or 0 for s in sizes.values()))
            if None in reads:  # the notebook reads every benchmark three times: prepare, samples, baselines
                out.append(StepCost(st.name, work, None, "the data is not readable here yet (generated or checked by this step)"))
            else:
                out.append(StepCost(st.name, work, 3 * sum(reads)))
        else:
            out.append(StepCost(st.name, {}, 0.0, "start-up only: the tables from the scored results are not calibrated"))
        if out[-1].seconds is not None:
            out[-1].seconds += cal.notebook_s
    return out


FORMULA = ("train = pairs x s/pair; evaluate = frames x seeds x s/frame(k), s/frame linear in k through the two "
           "calibrated k, one sequence at a time; Fig. 7 = variants x sequences x mean frames x s/frame(k); data = 3 x reading time; "
           "+ the start of a notebook per step; wall = sum / jobs")


def estimate(profile: str, steps, sizes: dict, cal: Calibration, jobs: int = 1, problems=()) -> dict:
    """The chain's plan with costs, JSON-ready: calibration, benchmark sizes, steps, totals, and the
    problems that would stop the run before its first step."""
    costs = step_costs(profile, steps, sizes, cal)
    total = sum(c.seconds for c in costs if c.seconds is not None)
    return dict(profile=profile, jobs=jobs, calibration=asdict(cal), sizes=sizes, steps=[asdict(c) for c in costs],
                total_seconds=total, wall_seconds=total / max(1, jobs), formula=FORMULA,
                not_estimated=[c.step for c in costs if c.seconds is None], problems=list(problems))


def calibrate_on(gpu: str | None, cfg: Config, ks, threads: int) -> Calibration:
    """`calibrate` in a child process that sees only GPU `gpu` (None: this process's devices, the CPU
    without a GPU pool): a model built here would crash or run out of memory on whatever GPU is this
    process's cuda:0, in or out of the pool, and hold a CUDA context on it for the whole chain. A GPU
    the child cannot use is an error (dmtrack.provenance.resolve_device), not a calibration on the CPU."""
    from dmtrack.provenance import gpu_environment

    env = {**os.environ, **(gpu_environment([gpu]) if gpu is not None else {})}
    job = json.dumps(dict(config=cfg.to_dict(), ks=sorted({int(k) for k in ks}), threads=threads))
    res = subprocess.run([sys.executable, "-m", "dmtrack.chain.estimate"], input=job, env=env, capture_output=True, text=True)
    if res.returncode:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the cost calibration on {'GPU ' + gpu if gpu is not None else 'this machine'} failed: {last}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    device = out["device"] + (f" (GPU {gpu})" if gpu is not None else "")  # the child's cuda:0 is the pool's GPU `gpu`
    return Calibration(**dict(out, device=device, frame_s={int(k): v for k, v in out["frame_s"].items()}))


def chain_estimate(profile: str, steps, data_dir, settings, problems=(), gpus: list | None = None) -> dict:
    """`estimate` for a chain's steps: the sizes of the benchmarks it evaluates (read where they load)
    and a calibration with the resolved full-variant config at the steps' threads, on the first GPU of
    the pool `gpus` (None: no pool), in a child process (`calibrate_on`)."""
    evals = [st for st in steps if st.name.startswith("20_evaluate/")]
    benches = sorted({b for st in evals for b in st.params["benchmarks"]})
    sizes = {b: benchmark_size(b, data_dir, settings.max_frames, settings.preset) for b in benches}
    threads = next(st.runtime["threads"] for st in steps if st.name.startswith("10_train/"))
    ks = [st.params["k"] for st in evals] + [st.params["k"] for st in steps if st.name == "30_visualize"]
    cal = calibrate_on(gpus[0] if gpus else None, load_config(profile, "full", **settings.train), ks, threads)
    return estimate(profile, steps, sizes, cal, settings.jobs, problems)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size, limit in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds / size:.{0 if unit == 's' else 1}f} {unit}"
    return f"{seconds / 86400:.1f} d"


def _work_text(w: dict) -> str:
    if "pairs" in w:
        return f"{w['epochs']} epochs, {w['steps']:,} steps x {w['batch']} pairs = {w['pairs']:,} pairs"
    if "benchmarks" in w and "k" in w:
        b = "; ".join(f"{x['benchmark']} {x['sequences']} seq {x['frames']:,} frames" if x["frames"] is not None
                      else f"{x['benchmark']} {x['sequences']} seq ? frames" for x in w["benchmarks"])
        together = f"; {w['batch']} sequences at once (estimated one at a time)" if w.get("batch", 1) > 1 else ""
        return f"{b}; k={w['k']}; seeds {','.join(map(str, w['seeds']))}{together}"
    if "variants" in w:
        return f"{w['variants']} variants x {w['sequences']} {w['benchmark']} seq x {w['frames_per_sequence']} frames, k={w['k']}"
    if "benchmarks" in w:
        return f"read {w['benchmarks']} benchmarks ({w['frames']:,} frames), score 2 trivial trackers"
    return ""


def format_plan(est: dict) -> str:
    """The plan as the terminal shows it: calibration, benchmark sizes, one line per step, the total."""
    c = est["calibration"]
    ks = ", ".join(f"{v:.3f} s at k={k}" for k, v in sorted(c["frame_s"].items(), key=lambda kv: int(kv[0])))
    lines = [f"dmtrack report --profile {est['profile']} --plan: {len(est['steps'])} steps (nothing was run)",
             f"calibration on {c['device']}, {c['threads']} thread(s), took {c['seconds']:.0f} s, text encoder "
             f"{c['text_encoder']}: {c['train_s_per_pair']:.3f} s per training pair (batch {c['batch']}); tracked frame: {ks}; "
             f"notebook start {c['notebook_s']:.1f} s; 1-min load average {c['loadavg']}",
             "benchmarks:"]
    lines += [f"  {b}: {s['sequences']:,} sequences, {'? (no official count)' if s['frames'] is None else format(s['frames'], ',')} "
              f"frames ({s['source']})" for b, s in est["sizes"].items()]
    width = max(len(s["step"]) for s in est["steps"])
    lines += ["", f"{'step':{width}}  {'estimate':>9}  work"]
    lines += [f"{s['step']:{width}}  {duration(s['seconds']):>9}  {_work_text(s['work']) or s['why']}"
              + (f" ({s['why']})" if s["seconds"] is None and _work_text(s["work"]) else "") for s in est["steps"]]
    lines += ["", f"total: {duration(est['total_seconds'])} of step time; {est['jobs']} step(s) at a time: about "
                  f"{duration(est['wall_seconds'])} wall on this machine"
              + (f" (+ {len(est['not_estimated'])} step(s) not estimated)" if est["not_estimated"] else ""),
              f"formula: {est['formula']}"]
    lines += [f"WOULD NOT START: {p}" for p in est["problems"]]
    return "\n".join(lines)


class Progress:
    """The running chain's ETA: after each step, done/total and the time left, the plan's estimates
    scaled per stage (10_train, 20_evaluate, ...) by how long that stage's steps took so far against
    theirs; a stage with none done yet is scaled by all the steps run so far."""

    def __init__(self, est: dict, log=print):
        self.est = {s["step"]: s["seconds"] for s in est["steps"]}
        self.jobs, self.log, self.t0, self.shown = max(1, est["jobs"]), log, time.time(), -1

    def __call__(self, stamps: list[dict]) -> None:
        done = {s["step"]: s for s in stamps}
        if len(done) == self.shown:
            return
        self.shown = len(done)
        ran = [s for s in stamps if s["status"] == "ran" and self.est.get(s["step"])]
        stage = lambda step: step.split("/")[0]  # noqa: E731
        ratio = lambda steps: sum(s["seconds"] for s in steps) / sum(self.est[s["step"]] for s in steps)  # noqa: E731
        overall = ratio(ran) if ran else 1.0
        scales = {st: ratio([s for s in ran if stage(s["step"]) == st]) for st in sorted({stage(s["step"]) for s in ran})}
        left = sum(v * scales.get(stage(k), overall) for k, v in self.est.items() if k not in done and v) / self.jobs
        said = ", ".join(f"{st} x {x:.2f}" for st, x in scales.items())
        self.log(f"[eta ] {len(done)}/{len(self.est)} steps done after {duration(time.time() - self.t0)}; "
                 f"about {duration(left)} left" + (f" (the plan's estimates scaled by the steps run so far: {said})" if ran else ""))


if __name__ == "__main__":  # calibrate_on's child: the job as JSON on stdin, the Calibration as JSON on stdout's last line
    job = json.loads(sys.stdin.read())
    print(json.dumps(asdict(calibrate(config_from_dict(job["config"]), job["ks"], job["threads"]))))
