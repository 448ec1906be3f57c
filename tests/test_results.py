"""Raw-result files (pytracking layout), name aliases, the trivial baselines and `dmtrack score`."""
import json
import os
import shutil

import numpy as np
import pytest

from dmtrack.cli import main
from dmtrack.data.sequence import Sequence
from dmtrack.eval import (baseline_boxes, find_result_files, name_key, read_results, read_times,
                          run_baseline, score_folder, write_results)
from dmtrack.eval import cli as eval_cli
import dmtrack.io

G = [10, 10, 10, 10]


def seq(name, gt, visible=None, tag="otb"):
    gt = np.asarray(gt, dtype=float)
    vis = None if visible is None else np.asarray(visible, dtype=bool)
    return Sequence(name, [f"{i:04d}.jpg" for i in range(1, len(gt) + 1)], gt, "the red ball", tag, visible=vis)


# --- writing --------------------------------------------------------------------------------

def test_write_results_layout_and_round_trip(tmp_path):
    d = tmp_path / "dmtrack" / "demo"
    boxes = [[10.123, 20.5, 30.0, 40.996], [1, 2, 3, 4]]
    p = write_results(d, "airplane-1", boxes, [0.01, 0.02])
    assert p == d / "airplane-1.txt"
    assert p.read_text() == "10.12\t20.50\t30.00\t41.00\n1.00\t2.00\t3.00\t4.00\n"
    np.testing.assert_allclose(read_results(p), [[10.12, 20.5, 30, 41], [1, 2, 3, 4]])
    np.testing.assert_allclose(read_times(d / "airplane-1_time.txt"), [0.01, 0.02])
    assert sorted(os.listdir(d)) == ["airplane-1.txt", "airplane-1_time.txt"]  # no temp files left


def test_write_results_pytracking_integers(tmp_path):
    # decimals=None: pytracking's astype(int), which truncates towards zero
    p = write_results(tmp_path, "s", [[10.7, -0.5, 30.99, 4.2]], decimals=None)
    assert p.read_text() == "10\t0\t30\t4\n"


def test_write_results_is_atomic(tmp_path, monkeypatch):
    p = write_results(tmp_path, "s", [G])
    before = p.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dmtrack.io.os, "replace", crash)  # the one atomic writer (dmtrack/io.py)
    with pytest.raises(OSError, match="disk full"):
        write_results(tmp_path, "s", [[1, 2, 3, 4]] * 100)
    assert p.read_text() == before  # the old file is untouched ...
    assert os.listdir(tmp_path) == ["s.txt"]  # ... and the temp file is gone


def test_write_results_times_must_match(tmp_path):
    with pytest.raises(ValueError, match="2 times for 1 boxes"):
        write_results(tmp_path, "s", [G], [0.1, 0.2])


# --- reading ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "10.000,10.000,10.000,10.000\n15.000,10.000,10.000,10.000\n",  # got10k: comma %.3f
    "10\t10\t10\t10\n15\t10\t10\t10\n",  # pytracking / UVLTrack: tab integers
    "10 10 10 10\n15 10 10 10",  # space separated, no final newline
    "10, 10, 10, 10\r\n15, 10, 10, 10\r\n",  # comma + space, CRLF (MATLAB dlmwrite on Windows)
])
def test_read_results_separators(tmp_path, text):
    p = tmp_path / "a.txt"
    p.write_text(text)
    np.testing.assert_array_equal(read_results(p), [[10, 10, 10, 10], [15, 10, 10, 10]])


