"""The low-level dataset files every reader shares, and the one frame reader.

Strict parsing of ground-truth rows, flag files and description files, finding frame
images with one folder listing, and decoding a frame image (`read_frame`, used by
training, tracking and the plots alike; a truncated JPEG or PNG is refused, not decoded
with grey rows). Every problem raises a `DatasetError` naming the file (and the 1-based
line); nothing is ever shifted, dropped or padded silently.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """A dataset file is malformed or inconsistent; the message names the file (and line)."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file or folder the layout requires is absent; the message names it."""


class FrameError(DatasetError, FileNotFoundError):
    """A frame image is missing or cannot be decoded; the message names the file."""


# A complete JPEG ends with the EOI marker, a complete PNG with its IEND chunk (type + CRC).
# Some encoders pad the file after it with zeros or whitespace, which decoders ignore.
_END_MARKERS = {b"\xff\xd8": (b"\xff\xd9", "JPEG end marker FF D9"),
                b"\x89PNG\r\n\x1a\n": (b"IEND\xaeB`\x82", "PNG IEND chunk")}
_PADDING = b"\x00 \t\r\n"


def incomplete_image(data: bytes) -> str | None:
    """Why the bytes of a JPEG or PNG file are incomplete (truncated), or None if they end as
    they should. The format is read from the first bytes, not the file name; other formats
    (BMP) are left to the decoder. OpenCV decodes a truncated JPEG without an error, filling
    the missing rows with grey, so this check is what turns that into an error."""
    for magic, (end, what) in _END_MARKERS.items():
        if data.startswith(magic):
            if data.endswith(end) or data.rstrip(_PADDING).endswith(end):
                return None
            return f"incomplete image: no {what} at the end of its {len(data)} bytes (a truncated file)"
    return None


def read_frame(path) -> np.ndarray:
    """HxWx3 uint8 RGB image read with OpenCV; a missing, truncated or undecodable file raises
    FrameError naming it. The file is read once and decoded from memory."""
    return _decode(path, _frame_bytes(path), cv2.IMREAD_COLOR)


