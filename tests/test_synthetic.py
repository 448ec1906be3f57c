"""The synthetic benchmark: determinism, real layouts read back by load_benchmark, box
origins, drift flags, sentence / twin properties, unseen classes, static-tracker floor."""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dmtrack.cli import main
from dmtrack.data import load_benchmark
from dmtrack.data import synthetic as syn
from dmtrack.eval import baseline_boxes, score_sequences

SUITE_NAMES = ["synthetic_train", "synthetic_lasot", "synthetic_lasot_ext", "synthetic_tnl2k", "synthetic_otb_lang"]
TEST_SUITES = SUITE_NAMES[1:]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "a"
    syn.generate(root, "smoke", seed=0, progress=False)
    return root


def _scenes(n=24, suite="tnl2k", drift=None, preset="smoke"):
    return [syn.scene_for(syn.Job(suite, i, "", "", "", 0, drift, preset)) for i in range(n)]


def test_same_seed_same_bytes_other_seed_differs(smoke, tmp_path):
    syn.generate(tmp_path / "b", "smoke", seed=0, progress=False)
    a, b = _files(smoke), _files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 400
    assert [k for k in a if a[k] != b[k]] == []
    syn.generate(tmp_path / "c", "smoke", seed=1, progress=False)
    c = _files(tmp_path / "c")
    jpgs = [k for k in a if k.endswith(".jpg") and k in c]
    assert sum(a[k] != c[k] for k in jpgs) > 0.9 * len(jpgs)


def test_manifest_rerun_skips_and_other_args_raise(smoke):
    m = json.loads((smoke / "manifest.json").read_text())
    assert "synthetic stand-ins" in m["note"] and m["complete"] and m["params"]["seed"] == 0
    assert m["params"]["preset"] == "smoke" and m["params"]["version"] == syn.GENERATOR_VERSION
    before = (smoke / "manifest.json").stat().st_mtime_ns
    assert syn.generate(smoke, "smoke", seed=0, progress=False) == m
    assert (smoke / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="manifest.json"):
        syn.generate(smoke, "smoke", seed=5, progress=False)



def test_an_edited_preset_is_not_taken_for_the_data_on_disk(smoke, monkeypatch):
    assert json.loads((smoke / "manifest.json").read_text())["params"]["preset_sha"] == syn.preset_fingerprint("smoke")
    edited = dataclasses.replace(syn.PRESETS["smoke"], quality=70)
    monkeypatch.setitem(syn.PRESETS, "smoke", edited)
    assert syn.preset_fingerprint("smoke") != json.loads((smoke / "manifest.json").read_text())["params"]["preset_sha"]
    with pytest.raises(FileExistsError, match="--force"):
        syn.generate(smoke, "smoke", seed=0, progress=False)


def test_interrupted_run_resumes_to_the_same_bytes(smoke, tmp_path):
    copy = tmp_path / "r"
    shutil.copytree(smoke, copy)
    shutil.rmtree(copy / "lasot" / "circle" / "circle-1")  # as if killed before this sequence
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({"params": m["params"], "complete": False}))
    syn.generate(copy, "smoke", seed=0, progress=False)
    assert _files(copy) == _files(smoke)


def test_every_suite_reads_back_with_its_frame_counts(smoke):
    m = json.loads((smoke / "manifest.json").read_text())
    names = SUITE_NAMES + ["synthetic_drift_0.50", "synthetic_drift_1.00"]
    assert sorted(m["suites"]) == sorted(names)
    for name in names:
        seqs = load_benchmark(name, smoke)
        info = m["suites"][name]
        assert len(seqs) == info["sequences"] > 0, name
        assert sorted(s.name for s in seqs) == sorted(info["per_sequence"]), name
        for s in seqs:
            n = info["per_sequence"][s.name]["frames"]
            assert len(s) == len(s.boxes) == n and len(list(s.frames[0].parent.iterdir())) == n
            assert s.drift is not None and len(s.drift) == n
            assert s.description == info["per_sequence"][s.name]["sentence"]
    assert {s.dataset for s in load_benchmark("synthetic_lasot", smoke)} == {"lasot"}
    tn = load_benchmark("synthetic_tnl2k", smoke)[0]
    assert tn.frames[0].name == "00001.jpg" and tn.frames[0].parent.name == "imgs"
    otb = load_benchmark("synthetic_otb_lang", smoke)[0]
    assert otb.frames[0].name == "0001.jpg" and (smoke / "otb_lang" / "OTB_query_test" / f"{otb.name}.txt").exists()
    for name, folder in [("synthetic_lasot", "lasot"), ("synthetic_lasot_ext", "lasot_ext"), ("synthetic_drift_0.50", "drift/0.50")]:
        listed = (smoke / folder / "testing_set.txt").read_text().split()
        assert sorted(listed) == sorted(s.name for s in load_benchmark(name, smoke))