def test_read_results_keeps_nan(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n")
    r = read_results(p)
    assert np.isnan(r[1]).all() and r[0, 3] == 4


@pytest.mark.parametrize("text, message", [
    ("1,2,3,4\n1,2,3\n", "line 2: 3 fields, expected 4"),
    ("1,2,3,4\n1,2,x,4\n", "line 2: cannot parse"),
    ("1,2,3,4,5\n1,2,3,4,5\n", "line 1: 5 fields"),
    ("1,2,3,4\n\n1,2,3,4\n", "line 2: empty line"),
    ("", "no rows"),
    ("1,2,3,4\n58,64,,15,15\n", r"line 2: empty field in '58,64,,15,15' \(field 3\)"),  # not 4 numbers
    ("1,2,3,4,\n1,2,3,4,\n", "line 1: empty field"),
    (",1,2,3,4\n", "line 1: empty field"),
    ("1\t2\t3\t4\n1\t2\t\t3\t4\n", "line 2: empty field"),
    ("1, 2, 3, 4\n1, 2, , 3, 4\n", "line 2: empty field"),
    ("1 2 3 4\n   \n5 6 7 8\n", "line 2: empty line"),  # a blank line of spaces would shift every later frame
])
def test_read_results_errors_name_file_and_line(tmp_path, text, message):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        read_results(p)
    assert "bad.txt" in str(e.value)


def test_read_results_refuses_a_huge_sparse_file_unread_with_a_short_error(tmp_path):
    p = tmp_path / "airplane-1.txt"
    with open(p, "wb") as f:  # all NUL bytes, none on disk; 2 GB of them grew dmtrack score to 21.6 GB
        f.truncate(16 * 2**20 + 1)
    with pytest.raises(ValueError) as e:
        read_results(p)
    assert str(e.value) == f"{p}: more than 16777216 bytes, not a raw-results file (a row per frame takes < 100 bytes)"
    p.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError) as e:
        read_results(p)
    assert str(e.value) == f"{p}: not a text file (NUL bytes)"


def test_read_results_reads_the_longest_real_sequence(tmp_path):
    rows = np.arange(12_000 * 4, dtype=float).reshape(-1, 4) + 0.25  # LaSOT's longest sequence: ~11k frames
    p = write_results(tmp_path, "seq", rows)
    np.testing.assert_array_equal(read_results(p), rows)


def test_read_results_errors_quote_at_most_40_characters(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("1,2,3,4\n" + "9" * 5000 + "\n")  # one 5000-character line: refused unparsed, unquoted
    with pytest.raises(ValueError) as e:
        read_results(p)
    assert str(e.value) == f"{p}, line 2: more than 1000 characters, not a row of numbers"
    p.write_text("1,2,x,4" + ",5" * 200 + "\n")
    with pytest.raises(ValueError) as e:
        read_results(p)
    assert str(e.value) == f"{p}, line 1: 204 fields, expected 4: '1,2,x,4,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,'..."


def test_result_file_linked_outside_the_results_folder_is_named_not_quoted(tmp_path):
    elsewhere = tmp_path / "home" / "notes.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("password=hunter2\n")
    res = tmp_path / "res"
    res.mkdir()
    (res / "Biker.txt").symlink_to(elsewhere)
    with pytest.raises(ValueError) as e:
        score_folder(res, [seq("Biker", [G])])
    assert str(e.value) == f"{res / 'Biker.txt'}, line 1: 1 fields, expected 4"
    (res / "Biker.txt").unlink()
    (res / "Biker.txt").write_text("password=hunter2\n")  # the folder's own file is quoted
    with pytest.raises(ValueError, match="1 fields, expected 4: 'password=hunter2'"):
        score_folder(res, [seq("Biker", [G])])


# --- matching result files to sequences --------------------------------------------------------

def test_name_aliases():
    assert name_key("Jogging-1") == name_key("Jogging_1") == name_key("Jogging.1") == name_key("Jogging1")
    assert name_key("Skating2-2") == name_key("Skating2_2") == name_key("Skating2.2")
    assert name_key("Jogging-1") != name_key("Jogging-2")
    assert name_key("Human4") == name_key("Human4_2") == name_key("Human4-2")
    assert name_key("airplane-1") != name_key("airplane-13")


def test_find_result_files_aliases_and_subfolder(tmp_path):
    # pytracking names, a got10k name, MMTrack's <dataset>/ sub-folder, and time files that must be ignored
    write_results(tmp_path, "Jogging_1", [G], [0.1])
    write_results(tmp_path, "Skating2.1", [G])
    write_results(tmp_path / "otb_lang", "Human4_2", [G])
    write_results(tmp_path / "otb_lang", "Biker", [G], [0.1])
    found, skipped = find_result_files(tmp_path, ["Jogging-1", "Skating2-1", "Human4", "Biker"])
    assert skipped == []
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in found.items()} == {
        "Jogging-1": "Jogging_1.txt", "Skating2-1": "Skating2.1.txt",
        "Human4": "otb_lang/Human4_2.txt", "Biker": "otb_lang/Biker.txt"}


