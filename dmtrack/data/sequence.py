"""The one sequence type every reader returns, and where dataset roots come from."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Default folder of each dataset below $DMTRACK_DATA (default: data/). Each can be
# overridden on its own with DMTRACK_<NAME>_ROOT, e.g. DMTRACK_LASOT_ROOT=/datasets/LaSOT.
DEFAULT_SUBDIRS = {
    "lasot": "LaSOT",
    "lasot_ext": "LaSOT_ext",
    "tnl2k": "TNL2K",
    "otb_lang": "OTB_lang",
    "refcocog": "refcoco",
    "synthetic": "synthetic",
}


DATA_ENV = "DMTRACK_DATA"


def root_env(name: str) -> str:
    """The variable that overrides one dataset's root: 'lasot' -> 'DMTRACK_LASOT_ROOT'."""
    return f"DMTRACK_{name.upper()}_ROOT"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV, "data"))


def dataset_root(name: str) -> Path:
    """Root folder of dataset `name` (a key of DEFAULT_SUBDIRS, or synthetic_*)."""
    base = "synthetic" if name.startswith("synthetic") else name
    if base not in DEFAULT_SUBDIRS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DEFAULT_SUBDIRS)}")
    env = os.environ.get(root_env(base))
    return Path(env) if env else data_root() / DEFAULT_SUBDIRS[base]


_DROP = re.compile(r"[.,'!?\"()*#:;]")


def clean_text(text: str) -> str:
    """MMTrack's caption cleaning: lowercase, delete .,'!?"()*#:; and turn - and / into spaces."""
    text = _DROP.sub("", text.strip().lower())
    text = text.replace("-", " ").replace("/", " ")
    return " ".join(text.split())


@dataclass
class Sequence:
    name: str
    frames: list[Path] | None  # one image path per ground-truth row, in order; None: annotations only
    # (load_benchmark(..., frames=False), what scoring reads)
    boxes: np.ndarray  # (N, 4) float64, x, y, w, h exactly as in the ground-truth file
    description: str  # the sentence as written in the file
    dataset: str  # tag the metrics key on ('lasot', 'lasot_extension_subset', 'tnl2k', 'otb', ...)
    visible: np.ndarray | None = None  # (N,) bool where the dataset gives visibility, else None
    attributes: dict | None = None
    drift: np.ndarray | None = None  # synthetic only: (N,) bool, True where the sentence no longer fits
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The cleaned description (what the language encoder sees)."""
        return clean_text(self.description)

    def __len__(self) -> int:
        return len(self.boxes)  # one row per frame (frames may be None: annotations only)

    def __repr__(self) -> str:
        return f"Sequence({self.name!r}, {self.dataset!r}, {len(self)} frames, {self.description[:40]!r})"


def truncate(seq: Sequence, n: int | None) -> Sequence:
    """The first n frames of a sequence (a `--max-frames` run is tracked and scored on these only)."""
    if n is None or n >= len(seq):
        return seq
    cut = lambda a: None if a is None else a[:n]
    return dataclasses.replace(seq, frames=cut(seq.frames), boxes=seq.boxes[:n], visible=cut(seq.visible),
                               drift=cut(seq.drift))
