"""Sequence-name aliases shared by the readers and the metrics.

OTB has three videos with several annotated targets, and every codebase spells their
sequences differently (formats_metrics.md §4, §7):

    MMTrack (ours)   pytracking   got10k       JointNLT
    Jogging-1        Jogging_1    Jogging.1    Jogging1
    Skating2-1       Skating2_1   Skating2.1   -
    Human4           Human4_2     -            -

`canonical_name` maps every spelling to the MMTrack one, which is what our OTB reader
names its sequences, so raw results from any of these codebases can be matched to the
ground truth. Names of other sequences are returned unchanged: the rule is deliberately
limited to the known multi-target videos, because elsewhere '-' and '_' are part of real
names (LaSOT 'airplane-1', TNL2K 'BF5_Blade_video_01-Done').
"""
from __future__ import annotations

import re

# video folder -> the targets annotated in it (groundtruth_rect.<k>.txt)
MULTI_TARGET = {"Jogging": (1, 2), "Skating2": (1, 2), "Human4": (2,)}
# Human4's .1 file is empty in OTB, so it is one sequence, named without the suffix
SINGLE_NAMED = {"Human4"}

_ALIAS = re.compile(r"^(jogging|skating2|human4)(?:[-_.]?([12]))?$", re.IGNORECASE)
_BASES = {b.lower(): b for b in MULTI_TARGET}


def split_target(name: str) -> tuple[str, int | None]:
    """('Jogging', 1) for any spelling of Jogging-1; (name, None) for single-target names.

    Human4 in any spelling gives ('Human4', 2). A bare 'Jogging' or 'Skating2' (which
    target?) gives (name, None) and is left to the caller to reject.
    """
    m = _ALIAS.match(name)
    if not m:
        return name, None
    base, k = _BASES[m.group(1).lower()], m.group(2)
    if base in SINGLE_NAMED:
        if k is None or int(k) in MULTI_TARGET[base]:
            return base, MULTI_TARGET[base][0]
        return name, None
    if k is None or int(k) not in MULTI_TARGET[base]:
        return name, None
    # Skating2 + digit without separator would read as "Skating21"; nobody writes that
    if base == "Skating2" and name[len(base):len(base) + 1] not in "-_.":
        return name, None
    return base, int(k)


def canonical_name(name: str) -> str:
    """The one spelling of a sequence name: MMTrack's for OTB's multi-target videos.

    canonical_name('Jogging_1') == canonical_name('Jogging.1') == canonical_name('Jogging1')
    == 'Jogging-1'; canonical_name('Human4_2') == 'Human4'; other names are unchanged.
    """
    base, k = split_target(name)
    if k is None:
        return name
    return base if base in SINGLE_NAMED else f"{base}-{k}"
