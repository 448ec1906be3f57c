"""Losses of Eq. 6: L = L_cls + lambda_iou L_iou + lambda_L1 L_1 + lambda_M L_struct.

L_cls: weighted focal loss (CenterNet, alpha 2, beta 4) against a Gaussian heat-map (CornerNet
radius, min_overlap 0.7); L_iou = 1 - GIoU and L_1 on xyxy boxes normalised to the search crop
(as OSTrack); L_struct: weighted BCE + weighted IoU on the diffusion mask logits (F3Net /
CamoDiffusion), with the per-pixel weights applied to the BCE as intended (reduction='none'; the
authors' code reduces it to a plain mean first: struct_bce_weighted=False).
Every loss casts its inputs to float32 first: under mixed precision the head and the denoiser
may hand over float16, where 1 - 1e-6 rounds to 1 (log(0) in the focal loss) and the weighted
sums of a large mask overflow.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..boxes import cxcywh_to_xyxy, giou_xyxy


def gaussian_radius(h, w, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet radius: the largest corner shift keeping IoU >= min_overlap (min of 3 cases);
    h, w numbers or tensors of box sides in grid cells (elementwise, in their floating dtype)."""
    h, w = (torch.as_tensor(v, dtype=v.dtype if torch.is_tensor(v) else torch.float64) for v in (h, w))
    root = lambda a, b, c: (b + (b ** 2 - 4 * a * c).clamp(min=0).sqrt()) / 2  # over 2, not 2a: CornerNet's code
    r1 = root(1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap))
    r2 = root(4, 2 * (h + w), (1 - min_overlap) * w * h)
    r3 = root(4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h)
    return torch.minimum(torch.minimum(r1, r2), r3)


def gaussian_heatmap(boxes: torch.Tensor, grid: int, min_overlap: float = 0.7, peak: str = "floor") -> torch.Tensor:
    """(B,4) cxcywh normalised -> (B,1,G,G) heat-map: a Gaussian with sigma = (2r+1)/6 inside a
    (2r+1)^2 window around the peak cell (exactly 1 there). peak (Config.heatmap_peak): floor = the cell
    that contains the box centre, the one decode_boxes reads; round = the centre in grid units rounded,
    OSTrack's generate_heatmap and so the authors' (A:utils/heapmap_utils.py:23), one cell further right
    or down for a centre in the right or lower half of its cell. Either is clamped into the grid. Tensor ops
    only, so building the target never waits for the device; the radius in float64 (float32 on
    MPS, which has no float64), the window's integer radius truncated from it."""
    if peak not in ("floor", "round"):
        raise ValueError(f"peak must be floor or round, got {peak!r}")
    b = boxes.detach().float() * grid
    cx, cy, w, h = b.unbind(1)
    wide = torch.float32 if b.device.type == "mps" else torch.float64
    r = gaussian_radius(h.to(wide), w.to(wide), min_overlap).trunc().clamp(min=0).float()[:, None, None]
    cell = torch.floor if peak == "floor" else torch.round
    ci = cell(cx).clamp(0, grid - 1)[:, None, None]
    cj = cell(cy).clamp(0, grid - 1)[:, None, None]
    cells = torch.arange(grid, device=b.device, dtype=torch.float32)
    dx, dy = cells[None, None, :] - ci, cells[None, :, None] - cj
    sigma = (2 * r + 1) / 6
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    return torch.where(inside, g, torch.zeros_like(g)).unsqueeze(1)


def focal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss (alpha 2, beta 4), summed and divided by the number of peaks."""
    pred, target = pred.float().clamp(1e-6, 1 - 1e-6), target.float()
    pos = target.eq(1).float()
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def struct_kernel_size(mask_size: int, search_size: int, pixels: int = 31) -> int:
    """The structure loss's 31-pixel neighbourhood (at CamoDiffusion's full mask resolution)
    measured in search-crop pixels and expressed in mask cells, rounded up to an odd size:
    3 for a 16x16 mask of a 256 crop, 9 for 64x64, 31 at pixel resolution."""
    k = math.ceil(pixels * mask_size / search_size)
    return k if k % 2 else k + 1


def structure_loss(logits: torch.Tensor, target: torch.Tensor, kernel: int = 31, weighted_bce: bool = True) -> torch.Tensor:
    """Weighted BCE + weighted IoU with weights w = 1 + 5 |AvgPool_k(G) - G| (F3Net / CamoDiffusion),
    the BCE weighted per pixel (reduction='none'), both normalised per image, mean over the batch.
    weighted_bce=False: the BCE is a plain mean over the pixels, as in the authors' code, whose
    `reduce='none'` (the deprecated flag: a non-empty string is true) reduces it to a mean before the
    weights apply (A:train/actors/ostrack.py:160-161); only the IoU term is weighted then."""
    logits, target = logits.float(), target.float()
    w = 1 + 5 * (F.avg_pool2d(target, kernel, stride=1, padding=kernel // 2) - target).abs()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (w * bce).sum((2, 3)) / w.sum((2, 3)) if weighted_bce else bce.mean((2, 3))
    p = logits.sigmoid()
    inter = (w * p * target).sum((2, 3))
    union = (w * (p + target)).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def box_losses(pred_cxcywh: torch.Tensor, gt_cxcywh: torch.Tensor):
    """(1 - GIoU mean, L1 mean, IoU mean) on xyxy boxes; the GT is clamped to [0, 1] as in OSTrack."""
    pred = cxcywh_to_xyxy(pred_cxcywh.float())
    gt = cxcywh_to_xyxy(gt_cxcywh.float()).clamp(0, 1)
    iou, giou = giou_xyxy(pred, gt)
    return (1 - giou).mean(), F.l1_loss(pred, gt), iou.detach().mean()
