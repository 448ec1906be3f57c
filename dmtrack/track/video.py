"""Track a target through one's own video: the library side of `dmtrack track`.

    frames = open_frames("clip.mp4")              # a video file, or a folder of frames
    model, cfg = load_model("runs/demo/train/full/seed0/model.pth")
    tracker = Tracker(model, cfg, bgr=frames.bgr)
    result = track_video(tracker, frames, (40, 60, 20, 20), "the red car on the left", "out/", masks=True)

writes out/boxes.txt (one x, y, w, h row per frame, the first the given box: pytracking's raw
results as `dmtrack.eval.write_results` writes them, tab-separated), out/boxes_time.txt (seconds
of the tracker calls per frame) and out/tracked.mp4: each frame with the tracker's box, the
sentence and, with masks=True, the diffusion mask overlaid as in the report's Fig. 7 panels.
A video file's frames stay in OpenCV's BGR order (the tracker swaps channels on its small crops);
a folder's frames are read with `read_frame`, exactly as `dmtrack evaluate` reads a benchmark,
so the boxes of a folder equal those of `evaluate` on the same frames, box, sentence, k and seed.
"""
from __future__ import annotations

import bisect
import functools
import math
import os
import re
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..cli import UsageError
from ..data.files import frames_in_folder, read_frame
from ..data.sequence import clean_text
from ..eval.results import write_results
from ..io import remove_stale_temps, sigterm_as_interrupt, temp_path

BOXES, VIDEO = "boxes", "tracked.mp4"  # OUT/boxes.txt (+ boxes_time.txt), OUT/tracked.mp4
DEFAULT_FPS = 30.0  # a folder of frames (or a video without a frame rate) plays at this rate
# The Fig. 7 style (dmtrack.report.plots.fig7_panel): the full model's box in tab10 blue (#1f77b4),
# the mask in magma at alpha 0.6 over the frame. OpenCV colours are BGR.
BOX_BGR = (0xB4, 0x77, 0x1F)
MASK_ALPHA = 0.6
CAPTION_MAX = 1 / 3  # of the frame's height: a long sentence is cut there, not drawn over the whole frame
MIN_BOX = 1.0  # pixels: the initial box's least width and height (the template crop scales it up from there)


# ----------------------------------------------------------------------------- input
@dataclass
class FrameSource:
    """The frames of a video file (BGR, as OpenCV decodes them) or of a folder of images (RGB,
    `read_frame`), the first `max_frames` of them. Iterating reads them one at a time."""
    path: Path
    files: list[Path] | None  # a folder's frames in playback order; None for a video file
    fps: float
    count: int | None  # frames to expect (a video's is its header's count, capped by max_frames)
    max_frames: int | None = None

    @property
    def bgr(self) -> bool:
        return self.files is None

    def where(self, i: int) -> str:
        """Names frame i (0-based) for an error message: its file, or the video and the frame number."""
        return str(self.files[i]) if self.files is not None else f"{self.path}, frame {i + 1}"

    def __iter__(self):
        if self.files is not None:
            yield from (read_frame(f) for f in self.files[: self.max_frames])
            return
        cap, n = cv2.VideoCapture(str(self.path)), 0
        try:
            while self.max_frames is None or n < self.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield frame
        finally:
            cap.release()
        if self.count is not None and n < self.count:  # a truncated file or a frame OpenCV could not decode
            warnings.warn(f"{self.path}: read {n} frames, the file's header announces {self.count}", stacklevel=2)


def open_frames(path, max_frames: int | None = None) -> FrameSource:
    """A FrameSource for a video file (anything cv2.VideoCapture reads) or a folder of frames
    (sorted by the numbers in their names). A missing path, an empty folder or a file OpenCV
    cannot read as a video raise an error naming the path."""
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    if path.is_dir():
        files = frames_in_folder(path)[:max_frames]
        return FrameSource(path, files, DEFAULT_FPS, len(files), max_frames)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file or folder of frames")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() or not cap.read()[0]:
            raise ValueError(f"{path}: OpenCV cannot read this as a video (not a video file, or a codec "
                             "this OpenCV build lacks); a folder of frames works too")
        fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    count = min(count, max_frames or count) if count > 0 else None
    return FrameSource(path, None, fps, count, max_frames)


