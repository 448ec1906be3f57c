"""OSTrack-style centre head (Sec. 3.3): three Conv-BN-ReLU branches (score, offset, size) over
the G x G search grid, and the arg-max box decoding shared with the tracker."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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
        self.__dict__["fused"] = None  # see fuse(): plain attribute, never in the state_dict

    def forward(self, x: torch.Tensor):
        clamp = lambda v: v.sigmoid().clamp(1e-4, 1 - 1e-4)
        if self.fused is not None:  # the inference form: the same function, one conv stack
            out = self._fused_forward(x)
            return clamp(out[:, 0:1]), out[:, 2:4], clamp(out[:, 4:6])
        return clamp(self.score(x)), self.offset(x), clamp(self.size(x))

    def train(self, mode: bool = True):
        if mode:
            self.unfuse()
        return super().train(mode)

    def unfuse(self) -> None:
        self.__dict__["fused"] = None

    @torch.no_grad()
    def fuse(self) -> None:
        """The three branches as one stack of (weight, bias, groups): eval BatchNorm folded into each
        conv (w * g / sqrt(var + eps), (b - mean) g / sqrt(var + eps) + beta), the first convs
        concatenated (they share the input), the later ones grouped (groups=3), the score branch's
        1x1 output padded with a zero channel so the last conv yields [score, 0, offset, size].
        Uses the BN running statistics: call in eval mode, again after the weights change."""
        branches = (self.score, self.offset, self.size)
        layers = []
        for i in range(0, len(self.score) - 1, 3):
            ws, bs = [], []
            for br in branches:
                conv, bn = br[i], br[i + 1]
                g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                ws.append(conv.weight * g[:, None, None, None])
                bs.append((conv.bias - bn.running_mean) * g + bn.bias)
            layers.append((torch.cat(ws), torch.cat(bs), 1 if i == 0 else 3))
        last = [br[-1] for br in branches]
        w0 = torch.cat([last[0].weight, torch.zeros_like(last[0].weight)])
        b0 = torch.cat([last[0].bias, torch.zeros_like(last[0].bias)])
        layers.append((torch.cat([w0, last[1].weight, last[2].weight]), torch.cat([b0, last[1].bias, last[2].bias]), 3))
        self.__dict__["fused"] = layers

    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,6,G,G) raw [score, 0, offset x, offset y, size w, size h] of the three branches."""
        layers = self.fused
        for w, b, groups in layers[:-1]:
            x = F.relu(F.conv2d(x, w, b, padding=1, groups=groups), inplace=True)
        w, b, groups = layers[-1]
        return F.conv2d(x, w, b, groups=groups)


def decode_boxes(score_map: torch.Tensor, offset_map: torch.Tensor, size_map: torch.Tensor) -> torch.Tensor:
    """Arg-max of the score map -> (B,4) cxcywh normalised to the search crop:
    cx = (col + off_x) / G, cy = (row + off_y) / G, (w, h) = size map at that cell."""
    b, _, g, _ = score_map.shape
    idx = score_map.flatten(1).argmax(1)
    row, col = (idx // g).to(score_map.dtype), (idx % g).to(score_map.dtype)
    off = offset_map.flatten(2).gather(2, idx.view(b, 1, 1).expand(b, 2, 1)).squeeze(2)
    size = size_map.flatten(2).gather(2, idx.view(b, 1, 1).expand(b, 2, 1)).squeeze(2)
    return torch.stack([(col + off[:, 0]) / g, (row + off[:, 1]) / g, size[:, 0], size[:, 1]], dim=1)
