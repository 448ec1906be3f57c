"""`load_benchmark` and the one table of benchmark names: the real ones, the synthetic suites
and the drift-sweep levels.

Each dataset's layout lives in its own reader module (lasot.py, tnl2k.py, otb.py,
refcoco.py); this module maps a name to a reader and a folder. The synthetic suites
(written by dmtrack.data.synthetic in the real layouts) are read back by the same readers.
See docs/datasets.md for the layouts.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from . import lasot, otb, refcoco, tnl2k
from .sequence import DATA_ENV, DEFAULT_SUBDIRS, Sequence, data_root, dataset_root, root_env

# How reports and printed tables call the synthetic suites, always (never "the benchmark").
STAND_IN = "synthetic stand-in"

# name -> what it is (the CLI lists these)
BENCHMARKS = {
    "lasot": "LaSOT test (280 videos, split from the toolkit's testing_set.txt) or train",
    "lasot_ext": "LaSOT extension subset (150 videos, all test)",
    "tnl2k": "TNL2K test (700 videos) or train (1,300)",
    "otb_lang": "OTB99-Lang test (48 videos) or train (51)",
    "refcocog": "RefCOCOg google split, one-frame sequence per referring expression (train/val)",
    "synthetic_train": "synthetic training split (LaSOT layout, <root>/train)",
    "synthetic_lasot": f"{STAND_IN} for LaSOT (<root>/lasot)",
    "synthetic_lasot_ext": f"{STAND_IN} for LaSOT_ext, unseen classes (<root>/lasot_ext)",
    "synthetic_tnl2k": f"{STAND_IN} for TNL2K (<root>/tnl2k)",
    "synthetic_otb_lang": f"{STAND_IN} for OTB-Lang (<root>/otb_lang)",
}  # plus synthetic_drift_<level> (e.g. synthetic_drift_0.50): the drift sweep, LaSOT layout at <root>/drift/<level>

# The official test sets: (sequences, frames = ground-truth rows), what a full run scores. Counted
# on the toolkits' annotations (LaSOT: LaSOT_Evaluation_Toolkit annos; TNL2K: TNL2K_evaluation_toolkit
# annos; OTB-Lang: the OTB-100 annotations of the 48 test videos). No frame count is known to the
# project for LaSOT_ext (None): its sequences are checked, its frames only shown.
OFFICIAL_SIZE = {"lasot": (280, 685_360), "lasot_ext": (150, None), "tnl2k": (700, 516_038), "otb_lang": (48, 29_077)}

# synthetic benchmark -> (folder under the synthetic root, layout)
SUITES = {
    "synthetic_train": ("train", "lasot"),
    "synthetic_lasot": ("lasot", "lasot"),
    "synthetic_lasot_ext": ("lasot_ext", "lasot"),
    "synthetic_tnl2k": ("tnl2k", "tnl2k"),
    "synthetic_otb_lang": ("otb_lang", "otb_lang"),
}
SYNTHETIC_TEST_SUITES = ("synthetic_lasot", "synthetic_lasot_ext", "synthetic_tnl2k", "synthetic_otb_lang")
_DRIFT = "synthetic_drift_"


def synthetic_name(bench: str, synthetic: bool = True) -> str:
    """The loader name of one of the paper's benchmarks in a chain: 'lasot' -> 'synthetic_lasot' on synthetic data."""
    return f"synthetic_{bench}" if synthetic and not bench.startswith("synthetic") else bench


def level_tag(level: float) -> str:
    """Folder / benchmark suffix of a drift level: 0.5 -> '0.50'."""
    return f"{float(level):.2f}"


def drift_benchmark(level: float) -> str:
    """The benchmark name of one drift-sweep level: 0.5 -> 'synthetic_drift_0.50'."""
    return f"{_DRIFT}{level_tag(level)}"


def drift_folder(level) -> str:
    """The drift level's folder under the synthetic root: 0.5 -> 'drift/0.50'."""
    return f"drift/{level_tag(level)}"


def drift_level(name: str) -> str | None:
    """'0.50' for 'synthetic_drift_0.5' (the folder name the synthetic generator uses), else None."""
    if not name.startswith(_DRIFT):
        return None
    try:
        return level_tag(float(name[len(_DRIFT):]))
    except ValueError:
        return None


def suite_location(name: str) -> tuple[str, str]:
    """(folder relative to the synthetic root, layout) of a synthetic benchmark name.

    'synthetic_lasot' -> ('lasot', 'lasot'); 'synthetic_drift_0.50' -> ('drift/0.50', 'lasot')."""
    if name in SUITES:
        return SUITES[name]
    level = drift_level(name)
    if level is not None:
        return drift_folder(level), "lasot"
    raise KeyError(f"unknown synthetic benchmark {name!r}; known: {', '.join(SUITES)}, {_DRIFT}<level>")


