"""The benchmark runner (`dmtrack evaluate`) and the got10k adapter, on the smoke synthetic benchmark
with an untrained smoke-size model saved as a real checkpoint."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import dmtrack.track.runner as runner
from dmtrack.boxes import iou_xywh
from dmtrack.cli import main as cli_main
from dmtrack.config import load_config
from dmtrack.data import load_benchmark
from dmtrack.data import DatasetError, FrameError
from dmtrack.data.sequence import Sequence
from dmtrack.eval.results import read_results, read_times, score_folder
from dmtrack.io import RunLocked
from dmtrack.layout import spread_path
from dmtrack.model import build_model, save_checkpoint
from dmtrack.track import (DataSelection, Execution, Tracker, TrackSettings, evaluate, load_masks, load_model,
                           track_sequence)

from conftest import smoke_checkpoint

torch.set_num_threads(1)  # the test machines are shared: more threads only wait on each other


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return smoke_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def loaded(ckpt):
    return load_model(ckpt)  # (model, config), as the workers load it


@pytest.fixture(scope="module")
def tracker(loaded):
    return Tracker(*loaded, samples=2)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def test_evaluate_writes_pytracking_layout_and_scores_both_protocols(root, ckpt, tmp_path):
    out = tmp_path / "eval"
    scores = evaluate(ckpt, "synthetic_lasot", out, TrackSettings(samples=2), DataSelection(root=root),
                      Execution(progress=False))
    seqs = load_benchmark("synthetic_lasot", root=root)
    names = [s.name for s in seqs]
    assert _files(out) == {f"{n}{suffix}" for n in names for suffix in (".txt", "_time.txt")} | {
        "evaluate.json", "scores_pytracking.json", "scores_official.json"}
    for s in seqs:
        text = (out / f"{s.name}.txt").read_text().splitlines()
        assert len(text) == len(s) and all(len(line.split("\t")) == 4 for line in text)
        boxes, times = read_results(out / f"{s.name}.txt"), read_times(out / f"{s.name}_time.txt")
        np.testing.assert_allclose(boxes[0], s.boxes[0], atol=0.005)  # frame 1 = the initial box
        assert boxes.shape == (len(s), 4) and (boxes[1:, 2:] >= 10).all() and (times > 0).all()
        assert times.shape == (len(s),)
    for protocol in ("pytracking", "official"):
        saved = json.loads((out / f"scores_{protocol}.json").read_text())
        assert saved["protocol"] == protocol and saved["n_sequences"] == 2
        assert set(saved["per_sequence"]) == set(names)
        assert saved["overall"]["auc"] == pytest.approx(scores[protocol].overall()["auc"])
    # pytracking AUC of one sequence by hand: mean over t = 0, 0.05, .., 1 of the fraction of frames with IoU > t
    # (frame 1 counts as the gt box; sequences with invisible frames are scored differently, so take a visible one)
    for s in seqs:
        if s.visible.all() and (s.boxes[:, 2:] > 0).all():
            pred = read_results(out / f"{s.name}.txt")
            pred[0] = s.boxes[0]
            iou = iou_xywh(pred, s.boxes)
            auc = 100 * np.mean([(iou > t).mean() for t in np.arange(21) / 20])
            assert json.loads((out / "scores_pytracking.json").read_text())["per_sequence"][s.name]["auc"] == pytest.approx(auc)


def test_stopped_run_resumes_without_redoing_or_leaving_partial_files(root, ckpt, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    real = runner.run_sequence
    calls = []

    def stop_after_first(tracker, seq, *a, **k):
        if calls:
            raise KeyboardInterrupt  # the run is stopped while the second sequence is being tracked
        calls.append(seq.name)
        return real(tracker, seq, *a, **k)

    monkeypatch.setattr(runner, "run_sequence", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=1), DataSelection(root=root, max_frames=12),
                 Execution(progress=False))
    first = calls[0]
    assert _files(out) == {"evaluate.json", f"{first}.txt", f"{first}_time.txt"}  # no partial or temp file
    stamp = {n: (out / n).stat().st_mtime_ns for n in (f"{first}.txt", f"{first}_time.txt")}
    (out / ".other.txt.x8k2.tmp").write_text("1\t2\t")  # a temp file a killed writer left behind

    ran = []
    monkeypatch.setattr(runner, "run_sequence", lambda tracker, seq, *a, **k: ran.append(seq.name) or real(tracker, seq, *a, **k))
    time.sleep(0.01)
    evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=1), DataSelection(root=root, max_frames=12),
             Execution(progress=False))
    names = [s.name for s in load_benchmark("synthetic_tnl2k", root=root)]
    assert ran == [n for n in names if n != first]  # the finished sequence was not tracked again
    assert {n: (out / n).stat().st_mtime_ns for n in stamp} == stamp
    assert _files(out) == {f"{n}{x}" for n in names for x in (".txt", "_time.txt")} | {
        "evaluate.json", "scores_pytracking.json", "scores_official.json"}

    ran.clear()  # a third run has nothing to do, but still scores
    evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=1), DataSelection(root=root, max_frames=12),
             Execution(progress=False))
    assert ran == []
    with pytest.raises(ValueError, match="other settings.*samples=1"):  # never mix results of two settings
        evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=3), DataSelection(root=root, max_frames=12),
                 Execution(progress=False))


def test_results_of_other_weights_are_never_resumed(root, ckpt, tmp_path):
    names = [s.name for s in load_benchmark("synthetic_otb_lang", root=root)][:2]
    out, one, data = tmp_path / "eval", TrackSettings(samples=1), DataSelection(root=root, max_frames=6, sequences=names)
    quiet = Execution(progress=False)
    evaluate(str(ckpt), "synthetic_otb_lang", out, one, data, quiet)
    assert json.loads((out / "evaluate.json").read_text())["weights_sha256"] == runner.file_sha256(ckpt)
    assert json.loads((out / "evaluate.json").read_text())["reading"] == "paper"  # the checkpoint's reading
    torch.manual_seed(1)  # "retrain": other weights under the same path
    cfg = load_config("smoke", "full")
    save_checkpoint(ckpt.parent / "retrained.pth", build_model(cfg), cfg)
    retrained = ckpt.parent / "retrained.pth"
    evaluate(str(retrained), "synthetic_otb_lang", tmp_path / "b", one, data, quiet)  # the same weights' results, elsewhere
    old_ckpt = ckpt.read_bytes()
    try:
        ckpt.write_bytes(retrained.read_bytes())
        with pytest.raises(ValueError, match="other settings.*weights_sha256"):
            evaluate(str(ckpt), "synthetic_otb_lang", out, one, data, quiet)
        evaluate(str(ckpt), "synthetic_otb_lang", out, one, data,
                 Execution(progress=False, replace_stale=True))  # the pipeline's way: redo them
    finally:
        ckpt.write_bytes(old_ckpt)
    for n in names:  # the stale results were replaced by the retrained model's
        assert (out / f"{n}.txt").read_text() == (tmp_path / "b" / f"{n}.txt").read_text()


def test_evaluate_records_the_checkpoints_reading(root, tmp_path):
    """An untrained smoke model of the authors' reading tracks two sequences; evaluate.json says whose reading."""
    torch.manual_seed(0)
    cfg = load_config("smoke", "full", reading="authors")
    ckpt = save_checkpoint(tmp_path / "authors.pth", build_model(cfg), cfg)
    names = [s.name for s in load_benchmark("synthetic_otb_lang", root=root)][:2]
    out = tmp_path / "eval"
    evaluate(str(ckpt), "synthetic_otb_lang", out, TrackSettings(samples=2),
             DataSelection(root=root, max_frames=4, sequences=names), Execution(progress=False))
    meta = json.loads((out / "evaluate.json").read_text())
    assert meta["reading"] == "authors" and meta["average"] == "maps" and meta["sampling_steps"] == 2  # one chain of k steps
    assert all(len(read_results(out / f"{n}.txt")) == 4 for n in names)


