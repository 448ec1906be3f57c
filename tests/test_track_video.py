"""`dmtrack track` on one's own video: a folder of frames gives exactly `dmtrack evaluate`'s boxes, an
mp4 the test writes with OpenCV gives one box and one output frame per input frame, and every kind
of bad input is refused with one message. Smoke synthetic data and untrained smoke-size checkpoints."""
import argparse
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dmtrack.cli import UsageError, main as cli_main
from dmtrack.config import ConfigError
from dmtrack.track import video_cli
from dmtrack.data import DatasetError, load_benchmark
from dmtrack.data.files import frames_in_folder
from dmtrack.eval.results import read_results
from dmtrack.track import DataSelection, Execution, evaluate
from dmtrack.track.video import BOX_BGR, caption_lines, draw_frame, parse_box, track_video

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
    evaluate(ckpt, "synthetic_otb_lang", tmp_path / "eval", data=DataSelection(root=root, sequences=[seq.name]),
             execution=Execution(progress=False), protocols=())
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
    assert masked[16, 30].tolist() == [round(0.45 * 42), round(0.45 * 40), round(0.45 * 40)] and masked[17, 30, 1] == 40
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
    ("1,2,0,4", "width and height must be at least 1 pixel, got w=0, h=4"),
    ("1,2,5,-4", "width and height must be at least 1 pixel, got w=5, h=-4"),
    ("1,2,1e-9,4", "width and height must be at least 1 pixel, got w=1e-09, h=4"),  # was accepted
])
def test_malformed_box(box, message):
    with pytest.raises(UsageError, match=re.escape(f"--box {box!r}: {message}")):  # a usage error: exit 2
        parse_box(box)


