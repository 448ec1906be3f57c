"""Square crops around a box, as OSTrack's `sample_target`, shared by training and tracking.

A crop of side ceil(factor * sqrt(w h)) is centred on the box, padded with zeros where it
leaves the image, and resized to `out_size`. Coordinates map between the image and the
crop by `resize_factor = out_size / crop_side`.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def crop_square(image: np.ndarray, box_xywh, factor: float, out_size: int):
    """Return (crop HxWx3 uint8, resize_factor, pad_mask out_size x out_size bool [True = padding]).

    `image` is HxWx3 (RGB). The crop is centred on the box centre."""
    x, y, w, h = [float(v) for v in box_xywh]
    side = math.ceil(math.sqrt(max(w, 1e-6) * max(h, 1e-6)) * factor)
    side = max(side, 1)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    x1 = int(round(cx - 0.5 * side))
    y1 = int(round(cy - 0.5 * side))
    x2, y2 = x1 + side, y1 + side
    H, W = image.shape[:2]
    pad_l, pad_t = max(0, -x1), max(0, -y1)
    pad_r, pad_b = max(0, x2 - W), max(0, y2 - H)
    patch = image[max(0, y1):min(H, y2), max(0, x1):min(W, x2)]
    if pad_l or pad_t or pad_r or pad_b:
        patch = cv2.copyMakeBorder(patch, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    mask = np.ones((side, side), dtype=np.uint8)
    mask[pad_t:side - pad_b, pad_l:side - pad_r] = 0
    crop = cv2.resize(patch, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (out_size, out_size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return crop, out_size / side, mask


def box_in_crop(box_xywh, crop_center_box_xywh, resize_factor: float, out_size: int) -> np.ndarray:
    """Map an image-space xywh box into the coordinates of a crop centred on `crop_center_box_xywh`."""
    bx, by, bw, bh = [float(v) for v in box_xywh]
    x, y, w, h = [float(v) for v in crop_center_box_xywh]
    cx, cy = x + 0.5 * w, y + 0.5 * h
    ox = cx * resize_factor - 0.5 * out_size
    oy = cy * resize_factor - 0.5 * out_size
    return np.array([bx * resize_factor - ox, by * resize_factor - oy, bw * resize_factor, bh * resize_factor])


def box_from_crop(box_xywh_crop, crop_center_box_xywh, resize_factor: float, out_size: int) -> np.ndarray:
    """Inverse of `box_in_crop`: a crop-space xywh box back to image coordinates."""
    bx, by, bw, bh = [float(v) for v in box_xywh_crop]
    x, y, w, h = [float(v) for v in crop_center_box_xywh]
    cx, cy = x + 0.5 * w, y + 0.5 * h
    ox = cx - 0.5 * out_size / resize_factor
    oy = cy - 0.5 * out_size / resize_factor
    return np.array([bx / resize_factor + ox, by / resize_factor + oy, bw / resize_factor, bh / resize_factor])


def normalize(crop: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32, pixels / 255 then ImageNet mean / std (OSTrack)."""
    x = crop.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))
