"""The report's facts and logic: the paper's numbers, tables from scored runs (the verdict rule itself:
test_verdicts.py), the pipeline's keys, skip-if-done, failure naming, the HTML rendering (fast: tiny notebooks)."""
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dmtrack import paper
from dmtrack.chain import pipeline
from dmtrack.chain.graph import DependenciesNotDone, Step, StepFailed, run_chain, run_one, step_key
from dmtrack.config import VARIANTS
from dmtrack.eval import stats
from dmtrack.report import claims, header, results, sweeps, tables, verdicts

REPO = Path(__file__).resolve().parents[1]


# --- the paper's facts -------------------------------------------------------------------------------
def test_table2_rows_cover_the_six_variants_and_nine_evaluations():
    assert [r.no for r in paper.TABLE2] == list(range(1, 10))
    assert {r.variant for r in paper.TABLE2} == set(VARIANTS)
    assert len({(r.variant, r.k) for r in paper.TABLE2}) == 9
    assert paper.table2_row(9).scores == paper.Scores(70.5, 92.6, 86.0)  # the best row
    best = max(paper.TABLE2, key=lambda r: r.scores.auc)
    assert best.no == 9 and best.variant == "full" and best.k == 5


def test_stated_differences_are_what_the_rows_give():
    consistent = [c for c in paper.CLAIMS if c.stated is not None and c.key != "language"]
    assert len(consistent) == 6
    for c in consistent:
        assert paper.claim_rows_match(c), c.key
        # the stated difference identifies exactly this pair of rows among all 72 ordered pairs
        assert paper.rows_matching(c.stated) == [(c.better, c.worse)], c.key
    # hand-computed examples: row 8 - row 1 and row 9 - row 2
    assert paper.CLAIMS[0].row_difference() == (2.1, 2.9, 2.0)
    assert next(c for c in paper.CLAIMS if c.key == "mask_driven").row_difference() == (3.6, 4.2, 3.5)


def test_the_language_claim_matches_no_pair_of_rows():
    lang = next(c for c in paper.CLAIMS if c.key == "language")
    assert lang.stated == (1.6, 1.1, 1.0)
    assert paper.rows_matching(lang.stated) == []
    assert not paper.claim_rows_match(lang)
    assert lang.row_difference() == (1.8, 2.8, 2.5)  # 70.5-68.7, 92.6-89.8, 86.0-83.5
    assert "match no pair" in lang.note


def test_gt_ce_similarity_and_table1_vs_table2_discrepancy():
    sim = next(c for c in paper.CLAIMS if c.key == "gt_ce_k1")
    assert sim.kind == "similar" and sim.row_difference() == (0.2, 0.8, 0.5)
    t1, r8 = paper.TABLE1_DMTRACK["otb_lang"], paper.table2_row(8).scores
    assert (t1.auc, t1.precision) == (68.5, 89.7) and (r8.auc, r8.precision) == (69.3, 90.9)
    assert any("68.5" in d and "69.3" in d for d in paper.DISCREPANCIES)


def test_published_numbers_are_cited_and_in_range():
    assert set(paper.TABLE1_DMTRACK) == set(paper.BENCHMARKS)
    for p in paper.PUBLISHED:
        assert p.source and all(k in paper.SOURCES for k in p.source.split("+"))
        assert set(p.scores) <= set(paper.BENCHMARKS)
        for s in p.scores.values():
            for m in paper.METRICS:
                v = s.get(m)
                assert v is None or 30 < v < 100
    mm = next(p for p in paper.PUBLISHED if p.tracker == "MMTrack")
    assert mm.scores["tnl2k"] == paper.Scores(58.6, 59.4, 75.2)


# --- tables from scored runs -----------------------------------------------------------------------
def _write_run(root, bench, tracker, param, variant, k, seed, per_seq: dict, spread: dict | None = None, **meta):
    folder = root / bench / tracker / param
    folder.mkdir(parents=True)
    (folder / "evaluate.json").write_text(json.dumps(dict(benchmark=bench, variant=variant, samples=k, seed=seed, **meta)))
    for name, values in (spread or {}).items():  # per-frame sample spread, as the runner writes it
        (folder / "spread").mkdir(exist_ok=True)
        (folder / "spread" / f"{name}.csv").write_text("".join(f"{v:.6f}\n" for v in values))
    for protocol in ("pytracking", "official"):
        overall = {m: float(np.mean([v[m] for v in per_seq.values()])) for m in ("auc", "precision", "norm_precision", "op50", "op75")}
        (folder / f"scores_{protocol}.json").write_text(json.dumps(dict(
            protocol=protocol, n_sequences=len(per_seq), overall=overall, per_sequence=per_seq)))
    for name in per_seq:  # 3 frames: init + 2 tracked frames at 0.05 s -> 20 fps
        (folder / f"{name}_time.txt").write_text("0.5\n0.05\n0.05\n")


def _seq(auc, pre=50.0, pn=40.0):
    return dict(auc=auc, precision=pre, norm_precision=pn, op50=auc, op75=auc / 2)


def test_tables_from_scored_runs(tmp_path):
    root = tmp_path / "results"
    for seed, shift in ((0, 0.0), (1, 2.0)):
        _write_run(root, "synthetic_otb_lang", "dmtrack-full", f"k1_seed{seed}", "full", 1, seed,
                   {"A1": _seq(60 + shift), "B2": _seq(40 + shift)})
        _write_run(root, "synthetic_otb_lang", "dmtrack-full", f"k5_seed{seed}", "full", 5, seed,
                   {"A1": _seq(64 + shift), "B2": _seq(44 + shift)})
    _write_run(root, "synthetic_otb_lang", "static", "seed0", "static", None, 0, {"A1": _seq(20), "B2": _seq(10)})
    runs, per = results.load_runs(root)
    assert len(runs) == 10 and len(per) == 20
    assert runs[runs.tracker == "dmtrack-full"].fps.round(6).eq(20.0).all()
    res = results.Results(runs, per, synthetic=True)
    s = res.summary("dmtrack-full", "synthetic_otb_lang", 1, "pytracking")
    assert s["auc"] == 51.0 and s["seeds"] == 2 and s["precision"] == 50.0  # mean of 50 and 52
    assert 40.0 <= s["auc_ci"].low < 51.0 < s["auc_ci"].high <= 62.0  # bootstrap means lie within the values
    t1 = tables.table1(res, "pytracking")
    assert t1.loc["DMTrack full, k=1 (ours)", ("OTB-Lang", "AUC")].startswith("51.0 [")
    assert t1.loc["static (first box held still)", ("OTB-Lang", "AUC")].startswith("15.0")
    assert t1.loc["DMTrack full, k=1 (ours)", ("LaSOT", "AUC")] == "not run"
    t2 = tables.table2(res, "pytracking")
    ours = ("ours, final reading (primary)", "AUC")
    assert t2.loc[9, ours].startswith("55.0 [") and t2.loc[8, ours].startswith("51.0 [")
    assert t2.loc[8, ("AUC minus row 9", "ours, final")] == "-4.0" and t2.loc[8, ("AUC minus row 9", "paper")] == "-1.2"
    assert t2.loc[1, ours] == "not run" and t2.loc[9, ("ours, chain reading", "AUC")] == "not run"
    assert ("ours minus paper", "AUC") not in t2.columns  # synthetic: absolute differences to the paper are not shown
    v = claims.verdict_table(res)
    assert v.loc["Diffusion helps (k=1)", "verdict"] == "not run"  # no_diffusion was not evaluated
    ks = sweeps.k_sweep(res, [1, 5, 10])
    assert list(ks.k) == [1, 5] and list(ks.auc) == [51.0, 55.0]
    assert "SYNTHETIC STAND-IN" in tables.caption("x", "official", True) and "protocol: official" in tables.caption("x", "official", True)


def test_fig7_sequences_are_the_hardest_once_scored_else_the_first(tmp_path):
    names = ["A1", "B2", "C3"]
    assert results.fig7_sequences(tmp_path, "synthetic_tnl2k", names, 2) == (  # right after training: no results/
        ["A1", "B2"], "the first 2 sequences (full k=1 is not scored on synthetic_tnl2k yet)")
    root = tmp_path / "results"
    _write_run(root, "synthetic_otb_lang", "dmtrack-full", "k1_seed0", "full", 1, 0, {"A1": _seq(1.0)})  # other benchmark
    assert results.fig7_sequences(tmp_path, "synthetic_tnl2k", names, 2)[0] == ["A1", "B2"]
    for seed, (a, b, c) in ((0, (60, 30, 50)), (1, (50, 40, 10))):  # means over the seeds: A1 55, B2 35, C3 30
        _write_run(root, "synthetic_tnl2k", "dmtrack-full", f"k1_seed{seed}", "full", 1, seed,
                   {"A1": _seq(a), "B2": _seq(b), "C3": _seq(c)})
    _write_run(root, "synthetic_tnl2k", "dmtrack-full", "k5_seed0", "full", 5, 0, {"A1": _seq(0.0)})  # k=5: not read
    assert results.fig7_sequences(tmp_path, "synthetic_tnl2k", names, 2) == (
        ["C3", "B2"], "the 2 hardest for full (lowest AUC, k=1)")


def test_tables_keep_readings_and_steps_apart_and_judge_claims(tmp_path):
    root, bench = tmp_path / "results", "synthetic_otb_lang"
    base, names = np.array([30.0, 40, 50, 60, 70, 80]), [f"S{i}" for i in range(6)]
    wiggle = np.array([0.1, -0.1] * 3)

    def write(variant, param, k, seed, shift, spread=None, **meta):
        vals = base + shift + [0.0, 0.2, -0.2][seed] + wiggle * (seed - 1)
        _write_run(root, bench, f"dmtrack-{variant}", param, variant, k, seed,
                   {n: _seq(float(v)) for n, v in zip(names, vals)}, spread, **meta)

    for seed in range(3):
        write("full", f"k5_seed{seed}", 5, seed, 10.0, {n: [0.1, 0.2, 0.3] for n in names},
              average="final", steps=None, sampling_steps=3)
        write("single_sample_train", f"k5_seed{seed}", 5, seed, 0.0, average="final", steps=None, sampling_steps=3)
        write("full", f"k5c_seed{seed}", 5, seed, 0.0, {n: [0.5] for n in names}, average="chain", steps=None, sampling_steps=5)
        write("single_sample_train", f"k5c_seed{seed}", 5, seed, 0.0, average="chain", steps=None, sampling_steps=5)
        write("full", f"k1_seed{seed}", 1, seed, 5.0, sampling_steps=3)  # no average / steps: a final-reading run
    write("full", "k1c_seed0", 1, 0, 1.0, average="chain", steps=None, sampling_steps=1)
    write("full", "k1_steps2_seed0", 1, 0, 2.0, average="final", steps=2, sampling_steps=2)
    # the static baseline far below the full model: the verdicts are not held back (claims.verdict_gate)
    _write_run(root, bench, "static", "seed0", "static", None, 0, {n: _seq(5.0) for n in names})
    res = results.Results.load(root, synthetic=True)
    s5, c5 = (res.summary("dmtrack-full", bench, 5, "pytracking", average=a) for a in ("final", "chain"))
    assert s5["auc"] == pytest.approx(65.0) and c5["auc"] == pytest.approx(55.0)
    assert s5["spread"] == pytest.approx(0.2) and c5["spread"] == pytest.approx(0.5) and s5["sampling_steps"] == 3
    assert res.summary("dmtrack-full", bench, 1, "pytracking")["auc"] == pytest.approx(60.0)  # not the override's 57
    assert res.summary("dmtrack-full", bench, 1, "pytracking", steps=2)["auc"] == pytest.approx(57.0)
    t2 = tables.table2(res, "pytracking")
    assert t2.loc[9, ("ours, chain reading", "AUC")].startswith("55.0 [") and t2.loc[9, ("ours, final reading (primary)", "AUC")].startswith("65.0 [")
    st = sweeps.steps_sweep(res, [1, 2, 3, 5], seeds=[0])  # 1 step: the chain reading at k = 1; 3: the config's
    assert list(st.steps) == [1, 2, 3] and list(st.auc) == pytest.approx([56.0, 57.0, 60.0])
    assert sweeps.k_sweep(res, [1, 5]).spread.tolist()[1] == pytest.approx(0.2)
    sp = tables.spread_table(res)
    assert sp.loc[("full", 5), ("final reading", "spread")] == "0.200" and sp.loc[("full", 5), ("chain reading", "spread")] == "0.500"
    # double-sample training: +10 on every sequence under the final reading, nothing under the chain reading
    v, vc = claims.verdict_table(res), claims.verdict_table(res, average="chain")
    row = "Double-sample training helps (k=5)"
    assert v.loc[row, "verdict"] == "holds" and vc.loc[row, "verdict"] == "inconclusive"
    assert v.loc[row, "ours: difference [99.4% CI]"].startswith("+10.0 [") and v.loc[row, "paper: difference"] == "+2.7"
    assert v.loc[row, "paper's difference inside our CI"] == "no"  # +2.7 lies far below +10's CI
    assert 0 < float(v.loc[row, "resolvable difference"]) < 10
    assert v.loc["Diffusion helps (k=1)", "verdict"] == "not run"
    need = claims.seeds_needed(res)
    assert need.loc[row, "seeds now"] == "3 / 3" and need.loc[row, "seeds to resolve"].isdigit()
    assert " of the difference's variance (more " in need.loc[row, "why"]  # the largest part names itself
    assert need.loc["Diffusion helps (k=1)", "why"].startswith("needs both rows")
    # one more seed: its 3 trainings (120 s each) and its share of the all-seed evaluation (300 s / 3), 2 at a
    # time: (120 + 100) / 2 / 60 = 1.83 min; 12 min of steps so far / 2 jobs = 6 min, budget 10: 3 + 2 seeds
    manifest = dict(seeds=[0, 1, 2], settings=dict(jobs=2), steps=[
        *[dict(step=f"10_train/{v}_seed{i}", seconds=40.0, seeds=[i]) for v in ("a", "b", "c") for i in range(3)],
        dict(step="20_evaluate/full_otb_lang_k5", seconds=300.0, seeds=[0, 1, 2]),
        dict(step="20_evaluate/full_otb_lang_k2", seconds=60.0, seeds=[0])])
    assert claims.extra_seed_minutes(manifest) == pytest.approx(220 / 120)
    text = claims.seed_budget_markdown(need, manifest, 10.0)
    assert "1.8 min" in text and "affords **5 seed(s)**" in text and "**3 seed(s)**" in text