def test_results_of_other_data_are_never_resumed(root, ckpt, tmp_path, monkeypatch):
    """Same --out, another data root: results are keyed on each sequence's inputs, not on paths."""
    real, ran = runner.run_sequence, []
    monkeypatch.setattr(runner, "run_sequence", lambda tracker, seq, *a, **k: ran.append(seq.name) or real(tracker, seq, *a, **k))

    def data(name, edit=None):  # a copy of the smoke TNL2K stand-in, one sequence edited
        shutil.copytree(root / "tnl2k", tmp_path / name / "tnl2k")
        seqs = load_benchmark("synthetic_tnl2k", root=tmp_path / name)
        if edit:
            edit(seqs[0].frames[0].parent.parent)
        return tmp_path / name, seqs[0].name

    out, one, quiet = tmp_path / "eval", TrackSettings(samples=1), Execution(progress=False)
    at = lambda folder: DataSelection(root=folder, max_frames=6)
    first, a = data("a")
    evaluate(ckpt, "synthetic_tnl2k", out, one, at(first), quiet)
    names = [s.name for s in load_benchmark("synthetic_tnl2k", root=first)]
    stamp = {n: (out / f"{n}.txt").stat().st_mtime_ns for n in names}
    ran.clear()
    moved, _ = data("moved")  # the same data elsewhere: every result still holds
    evaluate(ckpt, "synthetic_tnl2k", out, one, at(moved), quiet)
    assert ran == [] and {n: (out / f"{n}.txt").stat().st_mtime_ns for n in names} == stamp

    def new_sentence(folder):
        (folder / "language.txt").write_text("a magenta star at the bottom\n")

    def new_first_box(folder):
        rows = (folder / "groundtruth.txt").read_text().splitlines()
        x, y, w, h = map(int, rows[0].split(","))
        (folder / "groundtruth.txt").write_text("\n".join([f"{x + 3},{y},{w},{h}"] + rows[1:]) + "\n")

    for name, edit in [("sentence", new_sentence), ("box", new_first_box)]:
        other, seq = data(name, edit)
        with pytest.raises(ValueError) as e:
            evaluate(ckpt, "synthetic_tnl2k", out, one, at(other), quiet)
        assert str(e.value) == (f"{out / seq}.txt: sequence {seq} was tracked on other inputs (first box, sentence, "
                                "frame count or first image differ from those in evaluate.json); use another --out "
                                "or delete those results")
    assert ran == [] and {n: (out / f"{n}.txt").stat().st_mtime_ns for n in names} == stamp  # nothing touched
    evaluate(ckpt, "synthetic_tnl2k", out, one, at(other),
             Execution(progress=False, replace_stale=True))  # the pipeline's way
    assert ran == [seq]  # only the edited sequence is redone, from its new first box
    assert read_results(out / f"{seq}.txt")[0] == pytest.approx(load_benchmark("synthetic_tnl2k", root=other)[0].boxes[0])
    assert json.loads((out / "evaluate.json").read_text())["inputs"] == {
        s.name: runner.sequence_inputs(s, 6) for s in load_benchmark("synthetic_tnl2k", root=other)}
    ran.clear()
    evaluate(ckpt, "synthetic_tnl2k", out, one, at(other), quiet)
    assert ran == []


