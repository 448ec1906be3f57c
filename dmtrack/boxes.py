"""The one box-format module. Every function works on numpy arrays and torch tensors of
shape (..., 4).

Formats:
    xywh   : top-left corner, width, height (the benchmarks' ground-truth files)
    xyxy   : top-left and bottom-right corners (x2 = x + w)
    cxcywh : centre and size (the head's output, normalised to the search crop)
"""
from __future__ import annotations

import sys

import numpy as np


def _stack(parts, like):
    # torch is looked up, not imported: numpy-only users (scoring) never pay its import time
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(like, torch.Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _unbind(b):
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def xywh_to_xyxy(b):
    x, y, w, h = _unbind(b)
    return _stack([x, y, x + w, y + h], b)


def xyxy_to_xywh(b):
    x1, y1, x2, y2 = _unbind(b)
    return _stack([x1, y1, x2 - x1, y2 - y1], b)


def xywh_to_cxcywh(b):
    x, y, w, h = _unbind(b)
    return _stack([x + 0.5 * w, y + 0.5 * h, w, h], b)


def cxcywh_to_xywh(b):
    cx, cy, w, h = _unbind(b)
    return _stack([cx - 0.5 * w, cy - 0.5 * h, w, h], b)


def cxcywh_to_xyxy(b):
    cx, cy, w, h = _unbind(b)
    return _stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], b)


def xyxy_to_cxcywh(b):
    x1, y1, x2, y2 = _unbind(b)
    return _stack([0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1], b)


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of xywh boxes (numpy), as all tracking toolkits define it:
    I / (w_a h_a + w_b h_b - I). Boxes with no area give 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def center_xywh(b: np.ndarray) -> np.ndarray:
    """Box centre under the pytracking / MATLAB-toolkit convention c = x + (w - 1) / 2."""
    b = np.asarray(b, dtype=np.float64)
    return np.stack([b[..., 0] + (b[..., 2] - 1) / 2, b[..., 1] + (b[..., 3] - 1) / 2], axis=-1)


def clip_xywh(b: np.ndarray, width: int, height: int, margin: float = 0.0) -> np.ndarray:
    """Clip an xywh box to an image, keeping at least `margin` pixels of it inside
    (OSTrack clips with a 10-pixel margin so a box never collapses to zero size)."""
    x1, y1, x2, y2 = xywh_to_xyxy(np.asarray(b, dtype=np.float64)).T
    x1 = np.clip(x1, 0, width - margin)
    y1 = np.clip(y1, 0, height - margin)
    x2 = np.clip(x2, margin, width)
    y2 = np.clip(y2, margin, height)
    w = np.maximum(margin, x2 - x1)
    h = np.maximum(margin, y2 - y1)
    return np.stack([x1, y1, w, h], axis=-1)


def giou_xyxy(a, b):
    """Element-wise (IoU, generalised IoU) of xyxy boxes (torch), for the GIoU loss."""
    import torch
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-7)
    enclose = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou, iou - (enclose - union) / enclose.clamp(min=1e-7)