def _verdict_runs(root, full_k5, static, seeds=(0, 1, 2)):
    """Table 2's rows 1 and 9 on the synthetic OTB-Lang and the static baseline: {sequence: AUC} each."""
    for seed in seeds:
        _write_run(root, "synthetic_otb_lang", "dmtrack-full", f"k5_seed{seed}", "full", 5, seed,
                   {n: _seq(a + 0.1 * seed) for n, a in full_k5.items()})
        _write_run(root, "synthetic_otb_lang", "dmtrack-no_diffusion", f"k1_seed{seed}", "no_diffusion", 1, seed,
                   {n: _seq(a - 0.5 * seed) for n, a in full_k5.items()})
    _write_run(root, "synthetic_otb_lang", "static", "seed0", "static", None, 0, {n: _seq(a) for n, a in static.items()})
    return results.Results(*results.load_runs(root), synthetic=True)


def test_verdicts_are_held_back_when_the_full_model_does_not_beat_static(tmp_path):
    static = {f"S{i}": 40.0 + i for i in range(6)}  # mean 42.5
    collapsed = _verdict_runs(tmp_path / "a", {f"S{i}": 3.0 + 0.2 * i for i in range(6)}, static)  # mean 3.5 (+0.1 seed)
    gate = claims.verdict_gate(collapsed)
    assert not gate.ok and gate.diff.estimate == pytest.approx(3.6 - 42.5) and gate.diff.high < 0
    assert "does not clearly beat the static baseline" in gate.reason and "-38.9" in gate.reason
    v = claims.verdict_table(collapsed)
    assert v.loc["Diffusion helps (k=5)", "verdict"] == verdicts.HELD_BACK and v.loc["Diffusion helps (k=5)", "why"] == gate.reason
    assert v.loc["Diffusion helps (k=5)", "ours: difference [99.4% CI]"].startswith("+0.6")  # the numbers stay visible
    assert v.loc["Language helps", "verdict"] == "not run"  # a row never evaluated stays "not run"
    tracking = _verdict_runs(tmp_path / "b", {f"S{i}": 60.0 + 3 * i for i in range(6)}, static)  # +25 over static
    gate = claims.verdict_gate(tracking)
    assert gate.ok and gate.diff.estimate == pytest.approx(25.1) and gate.diff.low > 0
    assert claims.verdict_table(tracking).loc["Diffusion helps (k=5)", "verdict"] in (verdicts.HOLDS, verdicts.INCONCLUSIVE)
    # the same static values on other sequences, or no static run: held back, saying why
    other = verdicts.full_beats_static(tracking.matrix("dmtrack-full", "synthetic_otb_lang", 5, "pytracking"),
                                       collapsed.matrix("static", "synthetic_otb_lang", None, "pytracking").rename(columns=str.lower))
    assert not other.ok and "different sequences" in other.reason
    import pandas as pd
    assert "static baseline was not scored" in verdicts.full_beats_static(tracking.matrix("dmtrack-full", "synthetic_otb_lang", 5, "pytracking"), pd.DataFrame()).reason


# the noise budget's fixture: 3 seeds x 6 sequences, x = mu + u_seed + c_sequence (+ g) + e, e with zero row and
# column sums, so each row's variance components are exact: var(c) = (25 + 9 + 1 + 1 + 9 + 25) / 5 = 14,
# residual mean square = 12 cells of 1 / ((3 - 1)(6 - 1)) = 1.2; seed part (6 var(u) - 1.2) / 6, sequence
# part (3 * 14 - 1.2) / 3 = 13.6
NOISE_C = np.array([-5.0, -3, -1, 1, 3, 5])
NOISE_E = np.array([[1.0, -1, 0, 1, -1, 0], [-1.0, 0, 1, -1, 0, 1], [0.0, 1, -1, 0, 1, -1]])


def _noise_runs(root, seeds=3):
    """Table 2 rows 8, 9 (full) and 1 (no_diffusion) fine-tuned from the base tracker, seed effects (-1, 0, 1):
    seed part (6 - 1.2) / 6 = 0.8; rows 8 and 9 also from scratch, seed effects (-4, 0, 4): (96 - 1.2) / 6 =
    15.8. no_diffusion's sequences move by g = (2, -2, ...) (var(c + g) is 14 again): the difference full -
    no_diffusion has sequence-by-variant variance var(g) - 1.2 / 3 - 1.2 / 3 = 4.8 - 0.8 = 4.0."""
    g = np.array([2.0, -2, 2, -2, 2, -2])
    rows = [("dmtrack-full", "full", 5, 60.0, 1.0, 0), ("dmtrack-full", "full", 1, 58.0, 1.0, 0),
            ("dmtrack-no_diffusion", "no_diffusion", 1, 50.0, 1.0, g), ("dmtrack-full-scratch", "full", 5, 55.0, 4.0, 0),
            ("dmtrack-full-scratch", "full", 1, 53.0, 4.0, 0)]
    for tracker, variant, k, mu, u, extra in rows:
        for seed in range(seeds):
            vals = mu + u * (seed - 1) + NOISE_C + extra + NOISE_E[seed]
            _write_run(root, "synthetic_otb_lang", tracker, f"k{k}_seed{seed}", variant, k, seed,
                       {f"S{j}": _seq(float(v)) for j, v in enumerate(vals)})
    return results.Results.load(root, synthetic=True)


def test_noise_budget_splits_each_rows_variance_per_arm_and_prices_what_narrows_the_cis(tmp_path):
    res = _noise_runs(tmp_path / "results")
    budget = claims.noise_budget(res)
    base, scratch = budget.loc[("#9 full k=5", "base tracker")], budget.loc[("#9 full k=5", "from scratch")]
    assert (base["seeds"], base["sequences"], base["mean AUC"]) == (3, 6, pytest.approx(60.0))
    assert [base[f"{k} variance"] for k in ("seed", "sequence", "seed x sequence")] == pytest.approx([0.8, 13.6, 1.2])
    assert scratch["seed variance"] == pytest.approx(15.8) and scratch["mean AUC"] == pytest.approx(55.0)
    assert base["seed sd"] == pytest.approx(np.sqrt(0.8))
    assert budget.loc[("#1 no_diffusion", "base tracker"), "sequence variance"] == pytest.approx(13.6)
    assert ("#1 no_diffusion", "from scratch") not in budget.index  # not trained from scratch: left out
    assert claims.seed_variance_ratios(budget) == pytest.approx({"#8 full k=1": 15.8 / 0.8, "#9 full k=5": 15.8 / 0.8})
    level, row = verdicts.family_level(len(paper.CLAIMS)), "Diffusion helps (k=5)"
    cb = claims.claim_budget(res)
    # both rows fine-tuned: judge's half-width, the verdict table's "resolvable difference"
    assert cb.loc[row, "base tracker: how"] == "measured"
    assert f"{cb.loc[row, 'base tracker: resolvable']:.1f}" == claims.verdict_table(res).loc[row, "resolvable difference"]
    # from scratch row 1 was not run: its seed and residual parts are the arm's mean (15.8, 1.2), the
    # interaction the base tracker's 4.0; variance 2 (15.8 + 1.2 / 6) / 3 + (4.0 + 2 * 1.2 / 3) / 6 = 10.667 + 0.8
    predicted = stats.Components((15.8, 15.8), (1.2, 1.2), 4.0, (3, 3), 6)
    assert predicted.variance() == pytest.approx(11.4667, abs=1e-4)
    assert cb.loc[row, "from scratch: resolvable"] == pytest.approx(predicted.half_width(level))
    assert cb.loc[row, "from scratch: how"] == "predicted: #1 not run from scratch"
    assert cb.loc["Language helps", "base tracker: how"] == "not run" and np.isnan(cb.loc["Language helps", "predicted now"])
    # the base tracker's prediction: variance 2 (0.8 + 1.2 / 6) / 3 + 0.8 = 1.467 now; 4 seeds: 2 (0.8 + 0.2) / 4 +
    # (4 + 2 * 1.2 / 4) / 6 = 1.267; 12 sequences: 2 (0.8 + 0.1) / 3 + (4 + 0.8) / 12 = 1.0
    comp = stats.Components((0.8, 0.8), (1.2, 1.2), 4.0, (3, 3), 6)
    assert [comp.variance(), comp.variance((4, 4)), comp.variance(sequences=12)] == pytest.approx([1.4667, 1.2667, 1.0], abs=1e-4)
    assert cb.loc[row, ["predicted now", "one more seed per row", "twice the sequences"]].tolist() == pytest.approx(
        [comp.half_width(level), comp.half_width(level, (4, 4)), comp.half_width(level, sequences=12)])
    # one more seed: 6 fine-tunes (60 s) / 3 seeds + the all-seed evaluations 300 s / 3, 2 jobs: 220 / 120 min
    # (the base tracker's training and the from-scratch arm are no part of it); twice the sequences: the
    # otb_lang evaluations of the fine-tunes, 180 s / 2 jobs = 1.5 min; saved: 6 fine-tunes x (150 - 60) s,
    # less the base tracker's 200 s, / 2 jobs = 340 / 120 min
    manifest = dict(seeds=[0, 1, 2], settings=dict(jobs=2), steps=[
        dict(step="10_train/base", seconds=200.0, seeds=[0]),
        *[dict(step=f"10_train/{m}_seed{i}", seconds=s, seeds=[i]) for m, s in
          (("full", 60.0), ("no_diffusion", 60.0), ("full-scratch", 150.0)) for i in range(3)],
        *[dict(step=f"20_evaluate/{m}_{b}", seconds=s, seeds=[0, 1, 2]) for m, b, s in
          (("full", "otb_lang_k5", 90.0), ("full", "otb_lang_k1", 60.0), ("no_diffusion", "otb_lang_k1", 30.0),
           ("full-scratch", "otb_lang_k5", 90.0), ("full", "lasot_k1", 120.0))]])
    assert claims.extra_seed_minutes(manifest) == pytest.approx(220 / 120)
    assert claims.more_sequences_minutes(manifest) == pytest.approx(1.5)
    assert claims.base_stage_minutes_saved(manifest) == pytest.approx(340 / 120)
    # per minute: (4.30 - 3.87) / 1.83 = 0.23 for a seed, (4.30 - 3.49) / 1.5 = 0.54 for the sequences
    text = claims.noise_budget_markdown(budget, cb, manifest, synthetic=True)
    assert "**19.8x** smaller" in text and "(goal: at least 4x smaller: met)" in text
    assert "Base tracker: the widest resolvable difference" in text and "0.23 points per minute" in text
    assert "the minutes go to **twice the sequences**" in text and "saves about 3 min" in text and "1 time(s) the cost of twice the sequences" in text
    real = claims.noise_budget_markdown(budget, cb, manifest, synthetic=False)
    assert "sequences are fixed" in real and "the minutes go to **one more seed per row**" in real
    # one seed: no part is estimable, the measured CI is unbounded, nothing is predicted or priced
    one = _noise_runs(tmp_path / "one", seeds=1)
    budget, cb = claims.noise_budget(one), claims.claim_budget(one)
    assert np.isnan(budget.loc[("#9 full k=5", "from scratch"), "seed variance"])
    assert np.isnan(claims.seed_variance_ratios(budget)["#9 full k=5"])
    assert cb.loc[row, "base tracker: resolvable"] == np.inf and cb.loc[row, "from scratch: how"] == "not estimable: a row with one seed"
    text = claims.noise_budget_markdown(budget, cb, manifest, synthetic=True)
    assert "not estimable (one seed)" in text and "(goal: at least 4x smaller: not estimable)" in text
    assert "**unbounded (a row with one seed)**" in text and "Too few seeds" in text


def test_styled_tables_print_one_decimal():
    import pandas as pd

    html = tables.styled(pd.DataFrame({"k": [1, 2], "auc": [3.73, 41.25], "fps": [12.0, 9.5]}).set_index("k"),
                         "k sweep", "pytracking", True).to_html()
    assert "3.7<" in html and "41.2<" in html and "12.0<" in html and "3.730000" not in html


