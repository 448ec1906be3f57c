"""Bootstrap confidence intervals over training seeds and sequences: the one bootstrap of the project
(the report's verdicts, its tables' CIs and the benchmarks' comparisons all resample here).

Sequences are a unit of resampling (the metrics average over sequences, frames within a sequence are
not independent); so is each training seed of a model (a row's seeds are independent trainings). A
table of per-sequence values is a (seeds, sequences) matrix; a plain list of per-sequence values is
one seed's row. Every mean of a resample is w_seeds^T m w_sequences with the resample's weights, so
the seeds and the sequences are drawn once per replicate, vectorised.

    seed_sequence_ci   percentile CI of the mean, resampling seeds and sequences
    paired_boot        replicates of mean(a) - mean(b) for two rows on the same sequences: the sequences
                       resampled once for both (their difficulty cancels out of the difference), each
                       row's seeds on their own (their means spread by sqrt(s / (s - 1)) first, so that
                       resampling s seeds does not shrink the seed-to-seed variance by (s - 1) / s)
    paired_test        studentized CI of that difference: +- t(df) * SE, df the Welch-Satterthwaite
                       degrees of freedom of the two sources (`Components`)
    within_test        the same when both rows come from the same models (e.g. two sentences)
    row_components     one row's variance split into seed, sequence and seed-by-sequence parts
    bootstrap_ci, paired_difference_ci: the one-seed cases, for per-sequence lists of one tracker
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

N_BOOT = 4000
LEVEL = 0.95  # the rows' own CIs (descriptive; the verdicts use their family's level)
MAX_SEEDS = 200  # Components.seeds_needed searches up to this many seeds per row


def _student():
    """scipy's Student t, imported when a studentized CI is computed: `dmtrack bench gpu` imports this
    module on a stock PyTorch image, which has no scipy (tests/test_bench_gpu.py)."""
    from scipy.stats import t

    return t


class CI(NamedTuple):
    estimate: float  # the mean over the given sequences (or of the paired differences)
    low: float
    high: float
    n: int  # number of sequences

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}] (n={self.n})"


def as_matrix(values) -> np.ndarray:
    """(seeds, sequences) array from a DataFrame (rows = seeds, columns = sequences) or array-like."""
    # a DataFrame by duck type: pandas stays out of what a stock GPU image imports (bench gpu, gpu_check)
    m = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values, dtype=np.float64)
    m = m[None, :] if m.ndim == 1 else m
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a (seeds, sequences) matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("non-finite per-sequence values")
    return m


def _draws(m: np.ndarray, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    s, q = m.shape
    return rng.integers(0, s, size=(n, s)), rng.integers(0, q, size=(n, q))


def _weights(idx: np.ndarray, size: int) -> np.ndarray:
    """(n, size) fraction of each of n resamples (rows of idx) that drew each index."""
    n, k = idx.shape
    return np.bincount((idx + size * np.arange(n)[:, None]).ravel(), minlength=n * size).reshape(n, size) / k


def _boot_means(m: np.ndarray, seeds_idx: np.ndarray, seq_idx: np.ndarray) -> np.ndarray:
    # mean over the resampled seeds of the mean over the resampled sequences = w_seeds^T m w_seqs
    return ((_weights(seeds_idx, m.shape[0]) @ m) * _weights(seq_idx, m.shape[1])).sum(1)


def _ci(estimate: float, boots: np.ndarray, level: float, n: int) -> CI:
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return CI(float(estimate), float(lo), float(hi), n)


def seed_sequence_ci(values, n: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> CI:
    """Percentile CI of the mean of a (seeds, sequences) matrix, resampling seeds and sequences."""
    m = as_matrix(values)
    rng = np.random.default_rng(seed)
    si, qi = _draws(m, rng, n)
    return _ci(m.mean(), _boot_means(m, si, qi), level, m.shape[1])


def _spread_seeds(m: np.ndarray) -> np.ndarray:
    """m with each seed's mean moved away from the grand mean by sqrt(s / (s - 1)): resampling s seeds
    with replacement then has the unbiased seed-to-seed variance, not (s - 1) / s of it."""
    s = m.shape[0]
    if s < 2:
        return m
    rows = m.mean(1, keepdims=True)
    return m + (rows - m.mean()) * (math.sqrt(s / (s - 1)) - 1)


def paired_boot(a, b, n: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """n bootstrap replicates of mean(a) - mean(b) for two rows scored on the same sequences (same
    column order): sequences resampled once for both rows, each row's seeds on their own."""
    a, b = _spread_seeds(as_matrix(a)), _spread_seeds(as_matrix(b))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rows scored on different numbers of sequences: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    sa, qi = _draws(a, rng, n)
    sb = rng.integers(0, b.shape[0], size=(n, b.shape[0]))
    wa, wb = _weights(sa, a.shape[0]), _weights(sb, b.shape[0])
    return ((wa @ a - wb @ b) * _weights(qi, a.shape[1])).sum(1)


