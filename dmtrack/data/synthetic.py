"""A synthetic visual-language tracking benchmark ("synthetic stand-ins" for the real ones).

Procedurally rendered videos (numpy + OpenCV): textured shapes of several classes and
colours move over a panning textured background, with distractors, occluder bars, targets
that leave the view, scale, rotation and brightness change. Each sequence has one English
sentence ("the red star on the left moving up") that describes the target in frame 1.

The design that lets the study tell VL-tracker variants apart:
- A target moves along one axis ("moving up") inside one half of the image ("on the left").
  Its *twins* (same class, colour, texture, size, rotation: pixel-identical sprites) move in
  the other half, so only the sentence (position, often also motion) tells them apart.
- A drift knob: from frame round(drift * N) on (never before frame 2) the sentence stops
  fitting: the target changes colour, reverses its direction, or swaps halves with a twin.
  The per-frame flag is saved as `drift.txt` (one 0/1 per line) in every sequence folder.
- Targets travel far (wrap-around through a margin outside the view, which also gives
  out-of-view frames), so the `static` tracker scores low.

Everything is written in the real on-disk layouts and read back by `load_benchmark`:
    <out>/train        LaSOT layout, all sequences for training    -> synthetic_train
    <out>/lasot        LaSOT layout + testing_set.txt               -> synthetic_lasot
    <out>/lasot_ext    LaSOT layout, classes unseen in training     -> synthetic_lasot_ext
    <out>/tnl2k/test   TNL2K layout, 0-based boxes, more twins      -> synthetic_tnl2k
    <out>/otb_lang     OTB-Lang layout, short sequences             -> synthetic_otb_lang
    <out>/drift/<L>    LaSOT layout, drift sweep at level L ("0.50") -> synthetic_drift_<L>
Same seed -> byte-identical files (the manifest holds no times or paths).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm
from dmtrack import experiments
from dmtrack.io import atomic_write_text

from . import lasot
from .benchmarks import (STAND_IN, drift_benchmark, drift_folder, level_tag, suite_location,
                         synthetic_name)

GENERATOR_VERSION = 1

TRAIN_CLASSES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
EXT_CLASSES = ("heart", "crescent", "arrow", "pentagon")  # never seen in training (LaSOT_ext stand-in)
COLOURS = {  # RGB
    "red": (215, 35, 35), "green": (40, 175, 55), "blue": (35, 75, 225), "yellow": (235, 215, 35),
    "purple": (145, 55, 190), "orange": (245, 135, 25), "white": (240, 240, 240), "cyan": (35, 200, 215),
}
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "up": "down", "down": "up"}
POS_PHRASES = {
    "left": ("on the left", "in the left half"), "right": ("on the right", "in the right half"),
    "top": ("at the top", "in the upper half"), "bottom": ("at the bottom", "in the lower half"),
}
DIR_PHRASES = {
    "up": ("moving up", "going upwards", "heading up"), "down": ("moving down", "going downwards", "heading down"),
    "left": ("moving left", "going to the left", "heading left"), "right": ("moving right", "going to the right", "heading right"),
}
TEMPLATES = ("the {colour} {cls} {pos} {dir}", "{colour} {cls} {pos}, {dir}", "the {colour} {cls} {dir} {pos}")
DRIFT_MODES = ("colour", "direction", "swap")
SPRITE, RADIUS = 64, 30  # sprites are drawn once at 64x64 (shape radius 30) and warped per frame


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class SuiteSpec:
    n_seq: int
    length: tuple  # (min, max) frames
    distractors: tuple  # (min, max) non-twin distractors
    twins: tuple  # (min, max) pixel-identical twins of the target
    occluders: tuple  # (min, max) occluder bars
    wrap: float = 0.5  # share of sequences whose target wraps around through a margin outside the view
    # (and so leaves it); the others cross the view once without leaving it
    ext_classes: bool = False


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    size: tuple  # target diameter range at frame 1 (px)
    speed: tuple  # px per frame along the motion axis
    quality: int  # JPEG quality
    suites: dict = field(default_factory=dict)
    sweep_levels: tuple = ()
    sweep: SuiteSpec | None = None


def _preset(d: dict) -> Preset:
    """A Preset from an experiment's plain "synthetic" values (dmtrack/experiments/)."""
    return Preset(**dict(d, suites={k: SuiteSpec(**v) for k, v in d["suites"].items()}, sweep=SuiteSpec(**d["sweep"])))


# the synthetic profiles' presets, defined with the rest of each experiment in dmtrack/experiments/
PRESETS = {p: _preset(exp["synthetic"]) for p in ("smoke", "demo") for exp in [experiments.get(p)]}


def preset_fingerprint(preset: str) -> str:
    """Short hash of a preset's definition: data made from an edited preset is never taken for current."""
    return hashlib.sha256(json.dumps(asdict(PRESETS[preset]), sort_keys=True).encode()).hexdigest()[:12]