def test_coverage_and_flags_of_a_partial_run_on_the_real_benchmarks(tmp_path):
    root = tmp_path / "work" / "results"
    _write_run(root, "otb_lang", "dmtrack-full", "k1_seed0", "full", 1, 0, {"Biker": _seq(50), "Board": _seq(60)})
    for name, rows in (("Biker", 3), ("Board", 4)):  # raw results: one row per scored frame
        (root / "otb_lang" / "dmtrack-full" / "k1_seed0" / f"{name}.txt").write_text("1,2,3,4\n" * rows)
    res = results.Results(*results.load_runs(root), synthetic=False)
    cover = header.coverage(res, tmp_path / "work")
    otb = cover.set_index("loader").loc["otb_lang"]
    assert (otb.sequences, otb.official_sequences, otb.frames, otb.official_frames) == (2, 48, 7, 29077)
    assert cover.set_index("loader").loc["lasot"].sequences is None  # not run
    manifest = dict(profile="paper", synthetic=False, seeds=[0], max_frames=5, lasot_split_check=False,
                    config_changes={"depth": [12, 2], "pretrained": ["", "none"]},
                    weights={"pretrained": dict(setting="none", path=None, sha256=None, note="random initialisation"),
                             "text_encoder": dict(setting="minilm", name="model", path="/x/model", sha256="ab" * 32, files=9)},
                    data_env={"DMTRACK_DATA": "/data"})
    flags = header.run_flags(manifest, cover)
    assert flags[0] == "**2 config override(s)** of the profile `paper`: `depth`, `pretrained` (values below)"
    assert any("trained from random initialisation" in f for f in flags) and any("**MiniLM**" in f for f in flags)
    assert "OTB-Lang: **2 of the official 48 sequences** and 7 of the official 29,077 frames scored" in flags
    assert "LaSOT: **not scored**" in flags and any("not checked" in f for f in flags) and any("first 5 frames" in f for f in flags)
    md = header.provenance_markdown(manifest, cover, ["the verdicts are **held back**: because"])
    assert "> **This run differs from the paper's setup**" in md and "> - the verdicts are **held back**: because" in md
    assert "| training seeds | 1 per variant (seed 0) |" in md and "| `depth` | `12` | `2` |" in md
    assert f"| `{'ab' * 32}` |" in md and "| OTB-Lang (`otb_lang`) | 2 | 48 | 7 | 29,077 |" in md
    assert md.index("This run differs") < md.index("| profile |")  # the flags come first


def test_the_header_names_the_base_tracker_and_flags_a_model_not_fine_tuned_from_it(tmp_path):
    import torch

    from dmtrack.config import load_config
    from dmtrack.layout import model_path
    from dmtrack.model import build_model, save_checkpoint
    from dmtrack.provenance import file_sha256

    work, seeds = tmp_path / "work", [0, 1]
    torch.manual_seed(0)
    cfg = load_config("smoke", "base", seed=0)
    model = build_model(cfg)  # tiny: every checkpoint below holds these weights, only their records differ
    base = save_checkpoint(model_path(work, "base", 0), model, cfg, global_step=32)
    sha = file_sha256(base)
    for v in VARIANTS:
        for seed in seeds:
            save_checkpoint(model_path(work, v, seed), model, cfg, pretrained_sha256=sha)
    save_checkpoint(model_path(work, "full", 0, "scratch"), model, cfg, pretrained_sha256=None)
    manifest = dict(profile="smoke", synthetic=True, seeds=seeds, overrides={}, settings=dict(base_stage=True))
    b = header.base_tracker(work, manifest)
    assert (b["path"], b["sha256"], b["steps"]) == (str(base), sha, 32) and b["stale"] == [] and b["missing"] == []
    assert len(b["fine_tuned"]) == 12 and b["scratch"] == ["full-scratch seed 0"]  # full-scratch seed 1: not trained
    # smoke's full fine-tuned from it: diffusion and language on, backbone_lr 1e-4; the base tracker: both off,
    # from random initialisation (pretrained "") with the scratch recipe's backbone_lr 1e-3
    assert b["changes"] == {"use_diffusion": (True, False), "use_language": (True, False),
                            "backbone_lr": (1e-4, 1e-3), "pretrained": (str(base), "")}
    text = header.provenance_markdown(manifest, work=work)
    assert f"`{base}`, SHA-256 `{sha}`, 32 training steps" in text and "| `use_language` | `true` | `false` |" in text
    assert ("Every variant was fine-tuned from it: 12 fine-tuned checkpoint(s) record its SHA-256 as the file they "
            "started from, the from-scratch arm's 1 start from random initialisation.") in text and "STALE" not in text
    # a stale mix-up: no_language seed 1 fine-tuned from another file, full-scratch seed 0 from the base tracker
    save_checkpoint(model_path(work, "no_language", 1), model, cfg, pretrained_sha256="f" * 64)
    save_checkpoint(model_path(work, "full", 0, "scratch"), model, cfg, pretrained_sha256=sha)
    text = header.provenance_markdown(manifest, work=work)
    flag = text.split("\n> - ")[1]  # the first line of the block of what differs from the profile, at the top
    assert flag.startswith("**STALE CHECKPOINTS: 2 trained model(s) did not start from this chain's base tracker**")
    assert "no_language seed 1 started from `ffffffffffff...`" in flag and f"full-scratch seed 0 started from `{sha[:12]}...`" in flag
    assert "**2 checkpoint(s) did not start from it**" in text and "Every variant was fine-tuned" not in text
    # no base stage (a pretrained= of the user's, or a profile without one): no base tracker, whatever is on disk
    assert header.base_tracker(work, {**manifest, "overrides": {"pretrained": "/w/ostrack.pth"}}) is None
    assert header.base_tracker(work, {**manifest, "settings": {}}) is None
    assert "base tracker" not in header.provenance_markdown(manifest, work=tmp_path / "other")


def test_published_table_labels_sources():
    df = tables.published_table(real=False)
    assert df.loc["DMTrack (paper, Table 1 text, k=1)", ("TNL2K", "AUC")] == "57.7"
    assert df.loc["DMTrack (paper, Table 1 text, k=1)", ("TNL2K", "P_norm")] == "–"
    assert df.loc["MMTrack (TCSVT'24)", ("", "source")].startswith("[RGBL]")
    assert "[RGBL] Zhangyong-Tang/RGBL-Tracking-Results-Datasets-and-Methods" in tables.sources_markdown()


# --- 30_visualize's library side -----------------------------------------------------------------------
def test_sample_frame_defaults_to_the_middle_and_names_what_is_out_of_range():
    from dmtrack.chain.steps import sample_frame

    seqs = {"bird-1": list(range(9)), "car-2": list(range(4))}  # len() is all it reads of a sequence
    assert sample_frame(seqs, "synthetic_tnl2k", "bird-1", None) == (seqs["bird-1"], 4)  # 9 frames: index 4 = frame 5
    assert sample_frame(seqs, "synthetic_tnl2k", "car-2", 2)[1] == 1 and sample_frame(seqs, "b", "car-2", 4)[1] == 3
    with pytest.raises(ValueError, match=r"^synthetic_tnl2k/car-2: frame 5 is outside 2\.\.4 \(1 is the initialisation frame\)$"):
        sample_frame(seqs, "synthetic_tnl2k", "car-2", 5)
    with pytest.raises(ValueError, match="frame 1 is outside"):
        sample_frame(seqs, "synthetic_tnl2k", "car-2", 1)
    with pytest.raises(ValueError, match=r"^synthetic_tnl2k: no sequence 'cat' \(it has bird-1, car-2\)$"):
        sample_frame(seqs, "synthetic_tnl2k", "cat", None)


def test_the_samplers_are_kept_apart_and_shown_side_by_side(tmp_path):
    """A k5_eta0 folder (deterministic DDIM) next to k5 (the config's stochastic sampler) is another row,
    never mixed into Table 2; the sweeps show both samplers, with the ratio of their k = 5 median spreads."""
    from dmtrack.report import plots

    root, bench, names = tmp_path / "results", "synthetic_otb_lang", ["A1", "B2"]
    # k: (AUC, A1's per-frame spread; B2's is twice it) under eta 1 (Table 2's folders) and eta 0
    cells = {1.0: {1: (50.0, [0.0]), 5: (54.0, [0.06, 0.08, 0.10])}, 0.0: {1: (48.0, [0.0]), 5: (49.0, [0.01, 0.02, 0.5])}}
    for eta, by_k in cells.items():
        for k, (auc, spread) in by_k.items():
            tag = f"k{k}" + ("" if eta == 1.0 else "_eta0")
            seqs = {"A1": _seq(auc), "B2": _seq(auc + 2)}
            _write_run(root, bench, "dmtrack-full", f"{tag}_seed0", "full", k, 0, seqs,
                       {"A1": spread, "B2": [2 * v for v in spread]}, average="final", steps=None, sampling_steps=3,
                       sampler_eta=eta, **({} if eta == 1.0 else {"eta": eta}))
    _write_run(root, bench, "dmtrack-full", "k1c_seed0", "full", 1, 0, {n: _seq(47.0) for n in names},
               average="chain", steps=None, sampling_steps=1, sampler_eta=1.0)
    _write_run(root, bench, "dmtrack-full", "k1c_eta0_seed0", "full", 1, 0, {n: _seq(47.0) for n in names},
               average="chain", steps=None, sampling_steps=1, eta=0.0, sampler_eta=0.0)
    res = results.Results.load(root, synthetic=True)
    assert len(res.runs) == 6 * 2 and res.runs.eta.isna().sum() == 3 * 2  # 6 runs x 2 protocols
    assert res.summary("dmtrack-full", bench, 5, "pytracking")["auc"] == 55.0  # the config's: not (55 + 50) / 2
    assert res.summary("dmtrack-full", bench, 5, "pytracking", eta=0.0)["auc"] == 50.0
    assert res.matrix("dmtrack-full", bench, 5, "pytracking", eta=0.0).loc[0].tolist() == [49.0, 51.0]
    assert tables.table2(res, "pytracking").loc[9, ("ours, final reading (primary)", "AUC")].startswith("55.0 [")
    # per sequence the median over frames (k = 5: A1 0.08, B2 0.16 | A1 0.02, B2 0.04), then over sequences
    etas = sweeps.swept_etas({"settings": {"sweep_etas": [1.0, 0.0]}}, 1.0)
    assert etas == [1.0, 0.0] and sweeps.swept_etas({}, 1.0) == [1.0] and sweeps.swept_etas({"settings": {"sweep_etas": [0, 1]}}, 1.0) == [1.0, 0.0]
    ks = sweeps.sampler_sweeps(sweeps.k_sweep, etas, 1.0, res=res, ks=[1, 5, 10])
    assert list(ks.sampler) == [sweeps.SAMPLERS[1.0]] * 2 + [sweeps.SAMPLERS[0.0]] * 2
    assert ks.spread.tolist() == pytest.approx([0.0, 0.12, 0.0, 0.03]) and ks.auc.tolist() == [51.0, 55.0, 49.0, 50.0]
    assert sweeps.SAMPLERS == {1.0: "stochastic (eta = 1, the paper's Eq. 5)", 0.0: "deterministic DDIM (eta = 0)"}
    assert sweeps.spread_ratio(ks, k=5) == pytest.approx(4.0)
    assert sweeps.spread_ratio_markdown(ks) == ("Median sample spread of k = 5 chains: stochastic (eta = 1, the paper's Eq. 5) "
                                                "0.120, deterministic DDIM (eta = 0) 0.030; ratio **4.0x**.")
    wide = sweeps.side_by_side(ks)
    assert list(wide.index) == [1, 5] and wide.loc[5, (sweeps.SAMPLERS[0.0], "spread")] == pytest.approx(0.03)
    assert [c[0] for c in wide.columns[::5]] == [sweeps.SAMPLERS[1.0], sweeps.SAMPLERS[0.0]]  # the config's first
    # a config whose own sampler is deterministic: its runs are the eta None ones, the other is eta 1's override
    swapped = sweeps.sampler_sweeps(sweeps.k_sweep, [0.0, 1.0], 0.0, res=res, ks=[5])
    assert swapped.auc.tolist() == [55.0] and swapped.sampler.tolist() == [sweeps.SAMPLERS[0.0]]  # no k5_eta1 folders
    st = sweeps.sampler_sweeps(sweeps.steps_sweep, etas, 1.0, res=res, steps=[1, 3], seeds=[0])
    assert list(zip(st.eta, st.steps, st.auc)) == [(1.0, 1, 47.0), (1.0, 3, 51.0), (0.0, 1, 47.0), (0.0, 3, 49.0)]
    sp = tables.spread_table(res, "pytracking", ("final",), sweeps.SAMPLERS[1.0], {sweeps.SAMPLERS[0.0]: 0.0})
    assert sp.loc[("full", 5), (f"final reading, {sweeps.SAMPLERS[1.0]}", "spread")] == "0.120"
    assert sp.loc[("full", 5), (f"final reading, {sweeps.SAMPLERS[0.0]}", "spread")] == "0.030"
    assert sp.loc[("no_language", 5), (f"final reading, {sweeps.SAMPLERS[0.0]}", "AUC")] == "not run"
    one = sweeps.sampler_sweeps(sweeps.k_sweep, [1.0], 1.0, res=res, ks=[5])
    assert sweeps.spread_ratio_markdown(one).startswith("The spread ratio at k = 5 needs both samplers' k sweeps")
    fig = plots.k_sweep_plot(ks, "t")
    assert [ln.get_label() for ln in fig.axes[0].lines] == [f"AUC ({sweeps.SAMPLERS[e]})" for e in etas]
    plots.plt.close(fig)


