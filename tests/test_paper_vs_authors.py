"""The paper, the authors' code and this study (issue 21): the component table (dmtrack.authors_reading) naming a file
and line of both codebases and written into docs/method.md, the chain's arms that train the full model under
reading=authors with and without the scramble (dmtrack.chain.plan), and the report's paired comparisons of the two
readings on a results tree written by hand (dmtrack.report.paper_vs_authors)."""
import dataclasses
import json
import re

import numpy as np
import pytest

from dmtrack import authors_reading as ar
from dmtrack.chain.plan import CHAINS, ChainPaths, arm_readings, chain_arms, plan
from dmtrack.config import load_config
from dmtrack.layout import ARMS, EvalRun, model_name, step_arm
from dmtrack.report import header, paper_vs_authors, results


# ----------------------------------------------------------------------------- the component table
def test_every_component_row_names_a_file_and_line_of_both_codebases():
    names = [c.name for c in ar.COMPONENTS]
    for wanted in ("schedule", "denoiser", "fusion", "filter", "GT mask", "GT-CE", "double sampling", "loss choice",
                   "head inputs", "structure loss", "initialisation", "sizes", "CE", "recipe", "test-time averaging",
                   "seeding", "text reading"):  # issue 21's list
        assert wanted in names, wanted
    assert [c.no for c in ar.COMPONENTS] == list(range(1, 25))  # docs/authors_code.md's rows, in order
    lines = ar.table_markdown().splitlines()[2:]
    assert len(lines) == len(ar.COMPONENTS)
    for c, line in zip(ar.COMPONENTS, lines):
        cells = [x.strip() for x in line.strip("|").split(" | ")]
        assert re.search(r"`[AE]:[\w/.-]+\.(py|yaml):\d+`", cells[3]), (c.no, cells[3])  # the authors' file:line
        ours = re.search(r"`(dmtrack/[\w/]+\.py):(\d+)`", cells[4])
        assert ours, (c.no, cells[4])
        # the line named holds what the row points at (the anchor), so a moved definition moves the line
        text = (ar.ROOT / ours[1]).read_text().splitlines()[int(ours[2]) - 1]
        assert c.ours_at[1] in text and ours[1] == c.ours_at[0], (c.no, text)
        if c.switch_at:
            assert re.search(r"`dmtrack/[\w/]+\.py:\d+`", cells[5]), (c.no, cells[5])
    assert ar.source_line("dmtrack/layout.py", "def step_arm(") > 1
    with pytest.raises(ValueError, match="0 lines hold 'no such text'"):
        ar.source_line("dmtrack/layout.py", "no such text")
    with pytest.raises(ValueError, match="lines hold 'import'"):  # ambiguous: several lines
        ar.source_line("dmtrack/layout.py", "import")


def test_docs_method_md_holds_the_table_the_rows_make():
    text = (ar.ROOT / "docs" / "method.md").read_text()
    block = text[text.index(ar.BEGIN):text.index(ar.END) + len(ar.END)]
    assert block == ar.docs_block(), "docs/method.md is out of date: run python -m dmtrack.authors_reading"


def test_the_two_facts_say_how_they_were_established():
    facts = ar.facts_markdown()
    assert facts.startswith("1. **The paper's 256 configuration cannot run.**") and "\n2. **The mask features" in facts
    assert "`cross_attention.py:83`" in facts and "`A:models/ostrack/ostrack.py:237`" in facts
    assert facts.count("Established by") == 2


# ----------------------------------------------------------------------------- the chain's arms
def _paths(tmp_path, profile="demo"):
    return ChainPaths(profile, tmp_path / "reports", tmp_path / "runs", tmp_path / "data")