_SUITE_IDS = {"train": 1, "lasot": 2, "lasot_ext": 3, "tnl2k": 4, "otb_lang": 5, "sweep": 6}


# ----------------------------------------------------------------------------- sprites
def _poly(n, r, phase=-math.pi / 2, inner=None):
    """Regular n-gon (or 2n-point star when `inner` is given) around the sprite centre."""
    pts = []
    k = 2 * n if inner else n
    for i in range(k):
        a = phase + 2 * math.pi * i / k
        rr = inner if inner and i % 2 else r
        pts.append((SPRITE / 2 + rr * math.cos(a), SPRITE / 2 + rr * math.sin(a)))
    return np.array(pts)


def shape_mask(cls: str) -> np.ndarray:
    """SPRITE x SPRITE uint8 mask (0/255) of a class's shape, radius RADIUS around the centre."""
    m = np.zeros((SPRITE, SPRITE), np.uint8)
    c, R = SPRITE // 2, RADIUS

    def fill(pts):
        cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)

    if cls == "circle":
        cv2.circle(m, (c, c), R, 255, -1)
    elif cls == "ring":
        cv2.circle(m, (c, c), R, 255, -1)
        cv2.circle(m, (c, c), int(R * 0.55), 0, -1)
    elif cls == "square":
        fill(_poly(4, R * 1.2, phase=math.pi / 4))
    elif cls == "triangle":
        fill(_poly(3, R))
    elif cls == "star":
        fill(_poly(5, R, inner=R * 0.45))
    elif cls == "cross":
        t = int(R * 0.38)
        cv2.rectangle(m, (c - R, c - t), (c + R, c + t), 255, -1)
        cv2.rectangle(m, (c - t, c - R), (c + t, c + R), 255, -1)
    elif cls == "diamond":
        fill(_poly(4, R) * np.array([0.65, 1.0]) + np.array([SPRITE / 2 * 0.35, 0]))
    elif cls == "hexagon":
        fill(_poly(6, R, phase=0))
    elif cls == "pentagon":
        fill(_poly(5, R))
    elif cls == "heart":
        s = np.linspace(0, 2 * math.pi, 80)
        x, y = 16 * np.sin(s) ** 3, -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))
        fill(np.stack([c + x * R / 17, c + 2 + y * R / 17], 1))
    elif cls == "crescent":
        cv2.circle(m, (c, c), R, 255, -1)
        cv2.circle(m, (c + int(R * 0.5), c - int(R * 0.15)), int(R * 0.85), 0, -1)
    elif cls == "arrow":
        fill(np.array([(c - R, c - 9), (c + 2, c - 9), (c + 2, c - R), (c + R, c), (c + 2, c + R), (c + 2, c + 9), (c - R, c + 9)], float))
    else:
        raise KeyError(f"unknown shape class {cls!r}")
    return m


def texture(rng: np.random.Generator) -> np.ndarray:
    """SPRITE x SPRITE float32 pattern in [0, 1]: stripes, checks or dots in object coordinates."""
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    kind, period, ang = rng.integers(3), rng.uniform(7, 14), rng.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    if kind == 0:
        p = 0.5 + 0.5 * np.sin(2 * math.pi * u / period)
    elif kind == 1:
        p = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:
        p = np.clip(1.5 - np.hypot((u % period) - period / 2, (v % period) - period / 2) / (period / 4), 0, 1)
    return p.astype(np.float32)


# ----------------------------------------------------------------------------- scenes
@dataclass
class Obj:
    cls: str
    colour: str
    pattern: np.ndarray  # SPRITE x SPRITE texture in [0, 1]
    size: float  # diameter (px) at frame 1
    scale_amp: float
    scale_w: float
    scale_ph: float
    rot0: float
    rot_w: float
    bright_w: float
    bright_ph: float
    kind: str  # target | twin | distractor
    # lane motion (target, twins): along `axis` (0 = x, 1 = y), in a lane of the other coordinate
    axis: int = 1
    c0: float = 0.0
    v: float = 0.0
    lane0: float = 0.0
    lane1: float = 0.0
    wob_a: float = 0.0
    wob_w: float = 0.0
    wob_ph: float = 0.0
    # free motion (other distractors): bounce inside the view
    p0: tuple = (0.0, 0.0)
    vel: tuple = (0.0, 0.0)
    z: int = 0
    colour_after: str | None = None  # drift "colour": colour from t_drift on
    mask: np.ndarray | None = None  # SPRITE x SPRITE alpha in [0, 1]