def test_the_spread_by_training_compares_single_sample_train_with_full(tmp_path):
    """The k = 5 spread of single_sample_train against full's, per sequence the median over frames, then the
    median over sequences: single (A1 0.30, B2 0.50 -> 0.40) / full (A1 0.01, B2 0.03 -> 0.02) = 20x."""
    root, bench = tmp_path / "results", "synthetic_otb_lang"
    for variant, spreads in (("full", ([0.0, 0.01, 0.02], [0.03])), ("single_sample_train", ([0.3], [0.5, 0.5, 0.9]))):
        _write_run(root, bench, f"dmtrack-{variant}", "k5_seed0", variant, 5, 0, {"A1": _seq(50.0), "B2": _seq(40.0)},
                   {"A1": spreads[0], "B2": spreads[1]}, average="final", steps=None, sampling_steps=3, sampler_eta=1.0)
    res = results.Results.load(root, synthetic=True)
    text = sweeps.training_spread_markdown(res)
    assert "single_sample_train (the usual recipe, x_t noised from the ground truth) 0.400" in text
    assert "full (double sampling, x_t noised from its own first estimate) 0.020; ratio **20.0x**. The diversity comes" in text
    res.runs.loc[res.runs.tracker == "dmtrack-full", "spread"] = 0.3  # as diverse as single_sample_train: no such claim
    assert sweeps.training_spread_markdown(res).endswith("ratio **1.3x**. The two trainings' chains are about as "
                                                        "diverse: here the training does not set the spread.")
    assert sweeps.training_spread_markdown(res, k=1) == ("The spread by training needs full and single_sample_train "
                                                         "at k = 1; this run lacks one.")


def test_sampling_chain_gives_every_chain_and_the_spread_and_the_plots_draw_them(root, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from conftest import smoke_checkpoint

    from dmtrack.config import load_config
    from dmtrack.chain import steps
    from dmtrack.report import plots
    from dmtrack.track.runner import CheckpointTracker, TrackSettings

    seq = steps.load_sequences("synthetic_tnl2k", root)[0]
    out = steps.sampling_chain(CheckpointTracker(str(smoke_checkpoint(tmp_path)), TrackSettings(samples=3, seed=0))(),
                               seq, 2)
    cfg = load_config("smoke", "full")  # final reading: k = 3 chains of sampling_steps steps each
    assert out["chain"].shape[:2] == (cfg.sampling_steps + 1, 3) and out["samples"].shape[0] == 3
    np.testing.assert_array_equal(out["spread"], out["samples"].max(0) - out["samples"].min(0))
    assert out["spread"].max() > 0  # the chains start from different noise
    np.testing.assert_allclose(out["average"], out["samples"].mean(0))
    fig = plots.sampling_chains(out["chain"], out["crop"], "t")
    n = cfg.sampling_steps + 2  # the crop and x_T .. x_0 per row
    assert len(fig.axes) == 3 * n
    for r in range(3):  # row r draws chain r
        for j in range(n - 1):
            np.testing.assert_array_equal(fig.axes[r * n + j + 1].images[0].get_array(), out["chain"][j, r])
    fig = plots.k_samples(out["samples"], out["average"], out["spread"], out["crop"], "t")
    spread = fig.axes[3 + 2]  # the crop, 3 samples, the average, the spread (then its colour bar)
    np.testing.assert_array_equal(spread.images[0].get_array(), out["spread"])
    assert spread.get_title() == f"spread (max {out['spread'].max():.3g})"


# --- pipeline machinery (tiny notebooks) ---------------------------------------------------------
def _notebook(path, code, params="x = 1\nout = ''"):
    params = nbformat.v4.new_code_cell(params)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "write.ipynb", "import sys\nfrom pathlib import Path\nPath(out).write_text(f'{x} {sys.executable}')")
    _notebook(d / "bad.ipynb", "y = x + 1\nraise ValueError(f'bad input x={x}')")
    return d


def test_step_key_depends_on_params_and_inputs():
    a = Step("a", "n.ipynb", {"x": 1})
    b = Step("b", "n.ipynb", {"x": 1}, deps=["a"])
    k1 = step_key(b, {"a": step_key(a, {})})
    assert k1 == step_key(b, {"a": step_key(a, {})})
    assert k1 != step_key(b, {"a": step_key(Step("a", "n.ipynb", {"x": 2}), {})})  # input changed
    assert step_key(a, {}) != step_key(Step("a", "n.ipynb", {"x": 1, "y": 0}), {})
    assert step_key(a, {}) != step_key(Step("a", "n.ipynb", {"x": 1}, fingerprint={"config": {"depth": 3}}), {})


def test_skip_if_done_and_rerun_on_change(tmp_path, nbdir):
    out = tmp_path / "o.txt"
    runs = tmp_path / "runs"
    logs = []
    step = lambda x: Step("grp/write", "write.ipynb", {"x": x, "out": str(out)}, outputs=[str(out)])
    first = run_chain([step(3)], runs, notebooks=nbdir, log=logs.append)
    assert first[0]["status"] == "ran" and out.read_text().startswith("3 ")
    assert out.read_text().split()[1].endswith("python") or "python" in out.read_text()
    stamp = json.loads((runs / "grp" / "write.json").read_text())
    assert stamp["params"]["x"] == 3 and (runs / "grp" / "write.ipynb").exists()
    assert run_chain([step(3)], runs, notebooks=nbdir, log=logs.append)[0]["status"] == "skipped"
    assert run_chain([step(4)], runs, notebooks=nbdir, log=logs.append)[0]["status"] == "ran"  # new parameters
    assert out.read_text().startswith("4 ")
    out.unlink()  # output gone: the step runs again
    assert run_chain([step(4)], runs, notebooks=nbdir, log=logs.append)[0]["status"] == "ran"
    assert run_chain([step(4)], runs, notebooks=nbdir, force=True, log=logs.append)[0]["status"] == "ran"
    assert any(line.startswith("[skip] grp/write") for line in logs)