def test_subsets_max_frames_and_sequences(root, ckpt, tmp_path):
    out = tmp_path / "eval"
    seqs = load_benchmark("synthetic_lasot_ext", root=root)
    pick = seqs[1].name
    scores = evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=1),
                      DataSelection(root=root, max_frames=5, sequences=[pick]), Execution(progress=False))
    assert _files(out) == {f"{pick}.txt", f"{pick}_time.txt", "evaluate.json", "scores_pytracking.json",
                           "scores_official.json"}
    assert read_results(out / f"{pick}.txt").shape == (5, 4) and read_times(out / f"{pick}_time.txt").shape == (5,)
    # scored against the first 5 ground-truth rows (the official protocol refuses short results otherwise)
    assert scores["official"].names == [pick] and scores["official"].success.shape == (1, 21)
    short = Sequence(pick, seqs[1].frames[:5], seqs[1].boxes[:5], seqs[1].description, seqs[1].dataset, seqs[1].visible[:5])
    expect = score_folder(out, [short], protocol="official").overall()
    assert scores["official"].overall() == pytest.approx(expect)
    # a longer --max-frames later: the short result no longer counts as finished and is redone
    evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=1),
             DataSelection(root=root, max_frames=8, sequences=[pick]), Execution(progress=False))
    assert read_results(out / f"{pick}.txt").shape == (8, 4)
    with pytest.raises(KeyError, match="nope"):
        evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=1),
                 DataSelection(root=root, sequences=["nope"]), Execution(progress=False))


def test_readings_and_steps_are_recorded_and_each_frames_spread_is_saved(root, ckpt, tmp_path):
    seqs = load_benchmark("synthetic_lasot_ext", root=root)
    kw = dict(data=DataSelection(root=root, max_frames=5), execution=Execution(progress=False))
    out = tmp_path / "k3c"
    evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=3, average="chain"), **kw)
    meta = json.loads((out / "evaluate.json").read_text())
    assert (meta["samples"], meta["average"], meta["steps"], meta["sampling_steps"]) == (3, "chain", None, 3)
    for s in seqs:  # one value per tracked frame: the largest per-pixel range of the 3 averaged masks
        v = np.loadtxt(spread_path(out, s.name), ndmin=1)
        assert v.shape == (4,) and ((v >= 0) & (v <= 1)).all()
    assert runner.is_finished(out, seqs[0].name, 5, spread=True)
    spread_path(out, seqs[0].name).unlink()  # a sequence without its spread is tracked again
    assert not runner.is_finished(out, seqs[0].name, 5, spread=True)
    evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=3, average="chain"), **kw)
    assert spread_path(out, seqs[0].name).is_file()
    with pytest.raises(ValueError, match="other settings.*average='chain'"):  # one folder, one reading
        evaluate(ckpt, "synthetic_lasot_ext", out, TrackSettings(samples=3, average="final"), **kw)
    with pytest.raises(ValueError, match="one chain of k = 3 steps"):  # refused before anything is tracked
        evaluate(ckpt, "synthetic_lasot_ext", tmp_path / "bad", TrackSettings(samples=3, steps=2, average="chain"), **kw)
    assert not (tmp_path / "bad").exists()
    one = tmp_path / "k1_steps1"
    evaluate(ckpt, "synthetic_lasot_ext", one, TrackSettings(samples=1, steps=1), **kw)
    meta = json.loads((one / "evaluate.json").read_text())
    assert (meta["average"], meta["steps"], meta["sampling_steps"]) == ("final", 1, 1)
    assert all((np.loadtxt(spread_path(one, s.name), ndmin=1) == 0).all() for s in seqs)  # k = 1: nothing to differ
    # one chain of one step is one denoiser pass under either reading: the same boxes
    evaluate(ckpt, "synthetic_lasot_ext", tmp_path / "k1c", TrackSettings(samples=1, average="chain"), **kw)
    for s in seqs:
        assert (one / f"{s.name}.txt").read_text() == (tmp_path / "k1c" / f"{s.name}.txt").read_text()