@pytest.mark.parametrize("box", ["1,2,3", "90,10,10,10"])  # malformed; outside the 96 x 96 first frame
def test_box_errors_exit_2_with_one_line(seq, ckpt, tmp_path, capsys, box):
    assert cli_main(["track", str(seq.frames[0].parent), "--text", "a circle", f"--box={box}", "--checkpoint", str(ckpt),
                     "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dmtrack track: error: ") and box in err[0]


def test_samples_out_of_the_config_range_exit_2(seq, ckpt, tmp_path, capsys):
    with pytest.raises(ConfigError, match=re.escape("--samples 101: config key 'test_samples' = 101 is out of range; "
                                                    "allowed: [1, 100]")):
        _track(seq.frames[0].parent, tmp_path, ckpt, seq.description, _box(seq), "--samples", "101", "--no-video",
               "--max-frames", "2")
    assert not (tmp_path / "boxes.txt").exists()
    assert cli_main(["track", str(seq.frames[0].parent), "--text", "x", "--box", _box(seq), "--checkpoint", str(ckpt),
                     "--out", str(tmp_path), "--samples", "0"]) == 2
    assert "allowed: [1, 100]" in capsys.readouterr().err


@pytest.mark.parametrize("no_video", [False, True])
def test_input_video_that_is_the_output_video_is_refused(seq, ckpt, tmp_path, no_video):
    video = _write_mp4(tmp_path / "tracked.mp4", seq.frames[:4], fps=12)
    before = video.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    for given in (video, link):
        with pytest.raises(UsageError, match=re.escape(f"{given}: the input video is {tmp_path / 'tracked.mp4'}, "
                                                       "which this run writes; pass another --out")):
            _track(given, tmp_path, ckpt, seq.description, _box(seq), *(["--no-video"] if no_video else []))
    assert video.read_bytes() == before and not (tmp_path / "boxes.txt").exists()


def test_no_video_rerun_deletes_the_old_video(seq, ckpt, tmp_path):
    _track(seq.frames[0].parent, tmp_path, ckpt, seq.description, _box(seq), "--max-frames", "3")
    assert (tmp_path / "tracked.mp4").exists()
    _track(seq.frames[0].parent, tmp_path, ckpt, seq.description, _box(seq), "--max-frames", "4", "--no-video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.txt", "boxes_time.txt"]  # no video of other boxes
    assert read_results(tmp_path / "boxes.txt").shape == (4, 4)


def test_long_sentence_warns_where_the_model_stops_reading(seq, ckpt, tmp_path):
    words = " ".join(f"word{i}" for i in range(40))  # 'word12' is 2 wordpieces at least: far over 34
    with pytest.warns(UserWarning, match=r"--text is \d+ tokens long; the model reads the first 36 \(text_max_len, "
                                         r"\[CLS\] and \[SEP\] included\) and ignores what follows '.*word\d+'"):
        _track(seq.frames[0].parent, tmp_path, ckpt, words, _box(seq), "--max-frames", "2", "--no-video")


class FakeTracker:
    """The tracker's interface without a network: the box stays where it started."""
    cfg, bgr, model = SimpleNamespace(use_diffusion=True, use_language=False, variant="full"), False, None

    def initialize(self, image, box, text):
        self.box = np.asarray(box, dtype=np.float64)

    def track(self, image, return_mask=False):
        return {"box": self.box, "mask": None}


SIGTERM_AT_FRAME_4 = """
import os, signal, sys
import numpy as np
from types import SimpleNamespace
from dmtrack.cli import run_command
from dmtrack.track.video import track_video

class Tracker:  # FakeTracker that is sent SIGTERM while tracked.mp4 is half written
    cfg, bgr, model, n = SimpleNamespace(use_diffusion=True, use_language=False, variant="full"), False, None, 0
    def initialize(self, image, box, text):
        pass
    def track(self, image, return_mask=False):
        self.n += 1
        if self.n == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"box": np.array([5.0, 5, 10, 10]), "mask": None}

frames = [np.full((48, 64, 3), 90, np.uint8)] * 8
sys.exit(run_command("track", lambda: track_video(Tracker(), frames, (5, 5, 10, 10), "", sys.argv[1], progress=False)))
"""


def test_sigterm_removes_the_half_video_and_the_next_run_removes_dead_writers_temps(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", SIGTERM_AT_FRAME_4, str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 128 + 15, run.stderr  # the shell's status of a SIGTERM, after the cleanup
    assert "dmtrack track: error: signal SIGTERM" in run.stderr
    assert list(out.iterdir()) == []  # neither tracked.mp4 nor its temp file
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    stale = [out / f".tracked.mp4.{gone}.k2j4x9q1.tmp.mp4", out / f".boxes.txt.{gone}.w8e1m0zz.tmp"]
    for p in stale:  # what a run killed by SIGKILL leaves
        p.write_bytes(b"half")
    track_video(FakeTracker(), [np.full((48, 64, 3), 90, np.uint8)] * 8, (5, 5, 10, 10), "", out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["boxes.txt", "boxes_time.txt", "tracked.mp4"]


def test_caption_wraps_long_words_and_stops_at_a_third_of_the_frame():
    image = np.full((96, 96, 3), 100, np.uint8)
    text = "the " + "x" * 60 + " " + " ".join(["red car on the left"] * 20)
    lines, font, pad, step, indent = caption_lines(text, 1, (96, 96))
    # DejaVu Sans at 10 px: 13 px lines, 2 px padding; 96 / 3 = 32 rows hold (32 - 2) // 13 = 2 lines
    assert (pad, step) == (2, 13) and len(lines) == 2 and lines[-1].endswith("…")
    assert indent == np.ceil(font.getlength("#0  ")) and font.getlength(lines[0]) <= 96 - 2 * pad - indent
    assert font.getlength(lines[1]) <= 96 - 2 * pad  # the 60 x's are cut, not run off the frame
    frame = draw_frame(image, (0, 0, 1, 1), text, 0)
    assert (frame[2 * pad + 2 * step:] == 100).all()  # below the 30-row banner the frame is untouched
    assert (frame[:2 * pad + 2 * step, 90:] < 100).all()  # the banner is darkened to its right edge


def test_caption_draws_non_ascii_letters():
    image = np.full((120, 160, 3), 100, np.uint8)
    drawn = {t: draw_frame(image, (0, 0, 1, 1), t, 0) for t in ("?", "λ", "Ω", "e", "é")}
    # OpenCV's Hershey font drew the Greek letters as '?'
    assert not np.array_equal(drawn["λ"], drawn["?"]) and not np.array_equal(drawn["Ω"], drawn["?"])
    assert not np.array_equal(drawn["λ"], drawn["Ω"])
    # é is e plus an accent above it with the same advance: its ink covers e's and adds some
    assert (drawn["é"] >= drawn["e"]).all() and (drawn["é"] > drawn["e"]).sum() > 3


def test_letters_the_caption_font_lacks_are_named_in_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=re.escape("--text: the caption font (DejaVu Sans) has no glyph for '红色的汽车'; "
                                                   "tracked.mp4 draws them as boxes")):
        track_video(FakeTracker(), [np.full((48, 64, 3), 90, np.uint8)] * 2, (5, 5, 10, 10), "红色的 汽车 λ", tmp_path,
                    progress=False)
