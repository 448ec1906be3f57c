"""OTB99-Lang: <root>/OTB_videos/<video>/{img/%04d.jpg, groundtruth_rect*.txt} with one sentence
per sequence in <root>/OTB_query_test/<seq>.txt (or OTB_query_train) (formats_metrics.md §4).

The sequences of a split are the query files. Quirks handled here:
- frame numbers come from the image names, whatever their padding (Board's %05d) or
  extension (KiteSurf as jpg/%04d.png in pytracking's copy; img/ is used when present);
- videos whose annotation starts after frame 1 (BlurCar1 247, BlurCar3 3, BlurCar4 18,
  David 300) and Tiger1's initOmit=5 (its first 5 frames and gt rows are dropped, as in
  the OTB toolkit), applied to the real benchmark only;
- img/ folders holding more frames than gt rows (David, Football1, Freeman3, Freeman4,
  Diving): frames past the last gt row are not part of the sequence; their number is kept
  in Sequence.extra['unannotated_images'];
- multi-target videos under MMTrack's names (Jogging-1/-2, Skating2-1/-2, Human4), with
  any spelling of the query file name (see names.py), read either from a per-target
  folder (Skating2-1/) or from the shared video folder (Jogging/groundtruth_rect.1.txt).
"""
from __future__ import annotations

import logging
from pathlib import Path

from .names import MULTI_TARGET, SINGLE_NAMED, canonical_name, split_target
from .files import (DatasetError, MissingFileError, numbered_frames, progress_bar, read_boxes,
                      read_description, read_drift)
from .sequence import Sequence

log = logging.getLogger(__name__)

START_FRAME = {"BlurCar1": 247, "BlurCar3": 3, "BlurCar4": 18, "David": 300}  # first annotated frame
INIT_OMIT = {"Tiger1": 5}  # OTB toolkit's initOmit: rows (and frames) dropped at the start


def candidates(videos: Path, stem: str) -> list[tuple[Path, str]]:
    """(folder, gt file name) pairs to try, in order, for the query file `stem`.txt."""
    base, k = split_target(stem)
    if k is None:
        if base in MULTI_TARGET:
            raise DatasetError(f"{stem}: {base} has several targets; name the query file {base}-1, {base}-2")
        return [(videos / stem, "groundtruth_rect.txt")]
    if base in SINGLE_NAMED:  # Human4: only target 2 is annotated
        return [(videos / base, f"groundtruth_rect.{k}.txt"), (videos / base, "groundtruth_rect.txt")]
    own = [videos / d for d in dict.fromkeys([f"{base}-{k}", stem])]  # per-target folders
    return ([(d, f) for d in own for f in (f"groundtruth_rect.{k}.txt", "groundtruth_rect.txt")]
            + [(videos / base, f"groundtruth_rect.{k}.txt")])  # shared folder: the numbered file only


def load(root: Path, split: str, real_quirks: bool = True, allow_empty_text: bool = False,
         progress: bool | None = None, frames: bool = True) -> list[Sequence]:
    if split not in ("test", "train"):
        raise ValueError(f"OTB-Lang split must be 'test' or 'train', got {split!r}")
    queries = root / f"OTB_query_{split}"
    if not queries.is_dir():
        raise MissingFileError(f"missing OTB-Lang query folder: {queries}")
    files = sorted((p for p in queries.iterdir() if p.suffix == ".txt"), key=lambda p: canonical_name(p.stem))
    names = [canonical_name(p.stem) for p in files]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DatasetError(f"{queries}: several query files name sequence {sorted(dup)[0]}")
    return [read_sequence(root / "OTB_videos", q, real_quirks, allow_empty_text, frames)
            for q in progress_bar(files, f"otb_lang/{split}", progress)]


def read_sequence(videos: Path, query: Path, real_quirks: bool = True, allow_empty_text: bool = False,
                  frames: bool = True) -> Sequence:
    """One query's sequence; frames=False reads the annotations only (Sequence.frames is None)."""
    tried = candidates(videos, query.stem)
    folder, gt = next(((d, d / f) for d, f in tried if (d / f).is_file()), (None, None))
    if gt is None:
        raise MissingFileError(f"no ground truth for query {query}: tried "
                               + ", ".join(str(d / f) for d, f in tried))
    video = split_target(folder.name)[0]
    omit = INIT_OMIT.get(video, 0) if real_quirks else 0
    first = (START_FRAME.get(video, 1) if real_quirks else 1) + omit
    boxes = read_boxes(gt, start=omit + 1)
    if omit:
        if len(boxes) <= omit:
            raise DatasetError(f"{gt}: {len(boxes)} rows, but the first {omit} are omitted (initOmit)")
        boxes = boxes[omit:]
    n = len(boxes)
    imgs = folder / "img"
    if not imgs.is_dir() and (folder / "jpg").is_dir():  # pytracking's KiteSurf/jpg/%04d.png
        imgs = folder / "jpg"
    paths, unannotated = numbered_frames(imgs, first, n, gt) if frames else (None, None)
    if unannotated:
        log.info("%s: %d images after the last ground-truth row are not part of the sequence", imgs, unannotated)
    return Sequence(
        name=canonical_name(query.stem), frames=paths, boxes=boxes,
        description=read_description(query, allow_empty_text), dataset="otb",
        drift=read_drift(folder, n),
        extra={"path": folder, "gt_file": gt.name, "first_frame": first, "omitted_rows": omit,
               "unannotated_images": unannotated})
