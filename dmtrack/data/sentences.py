"""The sentences of the language-robustness test: the same videos tracked under another sentence.

    seqs = with_sentence(load_benchmark("synthetic_lasot"), "misleading")

true: the benchmark's own sentence; misleading: one that describes a distractor; uninformative: the
class word alone. The synthetic benchmark carries them as nlp_misleading.txt / nlp_uninformative.txt in
each sequence folder (dmtrack.data.synthetic: a twin, the other half and its motion). On real LaSOT the
misleading sentence is that of the next loaded sequence of the same class (name order, wrapping round:
the same kind of object, described in another video; a class loaded alone takes the next class's, with a
warning) and the uninformative one the class name. The other
real benchmarks name no class, so they are refused.
"""
from __future__ import annotations

import dataclasses
import re
import warnings

from ..layout import SENTENCE_TAGS
from .files import DatasetError, read_text
from .synthetic import SENTENCE_FILES

SENTENCES = tuple(SENTENCE_TAGS)  # true, misleading, uninformative


def _number(name: str) -> int:
    m = re.search(r"-(\d+)$", name)
    return int(m.group(1)) if m else 0


def lasot_sentences(seqs, kind: str) -> dict[str, str]:
    """{sequence name: its `kind` sentence} for LaSOT-layout sequences (Sequence.extra['class'])."""
    if kind == "uninformative":
        return {s.name: s.extra["class"] for s in seqs}
    by_class: dict[str, list] = {}
    for s in sorted(seqs, key=lambda s: (s.extra["class"], _number(s.name), s.name)):
        by_class.setdefault(s.extra["class"], []).append(s)
    out, order = {}, [s for members in by_class.values() for s in members]
    for cls, members in by_class.items():
        if len(members) < 2 and len(order) > 1:  # a subset of the test set: another class's sentence still misleads
            nxt = order[(order.index(members[0]) + 1) % len(order)]
            warnings.warn(f"class {cls!r}: only {members[0].name} is loaded; its misleading sentence is that of "
                          f"{nxt.name}, another class")
            out[members[0].name] = nxt.description
            continue
        if len(members) < 2:
            raise ValueError(f"{members[0].name}: the only sequence loaded, so no other sequence can give it a "
                             f"misleading sentence")
        for i, s in enumerate(members):
            out[s.name] = members[(i + 1) % len(members)].description
    return out


def _synthetic_sentence(seq, kind: str) -> str:
    path = seq.extra["path"] / SENTENCE_FILES[kind]
    if not path.is_file():
        raise DatasetError(f"{path}: missing; data generated before the robustness test lack it: rerun "
                           f"`dmtrack data` with the same arguments (it keeps the frames and adds these files)")
    return read_text(path, "sentence file").strip()


def with_sentence(seqs, kind: str) -> list:
    """`seqs` with their descriptions replaced by the `kind` sentence (SENTENCES; "true" keeps them)."""
    if kind not in SENTENCES:
        raise ValueError(f"sentence must be one of {', '.join(SENTENCES)}, got {kind!r}")
    if kind == "true" or not seqs:
        return list(seqs)
    synthetic = [s for s in seqs if str(s.extra.get("benchmark", "")).startswith("synthetic_")]
    if synthetic:
        text = {s.name: _synthetic_sentence(s, kind) for s in seqs}
    elif all("class" in s.extra for s in seqs):
        text = lasot_sentences(seqs, kind)
    else:
        bench = seqs[0].extra.get("benchmark", seqs[0].dataset)
        raise ValueError(f"{bench}: a {kind} sentence needs the object class (LaSOT) or the synthetic data's "
                         f"sentence files; this benchmark has neither")
    return [dataclasses.replace(s, description=text[s.name]) for s in seqs]
