"""Every rule of the two protocols (docs/protocol.md), each on a tiny sequence whose
IoUs and centre errors are computed by hand in the comments.

Conventions used in the comments: gt boxes are 10 x 10, centre c = x + (w - 1) / 2, so two
10 x 10 boxes shifted by dx have IoU = (10 - dx) * 10 / (200 - (10 - dx) * 10) and e = dx.
A success curve is counted over the 21 thresholds k/20 (IoU > t, strict); AUC is its mean.
"""
import math

import numpy as np
import pytest

from dmtrack.data.sequence import Sequence
from dmtrack.eval import (METRICS, NORM_PRECISION_THRESHOLDS, PRECISION_THRESHOLDS, REPORTED, SUCCESS_THRESHOLDS, InvalidResults,
                          bootstrap_ci, frame_errors, paired_difference_ci, score_sequences)

G = [10, 10, 10, 10]  # the gt box most tests use: centre (14.5, 14.5)


def seq(name, gt, visible=None, tag="otb"):
    gt = np.asarray(gt, dtype=float)
    vis = None if visible is None else np.asarray(visible, dtype=bool)
    return Sequence(name, [f"{i:08d}.jpg" for i in range(1, len(gt) + 1)], gt, "a red ball", tag, visible=vis)


def overall(preds, seqs, **kw):
    return score_sequences(preds, seqs, **kw).overall()


def approx(d, **expected):
    for k, v in expected.items():
        assert d[k] == pytest.approx(v, abs=1e-9), k


def test_thresholds():
    assert len(SUCCESS_THRESHOLDS) == 21 and SUCCESS_THRESHOLDS[10] == 0.5 and SUCCESS_THRESHOLDS[-1] == 1.0
    assert len(PRECISION_THRESHOLDS) == 51 and PRECISION_THRESHOLDS[20] == 20
    assert len(NORM_PRECISION_THRESHOLDS) == 51 and NORM_PRECISION_THRESHOLDS[20] == 0.2


# --- 6.1 common definitions ---------------------------------------------------------------

# frame 1: pred (0,0,5,5) is overwritten with the gt          -> IoU 1,   e 0,  ne 0
# frame 2: (15,10,10,10): overlap 5x10=50, union 150          -> IoU 1/3, e 5,  ne 0.5
# frame 3: (10,10,10,20): overlap 100, union 200              -> IoU 0.5 exactly, centre (14.5,19.5): e 5, ne 0.5
# frame 4: (40,10,10,10): no overlap                          -> IoU 0,   e 30, ne 3
# success counts: t=0 and t=0.05..0.30 (7 thresholds): 3 frames; t=0.35..0.45 (3): 2;
# t=0.5: 1 (0.5 is not > 0.5); t=0.55..0.95 (9): 1; t=1: 0  -> 7*3 + 3*2 + 1 + 9 = 37
COMMON_PRED = [[0, 0, 5, 5], [15, 10, 10, 10], [10, 10, 10, 20], [40, 10, 10, 10]]


@pytest.mark.parametrize("protocol", ["pytracking", "official"])
def test_common_definitions(protocol):
    s = seq("a", [G] * 4)
    iou, e, ne, _ = frame_errors(COMMON_PRED, s.boxes, protocol=protocol)
    np.testing.assert_allclose(iou, [1, 1 / 3, 0.5, 0])
    np.testing.assert_allclose(e, [0, 5, 5, 30])
    np.testing.assert_allclose(ne, [0, 0.5, 0.5, 3])
    r = overall({"a": COMMON_PRED}, [s], protocol=protocol)
    approx(r, auc=100 * 37 / 84, op50=25, op75=25, precision=75, norm_precision=25)


def test_frame_one_is_overwritten_with_gt_and_counted():
    # a prediction that is wrong only on frame 1 scores perfectly: frame 1 = gt, counted in N
    s = seq("a", [G] * 2)
    r = overall({"a": [[100, 100, 1, 1], G]}, [s])
    approx(r, auc=100 * 20 / 21, precision=100, norm_precision=100, op75=100)


