"""LaSOT and LaSOT_ext: <root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt,
full_occlusion.txt, out_of_view.txt, nlp.txt} (formats_metrics.md §1-2).

The test split is read from the LaSOT toolkit's sequence_evaluation_config/testing_set.txt
(HengLan/LaSOT_Evaluation_Toolkit), which the user copies to <root>/testing_set.txt or points
DMTRACK_LASOT_SPLIT at; train = every other sequence folder. For the real LaSOT that file is
checked against the official 280 names the project ships (lasot_test.txt, pytracking's list):
a shortened list would move test sequences into training without a word. A file that differs,
or a train split other than the official 1,120, is an error unless the check is turned off
(DMTRACK_LASOT_SPLIT_CHECK=0 or custom_split=True; the report then flags the run).
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

from ..io import atomic_write_text
from .files import (DatasetError, MissingFileError, numbered_frames, progress_bar, read_boxes,
                      read_description, read_drift, read_flags, read_text)
from .sequence import Sequence

SPLIT_ENV = "DMTRACK_LASOT_SPLIT"
SPLIT_CHECK_ENV = "DMTRACK_LASOT_SPLIT_CHECK"  # "0": accept a split file other than the official 280 names
VIDEOS_PER_CLASS = 20  # LaSOT: 70 classes x 20 videos = 1,400


@functools.cache
def official_test_names() -> tuple[str, ...]:
    """The 280 sequences of LaSOT's test split (Protocol II), in class order: the list of the LaSOT
    toolkit's testing_set.txt, as pytracking's evaluation/lasotdataset.py hard-codes it."""
    return tuple(Path(__file__).with_name("lasot_test.txt").read_text().split())


@functools.cache
def official_train_names() -> frozenset[str]:
    """The 1,120 training sequences: every <class>-<1..20> of the 70 test classes minus the test
    names (equal to pytracking's ltr/data_specs/lasot_train_split.txt, checked)."""
    classes = {n.rsplit("-", 1)[0] for n in official_test_names()}
    return frozenset(f"{c}-{i}" for c in classes for i in range(1, VIDEOS_PER_CLASS + 1)) - set(official_test_names())


def split_check_enabled(custom_split: bool = False) -> bool:
    """False when the user opted out of the official-split check (custom_split or DMTRACK_LASOT_SPLIT_CHECK=0)."""
    return not custom_split and os.environ.get(SPLIT_CHECK_ENV, "1").strip() != "0"


def _first(names, n: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_official_split(path: Path, test: dict, root: Path, found: dict | None, check: bool) -> None:
    """Raise (or, with the check off, warn) when the split file is not the official 280 names, or
    when `found` (the sequence folders, given for the train split) minus them is not the official 1,120."""
    problems = []
    official = set(official_test_names())
    if set(test) != official:
        missing, extra = official - set(test), set(test) - official
        problems.append(f"{path} lists {len(test)} names, not the official {len(official)} LaSOT test sequences"
                        + (f"; missing: {_first(missing)}" if missing else "")
                        + (f"; not in the official test list: {_first(extra)}" if extra else "")
                        + " (a shortened list moves test sequences into training)")
    if found is not None:
        train, want = set(found) - set(test), official_train_names()
        if train != want:
            missing, extra = want - train, train - want
            problems.append(f"the LaSOT train split under {root} (every folder not in the test list) is {len(train)} "
                            f"sequences, not the official {len(want)}"
                            + (f"; missing folders: {_first(missing)}" if missing else "")
                            + (f"; folders that are no official training sequence: {_first(extra)}" if extra else ""))
    if not problems:
        return
    text = "; ".join(problems)
    if check:
        raise DatasetError(f"{text}. Copy the LaSOT toolkit's testing_set.txt unchanged, or set {SPLIT_CHECK_ENV}=0 "
                           "(custom_split=True) to use this split anyway; the report then flags the run")
    warnings.warn(f"custom LaSOT split ({SPLIT_CHECK_ENV}=0 or custom_split): {text}")


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

SPLIT_MODES = ("file", "official", "custom", "all_test", "all_train")


def load(root: Path, split: str, tag: str, split_mode: str = "file", split_file: Path | None = None,
         allow_empty_text: bool = False, progress: bool | None = None, frames: bool = True) -> list[Sequence]:
    """Sequences of a LaSOT-layout root, the split chosen by split_mode:
      file       the split file (split_file, else $DMTRACK_LASOT_SPLIT, else <root>/testing_set.txt), unchecked
      official   that file, which must be the official 280 / 1,120 sequences (the real LaSOT) unless
                 DMTRACK_LASOT_SPLIT_CHECK=0 opts out: then as custom
      custom     that file, compared with the official split with a warning only (custom_split=True)
      all_test / all_train   every sequence belongs to that one split, no split file is read (LaSOT_ext,
                 synthetic train)
    frames=False: annotations only (Sequence.frames is None, the image folders are not listed)."""
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"split_mode must be one of {', '.join(SPLIT_MODES)}, got {split_mode!r}")
    found = find_sequences(root)
    if split_mode in ("all_test", "all_train"):
        only = split_mode.removeprefix("all_")
        if split != only:
            raise ValueError(f"{root} holds only a {only} split, not {split!r}")
        names = sorted(found)
    elif split in ("test", "train"):
        path = split_file_path(root, split_file)
        test = read_split_file(path)
        if split_mode != "file":
            check_official_split(path, test, root, found if split == "train" else None,
                                 split_check_enabled(split_mode == "custom"))
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


# --- the writer (the synthetic benchmark, the benchmarks under bench/ and the tests write this layout) ---
def write_sequence(folder: Path, boxes, sentence: str, occluded=None, out_of_view=None, frames=()) -> Path:
    """One sequence in LaSOT's layout at `folder` (<root>/<class>/<class>-<k>), what read_sequence reads:
    img/%08d.jpg from `frames` (encoded images; b"" an empty file, as the readers list frames but never
    decode them), groundtruth.txt (a row x,y,w,h per box, each value written as given: LaSOT's are
    1-based), full_occlusion.txt and out_of_view.txt (0/1 per frame; None: all 0) and nlp.txt
    (`sentence` as given: LaSOT's end with a newline)."""
    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    prefix = f"{folder / 'img'}{os.sep}"
    for i, data in enumerate(frames, 1):
        fd = os.open(f"{prefix}{i:08d}.jpg", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)  # a third of open()'s cost
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    boxes = list(boxes)
    (folder / "groundtruth.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    for name, flags in (("full_occlusion.txt", occluded), ("out_of_view.txt", out_of_view)):
        (folder / name).write_text(",".join(map(str, [0] * len(boxes) if flags is None else flags)) + "\n")
    (folder / "nlp.txt").write_text(sentence)
    return folder


def write_split(root: Path, names) -> None:
    """<root>/testing_set.txt (atomically): the LaSOT toolkit's list of the test sequences, one name a line."""
    atomic_write_text(Path(root) / "testing_set.txt", "".join(f"{n}\n" for n in names))
