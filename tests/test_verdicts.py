"""The verdict rule (dmtrack/report/verdicts.py; its statistics in dmtrack/eval/stats.py): the paired
difference of two Table 2 rows, its bootstrap standard error, the Bonferroni family level over the eight
claims, the variance components behind the degrees of freedom and the seeds-needed table. Hand-computed cases and error rates over
random draws; every bootstrap is vectorised and seeded, so the file takes seconds."""
import math

import numpy as np
import pytest
from scipy import stats

from dmtrack import paper
from dmtrack.eval import stats as eval_stats
from dmtrack.eval.stats import CI
from dmtrack.report import verdicts

CLAIM = paper.CLAIMS[0]  # a "better" claim
SIMILAR = next(c for c in paper.CLAIMS if c.kind == "similar")
FAMILY = len(paper.CLAIMS)


def test_the_family_is_the_eight_claims_at_bonferroni_level():
    assert FAMILY == 8
    assert verdicts.family_level(FAMILY) == pytest.approx(1 - 0.05 / 8)  # 99.375 %
    with pytest.raises(ValueError, match="at least one claim"):
        verdicts.family_level(0)


def test_decide_better_and_similar_claims():
    assert verdicts.decide(CI(4, 0.1, 7.9, 36)) == (verdicts.HOLDS, "the CI lies above 0")
    assert verdicts.decide(CI(-4, -7.9, -0.1, 36))[0] == verdicts.FAILS
    assert verdicts.decide(CI(4, -0.1, 8.1, 36))[0] == verdicts.INCONCLUSIVE  # touching 0 is not evidence
    assert verdicts.decide(CI(0.1, -0.8, 0.9, 36), "similar")[0] == verdicts.HOLDS  # within +-1 AUC point
    assert verdicts.decide(CI(0.1, -1.5, 1.7, 36), "similar")[0] == verdicts.INCONCLUSIVE
    assert verdicts.decide(CI(2.0, 1.5, 2.5, 36), "similar")[0] == verdicts.FAILS  # surely more than 1 apart
    assert verdicts.decide(CI(0.5, 0.2, 0.8, 36), "similar")[0] == verdicts.HOLDS  # a small real difference is "similar"
    with pytest.raises(ValueError, match="unknown claim kind"):
        verdicts.decide(CI(0, 0, 0, 1), "bigger")


def _seed_offsets_only():
    """a = 10 + seed effect (-1, +1) + sequence effect (0, 1, 2); b = 5 + the same sequence effect, no
    seed effect: no residual, no interaction. Hand values: seed variances (2, 0), residuals (0, 0),
    interaction 0; with 2 seeds the difference's variance is 2 / 2 = 1 with 1 degree of freedom."""
    c = np.array([0.0, 1.0, 2.0])
    return np.stack([9 + c, 11 + c]), np.stack([5 + c, 5 + c])


def test_variance_components_and_seeds_needed_by_hand():
    a, b = _seed_offsets_only()
    comp = eval_stats.variance_components(a, b)
    assert comp.seed == pytest.approx((2.0, 0.0)) and comp.residual == pytest.approx((0.0, 0.0))
    assert comp.interaction == pytest.approx(0.0) and comp.seeds == (2, 2) and comp.sequences == 3
    assert comp.variance() == pytest.approx(1.0) and comp.df() == pytest.approx(1.0)
    assert comp.parts() == pytest.approx({"seed-to-seed": 1.0, "seed-by-sequence": 0.0, "sequence-by-variant": 0.0})
    assert comp.half_width(0.95) == pytest.approx(stats.t.ppf(0.975, 1))  # 12.706
    # with s seeds: variance 2 / s, s - 1 degrees of freedom; t(s-1) sqrt(2/s): 12.71, 3.51, 2.25 for s = 2, 3, 4
    assert comp.half_width(0.95, seeds=4) == pytest.approx(stats.t.ppf(0.975, 3) * math.sqrt(0.5))
    assert comp.seeds_needed(3.0, 0.95) == 4 and comp.seeds_needed(-3.0, 0.95) == 4  # the sign does not matter
    assert comp.seeds_needed(3.6, 0.95) == 3 and comp.seeds_needed(2.5, 0.95) == 4
    # with 80% power the detectable difference adds t(0.8): s = 4 gives (3.182 + 0.978) sqrt(0.5) = 2.94,
    # s = 5 gives (2.776 + 0.941) sqrt(0.4) = 2.35 < 2.5
    assert comp.seeds_needed(2.5, 0.95, power=0.8) == 5
    # a difference that varies from sequence to sequence does not shrink with seeds: no number suffices
    noisy = eval_stats.variance_components(np.stack([9 + 40 * np.array([0, 1, 0, 1, 0.])] * 2),
                                         np.full((2, 5), 5.0))
    assert noisy.interaction == pytest.approx(480.0) and noisy.seeds_needed(3.0, 0.95) is None