def test_precision_thresholds_are_inclusive():
    # frame 2: shift (12, 16) -> e = 20 exactly (hit at 20 px), ne = hypot(1.2, 1.6) = 2 (miss)
    # frame 3: shift (2, 0)   -> e = 2, ne = 2/10 = 0.2 exactly (hit at 0.2)
    s = seq("a", [G] * 3)
    pred = [G, [22, 26, 10, 10], [12, 10, 10, 10]]
    _, e, ne, _ = frame_errors(pred, s.boxes)
    np.testing.assert_allclose(e, [0, 20, 2])
    approx(overall({"a": pred}, [s]), precision=100, norm_precision=100 * 2 / 3)


@pytest.mark.parametrize("protocol", ["pytracking", "official"])
def test_normalised_error_divides_each_centre_before_subtracting(protocol):
    # gt (11, 10, 30, 30), pred 6 px to the right: x centres 25.5 and 31.5, e = 6 px exactly.
    # Subtract-then-divide gives 6 / 30, exactly the double 0.2 (a hit at 0.2); the toolkits
    # divide each centre first, 31.5 / 30 - 25.5 / 30, which rounds a few ulps above 0.2: a miss.
    gt, pred = [11, 10, 30, 30], [17, 10, 30, 30]
    c_gt, c_pred = np.float64(11 + 29 / 2), np.float64(17 + 29 / 2)
    subtract_first, divide_first = (c_pred - c_gt) / 30, c_pred / 30 - c_gt / 30
    assert subtract_first == NORM_PRECISION_THRESHOLDS[20] == 0.2 and divide_first > 0.2  # the boundary
    iou, e, ne, _ = frame_errors([gt, pred], [gt, gt], protocol=protocol)
    np.testing.assert_array_equal(e, [0, 6])
    np.testing.assert_array_equal(ne, [0, divide_first])
    approx(overall({"a": [gt, pred]}, [seq("a", [gt, gt])], protocol=protocol), precision=100, norm_precision=50)


def test_average_over_sequences_not_pooled():
    # A: 2 frames, frame 2 far away (e = 30) -> P 50 %; B: 4 frames all exact -> P 100 %.
    # Mean over sequences 75 %; pooling frames would give 5/6.
    a, b = seq("A", [G] * 2), seq("B", [G] * 4)
    r = overall({"A": [G, [40, 10, 10, 10]], "B": [G] * 4}, [a, b])
    approx(r, precision=75, auc=(100 * 20 / 42 + 100 * 20 / 21) / 2)


def test_per_sequence_and_curves():
    s1, s2 = seq("x", [G] * 4), seq("y", [G] * 2)
    sc = score_sequences({"x": COMMON_PRED, "y": [G, G]}, [s1, s2])
    per = sc.per_sequence()
    assert per.loc["x", "auc"] == pytest.approx(100 * 37 / 84)
    assert per.loc["y", "auc"] == pytest.approx(100 * 20 / 21)
    c = sc.mean_curves()
    assert c["success"].shape == (21,) and c["precision"].shape == (51,) and c["norm_precision"].shape == (51,)
    # success at t=0.5: x 1/4, y 1 -> mean 62.5 %; precision at 5 px: x 3/4, y 1 -> 87.5 %
    assert c["success"][10] == pytest.approx(62.5) and c["precision"][5] == pytest.approx(87.5)
    # precision at 4 px: x only frame 1 (1/4), y 1 -> 62.5 %
    assert c["precision"][4] == pytest.approx(62.5)
    j = sc.to_json()
    assert set(j["overall"]) == {"auc", "precision", "norm_precision", "op50", "op75"}
    # one METRICS, in the order of the score columns; the report's three are its first three
    assert tuple(per.columns) == METRICS == ("auc", "precision", "norm_precision", "op50", "op75")
    assert REPORTED == ("auc", "precision", "norm_precision")
    assert j["per_sequence"]["y"]["precision"] == pytest.approx(100)


# --- 6.3 pytracking: prediction repairs ----------------------------------------------------

