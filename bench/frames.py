"""Generated JPEG frames in LaSOT's on-disk layout, for the benchmarks (a helper, not a benchmark).

    write_lasot_tree(root, n_seq, n_frames)  ->  root/box/box-<k>/img/00000001.jpg ..., groundtruth.txt,
                                                 full_occlusion.txt, out_of_view.txt, nlp.txt;
                                                 root/testing_set.txt naming none of them
                                                 (written by dmtrack.data.lasot.write_sequence)

It loads as LaSOT's training split (`load_benchmark("lasot", root, split="train", custom_split=True)`)
or, written to <dir>/train, as `load_benchmark("synthetic_train", root=<dir>)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from dmtrack.data.lasot import write_sequence, write_split


def noise_picture(rng: np.random.Generator, width: int = 1280, height: int = 720) -> np.ndarray:
    """An RGB picture with detail at 4 to 256 pixels (smoothed noise at four scales), so that a
    1280x720 JPEG of it is about as large as a real frame's (~200 kB at quality 90). Not the
    synthetic benchmark's sprite texture (dmtrack.data.synthetic.texture): a whole frame's worth of
    detail, for the cost of decoding it."""
    img = np.zeros((height, width, 3), np.float32)
    for s, amp in [(4, 40), (16, 50), (64, 60), (256, 60)]:
        noise = rng.random((height // s + 2, width // s + 2, 3)).astype(np.float32)
        big = cv2.resize(noise, ((width // s + 2) * s, (height // s + 2) * s), interpolation=cv2.INTER_CUBIC)
        img += amp * (big[:height, :width] - 0.5)
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def write_lasot_tree(root: Path, n_seq: int, n_frames: int, width: int = 1280, height: int = 720,
                     sides: tuple[float, float] | None = None, seed: int = 0) -> list[float]:
    """n_seq sequences of n_frames textured JPEGs (quality 90), each with a red-outlined target
    moving and breathing; its sqrt(w h) is log-uniform in `sides` (default: height / 15 to
    height / 2.25, 48 to 320 px at 720p), one size per sequence. Returns those sizes."""
    lo, hi = sides or (height / 15, height / 2.25)
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(math.log(lo), math.log(hi), n_seq))
    for k, side in enumerate(sizes):
        frames, rows = [], []
        for i in range(n_frames):
            w, h = min(side * 1.3 * (1 + 0.1 * math.sin(i / 5)), width - 22), min(side / 1.3, height - 22)
            cx = width / 2 + (width / 2 - w / 2 - 10) * math.sin(i / 7 + k)
            cy = height / 2 + (height / 2 - h / 2 - 10) * math.cos(i / 9 + k) * 0.8
            x, y = cx - w / 2, cy - h / 2
            img = noise_picture(rng, width, height)
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (255, 40, 40), 3)
            frames.append(cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            rows.append((round(x), round(y), round(w), round(h)))
        write_sequence(Path(root) / "box" / f"box-{k + 1}", rows, f"the red box number {k + 1} moving around\n",
                       frames=frames)
    write_split(root, ["none-1"])
    return [float(s) for s in sizes]
