"""OSTrack-style centre head (Sec. 3.3): three Conv-BN-ReLU branches (score, offset, size) over
the G x G search grid, and the arg-max box decoding shared with the tracker."""
from __future__ import annotations

import torch
import torch.nn as nn


def _branch(cin: int, c: int, cout: int) -> nn.Sequential:
    """cin -> c -> c/2 -> c/4 -> c/8 (3x3 Conv-BN-ReLU each), then a 1x1 conv to cout."""
    widths = [cin, c, c // 2, c // 4, c // 8]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], cout, 1))


class CenterHead(nn.Module):
    """(B,cin,G,G) -> score (B,1,G,G) in [1e-4, 1-1e-4], offset (B,2,G,G) raw (x, y),
    size (B,2,G,G) = normalised (w, h) in [1e-4, 1-1e-4]."""

    def __init__(self, cin: int, channels: int = 256):
        super().__init__()
        if channels % 8:
            raise ValueError(f"head_channels must be divisible by 8, got {channels}")
        self.score, self.offset, self.size = _branch(cin, channels, 1), _branch(cin, channels, 2), _branch(cin, channels, 2)
        for p in self.parameters():  # OSTrack initialises the head Xavier-uniform
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        # CenterNet's focal-loss prior: start the score map near 0.1 rather than 0.5, so the
        # first steps are not dominated by the G^2 - 1 negative cells (OSTrack leaves it at 0)
        nn.init.constant_(self.score[-1].bias, -2.19)

    def forward(self, x: torch.Tensor):
        clamp = lambda v: v.sigmoid().clamp(1e-4, 1 - 1e-4)
        return clamp(self.score(x)), self.offset(x), clamp(self.size(x))


def decode_boxes(score_map: torch.Tensor, offset_map: torch.Tensor, size_map: torch.Tensor) -> torch.Tensor:
    """Arg-max of the score map -> (B,4) cxcywh normalised to the search crop:
    cx = (col + off_x) / G, cy = (row + off_y) / G, (w, h) = size map at that cell."""
    b, _, g, _ = score_map.shape
    idx = score_map.flatten(1).argmax(1)
    row, col = (idx // g).to(score_map.dtype), (idx % g).to(score_map.dtype)
    off = offset_map.flatten(2).gather(2, idx.view(b, 1, 1).expand(b, 2, 1)).squeeze(2)
    size = size_map.flatten(2).gather(2, idx.view(b, 1, 1).expand(b, 2, 1)).squeeze(2)
    return torch.stack([(col + off[:, 0]) / g, (row + off[:, 1]) / g, size[:, 0], size[:, 1]], dim=1)