def test_lasot_and_tnl2k_boxes_cover_the_same_rendered_pixels(tmp_path):
    """The same scene written as LaSOT (1-based) and TNL2K (0-based) layouts: both files'
    boxes are the tight box of the rendered target's pixels, one pixel apart in the files."""
    scene = syn.scene_for(syn.Job("lasot", 0, "", "", "", 0, None, "smoke"))
    dl = tmp_path / "lasot" / scene.cls / f"{scene.cls}-1"
    dt = tmp_path / "tnl2k" / "test" / "seq_a"
    dl.parent.mkdir(parents=True), dt.parent.mkdir(parents=True)
    syn.write_sequence(scene, "lasot", dl, 90)
    syn.write_sequence(scene, "tnl2k", dt, 90)
    (tmp_path / "lasot" / "testing_set.txt").write_text(dl.name + "\n")
    lb = load_benchmark("synthetic_lasot", tmp_path)[0].boxes
    tb = load_benchmark("synthetic_tnl2k", tmp_path)[0].boxes
    checked = 0
    for t in range(scene.length):
        _, alpha, vis = syn.render(scene, t)
        ys, xs = np.nonzero(alpha > 0)
        if lb[t, 2] == 0:  # out of view: zero box in both files
            assert (tb[t] == 0).all()
            continue
        x1, y1 = lb[t, 0] - 1, lb[t, 1] - 1  # 1-based -> pixel index
        assert (x1, y1, x1 + lb[t, 2] - 1, y1 + lb[t, 3] - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        if tb[t, 2] > 0:  # TNL2K zeroes fully occluded frames too
            assert (tb[t] == lb[t] - [1, 1, 0, 0]).all()
            checked += 1
    assert checked > scene.length // 2


def test_drift_flags_match_the_knob(tmp_path):
    for level in (0.0, 0.25, 0.5, 0.75):
        for s in _scenes(6, "sweep", level):
            n, td = s.length, s.t_drift
            assert td == max(1, round(level * n))  # frame 1 always fits the sentence
            assert abs((n - td) / n - (1 - level)) <= 1 / n + 1e-9
    assert all(s.t_drift is None for s in _scenes(6, "sweep", 1.0) + _scenes(6, "lasot", None))
    syn.generate(tmp_path / "d", "smoke", seed=0, drift=0.5, sweep=False, progress=False)
    for name in TEST_SUITES:
        for s in load_benchmark(name, tmp_path / "d"):
            assert s.drift[:round(0.5 * len(s))].sum() == 0 and s.drift[round(0.5 * len(s)):].all()
    assert all(s.drift.sum() == 0 for s in load_benchmark("synthetic_train", tmp_path / "d"))


def test_after_the_drift_point_the_sentence_misleads():
    seen, reversed_checked = set(), 0
    for s in _scenes(30, "sweep", 0.5):
        td, tgt = s.t_drift, next(o for o in s.objects if o.kind == "target")
        twin = next(o for o in s.objects if o.kind == "twin")
        seen.add(s.drift_mode)
        if s.drift_mode == "direction":  # moves against the sentence from t_drift on
            (x0, y0), (x1, y1) = syn.position(s, tgt, td - 2), syn.position(s, tgt, td - 1)
            (x2, y2), (x3, y3) = syn.position(s, tgt, td + 1), syn.position(s, tgt, td + 2)
            before, after = (x1 - x0, y1 - y0)[tgt.axis], (x3 - x2, y3 - y2)[tgt.axis]
            if abs(after) < 5 and abs(before) < 5:  # not across a wrap
                assert before * after < 0
                reversed_checked += 1
        elif s.drift_mode == "colour":  # the twin keeps the described colour, the target does not
            assert tgt.colour_after != s.colour and twin.colour == s.colour
            rgb = syn._warp(tgt, tgt.colour_after, 40, 40, td, 96, 96)[2]
            assert not np.allclose(rgb, syn._warp(tgt, s.colour, 40, 40, td, 96, 96)[2])
        else:  # swap: by the end the twin sits where the sentence puts the target
            end = s.length - 1
            lane_t = syn.position(s, tgt, end)[1 - tgt.axis]
            lane_w = syn.position(s, twin, end)[1 - tgt.axis]
            assert (lane_t < lane_w) == (s.pos in ("right", "bottom"))
    assert seen == set(syn.DRIFT_MODES) and reversed_checked > 0


def test_sentence_names_the_target_and_twins_differ_only_by_what_it_says():
    scenes = _scenes(30, "tnl2k")
    assert sum(any(o.kind == "twin" for o in s.objects) for s in scenes) == 30  # tnl2k: 1-2 twins each
    for s in scenes:
        words = s.sentence.replace(",", "").split()
        assert s.cls in words and s.colour in words
        assert any(p in s.sentence for p in syn.POS_PHRASES[s.pos])
        assert any(p in s.sentence for p in syn.DIR_PHRASES[s.direction])
        tgt = next(o for o in s.objects if o.kind == "target")
        half = (s.width, s.height)[1 - tgt.axis] / 2
        lane_axis = 1 - tgt.axis
        low = s.pos in ("left", "top")
        matching = [o for o in s.objects if (o.cls, o.colour) == (s.cls, s.colour)]
        for o in matching:  # same class and colour: only twins, pixel-identical to the target
            assert o is tgt or o.kind == "twin"
            a, b = syn._warp(o, o.colour, 48, 48, 0, 96, 96), syn._warp(tgt, tgt.colour, 48, 48, 0, 96, 96)
            assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
        # frame 1: the described half holds the target and no twin
        in_half = [o for o in matching if (syn.position(s, o, 0)[lane_axis] < half) == low]
        assert in_half == [tgt]
        # the described motion is the target's motion in frame 1
        sign = 1 if s.direction in ("down", "right") else -1
        assert tgt.v * sign > 0


def test_lasot_ext_classes_are_unseen_in_training(smoke):
    train = {p.name for p in (smoke / "train").iterdir() if p.is_dir()}
    ext = {p.name for p in (smoke / "lasot_ext").iterdir() if p.is_dir()}
    assert train and ext and train.isdisjoint(ext) and ext <= set(syn.EXT_CLASSES)
    assert set(syn.TRAIN_CLASSES).isdisjoint(syn.EXT_CLASSES)
    for s in load_benchmark("synthetic_lasot_ext", smoke):
        assert s.name.split("-")[0] in s.description


def test_static_tracker_is_far_from_the_gt(smoke):
    for name in TEST_SUITES:
        seqs = load_benchmark(name, smoke)
        static = score_sequences({s.name: baseline_boxes("static", s) for s in seqs}, seqs, benchmark=name).overall()
        oracle = score_sequences({s.name: baseline_boxes("oracle-jitter", s) for s in seqs}, seqs, benchmark=name).overall()
        assert static["auc"] < 25 and oracle["auc"] > 65, (name, static, oracle)
    # and the target travels: over a demo-size sequence its centre gets far from the start
    s = syn.scene_for(syn.Job("lasot", 3, "", "", "", 0, None, "demo"))
    tgt = next(o for o in s.objects if o.kind == "target")
    c = np.array([syn.position(s, tgt, t) for t in range(s.length)])
    assert np.abs(c - c[0]).max() > 4 * tgt.size


def test_cli_synth_and_list(tmp_path, capsys):
    assert main(["data", "synth", "--preset", "smoke", "--out", str(tmp_path / "s"), "--no-sweep"]) == 0
    assert not (tmp_path / "s" / "drift").exists()
    capsys.readouterr()
    assert main(["data", "synth", "--preset", "smoke", "--out", str(tmp_path / "s"), "--seed", "2"]) == 2
    err = capsys.readouterr().err  # refused: a benchmark of other arguments is there (FileExistsError)
    assert err.startswith("dmtrack data: error: ") and "--force" in err and err.count("\n") == 1
    assert main(["data", "list", "--benchmark", "synthetic_otb_lang", "--data-root", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    names = [s.name for s in load_benchmark("synthetic_otb_lang", tmp_path / "s")]
    assert all(n in out for n in names) and f"{len(names)} sequences" in out
    with pytest.raises(ValueError, match="drift"):
        syn.generate(tmp_path / "x", "smoke", drift=1.5)
    assert syn.suite_location("synthetic_drift_0.5") == ("drift/0.50", "lasot")
    assert math.isclose(float(syn.level_tag(0.25)), 0.25)


def test_lasot_suite_flags_zero_boxes_and_scale_change(tmp_path):
    """LaSOT-layout stand-in: out-of-view frames get a 0,0,0,0 row and out_of_view=1, fully
    occluded frames keep their box and get full_occlusion=1, visible = neither; the target's
    size changes over a sequence. Checked on the smoke lasot suite's first 6 scenes (index 4
    wraps through the margin, so it leaves the view)."""
    oov_seen = occ_seen = 0
    ratios = []
    for i in range(6):
        scene = syn.scene_for(syn.Job("lasot", i, "", "", "", 0, None, "smoke"))
        dest = tmp_path / "lasot" / scene.cls / f"{scene.cls}-{i}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        syn.write_sequence(scene, "lasot", dest, 90)
        rows = (dest / "groundtruth.txt").read_text().split()
        oov = (dest / "out_of_view.txt").read_text().strip().split(",")
        occ = (dest / "full_occlusion.txt").read_text().strip().split(",")
        assert len(rows) == len(oov) == len(occ) == scene.length
        for r, o, c in zip(rows, oov, occ):
            assert (r == "0,0,0,0") == (o == "1")  # zero row exactly where out of view
            if c == "1":
                assert r != "0,0,0,0"  # occluded: the box stays, as in LaSOT
        oov_seen += oov.count("1")
        occ_seen += occ.count("1")
        (tmp_path / "lasot" / "testing_set.txt").write_text(dest.name + "\n")
        (s,) = load_benchmark("synthetic_lasot", tmp_path)
        np.testing.assert_array_equal(s.visible, [(o, c) == ("0", "0") for o, c in zip(oov, occ)])
        area = s.boxes[s.boxes[:, 2] > 0, 2] * s.boxes[s.boxes[:, 2] > 0, 3]
        ratios.append(area.max() / area.min())
        shutil.rmtree(tmp_path / "lasot")
    assert oov_seen > 0 and occ_seen > 0
    assert max(ratios) > 1.3  # scale change


def test_suites_differ_as_the_issue_asks():
    """LaSOT stand-in longer than OTB-Lang; TNL2K stand-in with more distractors and twins than the
    others; LaSOT_ext with unseen classes only; the training split never drifts (both presets)."""
    for p in syn.PRESETS.values():
        s = p.suites
        assert s["lasot"].length[0] > s["otb_lang"].length[1]
        assert s["tnl2k"].distractors[0] >= max(v.distractors[0] for v in s.values())
        assert s["tnl2k"].twins[1] == max(v.twins[1] for v in s.values()) and s["tnl2k"].twins[0] >= 1
        assert s["lasot_ext"].ext_classes and not any(v.ext_classes for k, v in s.items() if k != "lasot_ext")
    tn = _scenes(12, "tnl2k")
    lo = _scenes(12, "otb_lang")
    assert np.mean([len(x.objects) for x in tn]) > np.mean([len(x.objects) for x in lo])


@pytest.mark.parametrize("argv, expect", [(["data", "--help"], "synth"), (["data", "synth", "--help"], "--preset"),
                                          (["data", "list", "--help"], "--benchmark")])
def test_cli_data_help(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and expect in capsys.readouterr().out


# --- the language-robustness test's sentences ------------------------------------------------------------
def _half(scene, xy):
    return (("left" if xy[0] < scene.width / 2 else "right") if scene.pos in ("left", "right")
            else ("top" if xy[1] < scene.height / 2 else "bottom"))


def test_misleading_sentence_describes_a_twin_or_else_another_distractor():
    seen = set()
    for scene in _scenes(24) + _scenes(24, suite="otb_lang"):
        twins = [o for o in scene.objects if o.kind == "twin"]
        others = [o for o in scene.objects if o.kind == "distractor"]
        if twins:  # the twin's own half and the way it moves between frames 0 and 1
            (x0, y0), (x1, y1) = syn.position(scene, twins[0], 0), syn.position(scene, twins[0], 1)
            dx, dy = x1 - x0, y1 - y0
            moving = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert _half(scene, (x0, y0)) == syn.OPPOSITE[scene.pos]
            want = f"the {scene.colour} {scene.cls} {syn.POS_PHRASES[_half(scene, (x0, y0))][0]} {syn.DIR_PHRASES[moving][0]}"
            seen.add("twin")
        else:
            d = others[0]
            want = f"the {d.colour} {d.cls} {syn.POS_PHRASES[_half(scene, syn.position(scene, d, 0))][0]}"
            seen.add("distractor")
        assert syn.misleading_sentence(scene) == want
        assert syn.uninformative_sentence(scene) == f"the {scene.cls}"
    assert seen == {"twin", "distractor"}  # both branches were exercised


def test_sentence_files_are_written_for_the_test_suites_and_replace_descriptions(smoke):
    from dmtrack.data.sentences import with_sentence

    m = json.loads((smoke / "manifest.json").read_text())
    for name in TEST_SUITES + ["synthetic_drift_1.00"]:
        seqs = load_benchmark(name, smoke)
        facts = m["suites"][name]["per_sequence"]
        assert with_sentence(seqs, "true") == seqs
        mis, uninf = with_sentence(seqs, "misleading"), with_sentence(seqs, "uninformative")
        for s, a, b in zip(seqs, mis, uninf):
            assert a.description == facts[s.name]["misleading"] and a.text != s.text
            assert b.description == f"the {facts[s.name]['cls']}" and b.text == f"the {facts[s.name]['cls']}"
            assert (a.name, len(a), a.frames) == (s.name, len(s), s.frames)
    assert not list((smoke / "train").rglob("nlp_misleading.txt"))  # training data keeps its sentences only
    with pytest.raises(ValueError, match="sentence must be one of"):
        with_sentence(load_benchmark("synthetic_lasot", smoke), "wrong")


def test_data_from_before_the_robustness_test_get_their_sentences_without_new_frames(smoke, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(smoke, old)
    m = json.loads((old / "manifest.json").read_text())
    for suite in m["suites"].values():
        for r in suite["per_sequence"].values():
            del r["misleading"], r["uninformative"]
    (old / "manifest.json").write_text(json.dumps(m, indent=1))
    for p in list(old.rglob("nlp_misleading.txt")) + list(old.rglob("nlp_uninformative.txt")):
        p.unlink()
    frame = next(old.rglob("*.jpg"))
    before = frame.stat().st_mtime_ns
    with pytest.raises(Exception, match="nlp_misleading.txt: missing"):
        from dmtrack.data.sentences import with_sentence
        with_sentence(load_benchmark("synthetic_lasot", old), "misleading")
    syn.generate(old, "smoke", seed=0, progress=False)
    assert _files(old) == _files(smoke) and frame.stat().st_mtime_ns == before
