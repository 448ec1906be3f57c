"""Feature Filtering Module (Sec. 3.2, Fig. 6): "select and redistribute attention to features
with the highest responses while suppressing other response features".

Our reading (the paper gives no formula; see docs/method.md): on the averaged diffusion mask
p (B,1,M,M) in [0,1], keep the top ceil(filter_topk * M^2) responses, re-weight them with a
softmax of learned temperature tau, rescaled so the strongest response is 1,

    f_i = exp((p_i - max_j p_j) / tau)   for i in top-k,   f_i = 0 otherwise,

i.e. attention is redistributed among the selected positions (tau < 1 sharpens towards the
peak) and every other position is suppressed to 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class FeatureFilter(nn.Module):
    def __init__(self, topk: float = 0.25, tau: float = 0.25, enabled: bool = True):
        super().__init__()
        if not 0 < topk <= 1:
            raise ValueError(f"filter_topk must be in (0, 1], got {topk}")
        self.topk, self.enabled = topk, enabled
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau))) if enabled else None

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return p
        b, c, h, w = p.shape
        flat = p.flatten(1)
        k = max(1, math.ceil(self.topk * flat.shape[1]))
        vals, idx = flat.topk(k, dim=1)
        # in float32 on every device (CUDA autocast runs exp in float32, CPU autocast in the input's
        # dtype), back to the mask's dtype for the scatter, which refuses a mix (issue 19)
        weights = torch.exp((vals.float() - vals[:, :1].float()) / self.log_tau.float().exp())  # [:, 0] is the max
        return torch.zeros_like(flat).scatter(1, idx, weights.to(flat.dtype)).view(b, c, h, w)