def test_the_demo_chain_trains_full_under_the_authors_reading_beside_the_paper_reading(tmp_path):
    steps = {s.name: s for s in plan("demo", _paths(tmp_path))}
    base_file = str(tmp_path / "runs" / "train" / "base" / "seed0" / "model.pth")
    # two seeds per authors arm (the demo's arm_seeds), fine-tuned from the same base tracker as the paper reading
    for arm, extra in (("authors", {}), ("authors-noscramble", {"authors_view_scramble": False})):
        names = sorted(n for n, st in steps.items() if st.params.get("arm") == arm)
        assert names == [f"10_train/full-{arm}_seed0", f"10_train/full-{arm}_seed1", f"20_evaluate/full-{arm}_otb_lang_k1",
                         f"20_evaluate/full-{arm}_otb_lang_k5", f"20_evaluate/full-{arm}_otb_lang_k5m"]
        for seed in (0, 1):
            st = steps[f"10_train/full-{arm}_seed{seed}"]
            assert st.deps == ["00_data", "10_train/base"] and st.params["seed"] == seed
            assert st.params["overrides"] == {"pretrained": base_file, "reading": "authors", **extra}
            assert st.fingerprint["config"] == load_config("demo", "full", seed=seed, pretrained=base_file,
                                                           reading="authors", **extra).to_dict()
        # Table 2's full rows under final, and k = 5 under the authors' maps (k = 1 maps is one step: the final reading)
        k5m = steps[f"20_evaluate/full-{arm}_otb_lang_k5m"]
        assert (k5m.params["k"], k5m.params["average"], k5m.params["seeds"]) == (5, "maps", [0, 1])
        assert k5m.outputs[1].endswith(f"synthetic_otb_lang/dmtrack-full-{arm}/k5m_seed1/scores_pytracking.json")
        assert k5m.deps == [f"10_train/full-{arm}_seed{i}" for i in (0, 1)]
    # the paper reading's steps keep their parameters (no arm, no reading)
    assert "arm" not in steps["10_train/full_seed0"].params and steps["10_train/full_seed0"].params["overrides"] == {"pretrained": base_file}
    assert steps["10_train/full-scratch_seed2"].params["overrides"] == {"pretrained": "none"}  # the scratch arm: 3 seeds
    assert sum(n.startswith("10_train/") for n in steps) == 1 + 6 * 4 + 3 + 2 * 2


def test_an_arm_the_chains_own_trainings_already_are_is_not_trained_twice(tmp_path):
    demo = CHAINS["demo"]
    assert chain_arms(demo) == {"scratch": ("full",), "authors": ("full",), "authors-noscramble": ("full",)}
    # a chain trained under reading=authors: its own trainings are the authors arm; the scramble arm stays
    authors = dataclasses.replace(demo, train={"reading": "authors"})
    assert chain_arms(authors) == {"scratch": ("full",), "authors-noscramble": ("full",)}
    names = [s.name for s in plan("demo", _paths(tmp_path), settings=authors)]
    assert "10_train/full-authors-noscramble_seed0" in names and not [n for n in names if "-authors_" in n]
    # from scratch (pretrained=none): no scratch arm, the authors arms from scratch too (no base to wait for)
    scratch = dataclasses.replace(demo, train={"pretrained": "none"})
    assert set(chain_arms(scratch)) == {"authors", "authors-noscramble"}
    st = {s.name: s for s in plan("demo", _paths(tmp_path), settings=scratch)}["10_train/full-authors_seed0"]
    assert st.deps == ["00_data"] and st.params["overrides"] == {"pretrained": "none", "reading": "authors"}
    with pytest.raises(KeyError, match="'authorz'.*must name an arm of scratch, authors, authors-noscramble"):
        chain_arms(dataclasses.replace(demo, arms={"authorz": ("full",)}))
    with pytest.raises(KeyError, match="variants of full"):
        chain_arms(dataclasses.replace(demo, arms={"authors": ("fool",)}))
    # no arms in the paper profile
    assert chain_arms(CHAINS["paper"]) == {}


def test_the_readings_an_arm_is_evaluated_under():
    demo = CHAINS["demo"]
    assert arm_readings("demo", demo, "authors", "full", 5) == ("final", "maps")
    assert arm_readings("demo", demo, "authors", "full", 1) == ("final",)  # maps at k = 1: one chain of one step
    assert arm_readings("demo", demo, "authors", "no_diffusion", 5) == ("final",)  # samples nothing
    assert arm_readings("demo", demo, "scratch", "full", 5) == ("final",)  # the paper reading tracks with final
    two = dataclasses.replace(demo, train={"sampling_steps": 2})  # with two steps per chain k = 1 maps differs
    assert arm_readings("demo", two, "authors", "full", 1) == ("final", "maps")


def test_arms_name_models_and_steps():
    assert ARMS["scratch"] == {"pretrained": "none"} and ARMS["authors"] == {"reading": "authors"}
    from dmtrack.config import SCRATCH
    assert ARMS["scratch"]["pretrained"] == SCRATCH
    assert model_name("full", "authors-noscramble") == "full-authors-noscramble"
    with pytest.raises(ValueError, match="arm must be one of"):
        model_name("full", "paper")
    assert EvalRun("full", 1, 5, "maps", arm="authors").folder("w", "b").as_posix() == "w/results/b/dmtrack-full-authors/k5m_seed1"
    for step, arm in (("10_train/full-authors_seed0", "authors"), ("20_evaluate/full-authors-noscramble_otb_lang_k5m",
                      "authors-noscramble"), ("10_train/no_gt_ce-scratch_seed2", "scratch"), ("10_train/base", ""),
                      ("20_evaluate/no_diffusion_otb_lang_k1", ""), ("40_report", "")):
        assert step_arm(step) == arm, step


