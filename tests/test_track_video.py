"""`dmtrack track` on one's own video: a folder of frames gives exactly `dmtrack evaluate`'s boxes, an
mp4 the test writes with OpenCV gives one box and one output frame per input frame, and every kind
of bad input is refused with one message. Smoke synthetic data and untrained smoke-size checkpoints."""
import argparse
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from dmtrack.cli import main as cli_main
from dmtrack.track import video_cli
from dmtrack.data import DatasetError, load_benchmark
from dmtrack.data.files import frames_in_folder
from dmtrack.eval.results import read_results
from dmtrack.track import evaluate
from dmtrack.track.video import BOX_BGR, draw_frame, parse_box

from conftest import smoke_checkpoint

torch.set_num_threads(1)  # the test machines are shared: more threads only wait on each other


@pytest.fixture(scope="module")
def seq(root):
    return load_benchmark("synthetic_otb_lang", root=root)[0]


def _checkpoint(tmp_path_factory, variant):
    return smoke_checkpoint(tmp_path_factory.mktemp("ckpt"), variant)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory, "full")


def cli(argv: list[str]):
    """`dmtrack track ...` with its exceptions raised (dmtrack.cli.main turns them into one line and a status)."""
    parser = argparse.ArgumentParser()
    video_cli.add_arguments(parser)
    return video_cli.run(parser.parse_args(argv[1:]))


def _box(seq) -> str:
    return ",".join(repr(float(v)) for v in seq.boxes[0])


def _track(video, out, ckpt, text, box, *extra):
    return cli(["track", str(video), "--text", text, f"--box={box}", "--checkpoint", str(ckpt), "--out", str(out),
                     "--no-progress", *extra])


def _video_frames(path) -> tuple[int, float, tuple]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps, shape


def _write_mp4(path, frames, fps):
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, first.shape[1::-1])
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    return path


# ----------------------------------------------------------------------------- what it writes
def test_folder_of_frames_gives_exactly_the_boxes_of_evaluate(root, seq, ckpt, tmp_path):
    evaluate(ckpt, "synthetic_otb_lang", tmp_path / "eval", data_root=root, sequences=[seq.name], protocols=(),
             progress=False)
    assert _track(seq.frames[0].parent, tmp_path / "out", ckpt, seq.description, _box(seq)) == 0
    boxes_file = tmp_path / "out" / "boxes.txt"
    rows = boxes_file.read_text().splitlines()
    assert len(rows) == len(seq) and all(len(r.split("\t")) == 4 for r in rows)  # pytracking's tab-separated rows
    assert boxes_file.read_text() == (tmp_path / "eval" / f"{seq.name}.txt").read_text()  # same frames, same boxes
    np.testing.assert_array_equal(read_results(boxes_file)[0], seq.boxes[0])  # frame 1 is the given box
    assert len((tmp_path / "out" / "boxes_time.txt").read_text().split()) == len(seq)
    n, fps, shape = _video_frames(tmp_path / "out" / "tracked.mp4")
    assert (n, fps, shape) == (len(seq), 30.0, (96, 96, 3))  # a folder has no frame rate: 30
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left behind


def test_mp4_gives_one_box_and_one_output_frame_per_input_frame(seq, ckpt, tmp_path, capsys):
    video = _write_mp4(tmp_path / "clip.mp4", seq.frames, fps=12)
    assert _video_frames(video)[0] == len(seq)
    assert _track(video, tmp_path / "out", ckpt, seq.description, _box(seq), "--masks", "--samples", "2") == 0
    boxes = read_results(tmp_path / "out" / "boxes.txt")
    assert boxes.shape == (len(seq), 4) and np.isfinite(boxes).all()
    np.testing.assert_array_equal(boxes[0], seq.boxes[0])
    # the tracker keeps at least 10 pixels of its box inside the 96 x 96 frame (CLIP_MARGIN)
    assert (boxes[:, 0] <= 86).all() and (boxes[:, 0] + boxes[:, 2] >= 10).all() and (boxes[:, 2:] > 0).all()
    assert _video_frames(tmp_path / "out" / "tracked.mp4") == (len(seq), 12.0, (96, 96, 3))  # the input's fps
    assert re.search(rf"{len(seq)} frames, k=2, cpu: [0-9.]+ frames/s tracking", capsys.readouterr().out)


def test_no_video_writes_boxes_only_and_max_frames_cuts(seq, ckpt, tmp_path):
    assert _track(seq.frames[0].parent, tmp_path, ckpt, seq.description, _box(seq), "--no-video", "--max-frames", "5") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.txt", "boxes_time.txt"]
    assert read_results(tmp_path / "boxes.txt").shape == (5, 4)


