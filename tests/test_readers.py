"""Readers for the real benchmarks, on tiny fixtures written in the exact real layouts.

One fixture writer per layout; one test per quirk of formats_metrics.md §1-5 asserting the
real values; one test per error case asserting that the file (and line) is named.
"""
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dmtrack.data import (BENCHMARKS, DatasetError, FrameError, MissingFileError, canonical_name, dataset_root,
                          load_benchmark, read_frame)
from dmtrack.data.benchmarks import OFFICIAL_SIZE, data_environment
from dmtrack.data.lasot import official_test_names, official_train_names, read_sequence, write_sequence, write_split
from dmtrack.data.names import split_target
from fixtures import boxes, write_images, write_lasot_seq, write_otb_video, write_query, write_rows, write_tnl2k_seq

# the small LaSOT fixture's 2-name split is a custom split, as the opt-out allows (the check is tested below)
pytestmark = pytest.mark.filterwarnings("ignore:custom LaSOT split:UserWarning")

# ----------------------------------------------------------------------------- LaSOT layout

@pytest.fixture
def lasot(tmp_path, monkeypatch):
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT_CHECK", "0")
    root = tmp_path / "LaSOT"
    write_lasot_seq(root, "airplane-1", occ=[0, 1, 0, 0, 0], oov=[0, 0, 0, 1, 1],
                    text="White airplane flying in the sky.\nsecond line is ignored\n")
    write_lasot_seq(root, "airplane-2")
    write_lasot_seq(root, "bird-2", n=3, text="bird-like thing (small)")
    write_lasot_seq(root, "bird-10", n=2)
    (root / "testing_set.txt").write_text("airplane-1\nbird-2\n")
    return root


def test_lasot_test_split_layout_flags_and_text(lasot):
    seqs = load_benchmark("lasot", lasot)
    assert [s.name for s in seqs] == ["airplane-1", "bird-2"]
    s = seqs[0]
    assert s.frames == [lasot / "airplane" / "airplane-1" / "img" / f"{i:08d}.jpg" for i in range(1, 6)]
    assert s.frames[0].name == "00000001.jpg" and all(f.is_file() for f in s.frames)
    np.testing.assert_array_equal(s.boxes, [[1, 1, 10, 20], [2, 3, 11, 20], [3, 5, 12, 20], [4, 7, 13, 20],
                                            [5, 9, 14, 20]])
    assert s.boxes.dtype == np.float64
    # visible = not fully occluded and not out of view (pytracking's rule)
    np.testing.assert_array_equal(s.visible, [True, False, True, False, False])
    assert s.description == "White airplane flying in the sky."
    assert s.text == "white airplane flying in the sky"
    assert s.dataset == "lasot" and s.extra["benchmark"] == "lasot" and s.extra["class"] == "airplane"
    assert s.drift is None and s.attributes is None
    assert seqs[1].text == "bird like thing small" and len(seqs[1]) == 3


def test_lasot_writer_writes_what_the_reader_reads(tmp_path):
    """dmtrack.data.lasot.write_sequence, the one LaSOT-layout writer (synthetic benchmark, bench/,
    tests): the exact files, byte for byte, and read_sequence reading them back."""
    folder = write_sequence(tmp_path / "cat" / "cat-3", [(1, 2, 30, 40), (0, 0, 0, 0), (5, 6, 7, 8)],
                            "a black cat on the sofa\n", occluded=[0, 0, 1], out_of_view=[0, 1, 0],
                            frames=[b"\xff\xd8one", b"", b"three"])
    write_split(tmp_path, ["cat-3", "dog-1"])
    assert folder == tmp_path / "cat" / "cat-3"
    assert (folder / "groundtruth.txt").read_text() == "1,2,30,40\n0,0,0,0\n5,6,7,8\n"
    assert (folder / "full_occlusion.txt").read_text() == "0,0,1\n" and (folder / "out_of_view.txt").read_text() == "0,1,0\n"
    assert (folder / "nlp.txt").read_text() == "a black cat on the sofa\n"
    assert [(f.name, f.read_bytes()) for f in sorted((folder / "img").iterdir())] == [
        ("00000001.jpg", b"\xff\xd8one"), ("00000002.jpg", b""), ("00000003.jpg", b"three")]
    assert (tmp_path / "testing_set.txt").read_text() == "cat-3\ndog-1\n"
    s = read_sequence(folder, "lasot")
    np.testing.assert_array_equal(s.boxes, [[1, 2, 30, 40], [0, 0, 0, 0], [5, 6, 7, 8]])
    np.testing.assert_array_equal(s.visible, [True, False, False])  # out of view, then fully occluded
    assert s.description == "a black cat on the sofa" and s.extra["class"] == "cat" and len(s.frames) == 3
    write_sequence(folder, [(1, 2, 3, 4)], "the same folder again")  # flags default to 0, no frames written
    assert (folder / "full_occlusion.txt").read_text() == "0\n" and (folder / "nlp.txt").read_text() == "the same folder again"


def test_lasot_robustness_sentences_come_from_the_next_sequence_of_the_class(lasot):
    from dmtrack.data.sentences import with_sentence

    write_lasot_seq(lasot, "airplane-10", text="a jet taking off\n")
    write_lasot_seq(lasot, "bird-3", text="the parrot on a branch\n")
    (lasot / "testing_set.txt").write_text("airplane-1\nairplane-2\nairplane-10\nbird-2\nbird-3\n")
    seqs = load_benchmark("lasot", lasot)  # sorted by name: airplane-1, airplane-10, airplane-2, bird-2, bird-3
    mis = {s.name: s.description for s in with_sentence(seqs, "misleading")}
    # within a class in number order 1, 2, 10, wrapping round
    assert mis == {"airplane-1": "white airplane flying in the sky", "airplane-2": "a jet taking off",
                   "airplane-10": "White airplane flying in the sky.", "bird-2": "the parrot on a branch",
                   "bird-3": "bird-like thing (small)"}
    assert {s.name: s.text for s in with_sentence(seqs, "uninformative")} == {
        "airplane-1": "airplane", "airplane-2": "airplane", "airplane-10": "airplane", "bird-2": "bird", "bird-3": "bird"}
    with pytest.warns(UserWarning, match="class 'bird': only bird-2 is loaded; .* airplane-1, another class"):
        alone = with_sentence([s for s in seqs if s.name != "bird-3"], "misleading")
    assert alone[-1].description == "White airplane flying in the sky."  # the next sequence, wrapping round
    with pytest.raises(ValueError, match="bird-2: the only sequence loaded"):
        with_sentence([s for s in seqs if s.name == "bird-2"], "misleading")


def test_lasot_train_split_is_everything_not_in_testing_set(lasot):
    assert [s.name for s in load_benchmark("lasot", lasot, split="train")] == ["airplane-2", "bird-10"]


