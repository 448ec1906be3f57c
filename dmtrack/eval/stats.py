"""Bootstrap confidence intervals over sequences, for verdicts such as "variant A beats B".

Sequences are the unit of resampling (the metrics average over sequences, frames within a
sequence are not independent). Percentile bootstrap of the mean; for two trackers scored on
the same sequences the paired version resamples sequence indices once and applies them to
both, so the between-sequence difficulty cancels out of the difference.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class CI(NamedTuple):
    estimate: float  # the mean over the given sequences (or of the paired differences)
    low: float
    high: float
    n: int  # number of sequences

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}] (n={self.n})"


def _values(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: non-finite values")
    return x


def _bootstrap(x: np.ndarray, n: int, seed: int, level: float) -> CI:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return CI(float(x.mean()), float(lo), float(hi), len(x))


def bootstrap_ci(per_sequence_values, n: int = 1000, seed: int = 0, level: float = 0.95) -> CI:
    """Percentile-bootstrap CI of the mean over sequences (e.g. per-sequence AUCs)."""
    return _bootstrap(_values(per_sequence_values, "bootstrap_ci"), n, seed, level)


def paired_difference_ci(a, b, n: int = 1000, seed: int = 0, level: float = 0.95) -> CI:
    """CI of mean(a - b) for two trackers' per-sequence values on the same sequences, in the
    same order (pass pandas Series to have them aligned by sequence name first)."""
    if hasattr(a, "loc") and hasattr(b, "loc"):  # pandas (lists have an .index method too)
        if set(a.index) != set(b.index):
            raise ValueError("paired_difference_ci: the two trackers were scored on different sequences")
        b = b.loc[a.index]
    a, b = _values(a, "paired_difference_ci a"), _values(b, "paired_difference_ci b")
    if a.shape != b.shape:
        raise ValueError(f"paired_difference_ci: {len(a)} vs {len(b)} sequences")
    return _bootstrap(a - b, n, seed, level)