def test_frames_sort_by_the_numbers_in_their_names(tmp_path):
    for name in ["img10.jpg", "img9.png", "img1.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in frames_in_folder(tmp_path)] == ["img1.jpg", "img9.png", "img10.jpg"]
    (tmp_path / "img01.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="img01.png and img1.jpg are both the same frame"):
        frames_in_folder(tmp_path)


def test_draw_frame_box_and_mask_colours_by_hand():
    image = np.full((120, 160, 3), 100, np.uint8)
    frame = draw_frame(image, (40, 60, 30, 20), "", 0)
    assert tuple(frame[60, 50]) == BOX_BGR and tuple(frame[79, 69]) == BOX_BGR  # top edge, bottom-right corner
    assert tuple(frame[100, 100]) == (100, 100, 100) and tuple(image[60, 50]) == (100, 100, 100)  # a copy
    # magma(0) is RGB (0, 0, 4), magma(1) RGB (252, 253, 191): 0.4 * 100 + 0.6 * colour, in BGR order
    masked = draw_frame(image, (0, 0, 1, 1), "", 0, mask=np.where(np.arange(160) < 80, 0.0, 1.0)[None].repeat(120, 0))
    np.testing.assert_allclose(masked[100, 10], [0.4 * 100 + 0.6 * 4, 40, 40], atol=1)
    np.testing.assert_allclose(masked[100, 150], [40 + 0.6 * 191, 40 + 0.6 * 253, 40 + 0.6 * 252], atol=1)
    # the banner: 17 rows (2 px padding above and below one 13 px line: DejaVu Sans at its least size,
    # 10 px, has ascent 10 + descent 3) darkened to 0.45, white "#1" on it
    assert masked[16, 30].tolist() == [int(0.45 * 42), int(0.45 * 40), int(0.45 * 40)] and masked[17, 30, 1] == 40
    assert masked[:17, :20].max() > 200


# ----------------------------------------------------------------------------- bad input, one message each
def test_no_checkpoint_says_where_trained_models_come_from(seq, tmp_path, capsys):
    with pytest.raises(ValueError, match=re.escape("runs/demo/train/<variant>/seed<N>/model.pth as `make reproduce`")):
        cli(["track", str(seq.frames[0].parent), "--text", "x", "--box", _box(seq), "--out", str(tmp_path)])
    # through the installed entry point: one line and a non-zero status, no traceback
    assert cli_main(["track", str(seq.frames[0].parent), "--text", "x", "--box", _box(seq), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dmtrack track: error: ") and "make reproduce" in err[0]


@pytest.mark.parametrize("box, message", [
    ("1,2,3", "expected 4 comma-separated numbers x,y,w,h"),
    ("1,2,3,4,5", "expected 4 comma-separated numbers x,y,w,h"),
    ("a,2,3,4", "expected 4 comma-separated numbers x,y,w,h"),
    ("1,2,nan,4", "expected 4 comma-separated numbers x,y,w,h"),
    ("1,2,0,4", "width and height must be positive, got w=0, h=4"),
    ("1,2,5,-4", "width and height must be positive, got w=5, h=-4"),
])
def test_malformed_box(box, message):
    with pytest.raises(ValueError, match=re.escape(f"--box {box!r}: {message}")):
        parse_box(box)


@pytest.mark.parametrize("box", ["90,10,10,10", "-1,10,10,10", "10,87,10,10", "200,300,10,10"])
def test_box_outside_the_first_frame(seq, ckpt, tmp_path, box):
    x, y, w, h = box.split(",")
    with pytest.raises(ValueError, match=re.escape(f"initial box {box} (x,y,w,h) is not inside the first frame "
                                                   f"({seq.frames[0]}: 96x96 pixels)")):
        _track(seq.frames[0].parent, tmp_path, ckpt, "a circle", box)
    assert not (tmp_path / "boxes.txt").exists()


def test_unreadable_video_missing_path_and_empty_folder(ckpt, tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: OpenCV cannot read this as a video")):
        _track(bad, tmp_path / "out", ckpt, "a circle", "1,1,5,5")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope.mp4'}: no such video file or folder")):
        _track(tmp_path / "nope.mp4", tmp_path / "out", ckpt, "a circle", "1,1,5,5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'empty'}: no frame images (.jpg .jpeg .png .bmp)")):
        _track(tmp_path / "empty", tmp_path / "out", ckpt, "a circle", "1,1,5,5")


def test_empty_sentence_only_with_a_no_language_model(seq, ckpt, tmp_path_factory, tmp_path):
    with pytest.raises(ValueError, match=re.escape("empty sentence: this model variant needs a description")):
        _track(seq.frames[0].parent, tmp_path / "full", ckpt, "  ", _box(seq), "--no-video")
    blind = _checkpoint(tmp_path_factory, "no_language")
    assert _track(seq.frames[0].parent, tmp_path / "blind", blind, "", _box(seq), "--no-video", "--max-frames", "3") == 0
    assert read_results(tmp_path / "blind" / "boxes.txt").shape == (3, 4)


def test_checkpoint_that_is_not_a_dmtrack_model(seq, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    with pytest.raises(ValueError, match=re.escape(f"{plain}: not a DMTrack checkpoint, missing key(s)")):
        _track(seq.frames[0].parent, tmp_path / "out", plain, "a circle", _box(seq))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RuntimeError, match=re.escape(f"cannot read checkpoint {junk}: corrupt, truncated")):
        _track(seq.frames[0].parent, tmp_path / "out", junk, "a circle", _box(seq))


def test_frame_of_another_size_midway_leaves_no_video(seq, ckpt, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(seq.frames[:4], 1):
        shutil.copy(f, folder / f"{i:04d}.jpg")
    cv2.imwrite(str(folder / "0003.jpg"), cv2.imread(str(seq.frames[2]))[:80])
    with pytest.raises(ValueError, match=re.escape(f"{folder / '0003.jpg'}: a frame of 96x80 pixels, the first frame "
                                                   "has 96x96: every frame must have one size")):
        _track(folder, tmp_path / "out", ckpt, seq.description, _box(seq))
    assert list((tmp_path / "out").iterdir()) == []  # neither tracked.mp4 nor its temp file


def test_masks_need_a_video_and_a_diffusion_model(seq, ckpt, tmp_path_factory, tmp_path):
    with pytest.raises(ValueError, match="--masks draws the diffusion mask into tracked.mp4: it does not go with --no-video"):
        _track(seq.frames[0].parent, tmp_path, ckpt, seq.description, _box(seq), "--masks", "--no-video")
    plain = _checkpoint(tmp_path_factory, "no_diffusion")
    with pytest.raises(ValueError, match="--masks: variant no_diffusion has no diffusion module"):
        _track(seq.frames[0].parent, tmp_path, plain, seq.description, _box(seq), "--masks")