# --- variance components ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowComponents:
    """Variance components of one row's (seeds x sequences) matrix, in squared metric points:
    x_ij = mu + u_i + c_j + e_ij, seed effect u (each training seed), sequence effect c (each sequence's
    difficulty), seed-by-sequence residual e (what is left: how a seed's model fares on that sequence)."""
    seed: float  # var(u)
    sequence: float  # var(c)
    residual: float  # var(e)
    seeds: int
    sequences: int
    mean: float  # mu: the row's mean over seeds and sequences


def row_components(values) -> RowComponents:
    """Method of moments of the two-way ANOVA without replication. With s seeds, q sequences, the mean
    squares MS_seed = q var(seed means), MS_seq = s var(sequence means) and MS_e = the residuals' sum of
    squares / ((s - 1)(q - 1)) have expectations var(e) + q var(u), var(e) + s var(c) and var(e), so
    seed = (MS_seed - MS_e) / q, sequence = (MS_seq - MS_e) / s, residual = MS_e; negative estimates set
    to 0. NaN where a part cannot be told apart: the seed and residual parts with one seed, the sequence
    part with one seed or one sequence. With one sequence the residual is counted in the seed part
    (residual 0), which keeps the variance of the row's mean (`Components.terms`) right."""
    m = as_matrix(values)
    s, q = m.shape
    nan = float("nan")
    if s < 2:  # one seed: neither the seed nor the residual part can be told apart from the sequences
        return RowComponents(nan, nan, nan, s, q, float(m.mean()))
    r = m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + m.mean()
    ms_e = float((r ** 2).sum() / ((s - 1) * (q - 1))) if q > 1 else 0.0
    ms_seed = q * float(m.mean(1).var(ddof=1))
    sequence = max(0.0, (s * float(m.mean(0).var(ddof=1)) - ms_e) / s) if q > 1 else nan
    return RowComponents(max(0.0, (ms_seed - ms_e) / q), sequence, ms_e, s, q, float(m.mean()))