# ----------------------------------------------------------------------------- the report
# 6 sequences with difficulty C, and noise E per seed (zero row sums: each seed's mean is the row's mu)
C = np.array([-5.0, -3, -1, 1, 3, 5])
E = np.array([[1.0, -1, 0, 1, -1, 0], [-1.0, 0, 1, -1, 0, 1], [0.0, 1, -1, 0, 1, -1]])


def _write(root, tracker, param, k, seed, values, average="final"):
    folder = root / "synthetic_otb_lang" / tracker / param
    folder.mkdir(parents=True)
    (folder / "evaluate.json").write_text(json.dumps(dict(benchmark="synthetic_otb_lang", variant="full", samples=k,
                                                          seed=seed, average=average)))
    per = {f"S{j}": dict(auc=float(v), precision=50.0, norm_precision=40.0, op50=50.0, op75=25.0) for j, v in enumerate(values)}
    overall = {m: float(np.mean([p[m] for p in per.values()])) for m in ("auc", "precision", "norm_precision", "op50", "op75")}
    (folder / "scores_pytracking.json").write_text(json.dumps(dict(protocol="pytracking", n_sequences=6, overall=overall,
                                                                   per_sequence=per)))


def _readings_runs(root):
    """paper (3 seeds; seed 2 far off, 100, so that using it would show), authors and authors without the scramble
    (2 seeds): mean AUC per row, every cell mu + C + E[seed] (authors k1: the seeds' noise swapped)."""
    rows = [("dmtrack-full", 1, "final", 60.0), ("dmtrack-full", 5, "final", 62.0),
            ("dmtrack-full-authors", 1, "final", 60.0), ("dmtrack-full-authors", 5, "final", 55.0),
            ("dmtrack-full-authors", 5, "maps", 58.0), ("dmtrack-full-authors-noscramble", 1, "final", 70.0),
            ("dmtrack-full-authors-noscramble", 5, "final", 65.0), ("dmtrack-full-authors-noscramble", 5, "maps", 68.0)]
    for tracker, k, average, mu in rows:
        for seed in (0, 1, 2) if tracker == "dmtrack-full" else (0, 1):
            noise = E[1 - seed] if tracker == "dmtrack-full-authors" and k == 1 else E[seed]
            values = np.full(6, 100.0) if seed == 2 else mu + C + noise
            _write(root, tracker, f"k{k}{'m' if average == 'maps' else ''}_seed{seed}", k, seed, values, average)
    return results.Results.load(root, synthetic=True)


def test_the_paper_against_the_authors_reading_paired_on_seeds_and_sequences(tmp_path):
    res = _readings_runs(tmp_path / "results")
    t = paper_vs_authors.comparison_table(res, {})
    assert list(t.index) == ["the authors' training, k=1", "the scramble, k=1", "the authors' training, k=5", "the authors' whole reading, k=5", "the scramble, k=5",
                             "the scramble under maps, k=5", "the authors' averaging, k=5"]
    assert len(paper_vs_authors.COMPARISONS) == 7
    diff = lambda label: t.loc[label, "_diff"].estimate
    # the differences of the rows' mus over seeds 0, 1 only (paper's seed 2, at 100, is no part of them)
    assert [diff(label) for label in t.index] == pytest.approx([0.0, -10.0, -7.0, -4.0, -10.0, -10.0, 3.0])
    assert (t["seeds"] == "0, 1").all() and (t["sequences"] == 6).all()
    assert t.loc["the authors' training, k=5", "B: AUC [95% CI]"].startswith("62.0 [")
    assert t.loc["the authors' training, k=5", "A"] == "authors (final)" and t.loc["the authors' training, k=5", "B"] == "paper (final)"
    # maps - final on the same models: every cell 3 apart, so the within-model test's CI is 3 exactly
    d = t.loc["the authors' averaging, k=5", "_diff"]
    assert (d.low, d.high) == pytest.approx((3.0, 3.0)) and t.loc["the authors' averaging, k=5", "result"] == "authors (maps) higher"
    # the same mean, the seeds' noise swapped: the CI holds 0
    k1 = t.loc["the authors' training, k=1", "_diff"]
    assert k1.low < 0 < k1.high and t.loc["the authors' training, k=1", "result"] == "no resolvable difference"
    assert t.loc["the scramble, k=5", "result"] == "authors without the scramble (final) higher"
    cells = paper_vs_authors.measured_cells(t)
    assert cells["scramble"].startswith("scrambled - unscrambled (authors_view_scramble): -10.0 [")
    assert cells["scramble"].endswith("AUC (the scramble, k=5, below)")
    assert cells["reading"].startswith("authors - paper (every switch together, not this one alone): -7.0 [")
    assert cells["averaging"] == "maps - final on the authors' models (test_average): +3.0 [+3.0, +3.0] AUC (the authors' averaging, k=5, below)"
    section = paper_vs_authors.section_markdown(t)
    assert cells["scramble"] in section and section.count(cells["reading"]) == 14  # the switch rows, measured together
    shown = paper_vs_authors.shown(t)
    assert "_diff" not in shown and "A - B [99.3% CI]" in shown  # 1 - 0.05 / 7
    assert "7 of 7 comparisons run; each CI at 99.3% (Bonferroni over the 7)." in paper_vs_authors.summary_markdown(t)


