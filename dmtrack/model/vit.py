"""One-stream ViT/16 visual encoder with OSTrack-style candidate elimination (Sec. 3.1, Eq. 1).

Template and search crops are patch-embedded by one shared projection E, each gets its own
learned position embedding (B_z, B_x), and the concatenation [template; search] runs through
timm ViT blocks. At the CE layers (OSTrack's candidate elimination) the search tokens that the
template attends to least are dropped after the attention residual and before the MLP; the
template is never dropped. After the final LayerNorm the surviving search tokens are scattered
back into their grid positions and the dropped ones are zero-filled, so the head always sees a
full grid, and `removed` says which positions were dropped (ground-truth CE needs them).

Parameter names follow timm / OSTrack (patch_embed.proj, pos_embed_z, pos_embed_x,
blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm), so OSTrack and MAE
checkpoints map one to one (see weights.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor

from dmtrack.config import Config


@dataclass
class VisualOutput:
    search: Tensor  # (B, N_x, D) after the final norm; eliminated positions zero-filled, grid order
    template: Tensor  # (B, N_z, D)
    removed: Tensor  # (B, N_x) bool, True where CE dropped the search token (at any CE layer)


def keep_rate_schedule(cfg: Config, epoch: float) -> float:
    """OSTrack's CE keep rate at `epoch`: 1 before ce_start_epoch, then a cosine from 1 down to
    ce_keep_ratio over ce_warm_epochs, then ce_keep_ratio."""
    e = epoch - cfg.ce_start_epoch
    if e < 0:
        return 1.0
    if e >= cfg.ce_warm_epochs:
        return float(cfg.ce_keep_ratio)
    k = cfg.ce_keep_ratio
    return k + (1.0 - k) * 0.5 * (1.0 + math.cos(math.pi * e / cfg.ce_warm_epochs))


def ce_keep_count(num_tokens: int, keep_rate: float) -> int:
    """Search tokens kept by one CE layer (OSTrack: ceil(keep_rate * L_s)); 256 -> 180 -> 126 -> 89."""
    return math.ceil(keep_rate * num_tokens)


class VisualEncoder(nn.Module):
    """ViT/16 over [template; search] tokens with candidate elimination at `cfg.ce_layers`."""

    def __init__(self, cfg: Config):
        super().__init__()
        D, p = cfg.embed_dim, cfg.patch_size  # sizes, ce_layers and ce_template_range: Config.validate
        self.grid_z, self.grid = cfg.template_size // p, cfg.search_size // p  # template / search grid sides
        self.num_z, self.num_x = self.grid_z**2, self.grid**2
        self.ce_layers = tuple(cfg.ce_layers)
        # tracking: each CE layer's own ratio (ce_keep_ratios; the authors' test time, A:models/layers/attn_blocks.py:97-99);
        # training passes one keep rate to every layer (OSTrack's actor, A:train/actors/ostrack.py:92-95)
        self.ce_keep_ratios = tuple(cfg.ce_keep_ratios) or (cfg.ce_keep_ratio,) * len(self.ce_layers)
        # ctr_point: the template token at the centre, (3,3) of 8x8 as in OSTrack; 'all': every template row.
        # Tracking may use other rows (ce_test_template_range; the authors' test calls CE without the centre mask)
        c = (self.grid_z - 1) // 2
        rows = lambda how: [c * self.grid_z + c] if how == "ctr_point" else list(range(self.num_z))
        self.ce_rows = rows(cfg.ce_template_range)
        test_range = cfg.ce_template_range if cfg.ce_test_template_range == "same" else cfg.ce_test_template_range
        self.ce_rows_test = rows(test_range)

        self.patch_embed = PatchEmbed(img_size=None, patch_size=p, in_chans=3, embed_dim=D, strict_img_size=False)
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.num_z, D))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.num_x, D))
        dpr = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()  # stochastic depth rises linearly
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm) for i in range(cfg.depth)
        )
        self.norm = norm(D)
        trunc_normal_(self.pos_embed_z, std=0.02)
        trunc_normal_(self.pos_embed_x, std=0.02)
        self.apply(_init_weights)

    def forward(self, template: Tensor, search: Tensor, keep_rate: float | None = None) -> VisualOutput:
        """template (B,3,Hz,Wz), search (B,3,Hx,Wx) normalised crops. keep_rate None = test time
        (each CE layer keeps its ratio of `ce_keep_ratios`, scored by the test-time template rows),
        1.0 = no elimination, else that ratio at every CE layer (training)."""
        if keep_rate is not None and not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"CE keep rate must be in (0, 1], got {keep_rate}")
        keeps = self.ce_keep_ratios if keep_rate is None else (keep_rate,) * len(self.ce_layers)
        keeps, rows = dict(zip(self.ce_layers, keeps)), self.ce_rows_test if keep_rate is None else self.ce_rows
        z = self.patch_embed(template) + self.pos_embed_z
        x = self.patch_embed(search) + self.pos_embed_x
        B, Nz, D = z.shape
        if z.shape[1] != self.num_z or x.shape[1] != self.num_x:
            raise ValueError(f"expected {self.num_z} template and {self.num_x} search tokens, got "
                             f"{z.shape[1]} and {x.shape[1]} (crop sizes {tuple(template.shape[-2:])}, {tuple(search.shape[-2:])})")
        h = torch.cat([z, x], dim=1)
        kept = torch.arange(self.num_x, device=h.device).expand(B, -1)  # original positions of surviving search tokens
        for i, blk in enumerate(self.blocks):
            if keeps.get(i, 1.0) < 1.0:
                h, kept = self._ce_block(blk, h, kept, keeps[i], rows)
            else:
                h = blk(h)
        h = self.norm(h)
        search_out = h.new_zeros(B, self.num_x, D).scatter(1, kept.unsqueeze(-1).expand(-1, -1, D), h[:, Nz:])
        removed = torch.ones(B, self.num_x, dtype=torch.bool, device=h.device).scatter(1, kept, False)
        return VisualOutput(search=search_out, template=h[:, :Nz], removed=removed)

    def _ce_block(self, blk: Block, h: Tensor, kept: Tensor, keep: float, ce_rows: list) -> tuple[Tensor, Tensor]:
        """One timm Block with candidate elimination between the attention residual and the MLP.
        The block's own qkv gives both the attention output (fused SDPA) and the CE scores (softmax
        rows of the template queries `ce_rows` only), so the full attention map is never materialised."""
        attn, Nz = blk.attn, self.num_z
        B, N, D = h.shape
        q, k, v = attn.qkv(blk.norm1(h)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(q), attn.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if self.training else 0.0)
        out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(B, N, -1))))  # -1: older timm has no attn_dim
        h = h + blk.drop_path1(blk.ls1(out))

        # CE scores: post-softmax attention of the template rows to the search keys, mean over rows and heads
        with torch.no_grad():
            rows = q[:, :, ce_rows]  # (B, H, R, hd)
            probs = (rows @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)[..., Nz:]  # (B, H, R, L_s)
            score = probs.mean(dim=(1, 2))  # (B, L_s)
            idx = score.topk(ce_keep_count(N - Nz, keep), dim=1).indices  # (B, L_keep)
        x = h[:, Nz:].gather(1, idx.unsqueeze(-1).expand(-1, -1, D))
        h = torch.cat([h[:, :Nz], x], dim=1)
        kept = kept.gather(1, idx)
        h = h + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(h))))
        return h, kept


def _init_weights(m: nn.Module) -> None:
    # timm ViT's default: truncated normal linear weights, zero biases, unit LayerNorm
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