@dataclass
class Scene:
    width: int
    height: int
    length: int
    background: np.ndarray  # (H + 2P, W + 2P, 3) float32 canvas, the view pans over it
    pan: tuple  # (amp_x, amp_y, w, ph)
    objects: list  # Obj, drawn in z order
    occluders: list  # (x1, y1, x2, y2, patch float32 HxWx3)
    wrap: bool
    margin: float  # wrap margin outside the view along the motion axis
    sentence: str
    cls: str
    colour: str
    pos: str
    direction: str
    drift_mode: str
    t_drift: int | None  # first frame index (0-based) where the sentence no longer fits
    swap_frames: int = 15


def _tri(x, L):
    """Bounce x into [0, L] (triangle wave)."""
    x = x % (2 * L)
    return 2 * L - x if x > L else x


def position(scene: Scene, o: Obj, t: int) -> tuple[float, float]:
    """Centre (x, y) in pixels of object `o` at frame t (0-based)."""
    W, H, td = scene.width, scene.height, scene.t_drift
    if o.kind == "distractor":
        r = o.size / 2
        return (r + _tri(o.p0[0] - r + o.vel[0] * t, W - 2 * r), r + _tri(o.p0[1] - r + o.vel[1] * t, H - 2 * r))
    L = (W, H)[o.axis]
    d = o.v * t
    if td is not None and scene.drift_mode == "direction" and o.kind == "target" and t >= td:
        d = o.v * td - o.v * (t - td)
    c = o.c0 + d
    if scene.wrap:
        c = (c + scene.margin) % (L + 2 * scene.margin) - scene.margin
    else:
        r = o.size / 2
        c = r + _tri(c - r, L - 2 * r)
    lane = o.lane0
    if td is not None and scene.drift_mode == "swap" and t >= td:
        lane = o.lane0 + (o.lane1 - o.lane0) * min(1.0, (t - td + 1) / scene.swap_frames)
    lane += o.wob_a * math.sin(o.wob_w * t + o.wob_ph)
    return (lane, c) if o.axis == 1 else (c, lane)


