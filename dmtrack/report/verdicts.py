"""Verdicts on the claims of Section 4.3: holds / does not hold / inconclusive.

Evidence for a claim "row A beats row B" is the per-sequence metric of both rows for
every training seed. Uncertainty comes from both sources the paper's single numbers hide:
a two-level percentile bootstrap resamples the training seeds and, independently, the
sequences (the unit the metrics average over). The rule never upgrades noise into a
finding:

    the two rows' 95% CIs overlap                  -> inconclusive
    A's CI lies above B's                          -> holds
    A's CI lies below B's                          -> does not hold (the reverse is true)
    fewer than MIN_SEEDS seeds or MIN_SEQUENCES    -> inconclusive (too little evidence)

A "similar" claim (GT-CE at k=1) holds when the CI of the paired difference lies inside
+-SIMILAR_MARGIN, does not hold when the two CIs are disjoint, and is inconclusive otherwise.

Every verdict is held back when the full model does not clearly beat the static baseline (the
first box held still) on the claims' benchmark: the lower end of the paired CI of (full - static)
must be above 0. A model that does not track (AUC 3.5 against static's 42.5) makes each ablation
look like "no difference", and verdicts drawn from it would be noise presented as findings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dmtrack.eval.stats import CI

HOLDS, FAILS, INCONCLUSIVE, HELD_BACK = "holds", "does not hold", "inconclusive", "held back"
MIN_SEEDS = 2  # one training seed cannot tell a variant's effect from training noise
MIN_SEQUENCES = 5  # fewer sequences give a bootstrap CI that means little
SIMILAR_MARGIN = 1.0  # points of AUC; the paper calls 0.2 "similar" and 1.2 its smallest "decrease"
N_BOOT = 2000
LEVEL = 0.95


def _matrix(values) -> np.ndarray:
    """(seeds, sequences) array from a DataFrame (rows = seeds, columns = sequences) or array-like."""
    m = np.asarray(values.to_numpy() if isinstance(values, pd.DataFrame) else values, dtype=np.float64)
    m = m[None, :] if m.ndim == 1 else m
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a (seeds, sequences) matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("non-finite per-sequence values")
    return m


def _draws(m: np.ndarray, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    s, q = m.shape
    return rng.integers(0, s, size=(n, s)), rng.integers(0, q, size=(n, q))


def _boot_means(m: np.ndarray, seeds_idx: np.ndarray, seq_idx: np.ndarray) -> np.ndarray:
    # mean over the resampled seeds of the mean over the resampled sequences
    per_seed = np.take_along_axis(m[seeds_idx], np.broadcast_to(seq_idx[:, None, :], (*seeds_idx.shape, seq_idx.shape[1])), 2)
    return per_seed.mean(axis=(1, 2))


def _ci(estimate: float, boots: np.ndarray, level: float, n: int) -> CI:
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return CI(float(estimate), float(lo), float(hi), n)


def seed_sequence_ci(values, n: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> CI:
    """CI of the mean of a (seeds, sequences) matrix, resampling seeds and sequences."""
    m = _matrix(values)
    rng = np.random.default_rng(seed)
    si, qi = _draws(m, rng, n)
    return _ci(m.mean(), _boot_means(m, si, qi), level, m.shape[1])


def paired_seed_sequence_ci(a, b, n: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> CI:
    """CI of mean(a) - mean(b) for two rows scored on the same sequences (same column order).

    Sequences are paired (one resample applied to both); the two rows' seeds are independent
    trainings, so each row's seeds are resampled on their own.
    """
    a, b = _matrix(a), _matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rows scored on different numbers of sequences: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    sa, qi = _draws(a, rng, n)
    sb = rng.integers(0, b.shape[0], size=(n, b.shape[0]))
    boots = _boot_means(a, sa, qi) - _boot_means(b, sb, qi)
    return _ci(a.mean() - b.mean(), boots, level, a.shape[1])


def overlap(x: CI, y: CI) -> bool:
    return not (x.low > y.high or y.low > x.high)


def decide(better: CI, worse: CI, diff: CI, kind: str = "better", margin: float = SIMILAR_MARGIN) -> tuple[str, str]:
    """(verdict, reason) for the claim that `better` beats `worse` (or, kind="similar", matches it)."""
    if kind == "similar":
        if not overlap(better, worse):
            return FAILS, "the two CIs are disjoint: the rows differ"
        if -margin <= diff.low and diff.high <= margin:
            return HOLDS, f"the CI of the difference lies within +-{margin:g}"
        return INCONCLUSIVE, f"the CI of the difference reaches beyond +-{margin:g}"
    if kind != "better":
        raise ValueError(f"unknown claim kind {kind!r}")
    if overlap(better, worse):
        return INCONCLUSIVE, "the two CIs overlap"
    if better.low > worse.high:
        return HOLDS, "the CIs are disjoint, in the claimed order"
    return FAILS, "the CIs are disjoint, in the opposite order"


@dataclass
class Verdict:
    claim: str
    verdict: str
    reason: str
    better: CI
    worse: CI
    diff: CI
    seeds: tuple  # (seeds of the better row, seeds of the worse row)
    sequences: int


def judge(claim, better_values, worse_values, metric: str = "auc", n: int = N_BOOT, seed: int = 0) -> Verdict:
    """Verdict on `claim` (a paper.Claim) from two (seeds x sequences) tables of `metric`.

    Pass DataFrames indexed by seed with sequence columns: they are aligned on sequences.
    """
    if isinstance(better_values, pd.DataFrame) and isinstance(worse_values, pd.DataFrame):
        common = better_values.columns.intersection(worse_values.columns)
        if len(common) != len(better_values.columns) or len(common) != len(worse_values.columns):
            raise ValueError(f"claim {claim.key}: the two rows were scored on different sequences")
        worse_values = worse_values[better_values.columns]
    a, b = _matrix(better_values), _matrix(worse_values)
    ca, cb = seed_sequence_ci(a, n, seed), seed_sequence_ci(b, n, seed + 1)
    cd = paired_seed_sequence_ci(a, b, n, seed + 2)
    verdict, reason = decide(ca, cb, cd, claim.kind)
    if min(a.shape[0], b.shape[0]) < MIN_SEEDS or a.shape[1] < MIN_SEQUENCES:
        verdict, reason = INCONCLUSIVE, (f"too little evidence ({min(a.shape[0], b.shape[0])} seed(s), {a.shape[1]} "
                                         f"sequences; a verdict needs >= {MIN_SEEDS} seeds and >= {MIN_SEQUENCES} sequences)")
    return Verdict(claim.key, verdict, reason, ca, cb, cd, (a.shape[0], b.shape[0]), a.shape[1])


@dataclass
class Gate:
    """Whether verdicts may be drawn at all (see the module docstring), and why."""
    ok: bool
    reason: str
    diff: CI | None  # full minus static, paired over sequences


def full_beats_static(full: pd.DataFrame, static: pd.DataFrame, n: int = N_BOOT, seed: int = 0) -> Gate:
    """The gate on every verdict: the paired 95% CI of full minus static (seeds x sequences tables of
    the same metric, aligned on sequences) lies above 0."""
    if full.empty or static.empty:
        return Gate(False, f"the {'full model' if full.empty else 'static baseline'} was not scored on this benchmark", None)
    if set(full.columns) != set(static.columns):
        return Gate(False, "the full model and the static baseline were scored on different sequences", None)
    d = paired_seed_sequence_ci(full, static[full.columns], n, seed)
    text = f"AUC difference {d.estimate:+.1f}, 95% CI [{d.low:+.1f}, {d.high:+.1f}] over {d.n} sequences"
    if d.low > 0:
        return Gate(True, f"the full model beats the static baseline ({text})", d)
    return Gate(False, f"the full model does not clearly beat the static baseline, the first box held still ({text}): "
                       "the ablations of a model that does not track say nothing about the paper's claims", d)