@pytest.mark.parametrize("bad", [[np.nan, 10, 10, 10], [10, 10, -1, 10], [10, 10, 10, -0.5]])
def test_pytracking_refuses_nan_and_negative_size(bad):
    s = seq("a", [G] * 3)
    with pytest.raises(InvalidResults, match="frame 2"):
        frame_errors([G, bad, G], s.boxes, protocol="pytracking")


def test_pytracking_zero_size_takes_previous_box():
    # frame 3 (w=0) -> frame 2's box (15,10,10,10); frame 4 (h=0) -> the repaired frame 3, i.e. the same box
    # IoUs 1, 1/3, 1/3, 1/3: counts 4 for t=0..0.30 (7 thresholds), 1 for t=0.35..0.95 (13), 0 at t=1 -> 41
    s = seq("a", [G] * 4)
    pred = [G, [15, 10, 10, 10], [50, 50, 0, 10], [50, 50, 10, 0]]
    iou, e, _, _ = frame_errors(pred, s.boxes, protocol="pytracking")
    np.testing.assert_allclose(iou, [1, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(e, [0, 5, 5, 5])
    approx(overall({"a": pred}, [s]), auc=100 * 41 / 84, precision=100, op50=25)


@pytest.mark.parametrize("protocol", ["pytracking", "official"])
def test_longer_results_are_truncated(protocol):
    s = seq("a", [G] * 4)
    pred = COMMON_PRED + [[0, 0, 1, 1], [5, 5, 0, 5]]  # the two extra rows are never scored
    approx(overall({"a": pred}, [s], protocol=protocol), auc=100 * 37 / 84, precision=75)


def test_pytracking_short_results_depend_on_tag():
    # tag 'lasot' refuses; any other tag pads zero boxes: (0,0,0,0) vs (10,10,10,10) -> IoU 0,
    # centre (-0.5,-0.5) vs (14.5,14.5): e = 15*sqrt(2) = 21.2 > 20, ne = 2.12 -> misses
    gt = [G] * 4
    with pytest.raises(InvalidResults, match="lasot"):
        frame_errors([G, G], gt, protocol="pytracking", dataset="lasot")
    iou, e, ne, _ = frame_errors([G, G], gt, protocol="pytracking", dataset="lasot_extension_subset")
    np.testing.assert_allclose(iou, [1, 1, 0, 0])
    np.testing.assert_allclose(e[2:], [15 * math.sqrt(2)] * 2)
    r = overall({"a": [G, G]}, [seq("a", gt, tag="lasot_extension_subset")])
    approx(r, auc=100 * 40 / 84, precision=50, norm_precision=50)


# --- 6.3 pytracking: validity, visibility and the dataset tag ---------------------------------

# gt: f1 (10,10,10,10); f2 (0,10,10,10) touches the border (x = 0); f3 (10,10,0,0) no box; f4 (10,10,10,10)
# pred: f2 (5,10,10,10): overlap 5x10 -> IoU 1/3, e 5, ne 0.5; f4 (30,10,10,10): IoU 0, e 20, ne 2
BORDER_GT = [G, [0, 10, 10, 10], [10, 10, 0, 0], G]
BORDER_PRED = [G, [5, 10, 10, 10], [10, 10, 10, 10], [30, 10, 10, 10]]


def test_pytracking_valid_rule_wh():
    # 'wh' (OSTrack/MMTrack/JointNLT/UVLTrack): only f3 is invalid -> IoU -1 (miss), e inf (miss), ne -1 (HIT)
    iou, e, ne, valid = frame_errors(BORDER_PRED, BORDER_GT, protocol="pytracking", valid_rule="wh")
    np.testing.assert_array_equal(valid, [True, True, False, True])
    np.testing.assert_allclose(iou, [1, 1 / 3, -1, 0])
    np.testing.assert_array_equal(e, [0, 5, np.inf, 20])
    np.testing.assert_allclose(ne, [0, 0.5, -1, 2])
    # success: t=0..0.30 -> 2 frames (7 thresholds), t=0.35..0.95 -> 1 (13) -> 27
    r = overall({"b": BORDER_PRED}, [seq("b", BORDER_GT, tag="tnl2k")], protocol="pytracking")
    approx(r, auc=100 * 27 / 84, precision=75, norm_precision=50, op50=25)


def test_pytracking_valid_rule_all4():
    # 'all4' (pytracking >= 2022-08): f2 (x = 0) is invalid too -> IoU [1,-1,-1,0], e [0,inf,inf,20], ne [0,-1,-1,2]
    # success: 1 frame for t=0..0.95 -> 20/84; P: 0 and 20 -> 2/4; Pnorm: 0,-1,-1 -> 3/4
    r = overall({"b": BORDER_PRED}, [seq("b", BORDER_GT, tag="tnl2k")], protocol="pytracking", valid_rule="all4")
    approx(r, auc=100 * 20 / 84, precision=50, norm_precision=75)


# gt all (10,10,10,10), visible [1,1,0,1]; pred exact on f1-f3 (also on the invisible f3), f4 (40,10,..): IoU 0, e 30
VIS = [True, True, False, True]
VIS_PRED = [G, G, G, [40, 10, 10, 10]]


def test_pytracking_invisible_frames_and_tag_dependence():
    # not visible -> invalid: IoU -1 (miss), e inf (miss), ne -1 (HIT) for every tag except exactly 'lasot'
    iou, e, ne, _ = frame_errors(VIS_PRED, [G] * 4, VIS, protocol="pytracking", dataset="lasot_extension_subset")
    np.testing.assert_allclose(iou, [1, 1, -1, 0])
    np.testing.assert_array_equal(ne, [0, 0, -1, 3])
    ext = overall({"v": VIS_PRED}, [seq("v", [G] * 4, VIS, tag="lasot_extension_subset")])
    approx(ext, auc=100 * 40 / 84, precision=50, norm_precision=75)
    # tag 'lasot': invisible frames get e = ne = inf -> norm precision 2/4; AUC and P unchanged
    _, e, ne, _ = frame_errors(VIS_PRED, [G] * 4, VIS, protocol="pytracking", dataset="lasot")
    assert ne[2] == np.inf and e[2] == np.inf
    las = overall({"v": VIS_PRED}, [seq("v", [G] * 4, VIS, tag="lasot")])
    approx(las, auc=100 * 40 / 84, precision=50, norm_precision=50)
    # the same data with the tag overridden (what --dataset-tag does): MMTrack's 'lasot_lang' behaves like LaSOT_ext
    mm = overall({"v": VIS_PRED}, [seq("v", [G] * 4, VIS, tag="lasot")], dataset_tag="lasot_lang")
    approx(mm, norm_precision=75)


def test_pytracking_exclude_invalid_frames_option():
    # N_s = 3 valid frames: success 2 frames at 20 thresholds -> 40/63; P 2/3; Pnorm (0, 0, -1) -> 3/3
    r = overall({"v": VIS_PRED}, [seq("v", [G] * 4, VIS, tag="lasot_extension_subset")], exclude_invalid_frames=True)
    approx(r, auc=100 * 40 / 63, precision=100 * 2 / 3, norm_precision=100)


def test_pytracking_refuses_nan_gt():
    with pytest.raises(ValueError, match="NaN in the ground truth"):
        frame_errors([G, G], [G, [np.nan] * 4], protocol="pytracking")


# --- 6.2 official MATLAB toolkits --------------------------------------------------------------

def test_official_repairs_nan_and_nonpositive_size_with_previous_box():
    # f3 NaN -> f2 (15,10,10,10); f4 w=-5 -> repaired f3 = the same box: IoUs 1, 1/3, 1/3, 1/3 -> 41/84
    pred = [G, [15, 10, 10, 10], [np.nan] * 4, [20, 10, -5, 10]]
    iou, e, _, _ = frame_errors(pred, [G] * 4, protocol="official")
    np.testing.assert_allclose(iou, [1, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(e, [0, 5, 5, 5])
    approx(overall({"a": pred}, [seq("a", [G] * 4)], protocol="official"), auc=100 * 41 / 84, precision=100)
    with pytest.raises(InvalidResults):  # the same file is refused by pytracking
        frame_errors(pred, [G] * 4, protocol="pytracking")


def test_official_short_results_are_an_error_for_every_tag():
    with pytest.raises(InvalidResults, match="short"):
        frame_errors([G, G], [G] * 4, protocol="official", dataset="tnl2k")


def test_official_invalid_gt_is_a_precision_hit():
    # all4 rule: f2 (x = 0) and f3 (no box) invalid -> IoU -1 (miss) but e = ne = -1 (HITS)
    # IoU [1,-1,-1,0] -> 20/84; P: e [0,-1,-1,20] all <= 20 -> 100 %; Pnorm: ne [0,-1,-1,2] -> 75 %
    iou, e, ne, _ = frame_errors(BORDER_PRED, BORDER_GT, protocol="official")
    np.testing.assert_allclose(iou, [1, -1, -1, 0])
    np.testing.assert_allclose(e, [0, -1, -1, 20])
    r = overall({"b": BORDER_PRED}, [seq("b", BORDER_GT, tag="otb")], protocol="official")
    approx(r, auc=100 * 20 / 84, precision=100, norm_precision=75)
    # the python TNL2K toolkit's w,h > 0 variant: f2 is scored (IoU 1/3, e 5, ne 0.5) -> 27/84, P 100, Pnorm 2/4
    r = overall({"b": BORDER_PRED}, [seq("b", BORDER_GT, tag="otb")], protocol="official", valid_rule="wh")
    approx(r, auc=100 * 27 / 84, precision=100, norm_precision=50)


def test_official_tnl2k_absent_iff_the_gt_row_is_all_zero():
    # TNL2K without visibility flags: the toolkit's absent files flag exactly the 0,0,0,0 rows. A row with
    # w > 0 and h = 0 (12 rows of the test set) is present but invalid: a miss for success, a HIT for both
    # precisions. f2 x = 0 invalid (all4), f3 [10,10,0,0] invalid, f4 [0,0,0,0] absent, f5 20 px off.
    # e [0, -1, -1, inf, 20] -> P 4/5; ne [0, -1, -1, inf, 2] -> Pnorm 3/5; IoU [1, -1, -1, -1, 0] -> AUC 20/105
    gt = [G, [0, 10, 10, 10], [10, 10, 0, 0], [0, 0, 0, 0], G]
    pred = [G, [5, 10, 10, 10], G, G, [30, 10, 10, 10]]
    iou, e, ne, _ = frame_errors(pred, gt, protocol="official", dataset="tnl2k")
    np.testing.assert_allclose(iou, [1, -1, -1, -1, 0])
    np.testing.assert_array_equal(e, [0, -1, -1, np.inf, 20])
    np.testing.assert_array_equal(ne, [0, -1, -1, np.inf, 2])
    r = overall({"b": pred}, [seq("b", gt, tag="tnl2k")], protocol="official")
    approx(r, auc=100 * 20 / 105, precision=80, norm_precision=60)


def test_official_absent_frames_are_misses_with_full_length():
    # f3 absent: deleted from the numerator, N stays 4 -> a miss for all metrics although the box is exact
    # IoU [1,1,-,0] -> 40/84; P (0, 0, -, 30) -> 2/4; Pnorm -> 2/4
    iou, e, ne, _ = frame_errors(VIS_PRED, [G] * 4, VIS, protocol="official")
    assert iou[2] == -1 and e[2] == np.inf and ne[2] == np.inf
    r = overall({"v": VIS_PRED}, [seq("v", [G] * 4, VIS, tag="lasot")], protocol="official")
    approx(r, auc=100 * 40 / 84, precision=50, norm_precision=50)


def test_official_nan_gt_frame_is_invalid_not_repaired():
    # MATLAB keeps a bad prediction where the gt row is NaN and marks the frame invalid (any value <= 0 / NaN)
    iou, e, ne, _ = frame_errors([G, G, [np.nan] * 4], [G, [np.nan] * 4, G], protocol="official")
    assert iou[1] == -1 and e[1] == -1 and ne[1] == -1
    assert iou[2] == 1 and e[2] == 0  # f3 NaN -> previous row (f2's exact box)


def test_official_averages_only_sequences_with_nonzero_curves():
    # P: 4 exact frames -> AUC 20/21, P 100, Pnorm 100
    # Z: frame 1 absent, others far away (100,100): every curve is zero
    # S: frame 1 absent, others (25,10,10,10): IoU 0 (edges touch), e 15 (P hit), ne 1.5 (miss):
    #    success and norm-precision curves zero, precision curve 3/4 from 15 px on
    perfect, far, touch = [G] * 4, [[100, 100, 10, 10]] * 4, [[25, 10, 10, 10]] * 4
    absent1 = [False, True, True, True]
    seqs = [seq("P", [G] * 4, tag="lasot"), seq("Z", [G] * 4, absent1, tag="lasot"), seq("S", [G] * 4, absent1, tag="lasot")]
    preds = {"P": perfect, "Z": far, "S": touch}
    off = score_sequences(preds, seqs, protocol="official")
    # each curve type drops its own all-zero sequences: AUC over P only, P over P and S, Pnorm over P only
    approx(off.overall(), auc=100 * 20 / 21, precision=(100 + 75) / 2, norm_precision=100, op50=100)
    assert off.per_sequence().loc["Z", "auc"] == 0  # per-sequence values are not filtered
    assert score_sequences({"Z": far}, seqs[1:2], protocol="official").overall()["auc"] == 0  # nothing left: 0
    # pytracking averages over all three (tag 'lasot': the absent frame 1 is a miss everywhere)
    pt = score_sequences(preds, seqs, protocol="pytracking").overall()
    approx(pt, auc=100 * 20 / 21 / 3, precision=(100 + 0 + 75) / 3, norm_precision=100 / 3)


def test_same_data_two_protocols_and_header():
    sq = seq("v", [G] * 4, VIS, tag="lasot_extension_subset")
    pt = score_sequences({"v": VIS_PRED}, [sq], protocol="pytracking", benchmark="toy")
    off = score_sequences({"v": VIS_PRED}, [sq], protocol="official", benchmark="toy")
    assert pt.overall()["norm_precision"] == pytest.approx(75) and off.overall()["norm_precision"] == pytest.approx(50)
    assert "protocol=pytracking" in pt.table() and "valid_rule=wh" in pt.table() and "'lasot_extension_subset'" in pt.table()
    assert "protocol=official" in off.table() and "valid_rule=all4" in off.table()


def test_bad_arguments():
    with pytest.raises(ValueError, match="protocol"):
        frame_errors([G], [G], protocol="got10k")
    with pytest.raises(ValueError, match="valid_rule"):
        frame_errors([G], [G], valid_rule="xy")
    with pytest.raises(ValueError, match="visibility"):
        frame_errors([G, G], [G, G], [True])


# --- bootstrap statistics --------------------------------------------------------------------

def test_bootstrap_ci_properties():
    assert tuple(bootstrap_ci([0.4] * 10)) == pytest.approx((0.4, 0.4, 0.4, 10))
    # two values 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5 % and 97.5 % quantiles are 0 and 1
    ci = bootstrap_ci([0.0, 1.0], n=1000, seed=1)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, 400)
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3)
    assert a == b and a.low < a.estimate < a.high
    # width ~ 2 * 1.96 * 10 / sqrt(n): 400 sequences -> ~1.96, 25 sequences -> ~7.8
    assert 1.6 < a.high - a.low < 2.4
    small = bootstrap_ci(x[:25], seed=3)
    assert 2.5 * (a.high - a.low) < small.high - small.low
    # coverage: the 95 % interval holds the true mean in about 95 % of repeated experiments
    hits = sum(c.low <= 50 <= c.high for c in (bootstrap_ci(rng.normal(50, 10, 30), n=500, seed=i) for i in range(200)))
    assert 0.88 * 200 <= hits <= 0.99 * 200
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, np.nan])


