"""RefCOCOg, Google split, as one-frame training sequences (formats_metrics.md §5).

Files, as the `refer` API lays them out under <root>:
    refcocog/refs(google).p      pickled list of refs (ref_id, ann_id, image_id, split, sentences, ...);
                                 read by a restricted unpickler, so a crafted file cannot run code
    refcocog/instances.json      COCO images / annotations (bbox = [x, y, w, h]) / categories
    images/mscoco/images/train2014/COCO_train2014_%012d.jpg

One sequence per (referring expression, sentence): a ref with three sentences gives three
sequences sharing the image and the box, so every annotated sentence is used (JointNLT
keeps only the last one, MMTrack draws one at random per sample). The description is the
sentence's 'sent' field (the tokenised, lowercased form every VL tracker trains on); 'raw'
is kept in extra. The reader filters nothing: crowd flags and box sizes are in the sequence,
and the training sampler drops crowd references and boxes of w or h <= 50 (JointNLT's rule,
dmtrack.train.sampler.visible_frames).
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np

from .files import DatasetError, MissingFileError, progress_bar, read_text
from .sequence import Sequence

IMAGE_DIR = Path("images/mscoco/images/train2014")


class _RefsUnpickler(pickle.Unpickler):
    """The refs file holds lists, dicts, strings and numbers, none of which needs a global; a
    global is how a pickle calls code, so every one but a few builtin containers is refused."""
    SAFE = {(m, n) for m in ("builtins", "__builtin__") for n in ("set", "frozenset", "complex")}  # __builtin__: Python 2

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: a refs file holds only plain containers")


def _load_refs(path: Path) -> list[dict]:
    if not path.is_file():
        raise MissingFileError(f"missing RefCOCOg refs file: {path}")
    data = path.read_bytes()
    try:
        try:
            return _RefsUnpickler(io.BytesIO(data)).load()
        except UnicodeDecodeError:  # refs written by Python 2 with non-ASCII str
            return _RefsUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # a refused global, or any of the errors a corrupt pickle raises
        raise DatasetError(f"{path}: cannot read the refs pickle ({type(e).__name__}: {e})") from None


def load(root: Path, split: str = "train", allow_empty_text: bool = False,
         progress: bool | None = None, frames: bool = True) -> list[Sequence]:
    """frames=False: annotations only (Sequence.frames is None, the image folder is not listed)."""
    if split not in ("train", "val"):
        raise ValueError(f"RefCOCOg google split has 'train' and 'val' only (no test released), got {split!r}")
    refs_path = root / "refcocog" / "refs(google).p"
    refs = _load_refs(refs_path)
    inst_path = root / "refcocog" / "instances.json"
    try:
        inst = json.loads(read_text(inst_path, "RefCOCOg instances file"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{inst_path}, line {e.lineno}: invalid JSON ({e.msg})") from None
    anns = {a["id"]: a for a in inst["annotations"]}
    cats = {c["id"]: c["name"] for c in inst.get("categories", [])}
    image_dir = root / IMAGE_DIR
    try:
        on_disk = set(os.listdir(image_dir)) if frames else None
    except FileNotFoundError:
        raise MissingFileError(f"missing COCO train2014 image folder: {image_dir}") from None
    seqs = []
    for ref in progress_bar([r for r in refs if r["split"] == split], f"refcocog/{split}", progress):
        ann = anns.get(ref["ann_id"])
        if ann is None:
            raise DatasetError(f"{refs_path}: ref {ref['ref_id']} points to annotation {ref['ann_id']}, "
                               f"which {inst_path} does not have")
        file_name = f"COCO_train2014_{ref['image_id']:012d}.jpg"
        if frames and file_name not in on_disk:
            raise MissingFileError(f"missing image {image_dir / file_name} (ref {ref['ref_id']} in {refs_path})")
        for sent in ref["sentences"]:
            text = sent["sent"].strip()
            if not text and not allow_empty_text:
                raise DatasetError(f"{refs_path}: ref {ref['ref_id']} sentence {sent['sent_id']} is empty")
            seqs.append(Sequence(
                name=f"{ref['ref_id']}_{sent['sent_id']}", frames=[image_dir / file_name] if frames else None,
                boxes=np.asarray([ann["bbox"]], dtype=np.float64), description=text, dataset="refcocog",
                extra={"ref_id": ref["ref_id"], "sent_id": sent["sent_id"], "ann_id": ref["ann_id"],
                       "image_id": ref["image_id"], "category": cats.get(ref["category_id"]),
                       "iscrowd": bool(ann.get("iscrowd", 0)), "raw": sent.get("raw", text)}))
    return seqs