def parse_box(text: str) -> np.ndarray:
    """'x,y,w,h' (pixels: top-left corner, width, height) -> (4,) float64; anything else raises UsageError."""
    fields = [f for f in re.split(r"[,\s]+", str(text).strip()) if f]
    try:
        box = np.array([float(f) for f in fields], dtype=np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise UsageError(f"--box {text!r}: expected 4 comma-separated numbers x,y,w,h "
                         "(top-left corner, width and height in pixels)")
    if box[2] < MIN_BOX or box[3] < MIN_BOX:
        raise UsageError(f"--box {text!r}: width and height must be at least {MIN_BOX:g} pixel, "
                         f"got w={box[2]:g}, h={box[3]:g}")
    return box


def check_box_in_frame(box, image_hw, where: str) -> None:
    """The initial box must lie inside the first frame (a box in another image's coordinates is a mistake)."""
    x, y, w, h = (float(v) for v in box)
    H, W = int(image_hw[0]), int(image_hw[1])
    if w < MIN_BOX or h < MIN_BOX:
        raise UsageError(f"initial box {x:g},{y:g},{w:g},{h:g}: width and height must be at least {MIN_BOX:g} pixel")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise UsageError(f"initial box {x:g},{y:g},{w:g},{h:g} (x,y,w,h) is not inside the first frame "
                         f"({where}: {W}x{H} pixels)")


# ----------------------------------------------------------------------------- drawing
def _font_file() -> Path:
    """DejaVu Sans, bundled with matplotlib (so always there): OpenCV's Hershey fonts draw '?' for
    most letters outside ASCII, this one has Latin, Greek and Cyrillic glyphs."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(_font_file()), size)


@functools.lru_cache(maxsize=4096)
def _length(size: int, text: str) -> float:
    """Width in pixels of `text` in the caption font; cached: every frame wraps the same sentence again."""
    return _font(size).getlength(text)


def warn_missing_glyphs(text: str) -> None:
    """Warn when the caption font has no glyph for some characters of `text` (CJK, say): they are drawn as boxes."""
    from fontTools.ttLib import TTFont  # a matplotlib dependency

    with TTFont(_font_file(), lazy=True) as font:
        covered = font.getBestCmap()
    missing = "".join(dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in covered))
    if missing:
        warnings.warn(f"--text: the caption font (DejaVu Sans) has no glyph for {missing[:20]!r}; tracked.mp4 draws "
                      "them as boxes (the model reads the sentence as given)", stacklevel=2)


def _wrap(text: str, width: float, size: int, max_lines: int, indent: float = 0) -> list[str]:
    """Greedy word wrap to `width` pixels (the first line `indent` less), stopping after max_lines + 1
    lines (enough to know it is cut); a word wider than a line (a URL, a pasted hash) is cut by characters."""
    lines, line = [], ""
    for word in text.split():
        if len(lines) > max_lines:
            break
        trial = f"{line} {word}" if line else word
        if line and _length(size, trial) > width - (0 if lines else indent):
            lines.append(line)
            trial = word
        while _length(size, trial) > width - (0 if lines else indent) and len(trial) > 1 and len(lines) <= max_lines:
            room = width - (0 if lines else indent)
            n = max(1, bisect.bisect_right(range(1, len(trial) + 1), room, key=lambda i: _length(size, trial[:i])))
            lines.append(trial[:n])
            trial = trial[n:]
        line = trial
    return lines + [line] if line else lines


def caption_lines(text: str, digits: int, image_hw) -> tuple[list[str], object, int, int, int]:
    """(lines, font, padding, line height, indent) of a frame's banner: the sentence in quotes, wrapped to
    the frame's width, at most CAPTION_MAX of its height (the rest cut, ending in '…'); its first line starts
    `indent` pixels in, after the frame number of `digits` digits (DejaVu's digits share one width)."""
    H, W = int(image_hw[0]), int(image_hw[1])
    font = _font(max(10, round(min(H, W) / 24)))
    pad, step = max(2, font.size // 5), sum(font.getmetrics())
    keep = max(1, int((H * CAPTION_MAX - pad) // step))
    indent = math.ceil(_length(font.size, "#" + "0" * digits + "  "))
    lines = _wrap(f'"{text}"'[: (keep + 1) * W], W - 2 * pad, font.size, keep, indent) if text else []  # a glyph >= 1 px
    if len(lines) > keep:
        last = lines[keep - 1]
        while last and _length(font.size, last + "…") > W - 2 * pad - (indent if keep == 1 else 0):
            last = last[:-1]
        lines = lines[: keep - 1] + [last.rstrip() + "…"]
    return lines, font, pad, step, indent


@functools.lru_cache(maxsize=8)
def _caption_ink(text: str, digits: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """The banner as (scale, add), (rows, W, 1) float32: banner = frame * scale + add darkens the frame to
    0.45 and blends the sentence's white ink over it. Drawn once per run, not per frame."""
    from PIL import Image, ImageDraw

    lines, font, pad, step, indent = caption_lines(text, digits, (H, W))
    ink = Image.new("L", (W, min(H, 2 * pad + step * max(1, len(lines)))))
    for j, line in enumerate(lines):
        ImageDraw.Draw(ink).text((pad + (0 if j else indent), pad + step * j), line, font=font, fill=255)
    ink = np.asarray(ink, dtype=np.float32)[..., None] / 255
    return 0.45 * (1 - ink), 255 * ink


def draw_frame(image_bgr: np.ndarray, box, text: str, index: int, mask: np.ndarray | None = None) -> np.ndarray:
    """One frame of tracked.mp4 (a new BGR image): the diffusion mask in magma at alpha 0.6 over the
    frame (when given), the box, and a banner with the frame number and the sentence (`caption_lines`)."""
    from PIL import Image, ImageDraw

    H, W = image_bgr.shape[:2]
    if mask is not None:
        heat = cv2.applyColorMap(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
        frame = cv2.addWeighted(image_bgr, 1 - MASK_ALPHA, heat, MASK_ALPHA, 0)
    else:
        frame = image_bgr.copy()
    x, y, w, h = (float(v) for v in box)
    if np.isfinite([x, y, w, h]).all() and w > 0 and h > 0:
        cv2.rectangle(frame, (round(x), round(y)), (round(x + w) - 1, round(y + h) - 1), BOX_BGR,
                      max(1, round(min(H, W) / 160)))  # axis-aligned on whole pixels: no anti-aliasing needed
    number = f"#{index + 1}"
    scale, add = _caption_ink(text, len(number) - 1, H, W)
    strip = Image.fromarray((frame[: len(add)] * scale + add + 0.5).astype(np.uint8))  # white text reads on any frame
    _, font, pad, _, _ = caption_lines("", len(number) - 1, (H, W))
    ImageDraw.Draw(strip).text((pad, pad), number, font=font, fill=(255, 255, 255))  # white in BGR too
    frame[: len(add)] = np.asarray(strip)
    return frame


@contextmanager
def atomic_video(path: Path, fps: float, size_wh):
    """A cv2.VideoWriter (mp4v) on a temp file beside `path` (`dmtrack.io.temp_path`), renamed over `path`
    on a clean exit and deleted on an error or Ctrl-C/SIGTERM (`track_video`): a stopped run never leaves
    half a video under the final name, and a killed one's temp is removed by the next run in that folder."""
    tmp = temp_path(path)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), tuple(int(v) for v in size_wh))
    if not writer.isOpened():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{tmp}: OpenCV cannot write an mp4v video here (pass --no-video for boxes only)")
    try:
        yield writer
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- tracking
def _track_one(tracker, image, i: int, box, text: str, masks: bool):
    """(box, mask or None, seconds of the tracker call) of frame i; frame 0 starts the sequence."""
    t0 = time.perf_counter()
    if i == 0:
        tracker.initialize(image, box, text)
        result = {"box": np.asarray(box, dtype=np.float64), "mask": np.zeros(image.shape[:2], np.float32) if masks else None}
    else:
        result = tracker.track(image, return_mask=masks)
    return result["box"], result["mask"], time.perf_counter() - t0


def _check_output(frames, out: Path) -> None:
    """A video file must not be OUT/tracked.mp4 (or a link to it): the run replaces that file (or, with
    --no-video, deletes it as stale) while still reading it."""
    target = out / VIDEO
    if isinstance(frames, FrameSource) and frames.files is None and target.exists() and os.path.samefile(frames.path, target):
        raise UsageError(f"{frames.path}: the input video is {target}, which this run writes; pass another --out")


def warn_if_cut(tracker, text: str) -> None:
    """Warn when the model reads only the start of `text`: its tokenizer keeps text_max_len tokens
    ([CLS] and [SEP] included, 36 in the paper), so the words after those are ignored."""
    encoder = getattr(tracker.model, "text", None)
    if encoder is None or not getattr(tracker.cfg, "use_language", True) or not clean_text(text or ""):
        return
    ids = encoder.tokenizer(clean_text(text), truncation=False)["input_ids"]
    kept = encoder.max_len
    if len(ids) > kept:
        read = encoder.tokenizer.decode(ids[1:kept - 1])
        warnings.warn(f"--text is {len(ids)} tokens long; the model reads the first {kept} (text_max_len, "
                      f"[CLS] and [SEP] included) and ignores what follows {read[-40:]!r}", stacklevel=2)


def track_video(tracker, frames, box, text: str, out, *, video: bool = True, masks: bool = False,
                progress: bool | None = None) -> dict:
    """Track the target in `box` (x, y, w, h in the first frame's pixels) described by `text` through
    `frames` (a FrameSource, or any iterable of HxWx3 uint8 images in the tracker's channel order), writing
    OUT/boxes.txt, OUT/boxes_time.txt and, with video=True, OUT/tracked.mp4 (the mask drawn with masks=True;
    frame 1 has no prediction, so its mask is blank); with video=False an old OUT/tracked.mp4 is deleted (it
    would not match the new boxes). Every frame must have the first frame's size. SIGTERM stops it as
    Ctrl-C does, deleting the half-written video; temp files of killed runs in OUT are removed first.
    Returns {'boxes': (n, 4), 'times': (n,) seconds of the tracker calls (reading and drawing excluded,
    as pytracking times them), 'seconds': wall time of the whole run, 'video': its path or None}."""
    from tqdm.auto import tqdm

    if masks and not video:
        raise ValueError("--masks draws the diffusion mask into tracked.mp4: it does not go with --no-video")
    if masks and not tracker.cfg.use_diffusion:
        raise ValueError(f"--masks: variant {tracker.cfg.variant} has no diffusion module, so there is no mask to draw")
    out = Path(out)
    _check_output(frames, out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # a killed run's half video or boxes (dead writers only)
    warn_if_cut(tracker, text)
    if video:
        warn_missing_glyphs(text)
    source = isinstance(frames, FrameSource)
    where = frames.where if source else (lambda i: f"frame {i + 1}")
    total = frames.count if source else (len(frames) if hasattr(frames, "__len__") else None)
    boxes, times, shape, writer, t_start = [], [], None, None, time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())  # first in, last out: SIGTERM reaches atomic_video's cleanup
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc="track",
                                       disable=(None if progress is None else not progress)))
        for i, image in enumerate(frames):
            if i == 0:
                shape = image.shape
                check_box_in_frame(box, shape, where(0))
            elif image.shape != shape:  # the tracker would run, but the video writer drops such frames
                raise ValueError(f"{where(i)}: a frame of {image.shape[1]}x{image.shape[0]} pixels, the first frame "
                                 f"has {shape[1]}x{shape[0]}: every frame must have one size")
            b, mask, seconds = _track_one(tracker, image, i, box, text, masks)
            boxes.append(b)
            times.append(seconds)
            if video:
                if writer is None:
                    fps = frames.fps if source else DEFAULT_FPS
                    writer = stack.enter_context(atomic_video(out / VIDEO, fps, (shape[1], shape[0])))
                bgr = image if tracker.bgr else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                writer.write(draw_frame(bgr, b, text, i, mask))
            bar.update(1)
        if not boxes:
            raise ValueError(f"{frames.path if source else 'frames'}: no frames to track")
        if not video:
            (out / VIDEO).unlink(missing_ok=True)
    with sigterm_as_interrupt():
        write_results(out, BOXES, np.array(boxes), np.array(times))
    return {"boxes": np.array(boxes), "times": np.array(times), "seconds": time.perf_counter() - t_start,
            "video": out / VIDEO if video else None}