@dataclass(frozen=True)
class Components:
    """Two-level variance components of a paired difference, in squared metric points. Each row r:
    x_ij = mu_r + u_i + c_j + e_ij (seed effect u, sequence effect c, residual e: `row_components`); the
    sequence effects of the two rows differ by an interaction with variance `interaction` (the part of the
    sequence-to-sequence spread of the difference that more seeds do not remove)."""
    seed: tuple  # each row's seed-effect variance var(u), (better, worse)
    residual: tuple  # seed x sequence residual variance of each row
    interaction: float
    seeds: tuple  # the seeds each row was measured with
    sequences: int

    def terms(self, seeds=None, sequences: int | None = None) -> list[tuple[float, float]]:
        """(variance, degrees of freedom) of each source of the difference's variance with `seeds`
        seeds per row (an int for both, a tuple per row; default: as measured) and `sequences` sequences
        (default: as measured; more is a prediction for more sequences of the same kind): each row's seed
        means (s - 1), then the sequences' paired differences (q - 1). As in the paired bootstrap, whose
        variance this is, the residual enters both (the seed means and the sequence means each carry it),
        which errs on the wide side."""
        q, seeds_of = sequences or self.sequences, self._seeds_of(seeds)
        out = [((u + e / q) / s, s - 1) for u, e, s in zip(self.seed, self.residual, seeds_of)]
        return out + [((self.interaction + sum(e / s for e, s in zip(self.residual, seeds_of))) / q, q - 1)]

    def _seeds_of(self, seeds) -> list:
        """Seeds per row: a tuple per row, an int for both, or None for as measured."""
        return list(seeds) if isinstance(seeds, tuple) else [seeds or s for s in self.seeds]

    def variance(self, seeds=None, sequences: int | None = None) -> float:
        return sum(v for v, _ in self.terms(seeds, sequences))

    def parts(self, seeds=None, sequences: int | None = None) -> dict[str, float]:
        """`variance(seeds, sequences)` split by source, the same sum regrouped: seed-to-seed sum_r u_r / s_r;
        seed-by-sequence 2 sum_r e_r / (q s_r) (the residual enters the seed means and the sequence means:
        `terms`); sequence-by-variant g / q. Which part to shrink: more seeds shrink the first two, more
        sequences the last two."""
        q, seeds_of = sequences or self.sequences, self._seeds_of(seeds)
        return {"seed-to-seed": sum(u / s for u, s in zip(self.seed, seeds_of)),
                "seed-by-sequence": 2 * sum(e / (q * s) for e, s in zip(self.residual, seeds_of)),
                "sequence-by-variant": self.interaction / q}

    def df(self, seeds=None, sequences: int | None = None) -> float:
        """Welch-Satterthwaite degrees of freedom of `variance(seeds, sequences)` (q - 1 when it is 0)."""
        terms = self.terms(seeds, sequences)
        if any(not np.isfinite(v) for v, _ in terms):
            return float("nan")
        terms = [(v, d) for v, d in terms if v > 0]
        if not terms:
            return float((sequences or self.sequences) - 1)
        return sum(v for v, _ in terms) ** 2 / sum(v * v / d for v, d in terms)

    def half_width(self, level: float, seeds=None, power: float | None = None, sequences: int | None = None) -> float:
        """Predicted half-width of the CI at `level` (normal sources, Student quantile at df); with
        `power`, the smallest true difference the design detects with that probability instead."""
        df = self.df(seeds, sequences)
        student = _student()
        t = student.ppf((1 + level) / 2, df) + (student.ppf(power, df) if power else 0.0)
        return float(t * math.sqrt(self.variance(seeds, sequences)))

    def seeds_needed(self, effect: float, level: float, power: float | None = None) -> int | None:
        """Fewest seeds per row (>= 2) whose predicted half-width (or detectable difference, with
        `power`) is below |effect|; None when no number up to MAX_SEEDS does (the sequences' own
        spread of the difference is then too large for this many sequences)."""
        for s in range(2, MAX_SEEDS + 1):
            if self.half_width(level, s, power) < abs(effect):
                return s
        return None


def variance_components(a, b) -> Components:
    """Method-of-moments estimate (two-way ANOVA without replication per row: `row_components`), negative
    variances set to 0. Needs >= 2 seeds per row for the seed and residual parts (NaN otherwise)."""
    a, b = as_matrix(a), as_matrix(b)
    q = a.shape[1]
    rows = [row_components(m) for m in (a, b)]
    d = a.mean(0) - b.mean(0)
    inter = float(d.var(ddof=1)) - sum(r.residual / r.seeds for r in rows) if q > 1 else 0.0
    return Components(tuple(r.seed for r in rows), tuple(r.residual for r in rows),
                      max(0.0, inter) if np.isfinite(inter) else float("nan"), (a.shape[0], b.shape[0]), q)


# --- the tests -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedTest:
    diff: CI  # the difference with its CI at `level`
    se: float  # bootstrap standard error
    df: float
    p: float  # two-sided p of "no difference"
    level: float

    @property
    def half_width(self) -> float:
        """The smallest difference this design resolves at `level` (half the CI's width)."""
        return (self.diff.high - self.diff.low) / 2


