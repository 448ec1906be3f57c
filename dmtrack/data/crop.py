"""Square crops around a box, as OSTrack's `sample_target`, shared by training and tracking.

A crop of side ceil(factor * sqrt(w h)) is centred on the box, padded with zeros where it
leaves the image, and resized to `out_size`. Coordinates map between the image and the
crop by `resize_factor = out_size / crop_side`.

A crop that shrinks its region 2x or more can be cut from a frame decoded at 1/f of its size
(`decode_scale`, `dmtrack.data.files.read_frame_reduced`): the crop's geometry (side, position, padding
mask, resize_factor) stays in full-image pixels, only the pixels are sampled from the reduced
image, so the boxes in crop coordinates are the very same and the pixels nearly so.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


REDUCED_SCALES = (8, 4, 2)  # the JPEG decoder's DCT scalings (cv2.IMREAD_REDUCED_COLOR_f)


def crop_side(box_xywh, factor: float) -> int:
    """The side in image pixels of the square crop around a box: ceil(factor * sqrt(w h)), at least 1."""
    _, _, w, h = [float(v) for v in box_xywh]
    return max(math.ceil(math.sqrt(max(w, 1e-6) * max(h, 1e-6)) * factor), 1)


def decode_scale(box_xywh, factor: float, out_size: int) -> int:
    """The largest f in 2, 4, 8 with the crop shrunk at least f times (crop side / out_size >= f), else 1."""
    shrink = crop_side(box_xywh, factor) / out_size
    return next((f for f in REDUCED_SCALES if shrink >= f), 1)


def crop_square(image: np.ndarray, box_xywh, factor: float, out_size: int, scale: int = 1, size=None):
    """Return (crop HxWx3 uint8, resize_factor, pad_mask out_size x out_size bool [True = padding]).

    `image` is HxWx3 (RGB): the frame itself (scale 1), or the frame decoded at 1/scale of its
    size, whose full (height, width) is then `size`. `box_xywh` and resize_factor are in the
    frame's own pixels whatever the scale. The crop is centred on the box centre."""
    x, y, w, h = [float(v) for v in box_xywh]
    side = crop_side(box_xywh, factor)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    x1 = int(round(cx - 0.5 * side))
    y1 = int(round(cy - 0.5 * side))
    x2, y2 = x1 + side, y1 + side
    H, W = size if scale > 1 else image.shape[:2]
    # The part of the crop inside the image, in crop coordinates [u0, u1) x [v0, v1): empty when the
    # square lies wholly outside. Each index is clipped on its own, so no slice bound goes negative
    # (a negative one counts from the end) and OpenCV never sees an empty patch (OpenCV 5 refuses one
    # in copyMakeBorder; 4.x let it through).
    u0, u1 = min(max(0, -x1), side), max(0, min(side, W - x1))
    v0, v1 = min(max(0, -y1), side), max(0, min(side, H - y1))
    inside = u1 > u0 and v1 > v0
    mask = np.ones((side, side), dtype=np.uint8)
    if inside:
        mask[v0:v1, u0:u1] = 0
    mask = cv2.resize(mask, (out_size, out_size), interpolation=cv2.INTER_NEAREST).astype(bool)
    if scale > 1:
        return _crop_reduced(image, x1, y1, side, out_size, scale), out_size / side, mask
    if not inside:
        return np.zeros((out_size, out_size) + image.shape[2:], image.dtype), out_size / side, mask
    patch = image[y1 + v0:y1 + v1, x1 + u0:x1 + u1]
    if (u0, v0, u1, v1) != (0, 0, side, side):
        patch = cv2.copyMakeBorder(patch, v0, side - v1, u0, side - u1, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = cv2.resize(patch, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    return crop, out_size / side, mask


def _crop_reduced(image: np.ndarray, x1: int, y1: int, side: int, out_size: int, scale: int) -> np.ndarray:
    """The crop of the full-size square [x1, x1 + side) x [y1, y1 + side) sampled from the frame
    reduced `scale` times. In edge coordinates (pixel j spans [j, j + 1)) output pixel u's centre
    lies at x1 + (u + 0.5) side / out_size in the frame, that over `scale` in the reduced image,
    and a pixel index is an edge coordinate - 0.5. Bilinear with zeros outside, as the full path."""
    a = side / (out_size * scale)
    m = np.array([[a, 0, (x1 + 0.5 * side / out_size) / scale - 0.5],
                  [0, a, (y1 + 0.5 * side / out_size) / scale - 0.5]])
    return cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


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


@functools.lru_cache(maxsize=None)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std as (3, 1, 1) tensors on `device`, copied there once: a copy from
    pageable host memory in every training step would wait for the GPU's queue."""
    return (torch.from_numpy(IMAGENET_MEAN).to(device).view(3, 1, 1),
            torch.from_numpy(IMAGENET_STD).to(device).view(3, 1, 1))


def normalize_images(crops: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB -> (..., 3, H, W) float32, on the crops' device: pixels / 255,
    then ImageNet mean and std (OSTrack's transforms.Normalize after ToTensor)."""
    mean, std = _imagenet_stats(crops.device)
    x = crops.movedim(-1, -3).float().div_(255.0)
    return x.sub_(mean).div_(std).contiguous()
