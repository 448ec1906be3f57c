"""One experiment per profile, in one place: `get("demo")` is the demo profile's model config overrides
(dmtrack.config), its synthetic preset (dmtrack.data.synthetic, None on the real datasets) and its chain
settings (dmtrack.chain.plan.ChainSettings), as plain values. paper.py defines every chain setting; demo.py
shrinks paper in place and smoke.py shrinks demo (big_vision's get_config / runlocal style).

    exp = get("smoke")     # {"model": {...}, "synthetic": {...}, "scratch": {...}, "readings": {...}, "chain": {...}}

A leaf: it imports nothing from dmtrack, so config, data and chain may all read it.
"""
from __future__ import annotations

import copy
import importlib

PROFILES = ("smoke", "demo", "paper")


def get(profile: str) -> dict:
    """A fresh copy of `profile`'s experiment (editing it changes nothing else)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    return copy.deepcopy(importlib.import_module(f"{__name__}.{profile}").get_config())


def suite(n_seq: int, length: tuple, distractors: tuple, twins: tuple, occluders: tuple, **more) -> dict:
    """One synthetic suite (dmtrack.data.synthetic.SuiteSpec): sequences, their (min, max) frames, non-twin
    distractors, pixel-identical twins and occluder bars (wrap, ext_classes as keywords)."""
    return dict(n_seq=n_seq, length=length, distractors=distractors, twins=twins, occluders=occluders, **more)