def paired_test(a, b, level: float, n: int = N_BOOT, seed: int = 0) -> PairedTest:
    """Studentized CI of mean(a) - mean(b): estimate +- t(df) * SE, SE from `paired_boot`, df from
    `variance_components` (see the module docstring)."""
    a, b = as_matrix(a), as_matrix(b)
    est = float(a.mean() - b.mean())
    se = float(paired_boot(a, b, n, seed).std())
    df = variance_components(a, b).df()
    if se == 0.0:
        return PairedTest(CI(est, est, est, a.shape[1]), 0.0, df, 0.0 if est != 0 else 1.0, level)
    if not np.isfinite(df):  # a row with one seed: its seed variance is unknown
        return PairedTest(CI(est, -math.inf, math.inf, a.shape[1]), se, df, 1.0, level)
    student = _student()
    t = float(student.ppf((1 + level) / 2, df))
    p = float(2 * student.sf(abs(est) / se, df))
    return PairedTest(CI(est, est - t * se, est + t * se, a.shape[1]), se, df, p, level)


def within_test(a, b, level: float, n: int = N_BOOT, seed: int = 0) -> PairedTest:
    """Studentized CI of mean(a) - mean(b) when both rows come from the same trained models on the same
    sequences (each seed's model tracked twice, e.g. under two sentences): the (seeds x sequences)
    difference a - b is resampled over its seeds and sequences (the sequences only, with one seed), so
    models and sequences are both paired; df: Welch-Satterthwaite of the seed term (s - 1) and the
    sequence term (q - 1)."""
    a, b = as_matrix(a), as_matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"the two rows must hold the same seeds and sequences: {a.shape} vs {b.shape}")
    d = a - b
    s, q = d.shape
    est = float(d.mean())
    si, qi = _draws(d, np.random.default_rng(seed), n)
    se = float(_boot_means(_spread_seeds(d), si, qi).std())
    terms = [(float(d.mean(0).var(ddof=1)) / q, q - 1)] if q > 1 else []
    terms += [(float(d.mean(1).var(ddof=1)) / s, s - 1)] if s > 1 else []
    terms = [(v, f) for v, f in terms if v > 0]
    df = sum(v for v, _ in terms) ** 2 / sum(v * v / f for v, f in terms) if terms else float(max(q - 1, 1))
    if se == 0.0:
        return PairedTest(CI(est, est, est, q), 0.0, df, 0.0 if est != 0 else 1.0, level)
    student = _student()
    t = float(student.ppf((1 + level) / 2, df))
    return PairedTest(CI(est, est - t * se, est + t * se, q), se, df, float(2 * student.sf(abs(est) / se, df)), level)


def paired_ci(a, b, level: float = LEVEL, n: int = N_BOOT, seed: int = 0) -> CI:
    """Percentile CI of mean(a) - mean(b) from `paired_boot` (descriptive: with one seed per row it
    resamples the sequences only, so it holds for these trainings, not for the variants)."""
    a, b = as_matrix(a), as_matrix(b)
    return _ci(float(a.mean() - b.mean()), paired_boot(a, b, n, seed), level, a.shape[1])


# --- one tracker's per-sequence values (a single seed) ------------------------------------------------
def _level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return level


def bootstrap_ci(per_sequence_values, n: int = 1000, seed: int = 0, level: float = 0.95) -> CI:
    """Percentile-bootstrap CI of the mean over sequences (e.g. per-sequence AUCs): `seed_sequence_ci`
    of one seed's row."""
    return seed_sequence_ci(np.asarray(per_sequence_values, dtype=np.float64).reshape(-1), n, seed, _level(level))


def paired_difference_ci(a, b, n: int = 1000, seed: int = 0, level: float = 0.95) -> CI:
    """CI of mean(a - b) for two trackers' per-sequence values on the same sequences, in the same
    order (pass pandas Series to have them aligned by sequence name first): `paired_ci` of one seed each."""
    if hasattr(a, "loc") and hasattr(b, "loc"):  # pandas (lists have an .index method too)
        if set(a.index) != set(b.index):
            raise ValueError("paired_difference_ci: the two trackers were scored on different sequences")
        b = b.loc[a.index]
    a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired_difference_ci: {len(a)} vs {len(b)} sequences")
    return paired_ci(a, b, _level(level), n, seed)