# cv2.imdecode flags that decode a JPEG at 1/f of its size with libjpeg's DCT scaling
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_frame_reduced(path, reduce: int, rgb: bool = True) -> tuple[np.ndarray, int, tuple[int, int]]:
    """(image, f, (H, W)): a JPEG decoded at 1/f of its size, f = `reduce` (2, 4 or 8; reduced
    pixel j covers frame pixels [f j, f j + f)), with the frame's full height and width from its
    header; any other format (or reduce 1) decoded whole, f = 1 (OpenCV would decode it whole
    and resize). rgb=False keeps OpenCV's BGR order, for a caller that crops first and converts
    the small crop (the training sampler). The same checks and errors as `read_frame`."""
    data = _frame_bytes(path)
    size = jpeg_size(data) if reduce in _REDUCED_FLAGS else None
    if size is not None:
        image = _decode(path, data, _REDUCED_FLAGS[reduce], rgb)
        if image.shape[:2] == (-(-size[0] // reduce), -(-size[1] // reduce)):
            return image, reduce, size
        # else the decoder turned the picture (EXIF orientation): the header's size is not its size
    image = _decode(path, data, cv2.IMREAD_COLOR, rgb)
    return image, 1, image.shape[:2]


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment, or None for bytes that are not a
    JPEG or have no readable SOF before the scan (the decoder then has the last word)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..15 (C4 DHT, C8 JPG, CC DAC are not)
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        elif marker == 0xDA:  # start of scan: no SOF before it
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _frame_bytes(path) -> bytes:
    """The bytes of a frame image file, refused (FrameError naming it) when missing, empty or truncated."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FrameError(f"missing frame image: {path}") from None
    if not data:
        raise FrameError(f"empty frame image (0 bytes): {path}")
    why = incomplete_image(data)
    if why:
        raise FrameError(f"{path}: {why}")
    return data


def _decode(path, data: bytes, flag: int, rgb: bool = True) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise FrameError(f"cannot decode frame image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if rgb else image


def require(path: Path, what: str) -> Path:
    """`path` if it exists, else a MissingFileError saying what was expected there."""
    if not path.exists():
        raise MissingFileError(f"missing {what}: {path}")
    return path


def read_text(path: Path, what: str = "text file") -> str:
    """The whole file decoded as UTF-8 (a BOM is dropped); errors name the file and line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"missing {what}: {path}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                           f"{e.start}); re-save the file as UTF-8") from None


def read_description(path: Path, allow_empty: bool = False, hint: str = "") -> str:
    """The first non-blank line of a description file, stripped (case and punctuation kept).

    An empty file is an error unless allow_empty, then it is "" and a warning names the file.
    """
    text = read_text(path, "description file")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        msg = f"{path}: empty description{hint}"
        if not allow_empty:
            raise DatasetError(msg + " (pass allow_empty_text=True to load it as '')")
        warnings.warn(msg + "; loaded as ''", stacklevel=3)
    return line


def _lines(path: Path, what: str) -> list[str]:
    # trailing blank lines are harmless; blank lines inside the file are reported by the checks
    lines = read_text(path, what).rstrip().splitlines()
    if not lines:
        raise DatasetError(f"{path}: empty {what}")
    return lines


def read_boxes(path: Path, what: str = "ground-truth file", start: int = 1) -> np.ndarray:
    """(N, 4) float64 x, y, w, h rows, comma- or whitespace-separated (one separator per file).

    Every value must be a finite number: none of the benchmarks read here writes NaN (checked
    for LaSOT, formats_metrics.md §1), so a NaN is a damaged file, not an absent target (LaSOT
    and TNL2K mark those with 0,0,0,0 rows, which are kept). Line `start` (1-based: the row a
    tracker starts from, 1, or 6 for OTB's Tiger1) must hold a box with w, h > 0.
    Fast path: np.loadtxt. When it fails, finds a non-finite value, or a blank line would make
    it skip a row, the file is re-read line by line to name the first bad line.
    """
    lines = _lines(path, what)
    sep = "," if "," in lines[0] else None
    try:
        boxes = np.loadtxt(lines, delimiter=sep, comments=None, ndmin=2, dtype=np.float64)
    except ValueError:
        boxes = None
    if boxes is None or boxes.shape != (len(lines), 4) or not np.isfinite(boxes).all():
        _raise_first_bad_row(path, lines, sep)
    if start <= len(boxes) and not (boxes[start - 1, 2] > 0 and boxes[start - 1, 3] > 0):
        raise DatasetError(f"{path}, line {start}: the first frame needs a box with w, h > 0 (the tracker "
                           f"starts from it), got {lines[start - 1].strip()!r}")
    return boxes


def _raise_first_bad_row(path: Path, lines: list[str], sep: str | None) -> None:
    for i, line in enumerate(lines, 1):
        fields = line.split(sep)
        if len(fields) != 4:
            kind = "comma" if sep else "whitespace"
            raise DatasetError(f"{path}, line {i}: expected 4 {kind}-separated values x,y,w,h, "
                               f"got {len(fields)}: {line!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise DatasetError(f"{path}, line {i}: unparsable value in {line!r}") from None
        if not all(map(math.isfinite, values)):
            raise DatasetError(f"{path}, line {i}: NaN or infinite value in {line!r} (an absent target is "
                               f"written 0,0,0,0 in these benchmarks)")
    raise DatasetError(f"{path}: could not parse the ground truth")  # unreachable in practice


def read_flags(path: Path, n: int, what: str) -> np.ndarray:
    """(n,) bool from 0/1 flags separated by commas and/or newlines (LaSOT's one-line files,
    one-per-line drift files); a wrong count or a value other than 0/1 names file and line."""
    lines = _lines(path, what)
    text = "\n".join(lines).strip()
    # fast path for the usual layouts, one-character flags with one character between them
    # ("0,0,1", "0\n0\n1"): the flags are then exactly the characters at even positions
    if len(text) == 2 * n - 1 and set(text[::2]) <= {"0", "1"} and set(text[1::2]) <= {",", "\n", " ", "\t"}:
        return np.frombuffer(text[::2].encode(), np.uint8) == ord("1")
    flags = []
    for i, line in enumerate(lines, 1):
        for tok in re.split(r"[,\s]+", line.strip()):
            if tok not in ("0", "1"):
                raise DatasetError(f"{path}, line {i}: {what} flags must be 0 or 1, got {tok!r}")
            flags.append(tok == "1")
    if len(flags) != n:
        raise DatasetError(f"{path}: {len(flags)} {what} flags for {n} ground-truth rows")
    return np.array(flags, dtype=bool)


def list_images(folder: Path) -> list[str]:
    """Image file names in `folder` (one listing, no per-file stat)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise MissingFileError(f"missing image folder: {folder}") from None
    return [n for n in names if n.lower().endswith(IMAGE_EXTS)]


def _frame_key(name: str) -> tuple:
    # digit runs compare as numbers: img9.jpg < img10.jpg, and 0001.jpg == 1.png (one frame, two files)
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name.rsplit(".", 1)[0]) if t)


def frames_in_folder(folder: Path) -> list[Path]:
    """The images of a folder of frames in playback order: sorted by the numbers in their names
    (0001.jpg, frame_2.png, img10.jpg), with one folder listing. An empty folder, or two files
    that name one frame (0001.jpg and 1.png), raise a DatasetError naming the folder."""
    folder = Path(folder)
    names = sorted(list_images(folder), key=_frame_key)
    if not names:
        raise DatasetError(f"{folder}: no frame images ({' '.join(IMAGE_EXTS)}) in this folder")
    for a, b in zip(names, names[1:]):
        if _frame_key(a) == _frame_key(b):
            raise DatasetError(f"{folder}: {a} and {b} are both the same frame")
    return [folder / n for n in names]


def numbered_frames(folder: Path, first: int, n: int, gt: Path) -> tuple[list[Path], int]:
    """Frames `first` .. `first+n-1` of a folder whose image names are the frame number
    (LaSOT 00000001.jpg, OTB 0001.jpg, Board 00001.jpg, KiteSurf .png).

    Returns (paths, number of images after the last annotated frame). Errors: a missing
    frame (MissingFileError naming the expected file; the message also says when the folder
    holds fewer images than gt rows), or two files claiming one frame number.
    """
    by_number: dict[int, str] = {}
    for name in list_images(folder):
        stem = name.rsplit(".", 1)[0]
        if stem.isdigit():
            k = int(stem)
            if k in by_number:
                raise DatasetError(f"{folder}: {by_number[k]} and {name} are both frame {k}")
            by_number[k] = name
    last = first + n - 1
    missing = next((k for k in range(first, last + 1) if k not in by_number), None)
    if missing is not None:
        # name the file the way its neighbours are named (padding and extension)
        like = next(iter(by_number.values()), f"{0:08d}.jpg")
        stem, ext = like.rsplit(".", 1)
        msg = (f"missing image {folder / f'{missing:0{len(stem)}d}.{ext}'} for frame {missing} "
               f"(row {missing - first + 1} of {gt})")
        if len(by_number) < n:
            msg += f"; {folder} holds {len(by_number)} images for {n} ground-truth rows (fewer images than ground-truth rows)"
        raise MissingFileError(msg)
    base = str(folder) + os.sep
    frames = [Path(base + by_number[k]) for k in range(first, last + 1)]
    return frames, sum(k > last for k in by_number)


def read_drift(folder: Path, n: int) -> np.ndarray | None:
    """The synthetic suites' per-frame drift flags (folder/drift.txt), or None if absent."""
    path = folder / "drift.txt"
    return read_flags(path, n, "drift") if path.exists() else None


def progress_bar(items, desc: str, progress: bool | None):
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, unit="seq", leave=False, disable=(None if progress is None else not progress))