def test_steps_run_on_this_python_whatever_kernelspecs_are_installed(tmp_path, nbdir, monkeypatch):
    # issue 18 item 6: a user-level `python3` spec (`ipykernel install --user` from another python) outranks
    # the venv's own, and the `dmtrack` spec may be missing or another clone's: the chain uses neither
    specs = tmp_path / "jupyter"
    for name in ("python3", "dmtrack"):
        (specs / "kernels" / name).mkdir(parents=True)
        (specs / "kernels" / name / "kernel.json").write_text(json.dumps(
            {"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
             "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(specs))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "empty"))
    out = tmp_path / "o.txt"
    run_chain([Step("write", "write.ipynb", {"x": 5, "out": str(out)}, outputs=[str(out)])], tmp_path / "runs",
              notebooks=nbdir, log=lambda s: None)
    assert out.read_text() == f"5 {sys.executable}"


def test_failing_notebook_names_notebook_cell_and_error(tmp_path, nbdir):
    out = tmp_path / "o.txt"
    steps = [Step("first", "write.ipynb", {"x": 1, "out": str(out)}, outputs=[str(out)]),
             Step("second", "bad.ipynb", {"x": 7}, deps=["first"]),
             Step("third", "write.ipynb", {"x": 2, "out": str(tmp_path / "never.txt")}, deps=["second"])]
    with pytest.raises(StepFailed) as e:
        run_chain(steps, tmp_path / "runs", notebooks=nbdir, log=lambda s: None)
    msg = str(e.value)
    assert "notebook bad.ipynb" in msg and "step second" in msg
    assert "ValueError: bad input x=7" in msg
    assert re.search(r"cell In\[\d+\] `y = x \+ 1`", msg)
    assert str(tmp_path / "runs" / "second.ipynb") in msg and (tmp_path / "runs" / "second.ipynb").exists()
    assert e.value.ename == "ValueError" and not (tmp_path / "never.txt").exists()  # the chain stopped
    assert not (tmp_path / "runs" / "second.json").exists()  # no stamp for a failed step


def test_parallel_jobs_respect_dependencies(tmp_path, nbdir):
    outs = [tmp_path / f"o{i}.txt" for i in range(3)]
    steps = [Step(f"s{i}", "write.ipynb", {"x": i, "out": str(o)}, outputs=[str(o)]) for i, o in enumerate(outs[:2])]
    steps.append(Step("s2", "write.ipynb", {"x": 2, "out": str(outs[2])}, outputs=[str(outs[2])], deps=["s0", "s1"]))
    stamps = run_chain(steps, tmp_path / "runs", notebooks=nbdir, jobs=2, log=lambda s: None)
    assert [s["step"] for s in stamps] == ["s0", "s1", "s2"] and all(o.exists() for o in outs)
    with pytest.raises(ValueError, match="depends on"):
        run_chain([Step("z", "write.ipynb", {}, deps=["later"])], tmp_path / "runs", notebooks=nbdir)


# A step that records the GPUs its kernel sees and when it ran; `meet` names a step it must run at the
# same time as (each waits for the other's start file), so that concurrency is checked without timing.
_GPU_STEP = """import json, os, time
from pathlib import Path
t0 = time.time()
Path(out + '.started').touch()
if meet:
    while not Path(meet + '.started').exists():
        assert time.time() - t0 < 120, 'the step it should run beside never started'
        time.sleep(0.05)
Path(out).write_text(json.dumps(dict(gpus=os.environ.get('CUDA_VISIBLE_DEVICES'), handed=os.environ.get('DMTRACK_GPUS'),
                                     t0=t0, t1=time.time())))"""


def test_running_steps_hold_their_own_gpus_and_never_share_one(tmp_path, nbdir):
    _notebook(nbdir / "gpu.ipynb", _GPU_STEP, params="out = ''\nmeet = ''")
    o = {n: str(tmp_path / f"{n}.json") for n in ("a", "b", "wide", "after")}
    gpu_step = lambda n, devices=1, meet="", deps=(): Step(n, "gpu.ipynb", {"out": o[n], "meet": meet}, outputs=[o[n]],
                                                            deps=list(deps), devices=devices)
    steps = [gpu_step("a", meet=o["b"]), gpu_step("b", meet=o["a"]), gpu_step("wide", 2), gpu_step("after", deps=["wide"])]
    stamps = run_chain(steps, tmp_path / "runs", notebooks=nbdir, jobs=4, gpus=["3", "7"], log=lambda s: None)
    seen = {n: json.loads(Path(f).read_text()) for n, f in o.items()}
    # a and b ran at once (each waited for the other), one GPU each; wide took both, so it ran alone
    assert sorted([seen["a"]["gpus"], seen["b"]["gpus"]]) == ["3", "7"] and sorted(seen["wide"]["gpus"].split(",")) == ["3", "7"]
    assert seen["after"]["gpus"] in ("3", "7") and sorted(stamps[2]["gpus"]) == ["3", "7"]
    assert all(v["handed"] == v["gpus"] for v in seen.values())  # device=auto in the kernel: on them or an error
    for x, y in [(x, y) for x in seen for y in seen if x < y]:
        if set(seen[x]["gpus"].split(",")) & set(seen[y]["gpus"].split(",")):  # a shared GPU: one after the other
            assert seen[x]["t1"] <= seen[y]["t0"] or seen[y]["t1"] <= seen[x]["t0"], (x, y, seen[x], seen[y])
    with pytest.raises(ValueError, match="need more GPUs than the 1 given"):
        run_chain(steps, tmp_path / "runs2", notebooks=nbdir, gpus=["0"], log=lambda s: None)


def test_the_default_gpus_are_those_cuda_visible_devices_names(monkeypatch):
    import torch

    from dmtrack.provenance import visible_gpus

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5, 3,7")  # a SLURM job's: the ids a child's variable must name
    assert visible_gpus() == ["5", "3"]  # as many as torch counts
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert visible_gpus() == []  # a CPU machine: no pool, whatever the variable says


def test_gpu_ids_the_process_cannot_see_stop_the_chain_before_it_starts(tmp_path, monkeypatch, capsys):
    import torch

    from dmtrack.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args = ["report", "--profile", "smoke", "--reports", "r", "--work", "w", "--data-root", "d", "--set", "epochs=1", "--plan"]
    for ids in ("abc", "7"):  # this machine has no GPU: once the steps ran on the CPU, "on GPU(s) abc"
        assert main(args + ["--gpus", ids]) == 2
        assert capsys.readouterr().err.strip() == (f"dmtrack report: error: --gpus {ids}: GPU id(s) {ids} not visible to this "
                                                   "process (it sees no GPU; CUDA_VISIBLE_DEVICES=unset); give ids as "
                                                   "CUDA_VISIBLE_DEVICES names them, or none")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # a job given GPUs 2 and 3: 0 and 1 are someone else's
    assert main(args + ["--gpus", "0,1"]) == 2
    assert "GPU id(s) 0, 1 not visible to this process (it sees 2, 3; CUDA_VISIBLE_DEVICES='2,3')" in capsys.readouterr().err
    assert main(args + ["--gpus", "3,1"]) == 2 and "--gpus 3,1: GPU id(s) 1 not visible" in capsys.readouterr().err
    with pytest.raises(pipeline.PreflightError, match="--gpus 7: GPU id.s. 7 not visible"):
        pipeline.reproduce("smoke", pipeline.ChainOptions(gpus=("7",)), reports="r", work="w", data="d", log=lambda s: None)
    assert not any((tmp_path / x).exists() for x in "rwd")


def test_a_process_handed_gpus_runs_on_them_or_stops(monkeypatch):
    import torch

    from dmtrack.provenance import resolve_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # a broken driver, a CPU build of torch, a wrong id
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("DMTRACK_GPUS", "3")  # what the chain and evaluate's workers set next to it
    with pytest.raises(RuntimeError, match=r"device=auto in a process handed GPU\(s\) 3 \(DMTRACK_GPUS; CUDA_VISIBLE_DEVICES="
                                           r"'3'\), but torch \S+ sees 0 GPU\(s\): it would not run on them"):
        resolve_device("auto")
    assert resolve_device("cpu") == "cpu"  # an explicit device is the user's choice
    monkeypatch.setenv("DMTRACK_GPUS", "")
    assert resolve_device("auto") == "cpu"  # handed none: the CPU, as before


def test_the_calibration_runs_in_a_child_that_sees_only_the_pools_first_gpu(tmp_path, monkeypatch):
    import torch

    from dmtrack.chain import estimate

    def in_this_process(*args, **kw):
        raise AssertionError("calibrated in the chain's own process (on its cuda:0)")

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # this process: GPUs 0 and 1; the pool: 1
    monkeypatch.setattr(estimate, "calibrate", in_this_process)
    # the child really runs: it sees GPU 1 alone and, finding no GPU on this machine, refuses to time the CPU instead
    with pytest.raises(RuntimeError, match=r"the cost calibration on GPU 1 failed: RuntimeError: device=auto in a process "
                                           r"handed GPU\(s\) 1 \(DMTRACK_GPUS; CUDA_VISIBLE_DEVICES='1'\)"):
        pipeline.plan_estimate("smoke", pipeline.ChainOptions(gpus=("1",)), reports=tmp_path / "r", work=tmp_path / "w",
                               data=tmp_path / "d")


def test_one_step_alone_needs_its_inputs_done_and_shares_the_chain_keys(tmp_path, nbdir):
    outs = [str(tmp_path / f"o{i}.txt") for i in range(2)]
    steps = [Step("first", "write.ipynb", {"x": 1, "out": outs[0]}, outputs=[outs[0]]),
             Step("second", "write.ipynb", {"x": 2, "out": outs[1]}, outputs=[outs[1]], deps=["first"])]
    runs = tmp_path / "runs"
    with pytest.raises(DependenciesNotDone, match="step second reads from step.s. not done for this config: first"):
        run_one(steps, "second", runs, nbdir, log=lambda s: None)
    with pytest.raises(KeyError, match="no step 'third'"):
        run_one(steps, "third", runs, nbdir, log=lambda s: None)
    assert run_one(steps, "first", runs, nbdir, log=lambda s: None)["status"] == "ran"
    assert run_one(steps, "second", runs, nbdir, log=lambda s: None, gpus=["5"])["gpus"] == ["5"]
    assert [st["status"] for st in run_chain(steps, runs, nbdir, log=lambda s: None)] == ["skipped", "skipped"]
    steps[0].params["x"] = 3  # first's key changes: second's input is no longer done
    with pytest.raises(DependenciesNotDone, match="first"):
        run_one(steps, "second", runs, nbdir, log=lambda s: None)
    steps[0].params["x"] = 1
    steps[0].runtime["threads"] = 9  # how a step runs is not part of its key
    assert run_one(steps, "second", runs, nbdir, log=lambda s: None)["status"] == "skipped"


def test_the_plan_gives_each_steps_command_and_a_step_alone_refuses_without_its_inputs(tmp_path, monkeypatch, capsys):
    from dmtrack.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["report", "--profile", "smoke", "--reports", "r", "--work", "w", "--data-root", "d", "--gpus-per-train", "2",
            "--set", "epochs=1", "--set", "pretrained=none"]
    assert main(args + ["--plan", "--json"]) == 0
    plan = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    train, report = plan["10_train/full_seed0"], plan["40_report"]
    assert train["deps"] == ["00_data"] and train["gpus"] == 2 and report["gpus"] == 1
    assert set(report["deps"]) == set(plan) - {"40_report"}
    assert train["command"] == (f"python -m dmtrack report --profile smoke --reports {tmp_path}/r --work {tmp_path}/w "
                                f"--data-root {tmp_path}/d --gpus-per-train 2 --set epochs=1 --set 'pretrained=\"none\"' "
                                "--step 10_train/full_seed0")
    assert main(args + ["--step", "10_train/full_seed0"]) == 1
    assert "step 10_train/full_seed0 reads from step(s) not done for this config: 00_data; run them first" in capsys.readouterr().err
    assert main(args + ["--step", "10_train/nope"]) == 2
    assert "no step '10_train/nope' in this chain" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def _report_args(argv: list[str]):
    from dmtrack.chain.cli import add_arguments
    from dmtrack.cli import Parser

    parser = Parser(prog="dmtrack report")
    add_arguments(parser)
    return parser, parser.parse_args(argv)


def test_a_steps_command_reads_back_every_option_of_the_report_command(tmp_path, monkeypatch):
    """step_base_command is the inverse of the parser: every per-step option, given a value other than its
    default, comes back the same from the printed command (paths made absolute)."""
    from dmtrack.chain.cli import _NOT_PER_STEP, chain_options, step_base_command
    from dmtrack.config import overrides_from_args

    monkeypatch.chdir(tmp_path)
    (tmp_path / "theirs" / "lasot").mkdir(parents=True)
    argv = ["--profile", "smoke", "--seeds", "2", "--reports", "r", "--work", "w", "--data-root", "d", "--jobs", "3",
            "--max-frames", "7", "--k-sweep", "1,3", "--steps-sweep", "2,4", "--readings", "final",
            "--robust-variants", "", "--allow-minilm", "--gpus-per-train", "2", "--other", "Theirs=theirs",
            "--chain", "fig7_sequences=3", "--chain", "drift_variants=[\"full\"]", "--set", "epochs=1", "pretrained=none"]
    parser, args = _report_args(argv)
    defaults = vars(parser.parse_args([]))
    per_step = {a.dest for a in parser._actions} - _NOT_PER_STEP
    assert {d for d in per_step if vars(args)[d] != defaults[d]} == per_step  # the test covers every option
    overrides = overrides_from_args(args)
    cmd = step_base_command(args, overrides)
    assert cmd[:4] == ["python", "-m", "dmtrack", "report"]
    _, back = _report_args(cmd[4:])
    resolved = dict(reports=tmp_path / "r", work=tmp_path / "w", data_root=tmp_path / "d")
    for dest in sorted(per_step):
        want = str(resolved[dest]) if dest in resolved else vars(args)[dest]
        assert vars(back)[dest] == want, dest
    assert back.robust_variants == () and back.readings == ("final",) and back.other == [("Theirs", str(tmp_path / "theirs"))]
    assert chain_options(back, overrides_from_args(back)) == chain_options(args, overrides)


def test_chain_settings_are_overridden_from_the_command_line_and_checked(capsys):
    """--chain KEY=VALUE sets a chain setting of the profile (the same grammar and checks as --set)."""
    from dmtrack.chain.plan import CHAINS, chain_settings

    parser, args = _report_args(["--profile", "smoke", "--chain", "fig7_sequences=5", "--chain", "k_sweep=[1,2]",
                                 "--seeds", "2"])
    from dmtrack.chain.cli import chain_options
    s = chain_settings("smoke", chain_options(args, {}))
    assert (s.fig7_sequences, s.k_sweep, s.seeds) == (5, (1, 2), 2) and CHAINS["smoke"].fig7_sequences != 5
    from dmtrack.cli import main
    assert main(["report", "--profile", "smoke", "--plan", "--chain", "no_such_setting=1"]) == 2
    line = capsys.readouterr().err.strip()
    assert "unknown chain setting(s): no_such_setting" in line and len(line.splitlines()) == 1
    assert main(["report", "--profile", "smoke", "--plan", "--chain", "fig7_sequences=many"]) == 2
    assert "fig7_sequences" in capsys.readouterr().err


def test_a_steps_printed_command_plans_the_same_chain_with_non_default_options(tmp_path, monkeypatch, capsys):
    """--readings final, --steps-sweep and --robust-variants reach the per-step commands of --plan --json: the
    command printed for 40_report plans the same steps with the same dependencies (before, it re-planned with
    the profile's readings and sweeps and waited on evaluations never planned: DependenciesNotDone)."""
    from dmtrack.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["report", "--profile", "smoke", "--reports", "r", "--work", "w", "--data-root", "d", "--readings", "final",
            "--steps-sweep", "3", "--robust-variants", "no_language"]
    assert main(argv + ["--plan", "--json"]) == 0
    plan = {s["step"]: s["deps"] for s in json.loads(capsys.readouterr().out)["steps"]}
    assert "20_evaluate/full_otb_lang_k1_steps3" in plan and not any("chain" in name for name in plan)
    command = shlex.split(_printed_command(main, argv, "40_report", capsys))
    assert command[:4] == ["python", "-m", "dmtrack", "report"] and command[-2:] == ["--step", "40_report"]
    assert main(command[3:-2] + ["--plan", "--json"]) == 0
    again = {s["step"]: s["deps"] for s in json.loads(capsys.readouterr().out)["steps"]}
    assert again == plan
    assert not (tmp_path / "w").exists()


def _printed_command(main, argv: list[str], step: str, capsys) -> str:
    assert main(argv + ["--plan", "--json"]) == 0
    return {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}[step]["command"]


# a chain run by a child process (the way `dmtrack report` runs it), so that the test can signal it
_CHAIN_SCRIPT = """
import sys
from pathlib import Path
from dmtrack.cli import run_command
from dmtrack.chain.graph import Step, run_chain

d = Path(sys.argv[1])
step = lambda name, out, **kw: Step(name, "sleep.ipynb", {"out": str(d / out)}, outputs=[str(d / out)], **kw)
steps = [step("slow/a", "a.pid"), step("slow/b", "b.pid"), step("after", "c.pid", deps=["slow/a"])]
sys.exit(run_command("report", lambda: run_chain(steps, d / "runs", d / "notebooks", jobs=2, log=lambda s: None)))
"""
# the step's kernel starts a child (as evaluation workers are) and both sleep; out = "<kernel pid> <child pid>"
_SLEEP_CELL = ("import os, subprocess, sys, time\nfrom pathlib import Path\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
               "Path(out + '.tmp').write_text(f'{os.getpid()} {child.pid}')\nos.replace(out + '.tmp', out)\ntime.sleep(120)")


def _running(pid: int) -> bool:
    import psutil  # an ipykernel dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_kills_the_running_kernels_and_leaves_their_steps_undone(tmp_path, signum):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "sleep.ipynb", _SLEEP_CELL)
    (tmp_path / "chain.py").write_text(_CHAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "chain.py"), str(tmp_path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = []
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f).exists() for f in ("a.pid", "b.pid")):  # both kernels inside their cell
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        pids = [int(p) for f in ("a.pid", "b.pid") for p in (tmp_path / f).read_text().split()]
        t0 = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)  # the old chain waited for the 120 s cells to end
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        for pid in [p for p in pids if _running(p)]:
            os.kill(pid, signal.SIGKILL)
    assert elapsed < 10 and proc.returncode == 128 + signum, (elapsed, proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"dmtrack report: error: interrupted by {signum.name}: step(s) slow/a, slow/b stopped, "
                               "not done; run the same command again to continue from there"), lines[0]
    runs = tmp_path / "runs"
    assert (runs / "slow" / "a.ipynb").exists() and not list(runs.rglob("*.json"))  # partial record, no stamp
    assert not (runs / "after.ipynb").exists()  # nothing started after the signal
    time.sleep(0.5)
    assert [p for p in pids if _running(p)] == []  # kernels and the processes they started: all gone


def test_a_finished_step_sends_no_sigint_and_leaves_no_process(tmp_path):
    """jupyter_client sends SIGINT to a kernel's process group before shutting it down; a kernel caught by
    it inside a handler printed `KeyboardInterrupt caught in kernel.` after a successful step."""
    (tmp_path / "notebooks").mkdir()
    child = ("import signal, sys, time\nfrom pathlib import Path\n"
             "signal.signal(signal.SIGINT, lambda *a: (Path(sys.argv[1]).write_text('SIGINT'), sys.exit(0)))\n"
             "Path(sys.argv[2]).write_text('ready')\ntime.sleep(120)")
    _notebook(tmp_path / "notebooks" / "spawn.ipynb",
              f"import subprocess, sys, time\nfrom pathlib import Path\nchild = {child!r}\n"
              "p = subprocess.Popen([sys.executable, '-c', child, out + '.sigint', out + '.ready'])\n"
              "while not Path(out + '.ready').exists():\n    time.sleep(0.05)\nPath(out).write_text(str(p.pid))")
    out = tmp_path / "o.txt"
    stamps = run_chain([Step("spawn", "spawn.ipynb", {"out": str(out)}, outputs=[str(out)])], tmp_path / "runs",
                       tmp_path / "notebooks", log=lambda s: None)
    pid = int(out.read_text())
    try:
        assert stamps[0]["status"] == "ran"
        deadline = time.monotonic() + 5
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (tmp_path / "o.txt.sigint").exists()  # the kernel's group got no SIGINT
        assert not _running(pid)  # what the step left running ended with its kernel
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def test_render_html_is_self_contained(tmp_path):
    import base64

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import io

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    cell = nbformat.v4.new_code_cell("print('secret source code')")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buf.getvalue()).decode(),
                                                                  "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("display_data", data={"text/html": "<table><tr><td>1</td></tr></table>"})]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title $x$"), cell])
    nbformat.write(nb, tmp_path / "r.ipynb")
    html = pipeline.render_html(tmp_path / "r.ipynb", tmp_path / "index.html", "## Run durations\n\n| a | b |\n|---|---|\n| 1 | 2 |").read_text()
    assert "secret source code" not in html  # code hidden
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="https?://', html)  # nothing loaded from the network
    assert html.count('src="data:image/png;base64,') == 1 and "<table>" in html and "Run durations" in html