def test_find_result_files_prefers_exact_name(tmp_path):
    write_results(tmp_path, "Jogging_1", [[1, 1, 1, 1]])
    write_results(tmp_path, "Jogging-1", [G])
    found, _ = find_result_files(tmp_path, ["Jogging-1", "Jogging_1"])
    assert found["Jogging-1"].name == "Jogging-1.txt" and found["Jogging_1"].name == "Jogging_1.txt"


def test_find_result_files_ambiguous_subfolders(tmp_path):
    write_results(tmp_path / "run_a", "Biker", [G])
    write_results(tmp_path / "run_b", "Biker", [G])
    with pytest.raises(ValueError, match="several result files match sequence 'Biker'"):
        find_result_files(tmp_path, ["Biker"])


def test_missing_results_error_lists_names_or_skips(tmp_path):
    seqs = [seq("a", [G] * 2), seq("b", [G] * 2), seq("c", [G] * 2)]
    write_results(tmp_path, "a", [G, G])
    with pytest.raises(FileNotFoundError, match="no result file for 2 of 3 sequences: b, c"):
        score_folder(tmp_path, seqs)
    sc = score_folder(tmp_path, seqs, skip_missing=True)
    assert sc.names == ["a"] and sc.skipped == ["b", "c"]
    assert "2 skipped" in sc.table() and sc.overall()["precision"] == 100
    with pytest.raises(FileNotFoundError, match="does not exist"):
        score_folder(tmp_path / "nope", seqs)


def test_score_folder_reads_other_trackers_files(tmp_path):
    # a got10k-style comma %.3f file and a tab-integer file give the same scores (the boxes are equal)
    s = seq("a", [G] * 4)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.txt").write_text("0.000,0.000,5.000,5.000\n15.000,10.000,10.000,10.000\n"
                                          "10.000,10.000,10.000,20.000\n40.000,10.000,10.000,10.000\n")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "a.txt").write_text("0\t0\t5\t5\n15\t10\t10\t10\n10\t10\t10\t20\n40\t10\t10\t10\n")
    a, b = score_folder(tmp_path / "g", [s]).overall(), score_folder(tmp_path / "u", [s]).overall()
    assert a == b and a["auc"] == pytest.approx(100 * 37 / 84)  # see test_metrics.test_common_definitions


# --- trivial baselines ------------------------------------------------------------------------

def test_static_baseline():
    s = seq("a", [G, [12, 10, 10, 10], [20, 10, 10, 10]])
    np.testing.assert_array_equal(baseline_boxes("static", s), [G, G, G])


def test_oracle_jitter_is_seeded_and_realistic():
    rng = np.random.default_rng(5)
    gt = np.column_stack([rng.uniform(0, 500, 3000), rng.uniform(0, 500, 3000), np.full(3000, 40.0), np.full(3000, 20.0)])
    vis = np.ones(3000, bool)
    gt[100] = 0  # a frame without a box ...
    vis[200] = False  # ... and an invisible one: the tracker repeats its previous output there
    s = seq("x", gt, vis)
    a, b = baseline_boxes("oracle-jitter", s, seed=0), baseline_boxes("oracle-jitter", s, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, baseline_boxes("oracle-jitter", s, seed=1))
    np.testing.assert_array_equal(a[0], gt[0])
    np.testing.assert_array_equal(a[100], a[99])
    np.testing.assert_array_equal(a[200], a[199])
    # the noise model: log size ratio ~ N(0, 0.05), centre offset / size ~ N(0, 0.05)
    ok = np.ones(3000, bool)
    ok[[0, 100, 200]] = False
    assert np.std(np.log(a[ok, 2] / gt[ok, 2])) == pytest.approx(0.05, abs=0.005)
    dc = (a[ok, 0] + a[ok, 2] / 2 - gt[ok, 0] - gt[ok, 2] / 2) / gt[ok, 2]
    assert np.std(dc) == pytest.approx(0.05, abs=0.005) and abs(np.mean(dc)) < 0.005
    # seeded per sequence: renaming changes the noise, running other sequences first does not
    assert not np.allclose(a, baseline_boxes("oracle-jitter", seq("y", gt, vis)))
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_boxes("mean-shift", s)