def test_residual_and_interaction_are_separated():
    # b = 0; a = seed-free, with a per-cell residual e and a per-sequence interaction g (both rows 2 seeds):
    # e = +-1 in a checkerboard (row and column means 0) -> residual mean square 8 cells * 1 / ((2 - 1)(4 - 1))
    # = 8/3; g = (0, 4, 0, 4): the column means of the difference are g (the checkerboard cancels),
    # var(g) = 16/3, minus the residual's share e / s = 4/3: interaction 4
    e = np.array([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])
    g = np.array([0.0, 4.0, 0.0, 4.0])
    comp = eval_stats.variance_components(e + g, np.zeros((2, 4)))
    assert comp.residual == pytest.approx((8 / 3, 0.0)) and comp.seed == pytest.approx((0.0, 0.0))
    assert comp.interaction == pytest.approx(4.0)
    # 2 seeds, 4 sequences: seed-by-sequence 2 (8/3) / (4 * 2) = 2/3, sequence-by-variant 4 / 4 = 1; the parts
    # sum to the variance, and the claim's table names the largest with its share, 1 / (5/3) = 60%
    parts = comp.parts()
    assert parts == pytest.approx({"seed-to-seed": 0.0, "seed-by-sequence": 2 / 3, "sequence-by-variant": 1.0})
    assert sum(parts.values()) == pytest.approx(comp.variance())
    assert comp.parts(seeds=4, sequences=8)["seed-by-sequence"] == pytest.approx(2 * (8 / 3) / 32)
    from dmtrack.report.claims import _largest_part
    assert _largest_part(comp) == "sequence-by-variant: 60% of the difference's variance (more sequences shrink it)"


def test_row_components_split_one_rows_variance_by_hand():
    # x = 10 + u_seed + c_sequence + e, u = (-2, 0, 2), c = (-3, 0, 3), e with zero row and column sums:
    m = np.array([[6.0, 7, 11], [6, 10, 14], [9, 13, 14]])  # 8 + (-3, 0, 3) + (1, -1, 0); 10 + ... + (-1, 0, 1); ...
    # seed means 8, 10, 12: MS_seed = 3 * var = 3 * 4 = 12; sequence means 7, 10, 13: MS_seq = 3 * 9 = 27;
    # residuals = e, six of +-1: MS_e = 6 / ((3 - 1)(3 - 1)) = 1.5. seed (12 - 1.5) / 3 = 3.5, sequence
    # (27 - 1.5) / 3 = 8.5, residual 1.5
    r = eval_stats.row_components(m)
    assert (r.seed, r.sequence, r.residual, r.seeds, r.sequences, r.mean) == pytest.approx((3.5, 8.5, 1.5, 3, 3, 10.0))
    # the pair's components are the rows' own (one core): a's and b's seed and residual parts
    # b = m without its seed effects: equal seed means, MS_seed = 0, and (0 - 1.5) / 3 < 0 is set to 0
    comp = eval_stats.variance_components(m, m - [[-2.0], [0.0], [2.0]])
    assert comp.seed == pytest.approx((3.5, 0.0)) and comp.residual == pytest.approx((1.5, 1.5))
    one_seed = eval_stats.row_components(m[:1])  # nothing tells seed, sequence and residual apart
    assert np.isnan([one_seed.seed, one_seed.sequence, one_seed.residual]).all() and one_seed.mean == 8.0
    # one sequence (6, 6, 9): the seed part holds the residual, var = 3; the sequence part is not estimable
    one_seq = eval_stats.row_components(m[:, :1])
    assert (one_seq.seed, one_seq.residual) == pytest.approx((3.0, 0.0)) and np.isnan(one_seq.sequence)


