"""The diffusion module of DMTrack (Sec. 3.2, Eqs. 3-5, Figs. 3-4).

A target-position mask m in {0,1} (or [0,1] for soft box coverage) lives in diffusion space as
x0 = 2m - 1 in [-1,1]. A discrete DDPM schedule noises it (Eqs. 3-4); a small conditional
U-shaped network f_theta(x_t, t, F_s) predicts x0 as *logits* l, with

    p = sigmoid(l)   (mask probability, what the structure loss and the head see)
    x0_hat = 2 p - 1 = tanh(l / 2)   (the same prediction in diffusion space)

so the loss and the sampler read the one output the same way. The reverse process (Eq. 5)
is sampled with DDIM-parameterised steps over `sampling_steps` strided timesteps: eta = 1 (the
config's default) draws each step from the exact DDPM posterior q(x_s | x_t, x0 = x0_hat) between
the chain's two timesteps, fresh noise every step as Eq. 5's Gaussian; eta = 0 is deterministic DDIM.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- schedule
def make_betas(T: int, schedule: str = "cosine") -> torch.Tensor:
    """beta_1..beta_T of Eq. 3 (float64). cosine: Nichol & Dhariwal 2021, s = 0.008, beta <= 0.999;
    linear: Ho et al. 2020, 1e-4 .. 0.02 rescaled to T steps (also <= 0.999)."""
    if schedule == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    if schedule == "linear":
        scale = 1000 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64).clamp(max=0.999)
    raise ValueError(f"unknown beta_schedule {schedule!r} (cosine | linear)")


class DiffusionSchedule(nn.Module):
    """Precomputed alpha_t = 1 - beta_t and alpha_bar_t = prod_{i<=t} alpha_i (Eq. 4), as buffers.
    Timesteps are 0-based: t = 0 .. T-1 stands for the paper's 1 .. T."""

    def __init__(self, T: int = 1000, schedule: str = "cosine"):
        super().__init__()
        betas = make_betas(T, schedule)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        self.T = T
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas", alphas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod[t].view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 4: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I); t is (B,) long."""
        noise = torch.randn_like(x0) if noise is None else noise
        a = self._abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def sample_timesteps(self, steps: int) -> list[tuple[int, int]]:
        """(t, t_next) pairs of a `steps`-step chain from T-1 down to 'clean' (t_next = -1).
        steps = 1 evaluates f_theta once at t = T-1 on pure noise, exactly like the first
        sampling of double-sample training."""
        ts = torch.linspace(self.T - 1, -1, steps + 1).round().long().tolist()
        return list(zip(ts[:-1], ts[1:]))

    def ddim_step(self, x_t, x0_hat, t: int, t_next: int, eta: float = 0.0, z=None):
        """One step t -> n (n = t_next < t, any stride) of the reverse process (Eq. 5) with the DDIM
        parameterisation (Song et al. 2021):
            eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
            x_next = sqrt(abar_n) x0_hat + sqrt(1 - abar_n - s^2) eps_hat + s z,
            s = eta sqrt((1 - abar_n)/(1 - abar_t)) sqrt(1 - abar_t/abar_n).
        eta = 0 is deterministic. eta = 1: s^2 = (1 - abar_n)(1 - abar_t/abar_n)/(1 - abar_t) is the variance
        of the DDPM posterior q(x_n | x_t, x0) between the two timesteps (the forward step n -> t has
        alpha = abar_t/abar_n), and the mean is that posterior's, sqrt(abar_n)(1 - abar_t/abar_n)/(1 - abar_t) x0
        + sqrt(abar_t/abar_n)(1 - abar_n)/(1 - abar_t) x_t: the exact posterior over the chain's timesteps
        (for n = t - 1, DDPM's beta_tilde_t; docs/method.md, "The reverse step"). t_next < 0 returns x0_hat.
        z: the step's N(0, I) noise (default: drawn from torch's global RNG)."""
        if t_next < 0:
            return x0_hat
        a, an = self.alphas_cumprod[t], self.alphas_cumprod[t_next]
        eps = (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt()
        sigma = eta * ((1 - an) / (1 - a) * (1 - a / an)).clamp(min=0).sqrt()
        x = an.sqrt() * x0_hat + (1 - an - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta <= 0:
            return x
        return x + sigma * (torch.randn_like(x) if z is None else z)

    def ddim_plan(self, steps: int) -> list[tuple[int, int, float, float]]:
        """(t, t_next, c_x, c_x0) per step of `sample_timesteps(steps)`: for eta = 0, `ddim_step` is
        x_next = c_x x_t + c_x0 x0_hat with c_x = sqrt((1 - abar_n) / (1 - abar_t)) and
        c_x0 = sqrt(abar_n) - c_x sqrt(abar_t). Python floats, computed once per `steps` (the
        schedule is fixed), so the sampler's loop creates no tensors and never syncs a device."""
        plans = self.__dict__.setdefault("_plans", {})
        if steps not in plans:
            abar = self.alphas_cumprod.double().cpu().tolist()
            plan = []
            for t, tn in self.sample_timesteps(steps):
                a, an = abar[t], (abar[tn] if tn >= 0 else 1.0)
                c_x = math.sqrt((1 - an) / (1 - a))
                plan.append((t, tn, c_x, math.sqrt(an) - c_x * math.sqrt(a)))
            plans[steps] = plan
        return plans[steps]


def logits_to_x0(logits: torch.Tensor) -> torch.Tensor:
    """Diffusion-space x0 of a logit prediction: 2 sigmoid(l) - 1 = tanh(l / 2)."""
    return torch.tanh(logits / 2)


# ----------------------------------------------------------------------------- denoiser
def timestep_embedding(t: torch.Tensor, dim: int, cos_first: bool = False) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (B,) -> (B, dim), as in DDPM / transformers: [sin | cos] of
    t * 10000^(-i / (dim/2)); cos_first = [cos | sin], the order of the authors' code (dmtrack.model.authors)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()] if cos_first else [args.sin(), args.cos()], dim=-1)


def _groups(c: int) -> int:
    return math.gcd(8, c)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv3x3 twice, the timestep entering as a FiLM scale/shift, plus a skip."""

    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(temb, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))

    def folded_affine(self, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """norm2's affine with the FiLM of one timestep embedding (1, temb) folded in:
        (x_hat w + b)(1 + scale) + shift = x_hat w' + b'. Every chain of a sampling step has the
        same t, so at inference the FiLM costs nothing per step (see MaskDenoiser.forward_folded)."""
        scale, shift = self.film(temb)[0].chunk(2)
        return self.norm2.weight * (1 + scale), self.norm2.bias * (1 + scale) + shift

    def forward_folded(self, x, w2, b2, conv=None):
        """`forward` with the FiLM folded into norm2 (w2, b2 from `folded_affine`); conv(module, x)
        runs a conv layer (MaskDenoiser passes one with channels-last weights)."""
        conv = conv or (lambda m, v: m(v))
        h = conv(self.conv1, F.silu(self.norm1(x), inplace=True))
        h = F.silu(F.group_norm(h, self.norm2.num_groups, w2, b2, self.norm2.eps), inplace=True)
        return (x if isinstance(self.skip, nn.Identity) else conv(self.skip, x)) + conv(self.conv2, h)


class MaskDenoiser(nn.Module):
    """f_theta(x_t, t, F_s): a two-level U-Net at the mask resolution M = G * mask_scale.

    The condition F_s (B,D,G,G) is projected to C channels once per frame (`encode_cond`) and
    reused by every step and every one of the k chains; the noisy mask enters through a
    zero-initialised 3x3 conv added to it (CamoDiffusion's pattern, so training starts from a
    condition-only predictor). Output: x0 logits (B,1,M,M)."""

    def __init__(self, dim: int, channels: int = 64, mask_scale: int = 1):
        super().__init__()
        c, temb = channels, 4 * channels
        self.mask_scale, self.channels = mask_scale, c
        self.cond_proj = nn.Sequential(nn.Conv2d(dim, c, 1), nn.GroupNorm(_groups(c), c), nn.SiLU())
        self.mask_in = nn.Conv2d(1, c, 3, padding=1)
        nn.init.zeros_(self.mask_in.weight)
        nn.init.zeros_(self.mask_in.bias)
        self.time_mlp = nn.Sequential(nn.Linear(c, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.enc0 = ResBlock(c, c, temb)
        self.down1, self.enc1 = nn.Conv2d(c, c, 3, stride=2, padding=1), ResBlock(c, 2 * c, temb)
        self.down2, self.mid = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), ResBlock(2 * c, 2 * c, temb)
        self.dec1 = ResBlock(4 * c, 2 * c, temb)
        self.dec0 = ResBlock(3 * c, c, temb)
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, 1, 1))
        self.__dict__["fused"] = None  # see fuse(): plain attribute, never in the state_dict

    def encode_cond(self, feats: torch.Tensor) -> torch.Tensor:
        """(B,D,G,G) multi-modal search features -> (B,C,M,M), computed once per frame."""
        h = self.cond_proj(feats)
        if self.mask_scale > 1:
            h = F.interpolate(h, scale_factor=self.mask_scale, mode="bilinear", align_corners=False)
        return h

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, folded=None) -> torch.Tensor:
        """x0 logits. folded: (consts, weights) of `fuse` for a t shared by the batch (the sampler's
        inference form, same function; see `forward_folded`)."""
        if folded is not None:
            return self.forward_folded(x_t, cond, *folded)
        temb = self.time_mlp(timestep_embedding(t, self.channels))
        h0 = self.enc0(cond + self.mask_in(x_t), temb)
        h1 = self.enc1(self.down1(h0), temb)
        h = self.mid(self.down2(h1), temb)
        h = self.dec1(torch.cat([F.interpolate(h, size=h1.shape[-2:], mode="nearest"), h1], 1), temb)
        h = self.dec0(torch.cat([F.interpolate(h, size=h0.shape[-2:], mode="nearest"), h0], 1), temb)
        return self.out(h)

    # Inference form (timm's reparameterize_model idea): the same function as `forward` for a
    # timestep shared by the whole batch, with each step's FiLM folded into its norms.
    @torch.no_grad()
    def fuse(self, ts) -> None:
        """Precompute, for each timestep in `ts`, every ResBlock's folded (w2, b2), and channels-last
        copies of the conv weights (batch-1 convs then take oneDNN instead of the much slower
        `_slow_conv2d_forward`, 2-3x per conv here). Not in the state_dict; call again after the
        weights or the device change (DMTrack.fuse_for_inference does; train() drops them)."""
        dev = self.time_mlp[0].weight.device
        consts = {}
        for t in ts:
            temb = self.time_mlp(timestep_embedding(torch.tensor([int(t)], device=dev), self.channels))
            consts[int(t)] = [blk.folded_affine(temb) for blk in self._blocks()]
        weights = {id(m): m.weight.contiguous(memory_format=torch.channels_last)
                   for m in self.modules() if isinstance(m, nn.Conv2d)}
        self.__dict__["fused"] = (consts, weights)

    def unfuse(self) -> None:
        self.__dict__["fused"] = None

    def train(self, mode: bool = True):
        if mode:
            self.unfuse()
        return super().train(mode)

    def _blocks(self):
        return (self.enc0, self.enc1, self.mid, self.dec1, self.dec0)

    def forward_folded(self, x_t: torch.Tensor, cond: torch.Tensor, consts, weights) -> torch.Tensor:
        """`forward(x_t, t, cond)` for one t shared by all N chains, from `fuse`: consts = that step's
        folded affines, weights = the channels-last conv weights. cond is best channels-last."""
        conv = lambda m, v: F.conv2d(v, weights[id(m)], m.bias, m.stride, m.padding)
        (a0, b0), (a1, b1), (am, bm), (ad1, bd1), (ad0, bd0) = consts
        h0 = self.enc0.forward_folded(cond + conv(self.mask_in, x_t), a0, b0, conv)
        h1 = self.enc1.forward_folded(conv(self.down1, h0), a1, b1, conv)
        h = self.mid.forward_folded(conv(self.down2, h1), am, bm, conv)
        h = self.dec1.forward_folded(torch.cat([F.interpolate(h, size=h1.shape[-2:], mode="nearest"), h1], 1), ad1, bd1, conv)
        h = self.dec0.forward_folded(torch.cat([F.interpolate(h, size=h0.shape[-2:], mode="nearest"), h0], 1), ad0, bd0, conv)
        return conv(self.out[2], F.silu(self.out[0](h), inplace=True))


# ----------------------------------------------------------------------------- sampler
def sample_masks(denoiser, schedule: DiffusionSchedule, cond: torch.Tensor, steps: int, eta: float = 0.0,
                 return_chain: bool = False, noise: torch.Tensor | None = None, every_step: bool = False):
    """Run len(cond) chains x_T ~ N(0, I) -> x_0 in one batch (Eq. 5, DDIM steps).

    cond: (N,C,M,M) from `denoiser.encode_cond` (already expanded to the N = B*k chains).
    noise: where the chains' randomness comes from: None = torch's global RNG; a tensor = x_T itself
    (the ancestral steps' noise then from the global RNG); a function returning fresh (N,1,M,M) float32
    N(0, I) noise at each call = x_T and then each ancestral step's z, in that order (the trackers give
    each sequence its own generator this way, so a sequence's chains do not depend on its neighbours).
    Returns (logits, chain): logits of the final x0 prediction (N,1,M,M), or with every_step the
    logits of every step's x0 prediction (steps,N,1,M,M) (the time ensemble of the `chain` reading
    of test_average); chain (return_chain) is the list x_T, x_t1, ..., x_0 of (N,1,M,M) states
    mapped to [0,1] by (x + 1) / 2, clamped, else None.

    A MaskDenoiser fused for these steps (`MaskDenoiser.fuse`, which DMTrack.fuse_for_inference
    calls) takes its folded path, and eta = 0 steps use `DiffusionSchedule.ddim_plan`'s floats:
    the same function, far fewer ops per step (tests/test_inference_fastpath.py checks both agree).
    A step it was not fused for sends the whole chain down the plain path."""
    n, _, m, _ = cond.shape
    # x_T drawn in float32 whatever the autocast dtype, so a tracker that draws it itself
    # (dmtrack.track.batched, one generator per sequence) gets the same numbers
    draw = noise if callable(noise) else (lambda: torch.randn(n, 1, m, m, device=cond.device))
    x = (noise if isinstance(noise, torch.Tensor) else draw()).to(cond.dtype)
    chain = [x] if return_chain else None
    logits, all_logits = None, []
    plan = schedule.ddim_plan(steps)
    fused = getattr(denoiser, "fused", None)
    folded = fused is not None and all(p[0] in fused[0] for p in plan)
    if folded:
        consts, weights = [fused[0][p[0]] for p in plan], fused[1]
        cond = cond.contiguous(memory_format=torch.channels_last)
    for i, (t, t_next, c_x, c_x0) in enumerate(plan):
        tt = torch.full((n,), t, device=cond.device, dtype=torch.long)
        logits = denoiser(x, tt, cond, folded=(consts[i], weights)) if folded else denoiser(x, tt, cond)
        if every_step:
            all_logits.append(logits)
        if t_next < 0 and not return_chain:
            break  # the last state is x0_hat itself, and only the logits are returned
        x0_hat = logits_to_x0(logits).clamp(-1, 1)
        if eta > 0 or t_next < 0:
            z = draw().to(x.dtype) if eta > 0 and t_next >= 0 else None  # float32 draws: the same numbers under autocast
            x = schedule.ddim_step(x, x0_hat, t, t_next, eta, z)
        else:
            x = (x0_hat * c_x0).add_(x, alpha=c_x)  # = ddim_step(x, x0_hat, t, t_next, 0)
        if return_chain:
            chain.append(x)
    if return_chain:
        chain = [((c + 1) / 2).clamp(0, 1) for c in chain]
    return (torch.stack(all_logits) if every_step else logits), chain