def test_paired_difference_ci():
    import pandas as pd

    rng = np.random.default_rng(0)
    a = rng.uniform(10, 90, 50)  # sequences differ a lot in difficulty ...
    ci = paired_difference_ci(a, a - 2.0)  # ... but B is always exactly 2 points below A
    assert tuple(ci)[:3] == pytest.approx((2.0, 2.0, 2.0))
    assert bootstrap_ci(a).high - bootstrap_ci(a).low > 10  # the unpaired interval is wide
    # pandas Series are aligned by sequence name before pairing
    names = [f"s{i}" for i in range(50)]
    sa, sb = pd.Series(a, index=names), pd.Series(a - 2.0, index=names).iloc[::-1]
    assert paired_difference_ci(sa, sb).estimate == pytest.approx(2.0)
    assert paired_difference_ci(list(a), list(a - 2.0)).estimate == pytest.approx(2.0)  # plain lists pair in order
    noisy = paired_difference_ci(a, a + rng.normal(0, 1, 50))
    assert noisy.low < 0 < noisy.high  # no real difference -> the interval holds 0
    with pytest.raises(ValueError, match="sequences"):
        paired_difference_ci(a, a[:-1])


def test_centre_convention_and_merge_runs():
    from dmtrack.boxes import center_xywh
    from dmtrack.eval import merge_runs

    np.testing.assert_array_equal(center_xywh(np.array([10.0, 20.0, 10.0, 5.0])), [14.5, 22.0])  # x + (w - 1) / 2
    # pytracking merge_results: per-sequence curves averaged over runs, then over sequences.
    # run 1 on "a" = COMMON_PRED (AUC 37/84, P 3/4); run 2 on "a" exact (AUC 20/21, P 1); "b" exact in both runs
    a, b = seq("a", [G] * 4), seq("b", [G] * 2)
    r1 = score_sequences({"a": COMMON_PRED, "b": [G, G]}, [a, b], benchmark="toy")
    r2 = score_sequences({"b": [G, G], "a": [G] * 4}, [b, a], benchmark="toy")  # other order: aligned by name
    m = merge_runs([r1, r2])
    assert m.runs == 2 and m.names == ["a", "b"] and "runs=2 (merged)" in m.header()
    auc_a = (100 * 37 / 84 + 100 * 20 / 21) / 2
    approx(m.overall(), auc=(auc_a + 100 * 20 / 21) / 2, precision=(87.5 + 100) / 2)
    assert m.per_sequence().loc["a", "precision"] == pytest.approx(87.5)
    assert m.to_json()["runs"] == 2
    with pytest.raises(ValueError, match="different sequences"):
        merge_runs([r1, score_sequences({"a": COMMON_PRED}, [a])])
    with pytest.raises(ValueError, match="different protocols"):
        merge_runs([r1, score_sequences({"a": COMMON_PRED, "b": [G, G]}, [a, b], protocol="official")])


def test_header_calls_synthetic_suites_stand_ins():
    s = seq("a", [G] * 2)
    assert "synthetic stand-in" in score_sequences({"a": [G, G]}, [s], benchmark="synthetic_tnl2k").header()
    assert "stand-in" not in score_sequences({"a": [G, G]}, [s], benchmark="tnl2k").header()


def test_official_wh_rule_nan_gt_coordinate_is_invalid():
    # official + 'wh' (python TNL2K toolkit rule): a gt row (nan, 10, 10, 10) has w, h > 0 but is no box;
    # it must be invalid (IoU -1, e = ne = -1), never a NaN IoU that sorts as a success hit
    iou, e, ne, valid = frame_errors([G, G], [G, [np.nan, 10, 10, 10]], protocol="official", valid_rule="wh")
    np.testing.assert_array_equal(valid, [True, False])
    np.testing.assert_array_equal(iou, [1, -1])
    r = overall({"a": [G, G]}, [seq("a", [G, [np.nan, 10, 10, 10]])], protocol="official", valid_rule="wh")
    approx(r, auc=100 * 20 / 42, precision=100, norm_precision=100)