def test_an_unseeded_config_draws_a_fresh_seed_records_it_and_resumes_with_it(root, tmp_path):
    """test_seeded=false (reading=authors: the authors' tracking sets no seed): an evaluation given no seed draws
    one from the OS, records it with "seeded": false, reuses it when resumed, and --seed replays it."""
    torch.manual_seed(0)
    cfg = load_config("smoke", "full", test_seeded=False, sampler_eta=1.0)
    ckpt = save_checkpoint(tmp_path / "unseeded.pth", build_model(cfg), cfg)
    kw = dict(data=DataSelection(root=root, max_frames=4), execution=Execution(progress=False))
    metas = []
    for name in ("a", "b"):
        evaluate(ckpt, "synthetic_otb_lang", tmp_path / name, TrackSettings(samples=2), **kw)
        metas.append(json.loads((tmp_path / name / "evaluate.json").read_text()))
    assert [m["seeded"] for m in metas] == [False, False] and metas[0]["seed"] != metas[1]["seed"]
    assert 0 <= metas[0]["seed"] < 2 ** 63 and metas[0]["reading"] == "paper"
    assert runner.unseeded_seed(tmp_path / "a") == metas[0]["seed"]  # a resumed run keeps its seed ...
    evaluate(ckpt, "synthetic_otb_lang", tmp_path / "a", TrackSettings(samples=2), **kw)  # ... so it resumes, not refused
    replay = tmp_path / "replay"
    evaluate(ckpt, "synthetic_otb_lang", replay, TrackSettings(samples=2, seed=metas[0]["seed"]), **kw)
    assert json.loads((replay / "evaluate.json").read_text())["seeded"] is True
    for s in load_benchmark("synthetic_otb_lang", root=root):
        assert (replay / f"{s.name}.txt").read_text() == (tmp_path / "a" / f"{s.name}.txt").read_text()
    seeded = load_config("smoke", "full")  # the default: the config's seed, recorded as seeded
    evaluate(save_checkpoint(tmp_path / "seeded.pth", build_model(seeded), seeded), "synthetic_otb_lang",
             tmp_path / "c", TrackSettings(samples=1), **kw)
    meta = json.loads((tmp_path / "c" / "evaluate.json").read_text())
    assert (meta["seed"], meta["seeded"]) == (seeded.seed, True)


@pytest.fixture(scope="module")
def noisy_ckpt(tmp_path_factory):
    """A smoke full model whose denoiser reads its noisy input (untrained, mask_in is 0: every chain the same)."""
    torch.manual_seed(0)
    cfg = load_config("smoke", "full")
    model = build_model(cfg)
    torch.nn.init.normal_(model.denoiser.mask_in.weight, std=0.5)
    return save_checkpoint(tmp_path_factory.mktemp("noisy") / "noisy.pth", model, cfg)


def test_the_samplers_eta_is_a_setting_of_the_run(root, noisy_ckpt, tmp_path):
    """TrackSettings.eta runs the model with another DDIM eta than its config's (1, the paper's stochastic
    step): recorded in evaluate.json as given (eta) and as used (sampler_eta), the same eta gives the same
    files, another eta other masks, and a folder of another eta is refused (or redone with replace_stale)."""
    seqs = load_benchmark("synthetic_lasot_ext", root=root)
    data, execution = DataSelection(root=root, max_frames=5), Execution(progress=False)
    run = lambda name, eta, ex=execution: evaluate(noisy_ckpt, "synthetic_lasot_ext", tmp_path / name,  # noqa: E731
                                                   TrackSettings(samples=5, eta=eta), data, ex)
    files = lambda name: {p.relative_to(tmp_path / name): p.read_text()  # noqa: E731
                          for s in seqs for p in (tmp_path / name / f"{s.name}.txt", spread_path(tmp_path / name, s.name))}
    for name, eta in (("k5", None), ("k5_eta1", 1.0), ("k5_eta0", 0.0), ("again_eta0", 0.0)):
        run(name, eta)
        meta = json.loads((tmp_path / name / "evaluate.json").read_text())
        assert (meta["eta"], meta["sampler_eta"]) == (eta, 1.0 if eta is None else eta)
    assert files("k5") == files("k5_eta1")  # the config's sampler given explicitly: the same draws
    assert files("k5_eta0") == files("again_eta0")  # reproducible: each sequence's noise from its seed
    spread = lambda name: np.concatenate([np.loadtxt(spread_path(tmp_path / name, s.name)) for s in seqs])  # noqa: E731
    assert spread("k5").shape == (2 * 4,) and not np.allclose(spread("k5"), spread("k5_eta0"), atol=1e-3)
    with pytest.raises(ValueError, match=r"other settings sampler_eta=0\.0 \(now 1\.0\)"):
        run("k5_eta0", 1.0)
    run("k5_eta0", 1.0, Execution(progress=False, replace_stale=True))  # the chain's way: redone
    assert files("k5_eta0") == files("k5")
    # a record from before the per-run eta sampled with the config's: resumed, not redone
    meta = json.loads((tmp_path / "k5" / "evaluate.json").read_text())
    del meta["eta"], meta["sampler_eta"]
    (tmp_path / "k5" / "evaluate.json").write_text(json.dumps(meta))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "k5").glob("*.txt")}
    run("k5", None)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(ValueError, match=r"sampler_eta.*\[0, 1\]"):  # refused before anything is tracked
        run("bad", 1.5)
    assert not (tmp_path / "bad").exists()


