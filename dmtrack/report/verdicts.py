"""Verdicts on the claims of Section 4.3: holds / does not hold / inconclusive.

Evidence for a claim "row A beats row B" is the per-sequence metric of both rows for every
training seed: two (seeds x sequences) matrices on the same sequences. The quantity judged is
the paired difference mean(A) - mean(B); its uncertainty has the two sources the paper's single
numbers hide, each training seed (a row's seeds are independent trainings) and each sequence
(shared by both rows, so the sequences' difficulty cancels out of the difference).

    uncertainty  a paired two-level bootstrap (dmtrack.eval.stats): sequences resampled once for both
                 rows, each row's seeds resampled on their own (their means spread by sqrt(s / (s - 1)) first, so that
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

`Components` (dmtrack.eval.stats) is the two-level variance components estimate behind the degrees of freedom; it
also predicts the CI's half-width for another number of seeds (`seeds_needed`).

Every verdict is held back when the full model does not clearly beat the static baseline (the
first box held still) on the claims' benchmark: the lower end of the paired 95% bootstrap CI of
(full - static) must be above 0. A model that does not track (AUC 3.5 against static's 42.5) makes
each ablation look like "no difference", and verdicts drawn from it would be noise presented as findings.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dmtrack.eval.stats import (CI, LEVEL, N_BOOT, Components, PairedTest, as_matrix, paired_ci, paired_test,
                                seed_sequence_ci, variance_components)

HOLDS, FAILS, INCONCLUSIVE, HELD_BACK = "holds", "does not hold", "inconclusive", "held back"
MIN_SEEDS = 2  # one training seed cannot tell a variant's effect from training noise
MIN_SEQUENCES = 5  # fewer sequences give a CI that means little
SIMILAR_MARGIN = 1.0  # points of AUC; the paper calls 0.2 "similar" and 1.2 its smallest "decrease"
FAMILY_ALPHA = 0.05  # family-wise error rate over the claims judged together
POWER = 0.8  # the power the seeds-needed table plans for


def family_level(family: int, alpha: float = FAMILY_ALPHA) -> float:
    """Bonferroni: the per-claim CI level that keeps the family-wise error of `family` claims at alpha."""
    if family < 1:
        raise ValueError(f"a family needs at least one claim, got {family}")
    return 1 - alpha / family


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


def _aligned(key: str, better_values, worse_values):
    if isinstance(better_values, pd.DataFrame) and isinstance(worse_values, pd.DataFrame):
        common = better_values.columns.intersection(worse_values.columns)
        if len(common) != len(better_values.columns) or len(common) != len(worse_values.columns):
            raise ValueError(f"claim {key}: the two rows were scored on different sequences")
        worse_values = worse_values[better_values.columns]
    return as_matrix(better_values), as_matrix(worse_values)


def judge(claim, better_values, worse_values, family: int, n: int = N_BOOT, seed: int = 0,
          alpha: float = FAMILY_ALPHA) -> Verdict:
    """Verdict on `claim` (a paper.Claim), one of `family` claims judged together, from two
    (seeds x sequences) tables of its metric (`judge_difference` under the claim's key and kind)."""
    return judge_difference(claim.key, better_values, worse_values, family, claim.kind, n, seed, alpha)


def judge_difference(key: str, better_values, worse_values, family: int, kind: str = "better", n: int = N_BOOT,
                     seed: int = 0, alpha: float = FAMILY_ALPHA) -> Verdict:
    """Verdict on the claim `key` of `kind` (better | similar) about two rows, one of `family` claims
    judged together, from two (seeds x sequences) tables of its metric. DataFrames (index = seed,
    columns = sequences) are aligned on sequences."""
    a, b = _aligned(key, better_values, worse_values)
    test = paired_test(a, b, family_level(family, alpha), n, seed + 2)
    verdict, reason = decide(test.diff, kind)
    if min(a.shape[0], b.shape[0]) < MIN_SEEDS or a.shape[1] < MIN_SEQUENCES:
        verdict, reason = INCONCLUSIVE, (f"too little evidence ({min(a.shape[0], b.shape[0])} seed(s), {a.shape[1]} "
                                         f"sequences; a verdict needs >= {MIN_SEEDS} seeds and >= {MIN_SEQUENCES} sequences)")
    return Verdict(key, verdict, reason, seed_sequence_ci(a, n, seed), seed_sequence_ci(b, n, seed + 1), test,
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