def test_render_html_leaves_out_what_libraries_print_on_stderr(tmp_path):
    # the report began with a red "TqdmWarning: IProgress not found" box (timm imports tqdm.auto in the kernel)
    warning = ("/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update "
               "jupyter and ipywidgets.\n  from .autonotebook import tqdm as notebook_tqdm\n")
    cell = nbformat.v4.new_code_cell("import timm")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=warning),
                    nbformat.v4.new_output("stream", name="stdout", text="3 sequences re-scored\n"),
                    nbformat.v4.new_output("display_data", data={"text/markdown": "**held back**"})]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "r.ipynb")
    html = pipeline.render_html(tmp_path / "r.ipynb", tmp_path / "index.html").read_text()
    assert "3 sequences re-scored" in html and "<strong>held back</strong>" in html
    assert not re.search(r"\w+Warning: ", html) and "IProgress" not in html
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html  # no red box, whatever it says
    assert nbformat.read(tmp_path / "r.ipynb", as_version=4).cells[0].outputs[0].text == warning  # the notebook keeps it


def test_the_chain_tracks_the_benchmarks_the_report_shows():
    """The chain's own benchmark list (chain.plan.CHAIN_BENCHMARKS, what it tracks and where --other results
    may lie) and the paper's (dmtrack.paper.BENCHMARKS, Table 1's columns) are two names for the same four."""
    from dmtrack.chain.plan import CHAIN_BENCHMARKS
    from dmtrack.data import BENCHMARKS as LOADABLE

    assert sorted(CHAIN_BENCHMARKS) == sorted(paper.BENCHMARKS) == ["lasot", "lasot_ext", "otb_lang", "tnl2k"]
    assert set(CHAIN_BENCHMARKS) <= set(LOADABLE)


def test_gpu_pool_hands_out_and_takes_back():
    from dmtrack.chain.graph import GpuPool

    one, two = Step("one", "x.ipynb", {}), Step("two", "x.ipynb", {}, devices=2)
    pool = GpuPool(["3", "5", "7"], [one, two])
    assert pool.take(two) == ["3", "5"] and pool.free == ["7"] and pool.fits(one) and not pool.fits(two)
    assert pool.take(one) == ["7"] and not pool.fits(one)
    pool.give_back("two")
    assert pool.free == ["3", "5"] and pool.fits(two) and pool.held == {"one": ["7"]}
    with pytest.raises(ValueError, match=r"step\(s\) two need more GPUs than the 1 given"):
        GpuPool(["0"], [one, two])


def test_plan_of_the_demo_profile(tmp_path):
    paths = pipeline.ChainPaths("demo", tmp_path / "reports", tmp_path / "runs", tmp_path / "data")
    steps = pipeline.plan("demo", paths)
    names = [s.name for s in steps]
    assert names[0] == "00_data" and names[-2:] == ["30_visualize", "40_report"]
    # the base tracker, 6 variants x 4 seeds fine-tuned from it, the from-scratch arm's full x 3 seeds and the
    # authors arms' full x 2 seeds each (tests/test_paper_vs_authors.py)
    assert sum(n.startswith("10_train/") for n in names) == 1 + 6 * 4 + 3 + 2 * 2
    evals = [s for s in steps if s.name.startswith("20_evaluate/") and not s.params.get("arm")]
    otb = {(s.params["variant"], s.params["k"]) for s in evals if s.params["benchmarks"] == ["synthetic_otb_lang"]}
    assert {(r.variant, r.k) for r in paper.TABLE2} <= otb
    assert {("full", k) for k in range(1, 11)} <= otb  # the k sweep
    for b in paper.BENCHMARKS:  # Table 1: the full model at k=1 on the four suites
        assert any(s.params["benchmarks"] == [f"synthetic_{b}"] and s.params["k"] == 1 and s.params["variant"] == "full" for s in evals)
    drift = [s for s in evals if len(s.params["benchmarks"]) > 1]
    assert {s.params["variant"] for s in drift} == {"full", "no_language", "not_mask_driven"}
    # Table 2 under the chain reading too (row 1 samples nothing), in results folders of their own
    chain = {(s.params["variant"], s.params["k"]) for s in evals if s.params["average"] == "chain"}
    assert chain == {(r.variant, r.k) for r in paper.TABLE2 if r.variant != "no_diffusion"}
    assert "20_evaluate/full_otb_lang_k5c" in names and "20_evaluate/full_otb_lang_k5" in names
    # the steps sweep at k = 1: the demo's 3 steps is row 8 itself, 1 step is the chain reading at k = 1; under
    # the config's sampler (no eta key) in Table 2's folders, and under deterministic DDIM in its own
    sweep = {(s.params["steps_per_chain"], s.params.get("eta")): s.name for s in evals if s.params["steps_per_chain"] is not None}
    assert sweep == {(n, eta): f"20_evaluate/full_otb_lang_k1_steps{n}" + ("_eta0" if eta == 0 else "")
                     for n in (2, 5, 10) for eta in (None, 0.0)}
    # the language-robustness test: four variants at k = 1 on the LaSOT stand-in (a twin in every sequence)
    # under the three sentences; the true sentence's steps keep their parameters (no `sentence` key)
    robust = {(s.params["variant"], s.params.get("sentence", "true")): s.name for s in evals
              if s.params["benchmarks"] == ["synthetic_lasot"] and s.params["k"] == 1}
    assert robust == {(v, sn): f"20_evaluate/{v}_lasot_k1" + {"true": "", "misleading": "_mislead", "uninformative": "_uninf"}[sn]
                      for v in ("full", "not_mask_driven", "no_diffusion", "no_language")
                      for sn in ("true", "misleading", "uninformative")}
    mislead = next(s for s in evals if s.name == "20_evaluate/not_mask_driven_lasot_k1_mislead")
    assert mislead.outputs == [str(tmp_path / "runs" / "results" / "synthetic_lasot" / "dmtrack-not_mask_driven" /
                                   f"k1_mislead_seed{i}" / "scores_pytracking.json") for i in (0, 1)]
    assert steps[-1].params["robust_variants"] == ["full", "not_mask_driven", "no_diffusion", "no_language"]
    assert steps[-1].params["robust_seeds"] == [0, 1]  # two seeds: the least a verdict on the drops needs
    table_rows = {(r.variant, r.k) for r in paper.TABLE2} | {("full", 1)}
    for s in evals:  # Tables 1 and 2 for every seed; the robustness test for 2; the extra k values, steps and drift for seed 0
        in_tables = (len(s.params["benchmarks"]) == 1 and (s.params["variant"], s.params["k"]) in table_rows
                     and s.params["steps_per_chain"] is None and s.params.get("sentence") is None and "eta" not in s.params
                     and (s.params["benchmarks"] == ["synthetic_otb_lang"] or s.params["variant"] == "full"))
        robustness = s.params["benchmarks"] == ["synthetic_lasot"] and s.params["k"] == 1 and s.params["average"] == "final"
        assert s.params["seeds"] == ([0, 1, 2, 3] if in_tables else [0, 1] if robustness else [0]), s.name
        assert set(s.deps) == {f"10_train/{s.params['variant']}_seed{i}" for i in s.params["seeds"]}
    assert len(steps[-1].deps) == len(steps) - 1
    # a training step is keyed by its resolved config: a changed profile definition retrains
    from dmtrack.config import load_config
    train = next(s for s in steps if s.name == "10_train/no_language_seed2")
    base = str(tmp_path / "runs" / "train" / "base" / "seed0" / "model.pth")
    assert train.fingerprint["config"] == load_config("demo", "no_language", seed=2, pretrained=base).to_dict()
    from dmtrack.data.synthetic import preset_fingerprint
    assert steps[0].fingerprint["preset"] == preset_fingerprint("demo")  # an edited preset regenerates the data


def test_the_demo_chain_fine_tunes_every_variant_from_one_base_tracker(tmp_path):
    from dmtrack.chain.plan import CHAINS, plan
    from dmtrack.config import load_config

    paths = pipeline.ChainPaths("demo", tmp_path / "reports", tmp_path / "runs", tmp_path / "data")
    steps = {s.name: s for s in plan("demo", paths)}
    base, base_file = steps["10_train/base"], str(tmp_path / "runs" / "train" / "base" / "seed0" / "model.pth")
    assert base.deps == ["00_data"] and base.outputs == [base_file] and base.params["variant"] == "base"
    assert base.fingerprint["config"] == load_config("demo", "base", seed=0).to_dict()
    cfg = load_config("demo", "base")  # ViT + CE + centre head, trained from scratch with the scratch recipe
    assert (cfg.use_diffusion, cfg.use_language, cfg.epochs, cfg.backbone_lr, cfg.pretrained_file) == (False, False, 36, 5e-4, None)
    for v in VARIANTS:
        for seed in range(4):
            st = steps[f"10_train/{v}_seed{seed}"]
            assert st.deps == ["00_data", "10_train/base"] and st.params["overrides"] == {"pretrained": base_file}
            assert "arm" not in st.params  # the steps of the chain's protocol keep their parameters
    # the from-scratch arm: today's protocol for `full`, beside it (not after the base), at Table 2's rows
    for seed in range(3):
        st = steps[f"10_train/full-scratch_seed{seed}"]
        assert st.deps == ["00_data"] and st.params["overrides"] == {"pretrained": "none"} and st.params["arm"] == "scratch"
        assert st.outputs == [str(tmp_path / "runs" / "train" / "full-scratch" / f"seed{seed}" / "model.pth")]
    assert "10_train/full-scratch_seed3" not in steps  # the arm keeps 3 seeds (arm_seeds) while the chain trains 4
    arm = sorted(n for n, st in steps.items() if st.params.get("arm") == "scratch" and n.startswith("20_evaluate/"))
    assert arm == ["20_evaluate/full-scratch_otb_lang_k1", "20_evaluate/full-scratch_otb_lang_k5"]
    assert steps[arm[1]].outputs[0].endswith("synthetic_otb_lang/dmtrack-full-scratch/k5_seed0/scores_pytracking.json")
    assert steps[arm[1]].deps == [f"10_train/full-scratch_seed{i}" for i in range(3)]
    # pretrained=none is today's protocol (no base, no arm); a file of the user's is the base (the arm stays)
    for given, arm in (("none", False), (str(tmp_path / "ostrack.pth"), True)):
        s = dataclasses.replace(CHAINS["demo"], train={"pretrained": given})
        names = [st.name for st in plan("demo", paths, settings=s)]
        assert "10_train/base" not in names and bool([n for n in names if "scratch" in n]) is arm
    assert load_config("demo", "full", pretrained="none").epochs == 12 and load_config("demo", "full", pretrained="x").epochs == 6


def test_the_k_and_steps_sweeps_run_under_each_sampler_of_the_chain(tmp_path):
    """sweep_etas: the config's sampler runs in Table 2's folders with the parameters it always had (no eta key),
    every other one in k<k>_eta<e> folders of its own; sweep_etas=[1.0] turns the second one off."""
    import dataclasses

    paths = pipeline.default_paths("smoke", tmp_path / "r", tmp_path / "w", tmp_path / "d")
    both = {s.name: s for s in pipeline.plan("smoke", paths)}
    # smoke: k sweep 1, 2, 5, steps 1, 2 (its config's own 2: the k = 1 run; 1 step: the chain reading at k = 1)
    other = {n: s.params["eta"] for n, s in both.items() if "eta" in s.params}
    assert other == {f"20_evaluate/full_otb_lang_{t}_eta0": 0.0 for t in ("k1", "k2", "k5", "k1c")}
    assert both["20_evaluate/full_otb_lang_k5_eta0"].outputs == [
        str(tmp_path / "w" / "results" / "synthetic_otb_lang" / "dmtrack-full" / "k5_eta0_seed0" / "scores_pytracking.json")]
    settings = pipeline.chain_settings("smoke", pipeline.ChainOptions(chain_overrides=("sweep_etas=[1.0]",)))
    assert settings.sweep_etas == (1.0,)
    one = {s.name: s for s in pipeline.plan("smoke", paths, settings=settings)}
    assert set(both) - set(one) == set(other)
    for name, st in one.items():  # the config's sampler's steps are the steps they were: same parameters
        assert both[name].params == st.params and both[name].outputs == st.outputs, name
    # a config whose sampler is deterministic: eta 1 is then the other sampler
    det = dataclasses.replace(pipeline.CHAINS["smoke"], train={"sampler_eta": 0.0})
    flipped = {s.name: s.params.get("eta") for s in pipeline.plan("smoke", paths, settings=det) if "eta" in s.params}
    assert flipped == {f"20_evaluate/full_otb_lang_{t}_eta1": 1.0 for t in ("k1", "k2", "k5", "k1c")}
    authors = dataclasses.replace(pipeline.CHAINS["smoke"], train={"reading": "authors"})  # its sampler has no eta
    assert not [s.name for s in pipeline.plan("smoke", paths, settings=authors) if "eta" in s.params]
    for bad in ((), (1.0, 2.0)):
        with pytest.raises(pipeline.PreflightError, match="sweep_etas must list DDIM etas in"):
            pipeline.plan("smoke", paths, settings=dataclasses.replace(pipeline.CHAINS["smoke"], sweep_etas=bad))


