"""The first author's DMTrack modules, built under `reading = authors` (docs/method.md, "reading = authors").

The released code (github 923714892/Diffusion-Mask-Driven-Visual-language-Tracking, commit 7478015;
`A:` = its `lib/`, read line by line in docs/authors_code.md) departs from the paper in four modules.
This file computes the same functions with our own code:

    AuthorsCrossAttention  fusion: pre-LN cross-attention with an untied 2-D position bias, an MLP, H_x added again
    LogSNRSchedule         continuous cosine log-SNR schedule (simple diffusion), q_sample, the ancestral step
    AuthorsDenoiser        conv -> time-conditioned ResNet block -> conv, concat F_s, PixelShuffle x2, to tokens
    AuthorsFilter          spatial attention over the token features: top-1 per channel, BatchNorm1d, residual
    authors_sample         the test-time sampler: x0 = tanh(logits), ancestral steps over t = 1 -> 0

Sizes. The authors hard-code D = 768, a 24 x 24 search grid (576 tokens) and 36 text tokens seen as a
6 x 6 grid. Here D = embed_dim, the grid G = search_size / patch_size, and the text grid is
`text_grid(text_max_len)`; at search 384, embed_dim 768 and 36 tokens these are the authors' numbers.

Parameter layout. Each module of ours has one module of theirs with the same parameter shapes; each
class's docstring maps our state-dict names (under DMTrack: fusion., denoiser., filter.) onto theirs
(under their OSTrack model), so one set of weights can be loaded into both.

The scrambling `.view`. `authors_view_scramble` (Config) switches the two memory reinterpretations of the
authors' code together: the denoiser's `seg.contiguous().view(B, 576, 768)` (A:models/ostrack/ostrack.py:237),
whose tokens are stripes of rows of one channel (docs/authors_code.md, fact (b)), and the filter's
`x.view(B, C, -1).transpose(1, 2)` (ostrack.py:458). False gives the spatially correct reshaping in both.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_

from .diffusion import timestep_embedding

UP = 4  # the up path's two PixelShuffle(2): the mask features are at 4G x 4G, D/16 channels, before they become tokens


def text_grid(length: int) -> tuple[int, int]:
    """(rows, cols) of the 2-D grid the text tokens' position bias is laid on: rows = the largest divisor
    of `length` not above its square root (36 -> 6 x 6, the authors' grid; 8 -> 2 x 4; a prime p -> 1 x p)."""
    rows = max(d for d in range(1, math.isqrt(length) + 1) if length % d == 0)
    return rows, length // rows


# ----------------------------------------------------------------------------- fusion
class AxisPositions(nn.Module):
    """Learned 2-D positions, one embedding per row plus one per column, normalised, projected and split
    into heads (A:models/ostrack/positional_encoding/learned.py:6-17, untied/absolute.py:7-38):

        pos[r * cols + c] = row[r] + col[c]                               (rows * cols, D)
        P = (LN(pos) W + b) split into heads, times `scale`               (heads, rows * cols, D / heads)

    Map: rows <- pos.h_pos, cols <- pos.w_pos, norm <- norm, proj <- pos_q_linear (query side, scale
    1/sqrt(D/heads)) or pos_k_linear (key side, scale 1)."""

    def __init__(self, rows: int, cols: int, dim: int, heads: int, scale: float):
        super().__init__()
        self.rows, self.cols = nn.Parameter(torch.empty(rows, dim)), nn.Parameter(torch.empty(cols, dim))
        trunc_normal_(self.rows, std=0.02)
        trunc_normal_(self.cols, std=0.02)
        self.norm, self.proj = nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.heads, self.scale = heads, scale

    def forward(self) -> torch.Tensor:
        pos = (self.rows[:, None] + self.cols[None]).flatten(0, 1)
        return self.proj(self.norm(pos)).view(pos.shape[0], self.heads, -1).transpose(0, 1) * self.scale


class AuthorsCrossAttention(nn.Module):
    """The authors' fusion (A:models/ostrack/ostrack.py:70-75, 140-145; A:models/ostrack/cross_attention.py:30-120):

        B_pos = P_x P_t^T                                           (heads, N, L): untied 2-D position bias,
                                                                    P_x on the G x G search grid, P_t on the text grid
        A     = softmax(Q K^T / sqrt(d) + B_pos) V,  Q = LN_q(H_x) W_q,  K = LN_t(T) W_k,  V = LN_t(T) W_v
        H'    = H_x + A W_o + b_o                                   (no gate)
        F_s   = H' + MLP(LN_2(H')) + H_x                            (the caller adds H_x once more: F_s holds 2 H_x)

    Every text token is a key, padding included: the authors pass no padding mask (BERT itself gets it).
    `t_mask` is taken for the call GatedCrossAttention shares and is not read, on purpose.

    Map (ours <- theirs): norm_q <- cross_attention_p.norm1_q, norm_t <- cross_attention_p.norm1_kv,
    q, k, v, proj <- cross_attention_p.attn.{q,k,v,proj} (q, k, v without bias), norm_mlp <- cross_attention_p.norm2,
    mlp.fc1, mlp.fc2 <- cross_attention_p.mlp.fc1, .fc2, search_pos <- untied_search_pos_enc_p (AxisPositions),
    text_pos <- untied_text_pos_enc_p."""

    def __init__(self, dim: int, heads: int, grid: int, text_rows_cols: tuple[int, int], mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        scale = (dim // heads) ** -0.5
        self.norm_q, self.norm_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))  # fc1, GELU, fc2 (no dropout)
        self.search_pos = AxisPositions(grid, grid, dim, heads, scale)
        self.text_pos = AxisPositions(*text_rows_cols, dim, heads, 1.0)

    def forward(self, h_x: torch.Tensor, t_q: torch.Tensor, t_mask: torch.Tensor | None = None) -> torch.Tensor:
        """h_x (B, N, D) search tokens, t_q (B, L, D) word features -> F_s (B, N, D)."""
        B, N, D = h_x.shape
        heads = lambda x: x.view(B, x.shape[1], self.heads, D // self.heads).transpose(1, 2)
        t = self.norm_t(t_q)
        bias = (self.search_pos() @ self.text_pos().transpose(-2, -1))[None]  # (1, heads, N, L)
        att = F.scaled_dot_product_attention(heads(self.q(self.norm_q(h_x))), heads(self.k(t)), heads(self.v(t)), attn_mask=bias)
        h = h_x + self.proj(att.transpose(1, 2).reshape(B, N, D))
        return h + self.mlp(self.norm_mlp(h)) + h_x


# ----------------------------------------------------------------------------- schedule
class LogSNRSchedule(nn.Module):
    """The authors' noise schedule: simple diffusion's continuous cosine log-SNR (Hoogeboom et al. 2023;
    A:models/ostrack/ostrack.py:39, 194-203, 305-331, 388-391), time t in [0, 1], 1 = pure noise:

        lambda(t) = -2 log tan(t_min + t (t_max - t_min)),  t_min = atan(exp(-lambda_max / 2)),  t_max = atan(exp(-lambda_min / 2))
        lambda(0) = lambda_max = 15,  lambda(1/2) = 0,  lambda(1) = lambda_min = -15
        alpha^2 = sigmoid(lambda),  sigma^2 = sigmoid(-lambda)         (alpha^2 + sigma^2 = 1)
        x_t = alpha x_0 + sigma eps                                   (q_sample)

    The denoiser is conditioned on lambda itself, not on t. A module without parameters or buffers (as
    DiffusionSchedule is the paper reading's part of the model), so the model's walks over its parts see it."""

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0):
        super().__init__()
        self.t_min, self.t_max = math.atan(math.exp(-0.5 * logsnr_max)), math.atan(math.exp(-0.5 * logsnr_min))

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return -2 * torch.tan(self.t_min + t * (self.t_max - self.t_min)).clamp(min=1e-20).log()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """(x_t, lambda(t)) for x0 (B, ...) at times t (B,)."""
        noise = torch.randn_like(x0) if noise is None else noise
        lam = self.logsnr(t)
        lam_x = lam.view(-1, *([1] * (x0.dim() - 1)))
        return x0 * lam_x.sigmoid().sqrt() + noise * (-lam_x).sigmoid().sqrt(), lam

    def step(self, x: torch.Tensor, x0_hat: torch.Tensor, t: float, t_next: float, z: torch.Tensor | None = None):
        """One ancestral step t -> t_next < t of the posterior q(x_s | x_t, x0 = x0_hat) (ostrack.py:305-331):

            c = 1 - exp(lambda_t - lambda_s)
            mean = alpha_s (x_t (1 - c) / alpha_t + c x0_hat),   var = sigma_s^2 c
            x_s = mean + sqrt(var) z,   except at t_next = 0, which returns the mean (ostrack.py:299-300)."""
        lam, lam_s = self.logsnr(torch.tensor(t, device=x.device)), self.logsnr(torch.tensor(t_next, device=x.device))
        c = -torch.expm1(lam - lam_s)
        mean = lam_s.sigmoid().sqrt() * (x * (1 - c) / lam.sigmoid().sqrt() + c * x0_hat)
        if t_next == 0:
            return mean
        return mean + ((-lam_s).sigmoid() * c).sqrt() * (torch.randn_like(x) if z is None else z)


# ----------------------------------------------------------------------------- denoiser
class ConvBNReLU(nn.Sequential):
    """mmcv's ConvModule with BN (A:ostrack.py:50-66): conv (no bias) -> BatchNorm2d -> ReLU, initialised as
    mmcv does (Kaiming normal, fan_out, for ReLU; BN weight 1, bias 0). Map: conv, bn <- conv, bn."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")


class PixelShuffleUp(nn.Module):
    """simple diffusion's Upsample (A:denoising_diffusion_pytorch/simple_diffusion.py:42-74): a 1x1 conv to
    4 cout channels, SiLU, PixelShuffle(2): (B, cin, H, W) -> (B, cout, 2H, 2W). The conv starts with each
    output's 4 sub-pixel filters equal (ICNR), so it starts as a nearest-neighbour upsampling. Map: conv <- net.0."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 1)
        w = torch.empty(cout, cin, 1, 1)
        nn.init.kaiming_uniform_(w)
        with torch.no_grad():
            self.conv.weight.copy_(w.repeat_interleave(4, 0))
            self.conv.bias.zero_()

    def forward(self, x):
        return F.pixel_shuffle(F.silu(self.conv(x)), 2)


class TimeResBlock(nn.Module):
    """simple diffusion's ResnetBlock with groups = 8 (simple_diffusion.py:121-166):

        h = SiLU(GN(Conv3x3(x)) (1 + scale) + shift),  (scale, shift) = Linear(SiLU(temb))
        out = SiLU(GN(Conv3x3(h))) + x

    Map: film <- mlp.1, conv1, norm1 <- block1.proj, block1.norm, conv2, norm2 <- block2.proj, block2.norm."""

    def __init__(self, dim: int, temb: int):
        super().__init__()
        self.film = nn.Linear(temb, 2 * dim)
        self.conv1, self.norm1 = nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(8, dim)
        self.conv2, self.norm2 = nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(8, dim)

    def forward(self, x, temb):
        scale, shift = self.film(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(self.conv1(x)) * (scale + 1) + shift)
        return F.silu(self.norm2(self.conv2(h))) + x


def mask_tokens(seg: torch.Tensor, scramble: bool) -> torch.Tensor:
    """The up path's (B, D/16, 4G, 4G) map as G*G tokens of D channels.

    scramble (the authors, ostrack.py:237): the map's memory cut into runs of D values,
        token i = elements [i D, (i + 1) D) of the channel-major layout; with D = 768, G = 24 that is
        channel i // 12, rows 8 (i mod 12) .. 8 (i mod 12) + 7, all 96 columns (docs/authors_code.md, fact (b)).
    not scramble: token (r, c) = the 4 x 4 cells over grid cell (r, c) of every channel (pixel unshuffle),
        channel index ch * 16 + 4 dy + dx."""
    B, C, H, W = seg.shape
    if scramble:
        return seg.contiguous().view(B, (H // UP) * (W // UP), C * UP * UP)
    return F.pixel_unshuffle(seg, UP).flatten(2).transpose(1, 2)


class AuthorsDenoiser(nn.Module):
    """The authors' denoiser (A:models/ostrack/ostrack.py:40-67, 204-239), not U-shaped:

        temb = MLP(sinusoid(lambda))                                  [cos | sin], D -> 4D -> D
        m    = ConvBNReLU3x3(ResBlock(ConvBNReLU3x3(x_t; 1 -> D), temb); D -> D)        at G x G
        u    = ConvBNReLU1x1([F_s ; m]; 2D -> D)                        F_s as a (D, G, G) map, first
        u    = ConvBNReLU3x3(Up(ConvBNReLU3x3(Up(u; D -> D/4)); D/4 -> D/8); D/8 -> D/16)    at 4G x 4G
        tokens = mask_tokens(u, scramble)                             (B, G*G, D)

    `readout` (Linear D -> 1) reads the mask logits off the filtered tokens (ostrack.py:239).
    Map (ours <- theirs): time_mlp.0, .2 <- time_embed.0, .2; down.0, .1, .2 <- down.0, .1, .2 (ConvBNReLU,
    TimeResBlock, ConvBNReLU); up.0 .. up.4 <- up.0 .. up.4 (PixelShuffleUp at 1 and 3); readout <- pred."""

    def __init__(self, dim: int, scramble: bool = True):
        super().__init__()
        if dim % 16:
            raise ValueError(f"the authors' denoiser needs embed_dim divisible by 16 (D/16 output channels), got {dim}")
        self.dim, self.scramble = dim, scramble
        self.time_mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))
        self.down = nn.Sequential(ConvBNReLU(1, dim, 3), TimeResBlock(dim, dim), ConvBNReLU(dim, dim, 3))
        self.up = nn.Sequential(ConvBNReLU(2 * dim, dim, 1), PixelShuffleUp(dim, dim // 4), ConvBNReLU(dim // 4, dim // 4, 3),
                                PixelShuffleUp(dim // 4, dim // 8), ConvBNReLU(dim // 8, dim // 16, 3))
        self.readout = nn.Linear(dim, 1)

    def forward(self, x_t: torch.Tensor, logsnr: torch.Tensor, f_map: torch.Tensor) -> torch.Tensor:
        """x_t (B,1,G,G) noisy mask, logsnr (B,), f_map (B,D,G,G) fused features -> mask tokens (B, G*G, D)."""
        temb = self.time_mlp(timestep_embedding(logsnr, self.dim, cos_first=True))
        m = self.down[2](self.down[1](self.down[0](x_t), temb))
        return mask_tokens(self.up(torch.cat([f_map, m], 1)), self.scramble)


# ----------------------------------------------------------------------------- filter
class AuthorsFilter(nn.Module):
    """The authors' feature filter, SpatialAttention(dim, spatial_dim=1) (A:models/ostrack/ostrack.py:432-475),
    on the mask tokens x (B, N, D):

        s   = x w_s + b_s                                    (B, N, 1) one score per token
        x'  = x, or with scramble x.view(B, D, N)^T          the authors' second reinterpretation (line 458)
        top = max_n softmax_n(s)_n x'[n, :]                  (B, D) top-1 per channel (line 463)
        v   = a (top W_v)                                    attention over that one token is its value (a softmax
                                                             over one key is 1, lines 464-470); a is a learnt scalar
        out = BN_N(s v) + x                                  rank-1 term, BatchNorm1d over the N token positions

    Map (ours <- theirs): score <- summation, value.weight <- qkv.weight[2D:3D] (qkv.weight[:2D], q and k, and
    proj never act on the output), mix.weight <- cross_heads.weight, norm <- norm (BatchNorm1d(N))."""

    def __init__(self, dim: int, tokens: int, scramble: bool = True):
        super().__init__()
        self.scramble = scramble
        self.score = nn.Linear(dim, 1)
        self.value = nn.Linear(dim, dim, bias=False)
        self.mix = nn.Linear(1, 1, bias=False)
        self.norm = nn.BatchNorm1d(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        s = self.score(x)
        xs = x.reshape(B, D, N).transpose(1, 2) if self.scramble else x
        top = (s.softmax(1) * xs).topk(1, dim=1).values  # (B, 1, D)
        v = self.mix(self.value(top).transpose(1, 2)).transpose(1, 2)  # (B, 1, D)
        return self.norm(s @ v) + x


# ----------------------------------------------------------------------------- sampler
def authors_sample(denoise, schedule: LogSNRSchedule, shape: tuple, device, steps: int, noise=None,
                   every_step: bool = False, return_chain: bool = False):
    """The authors' test-time sampler (A:models/ostrack/ostrack.py:271-331): x_T ~ N(0, I) at t = 1, then
    `steps` ancestral steps over t = linspace(1, 0, steps + 1), each reading x0 = tanh(logits), clamped
    to [-1, 1] (line 318), and `LogSNRSchedule.step`. The authors run one step (num_sample_steps = 1).

    denoise(x_t, logsnr (N,)) -> (mask features (N, G*G, D), logits (N,1,G,G)); shape = (N,1,G,G) on `device`.
    noise: as `dmtrack.model.diffusion.sample_masks`: None (torch's RNG), a tensor (x_T), or a function
    drawing x_T and then each step's z. Returns (features, logits, chain): of the last step, or with
    every_step of every step stacked on a first axis; chain (return_chain): the states x_T .. x_0 mapped
    to [0, 1] by (x + 1) / 2, clamped, else None."""
    draw = noise if callable(noise) else (lambda: torch.randn(shape, device=device))
    x = noise if isinstance(noise, torch.Tensor) else draw()
    chain = [x] if return_chain else None
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()
    outs = []
    for t, t_next in zip(times[:-1], times[1:]):
        feats, logits = denoise(x, schedule.logsnr(torch.full((shape[0],), t, device=x.device)))
        outs.append((feats, logits))
        if t_next == 0 and not return_chain:
            break
        z = draw().to(x.dtype) if t_next > 0 else None
        x = schedule.step(x, logits.tanh().clamp(-1, 1).to(x.dtype), t, t_next, z)
        if return_chain:
            chain.append(x)
    if return_chain:
        chain = [((c + 1) / 2).clamp(0, 1) for c in chain]
    feats, logits = (torch.stack(o) for o in zip(*outs)) if every_step else outs[-1]
    return feats, logits, chain