def test_lasot_split_file_from_env(lasot, tmp_path, monkeypatch):
    elsewhere = tmp_path / "toolkit" / "testing_set.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("bird-10\n")
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT", str(elsewhere))
    assert [s.name for s in load_benchmark("lasot", lasot)] == ["bird-10"]


def test_lasot_missing_split_file_says_where_to_put_it(lasot):
    (lasot / "testing_set.txt").unlink()
    for split in ("test", "train"):
        with pytest.raises(MissingFileError, match="testing_set.txt") as e:
            load_benchmark("lasot", lasot, split=split)
        assert "LaSOT_Evaluation_Toolkit" in str(e.value) and "DMTRACK_LASOT_SPLIT" in str(e.value)


def test_lasot_split_file_naming_missing_sequence(lasot):
    (lasot / "testing_set.txt").write_text("airplane-1 \ncat-3\n")  # trailing space tolerated
    with pytest.raises(MissingFileError) as e:
        load_benchmark("lasot", lasot)
    msg = str(e.value)
    assert str(lasot / "testing_set.txt") in msg and "line 2" in msg and str(lasot / "cat" / "cat-3") in msg


def test_lasot_split_file_repeated_name(lasot):
    (lasot / "testing_set.txt").write_text("airplane-1\n\nbird-2\nairplane-1\n")
    with pytest.raises(DatasetError, match=r"testing_set.txt, line 4: airplane-1 already listed on line 1"):
        load_benchmark("lasot", lasot)