def test_results_folders_name_the_reading_and_the_steps(tmp_path):
    import dataclasses

    from dmtrack.layout import EvalRun, run_tag

    # the names results already have (written out, not computed): final reading, chain, steps, sentences
    expected = [(EvalRun("full", 0, 5), "k5", "dmtrack-full/k5_seed0"),
                (EvalRun("full", 1, 5, "chain"), "k5c", "dmtrack-full/k5c_seed1"),
                (EvalRun("full", 1, 5, "maps"), "k5m", "dmtrack-full/k5m_seed1"),  # the authors' reading
                (EvalRun("no_ddim", 2, 1, steps=10), "k1_steps10", "dmtrack-no_ddim/k1_steps10_seed2"),
                (EvalRun("full", 0, 1, sentence="misleading"), "k1_mislead", "dmtrack-full/k1_mislead_seed0"),
                (EvalRun("no_language", 3, 1, sentence="uninformative"), "k1_uninf", "dmtrack-no_language/k1_uninf_seed3"),
                (EvalRun("full", 0, 5, eta=0.0), "k5_eta0", "dmtrack-full/k5_eta0_seed0"),
                (EvalRun("full", 0, 1, "chain", eta=0.5), "k1c_eta0.5", "dmtrack-full/k1c_eta0.5_seed0")]
    for run, tag, folder in expected:
        assert run.tag == tag == run_tag(run.k, run.average, run.steps, run.sentence, run.eta)
        assert run.folder(tmp_path, "synthetic_otb_lang") == tmp_path / "results" / "synthetic_otb_lang" / folder
    assert len({EvalRun("full", 0, 5), EvalRun("full", 0, 5, "final"), EvalRun("full", 1, 5)}) == 2  # a key
    with pytest.raises(dataclasses.FrozenInstanceError):
        EvalRun("full", 0, 5).k = 3
    with pytest.raises(ValueError, match="final reading only"):
        EvalRun("full", 0, 5, "chain", 3)
    with pytest.raises(ValueError, match="final, chain or maps"):
        EvalRun("full", 0, 5, "mean")
    with pytest.raises(ValueError, match="sentence must be one of"):
        EvalRun("full", 0, 1, sentence="wrong")


def test_a_run_of_other_settings_is_moved_aside_and_retrained(tmp_path):
    from dmtrack.data.synthetic import generate
    from dmtrack.layout import train_dir
    from dmtrack.chain.steps import train_variant

    data = tmp_path / "data"
    generate(data, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    over = dict(epochs=1, pairs_per_epoch=8)
    first = train_variant("smoke", "full", 0, tmp_path, data, over)
    stamp = first.stat().st_mtime_ns
    assert train_variant("smoke", "full", 0, tmp_path, data, over).stat().st_mtime_ns == stamp  # done: kept
    again = train_variant("smoke", "full", 0, tmp_path, data, dict(over, lr=5e-4))  # the profile changed
    aside = train_dir(tmp_path, "full", 0).with_name("seed0.replaced")
    assert (aside / "model.pth").stat().st_mtime_ns == stamp and again.exists()
    from dmtrack.model import load_checkpoint
    assert load_checkpoint(again)["config"]["lr"] == 5e-4


def test_a_variant_fine_tuned_from_an_older_base_tracker_is_retrained(tmp_path):
    from dmtrack.chain.steps import train_variant
    from dmtrack.data.synthetic import generate
    from dmtrack.layout import model_path, train_dir
    from dmtrack.model import load_checkpoint
    from dmtrack.provenance import file_sha256

    data = tmp_path / "data"
    generate(data, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    tiny = dict(epochs=1, pairs_per_epoch=8)
    base = train_variant("smoke", "base", 0, tmp_path, data, tiny)
    assert base == model_path(tmp_path, "base", 0) and load_checkpoint(base)["config"]["use_diffusion"] is False
    over = dict(tiny, pretrained=str(base))
    first = train_variant("smoke", "full", 0, tmp_path, data, over)
    assert load_checkpoint(first)["pretrained_sha256"] == file_sha256(base)
    stamp = first.stat().st_mtime_ns
    assert train_variant("smoke", "full", 0, tmp_path, data, over).stat().st_mtime_ns == stamp  # same base: done
    train_variant("smoke", "base", 0, tmp_path, data, dict(tiny, lr=5e-4))  # the base retrained under the same path
    again = train_variant("smoke", "full", 0, tmp_path, data, over)
    aside = train_dir(tmp_path, "full", 0).with_name("seed0.replaced")
    assert (aside / "model.pth").stat().st_mtime_ns == stamp and load_checkpoint(again)["pretrained_sha256"] == file_sha256(base)
    assert load_checkpoint(aside / "model.pth")["pretrained_sha256"] != file_sha256(base)


def test_report_cli_help(capsys):
    from dmtrack.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--profile" in out and "--seeds" in out and "--force" in out


def test_unknown_training_override_fails_before_any_step(tmp_path):
    with pytest.raises(pipeline.PreflightError, match="unknown config key.*nope"):
        pipeline.reproduce("smoke", reports=tmp_path / "r", work=tmp_path / "w", data=tmp_path / "d",
                           options=pipeline.ChainOptions(train_overrides={"nope": 1}), log=lambda s: None)
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_other_trackers_names_and_folders_are_checked_before_the_chain(tmp_path, monkeypatch, capsys):
    from dmtrack.cli import Parser, main
    from dmtrack.chain import cli as report_cli

    (tmp_path / "mm" / "lasot").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)  # the caller's working directory; the notebooks run in notebooks/
    assert pipeline.check_other("MMTrack", "mm") == tmp_path / "mm"
    assert pipeline.check_other("mm_2.1-b", str(tmp_path / "mm")) == tmp_path / "mm"
    for bad in ["../evil", "a/b", ".hidden", "-x", "", "x y", "static", "oracle-jitter", "dmtrack-full", "DMTrack-Full",
                "dmtrack-variant_of_tomorrow", "Static"]:
        with pytest.raises(ValueError, match=re.escape(f"{bad}=mm: ")):
            pipeline.check_other(bad, "mm")
    with pytest.raises(FileNotFoundError, match=f"no folder {re.escape(str(tmp_path / 'nope'))}"):
        pipeline.check_other("MMTrack", "nope")
    with pytest.raises(FileNotFoundError, match="holds none of lasot/, lasot_ext/, tnl2k/, otb_lang/"):
        pipeline.check_other("MMTrack", "empty")
    # the command line: DIR resolved as given; a bad NAME or DIR is one line naming the argument, exit 2
    parser = Parser(prog="dmtrack report")
    report_cli.add_arguments(parser)
    assert parser.parse_args(["--other", "MMTrack=mm"]).other == [("MMTrack", str(tmp_path / "mm"))]
    for arg, why in [("../evil=mm", "NAME must be"), ("static=mm", "would overwrite our own results"),
                     ("MMTrack=nope", "no folder"), ("MMTrack", "expects NAME=DIR")]:
        with pytest.raises(SystemExit) as e:
            main(["report", "--other", arg])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("dmtrack report: error: argument --other: ") and why in err
        assert err.count("\n") == 1
    assert main(["report", "--other", "mm=mm", "--other", "MM=mm", "--work", "w"]) == 2  # one folder on macOS
    assert capsys.readouterr().err == "dmtrack report: error: --other NAME given twice (names are compared ignoring case): mm\n"
    with pytest.raises(ValueError, match="static=mm"):  # the Python entry point checks them too, before any step
        pipeline.reproduce("smoke", reports=tmp_path / "r", work=tmp_path / "w", data=tmp_path / "d",
                           others={"static": "mm"}, log=lambda s: None)
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_notebooks_declare_every_parameter_the_chain_passes(tmp_path):
    import papermill as pm

    declared = {nb.name: set(pm.inspect_notebook(str(nb))) for nb in pipeline.NOTEBOOKS.glob("*.ipynb")}
    assert set(declared) == {"00_data.ipynb", "10_train.ipynb", "20_evaluate.ipynb", "30_visualize.ipynb", "40_report.ipynb"}
    for nb in pipeline.NOTEBOOKS.glob("*.ipynb"):  # one cell tagged `parameters`, the first code cell
        code = [c for c in nbformat.read(nb, 4).cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []) and sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for profile in ("smoke", "demo", "paper"):
        paths = pipeline.default_paths(profile, tmp_path / "r", tmp_path / "w", tmp_path / "d")
        for step in pipeline.plan(profile, paths):
            given = set(step.params) | set(step.runtime)
            assert given <= declared[step.notebook], (profile, step.name, given - declared[step.notebook])


def test_notebooks_parameter_defaults_are_the_demo_chains():
    """A notebook run by hand (no parameters) runs the demo experiment: its defaults are what the demo plan
    passes, but the folders (relative to notebooks/ there) and, in 20_evaluate, which evaluation it is."""
    import ast

    import papermill as pm

    paths = pipeline.default_paths("demo", "/r", "/w", "/d")
    which = {"work", "data_dir", "manifest", "data_notebook", "visualize_notebook"}
    # 20_evaluate: Table 2's evaluation of the full model at k = 1, on one seed by hand (not the demo's 3);
    # batch: the plan passes it only when the chain's track_batch is not 1 (the paper chain relies on the
    # default 1), so the demo's 8 is not the default
    # 10_train: the full model's seed 0, which the chain fine-tunes from its base tracker (pretrained=<its
    # path under the work folder>); by hand, without that file, it trains from scratch (the scratch recipe)
    first = {"20_evaluate.ipynb": "20_evaluate/full_otb_lang_k1", "10_train.ipynb": "10_train/full_seed0"}
    by_hand = {("20_evaluate.ipynb", "batch"), ("20_evaluate.ipynb", "seeds"), ("10_train.ipynb", "overrides")}
    steps = {}
    for st in pipeline.plan("demo", paths):
        if first.get(st.notebook, st.name) == st.name:
            steps.setdefault(st.notebook, st)
    for notebook, st in steps.items():
        declared = pm.inspect_notebook(str(pipeline.NOTEBOOKS / notebook))
        defaults = {k: ast.literal_eval(v["default"]) for k, v in declared.items() if k in st.params and k not in which}
        given = {k: v for k, v in st.params.items() if k in defaults and (notebook, k) not in by_hand}
        assert {k: defaults[k] for k in given} == given, notebook
    assert steps["40_report.ipynb"].params["robust_seeds"] == [0, 1] and steps["40_report.ipynb"].params["budget_minutes"] == 60.0


def test_a_second_report_on_a_busy_work_folder_stops_before_any_step(tmp_path, monkeypatch):
    import subprocess
    import sys

    from dmtrack.io import RunLocked

    work, hold = tmp_path / "w", "import sys, time\nfrom dmtrack.io import exclusive_lock\n" \
        "with exclusive_lock(sys.argv[1], 'dmtrack report'):\n    print('locked', flush=True)\n    time.sleep(600)\n"
    first = subprocess.Popen([sys.executable, "-c", hold, str(work)], stdout=subprocess.PIPE, text=True)
    monkeypatch.setattr(pipeline, "run_chain", lambda *a, **k: pytest.fail("the chain ran in a locked work folder"))
    try:
        assert first.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=re.escape(f"{work}: another dmtrack report is running in this folder "
                                                      f"(pid {first.pid}: ")):
            pipeline.reproduce("smoke", reports=tmp_path / "r", work=work, data=tmp_path / "d", log=lambda s: None)
    finally:
        first.kill()
        first.wait()
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists() and sorted(work.iterdir()) == [work / ".lock"]