def test_bad_frames_raise_naming_the_file(root, ckpt, loaded, tmp_path):
    model, cfg = loaded
    data = tmp_path / "syn"
    shutil.copytree(root / "otb_lang", data / "otb_lang")
    seq = load_benchmark("synthetic_otb_lang", root=data)[0]
    bad = seq.frames[3]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(FrameError, match=re.escape(f"cannot decode frame image: {bad}")):
        evaluate(ckpt, "synthetic_otb_lang", tmp_path / "out", TrackSettings(samples=1), DataSelection(root=data),
                 Execution(progress=False))
    assert not list((tmp_path / "out").glob(f"{seq.name}*"))  # nothing written for the broken sequence
    bad.unlink()
    with pytest.raises(FrameError, match=re.escape(f"missing frame image: {bad}")):  # a frame gone after the benchmark was read
        track_sequence(Tracker(model, cfg), seq)
    with pytest.raises(DatasetError, match=re.escape(str(bad.parent))):  # the reader already notices the gap
        evaluate(ckpt, "synthetic_otb_lang", tmp_path / "out", TrackSettings(samples=1), DataSelection(root=data),
                 Execution(progress=False))


def _copy_otb_lang(root, tmp_path):
    data = tmp_path / "syn"
    shutil.copytree(root / "otb_lang", data / "otb_lang")
    return data, load_benchmark("synthetic_otb_lang", root=data)[0]


def test_truncated_frame_stops_evaluate_naming_the_file(root, ckpt, tmp_path):
    data, seq = _copy_otb_lang(root, tmp_path)
    bad = seq.frames[3]
    whole = bad.read_bytes()
    assert whole[:2] == b"\xff\xd8"  # a JPEG: OpenCV alone decodes half of one with grey rows, no error
    bad.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FrameError, match=re.escape(f"{bad}: incomplete image: no JPEG end marker FF D9")):
        evaluate(ckpt, "synthetic_otb_lang", tmp_path / "out", TrackSettings(samples=1),
                 DataSelection(root=data, max_frames=6, sequences=[seq.name]), Execution(progress=False))
    assert not list((tmp_path / "out").glob(f"{seq.name}*"))  # nothing written, nothing scored


def test_frame_of_another_size_stops_tracking_naming_both_files(root, loaded, tmp_path):
    _, seq = _copy_otb_lang(root, tmp_path)
    other = seq.frames[4]
    img = cv2.imread(str(other))
    h, w = img.shape[:2]
    cv2.imwrite(str(other), cv2.resize(img, (w + 8, h)))
    with pytest.raises(FrameError) as e:
        track_sequence(Tracker(*loaded), seq, frames=6)
    assert str(e.value) == (f"{other}: {w + 8}x{h} pixels, but the first frame of {seq.name} ({seq.frames[0]}) is "
                            f"{w}x{h}; a sequence's frames must share one size")


@pytest.mark.parametrize("first", [[np.nan, 5, 10, 10], [5, 5, 0, 10], [5, 5, 10, np.nan]])
def test_first_box_without_size_names_the_sequence(root, tracker, first):
    # the readers refuse such files; a Sequence built in memory is checked before the tracker sees it
    seq = load_benchmark("synthetic_otb_lang", root=root)[0]
    boxes = seq.boxes.copy()
    boxes[0] = first
    with pytest.raises(ValueError, match=f"sequence {seq.name}: the first box .* is not a box with w, h > 0"):
        track_sequence(tracker, Sequence(seq.name, seq.frames, boxes, seq.description, seq.dataset), frames=3)


def test_track_sequence_returns_masks_of_chosen_frames(root, tracker):
    seq = load_benchmark("synthetic_otb_lang", root=root)[0]
    h, w = cv2.imread(str(seq.frames[0])).shape[:2]
    res = track_sequence(tracker, seq, frames=6, keep_masks=[2, 5], record_crop_masks=True)
    assert res["boxes"].shape == (6, 4) and res["times"].shape == (6,) and res["scores"].shape == (6,)
    np.testing.assert_array_equal(res["boxes"][0], seq.boxes[0])
    assert np.isnan(res["scores"][0]) and np.isfinite(res["scores"][1:]).all()
    assert sorted(res["masks"]) == [2, 5] and res["masks"][5].shape == (h, w)
    m = tracker.model.mask_size
    assert res["crop_masks"].shape == (5, m, m) and res["crop_masks"].dtype == np.float16 and res["windows"].shape == (5, 3)
    from dmtrack.track import mask_to_image
    pasted = mask_to_image(res["crop_masks"][4].astype(np.float32), res["windows"][4], (h, w))
    np.testing.assert_allclose(pasted, res["masks"][5], atol=2e-3)  # float16 storage
    again = track_sequence(tracker, seq, frames=6)  # the tracker re-seeds at initialize: same boxes
    np.testing.assert_array_equal(again["boxes"], res["boxes"])