def test_a_chain_without_the_arms_or_under_the_authors_reading(tmp_path):
    res = _readings_runs(tmp_path / "results")
    # trained under reading=authors: its own trainings ('' arm) are the authors', no paper row
    assert paper_vs_authors.role_arms({"reading": "authors"}) == {"paper": None, "authors": "", "noscramble": "authors-noscramble"}
    assert paper_vs_authors.role_arms({"reading": "authors", "authors_view_scramble": False})["noscramble"] == ""
    t = paper_vs_authors.comparison_table(res, {"reading": "authors"})
    assert t.loc["the authors' training, k=5", "result"] == "not run"
    assert t.loc["the authors' training, k=5", "why"] == "not evaluated: paper (final)"
    assert t.loc["the scramble, k=5", "_diff"].estimate == pytest.approx(62.0 - 65.0)  # '' (62) plays the authors' models
    empty = paper_vs_authors.comparison_table(results.Results.load(tmp_path / "none", synthetic=True), {})
    assert (empty["result"] == "not run").all() and paper_vs_authors.measured_cells(empty) == {}
    assert paper_vs_authors.summary_markdown(empty).startswith("None of the comparisons was run")
    assert "scrambled - unscrambled (authors_view_scramble) |" in paper_vs_authors.section_markdown(empty)  # what would measure it


def test_the_authors_arms_cost_from_the_manifest():
    # 4 trainings of 100 s and 6 evaluations (30, 60, 60 s per arm): 700 s, 2 at a time: 5.8 min of 830 / 120 = 6.9
    manifest = dict(settings=dict(jobs=2, arms={"authors": ["full"]}), overrides={}, steps=[
        dict(step="10_train/full_seed0", seconds=100.0), dict(step="20_evaluate/full_otb_lang_k1", seconds=30.0),
        *[dict(step=f"10_train/full-{a}_seed{i}", seconds=100.0) for a in ("authors", "authors-noscramble") for i in (0, 1)],
        *[dict(step=f"20_evaluate/full-{a}_otb_lang_{t}", seconds=s) for a in ("authors", "authors-noscramble")
          for t, s in (("k1", 30.0), ("k5", 60.0), ("k5m", 60.0))]])
    assert paper_vs_authors.arm_minutes(manifest) == (pytest.approx(700 / 120), 4, 6)
    assert paper_vs_authors.cost_markdown(manifest, 60.0) == ("The authors' arms cost about **5.8 min** of wall time here: 4 trainings "
                                                       "and 6 evaluations, 2 step(s) at a time, of the chain's 7 min (budget: 60 min).")
    assert paper_vs_authors.cost_markdown(dict(steps=manifest["steps"][:2]), None).startswith("This chain trained no authors' arm")
    # the header names the reading of the chain's trainings and its arms
    assert header.reading_text(manifest) == ("`paper`: the chain's trainings follow the paper's text (`docs/method.md`); its arms "
                                             "beside them: `authors` (`reading=\"authors\"`); `authors-noscramble` "
                                             "(`reading=\"authors\"`, `authors_view_scramble=false`)")
    assert header.reading_text(dict(overrides={"reading": "authors"})).startswith("`authors`: the chain's trainings follow the first author's")
