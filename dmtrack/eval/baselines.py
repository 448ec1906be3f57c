"""Two trivial trackers that anchor every table.

static        : the first-frame ground-truth box, held still for the whole sequence. A floor:
                what a tracker scores by never moving.
oracle-jitter : the ground truth plus seeded noise. A ceiling that a real tracker cannot
                reach, with a realistic (not perfect) box quality (AUC ~82 on frames with a box). Noise model, per frame t >= 2,
                independently, with (w, h) the gt size of that frame:
                    centre += (w * N(0, CENTRE_SIGMA), h * N(0, CENTRE_SIGMA))
                    (w, h) *= (exp(N(0, SCALE_SIGMA)), exp(N(0, SCALE_SIGMA)))
                Frame 1 is the gt box. Where the gt has no box (w or h <= 0, NaN, or the target
                is not visible) the tracker repeats its previous output, as a real tracker
                would keep a box. The generator is seeded per sequence from (seed, name), so a
                sequence's boxes do not depend on which other sequences are run.
"""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dmtrack.data import load_benchmark, truncate
from dmtrack.layout import baseline_param, results_dir, write_run_meta

from .metrics import PROTOCOLS, _fill_from_previous
from .results import save_scores, write_results

BASELINES = ("static", "oracle-jitter")
CENTRE_SIGMA = 0.05  # centre noise, as a fraction of the gt width / height
SCALE_SIGMA = 0.05  # log-normal size noise
# (0.05, 0.05) gives IoU 0.84 on average, AUC ~82 where every frame has a box: above any
# published tracker on LaSOT (~70-75), so it reads as a ceiling; (0.1, 0.1) would give AUC ~70.


def baseline_boxes(name: str, seq, seed: int = 0) -> np.ndarray:
    """(N, 4) boxes of trivial tracker `name` on Sequence `seq`."""
    gt = np.asarray(seq.boxes, dtype=np.float64)
    if name == "static":
        return np.repeat(gt[:1], len(gt), axis=0)
    if name != "oracle-jitter":
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    rng = np.random.default_rng([seed, zlib.crc32(seq.name.encode())])
    n = len(gt)
    noise_c, noise_s = rng.normal(0, CENTRE_SIGMA, (n, 2)), rng.normal(0, SCALE_SIGMA, (n, 2))
    wh = gt[:, 2:]
    centre = gt[:, :2] + wh / 2 + wh * noise_c
    size = wh * np.exp(noise_s)
    out = np.concatenate([centre - size / 2, size], axis=1)
    has_box = np.isfinite(gt).all(1) & (wh > 0).all(1)
    if seq.visible is not None:
        has_box &= np.asarray(seq.visible, dtype=bool)
    out[0] = gt[0]
    return _fill_from_previous(out, ~has_box)  # no gt box -> keep the previous output


def run_baseline(name: str, sequences, out_dir, seed: int = 0) -> Path:
    """Write the raw results of trivial tracker `name` for every sequence into out_dir
    (pytracking layout: <out_dir>/<seq>.txt and <seq>_time.txt). Returns out_dir."""
    out_dir = Path(out_dir)
    for seq in tqdm(list(sequences), desc=f"{name}", leave=False):
        t0 = time.perf_counter()
        boxes = baseline_boxes(name, seq, seed)
        per_frame = (time.perf_counter() - t0) / max(len(boxes), 1)
        write_results(out_dir, seq.name, boxes, np.full(len(boxes), per_frame))
    return out_dir


def score_baselines(benchmarks, results_root, data_root=None, seed: int = 0, max_frames: int | None = None,
                    split: str | None = None, protocols=PROTOCOLS, baselines=BASELINES):
    """Run and score the trivial trackers on `benchmarks`, each into
    <results_root>/<benchmark>/<tracker>/seed<N>/ (dmtrack.layout) with its evaluate.json and scores.
    Returns a DataFrame: one row per (benchmark, tracker, protocol), metrics in percent."""
    import pandas as pd

    rows = []
    for bench in [benchmarks] if isinstance(benchmarks, str) else benchmarks:
        seqs = [truncate(s, max_frames) for s in load_benchmark(bench, data_root, split, progress=False, frames=False)]
        for name in baselines:
            out = run_baseline(name, seqs, results_dir(results_root, bench, name, baseline_param(seed)), seed)
            write_run_meta(out, dict(benchmark=bench, variant=name, samples=None, seed=seed, max_frames=max_frames))
            for protocol, sc in save_scores(out, seqs, protocols, bench).items():
                rows.append({"benchmark": bench, "tracker": name, "protocol": protocol, "valid_rule": sc.valid_rule,
                             "dataset_tag": sc.dataset_tag, "n_sequences": len(sc.names), **sc.overall()})
    return pd.DataFrame(rows)
