"""LaSOT and LaSOT_ext: <root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt,
full_occlusion.txt, out_of_view.txt, nlp.txt} (formats_metrics.md §1-2).

The official test split is the LaSOT toolkit's sequence_evaluation_config/testing_set.txt
(HengLan/LaSOT_Evaluation_Toolkit), which the user copies to <root>/testing_set.txt or
points DMTRACK_LASOT_SPLIT at; the project ships no lists. Train = every other sequence.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from .files import (DatasetError, MissingFileError, numbered_frames, progress_bar, read_boxes,
                      read_description, read_drift, read_flags, read_text)
from .sequence import Sequence

SPLIT_ENV = "DMTRACK_LASOT_SPLIT"

def find_sequences(root: Path) -> dict[str, Path]:
    """{sequence name: folder} for every <root>/<class>/<name>/ (hidden folders skipped)."""
    if not root.is_dir():
        raise MissingFileError(f"missing LaSOT-layout root folder: {root}")
    found = {}
    for cls in sorted(os.scandir(root), key=lambda e: e.name):
        if not cls.is_dir() or cls.name.startswith("."):
            continue
        for seq in os.scandir(cls.path):
            if seq.is_dir() and not seq.name.startswith("."):
                if seq.name in found:
                    raise DatasetError(f"sequence {seq.name} appears twice: {found[seq.name]} and {seq.path}")
                found[seq.name] = Path(seq.path)
    return found

def read_split_file(path: Path) -> dict[str, int]:
    """{sequence name: 1-based line}, one name per line (blank lines ignored); a repeat is an error."""
    names = {}
    for i, line in enumerate(read_text(path, "LaSOT split file").splitlines(), 1):
        name = line.strip()
        if name in names:
            raise DatasetError(f"{path}, line {i}: {name} already listed on line {names[name]}")
        if name:
            names[name] = i
    return names

def split_file_path(root: Path, split_file: Path | None) -> Path:
    path = split_file or Path(os.environ.get(SPLIT_ENV) or root / "testing_set.txt")
    if not path.is_file():
        raise MissingFileError(
            f"missing LaSOT split file: {path}. Copy sequence_evaluation_config/testing_set.txt from the "
            f"LaSOT toolkit (github.com/HengLan/LaSOT_Evaluation_Toolkit) to {root / 'testing_set.txt'}, "
            f"or set {SPLIT_ENV} to its path")
    return path

def load(root: Path, split: str, tag: str, split_file: Path | None = None, all_test: bool = False,
         all_train: bool = False, allow_empty_text: bool = False, progress: bool | None = None,
         frames: bool = True) -> list[Sequence]:
    """Sequences of a LaSOT-layout root. all_test (LaSOT_ext) / all_train (synthetic train):
    every sequence belongs to that one split, no split file is read. frames=False: annotations
    only (Sequence.frames is None, the image folders are not listed)."""
    found = find_sequences(root)
    if all_test or all_train:
        only = "test" if all_test else "train"
        if split != only:
            raise ValueError(f"{root} holds only a {only} split, not {split!r}")
        names = sorted(found)
    elif split in ("test", "train"):
        path = split_file_path(root, split_file)
        test = read_split_file(path)
        if split == "test":
            for name, line in test.items():
                if name not in found:
                    cls = name.rsplit("-", 1)[0]
                    raise MissingFileError(f"{path}, line {line}: sequence {name} not found "
                                           f"(expected folder {root / cls / name})")
            names = sorted(test)
        else:
            names = sorted(set(found) - set(test))
    else:
        raise ValueError(f"LaSOT split must be 'test' or 'train', got {split!r}")
    return [read_sequence(found[n], tag, allow_empty_text, frames) for n in progress_bar(names, root.name, progress)]

def read_sequence(folder: Path, tag: str, allow_empty_text: bool = False, frames: bool = True) -> Sequence:
    gt = folder / "groundtruth.txt"
    boxes = read_boxes(gt)
    n = len(boxes)
    paths, unannotated = numbered_frames(folder / "img", 1, n, gt) if frames else (None, None)
    if unannotated:
        warnings.warn(f"{folder / 'img'}: {unannotated} images after the last ground-truth row; ignored")
    occluded = read_flags(folder / "full_occlusion.txt", n, "full-occlusion")
    out_of_view = read_flags(folder / "out_of_view.txt", n, "out-of-view")
    return Sequence(
        name=folder.name, frames=paths, boxes=boxes,
        description=read_description(folder / "nlp.txt", allow_empty_text),
        dataset=tag, visible=~occluded & ~out_of_view, drift=read_drift(folder, n),
        extra={"class": folder.parent.name, "path": folder, "unannotated_images": unannotated})
