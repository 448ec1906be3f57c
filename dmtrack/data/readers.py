"""`load_benchmark`: one entry point for every benchmark, and the file helpers the readers share.

Each dataset's layout lives in its own module (lasot.py, tnl2k.py, otb.py, refcoco.py);
this module holds what they have in common: strict parsing of ground-truth rows, flag
files and description files, and finding frame images with one folder listing. Every
problem raises a `DatasetError` naming the file (and the 1-based line); nothing is ever
shifted, dropped or padded silently. See docs/datasets.md for the layouts.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from .sequence import Sequence, dataset_root

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

# name -> what it is (the CLI lists these). Synthetic suites are written by
# dmtrack.data.synthetic in the real layouts and read back by the same readers.
BENCHMARKS = {
    "lasot": "LaSOT test (280 videos, split from the toolkit's testing_set.txt) or train",
    "lasot_ext": "LaSOT extension subset (150 videos, all test)",
    "tnl2k": "TNL2K test (700 videos) or train (1,300)",
    "otb_lang": "OTB99-Lang test (48 videos) or train (51)",
    "refcocog": "RefCOCOg google split, one-frame sequence per referring expression (train/val)",
    "synthetic_train": "synthetic training split (LaSOT layout, <root>/train)",
    "synthetic_lasot": "synthetic stand-in for LaSOT (<root>/lasot)",
    "synthetic_lasot_ext": "synthetic stand-in for LaSOT_ext, unseen classes (<root>/lasot_ext)",
    "synthetic_tnl2k": "synthetic stand-in for TNL2K (<root>/tnl2k)",
    "synthetic_otb_lang": "synthetic stand-in for OTB-Lang (<root>/otb_lang)",
}  # plus synthetic_drift_<level> (e.g. synthetic_drift_0.50): the drift sweep, LaSOT layout at <root>/drift/<level>


class DatasetError(ValueError):
    """A dataset file is malformed or inconsistent; the message names the file (and line)."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file or folder the layout requires is absent; the message names it."""


def load_benchmark(name: str, root: str | os.PathLike | None = None, split: str | None = None,
                   allow_empty_text: bool = False, progress: bool | None = None) -> list[Sequence]:
    """The sequences of benchmark `name` (a key of BENCHMARKS): sorted by name for the video
    benchmarks, in the refs file's order for refcocog.

    root: the dataset's folder; default `dataset_root(name)` ($DMTRACK_DATA/<folder>, or
        $DMTRACK_<NAME>_ROOT). For synthetic_* it is the folder holding train/, lasot/, ...
    split: "test" or "train" ("val" for refcocog); None = the benchmark's usual split
        (test, but train for refcocog). The synthetic suites' split is fixed by their name.
    allow_empty_text: an empty description file is an error by default (TNL2K's
        Fight_video_6-Done shipped one); True loads it as "" with a warning.
    progress: tqdm bar over sequences (None = only on a terminal).
    """
    from . import lasot, otb, refcoco, tnl2k

    drift_level = _drift_level(name)
    if name not in BENCHMARKS and drift_level is None:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}, synthetic_drift_<level>")
    root = Path(root) if root is not None else dataset_root(name)
    opts = dict(allow_empty_text=allow_empty_text, progress=progress)
    if name == "lasot":
        seqs = lasot.load(root, split or "test", tag="lasot", **opts)
    elif name == "lasot_ext":
        seqs = lasot.load(root, split or "test", tag="lasot_extension_subset", all_test=True, **opts)
    elif name == "tnl2k":
        seqs = tnl2k.load(root, split or "test", **opts)
    elif name == "otb_lang":
        seqs = otb.load(root, split or "test", **opts)
    elif name == "refcocog":
        seqs = refcoco.load(root, split or "train", **opts)
    elif name == "synthetic_train":
        seqs = lasot.load(root / "train", "train", tag="lasot", all_train=True, **opts)
    elif name == "synthetic_lasot":
        seqs = lasot.load(root / "lasot", "test", tag="lasot", split_file=root / "lasot" / "testing_set.txt", **opts)
    elif name == "synthetic_lasot_ext":
        seqs = lasot.load(root / "lasot_ext", "test", tag="lasot_extension_subset", all_test=True, **opts)
    elif drift_level is not None:  # the synthetic drift sweep: LaSOT layout at <root>/drift/<level>
        folder = root / "drift" / drift_level
        seqs = lasot.load(folder, "test", tag="lasot", split_file=folder / "testing_set.txt", **opts)
    elif name == "synthetic_tnl2k":
        seqs = tnl2k.load(root / "tnl2k", "test", **opts)
    else:  # synthetic_otb_lang: same layout, but none of real OTB's per-video start frames
        seqs = otb.load(root / "otb_lang", "test", real_quirks=False, **opts)
    for s in seqs:
        s.extra["benchmark"] = name
    return seqs


def _drift_level(name: str) -> str | None:
    """'0.50' for 'synthetic_drift_0.5' (the folder name the synthetic generator uses), else None."""
    if not name.startswith("synthetic_drift_"):
        return None
    try:
        return f"{float(name[len('synthetic_drift_'):]):.2f}"
    except ValueError:
        return None


# --------------------------------------------------------------------------- file helpers

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


def read_boxes(path: Path, what: str = "ground-truth file") -> np.ndarray:
    """(N, 4) float64 x, y, w, h rows, comma- or whitespace-separated (one separator per file).

    Fast path: np.loadtxt. When it fails, or a blank line would make it skip a row, the
    file is re-read line by line to name the first bad line.
    """
    lines = _lines(path, what)
    sep = "," if "," in lines[0] else None
    try:
        boxes = np.loadtxt(lines, delimiter=sep, comments=None, ndmin=2, dtype=np.float64)
        if boxes.shape == (len(lines), 4):
            return boxes
    except ValueError:
        pass
    for i, line in enumerate(lines, 1):
        fields = line.split(sep)
        if len(fields) != 4:
            kind = "comma" if sep else "whitespace"
            raise DatasetError(f"{path}, line {i}: expected 4 {kind}-separated values x,y,w,h, "
                               f"got {len(fields)}: {line!r}")
        try:
            [float(f) for f in fields]
        except ValueError:
            raise DatasetError(f"{path}, line {i}: unparsable value in {line!r}") from None
    raise DatasetError(f"{path}: could not parse the ground truth")  # unreachable in practice


def read_flags(path: Path, n: int, what: str) -> np.ndarray:
    """(n,) bool from 0/1 flags separated by commas and/or newlines (LaSOT's one-line files,
    one-per-line drift files); a wrong count or a value other than 0/1 names file and line."""
    lines = _lines(path, what)
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