def test_paired_test_is_the_studentized_bootstrap_interval():
    a, b = _seed_offsets_only()
    level = verdicts.family_level(FAMILY)
    t = eval_stats.paired_test(a, b, level, n=4000, seed=0)
    # the difference is constant within each seed (4 or 6): only a's two seeds vary. After spreading them by
    # sqrt(2) around their mean, the bootstrap mean of 2 draws has variance 2 / 2 = 1: SE ~ 1
    assert t.diff.estimate == pytest.approx(5.0) and t.se == pytest.approx(1.0, rel=0.05) and t.df == pytest.approx(1.0)
    q = stats.t.ppf((1 + level) / 2, 1)
    assert (t.diff.low, t.diff.high) == pytest.approx((5 - q * t.se, 5 + q * t.se))
    assert t.half_width == pytest.approx(q * t.se) and t.p == pytest.approx(2 * stats.t.sf(5 / t.se, 1))
    # the same data decide differently alone (95%) and in the family of eight (99.375%): here 5 +- 12.7 vs +- 102
    assert eval_stats.paired_test(a + 10, b, 0.95).diff.low > 0 and eval_stats.paired_test(a + 10, b, level).diff.low < 0
    # identical rows: a zero-width interval at the difference; a row's percentile CI of constant seeds too
    z = eval_stats.paired_test(np.full((2, 5), 60.0), np.full((2, 5), 55.0), level)
    assert (z.diff.estimate, z.diff.low, z.diff.high, z.se) == (5.0, 5.0, 5.0, 0.0)
    ci = eval_stats.seed_sequence_ci([[10.0] * 6, [20.0] * 6], n=500)
    assert ci.estimate == 15.0 and 10.0 - 1e-9 <= ci.low < 15.0 < ci.high <= 20.0 + 1e-9 and ci.n == 6


def _rows(rng, effect, seeds=3, sequences=36, seed_sd=6.0, residual_sd=10.0, interaction_sd=3.0):
    """Two rows on the same sequences: shared difficulty (sd 15), each training seed its own offset, a
    per-cell residual, and a per-sequence interaction; `effect` is the true difference."""
    difficulty = rng.normal(50, 15, sequences)
    inter = rng.normal(0, interaction_sd, sequences)
    row = lambda shift, g: (difficulty + shift + g + rng.normal(0, seed_sd, (seeds, 1))
                            + rng.normal(0, residual_sd, (seeds, sequences)))
    return row(effect, inter / 2), row(0.0, -inter / 2)


def test_every_sequence_improves_holds_where_the_rows_own_cis_overlap():
    rng = np.random.default_rng(0)
    base = rng.uniform(40, 80, size=8)  # per-sequence difficulty, shared by both rows
    better = np.stack([base + 10 + rng.normal(0, 0.5, 8) for _ in range(3)])
    worse = np.stack([base + rng.normal(0, 0.5, 8) for _ in range(3)])
    assert (better.mean(0) > worse.mean(0)).all()  # every sequence improves ...
    v = verdicts.judge(CLAIM, better, worse, family=FAMILY)
    assert v.better.low < v.worse.high  # ... yet the rows' own CIs overlap (the old rule said inconclusive)
    assert v.verdict == verdicts.HOLDS and 9 < v.diff.estimate < 11 and v.diff.low > 0
    assert v.test.level == verdicts.family_level(FAMILY) and v.seeds == (3, 3) and v.sequences == 8


def test_a_reversed_effect_does_not_hold():
    rng = np.random.default_rng(1)
    a, b = _rows(rng, 15.0, seed_sd=1.0)
    v = verdicts.judge(CLAIM, b, a, family=FAMILY)  # the claim says b beats a; a is 15 points better
    assert v.verdict == verdicts.FAILS and v.diff.high < 0 and "reverse" in v.reason
    assert verdicts.judge(CLAIM, a, b, family=FAMILY).verdict == verdicts.HOLDS