# --- before the chain runs: preflight, the plan and its estimate -------------------------------------------
def test_paper_profile_refuses_to_start_without_its_weights(tmp_path, capsys):
    from dmtrack.cli import main

    args = ["report", "--profile", "paper", "--reports", str(tmp_path / "r"), "--work", str(tmp_path / "w")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dmtrack report: error: profile paper trains at the paper's settings")
    assert "pretrained= is not set" in err and "--set pretrained=none" in err
    assert "text_encoder=minilm is not a BERT directory" in err and "--allow-minilm" in err
    assert 'README.md, section "Pointing the project at real datasets and weights"' in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()
    assert main(args + ["--set", f"pretrained={tmp_path / 'nope.pth'}", "--allow-minilm"]) == 2
    assert f"pretrained={tmp_path / 'nope.pth'}: no such file" in capsys.readouterr().err


def test_preflight_resolves_paths_and_records_the_weights(tmp_path, monkeypatch):
    import hashlib

    from dmtrack.provenance import folder_sha256
    from dmtrack.chain.preflight import preflight

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "ostrack.pth").write_bytes(b"weights")
    bert = tmp_path / "w" / "bert-base-uncased"
    bert.mkdir()
    (bert / "config.json").write_text("{}")
    (bert / "vocab.txt").write_text("[PAD]\n")
    over = {"pretrained": "w/ostrack.pth", "text_encoder": "w/bert-base-uncased", "depth": 12}
    rec = preflight("paper", over, [0, 1], require_weights=True)  # relative paths: against the caller's folder
    assert rec["overrides"] == {"pretrained": str(tmp_path / "w" / "ostrack.pth"), "text_encoder": str(bert), "depth": 12}
    assert rec["weights"]["pretrained"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    te = rec["weights"]["text_encoder"]
    files = [("config.json", b"{}"), ("vocab.txt", b"[PAD]\n")]
    expect = hashlib.sha256("".join(f"{n}\0{hashlib.sha256(c).hexdigest()}\n" for n, c in files).encode()).hexdigest()
    assert te["name"] == "bert-base-uncased" and te["files"] == 2 and te["sha256"] == expect == folder_sha256(bert)[0]
    assert rec["config_changes"]["depth"] == [12, 12] and rec["data_env"]["DMTRACK_DATA"] == str(tmp_path / "data")
    # the explicit opt-outs: scratch training, and the packaged MiniLM with allow_minilm
    rec = preflight("paper", {"pretrained": "none"}, [0], require_weights=True, allow_minilm=True)
    assert rec["weights"]["pretrained"] == dict(setting="none", path=None, sha256=None, note="random initialisation")
    assert rec["weights"]["text_encoder"]["setting"] == "minilm" and len(rec["weights"]["text_encoder"]["sha256"]) == 64


def test_every_config_of_the_chain_is_validated_before_the_first_step(tmp_path):
    with pytest.raises(pipeline.PreflightError, match=r"profile smoke, variant full, seed 0: config key 'ce_layers' = \(5,\)"):
        pipeline.reproduce("smoke", reports=tmp_path / "r", work=tmp_path / "w", data=tmp_path / "d",
                           options=pipeline.ChainOptions(train_overrides={"ce_layers": [5]}), log=lambda s: None)
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_manifest_seeds_agree_with_the_settings(tmp_path):
    settings = pipeline.chain_settings("demo", pipeline.ChainOptions(seeds=1, max_frames=7))
    paths = pipeline.ChainPaths("demo", tmp_path / "reports", tmp_path / "runs", tmp_path / "data")
    m = json.loads(pipeline.write_manifest(paths, settings, [0], {}, []).read_text())
    assert m["seeds"] == [0] and m["settings"]["seeds"] == 1 and m["max_frames"] == m["settings"]["max_frames"] == 7
    assert pipeline.chain_settings("paper", pipeline.ChainOptions(k_sweep=[1, 5])).k_sweep == (1, 5)
    with pytest.raises(pipeline.PreflightError, match="max_frames must be a positive integer, got 0"):
        pipeline.chain_settings("smoke", pipeline.ChainOptions(max_frames=0))


def _calibration(**kw):
    from dmtrack.chain.estimate import Calibration

    return Calibration(**{**dict(device="cpu", threads=1, batch=2, train_s_per_pair=0.1, frame_s={1: 0.02, 5: 0.06},
                                 seconds=1.0, text_encoder="minilm", notebook_s=3.0), **kw})


def test_notebooks_run_on_the_project_kernel_and_30_visualize_takes_a_sequence_and_frame():
    import papermill as pm

    from dmtrack.chain import graph as chain

    installed = re.search(r"ipykernel install --user --name (\S+)", (REPO / "Makefile").read_text()).group(1)
    for nb in pipeline.NOTEBOOKS.glob("*.ipynb"):  # what `make setup` installs and `make lab` opens them with
        assert nbformat.read(nb, 4).metadata.kernelspec.name == installed == chain.KERNEL == "dmtrack", nb.name
    path = pipeline.NOTEBOOKS / "30_visualize.ipynb"
    params = pm.inspect_notebook(str(path))
    assert params["sequence"]["default"] == "None" and params["frame"]["default"] == "None"
    code = [c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
    samples = next(i for i, c in enumerate(code) if "sampling_chain(" in c)
    assert not any("for v in variants" in c for c in code[:samples])  # the samples load the full model only


def test_visualize_waits_for_training_and_the_scores_it_picks_sequences_from():
    plan = pipeline.plan("smoke", pipeline.default_paths("smoke", "/r", "/w", "/d"))
    vis = next(s for s in plan if s.name == "30_visualize")
    assert vis.params["benchmark"] == "synthetic_tnl2k"
    variants = [s.name for s in plan if s.name.startswith("10_train/") and s.params["variant"] in VARIANTS
                and not s.params.get("arm")]  # Fig. 7 draws the six variants (not the base tracker, not an arm)
    assert len(variants) == 6 and vis.deps == variants + ["20_evaluate/full_tnl2k_k1"]


def test_plan_estimate_follows_the_cost_model():
    from dmtrack.chain import estimate

    paths = pipeline.default_paths("smoke", "/r", "/w", "/d")
    steps = pipeline.plan("smoke", paths)
    benches = {b for s in steps if s.name.startswith("20_evaluate/") for b in s.params["benchmarks"]}
    sizes = {b: dict(sequences=2, frames=24, source="test", seconds=0.5) for b in benches}
    est = estimate.estimate("smoke", steps, sizes, _calibration(), jobs=2)
    by = {s["step"]: s for s in est["steps"]}
    assert by["10_train/full_seed0"]["work"] == dict(variant="full", seed=0, epochs=2, steps=8, batch=4, pairs=32)
    assert by["10_train/full_seed0"]["seconds"] == pytest.approx(32 * 0.1 + 3)  # pairs x s/pair + notebook start
    assert by["20_evaluate/full_otb_lang_k5"]["seconds"] == pytest.approx(24 * 0.06 + 3)
    assert by["20_evaluate/full_otb_lang_k2"]["seconds"] == pytest.approx(24 * 0.03 + 3)  # linear in k: 0.02 + 0.01 (k - 1)
    assert by["20_evaluate/no_diffusion_otb_lang_k1"]["seconds"] == pytest.approx(24 * 0.02 + 3)
    assert by["20_evaluate/full_drift_k1"]["work"]["frames"] == 48
    assert by["00_data"]["seconds"] == pytest.approx(3 * 0.5 * len(sizes) + 3)
    assert by["30_visualize"]["seconds"] == pytest.approx(5 * 2 * 12 * 0.06 + 2 * 12 * 0.02 + 3)  # no_diffusion at k=1
    assert by["40_report"]["seconds"] == 3.0 and est["not_estimated"] == []
    assert est["total_seconds"] == pytest.approx(sum(s["seconds"] for s in est["steps"]))
    assert est["wall_seconds"] == pytest.approx(est["total_seconds"] / 2)
    text = estimate.format_plan(est)
    assert "10_train/full_seed0" in text and "2 epochs, 8 steps x 4 pairs = 32 pairs" in text and "total:" in text
    logs = []
    progress = estimate.Progress(est, logs.append)
    progress([])
    progress([dict(step="00_data", status="ran", seconds=2 * by["00_data"]["seconds"])])  # twice as slow as estimated
    left = (est["total_seconds"] - by["00_data"]["seconds"]) * 2 / 2
    assert logs[0].startswith(f"[eta ] 0/{len(steps)} steps done")
    assert logs[1].startswith(f"[eta ] 1/{len(steps)} steps done") and f"about {estimate.duration(left)} left" in logs[1]
    assert "00_data x 2.00" in logs[1]
    # each stage is scaled by its own steps (trainings 4x faster than planned); a stage with none
    # done yet by all the steps run so far
    data_s, train_s = by["00_data"]["seconds"], by["10_train/full_seed0"]["seconds"]
    progress([dict(step="00_data", status="ran", seconds=2 * data_s),
              dict(step="10_train/full_seed0", status="ran", seconds=train_s / 4)])
    overall = (2 * data_s + train_s / 4) / (data_s + train_s)
    done = {"00_data", "10_train/full_seed0"}
    left = sum(s["seconds"] * (0.25 if s["step"].startswith("10_train") else overall)
               for s in est["steps"] if s["step"] not in done) / 2
    assert f"about {estimate.duration(left)} left" in logs[2] and "10_train x 0.25" in logs[2]


def _robust_runs(root, aucs: dict, seeds=(0, 1)):
    """{(variant, sentence): {sequence: AUC}} written as the pipeline's results folders (synthetic LaSOT, k=1);
    seed s adds s to every AUC."""
    from dmtrack.layout import EvalRun
    for (variant, sentence), per in aucs.items():
        for seed in seeds:
            _write_run(root, "synthetic_lasot", f"dmtrack-{variant}", EvalRun(variant, seed, 1, sentence=sentence).param, variant, 1,
                       seed, {n: _seq(a + seed) for n, a in per.items()}, sentence=sentence)
    return results.Results(*results.load_runs(root), synthetic=True)


def test_robustness_table_drops_control_and_verdict(tmp_path):
    names = [f"s{j}-1" for j in range(5)]
    true = {n: 60.0 + 3 * j for j, n in enumerate(names)}
    aucs = {("full", "true"): true, ("full", "misleading"): {n: a - 2 for n, a in true.items()},
            ("full", "uninformative"): {n: a - 1 for n, a in true.items()},
            ("not_mask_driven", "true"): true,  # drops 10, 11, 10, 11, 10 under the misleading sentence: mean 10.4
            ("not_mask_driven", "misleading"): {n: a - 10 - j % 2 for j, (n, a) in enumerate(true.items())},
            ("not_mask_driven", "uninformative"): true}
    aucs.update({("no_language", s): true for s in ("true", "misleading", "uninformative")})
    res = _robust_runs(tmp_path / "results", aucs)
    t = sweeps.robustness(res, ["full", "not_mask_driven", "no_diffusion", "no_language"])
    full, nmd, blind = t.loc["full"], t.loc["not_mask_driven"], t.loc["no_language"]
    assert full.auc_true == pytest.approx(66.5) and full.auc_misleading == pytest.approx(64.5)  # mean of 60..72, + 0.5 seed
    # the same drop on every sequence and seed: the CI is that drop
    assert (full.drop_misleading, full.drop_misleading_low, full.drop_misleading_high) == pytest.approx((2, 2, 2))
    assert full.drop_uninformative == pytest.approx(1.0) and nmd.drop_uninformative == 0.0
    assert nmd.drop_misleading == pytest.approx(10.4) and nmd.drop_misleading_low < 10.4 < nmd.drop_misleading_high
    assert (blind.drop_misleading, blind.drop_misleading_low, blind.drop_misleading_high) == (0.0, 0.0, 0.0)
    assert blind.note == "control: drops zero within noise" and (blind.seeds, blind.sequences) == (2, 5)
    assert t.loc["no_diffusion", "note"] == "not run under all three sentences"
    v = t.loc["full vs not_mask_driven"]  # its drop minus full's: 10.4 - 2
    assert v.drop_misleading == pytest.approx(8.4) and v.drop_misleading_low > 0 and v.note.startswith("holds (")
    assert "full vs no_diffusion" not in t.index  # not run
    # a control that moves with the sentence says the test itself is broken
    aucs[("no_language", "misleading")] = {n: a - 5 for n, a in true.items()}
    bad = sweeps.robustness(_robust_runs(tmp_path / "bad", aucs), ["full", "no_language"])
    assert bad.loc["no_language", "note"].startswith("control FAILS")
    # the true-sentence tables never see the other sentences' runs
    assert res.summary("dmtrack-not_mask_driven", "synthetic_lasot", 1, "pytracking")["auc"] == pytest.approx(66.5)


def test_within_test_pairs_models_and_sequences():
    a = np.array([[10.0, 20, 30, 40], [12, 22, 32, 42]])
    t = stats.within_test(a, a - np.array([1.0, 3, 1, 3]), 0.95)
    # one source only, the sequences: differences 1, 3, 1, 3 (mean 2); the seeds add nothing, so df = 4 - 1
    # and the bootstrap's SE is the differences' plug-in sd (1) over sqrt(4)
    assert t.diff.estimate == pytest.approx(2.0) and t.df == pytest.approx(3.0)
    assert t.se == pytest.approx(0.5, rel=0.05) and 0 < t.diff.low < 2 < t.diff.high
    with pytest.raises(ValueError, match="same seeds and sequences"):
        stats.within_test(a, a[:1], 0.95)


def test_drift_sweep_gives_differences_against_no_language_on_the_same_videos(tmp_path):
    root, names = tmp_path / "results", [f"c-{j}" for j in range(5)]
    for level, shift in ((0.5, 0.0), (1.0, 10.0)):  # the videos of level 1.0 are easier for every variant
        bench = f"synthetic_drift_{level:.2f}"
        for variant, gain in (("full", 4.0), ("no_language", 0.0)):
            _write_run(root, bench, f"dmtrack-{variant}", "k1_seed0", variant, 1, 0,
                       {n: _seq(40 + shift + gain + j) for j, n in enumerate(names)})
    dr = sweeps.drift_sweep(results.Results(*results.load_runs(root), synthetic=True), [0.5, 1.0], ["full", "no_language"], 1)
    full = dr[dr.variant == "full"].set_index("level")
    assert list(full.auc) == [46.0, 56.0]  # the level moves the AUC by 10 ...
    # ... but not the difference on the same videos: +4 on every sequence, so the paired CI is 4 too
    assert list(full.vs_no_language) == [4.0, 4.0] and list(full.vs_no_language_low) == [4.0, 4.0]
    assert dr[dr.variant == "no_language"].vs_no_language.isna().all()
