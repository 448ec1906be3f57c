"""Verdicts on the claims of Section 4.3: holds / does not hold / inconclusive.

Evidence for a claim "row A beats row B" is the per-sequence metric of both rows for every
training seed: two (seeds x sequences) matrices on the same sequences. The quantity judged is
the paired difference mean(A) - mean(B); its uncertainty has the two sources the paper's single
numbers hide, each training seed (a row's seeds are independent trainings) and each sequence
(shared by both rows, so the sequences' difficulty cancels out of the difference).

    uncertainty  a paired two-level bootstrap: sequences resampled once for both rows, each row's
                 seeds resampled on their own (their means spread by sqrt(s / (s - 1)) first, so that
                 resampling s seeds does not shrink the seed-to-seed variance by (s - 1) / s).
                 Its standard deviation is the standard error SE of the difference.
    family       the eight claims are one family: Bonferroni, every claim's CI at level
                 1 - FAMILY_ALPHA / 8 (99.375 %), so that the chance of any false "holds" or
                 "does not hold" among the eight is at most FAMILY_ALPHA.
    CI           difference +- t * SE, t the Student quantile at the Welch-Satterthwaite degrees of
                 freedom of the two sources (each row's seeds: s - 1; the sequences: q - 1). With three
                 seeds the seed term has few degrees of freedom: a percentile CI would be too narrow
                 (docs/report.md gives the simulated error rates).

    "better" claim:   CI above 0 -> holds;  below 0 -> does not hold;  else inconclusive
    "similar" claim:  CI inside +-SIMILAR_MARGIN -> holds;  entirely beyond it -> does not hold;
                      else inconclusive
    fewer than MIN_SEEDS seeds or MIN_SEQUENCES sequences -> inconclusive (too little evidence)

`Components` is the two-level variance components estimate behind the degrees of freedom; it
also predicts the CI's half-width for another number of seeds (`seeds_needed`).

Every verdict is held back when the full model does not clearly beat the static baseline (the
first box held still) on the claims' benchmark: the lower end of the paired 95% bootstrap CI of
(full - static) must be above 0. A model that does not track (AUC 3.5 against static's 42.5) makes
each ablation look like "no difference", and verdicts drawn from it would be noise presented as findings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dmtrack.eval.stats import CI

HOLDS, FAILS, INCONCLUSIVE, HELD_BACK = "holds", "does not hold", "inconclusive", "held back"
MIN_SEEDS = 2  # one training seed cannot tell a variant's effect from training noise
MIN_SEQUENCES = 5  # fewer sequences give a CI that means little
SIMILAR_MARGIN = 1.0  # points of AUC; the paper calls 0.2 "similar" and 1.2 its smallest "decrease"
FAMILY_ALPHA = 0.05  # family-wise error rate over the claims judged together
N_BOOT = 4000
LEVEL = 0.95  # the rows' own CIs (descriptive; the verdicts use the family level)
POWER = 0.8  # the power the seeds-needed table plans for
MAX_SEEDS = 200  # seeds_needed searches up to this many seeds per row


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
    m = _matrix(values)
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
    a, b = _spread_seeds(_matrix(a)), _spread_seeds(_matrix(b))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rows scored on different numbers of sequences: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    sa, qi = _draws(a, rng, n)
    sb = rng.integers(0, b.shape[0], size=(n, b.shape[0]))
    wa, wb = _weights(sa, a.shape[0]), _weights(sb, b.shape[0])
    return ((wa @ a - wb @ b) * _weights(qi, a.shape[1])).sum(1)


# --- variance components ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Components:
    """Two-level variance components of a paired difference, in squared metric points. Each row r:
    x_ij = mu_r + u_i + c_j + e_ij (seed effect u, sequence effect c, residual e); the sequence effects
    of the two rows differ by an interaction with variance `interaction` (the part of the
    sequence-to-sequence spread of the difference that more seeds do not remove)."""
    seed: tuple  # seed-to-seed variance of each row's mean over sequences, (better, worse)
    residual: tuple  # seed x sequence residual variance of each row
    interaction: float
    seeds: tuple  # the seeds each row was measured with
    sequences: int

    def terms(self, seeds: int | None = None) -> list[tuple[float, float]]:
        """(variance, degrees of freedom) of each source of the difference's variance with `seeds`
        seeds per row (default: as measured): each row's seed means (s - 1), then the sequences'
        paired differences (q - 1). As in the paired bootstrap, whose variance this is, the residual
        enters both (the seed means and the sequence means each carry it), which errs on the wide side."""
        q, seeds_of = self.sequences, [seeds or s for s in self.seeds]
        out = [((u + e / q) / s, s - 1) for u, e, s in zip(self.seed, self.residual, seeds_of)]
        return out + [((self.interaction + sum(e / s for e, s in zip(self.residual, seeds_of))) / q, q - 1)]

    def variance(self, seeds: int | None = None) -> float:
        return sum(v for v, _ in self.terms(seeds))

    def df(self, seeds: int | None = None) -> float:
        """Welch-Satterthwaite degrees of freedom of `variance(seeds)` (q - 1 when it is 0)."""
        terms = self.terms(seeds)
        if any(not np.isfinite(v) for v, _ in terms):
            return float("nan")
        terms = [(v, d) for v, d in terms if v > 0]
        if not terms:
            return float(self.sequences - 1)
        return sum(v for v, _ in terms) ** 2 / sum(v * v / d for v, d in terms)

    def half_width(self, level: float, seeds: int | None = None, power: float | None = None) -> float:
        """Predicted half-width of the CI at `level` (normal sources, Student quantile at df); with
        `power`, the smallest true difference the design detects with that probability instead."""
        df = self.df(seeds)
        t = stats.t.ppf((1 + level) / 2, df) + (stats.t.ppf(power, df) if power else 0.0)
        return float(t * math.sqrt(self.variance(seeds)))

    def seeds_needed(self, effect: float, level: float, power: float | None = None) -> int | None:
        """Fewest seeds per row (>= 2) whose predicted half-width (or detectable difference, with
        `power`) is below |effect|; None when no number up to MAX_SEEDS does (the sequences' own
        spread of the difference is then too large for this many sequences)."""
        for s in range(2, MAX_SEEDS + 1):
            if self.half_width(level, s, power) < abs(effect):
                return s
        return None


def variance_components(a, b) -> Components:
    """Method-of-moments estimate (two-way ANOVA without replication per row), negative variances
    set to 0. Needs >= 2 seeds per row for the seed and residual parts (NaN otherwise)."""
    a, b = _matrix(a), _matrix(b)
    q = a.shape[1]
    seed, resid = [], []
    for m in (a, b):
        s = m.shape[0]
        if s < 2:  # one seed: neither part can be told apart from the sequences
            ms_seed = ms_e = float("nan")
        else:
            r = m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + m.mean()
            ms_e = float((r ** 2).sum() / ((s - 1) * (q - 1))) if q > 1 else 0.0
            ms_seed = q * float(m.mean(1).var(ddof=1))
        seed.append(max(0.0, (ms_seed - ms_e) / q) if s > 1 else ms_seed)
        resid.append(ms_e)
    d = a.mean(0) - b.mean(0)
    inter = float(d.var(ddof=1)) - sum(e / m.shape[0] for e, m in zip(resid, (a, b))) if q > 1 else 0.0
    return Components(tuple(seed), tuple(resid), max(0.0, inter) if np.isfinite(inter) else float("nan"),
                      (a.shape[0], b.shape[0]), q)


# --- the test and the rule -----------------------------------------------------------------------------
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


def family_level(family: int, alpha: float = FAMILY_ALPHA) -> float:
    """Bonferroni: the per-claim CI level that keeps the family-wise error of `family` claims at alpha."""
    if family < 1:
        raise ValueError(f"a family needs at least one claim, got {family}")
    return 1 - alpha / family


def paired_test(a, b, level: float, n: int = N_BOOT, seed: int = 0) -> PairedTest:
    """Studentized CI of mean(a) - mean(b): estimate +- t(df) * SE, SE from `paired_boot`, df from
    `variance_components` (see the module docstring)."""
    a, b = _matrix(a), _matrix(b)
    est = float(a.mean() - b.mean())
    se = float(paired_boot(a, b, n, seed).std())
    df = variance_components(a, b).df()
    if se == 0.0:
        return PairedTest(CI(est, est, est, a.shape[1]), 0.0, df, 0.0 if est != 0 else 1.0, level)
    if not np.isfinite(df):  # a row with one seed: its seed variance is unknown
        return PairedTest(CI(est, -math.inf, math.inf, a.shape[1]), se, df, 1.0, level)
    t = float(stats.t.ppf((1 + level) / 2, df))
    p = float(2 * stats.t.sf(abs(est) / se, df))
    return PairedTest(CI(est, est - t * se, est + t * se, a.shape[1]), se, df, p, level)


def within_test(a, b, level: float, n: int = N_BOOT, seed: int = 0) -> PairedTest:
    """Studentized CI of mean(a) - mean(b) when both rows come from the same trained models on the same
    sequences (each seed's model tracked twice, e.g. under two sentences): the (seeds x sequences)
    difference a - b is resampled over its seeds and sequences (the sequences only, with one seed), so
    models and sequences are both paired; df: Welch-Satterthwaite of the seed term (s - 1) and the
    sequence term (q - 1)."""
    a, b = _matrix(a), _matrix(b)
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
    t = float(stats.t.ppf((1 + level) / 2, df))
    return PairedTest(CI(est, est - t * se, est + t * se, q), se, df, float(2 * stats.t.sf(abs(est) / se, df)), level)


def paired_ci(a, b, level: float = LEVEL, n: int = N_BOOT, seed: int = 0) -> CI:
    """Percentile CI of mean(a) - mean(b) from `paired_boot` (descriptive: with one seed per row it
    resamples the sequences only, so it holds for these trainings, not for the variants)."""
    a, b = _matrix(a), _matrix(b)
    return _ci(float(a.mean() - b.mean()), paired_boot(a, b, n, seed), level, a.shape[1])


def decide(diff: CI, kind: str = "better", margin: float = SIMILAR_MARGIN) -> tuple[str, str]:
    """(verdict, reason) from the family-level CI of the difference better - worse."""
    if kind == "similar":
        if -margin <= diff.low and diff.high <= margin:
            return HOLDS, f"the CI lies within +-{margin:g}"
        if diff.low > margin or diff.high < -margin:
            return FAILS, f"the CI lies beyond +-{margin:g}: the rows differ"
        return INCONCLUSIVE, f"the CI reaches beyond +-{margin:g}"
    if kind != "better":
        raise ValueError(f"unknown claim kind {kind!r}")
    if diff.low > 0:
        return HOLDS, "the CI lies above 0"
    if diff.high < 0:
        return FAILS, "the CI lies below 0: the reverse is true"
    return INCONCLUSIVE, "the CI contains 0"


@dataclass
class Verdict:
    claim: str
    verdict: str
    reason: str
    better: CI  # each row's own CI at LEVEL
    worse: CI
    test: PairedTest  # the paired difference at the family level
    components: Components
    seeds: tuple  # (seeds of the better row, seeds of the worse row)
    sequences: int

    @property
    def diff(self) -> CI:
        return self.test.diff


def _aligned(claim, better_values, worse_values):
    if isinstance(better_values, pd.DataFrame) and isinstance(worse_values, pd.DataFrame):
        common = better_values.columns.intersection(worse_values.columns)
        if len(common) != len(better_values.columns) or len(common) != len(worse_values.columns):
            raise ValueError(f"claim {claim.key}: the two rows were scored on different sequences")
        worse_values = worse_values[better_values.columns]
    return _matrix(better_values), _matrix(worse_values)


def judge(claim, better_values, worse_values, family: int, n: int = N_BOOT, seed: int = 0,
          alpha: float = FAMILY_ALPHA) -> Verdict:
    """Verdict on `claim` (a paper.Claim), one of `family` claims judged together, from two
    (seeds x sequences) tables of its metric. DataFrames (index = seed, columns = sequences) are
    aligned on sequences."""
    a, b = _aligned(claim, better_values, worse_values)
    test = paired_test(a, b, family_level(family, alpha), n, seed + 2)
    verdict, reason = decide(test.diff, claim.kind)
    if min(a.shape[0], b.shape[0]) < MIN_SEEDS or a.shape[1] < MIN_SEQUENCES:
        verdict, reason = INCONCLUSIVE, (f"too little evidence ({min(a.shape[0], b.shape[0])} seed(s), {a.shape[1]} "
                                         f"sequences; a verdict needs >= {MIN_SEEDS} seeds and >= {MIN_SEQUENCES} sequences)")
    return Verdict(claim.key, verdict, reason, seed_sequence_ci(a, n, seed), seed_sequence_ci(b, n, seed + 1), test,
                   variance_components(a, b), (a.shape[0], b.shape[0]), a.shape[1])


@dataclass
class Gate:
    """Whether verdicts may be drawn at all (see the module docstring), and why."""
    ok: bool
    reason: str
    diff: CI | None  # full minus static, paired over sequences


def full_beats_static(full: pd.DataFrame, static: pd.DataFrame, n: int = N_BOOT, seed: int = 0) -> Gate:
    """The gate on every verdict: the paired 95% percentile CI of full minus static (seeds x sequences
    tables of the same metric, aligned on sequences; `paired_boot`) lies above 0. A sanity check that the
    model tracks at all, so a plain percentile CI suffices (with one seed it resamples sequences only)."""
    if full.empty or static.empty:
        return Gate(False, f"the {'full model' if full.empty else 'static baseline'} was not scored on this benchmark", None)
    if set(full.columns) != set(static.columns):
        return Gate(False, "the full model and the static baseline were scored on different sequences", None)
    d = paired_ci(full, static[full.columns], LEVEL, n, seed)
    text = f"AUC difference {d.estimate:+.1f}, 95% CI [{d.low:+.1f}, {d.high:+.1f}] over {d.n} sequences"
    if d.low > 0:
        return Gate(True, f"the full model beats the static baseline ({text})", d)
    return Gate(False, f"the full model does not clearly beat the static baseline, the first box held still ({text}): "
                       "the ablations of a model that does not track say nothing about the paper's claims", d)
