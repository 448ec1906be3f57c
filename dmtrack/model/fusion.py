"""Multi-modal interaction (Sec. 3.1, Eq. 2): gated cross-attention from search tokens to words.

F_s = H_x + g * CrossAttn(query = LN(H_x), key/value = LN(T_q)), with g = tanh(alpha) per
channel. The gate lets training decide how much language enters the search features
(Flamingo's tanh gate). Flamingo starts alpha at 0 so the visual path is untouched at init; we
start it small but non-zero (0.1) so the attention weights also get gradients from the first step.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class GatedCrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, gate_init: float = 0.1):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_t = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.gate = nn.Parameter(torch.full((dim,), gate_init))

    def forward(self, h_x: Tensor, t_q: Tensor, t_mask: Tensor) -> Tensor:
        """h_x (B, N, D) search tokens, t_q (B, L, D) word features, t_mask (B, L) bool True = valid word."""
        t = self.norm_t(t_q)
        out, _ = self.attn(self.norm_x(h_x), t, t, key_padding_mask=~t_mask, need_weights=False)
        return h_x + torch.tanh(self.gate) * out