def test_no_effect_is_inconclusive_at_the_family_rate():
    """200 families of eight claims without any effect, with the seed-to-seed spread the demo shows: the
    share of families with any "holds" or "does not hold" stays at the 5% family level (plus three
    binomial standard errors). The percentile CI at the same level is far above it here (three seeds'
    spread is badly estimated): the check is sensitive to what the studentized interval corrects."""
    rng = np.random.default_rng(2)
    level, draws = verdicts.family_level(FAMILY), 200
    ours = percentile = 0
    for i in range(draws):
        wrong = naive = 0
        for j in range(FAMILY):
            a, b = _rows(rng, 0.0)
            wrong += verdicts.decide(eval_stats.paired_test(a, b, level, n=500, seed=i * FAMILY + j).diff)[0] != verdicts.INCONCLUSIVE
            lo, hi = np.quantile(eval_stats.paired_boot(a, b, n=500, seed=j), [(1 - level) / 2, (1 + level) / 2])
            naive += lo > 0 or hi < 0
        ours, percentile = ours + (wrong > 0), percentile + (naive > 0)
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)
    assert ours / draws <= bound, (ours, draws)
    assert percentile / draws > 2 * bound, (percentile, draws)


def test_judge_needs_several_seeds_and_sequences_and_aligns_frames():
    import pandas as pd

    one = verdicts.judge(CLAIM, np.full((1, 8), 70.0), np.full((1, 8), 50.0), family=FAMILY)
    assert one.verdict == verdicts.INCONCLUSIVE and "1 seed" in one.reason
    few = verdicts.judge(CLAIM, np.full((3, 3), 70.0), np.full((3, 3), 50.0), family=FAMILY)
    assert few.verdict == verdicts.INCONCLUSIVE and "3 sequences" in few.reason
    rng = np.random.default_rng(3)
    a, b = _rows(rng, 20.0, sequences=6, seed_sd=0.5, residual_sd=1.0, interaction_sd=0.5)
    cols = list("abcdef")
    fa, fb = pd.DataFrame(a, columns=cols), pd.DataFrame(b, columns=cols)
    shuffled = verdicts.judge(CLAIM, fa, fb[cols[::-1]], family=FAMILY)  # columns are matched by name
    assert shuffled.diff == verdicts.judge(CLAIM, a, b, family=FAMILY).diff
    with pytest.raises(ValueError, match="different sequences"):
        verdicts.judge(CLAIM, fa, fb.rename(columns={"a": "z"}), family=FAMILY)
    a, b = _rows(rng, 0.2, sequences=12, seed_sd=0.05, residual_sd=0.2, interaction_sd=0.1)
    assert verdicts.judge(SIMILAR, a, b, family=FAMILY).verdict == verdicts.HOLDS  # 0.2 apart, surely within 1
    assert verdicts.judge(SIMILAR, a + 3, b, family=FAMILY).verdict == verdicts.FAILS


def test_the_benchmarks_bootstrap_is_the_verdicts_one_with_one_seed():
    """bench/ and `dmtrack score` compare trackers with bootstrap_ci / paired_difference_ci: the one-seed
    case of the report's seed-and-sequence bootstrap, drawing the same sequences for the same seed."""
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    one, row = eval_stats.bootstrap_ci(x, n=300, seed=4), eval_stats.seed_sequence_ci(x[None, :], n=300, seed=4)
    assert one.n == row.n == 5 and one.estimate == pytest.approx(6.2)  # (1 + 2 + 4 + 8 + 16) / 5
    assert np.allclose(one, row, rtol=0, atol=1e-12)
    y = x - np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    paired = eval_stats.paired_difference_ci(x, y, n=300, seed=4)
    assert paired.estimate == pytest.approx(0.6) and 0 <= paired.low <= paired.high <= 1  # each draw: a mean of 0s and 1s
    assert np.allclose(paired, eval_stats.paired_ci(x, y, n=300, seed=4), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="level must be in"):
        eval_stats.bootstrap_ci(x, level=1.0)
