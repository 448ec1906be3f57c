"""TNL2K: <root>/<test|train>/<seq>/{imgs/, groundtruth.txt, language.txt[, attributes.txt]}
(formats_metrics.md §3).

Two layouts are accepted, also mixed: one-level (<split>/<seq>/) and the zipped part
folders (<split>/TNL2k_train_subset_p9/<seq>/). A folder is a sequence when it holds
imgs/ or groundtruth.txt; any other folder is a part folder, every sub-folder of which
must be a sequence. `revised_annotations` is skipped.

Image names are not derived from the frame index: the names in imgs/ are sorted by the
number they end with (the last run of digits in the name), so '9.png' comes before
'10.png' whatever the zero-padding; two names with the same number are an error.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from .files import (DatasetError, MissingFileError, list_images, progress_bar, read_boxes,
                      read_description, read_drift, read_text)
from .sequence import Sequence

SKIP = {"revised_annotations"}
EMPTY_TEXT_HINT = (" (TNL2K published replacement sentences for such videos, e.g. Fight_video_6-Done, in "
                   "updated_4_video_text_annotation.zip, 2022-06: unzip it over the dataset)")
_NUMBER = re.compile(r"(\d+)\D*$")


def _is_sequence(path: Path) -> bool:
    return (path / "imgs").is_dir() or (path / "groundtruth.txt").is_file()


def _subdirs(path: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")
                   and e.name not in SKIP), key=lambda e: e.name)


def find_sequences(base: Path) -> dict[str, Path]:
    """{sequence name: folder} under a split folder, one-level or in part folders."""
    if not base.is_dir():
        raise MissingFileError(f"missing TNL2K split folder: {base}")
    found: dict[str, Path] = {}
    for entry in _subdirs(base):
        path = Path(entry.path)
        if _is_sequence(path):
            seqs = [path]
        else:
            seqs = [Path(e.path) for e in _subdirs(path)]
            bad = [p for p in seqs if not _is_sequence(p)]
            if not seqs or bad:
                raise DatasetError(f"{bad[0] if bad else path}: neither a TNL2K sequence folder (imgs/ and "
                                   f"groundtruth.txt) nor a part folder of sequences")
        for p in seqs:
            if p.name in found:
                raise DatasetError(f"sequence {p.name} appears twice: {found[p.name]} and {p}")
            found[p.name] = p
    return found


def frame_number(name: str) -> int | None:
    m = _NUMBER.search(name.rsplit(".", 1)[0])
    return int(m.group(1)) if m else None


def sorted_images(folder: Path) -> list[str]:
    """Image names in `folder` in frame order (by their trailing number)."""
    numbered = {}
    for name in list_images(folder):
        k = frame_number(name)
        if k is None:
            raise DatasetError(f"{folder / name}: image name has no frame number")
        if k in numbered:
            raise DatasetError(f"{folder}: {numbered[k]} and {name} both carry frame number {k}")
        numbered[k] = name
    order = sorted(numbered)
    gaps = [k for a, k in zip(order, order[1:]) if k != a + 1]
    if gaps:
        warnings.warn(f"{folder}: frame numbers jump to {gaps[0]} ({len(gaps)} gap(s)); frames are taken in order")
    return [numbered[k] for k in order]


def load(root: Path, split: str, allow_empty_text: bool = False, progress: bool | None = None,
         frames: bool = True) -> list[Sequence]:
    """frames=False: annotations only (Sequence.frames is None, imgs/ is not listed)."""
    if split not in ("test", "train"):
        raise ValueError(f"TNL2K split must be 'test' or 'train', got {split!r}")
    found = find_sequences(root / split)
    return [read_sequence(found[n], allow_empty_text, frames)
            for n in progress_bar(sorted(found), f"tnl2k/{split}", progress)]


def frame_paths(imgs: Path, n: int, gt: Path) -> tuple[list[Path], int]:
    """The first n images of imgs/ in frame order, and how many images come after them."""
    names = sorted_images(imgs)
    if len(names) < n:
        raise DatasetError(f"{imgs}: {len(names)} images for {n} ground-truth rows in {gt} "
                           f"(fewer images than ground-truth rows)")
    if len(names) > n:
        warnings.warn(f"{imgs}: {len(names) - n} images after the last ground-truth row of {gt}; ignored")
    base = str(imgs) + os.sep
    return [Path(base + s) for s in names[:n]], len(names) - n


def read_sequence(folder: Path, allow_empty_text: bool = False, frames: bool = True) -> Sequence:
    gt = folder / "groundtruth.txt"
    boxes = read_boxes(gt)
    n = len(boxes)
    paths, unannotated = frame_paths(folder / "imgs", n, gt) if frames else (None, None)
    attributes = None
    if (folder / "attributes.txt").is_file():
        attributes = {"flags": _read_attributes(folder / "attributes.txt")}
    return Sequence(
        name=folder.name, frames=paths, boxes=boxes,
        description=read_description(folder / "language.txt", allow_empty_text, EMPTY_TEXT_HINT),
        dataset="tnl2k", attributes=attributes, drift=read_drift(folder, n),
        extra={"path": folder, "unannotated_images": unannotated})


def _read_attributes(path: Path) -> np.ndarray:
    """The per-video attribute flags (comma- or whitespace-separated numbers) as an int array."""
    text = read_text(path, "attribute file").strip()
    try:
        return np.array([int(float(t)) for t in re.split(r"[,\s]+", text) if t], dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{path}: attribute flags must be numbers, got {text[:60]!r}") from None