def test_cli_parallel_workers_with_saved_masks(root, ckpt, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = cli_main(["evaluate", "--checkpoint", str(ckpt), "--benchmark", "synthetic_otb_lang", "--data-root", str(root),
                   "--samples", "2", "--out", str(out), "--workers", "2", "--max-frames", "8", "--save-masks",
                   "--no-progress"])
    assert rc == 0
    assert "protocol=pytracking" in capsys.readouterr().out
    seqs = load_benchmark("synthetic_otb_lang", root=root)
    for s in seqs:
        assert read_results(out / f"{s.name}.txt").shape == (8, 4)
        assert read_times(out / f"{s.name}_time.txt").shape == (8,)
        h, w = cv2.imread(str(s.frames[0])).shape[:2]
        mask = load_masks(out / "masks" / f"{s.name}.npz", 7)
        assert mask.shape == (h, w) and 0 <= mask.min() and mask.max() <= 1 and mask.max() > 0
    assert not list(out.rglob(".*.tmp"))
    assert json.loads((out / "evaluate.json").read_text())["samples"] == 2


@dataclass(frozen=True)
class _GpuRecordingTracker:
    """A worker's tracker factory that first writes the CUDA_VISIBLE_DEVICES its process was given."""
    inner: runner.CheckpointTracker
    record: str

    def __call__(self):
        Path(self.record, f"{os.getpid()}.txt").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
        return self.inner()


def test_each_worker_sees_one_gpu_of_the_list(root, ckpt, tmp_path):
    record, out = tmp_path / "record", tmp_path / "eval"
    record.mkdir()
    seqs = load_benchmark("synthetic_otb_lang", root=root)
    assert len(seqs) >= 2  # as many sequences as workers: both workers start
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    meta = dict(benchmark="synthetic_otb_lang", variant="full", samples=1, seed=0)
    two = runner.Execution(workers=2, gpus=["4", "6"], progress=False)
    on_cpu = runner.CheckpointTracker(str(ckpt), runner.TrackSettings(samples=1, seed=0, device="cpu"))
    runner.track_benchmark(_GpuRecordingTracker(on_cpu, str(record)), seqs, out, meta, two, max_frames=3)
    assert sorted(f.read_text() for f in record.iterdir()) == ["4", "6"]  # worker i: gpus[i % 2]; device=cpu asked for
    assert all(read_results(out / f"{s.name}.txt").shape == (3, 4) for s in seqs)
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before  # this process's own is untouched
    # device=auto in a worker handed a GPU that torch cannot see (this machine): an error naming it, not a CPU run
    with pytest.raises(RuntimeError, match=r"device=auto in a process handed GPU\(s\) [46] \(DMTRACK_GPUS; "
                                           r"CUDA_VISIBLE_DEVICES='[46]'\), but torch \S+ sees 0 GPU"):
        runner.track_benchmark(runner.CheckpointTracker(str(ckpt), runner.TrackSettings(samples=1, seed=0)), seqs,
                               tmp_path / "auto", meta, two, max_frames=3)
    assert not list((tmp_path / "auto").glob("*.txt"))


def test_evaluate_spreads_its_workers_over_the_gpus_it_is_given(ckpt, tmp_path, monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(runner, "evaluate", lambda *a, **kw: asked.append(a[5].gpus) or {})
    base = ["evaluate", "--checkpoint", str(ckpt), "--benchmark", "synthetic_otb_lang", "--out", str(tmp_path / "e")]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for ids in ("7", "abc"):  # this machine has no GPU
        assert cli_main(base + ["--workers", "2", "--gpus", ids]) == 2
        assert capsys.readouterr().err.strip() == (f"dmtrack evaluate: error: --gpus {ids}: GPU id(s) {ids} not visible to "
                                                   "this process (it sees no GPU; CUDA_VISIBLE_DEVICES=unset); give ids as "
                                                   "CUDA_VISIBLE_DEVICES names them, or none")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert cli_main(base + ["--workers", "2"]) == 0 and asked[-1] == ["0", "1", "2"]  # default: every GPU, one per worker
    assert cli_main(base + ["--workers", "2", "--gpus", "2,0"]) == 0 and asked[-1] == ["2", "0"]
    assert cli_main(base + ["--gpus", "1"]) == 0 and asked[-1] == ["1"]  # one worker: in this process, on GPU 1
    assert cli_main(base) == 0 and asked[-1] is None  # one worker, no --gpus: this process's device, as before
    assert cli_main(base + ["--workers", "2", "--device", "cpu"]) == 0 and asked[-1] is None
    assert cli_main(base + ["--workers", "2", "--gpus", "none"]) == 0 and asked[-1] is None
    assert cli_main(base + ["--gpus", "1", "--device", "cuda:1"]) == 2
    assert "--gpus 1 with --device cuda:1: give one of them" in capsys.readouterr().err


def test_tracking_in_this_process_builds_the_tracker_on_the_first_gpu_given(monkeypatch):
    current = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    monkeypatch.setattr(torch.cuda, "device", lambda index: current.append(index) or runner.nullcontext())
    with runner._on_first_gpu(["6", "5"]):
        pass
    assert current == [1]  # "6" is this process's cuda:1
    with pytest.raises(ValueError, match="GPU id.s. 0 not visible"):
        runner._on_first_gpu(["0"])


def _long_tnl2k(root: Path, data: Path, frames: int) -> str:
    """The smoke TNL2K stand-in plus a sequence of `frames` frames (the first one's images and rows,
    repeated; images hard-linked), slow enough to be stopped in the middle of. Returns its name."""
    shutil.copytree(root / "tnl2k", data / "tnl2k")
    src = load_benchmark("synthetic_tnl2k", root=data)[0]
    folder = data / "tnl2k" / "test" / "long_video_00-Done"
    (folder / "imgs").mkdir(parents=True)
    rows = (src.frames[0].parent.parent / "groundtruth.txt").read_text().splitlines()
    for i in range(frames):
        os.link(src.frames[i % len(src)], folder / "imgs" / f"{i + 1:05d}.jpg")
    (folder / "groundtruth.txt").write_text("\n".join(rows[i % len(rows)] for i in range(frames)) + "\n")
    (folder / "drift.txt").write_text("0\n" * frames)
    (folder / "language.txt").write_text(src.description + "\n")
    return folder.name


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split() if d.name.isdigit() else None
        except OSError:
            continue
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def _wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.2)
    return condition()


@pytest.mark.slow
def test_stopping_evaluate_stops_its_workers_and_a_rerun_resumes(root, ckpt, tmp_path):
    data, long = tmp_path / "data", _long_tnl2k(root, tmp_path / "data", 1500)  # ~40 s of tracking
    short = [s.name for s in load_benchmark("synthetic_tnl2k", root=root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = lambda out: [sys.executable, "-m", "dmtrack", "evaluate", "--checkpoint", str(ckpt), "--benchmark",
                       "synthetic_tnl2k", "--data-root", str(data), "--samples", "1", "--out", str(out), "--workers", "2",
                       "--no-progress"]
    out, groups = tmp_path / "eval", []

    def started(out):  # longest first: one worker tracks the long sequence, the other finishes both short ones
        p = subprocess.Popen(cmd(out), env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        groups.append(p.pid)  # its own process group, which its workers join
        if not _wait_for(lambda: all((out / f"{n}_time.txt").exists() for n in short) or p.poll() is not None, 240):
            p.kill()
        assert p.poll() is None, p.communicate()[1][-3000:]
        assert not (out / f"{long}.txt").exists() and len(_group(p.pid)) >= 3  # parent and two workers
        return p

    try:
        # SIGKILL: the parent cannot stop its workers, they stop themselves (and the kernel drops the lock)
        p = started(tmp_path / "killed")
        workers = [q for q in _group(p.pid) if q != p.pid]
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert _wait_for(lambda: not _group(p.pid), 10), f"left running after SIGKILL: {_group(p.pid)} (workers {workers})"

        # SIGTERM: the parent stops its workers and exits; a second evaluate meanwhile is refused
        p = started(out)
        with pytest.raises(RunLocked, match=re.escape(f"{out}: another dmtrack evaluate is running in this folder "
                                                      f"(pid {p.pid}: ")):
            evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=1), DataSelection(root=data),
                     Execution(progress=False))
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) != 0
        assert _wait_for(lambda: not _group(p.pid), 10), f"left running after SIGTERM: {_group(p.pid)}"
    finally:  # whatever failed, leave no process of these runs behind
        for pgid in groups:
            if _group(pgid):
                os.killpg(pgid, signal.SIGKILL)
    assert not (out / ".lock").exists()  # the parent ran its cleanup, it was not simply killed
    stamp = {n: (out / f"{n}.txt").stat().st_mtime_ns for n in short}
    assert not (out / f"{long}.txt").exists()

    # the rerun resumes: the short sequences are kept, the long one (cut to 40 frames here) is done
    evaluate(ckpt, "synthetic_tnl2k", out, TrackSettings(samples=1), DataSelection(root=data, max_frames=40),
             Execution(progress=False))
    assert {n: (out / f"{n}.txt").stat().st_mtime_ns for n in short} == stamp
    assert read_results(out / f"{long}.txt").shape == (40, 4) and (out / "scores_pytracking.json").exists()
    assert not list(out.glob(".*"))


def test_temps_of_live_writers_survive_a_new_run(root, ckpt, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = out / f".Circle1.txt.{alive.pid}.a1b2c3d4.tmp"  # e.g. a worker of a run in another folder layout
        dead = out / f".Circle1.txt.{gone.pid}.e5f6g7h8.tmp"
        for p in (live, dead):
            p.write_text("1\t2\t")
        evaluate(ckpt, "synthetic_otb_lang", out, TrackSettings(samples=1), DataSelection(root=root, max_frames=4),
                 Execution(progress=False))
        assert live.exists() and not dead.exists()
    finally:
        alive.kill()
        alive.wait()


# ----------------------------------------------------------------------------- got10k toolkit
OTB2013 = ["Basketball", "Bolt", "Boy", "Car4", "CarDark", "CarScale", "Coke", "Couple", "Crossing", "David", "David2",
           "David3", "Deer", "Dog1", "Doll", "Dudek", "FaceOcc1", "FaceOcc2", "Fish", "FleetFace", "Football",
           "Football1", "Freeman1", "Freeman3", "Freeman4", "Girl", "Ironman", "Jogging", "Jumping", "Lemming",
           "Liquor", "Matrix", "Mhyang", "MotorRolling", "MountainBike", "Shaking", "Singer1", "Singer2", "Skating1",
           "Skiing", "Soccer", "Subway", "Suv", "Sylvester", "Tiger1", "Tiger2", "Trellis", "Walking", "Walking2", "Woman"]


def test_got10k_experiment_otb_drives_the_tracker(root, tracker, tmp_path):
    from got10k.experiments import ExperimentOTB

    from dmtrack.track.interop import Got10kTracker

    # OTB layout as got10k reads it: <root>/<Seq>/img/0001.jpg + groundtruth_rect.txt; every OTB2013 folder
    # must exist or the toolkit tries to download; two of them hold sequences (the synthetic OTB-Lang ones)
    otb = tmp_path / "OTB"
    for name in OTB2013:
        (otb / name).mkdir(parents=True)
    seqs = load_benchmark("synthetic_otb_lang", root=root)
    mapping = {}
    for name, s in zip(["Basketball", "Bolt"], seqs):
        shutil.copytree(s.frames[0].parent, otb / name / "img")
        shutil.copy(s.frames[0].parent.parent / "groundtruth_rect.txt", otb / name / "groundtruth_rect.txt")
        mapping[name] = s.description  # raw; the tracker cleans it as training does
    adapter = Got10kTracker(tracker, sentences=mapping)
    exp = ExperimentOTB(str(otb), version=2013, result_dir=str(tmp_path / "results"), report_dir=str(tmp_path / "reports"))
    exp.run(adapter)
    perf = exp.report([adapter.name])[adapter.name]

    ours = []
    for name, s in zip(["Basketball", "Bolt"], seqs):
        got = np.loadtxt(tmp_path / "results" / "OTB2013" / "DMTrack" / f"{name}.txt", delimiter=",")
        assert got.shape == (len(s), 4)
        # the same tracker on the same (PIL-decoded) pixels gives the same boxes
        frames = [np.asarray(Image.open(f).convert("RGB")) for f in sorted((otb / name / "img").glob("*.jpg"))]
        tracker.initialize(frames[0], s.boxes[0], s.text)
        mine = np.array([s.boxes[0]] + [tracker.track(f, return_mask=False)["box"] for f in frames[1:]])
        np.testing.assert_allclose(got, mine, atol=5e-4)  # got10k records %.3f
        ours.append(Sequence(name, s.frames, s.boxes, s.description, "otb"))
    # got10k's success score (mean of the 21-bin success curve) = our pytracking AUC on its own records
    ref = score_folder(tmp_path / "results" / "OTB2013" / "DMTrack", ours, protocol="pytracking").overall()
    assert 100 * perf["overall"]["success_score"] == pytest.approx(ref["auc"], abs=1e-9)
    assert 100 * perf["overall"]["precision_score"] == pytest.approx(ref["precision"], abs=1e-9)
    with pytest.raises(KeyError, match="no sentence"):
        adapter.sentence_for([str(otb / "Boy" / "img" / "0001.jpg")])


def test_other_sentences_go_to_their_own_folders_and_no_language_ignores_them(root, ckpt, tmp_path):
    from dmtrack.layout import EvalRun

    torch.manual_seed(0)
    cfg = load_config("smoke", "no_language")
    blind = tmp_path / "no_language.pth"
    save_checkpoint(blind, build_model(cfg), cfg)
    seqs = load_benchmark("synthetic_lasot", root=root)
    one, quiet = TrackSettings(samples=1, seed=0), Execution(progress=False)
    boxes = {}
    for variant, path in (("no_language", blind), ("full", ckpt)):
        for sentence in ("true", "misleading", "uninformative"):
            out = EvalRun(variant, 0, 1, sentence=sentence).folder(tmp_path / "work", "synthetic_lasot")
            evaluate(path, "synthetic_lasot", out, one,
                     DataSelection(root=root, max_frames=6, sentence=sentence), quiet)
            assert json.loads((out / "evaluate.json").read_text())["sentence"] == sentence
            boxes[variant, sentence] = {s.name: (out / f"{s.name}.txt").read_text() for s in seqs}
    names = sorted(p.name for p in (tmp_path / "work" / "results" / "synthetic_lasot" / "dmtrack-full").iterdir())
    assert names == ["k1_mislead_seed0", "k1_seed0", "k1_uninf_seed0"]  # "true" keeps today's name
    # the control: a tracker that never reads the sentence gives bit-identical boxes under all three
    assert boxes["no_language", "true"] == boxes["no_language", "misleading"] == boxes["no_language", "uninformative"]
    assert boxes["full", "true"] != boxes["full", "misleading"]  # the full model does read it
    mislead = EvalRun("full", 0, 1, sentence="misleading").folder(tmp_path / "work", "synthetic_lasot")
    with pytest.raises(ValueError, match="other settings.*sentence='misleading' \\(now 'true'\\)"):
        evaluate(ckpt, "synthetic_lasot", mislead, one,
                 DataSelection(root=root, max_frames=6), quiet)  # one folder, one sentence