def test_dataset_root_from_env(lasot, tmp_path, monkeypatch):
    monkeypatch.setenv("DMTRACK_DATA", str(tmp_path))
    assert dataset_root("lasot") == tmp_path / "LaSOT"
    assert len(load_benchmark("lasot")) == 2
    monkeypatch.setenv("DMTRACK_LASOT_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(MissingFileError, match="nowhere"):
        load_benchmark("lasot")


def test_data_environment_makes_every_root_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in [k for k in os.environ if k.startswith("DMTRACK_")]:
        monkeypatch.delenv(var)
    assert data_environment() == {"DMTRACK_DATA": str(tmp_path / "data")}  # the default `data` too
    monkeypatch.setenv("DMTRACK_DATA", "sets")
    monkeypatch.setenv("DMTRACK_TNL2K_ROOT", "/mnt/TNL2K")
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT", "toolkit/testing_set.txt")
    assert data_environment() == {"DMTRACK_DATA": str(tmp_path / "sets"), "DMTRACK_TNL2K_ROOT": "/mnt/TNL2K",
                                  "DMTRACK_LASOT_SPLIT": str(tmp_path / "toolkit" / "testing_set.txt")}
    assert data_environment(cwd="/elsewhere")["DMTRACK_DATA"] == "/elsewhere/sets"


@pytest.fixture(scope="module")
def lasot_full(tmp_path_factory):
    """Every one of the 1,400 LaSOT folders (one frame each) and the official testing_set.txt."""
    root = tmp_path_factory.mktemp("full") / "LaSOT"
    for name in sorted(set(official_test_names()) | official_train_names()):
        write_lasot_seq(root, name, n=1)
    (root / "testing_set.txt").write_text("\n".join(official_test_names()) + "\n")
    return root


def test_official_lasot_lists():
    test, train = official_test_names(), official_train_names()
    assert len(test) == len(set(test)) == OFFICIAL_SIZE["lasot"][0] == 280 and len(train) == 1120
    classes = {n.rsplit("-", 1)[0] for n in test}
    assert len(classes) == 70 and all(sum(n.rsplit("-", 1)[0] == c for n in test) == 4 for c in classes)
    assert not set(test) & train and {"airplane-1", "monkey-17", "volleyball-19"} <= set(test) and "airplane-2" in train


def test_lasot_official_split_loads_280_test_and_1120_train(lasot_full, monkeypatch):
    monkeypatch.delenv("DMTRACK_LASOT_SPLIT_CHECK", raising=False)
    assert [s.name for s in load_benchmark("lasot", lasot_full)] == sorted(official_test_names())
    assert {s.name for s in load_benchmark("lasot", lasot_full, split="train")} == official_train_names()


def test_lasot_split_file_other_than_the_official_280_is_an_error(lasot_full, tmp_path, monkeypatch):
    monkeypatch.delenv("DMTRACK_LASOT_SPLIT_CHECK", raising=False)
    short = tmp_path / "testing_set.txt"  # airplane-9 dropped: it would become a training sequence
    short.write_text("\n".join(n for n in official_test_names() if n != "airplane-9") + "\n")
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT", str(short))
    for split in ("test", "train"):
        with pytest.raises(DatasetError) as e:
            load_benchmark("lasot", lasot_full, split=split)
        assert str(short) in str(e.value) and "lists 279 names" in str(e.value) and "missing: airplane-9" in str(e.value)
        assert "DMTRACK_LASOT_SPLIT_CHECK=0" in str(e.value)
    other = [n for n in official_test_names() if n != "bird-3"] + ["bird-1"]  # 280 names, one of them a train sequence
    short.write_text("\n".join(other) + "\n")
    with pytest.raises(DatasetError, match="missing: bird-3; not in the official test list: bird-1"):
        load_benchmark("lasot", lasot_full)
    # the opt-outs: the environment variable, or custom_split=True; both warn
    with pytest.warns(UserWarning, match="custom LaSOT split.*bird-3"):
        assert len(load_benchmark("lasot", lasot_full, custom_split=True)) == 280
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT_CHECK", "0")
    with pytest.warns(UserWarning, match="custom LaSOT split"):
        assert "bird-3" in {s.name for s in load_benchmark("lasot", lasot_full, split="train")}


def test_lasot_train_other_than_the_official_1120_is_an_error(lasot_full, monkeypatch):
    monkeypatch.delenv("DMTRACK_LASOT_SPLIT_CHECK", raising=False)
    extra = write_lasot_seq(lasot_full, "airplane-21", n=1)  # no LaSOT sequence (e.g. a copied-in video)
    moved = lasot_full / "bird" / "bird-20"
    moved.rename(lasot_full / ".bird-20")  # a hidden folder is not a sequence: bird-20 is missing
    try:
        with pytest.raises(DatasetError) as e:
            load_benchmark("lasot", lasot_full, split="train")
        msg = str(e.value)
        assert "is 1120 sequences, not the official 1120" in msg and "missing folders: bird-20" in msg
        assert "no official training sequence: airplane-21" in msg and str(lasot_full) in msg
        assert len(load_benchmark("lasot", lasot_full)) == 280  # the test split does not depend on the train folders
    finally:
        (lasot_full / ".bird-20").rename(moved)
        import shutil
        shutil.rmtree(extra)


def test_lasot_ext_every_sequence_is_test(tmp_path):
    root = tmp_path / "LaSOT_ext"
    write_lasot_seq(root, "atv-1", n=2)
    write_lasot_seq(root, "wingsuit-10", n=3)
    seqs = load_benchmark("lasot_ext", root)
    assert [s.name for s in seqs] == ["atv-1", "wingsuit-10"]
    assert {s.dataset for s in seqs} == {"lasot_extension_subset"}  # not 'lasot': the metrics key on it
    assert seqs[1].frames[-1] == root / "wingsuit" / "wingsuit-10" / "img" / "00000003.jpg"
    with pytest.raises(ValueError, match="only a test split"):
        load_benchmark("lasot_ext", root, split="train")


# ----------------------------------------------------------------------------- TNL2K layout

def test_tnl2k_one_level_png_sorted_by_number(tmp_path):
    test = tmp_path / "TNL2K" / "test"
    # unpadded names: plain lexicographic order would put 10.png and 11.png before 2.png
    write_tnl2k_seq(test, "Assian_video_Z03_done", [f"{i}.png" for i in range(1, 12)],
                    [[0, 0, 5, 6]] + boxes(10), attributes="0,1,0,0,1")
    write_tnl2k_seq(test, "BF5_Blade_video_01-Done", [f"{i:08d}.png" for i in range(490, 493)], boxes(3),
                    text="We want to track the blade")  # no final newline
    seqs = load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert [s.name for s in seqs] == ["Assian_video_Z03_done", "BF5_Blade_video_01-Done"]
    s = seqs[0]
    assert [f.name for f in s.frames] == [f"{i}.png" for i in range(1, 12)]
    assert s.frames[9] == test / "Assian_video_Z03_done" / "imgs" / "10.png"
    np.testing.assert_array_equal(s.boxes[:2], [[0, 0, 5, 6], [1, 1, 10, 20]])  # 0-based origin kept as in file
    assert s.description == "the man in white shirt running on the road"  # trailing space stripped
    assert s.dataset == "tnl2k" and s.visible is None
    np.testing.assert_array_equal(s.attributes["flags"], [0, 1, 0, 0, 1])
    assert [f.name for f in seqs[1].frames] == ["00000490.png", "00000491.png", "00000492.png"]
    assert seqs[1].description == "We want to track the blade"


def test_tnl2k_part_folders_jpg_and_revised_annotations_skipped(tmp_path):
    train = tmp_path / "TNL2K" / "train"
    write_tnl2k_seq(train / "TNL2k_train_subset_p9", "INF_womanleft",
                    ["img00009.jpg", "img00010.jpg", "img00011.jpg"], boxes(3))
    write_tnl2k_seq(train / "TNL2k_train_subset_p1", "Arrow_Video_ZZ04_done", ["00001.jpg", "00002.jpg"], boxes(2))
    write_tnl2k_seq(train, "monitor_manypeople", ["0001.jpg"], boxes(1))  # one-level next to part folders
    (train / "revised_annotations" / "INF_womanleft").mkdir(parents=True)
    (train / "revised_annotations" / "INF_womanleft" / "groundtruth.txt").write_text("1,2,3,4\n")
    seqs = load_benchmark("tnl2k", tmp_path / "TNL2K", split="train")
    assert [s.name for s in seqs] == ["Arrow_Video_ZZ04_done", "INF_womanleft", "monitor_manypeople"]
    inf = seqs[1]
    assert inf.frames == [train / "TNL2k_train_subset_p9" / "INF_womanleft" / "imgs" / f"img{i:05d}.jpg"
                          for i in (9, 10, 11)]
    np.testing.assert_array_equal(inf.boxes[2], [3, 5, 12, 20])


def test_tnl2k_stray_folder_is_an_error(tmp_path):
    test = tmp_path / "TNL2K" / "test"
    write_tnl2k_seq(test, "a_video", ["1.jpg"], boxes(1))
    (test / "notes" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty"):
        load_benchmark("tnl2k", tmp_path / "TNL2K")


def test_tnl2k_empty_description_is_an_error_unless_allowed(tmp_path):
    test = tmp_path / "TNL2K" / "test"
    folder = write_tnl2k_seq(test, "Fight_video_6-Done", ["1.jpg", "2.jpg"], boxes(2), text="")
    with pytest.raises(DatasetError) as e:
        load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert str(folder / "language.txt") in str(e.value) and "updated_4_video_text_annotation.zip" in str(e.value)
    with pytest.warns(UserWarning, match="Fight_video_6-Done"):
        (s,) = load_benchmark("tnl2k", tmp_path / "TNL2K", allow_empty_text=True)
    assert s.description == "" and s.text == "" and len(s) == 2


def test_tnl2k_duplicate_frame_number_is_an_error(tmp_path):
    test = tmp_path / "TNL2K" / "test"
    folder = write_tnl2k_seq(test, "v", ["0001.jpg", "1.png"], boxes(2))
    with pytest.raises(DatasetError, match="both carry frame number 1") as e:
        load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert str(folder / "imgs") in str(e.value)


# ----------------------------------------------------------------------------- OTB-Lang layout

@pytest.fixture
def otb(tmp_path):
    root = tmp_path / "OTB_lang"
    # test split
    write_otb_video(root, "BlurCar1", {"groundtruth_rect.txt": boxes(3)}, 249)  # frames 247-249
    write_otb_video(root, "BlurCar3", {"groundtruth_rect.txt": boxes(2)}, 4)  # frames 3-4
    write_otb_video(root, "BlurCar4", {"groundtruth_rect.txt": boxes(2)}, 19)  # frames 18-19
    write_otb_video(root, "Board", {"groundtruth_rect.txt": boxes(3)}, 3, fmt="{:05d}.jpg")
    write_otb_video(root, "Diving", {"groundtruth_rect.txt": boxes(3)}, 5, sep="\t")  # 2 images too many
    write_otb_video(root, "Biker", {"groundtruth_rect.txt": boxes(2)}, 2, sep=" ")
    write_otb_video(root, "KiteSurf", {"groundtruth_rect.txt": boxes(2)}, 2, fmt="{:04d}.png", img_dir="jpg")
    write_otb_video(root, "Skating2-1", {"groundtruth_rect.1.txt": boxes(2)}, 2)
    write_otb_video(root, "Skating2-2", {"groundtruth_rect.2.txt": boxes(2, x0=50)}, 2)
    h4 = write_otb_video(root, "Human4", {"groundtruth_rect.2.txt": boxes(2, x0=7)}, 2)
    (h4 / "groundtruth_rect.1.txt").write_text("")  # empty in OTB
    for name in ("BlurCar1", "BlurCar3", "BlurCar4", "Board", "Diving", "Biker", "KiteSurf", "Skating2-1",
                 "Skating2-2", "Human4"):
        write_query(root, "test", name, f"{name} target query\n")
    # train split
    write_otb_video(root, "David", {"groundtruth_rect.txt": boxes(2)}, 302)  # img holds 302 frames, gt 300-301
    write_otb_video(root, "Tiger1", {"groundtruth_rect.txt": boxes(8)}, 8)  # initOmit=5: frames 6-8
    write_otb_video(root, "Jogging", {"groundtruth_rect.1.txt": boxes(3), "groundtruth_rect.2.txt": boxes(3, x0=40)}, 3)
    for name in ("David", "Tiger1", "Jogging-1", "Jogging-2"):
        write_query(root, "train", name, f"{name} query\n")
    return root


def test_otb_test_split_quirks(otb):
    seqs = {s.name: s for s in load_benchmark("otb_lang", otb)}
    assert sorted(seqs) == ["Biker", "BlurCar1", "BlurCar3", "BlurCar4", "Board", "Diving", "Human4", "KiteSurf",
                            "Skating2-1", "Skating2-2"]
    v = otb / "OTB_videos"
    # sequences starting after frame 1
    assert seqs["BlurCar1"].frames == [v / "BlurCar1" / "img" / f"{i:04d}.jpg" for i in (247, 248, 249)]
    assert [f.name for f in seqs["BlurCar3"].frames] == ["0003.jpg", "0004.jpg"]
    assert [f.name for f in seqs["BlurCar4"].frames] == ["0018.jpg", "0019.jpg"]
    assert seqs["BlurCar1"].extra["first_frame"] == 247
    np.testing.assert_array_equal(seqs["BlurCar1"].boxes[0], [1, 1, 10, 20])  # gt row 1 = frame 247
    # Board's 5-digit names
    assert [f.name for f in seqs["Board"].frames] == ["00001.jpg", "00002.jpg", "00003.jpg"]
    # more images than gt rows: truncated to the gt, and counted
    assert [f.name for f in seqs["Diving"].frames] == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert seqs["Diving"].extra["unannotated_images"] == 2
    # tab- and space-separated gt
    np.testing.assert_array_equal(seqs["Diving"].boxes, boxes(3))
    np.testing.assert_array_equal(seqs["Biker"].boxes, boxes(2))
    # KiteSurf as pytracking's jpg/%04d.png
    assert seqs["KiteSurf"].frames[1] == v / "KiteSurf" / "jpg" / "0002.png"
    # multi-target videos under MMTrack names
    assert seqs["Skating2-2"].frames[0] == v / "Skating2-2" / "img" / "0001.jpg"
    np.testing.assert_array_equal(seqs["Skating2-2"].boxes[0], [50, 1, 10, 20])
    assert seqs["Human4"].extra["gt_file"] == "groundtruth_rect.2.txt"
    np.testing.assert_array_equal(seqs["Human4"].boxes[:, 0], [7, 8])
    assert seqs["Human4"].description == "Human4 target query" and seqs["Human4"].dataset == "otb"
    assert seqs["Human4"].visible is None


def test_otb_train_split_david_tiger1_jogging(otb):
    seqs = {s.name: s for s in load_benchmark("otb_lang", otb, split="train")}
    assert sorted(seqs) == ["David", "Jogging-1", "Jogging-2", "Tiger1"]
    v = otb / "OTB_videos"
    assert [f.name for f in seqs["David"].frames] == ["0300.jpg", "0301.jpg"]
    assert seqs["David"].extra["unannotated_images"] == 1
    # Tiger1 initOmit=5: the first 5 gt rows and frames are dropped
    assert [f.name for f in seqs["Tiger1"].frames] == ["0006.jpg", "0007.jpg", "0008.jpg"]
    np.testing.assert_array_equal(seqs["Tiger1"].boxes, boxes(8)[5:])
    assert seqs["Tiger1"].extra["omitted_rows"] == 5
    # both Jogging targets read their own gt file from the shared Jogging/img
    assert seqs["Jogging-1"].frames == seqs["Jogging-2"].frames == [v / "Jogging" / "img" / f"{i:04d}.jpg"
                                                                    for i in (1, 2, 3)]
    np.testing.assert_array_equal(seqs["Jogging-1"].boxes[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(seqs["Jogging-2"].boxes[:, 0], [40, 41, 42])


def test_otb_query_names_in_other_spellings(tmp_path):
    root = tmp_path / "OTB_lang"
    write_otb_video(root, "Jogging", {"groundtruth_rect.1.txt": boxes(2), "groundtruth_rect.2.txt": boxes(2, x0=9)}, 2)
    write_otb_video(root, "Human4", {"groundtruth_rect.2.txt": boxes(2)}, 2)
    for name in ("Jogging_1", "Jogging.2", "Human4_2"):
        write_query(root, "train", name, "q")
    seqs = load_benchmark("otb_lang", root, split="train")
    assert [s.name for s in seqs] == ["Human4", "Jogging-1", "Jogging-2"]
    assert seqs[2].boxes[0, 0] == 9


def test_canonical_names():
    for alias in ("Jogging-1", "Jogging_1", "Jogging.1", "Jogging1", "jogging_1"):
        assert canonical_name(alias) == "Jogging-1"
    for alias in ("Skating2-2", "Skating2_2", "Skating2.2"):
        assert canonical_name(alias) == "Skating2-2"
    assert canonical_name("Human4_2") == canonical_name("Human4") == "Human4"
    # nothing else changes: '-' and '_' are parts of real names elsewhere
    for name in ("airplane-1", "BF5_Blade_video_01-Done", "Skating2", "Skating1", "David", "Jogging"):
        assert canonical_name(name) == name
    assert split_target("Jogging.2") == ("Jogging", 2) and split_target("Human4") == ("Human4", 2)


def test_otb_bare_multi_target_name_is_an_error(tmp_path):
    root = tmp_path / "OTB_lang"
    write_otb_video(root, "Jogging", {"groundtruth_rect.1.txt": boxes(1)}, 1)
    write_query(root, "train", "Jogging", "q")
    with pytest.raises(DatasetError, match="several targets"):
        load_benchmark("otb_lang", root, split="train")


def test_otb_missing_video_folder_names_query(tmp_path):
    root = tmp_path / "OTB_lang"
    write_query(root, "test", "Biker", "q")
    with pytest.raises(MissingFileError) as e:
        load_benchmark("otb_lang", root)
    assert "OTB_query_test" in str(e.value) and str(root / "OTB_videos" / "Biker" / "groundtruth_rect.txt") in str(e.value)


# ----------------------------------------------------------------------------- RefCOCOg layout

@pytest.fixture
def refcocog(tmp_path):
    root = tmp_path / "refcoco"
    refs = [
        {"ref_id": 5, "ann_id": 100, "image_id": 42, "category_id": 1, "split": "train",
         "file_name": "COCO_train2014_000000000042_100.jpg", "sent_ids": [7, 8],
         "sentences": [{"sent": "a man in a red shirt", "raw": "A man in a red shirt.", "sent_id": 7,
                        "tokens": ["a", "man"]},
                       {"sent": "the guy on the left", "raw": "The guy on the left", "sent_id": 8,
                        "tokens": ["the", "guy"]}]},
        {"ref_id": 6, "ann_id": 101, "image_id": 581929, "category_id": 18, "split": "val",
         "file_name": "COCO_train2014_000000581929_101.jpg", "sent_ids": [9],
         "sentences": [{"sent": "brown dog", "raw": "brown dog", "sent_id": 9, "tokens": ["brown", "dog"]}]},
    ]
    (root / "refcocog").mkdir(parents=True)
    with open(root / "refcocog" / "refs(google).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    inst = {"images": [{"id": 42, "file_name": "COCO_train2014_000000000042.jpg", "width": 8, "height": 8},
                       {"id": 581929, "file_name": "COCO_train2014_000000581929.jpg", "width": 8, "height": 8}],
            "annotations": [{"id": 100, "image_id": 42, "bbox": [1.5, 2.25, 60.0, 70.5], "category_id": 1,
                             "iscrowd": 0},
                            {"id": 101, "image_id": 581929, "bbox": [0, 0, 4, 4], "category_id": 18, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
    (root / "refcocog" / "instances.json").write_text(json.dumps(inst))
    write_images(root / "images" / "mscoco" / "images" / "train2014",
                 ["COCO_train2014_000000000042.jpg", "COCO_train2014_000000581929.jpg"])
    return root


def test_refcocog_one_sequence_per_sentence(refcocog):
    seqs = load_benchmark("refcocog", refcocog)  # default split: train
    assert [s.name for s in seqs] == ["5_7", "5_8"]
    img = refcocog / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000042.jpg"
    for s in seqs:
        assert s.frames == [img] and len(s) == 1
        np.testing.assert_array_equal(s.boxes, [[1.5, 2.25, 60.0, 70.5]])
        assert s.dataset == "refcocog" and s.extra["category"] == "person" and s.extra["image_id"] == 42
    assert seqs[0].description == "a man in a red shirt" and seqs[0].extra["raw"] == "A man in a red shirt."
    assert seqs[1].description == "the guy on the left"
    (val,) = load_benchmark("refcocog", refcocog, split="val")
    assert val.name == "6_9" and val.frames[0].name == "COCO_train2014_000000581929.jpg"
    with pytest.raises(ValueError, match="no test"):
        load_benchmark("refcocog", refcocog, split="test")


def test_refcocog_missing_image(refcocog):
    img = refcocog / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000042.jpg"
    img.unlink()
    with pytest.raises(MissingFileError, match="COCO_train2014_000000000042.jpg"):
        load_benchmark("refcocog", refcocog)


# ----------------------------------------------------------------------------- bad input

def test_missing_image_names_the_frame(lasot):
    (lasot / "airplane" / "airplane-1" / "img" / "00000003.jpg").unlink()
    write_images(lasot / "airplane" / "airplane-1" / "img", ["00000006.jpg"])  # same count, one frame missing
    with pytest.raises(MissingFileError) as e:
        load_benchmark("lasot", lasot)
    gt = lasot / "airplane" / "airplane-1" / "groundtruth.txt"
    assert f"missing image {lasot / 'airplane' / 'airplane-1' / 'img' / '00000003.jpg'} for frame 3 (row 3 of {gt})" \
        in str(e.value)
    assert "fewer" not in str(e.value)


def test_fewer_images_than_gt_rows(lasot):
    img = lasot / "airplane" / "airplane-1" / "img"
    (img / "00000005.jpg").unlink()
    with pytest.raises(MissingFileError, match="fewer images than ground-truth rows") as e:
        load_benchmark("lasot", lasot)
    assert f"missing image {img / '00000005.jpg'} for frame 5" in str(e.value)
    assert f"{img} holds 4 images for 5 ground-truth rows" in str(e.value)


def test_missing_image_otb_names_the_file(otb):
    img = otb / "OTB_videos" / "Board" / "img"
    (img / "00002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=str(img / "00002.jpg")):
        load_benchmark("otb_lang", otb)


def test_fewer_images_than_gt_rows_tnl2k(tmp_path):
    folder = write_tnl2k_seq(tmp_path / "TNL2K" / "test", "v", ["1.jpg", "2.jpg"], boxes(3))
    with pytest.raises(DatasetError, match="2 images for 3 ground-truth rows") as e:
        load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert str(folder / "imgs") in str(e.value)


@pytest.mark.parametrize("content, line, what", [
    ("1,2,3,4\n5,6,7,8\n9,10,11\n12,13,14,15\n", 3, "got 3"),
    ("1,2,3,4\n5,6,7,8,9\n", 2, "got 5"),
    ("1,2,3,4\n5,6,x,8\n", 2, "unparsable"),
    ("1,2,3,4\n\n5,6,7,8\n", 2, "got 1"),  # a blank line inside would shift every later row
    ("1,2,3,4\n5,nan,7,8\n9,10,11,12\n", 2, "NaN or infinite value in '5,nan,7,8'"),  # was read as NaN
    ("1,2,3,4\n5,6,7,8\nNaN,NaN,NaN,NaN\n", 3, "NaN or infinite value"),
    ("1,2,3,4\n5,6,inf,8\n", 2, "NaN or infinite value"),
    ("1,2,3,4\n5,6,,8\n", 2, "unparsable value in '5,6,,8'"),  # an empty field is not skipped
    ("0,0,0,0\n5,6,7,8\n", 1, "the first frame needs a box with w, h > 0"),  # absent at frame 1: nothing to start from
    ("3,4,0,20\n5,6,7,8\n", 1, "got '3,4,0,20'"),
    ("nan,2,3,4\n5,6,7,8\n", 1, "NaN or infinite value"),
])
def test_bad_gt_row_names_file_and_line(tmp_path, content, line, what):
    folder = write_tnl2k_seq(tmp_path / "TNL2K" / "test", "v", ["1.jpg", "2.jpg", "3.jpg", "4.jpg"], boxes(1))
    (folder / "groundtruth.txt").write_text(content)
    with pytest.raises(DatasetError) as e:
        load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert f"{folder / 'groundtruth.txt'}, line {line}:" in str(e.value) and what in str(e.value)


def test_zero_rows_after_frame_1_are_absent_targets_not_errors(lasot):
    # LaSOT / TNL2K write 0,0,0,0 for an absent target; only frame 1 must hold a box
    gt = lasot / "airplane" / "airplane-1" / "groundtruth.txt"
    gt.write_text("1,2,3,4\n0,0,0,0\n0,0,0,0\n5,6,7,8\n5,6,0,8\n")
    s = load_benchmark("lasot", lasot)[0]
    np.testing.assert_array_equal(s.boxes[1:3], 0)
    gt.write_text("0,0,0,0\n0,0,0,0\n0,0,0,0\n5,6,7,8\n5,6,7,8\n")
    with pytest.raises(DatasetError, match=re.escape(f"{gt}, line 1: the first frame needs a box with w, h > 0")):
        load_benchmark("lasot", lasot)


def test_otb_first_box_is_checked_after_init_omit(otb):
    # Tiger1 starts at gt row 6 (initOmit=5): rows 1-5 are never tracked, row 6 must be a box
    gt = otb / "OTB_videos" / "Tiger1" / "groundtruth_rect.txt"
    rows = boxes(8)
    rows[0] = [0, 0, 0, 0]
    write_rows(gt, rows)
    seqs = {s.name: s for s in load_benchmark("otb_lang", otb, split="train")}
    np.testing.assert_array_equal(seqs["Tiger1"].boxes, boxes(8)[5:])
    rows[5] = [3, 3, 0, 0]
    write_rows(gt, rows)
    with pytest.raises(DatasetError, match=re.escape(f"{gt}, line 6: the first frame needs a box with w, h > 0")):
        load_benchmark("otb_lang", otb, split="train")


def test_bad_gt_row_otb_whitespace(otb):
    (otb / "OTB_videos" / "Biker" / "groundtruth_rect.txt").write_text("1 2 3 4\n5 6 7\n")
    with pytest.raises(DatasetError, match=r"Biker/groundtruth_rect.txt, line 2: expected 4 whitespace"):
        load_benchmark("otb_lang", otb)


def test_missing_description_file(lasot):
    path = lasot / "bird" / "bird-2" / "nlp.txt"
    path.unlink()
    with pytest.raises(MissingFileError, match="missing description file") as e:
        load_benchmark("lasot", lasot)
    assert str(path) in str(e.value)


def test_missing_description_file_tnl2k(tmp_path):
    folder = write_tnl2k_seq(tmp_path / "TNL2K" / "test", "v", ["1.jpg"], boxes(1), text=None)
    with pytest.raises(MissingFileError, match=str(folder / "language.txt")):
        load_benchmark("tnl2k", tmp_path / "TNL2K")


def test_undecodable_text(lasot):
    path = lasot / "airplane" / "airplane-1" / "nlp.txt"
    path.write_bytes("white airplane\nflying caf\xe9".encode("latin-1"))
    with pytest.raises(DatasetError) as e:
        load_benchmark("lasot", lasot)
    assert f"{path}, line 2: not UTF-8" in str(e.value)


def test_bad_flag_files(lasot):
    occ = lasot / "airplane" / "airplane-1" / "full_occlusion.txt"
    occ.write_text("0,1,0,0\n")
    with pytest.raises(DatasetError, match="4 full-occlusion flags for 5 ground-truth rows") as e:
        load_benchmark("lasot", lasot)
    assert str(occ) in str(e.value)
    occ.write_text("0,1,0,2,0\n")
    with pytest.raises(DatasetError, match=r"full_occlusion.txt, line 1: .* got '2'"):
        load_benchmark("lasot", lasot)
    occ.unlink()
    with pytest.raises(MissingFileError, match="full_occlusion.txt"):
        load_benchmark("lasot", lasot)


def test_unknown_benchmark():
    with pytest.raises(KeyError, match="lasot"):
        load_benchmark("lasot2")


# ----------------------------------------------------------------------------- synthetic suites

def test_synthetic_suites_read_in_their_real_layouts(tmp_path, monkeypatch):
    root = tmp_path / "synthetic"
    write_lasot_seq(root / "train", "ball-1", n=3, drift=[0, 0, 1])
    write_lasot_seq(root / "train", "cube-1", n=2)
    write_lasot_seq(root / "lasot", "ball-2", n=4, occ=[0, 0, 1, 0], drift=[0, 1, 1, 1])
    write_lasot_seq(root / "lasot", "ball-3", n=2)
    (root / "lasot" / "testing_set.txt").write_text("ball-2\nball-3\n")
    write_lasot_seq(root / "lasot_ext", "star-1", n=2, drift=[0, 0])
    t = write_tnl2k_seq(root / "tnl2k" / "test", "syn_0001", [f"{i:05d}.jpg" for i in range(3)], boxes(3))
    (t / "drift.txt").write_text("0\n1\n1\n")
    o = write_otb_video(root / "otb_lang", "syn_0002", {"groundtruth_rect.txt": boxes(2)}, 2)
    (o / "drift.txt").write_text("1\n1\n")
    write_query(root / "otb_lang", "test", "syn_0002", "the red ball on the left")
    monkeypatch.setenv("DMTRACK_DATA", str(tmp_path))
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT", str(tmp_path / "ignored.txt"))  # the real LaSOT's, not ours

    expect = {"synthetic_train": (["ball-1", "cube-1"], "lasot", [False, False, True]),
              "synthetic_lasot": (["ball-2", "ball-3"], "lasot", [False, True, True, True]),
              "synthetic_lasot_ext": (["star-1"], "lasot_extension_subset", [False, False]),
              "synthetic_tnl2k": (["syn_0001"], "tnl2k", [False, True, True]),
              "synthetic_otb_lang": (["syn_0002"], "otb", [True, True])}
    assert set(expect) == {b for b in BENCHMARKS if b.startswith("synthetic")}
    for name, (names, tag, drift) in expect.items():
        seqs = load_benchmark(name)  # default root: $DMTRACK_DATA/synthetic
        assert [s.name for s in seqs] == names, name
        assert {s.dataset for s in seqs} == {tag} and {s.extra["benchmark"] for s in seqs} == {name}
        assert seqs[0].drift.dtype == bool
        np.testing.assert_array_equal(seqs[0].drift, drift)
    assert load_benchmark("synthetic_train")[1].drift is None
    (s,) = [s for s in load_benchmark("synthetic_lasot") if s.name == "ball-2"]
    np.testing.assert_array_equal(s.visible, [True, True, False, True])
    assert load_benchmark("synthetic_otb_lang")[0].text == "the red ball on the left"
    # the drift sweep: LaSOT layout at <root>/drift/<level> with its testing_set.txt
    write_lasot_seq(root / "drift" / "0.50", "ring-1", n=4, drift=[0, 0, 1, 1])
    (root / "drift" / "0.50" / "testing_set.txt").write_text("ring-1\n")
    (s,) = load_benchmark("synthetic_drift_0.5")
    assert s.name == "ring-1" and s.dataset == "lasot" and s.extra["benchmark"] == "synthetic_drift_0.5"
    np.testing.assert_array_equal(s.drift, [False, False, True, True])
    (t / "drift.txt").write_text("0\n1\n")
    with pytest.raises(DatasetError, match="2 drift flags for 3 ground-truth rows"):
        load_benchmark("synthetic_tnl2k")


# ----------------------------------------------------------------------------- more quirks (review)

def test_clean_text_is_mmtracks_clean_string():
    from dmtrack.data import clean_text

    # lowercase; delete . , ' ! ? " ( ) * # : ; ; '-' and '/' become spaces; whitespace collapsed
    assert clean_text('  The "Red" (small) car\'s #1: left-most/top; fast! *really*? yes.\n') == \
        "the red small cars 1 left most top fast really yes"
    assert clean_text("a\tb  c") == "a b c"


def test_description_first_line_bom_and_case_kept(lasot):
    path = lasot / "bird" / "bird-2" / "nlp.txt"
    path.write_bytes("\ufeffBlack Bird, on the tree.\r\nsecond\r\n".encode("utf-8"))
    (s,) = [s for s in load_benchmark("lasot", lasot) if s.name == "bird-2"]
    assert s.description == "Black Bird, on the tree." and s.text == "black bird on the tree"


def test_lasot_images_after_last_gt_row_warn_and_are_not_frames(lasot):
    img = lasot / "bird" / "bird-2" / "img"
    write_images(img, ["00000004.jpg", "00000005.jpg"])  # gt has 3 rows
    with pytest.warns(UserWarning, match="2 images after the last ground-truth row") as w:
        (s,) = [s for s in load_benchmark("lasot", lasot) if s.name == "bird-2"]
    assert any(str(img) in str(x.message) for x in w)  # (next to the fixture's custom-split warning)
    assert [f.name for f in s.frames] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    assert s.extra["unannotated_images"] == 2


def test_two_files_for_one_frame_number_is_an_error(lasot):
    img = lasot / "bird" / "bird-2" / "img"
    write_images(img, ["0000002.jpg"])  # frame 2 under a second name
    with pytest.raises(DatasetError, match="are both frame 2") as e:
        load_benchmark("lasot", lasot)
    assert str(img) in str(e.value)


def test_tnl2k_negative_and_zero_boxes_kept_as_in_file(tmp_path):
    # TNL2K: 6 videos have negative coordinates, absent frames carry zero-size rows; none is dropped
    test = tmp_path / "TNL2K" / "test"
    write_tnl2k_seq(test, "IceBall_video_02-Done", ["1.jpg", "2.jpg", "3.jpg"],
                    [[-3, 5, 20, 30], [0, 0, 0, 0], [4.5, -1.25, 10, 10]])
    (s,) = load_benchmark("tnl2k", tmp_path / "TNL2K")
    np.testing.assert_array_equal(s.boxes, [[-3, 5, 20, 30], [0, 0, 0, 0], [4.5, -1.25, 10, 10]])
    assert len(s.frames) == 3


def test_tnl2k_gap_in_image_numbers_warns(tmp_path):
    # names are sorted by number; a jump in the numbering is taken in order but never silently
    folder = write_tnl2k_seq(tmp_path / "TNL2K" / "test", "v", ["1.jpg", "2.jpg", "4.jpg"], boxes(3))
    with pytest.warns(UserWarning, match="frame numbers jump to 4") as w:
        (s,) = load_benchmark("tnl2k", tmp_path / "TNL2K")
    assert str(folder / "imgs") in str(w[0].message)
    assert [f.name for f in s.frames] == ["1.jpg", "2.jpg", "4.jpg"]


def test_otb_invalid_gt_rows_are_kept_not_dropped(tmp_path):
    # OTB-100: Biker has rows with negative y, Board / Twinnings an all-zero row, Crowds x = 0;
    # the reader keeps every row (the metrics decide what an invalid row means)
    root = tmp_path / "OTB_lang"
    rows = [[1, 2, 30, 40], [5, -3, 30, 40], [0, 0, 0, 0], [0, 7, 30, 40]]
    write_otb_video(root, "Biker", {"groundtruth_rect.txt": rows}, 4)
    write_query(root, "test", "Biker", "a man riding a bike")
    (s,) = load_benchmark("otb_lang", root)
    np.testing.assert_array_equal(s.boxes, rows)
    assert [f.name for f in s.frames] == ["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"]


def test_otb_skating2_in_the_shared_folder_and_empty_query(tmp_path):
    # OTB's original layout: Skating2/groundtruth_rect.1.txt and .2.txt next to one img/
    root = tmp_path / "OTB_lang"
    write_otb_video(root, "Skating2", {"groundtruth_rect.1.txt": boxes(2), "groundtruth_rect.2.txt": boxes(2, x0=30)}, 2)
    write_query(root, "test", "Skating2_2", "the man skating\n")
    (s,) = load_benchmark("otb_lang", root)
    assert s.name == "Skating2-2" and s.frames[0] == root / "OTB_videos" / "Skating2" / "img" / "0001.jpg"
    assert s.extra["gt_file"] == "groundtruth_rect.2.txt" and s.boxes[0, 0] == 30
    q = root / "OTB_query_test" / "Skating2_2.txt"
    q.write_text("\n  \n")
    with pytest.raises(DatasetError, match="empty description") as e:
        load_benchmark("otb_lang", root)
    assert str(q) in str(e.value)


def test_refcocog_crowd_flag_kept_and_bad_files(refcocog):
    (s, _) = load_benchmark("refcocog", refcocog)
    assert s.extra["iscrowd"] is False and s.extra["ann_id"] == 100 and s.extra["ref_id"] == 5
    inst_path = refcocog / "refcocog" / "instances.json"
    inst = json.loads(inst_path.read_text())
    # a ref whose annotation is not in instances.json
    inst["annotations"] = inst["annotations"][1:]
    inst_path.write_text(json.dumps(inst))
    with pytest.raises(DatasetError, match="ref 5 points to annotation 100") as e:
        load_benchmark("refcocog", refcocog)
    assert "refs(google).p" in str(e.value) and str(inst_path) in str(e.value)
    # broken JSON: file and line named
    inst_path.write_text('{"images": [],\n "annotations": [,]}\n')
    with pytest.raises(DatasetError, match=r"instances.json, line 2: invalid JSON"):
        load_benchmark("refcocog", refcocog)
    # an empty sentence
    inst_path.write_text(json.dumps({"images": [], "annotations": [{"id": 100, "image_id": 42, "bbox": [1, 2, 3, 4],
                                                                    "category_id": 1, "iscrowd": 1}]}))
    refs_path = refcocog / "refcocog" / "refs(google).p"
    refs = [{"ref_id": 1, "ann_id": 100, "image_id": 42, "category_id": 1, "split": "train",
             "sentences": [{"sent": "  ", "sent_id": 3}]}]
    refs_path.write_bytes(pickle.dumps(refs))
    with pytest.raises(DatasetError, match="ref 1 sentence 3 is empty") as e:
        load_benchmark("refcocog", refcocog)
    assert str(refs_path) in str(e.value)
    refs_path.unlink()
    with pytest.raises(MissingFileError, match=r"refs\(google\).p"):
        load_benchmark("refcocog", refcocog)


class _Payload:  # a crafted refs entry: unpickling it calls `call(*args)`, i.e. runs code
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("call", [os.system, open], ids=["os.system", "builtins.open"])
def test_refcocog_crafted_refs_pickle_refused_unexecuted(refcocog, call):
    marker = refcocog / "executed"
    args = (f"touch '{marker}'",) if call is os.system else (str(marker), "w")
    refs_path = refcocog / "refcocog" / "refs(google).p"
    refs_path.write_bytes(pickle.dumps([{"ref_id": 1, "split": "train", "sentences": _Payload(call, *args)}], protocol=2))
    with pytest.raises(DatasetError, match=rf"refs\(google\)\.p: .*refused global \w+\.{call.__name__}\b") as e:
        load_benchmark("refcocog", refcocog)
    assert str(refs_path) in str(e.value)
    assert not marker.exists()


def test_refcocog_refs_python2_pickle_sets_and_truncation(tmp_path):
    from dmtrack.data.refcoco import _load_refs
    path = tmp_path / "refs(google).p"
    # Python 2's pickle.dumps([{'sent': 'caf\xe9'}], 2): a latin-1 byte str (SHORT_BINSTRING), no unicode
    path.write_bytes(b"\x80\x02]q\x00}q\x01U\x04sentq\x02U\x04caf\xe9q\x03sa.")
    assert _load_refs(path) == [{"sent": "caf\xe9"}]
    refs = [{"sent_ids": {7, 8}, "seen": frozenset({1}), "score": 1.5, "name": None}]
    for protocol in (2, pickle.HIGHEST_PROTOCOL):  # builtins.set is a global under both (__builtin__ under 2)
        path.write_bytes(pickle.dumps(refs, protocol=protocol))
        assert _load_refs(path) == refs
    path.write_bytes(pickle.dumps(refs, protocol=2)[:-5])
    with pytest.raises(DatasetError, match=r"refs\(google\)\.p: cannot read the refs pickle"):
        _load_refs(path)


# ----------------------------------------------------------------------------- annotations only

def test_annotations_only_load_lists_no_image_folder(lasot, otb, tmp_path):
    # frames=False (what `dmtrack score` reads): boxes, flags and sentences as a full load, no frame
    # paths, and the image folders are never listed (here they are gone altogether)
    write_tnl2k_seq(tmp_path / "TNL2K" / "test", "v", ["1.jpg", "2.jpg", "3.jpg"], boxes(3))
    cases = [("lasot", lasot, {}), ("otb_lang", otb, {}), ("otb_lang", otb, {"split": "train"}),
             ("tnl2k", tmp_path / "TNL2K", {})]
    full = {(b, tuple(kw.items())): load_benchmark(b, root, **kw) for b, root, kw in cases}
    for folder in [*lasot.glob("*/*/img"), *(otb / "OTB_videos").glob("*/img"), *(otb / "OTB_videos").glob("*/jpg"),
                   tmp_path / "TNL2K" / "test" / "v" / "imgs"]:
        shutil.rmtree(folder)
    for b, root, kw in cases:
        ann = load_benchmark(b, root, frames=False, **kw)
        ref = full[(b, tuple(kw.items()))]
        assert [s.name for s in ann] == [s.name for s in ref] and all(s.frames is None for s in ann)
        for a, r in zip(ann, ref):
            assert len(a) == len(r) and a.description == r.description and a.dataset == r.dataset
            np.testing.assert_array_equal(a.boxes, r.boxes)
            assert (a.visible is None) == (r.visible is None)
            if a.visible is not None:
                np.testing.assert_array_equal(a.visible, r.visible)
    with pytest.raises(MissingFileError, match="missing image folder"):  # a full load still checks the frames
        load_benchmark("lasot", lasot)


# ----------------------------------------------------------------------------- frame images

def _noise_image(h=48, w=64):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise: no tiny file


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_read_frame_refuses_truncated_images(tmp_path, ext):
    data = cv2.imencode(ext, _noise_image())[1].tobytes()
    whole = tmp_path / f"whole{ext}"
    whole.write_bytes(data)
    expect = read_frame(whole)
    assert expect.shape == (48, 64, 3)
    padded = tmp_path / f"padded{ext}"
    padded.write_bytes(data + b"\x00" * 7 + b"\n")  # padding some encoders write after the end marker
    np.testing.assert_array_equal(read_frame(padded), expect)
    cut = tmp_path / f"00000003{ext}"
    cut.write_bytes(data[: len(data) // 2])  # OpenCV alone decodes a half JPEG with grey rows
    with pytest.raises(FrameError, match=re.escape(f"{cut}: incomplete image: no ")) as e:
        read_frame(cut)
    assert ("FF D9" if ext == ".jpg" else "IEND") in str(e.value) and "truncated" in str(e.value)


def test_read_frame_checks_the_content_not_the_name(tmp_path):
    # a PNG saved under a .jpg name (it happens in real datasets) is checked as a PNG
    data = cv2.imencode(".png", _noise_image())[1].tobytes()
    path = tmp_path / "00000001.jpg"
    path.write_bytes(data)
    assert read_frame(path).shape == (48, 64, 3)
    path.write_bytes(data[:-20])
    with pytest.raises(FrameError, match="no PNG IEND chunk"):
        read_frame(path)
    path.write_bytes(b"")
    with pytest.raises(FrameError, match=re.escape(f"empty frame image (0 bytes): {path}")):
        read_frame(path)
    with pytest.raises(FrameError, match=re.escape(f"missing frame image: {tmp_path / 'nope.jpg'}")):
        read_frame(tmp_path / "nope.jpg")


def test_lasot_split_mode_is_one_named_choice(tmp_path):
    from dmtrack.data import lasot

    with pytest.raises(ValueError, match=r"split_mode must be one of file, official, custom, all_test, all_train, "
                                         r"got 'oficial'"):
        lasot.load(tmp_path, "test", "lasot", split_mode="oficial")
    with pytest.raises(ValueError, match="holds only a test split, not 'train'"):
        lasot.load(tmp_path, "train", "lasot", split_mode="all_test")