def test_run_baseline_writes_pytracking_layout(tmp_path):
    seqs = [seq("a", [G] * 3), seq("b", [G] * 2)]
    out = run_baseline("oracle-jitter", seqs, tmp_path / "oracle-jitter" / "toy")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "a_time.txt", "b.txt", "b_time.txt"]
    assert read_results(out / "a.txt").shape == (3, 4) and read_times(out / "b_time.txt").shape == (2,)


# --- the CLI ----------------------------------------------------------------------------------

# toy benchmark: "mv" moves right by 5 px per frame, "st" stands still (frame 3 has no gt box)
TOY = [seq("mv", [G, [15, 10, 10, 10], [20, 10, 10, 10], [25, 10, 10, 10]], tag="lasot_extension_subset"),
       seq("st", [G, G, [10, 10, 0, 0]], tag="lasot_extension_subset")]


@pytest.fixture
def toy_benchmark(monkeypatch):
    import dmtrack.eval.baselines as baselines

    toy = lambda name, root=None, split=None, **kw: TOY
    monkeypatch.setattr(eval_cli, "load_benchmark", toy)
    monkeypatch.setattr(baselines, "load_benchmark", toy)


def test_cli_score_json(tmp_path, toy_benchmark, capsys):
    res = tmp_path / "results" / "mytracker" / "default"
    write_results(res, "mv", [[0, 0, 1, 1], [15, 10, 10, 10], [15, 10, 10, 10], [40, 10, 10, 10]])
    write_results(res, "st", [G, G, G])
    out = tmp_path / "scores.json"
    assert main(["score", "--benchmark", "toy", "--results", str(res), "--protocol", "pytracking", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol=pytracking valid_rule=wh dataset_tag='lasot_extension_subset'" in printed
    j = json.loads(out.read_text())
    assert {"benchmark", "protocol", "overall", "per_sequence"} <= set(j)
    assert j["benchmark"] == "toy" and j["protocol"] == "pytracking" and j["valid_rule"] == "wh"
    assert set(j["overall"]) == {"auc", "precision", "norm_precision", "op50", "op75"}
    assert set(j["per_sequence"]) == {"mv", "st"}
    # mv: IoUs 1, 1, 1/3 (shift 5), 0 (shift 15): counts 3 for t=0..0.30 (7), 2 for t=0.35..0.95 (13) -> 47/84
    #     e 0, 0, 5, 15 -> P 100; ne 0, 0, 0.5, 1.5 -> Pnorm 50
    # st: frames 1, 2 exact; frame 3 invalid: IoU -1, e inf, ne -1 (hit) -> AUC 40/63, P 2/3, Pnorm 100
    mv, st = j["per_sequence"]["mv"], j["per_sequence"]["st"]
    assert mv["auc"] == pytest.approx(100 * 47 / 84) and mv["precision"] == 100 and mv["norm_precision"] == 50
    assert st["auc"] == pytest.approx(100 * 40 / 63) and st["precision"] == pytest.approx(200 / 3) and st["norm_precision"] == 100
    assert j["overall"]["auc"] == pytest.approx((mv["auc"] + st["auc"]) / 2)
    assert j["overall"]["norm_precision"] == pytest.approx(75)
    # official on the same files: st's invalid frame is a hit for P too; Pnorm the same here
    assert main(["score", "--benchmark", "toy", "--results", str(res), "--protocol", "official", "--json", str(out)]) == 0
    j = json.loads(out.read_text())
    assert j["protocol"] == "official" and j["valid_rule"] == "all4"
    assert j["per_sequence"]["st"]["precision"] == 100 and j["overall"]["precision"] == 100
    # --dataset-tag lasot and the valid-rule option are recorded in the JSON
    assert main(["score", "--benchmark", "toy", "--results", str(res), "--dataset-tag", "lasot",
                 "--valid-rule", "all4", "--json", str(out)]) == 0
    j = json.loads(out.read_text())
    assert j["dataset_tag"] == "lasot" and j["valid_rule"] == "all4"


def test_cli_missing_and_skip(tmp_path, toy_benchmark, capsys):
    res = tmp_path / "r"
    write_results(res, "mv", [G] * 4)
    assert main(["score", "--benchmark", "toy", "--results", str(res)]) == 1  # st.txt missing: one line, exit 1
    err = capsys.readouterr().err
    assert err.startswith("dmtrack score: error: ") and "st" in err and err.count("\n") == 1
    assert main(["score", "--benchmark", "toy", "--results", str(res), "--skip-missing"]) == 0
    assert "skipped 1 of 2 sequences without a result file: st" in capsys.readouterr().out


def test_cli_baseline_static(tmp_path, toy_benchmark):
    # static on mv: held box (10,10,10,10) -> IoUs 1, 1/3, 0, 0 -> counts 2 for t=0..0.30 (7), 1 for 0.35..0.95 (13) -> 27/84
    #   e 0, 5, 10, 15 -> P 100; ne 0, 0.5, 1, 1.5 -> Pnorm 25
    out, js = tmp_path / "static" / "toy", tmp_path / "s.json"
    assert main(["score", "--benchmark", "toy", "--baseline", "static", "--out", str(out), "--json", str(js)]) == 0
    assert (out / "mv.txt").exists() and (out / "mv_time.txt").exists()
    j = json.loads(js.read_text())
    assert j["per_sequence"]["mv"]["auc"] == pytest.approx(100 * 27 / 84)
    assert j["per_sequence"]["mv"]["norm_precision"] == 25


def test_cli_baselines_all(tmp_path, toy_benchmark, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["score", "--baselines-all", "--data-root", str(tmp_path), "--json", "all.json"]) == 0
    rows = json.loads((tmp_path / "all.json").read_text())
    assert len(rows) == 4 * 2 * 2  # 4 synthetic suites x 2 trackers x 2 protocols
    assert {(r["tracker"], r["protocol"]) for r in rows} == {(t, p) for t in ("static", "oracle-jitter")
                                                             for p in ("pytracking", "official")}
    static = [r for r in rows if r["tracker"] == "static" and r["protocol"] == "pytracking"][0]
    assert static["auc"] == pytest.approx((100 * 27 / 84 + 100 * 40 / 63) / 2)
    folder = tmp_path / "runs" / "baselines" / "synthetic_lasot" / "static" / "seed0"  # dmtrack.layout
    assert (folder / "mv.txt").exists() and json.loads((folder / "evaluate.json").read_text())["variant"] == "static"
    assert (folder / "scores_official.json").exists()
    printed = capsys.readouterr().out
    assert "oracle-jitter" in printed and "synthetic stand-in suites" in printed


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--help"])
    assert e.value.code == 0 and "--protocol" in capsys.readouterr().out


def test_cli_on_a_lasot_layout_fixture(tmp_path, capsys, monkeypatch):
    """End to end through the real LaSOT reader: <root>/<class>/<class>-<k>/ with img/%08d.jpg,
    groundtruth.txt, full_occlusion.txt, out_of_view.txt, nlp.txt and the toolkit's testing_set.txt
    (one name: a custom split, which the opt-out accepts)."""
    import cv2

    from dmtrack.data.lasot import write_sequence, write_split

    monkeypatch.setenv("DMTRACK_LASOT_SPLIT_CHECK", "0")

    root = tmp_path / "LaSOT"
    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    d = write_sequence(root / "cat" / "cat-1", [G] * 4, "a black cat on the sofa\n",
                       occluded=[0, 0, 1, 0], frames=[jpeg] * 4)  # frame 3 fully occluded -> not visible
    write_split(root, ["cat-1"])
    res = tmp_path / "res"
    write_results(res, "cat-1", [G, G, G, [40, 10, 10, 10]])  # exact on frames 1-3 (also the invisible 3), f4: IoU 0, e 30
    out = tmp_path / "s.json"

    def score(*extra):
        assert main(["score", "--benchmark", "lasot", "--data-root", str(root), "--results", str(res),
                     "--json", str(out), *extra]) == 0
        return json.loads(out.read_text())

    # IoU [1, 1, -1 (invisible), 0] -> 40/84; P: 2/4; Pnorm with tag 'lasot': invisible -> inf -> 2/4
    j = score("--protocol", "pytracking")
    assert j["dataset_tag"] == "lasot" and j["n_sequences"] == 1
    assert j["overall"]["auc"] == pytest.approx(100 * 40 / 84) and j["overall"]["precision"] == 50
    assert j["overall"]["norm_precision"] == 50
    # MMTrack's tag: the invisible frame is a normalised-precision hit -> 3/4
    assert score("--protocol", "pytracking", "--dataset-tag", "lasot_lang")["overall"]["norm_precision"] == 75
    # official: the absent frame is a miss everywhere
    j = score("--protocol", "official")
    assert (j["overall"]["precision"], j["overall"]["norm_precision"]) == (50, 50)
    assert "protocol=official valid_rule=all4 dataset_tag='lasot'" in capsys.readouterr().out
    # scoring reads the annotations only: the same scores with the frames gone (never listed)
    shutil.rmtree(d / "img")
    assert score("--protocol", "official") == j


def test_score_baselines_on_the_synthetic_suites(tmp_path):
    """score_baselines (what `make reproduce` prints) on the smoke synthetic benchmark, read back from disk."""
    from dmtrack.data.synthetic import generate
    from dmtrack.eval import score_baselines

    generate(tmp_path / "synthetic", preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    from dmtrack.data.benchmarks import SYNTHETIC_TEST_SUITES

    df = score_baselines(SYNTHETIC_TEST_SUITES, tmp_path / "runs", data_root=tmp_path / "synthetic")
    assert len(df) == 16 and set(df.benchmark) == {"synthetic_lasot", "synthetic_lasot_ext", "synthetic_tnl2k",
                                                   "synthetic_otb_lang"}
    assert set(df.columns) >= {"tracker", "protocol", "valid_rule", "dataset_tag", "auc", "precision",
                               "norm_precision", "op50", "op75"}
    wide = df.pivot_table(index=["benchmark", "protocol"], columns="tracker", values="auc")
    assert (wide["static"] < wide["oracle-jitter"]).all()
    assert ((df[["auc", "precision", "norm_precision"]] >= 0) & (df[["auc", "precision", "norm_precision"]] <= 100)).all().all()
    assert (tmp_path / "runs" / "synthetic_tnl2k" / "oracle-jitter" / "seed0").is_dir()


# --- other codebases' raw-result layouts (formats_metrics.md section 7) ---------------------------

def test_got10k_layout_with_times_subfolder(tmp_path):
    # got10k: <result_dir>/<tracker>/<seq>.txt as comma %.3f, times in times/<seq>_time.txt (ignored)
    d = tmp_path / "OTB2015" / "SiamFC"
    (d / "times").mkdir(parents=True)
    (d / "Jogging.1.txt").write_text("10.000,10.000,10.000,10.000\n15.000,10.000,10.000,10.000\n")
    (d / "times" / "Jogging.1_time.txt").write_text("0.010\n0.020\n")
    found, _ = find_result_files(d, ["Jogging-1"])
    assert found == {"Jogging-1": d / "Jogging.1.txt"}
    # frame 1 IoU 1 (> t for 20 of the 21 thresholds); frame 2 shifted by 5: IoU 1/3 (> t for t = 0..0.30, 7),
    # e 5, ne 0.5 -> AUC (20 + 7) / 42, P 100, Pnorm 50
    sc = score_folder(d, [seq("Jogging-1", [G, G])])
    assert sc.overall()["auc"] == pytest.approx(100 * 27 / 42) and sc.overall()["norm_precision"] == 50


def test_matlab_and_uvltrack_layouts(tmp_path):
    # MATLAB toolkits: tracking_results/<tracker>_tracking_result/<seq>.txt, any dlmread separator;
    # UVLTrack: <results_dir>/<dataset>_<MODE>_<EPOCH:03d>/<seq>.txt, tab integers
    m = tmp_path / "tracking_results" / "MyT_tracking_result"
    m.mkdir(parents=True)
    (m / "cat-1.txt").write_text("10 10 10 10\n20 10 10 10\n")
    u = tmp_path / "uvl" / "lasot_TEST_300"
    u.mkdir(parents=True)
    (u / "cat-1.txt").write_text("10\t10\t10\t10\n20\t10\t10\t10\n")
    s = seq("cat-1", [G, G], tag="lasot")
    # frame 1 exact (IoU 1: 20 thresholds); frame 2 shifted by 10: IoU 0, e 10, ne 1 -> AUC 20/42, P 100, Pnorm 50
    for folder in (m, tmp_path / "uvl"):  # UVLTrack's run folder is found as a sub-folder
        r = score_folder(folder, [s], protocol="official").overall()
        assert r["auc"] == pytest.approx(100 * 20 / 42) and r["precision"] == 100 and r["norm_precision"] == 50


def test_cli_merges_several_runs(tmp_path, toy_benchmark, capsys):
    # run 000: st exact; run 001: st frame 2 at (20,10,10,10): IoU 0, e 10 (hit), ne 1 (miss) -> AUC st 20/63, Pnorm 2/3
    # (frame 3 has no gt box: IoU -1, e inf, ne -1 in both runs). mv exact in both runs.
    r0, r1 = tmp_path / "t" / "p_000", tmp_path / "t" / "p_001"  # pytracking's <tracker>/<param>_<run:03d>
    for r in (r0, r1):
        write_results(r, "mv", TOY[0].boxes)
    write_results(r0, "st", [G, G, G])
    write_results(r1, "st", [G, [20, 10, 10, 10], G])
    out = tmp_path / "m.json"
    assert main(["score", "--benchmark", "toy", "--results", str(r0), str(r1), "--json", str(out)]) == 0
    assert "runs=2 (merged)" in capsys.readouterr().out
    j = json.loads(out.read_text())
    assert j["runs"] == 2
    st = j["per_sequence"]["st"]
    assert st["auc"] == pytest.approx((100 * 40 / 63 + 100 * 20 / 63) / 2)
    assert st["norm_precision"] == pytest.approx((100 + 100 * 2 / 3) / 2) and st["precision"] == pytest.approx(200 / 3)
    assert j["per_sequence"]["mv"]["auc"] == pytest.approx(100 * 20 / 21)


def test_cli_scores_tnl2k_as_its_toolkit_with_an_empty_sentence_and_a_zero_height_row(tmp_path):
    # TNL2K test layout: Fight_video_6-Done with an empty language.txt (as first released) and a sequence
    # with one row of w > 0, h = 0 that the toolkit's absent files do not flag (12 such rows in the real
    # test set), next to one 0,0,0,0 row (absent). Scoring reads no sentence, so the empty one is no error.
    from fixtures import write_tnl2k_seq
    test = tmp_path / "TNL2K" / "test"
    write_tnl2k_seq(test, "Fight_video_6-Done", ["1.jpg", "2.jpg"], [G, G], text="")
    write_tnl2k_seq(test, "h0", [f"{i}.jpg" for i in range(1, 5)], [G, [10, 10, 10, 0], [0, 0, 0, 0], G])
    res = tmp_path / "res"
    write_results(res, "Fight_video_6-Done", [G, G])
    write_results(res, "h0", [G, G, G, [30, 10, 10, 10]])
    out = tmp_path / "s.json"
    assert main(["score", "--benchmark", "tnl2k", "--data-root", str(tmp_path / "TNL2K"), "--results", str(res),
                 "--protocol", "official", "--json", str(out)]) == 0
    h0 = json.loads(out.read_text())["per_sequence"]["h0"]
    # h0: IoU [1, -1 (invalid), -1 (absent), 0] -> AUC 20/84; e [0, -1 (hit), inf, 20] -> P 3/4;
    #     ne [0, -1 (hit), inf, 2] -> Pnorm 2/4. Calling the h = 0 row absent gave P 2/4 and Pnorm 1/4.
    assert h0["auc"] == pytest.approx(100 * 20 / 84) and h0["precision"] == 75 and h0["norm_precision"] == 50
    with pytest.raises(Exception, match="empty description"):  # tracking still needs the sentence
        from dmtrack.data import load_benchmark
        load_benchmark("tnl2k", tmp_path / "TNL2K")