def _warp(o: Obj, colour: str, cx, cy, t, W, H):
    """Warp the sprite into the frame, computed only on its region of interest:
    (x1, y1, rgb float32 hxwx3, alpha float32 hxw), or None when it is outside the frame."""
    s = o.size * (1 + o.scale_amp * math.sin(o.scale_w * t + o.scale_ph))
    r = int(math.ceil(s * SPRITE / (2 * RADIUS) * 0.75)) + 2  # covers the rotated sprite
    x1, y1 = max(0, int(cx) - r), max(0, int(cy) - r)
    x2, y2 = min(W, int(cx) + r + 1), min(H, int(cy) + r + 1)
    if x2 <= x1 or y2 <= y1:
        return None
    M = cv2.getRotationMatrix2D((SPRITE / 2 - 0.5, SPRITE / 2 - 0.5), math.degrees(o.rot0 + o.rot_w * t), s / (2 * RADIUS))
    M[0, 2] += cx - SPRITE / 2 + 0.5 - x1
    M[1, 2] += cy - SPRITE / 2 + 0.5 - y1
    bright = 1 + 0.15 * math.sin(o.bright_w * t + o.bright_ph)
    rgb = np.asarray(COLOURS[colour], np.float32) * (0.55 + 0.45 * o.pattern[..., None]) * bright
    rgba = np.concatenate([np.clip(rgb, 0, 255), o.mask[..., None]], 2)
    out = cv2.warpAffine(rgba, M, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return x1, y1, out[..., :3], out[..., 3]


def render(scene: Scene, t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Frame t as (RGB uint8 HxWx3, target alpha float32 HxW, visible fraction of the target)."""
    W, H = scene.width, scene.height
    P = (scene.background.shape[1] - W) // 2
    ax, ay, w, ph = scene.pan
    ox, oy = int(round(P + ax * math.sin(w * t + ph))), int(round(P + ay * math.cos(w * t + ph)))
    img = scene.background[oy:oy + H, ox:ox + W].copy()
    target_a, cover = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    seen_target = False
    for o in scene.objects:
        colour = o.colour_after if (o.colour_after and scene.t_drift is not None and t >= scene.t_drift) else o.colour
        warped = _warp(o, colour, *position(scene, o, t), t, W, H)
        seen_target |= o.kind == "target"
        if warped is None:
            continue
        x1, y1, rgb, a = warped
        y2, x2 = y1 + a.shape[0], x1 + a.shape[1]
        roi = img[y1:y2, x1:x2]
        roi += a[..., None] * (rgb - roi)
        if o.kind == "target":
            target_a[y1:y2, x1:x2] = a
        elif seen_target:  # drawn over the target
            np.maximum(cover[y1:y2, x1:x2], a, out=cover[y1:y2, x1:x2])
    for x1, y1, x2, y2, patch in scene.occluders:
        img[y1:y2, x1:x2] = patch
        cover[y1:y2, x1:x2] = 1.0
    core = target_a > 0.5
    vis = float((core & (cover < 0.5)).sum()) / max(1, int(core.sum()))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), target_a, vis


def _background(rng, W, H, P):
    """Smooth, muted, cluttered canvas (float32) so that the view can pan over it."""
    h, w = H + 2 * P, W + 2 * P
    base = cv2.resize(rng.uniform(50, 200, (4, 5, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(6, 12)):  # muted blobs as clutter
        col = (0.5 * rng.uniform(40, 220, 3) + 0.5 * base.mean()).tolist()
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(w // 20, w // 6)), int(rng.integers(h // 20, h // 6)))
        cv2.ellipse(base, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1)
    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    grain = cv2.resize(rng.normal(0, 6, (h // 4, w // 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    grey = base.mean(2, keepdims=True)
    return np.clip(0.55 * base + 0.45 * grey + grain, 0, 255).astype(np.float32)


def _sentence(rng, colour, cls, pos, direction):
    tpl = TEMPLATES[rng.integers(len(TEMPLATES))]
    return tpl.format(colour=colour, cls=cls, pos=POS_PHRASES[pos][rng.integers(2)], dir=DIR_PHRASES[direction][rng.integers(3)])


# The language-robustness test's other sentences (dmtrack.data.sentences). Worded from the scene's facts
# with the first phrase of each kind and no random draw, so adding them leaves every frame unchanged.
SENTENCE_FILES = {"misleading": "nlp_misleading.txt", "uninformative": "nlp_uninformative.txt"}


def _moving(o: Obj) -> str:
    """The direction a lane object starts moving in."""
    return (("left", "right") if o.axis == 0 else ("up", "down"))[int(o.v > 0)]


def _half(scene: Scene, xy: tuple) -> str:
    """The half of the view (on the target's position axis) that the point (x, y) lies in."""
    if scene.pos in ("left", "right"):
        return "left" if xy[0] < scene.width / 2 else "right"
    return "top" if xy[1] < scene.height / 2 else "bottom"


def misleading_sentence(scene: Scene) -> str:
    """A sentence that describes a distractor instead of the target: the first twin (same looks, the
    other half, its own motion); without twins the first other distractor (its class, colour and half
    in frame 1); without any, an object that is not there (the target's looks, other half and motion)."""
    twin = next((o for o in scene.objects if o.kind == "twin"), None)
    if twin is not None:
        return f"the {scene.colour} {scene.cls} {POS_PHRASES[OPPOSITE[scene.pos]][0]} {DIR_PHRASES[_moving(twin)][0]}"
    other = next((o for o in scene.objects if o.kind == "distractor"), None)
    if other is not None:
        return f"the {other.colour} {other.cls} {POS_PHRASES[_half(scene, position(scene, other, 0))][0]}"
    return (f"the {scene.colour} {scene.cls} {POS_PHRASES[OPPOSITE[scene.pos]][0]} "
            f"{DIR_PHRASES[OPPOSITE[scene.direction]][0]}")


def uninformative_sentence(scene: Scene) -> str:
    """The class word alone: it fits the target and every twin and same-class distractor."""
    return f"the {scene.cls}"


def _twins(rng, spec, target, near, lane_lo, lane_hi, wrap, L, Lp, smax) -> list:
    """Twins: pixel-identical sprites in the other half; half of them move the other way."""
    twins = []
    for _ in range(rng.integers(spec.twins[0], spec.twins[1] + 1)):
        tw = replace(target, kind="twin")
        tw.mask = target.mask
        tw.lane0 = Lp - rng.uniform(lane_lo, max(lane_lo, lane_hi)) if near else rng.uniform(lane_lo, max(lane_lo, lane_hi))
        tw.lane1 = target.lane0
        tw.c0 = rng.uniform(smax, L - smax) if wrap else target.c0
        tw.v = target.v * (1 if rng.random() < 0.5 else -1) * rng.uniform(0.8, 1.2)
        if not wrap and tw.v * target.v < 0:
            tw.c0 = L - target.c0
        tw.wob_ph = rng.uniform(0, 2 * math.pi)
        twins.append(tw)
    return twins


def _distractors(rng, preset, spec, classes, names, cls, colour, target, size, smax, sprite_obj) -> list:
    """Other distractors: same class other colour, other class same colour, or anything else
    except the target's (class, colour), so the sentence singles out target + twins."""
    W, H, axis = preset.width, preset.height, target.axis
    t0 = (target.c0, target.lane0) if axis == 0 else (target.lane0, target.c0)
    others = []
    for _ in range(rng.integers(spec.distractors[0], spec.distractors[1] + 1)):
        kind = rng.integers(3)
        c = cls if kind == 0 else classes[rng.integers(len(classes))]
        col = colour if kind == 1 else names[rng.integers(len(names))]
        while (c, col) == (cls, colour):
            col = names[rng.integers(len(names))]
        d = sprite_obj(c, col, "distractor", sz=size * rng.uniform(0.8, 1.2))
        for _ in range(50):  # not on top of the target in frame 1
            p0 = (rng.uniform(d.size / 2, W - d.size / 2), rng.uniform(d.size / 2, H - d.size / 2))
            if math.hypot(p0[0] - t0[0], p0[1] - t0[1]) > 0.7 * (smax + d.size * 1.25):
                break
        d.p0 = p0
        ang, sp = rng.uniform(0, 2 * math.pi), rng.uniform(*preset.speed)
        d.vel = (sp * math.cos(ang), sp * math.sin(ang))
        others.append(d)
    return others


def _occluders(rng, spec, target, W, H, L, Lp, smax) -> list:
    """Occluder bars across the target's lane, orthogonal to its motion, away from its start."""
    axis = target.axis
    occluders = []
    for _ in range(rng.integers(spec.occluders[0], spec.occluders[1] + 1)):
        thick = int(rng.uniform(0.6, 1.2) * smax)  # often thinner than the target: partial occlusion
        span = int(rng.uniform(1.5, 3.0) * smax)
        for _ in range(50):
            c = rng.uniform(thick / 2, L - thick / 2)
            if abs(c - target.c0) > (thick + smax) / 2 + 2:
                break
        a1, a2 = int(c - thick / 2), int(c + thick / 2)
        l1 = int(np.clip(target.lane0 - span / 2, 0, Lp - 1))
        l2 = int(np.clip(target.lane0 + span / 2, l1 + 1, Lp))
        x1, y1, x2, y2 = (a1, l1, a2, l2) if axis == 0 else (l1, a1, l2, a2)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(W, x2), min(H, y2)
        base = rng.uniform(70, 170) + rng.uniform(-25, 25, 3)
        noise = cv2.resize(rng.normal(0, 14, (max(1, (y2 - y1) // 3), max(1, (x2 - x1) // 3), 3)).astype(np.float32),
                           (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR).reshape(y2 - y1, x2 - x1, 3)
        occluders.append((x1, y1, x2, y2, np.clip(base + noise, 0, 255).astype(np.float32)))
    return occluders


def make_scene(rng: np.random.Generator, preset: Preset, spec: SuiteSpec, length: int, drift: float | None,
               index: int = 0) -> Scene:
    """Draw one sequence's scene. Every random draw happens whatever `drift` is, so the same
    seed gives the same scene at every drift level (the drift sweep is paired). Classes go
    round-robin over `index`, so every suite covers its classes evenly (as LaSOT does)."""
    W, H = preset.width, preset.height
    classes = EXT_CLASSES if spec.ext_classes else TRAIN_CLASSES
    names = list(COLOURS)
    cls, colour = classes[index % len(classes)], names[rng.integers(len(names))]
    pos = ("left", "right", "top", "bottom")[rng.integers(4)]
    axis = 1 if pos in ("left", "right") else 0  # motion axis is orthogonal to the position axis
    direction = (("up", "down") if axis == 1 else ("left", "right"))[rng.integers(2)]
    L, Lp = (W, H)[axis], (H, W)[axis]  # length of the motion axis, of the lane axis
    size = rng.uniform(*preset.size)
    smax = size * 1.25

    def sprite_obj(c, col, kind, tex=None, sz=None):
        o = Obj(c, col, texture(rng) if tex is None else tex, sz or size, scale_amp=rng.uniform(0.0, 0.22),
                scale_w=rng.uniform(0.01, 0.05), scale_ph=rng.uniform(0, 2 * math.pi), rot0=rng.uniform(0, 2 * math.pi),
                rot_w=rng.uniform(-0.03, 0.03), bright_w=rng.uniform(0.02, 0.08), bright_ph=rng.uniform(0, 2 * math.pi), kind=kind)
        o.mask = shape_mask(c).astype(np.float32) / 255.0
        return o

    # target: lane in its half, travelling along the motion axis
    target = sprite_obj(cls, colour, "target")
    near = pos in ("left", "top")
    lane_lo, lane_hi = 0.12 * Lp + smax / 2, 0.42 * Lp - smax / 4
    target.lane0 = rng.uniform(lane_lo, max(lane_lo, lane_hi))
    if not near:
        target.lane0 = Lp - target.lane0
    speed = rng.uniform(*preset.speed)
    sign = -1.0 if direction in ("up", "left") else 1.0
    wrap = bool(rng.random() < spec.wrap)
    if wrap:
        target.c0 = rng.uniform(smax, L - smax)
    else:  # start on the side it moves away from, and never reach the far edge
        avail = L - 2 * smax
        target.c0 = smax + rng.uniform(0, 0.15) * avail
        speed = min(speed, rng.uniform(0.6, 0.95) * avail / max(1, length))
        if sign < 0:
            target.c0 = L - target.c0
    target.axis, target.v = axis, sign * speed
    target.wob_a, target.wob_w, target.wob_ph = rng.uniform(0, 0.04 * Lp), rng.uniform(0.02, 0.06), rng.uniform(0, 2 * math.pi)
    target.lane1 = Lp - target.lane0

    twins = _twins(rng, spec, target, near, lane_lo, lane_hi, wrap, L, Lp, smax)
    others = _distractors(rng, preset, spec, classes, names, cls, colour, target, size, smax, sprite_obj)
    objects = [target] + twins + others
    z = rng.permutation(len(objects))
    for o, zi in zip(objects, z):
        o.z = int(zi)
    objects.sort(key=lambda o: o.z)

    occluders = _occluders(rng, spec, target, W, H, L, Lp, smax)

    P = int(0.15 * max(W, H))
    background = _background(rng, W, H, P)
    pan = (rng.uniform(0, P * 0.9), rng.uniform(0, P * 0.9), rng.uniform(0.005, 0.02), rng.uniform(0, 2 * math.pi))
    sentence = _sentence(rng, colour, cls, pos, direction)

    # drift: drawn always (pairing across levels), used only when drift < 1
    mode = DRIFT_MODES[rng.integers(3 if twins else 2)]
    new_colour = [c for c in names if c != colour][rng.integers(len(names) - 1)]
    if mode == "colour":
        target.colour_after = new_colour
    t_drift = None
    if drift is not None and drift < 1.0:
        t_drift = int(min(length - 1, max(1, round(drift * length))))
    # just beyond the point where the sprite is fully out: a wrapping target is out of view ~10 % of
    # the time, so ~5 % per suite at wrap=0.5 (LaSOT: 2.6 % absent frames, TNL2K: 8 %)
    margin = 0.5 * smax * 1.1 + rng.uniform(1, 0.25 * smax)
    return Scene(W, H, length, background, pan, objects, occluders, wrap, margin, sentence, cls, colour, pos,
                 direction, mode, t_drift)


# ----------------------------------------------------------------------------- writing
def annotate(alpha: np.ndarray, vis: float, expected_area: float):
    """0-based pixel box (x, y, w, h ints) of the rendered target, out-of-view and full-occlusion flags."""
    ys, xs = np.nonzero(alpha > 0)
    core = float((alpha > 0.5).sum())
    if len(xs) == 0 or core < 0.2 * expected_area:
        return (0, 0, 0, 0), 1, 0
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return box, 0, int(vis < 0.1)


def write_sequence(scene: Scene, layout: str, dest: Path, quality: int) -> dict:
    """Render `scene` and write it at `dest` in `layout` (lasot | tnl2k | otb_lang).

    Written into a temporary sibling folder and renamed, so a folder that exists is complete.
    For otb_lang `dest` is OTB_videos/<Seq>; the query file is written by the caller."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    imgdir = tmp / ("imgs" if layout == "tnl2k" else "img")
    imgdir.mkdir(parents=True)
    fmt = {"lasot": "{:08d}.jpg", "tnl2k": "{:05d}.jpg", "otb_lang": "{:04d}.jpg"}[layout]
    target = next(o for o in scene.objects if o.kind == "target")
    area = float(target.mask.sum()) * (target.size / (2 * RADIUS)) ** 2
    boxes, oov, occ, frames = [], [], [], []
    for t in range(scene.length):
        img, alpha, vis = render(scene, t)
        s = 1 + target.scale_amp * math.sin(target.scale_w * t + target.scale_ph)
        box, o, c = annotate(alpha, vis, area * s * s)
        boxes.append(box), oov.append(o), occ.append(c)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(buf.tobytes())
    drift = [int(scene.t_drift is not None and t >= scene.t_drift) for t in range(scene.length)]
    absent = [max(a, b) for a, b in zip(oov, occ)]
    if layout == "lasot":  # 1-based origin; zero box when out of view, true box when occluded
        rows = [(x + 1, y + 1, w, h) if w else (0, 0, 0, 0) for x, y, w, h in boxes]
        lasot.write_sequence(tmp, rows, scene.sentence + "\n", occ, oov, frames)
    elif layout == "tnl2k":  # 0-based origin; every absent frame has a zero box (as in TNL2K)
        rows = [f"{x},{y},{w},{h}" if (w and not a) else "0,0,0,0" for (x, y, w, h), a in zip(boxes, absent)]
        (tmp / "groundtruth.txt").write_text("\n".join(rows) + "\n")
        (tmp / "language.txt").write_text(scene.sentence)  # one line, no final newline, as many TNL2K files
    elif layout == "otb_lang":  # 1-based origin (MATLAB toolkit)
        rows = [f"{x + 1},{y + 1},{w},{h}" if w else "0,0,0,0" for x, y, w, h in boxes]
        (tmp / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")
    else:
        raise KeyError(f"unknown layout {layout!r}")
    for t, data in enumerate(frames if layout != "lasot" else ()):  # LaSOT's writer wrote its own
        (imgdir / fmt.format(t + 1)).write_bytes(data)
    (tmp / "drift.txt").write_text("\n".join(map(str, drift)) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return scene_meta(scene)


def scene_meta(scene: Scene) -> dict:
    """What the manifest records about one sequence."""
    return dict(sentence=scene.sentence, cls=scene.cls, colour=scene.colour, pos=scene.pos, direction=scene.direction,
                twins=sum(o.kind == "twin" for o in scene.objects), distractors=len(scene.objects) - 1, frames=scene.length,
                drift_mode=scene.drift_mode if scene.t_drift is not None else None, t_drift=scene.t_drift,
                misleading=misleading_sentence(scene), uninformative=uninformative_sentence(scene))


@dataclass(frozen=True)
class Job:
    suite: str  # preset suite key, or "sweep"
    index: int
    layout: str
    dest: str  # sequence folder
    name: str
    seed: int
    drift: float | None
    preset: str


def scene_for(job: Job) -> Scene:
    """The scene of one job; depends only on (seed, suite, index, drift)."""
    p = PRESETS[job.preset]
    spec = p.sweep if job.suite == "sweep" else p.suites[job.suite]
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, _SUITE_IDS[job.suite], job.index]))
    length = int(rng.integers(spec.length[0], spec.length[1] + 1))
    return make_scene(rng, p, spec, length, job.drift, job.index)


def _run_job(job: Job) -> dict:
    dest = Path(job.dest)
    scene = scene_for(job)
    if (dest / "drift.txt").exists():  # finished by an earlier (interrupted) run: folders appear atomically
        return scene_meta(scene)
    cv2.setNumThreads(1)
    return write_sequence(scene, job.layout, dest, PRESETS[job.preset].quality)


def _sweep_jobs(out: Path, preset: str, seed: int, level: float) -> tuple[list[Job], list[str]]:
    jobs, names, counts = [], [], {}
    key = drift_folder(level)
    for i in range(PRESETS[preset].sweep.n_seq):
        probe = scene_for(Job("sweep", i, "", "", "", seed, level, preset))
        counts[probe.cls] = counts.get(probe.cls, 0) + 1
        names.append(f"{probe.cls}-{counts[probe.cls]}")
        jobs.append(Job("sweep", i, "lasot", str(out / key / probe.cls / names[-1]), names[-1], seed, level, preset))
    return jobs, names


def _run(jobs: list[Job], workers: int, progress: bool, desc: str = "synthetic") -> list[dict]:
    for j in jobs:
        Path(j.dest).parent.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: a forked child deadlocks in OpenCV's thread pool once the parent used cv2
        with get_context("spawn").Pool(workers) as pool:
            return list(tqdm(pool.imap(_run_job, jobs, chunksize=1), total=len(jobs), desc=desc, disable=not progress))
    return [_run_job(j) for j in tqdm(jobs, desc=desc, disable=not progress)]


def plan(out: Path, preset: str, seed: int, drift: float | None, sweep: bool) -> tuple[list[Job], dict]:
    """All sequence jobs and the per-suite sequence names (in order)."""
    p = PRESETS[preset]
    jobs, names = [], {}
    for suite, spec in p.suites.items():
        counts: dict[str, int] = {}
        names[suite] = []
        for i in range(spec.n_seq):
            d = None if suite == "train" else drift
            probe = scene_for(Job(suite, i, "", "", "", seed, d, preset))  # class decides LaSOT folder names
            if suite in ("train", "lasot", "lasot_ext"):
                counts[probe.cls] = counts.get(probe.cls, 0) + 1
                name = f"{probe.cls}-{counts[probe.cls]}"
                dest = out / suite / probe.cls / name
                layout = "lasot"
            elif suite == "tnl2k":
                name = f"{probe.colour}_{probe.cls}_video_{i + 1:02d}-Done"
                dest, layout = out / "tnl2k" / "test" / name, "tnl2k"
            else:
                name = f"{probe.cls.capitalize()}{i + 1}"
                dest, layout = out / "otb_lang" / "OTB_videos" / name, "otb_lang"
            names[suite].append(name)
            jobs.append(Job(suite, i, layout, str(dest), name, seed, d, preset))
    if sweep:
        for level in p.sweep_levels:
            sj, names[drift_folder(level)] = _sweep_jobs(out, preset, seed, level)
            jobs += sj
    return jobs, names


def _meta_key(job: Job) -> tuple[str, str]:
    return (job.suite if job.suite != "sweep" else drift_folder(job.drift), job.name)


def _write_sentences(jobs: list[Job], meta: dict) -> None:
    """The robustness test's sentences as nlp_misleading.txt and nlp_uninformative.txt in each test
    sequence's folder (beside LaSOT's nlp.txt; one line, like it)."""
    for j in jobs:
        if j.suite != "train":
            for kind, fname in SENTENCE_FILES.items():
                atomic_write_text(Path(j.dest) / fname, meta[_meta_key(j)][kind] + "\n")


def _has_sentences(manifest: dict) -> bool:
    """Whether a manifest's data have the robustness test's sentences (data made before them are
    completed by a rerun: their sequences are kept, only the sentence files are written)."""
    return all("misleading" in r for suite in manifest.get("suites", {}).values()
               for r in suite.get("per_sequence", {}).values())


def generate(out, preset: str = "demo", seed: int = 0, drift: float | None = None, sweep: bool = True,
             workers: int | None = None, force: bool = False, progress: bool = True) -> dict:
    """Generate the synthetic benchmark at `out`; returns the manifest.

    A rerun with the same arguments returns at once; one with other arguments raises unless
    `force` (which deletes the suites written before). An interrupted run resumes: finished
    sequence folders are kept. `drift` applies to the four test suites (training stays clean).
    workers: rendering processes (None: 1 for smoke, where starting processes costs more, else 2)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if drift is not None and not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    out = Path(out)
    params = dict(generator="dmtrack.data.synthetic", version=GENERATOR_VERSION, preset=preset,
                  preset_sha=preset_fingerprint(preset), seed=seed, drift=drift, sweep=sweep)
    mpath = out / "manifest.json"
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{mpath}: unreadable manifest ({e}); delete it or pick another --out") from e
        if old.get("params") == params and old.get("complete") and _has_sentences(old):
            return old
        if old.get("params") != params:
            if not force:
                raise FileExistsError(f"{mpath}: {out} holds a synthetic benchmark made with {old.get('params')}, "
                                      f"not {params}; pass --force to replace it or choose another --out")
            for sub in ("train", "lasot", "lasot_ext", "tnl2k", "otb_lang", "drift"):
                shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    manifest = dict(note=f"{STAND_IN}s: procedurally rendered sequences in the real layouts, not the real benchmarks",
                    params=params, complete=False)
    atomic_write_text(mpath, json.dumps(manifest, indent=1))
    workers = workers or (1 if preset == "smoke" else 2)
    t0 = time.time()
    jobs, names = plan(out, preset, seed, drift, sweep)
    results = _run(jobs, workers, progress)
    meta = dict(zip(map(_meta_key, jobs), results))
    # split / query files, as the real benchmarks ship them
    p = PRESETS[preset]
    for key in ("lasot", "lasot_ext") + tuple(k for k in names if k.startswith("drift/")):
        lasot.write_split(out / key, names[key])
    _write_sentences(jobs, meta)
    qdir = out / "otb_lang" / "OTB_query_test"
    qdir.mkdir(parents=True, exist_ok=True)
    for n in names["otb_lang"]:
        atomic_write_text(qdir / f"{n}.txt", meta[("otb_lang", n)]["sentence"] + "\n")
    suites = {}
    for key, seqs in names.items():
        level = float(key.split("/")[1]) if key.startswith("drift/") else None
        bench = drift_benchmark(level) if level is not None else synthetic_name(key)
        rows = [meta[(key, n)] for n in seqs]
        spec = p.sweep if key.startswith("drift/") else p.suites[key]
        suites[bench] = dict(folder=suite_location(bench)[0], layout=suite_location(bench)[1], sequences=len(seqs),
                             frames=sum(r["frames"] for r in rows), classes=sorted({r["cls"] for r in rows}),
                             twins=sum(r["twins"] for r in rows), wrap=spec.wrap,
                             drift_level=level if level is not None else (None if key == "train" else drift),
                             per_sequence={n: r for n, r in zip(seqs, rows)})
    manifest = dict(note=manifest["note"], params=params, complete=True,
                    image_size=[p.width, p.height], train_classes=list(TRAIN_CLASSES), ext_classes=list(EXT_CLASSES),
                    suites=suites)
    atomic_write_text(mpath, json.dumps(manifest, indent=1))
    if progress:
        print(f"synthetic ({STAND_IN}s) preset={preset} seed={seed}: {len(jobs)} sequences in {time.time() - t0:.1f} s -> {out}")
    return manifest


def make_drift_sweep(root, levels=(0.0, 0.25, 0.5, 0.75, 1.0), preset: str = "demo", seed: int = 0, workers: int = 2,
                     progress: bool = True) -> list[str]:
    """Write only a drift sweep (LaSOT layout) at <root>/drift/<level>/ for `levels`; returns
    the benchmark names ('synthetic_drift_0.50', ...). The scenes are the same at every level
    (paired): only the frame where the sentence stops fitting moves."""
    root, out_names = Path(root), []
    for level in levels:
        jobs, names = _sweep_jobs(root, preset, seed, level)
        results = _run(jobs, workers, progress, desc=f"drift {level_tag(level)}")
        _write_sentences(jobs, dict(zip(map(_meta_key, jobs), results)))
        lasot.write_split(root / drift_folder(level), names)
        out_names.append(drift_benchmark(level))
    return out_names