def data_environment(cwd=None) -> dict[str, str]:
    """Every DMTRACK_* path the readers use, made absolute against `cwd` (default: the working
    directory): DMTRACK_DATA (its default `data` included) and, where set, DMTRACK_<NAME>_ROOT
    and DMTRACK_LASOT_SPLIT. The report sets these before its notebooks start: papermill runs
    them in notebooks/, where a relative root would name another folder."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    absolute = lambda p: str(base / Path(p).expanduser())  # an absolute p replaces base
    env = {DATA_ENV: absolute(data_root())}
    for var in [root_env(name) for name in DEFAULT_SUBDIRS] + [lasot.SPLIT_ENV]:
        if os.environ.get(var):
            env[var] = absolute(os.environ[var])
    return env


def load_benchmark(name: str, root: str | os.PathLike | None = None, split: str | None = None,
                   allow_empty_text: bool = False, progress: bool | None = None,
                   custom_split: bool = False, frames: bool = True) -> list[Sequence]:
    """The sequences of benchmark `name` (a key of BENCHMARKS, or synthetic_drift_<level>): sorted by
    name for the video benchmarks, in the refs file's order for refcocog.

    root: the dataset's folder; default `dataset_root(name)` ($DMTRACK_DATA/<folder>, or
        $DMTRACK_<NAME>_ROOT). For synthetic_* it is the folder holding train/, lasot/, ...
    split: "test" or "train" ("val" for refcocog); None = the benchmark's usual split
        (test, but train for refcocog). The synthetic suites' split is fixed by their name.
    allow_empty_text: an empty description file is an error by default (TNL2K's
        Fight_video_6-Done shipped one); True loads it as "" with a warning.
    progress: tqdm bar over sequences (None = only on a terminal).
    custom_split: lasot only: accept a split file other than the official 280 test names (the
        same as DMTRACK_LASOT_SPLIT_CHECK=0); by default that is an error (see lasot.py).
    frames: list every sequence's frame images (a missing one is an error here, before any
        tracking or training starts). False reads the annotations only (boxes, flags,
        sentences; Sequence.frames is None): what scoring needs, and on the LaSOT test set
        (685k frames) listing the frames is most of the cost of a full load.
    """
    if name not in BENCHMARKS and drift_level(name) is None:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}, {_DRIFT}<level>")
    root = Path(root) if root is not None else dataset_root(name)
    # Annotations only (scoring) never reads a sentence: an empty one (TNL2K's Fight_video_6-Done) is
    # loaded as "" without a word; tracking and training still refuse it unless allowed.
    opts = dict(allow_empty_text=allow_empty_text or not frames, progress=progress, frames=frames)
    with warnings.catch_warnings():
        if not frames:
            warnings.filterwarnings("ignore", message=".*empty description")
        seqs = _load(name, root, split, custom_split, opts)
    for s in seqs:
        s.extra["benchmark"] = name
    return seqs


def _load(name: str, root: Path, split: str | None, custom_split: bool, opts: dict) -> list[Sequence]:
    if name == "lasot":
        seqs = lasot.load(root, split or "test", tag="lasot", split_mode="custom" if custom_split else "official",
                          **opts)
    elif name == "lasot_ext":
        seqs = lasot.load(root, split or "test", tag="lasot_extension_subset", split_mode="all_test", **opts)
    elif name == "tnl2k":
        seqs = tnl2k.load(root, split or "test", **opts)
    elif name == "otb_lang":
        seqs = otb.load(root, split or "test", **opts)
    elif name == "refcocog":
        seqs = refcoco.load(root, split or "train", **opts)
    else:
        seqs = _load_synthetic(name, root, opts)
    return seqs


def _load_synthetic(name: str, root: Path, opts: dict) -> list[Sequence]:
    folder, layout = suite_location(name)
    path = root / folder
    if name == "synthetic_train":
        return lasot.load(path, "train", tag="lasot", split_mode="all_train", **opts)
    if name == "synthetic_lasot_ext":
        return lasot.load(path, "test", tag="lasot_extension_subset", split_mode="all_test", **opts)
    if layout == "lasot":  # synthetic_lasot and the drift levels carry their own split file
        return lasot.load(path, "test", tag="lasot", split_file=path / "testing_set.txt", **opts)
    if layout == "tnl2k":
        return tnl2k.load(path, "test", **opts)
    return otb.load(path, "test", real_quirks=False, **opts)  # none of real OTB's per-video start frames
