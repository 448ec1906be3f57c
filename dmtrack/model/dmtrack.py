"""The assembled DMTrack model (Fig. 2) and its Table 2 variants.

    visual:  template, search -> H_x (B,N_x,D), removed (B,N_x)        ViT/16 + CE (Sec. 3.1)
    text:    sentence -> T_q (B,L,D)                                   BERT-family (Sec. 3.1)
    fusion:  F_s = CrossAttn(H_x; T_q) + H_x                           Eq. 2 (no_language: F_s = H_x)
    diffusion: f_theta(x_t, t, F_s) -> mask logits at M x M            Eqs. 3-5, Figs. 3-5
    filter:  top-k softmax re-weighting of the averaged mask           Fig. 6
    head:    H_x + Conv1x1(unshuffle(filtered mask)) -> centre head    Sec. 3.3 (mask-driven;
             head_features='fused' adds the mask to F_s instead of H_x)

Variants: no_diffusion (head on F_s), not_mask_driven (head on the mask projection alone),
no_language, no_gt_ce, single_sample_train, full. See docs/method.md for every reading.

reading = authors builds the first author's modules instead (dmtrack/model/authors.py): fusion =
AuthorsCrossAttention; diffusion = AuthorsDenoiser on the continuous log-SNR schedule, whose D-channel
mask tokens pass AuthorsFilter and a linear layer reads the mask logits off them; head input = base +
those tokens. The variants mean the same under either reading.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Config
from .authors import AuthorsCrossAttention, AuthorsDenoiser, AuthorsFilter, LogSNRSchedule, authors_sample, text_grid
from .diffusion import DiffusionSchedule, MaskDenoiser, logits_to_x0, sample_masks
from .filtering import FeatureFilter
from .fusion import GatedCrossAttention
from .head import CenterHead, decode_boxes
from .losses import box_losses, focal_loss, gaussian_heatmap, struct_kernel_size, structure_loss
from .vit import VisualEncoder, keep_rate_schedule

_DOUBLE_MODES = ("first", "second", "mean")


def box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B,4) cxcywh normalised -> (B,1,size,size) soft box mask: the fraction of each cell the box
    covers (the pixel-resolution box mask average-pooled to the grid; 1 inside, 0 outside)."""
    x1, y1 = (boxes[:, 0] - boxes[:, 2] / 2) * size, (boxes[:, 1] - boxes[:, 3] / 2) * size
    x2, y2 = (boxes[:, 0] + boxes[:, 2] / 2) * size, (boxes[:, 1] + boxes[:, 3] / 2) * size
    cells = torch.arange(size, device=boxes.device, dtype=boxes.dtype)
    cover = lambda a, b: (torch.minimum(b[:, None], cells + 1) - torch.maximum(a[:, None], cells)).clamp(0, 1)
    return (cover(y1, y2)[:, :, None] * cover(x1, x2)[:, None, :]).unsqueeze(1)


def floored_box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B,4) cxcywh normalised -> (B,1,size,size) the authors' box mask (A:train/data/sampler.py:223-231): the
    top-left corner x, y and the sides w, h each clamped to [0, 1], scaled to the grid and floored on their own,
    then 1 on rows y .. y+h-1 and columns x .. x+w-1. A box under one cell wide gets an empty mask."""
    corner = boxes[:, :2] - boxes[:, 2:] / 2
    x, y, w, h = (torch.cat([corner, boxes[:, 2:]], 1).clamp(0, 1) * size).floor().unbind(1)
    cells = torch.arange(size, device=boxes.device, dtype=boxes.dtype)
    span = lambda a, n: (cells >= a[:, None]) & (cells < (a + n)[:, None])
    return (span(y, h)[:, :, None] & span(x, w)[:, None, :]).to(boxes.dtype).unsqueeze(1)


def _mean_logit(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Logit of the mean probability along `dim`, in float32 (in float16 1 - 1e-6 rounds to 1: logit = inf)."""
    return torch.logit(logits.float().sigmoid().mean(dim), eps=1e-6)


def _loss_sampling(cfg: Config) -> str:
    """Which sampling of double-sample training the loss uses: cfg.double_sample_mode, or one of first |
    second | mean drawn uniformly from torch's RNG when it is random (Sec. 3.2)."""
    if cfg.double_sample_mode == "random":  # 1/3 each, as the authors' random.randint(0, 2) over mean, loss1, loss2 (actor:39)
        return _DOUBLE_MODES[int(torch.randint(0, 3, ()).item())]
    return cfg.double_sample_mode


def sampling_plan(cfg: Config, samples=None, steps=None, average=None) -> tuple[int, int, str]:
    """(chains, DDIM steps per chain, reading) of a test-time forward with k = samples (defaults:
    cfg.test_samples, cfg.sampling_steps, cfg.test_average): final = k independent chains of
    `steps` steps each; chain = one chain of k steps whose k x0 predictions are averaged
    (CamoDiffusion's time ensemble; `steps` must then be None or k); maps = one chain of k steps, the
    head run on each step's mask and its maps averaged (the authors' reading)."""
    k, average = int(samples or cfg.test_samples), average or cfg.test_average
    if average not in ("final", "chain", "maps"):
        raise ValueError(f"average must be final, chain or maps, got {average!r}")
    one_chain = average != "final"  # chain and maps: one chain of k steps
    n = k if one_chain else int(steps or cfg.sampling_steps)
    if one_chain and steps is not None and steps != k:
        raise ValueError(f"the {average} reading runs one chain of k = {k} steps; steps = {steps} applies to the final reading")
    if k < 1 or not 1 <= n <= cfg.diffusion_timesteps:
        raise ValueError(f"samples (k) must be >= 1 and steps in [1, {cfg.diffusion_timesteps}], got k={k}, steps={n}")
    return (1 if one_chain else k), n, average


def resolve_eta(cfg: Config, eta: float | None = None) -> float | None:
    """The DDIM eta a test-time forward samples with: `eta`, or cfg.sampler_eta when None (1 = the paper's
    stochastic reverse step, Eq. 5; 0 = deterministic DDIM). None under reading=authors: the authors' own
    ancestral sampler (authors.authors_sample) has no eta, so any other than 1 (or None) is refused, as is one
    outside [0, 1]."""
    if cfg.reading == "authors":
        if eta is not None and float(eta) != 1.0:
            raise ValueError(f"eta {eta!r}: reading=authors samples with the authors' ancestral sampler, which has no "
                             "DDIM eta (leave it unset)")
        return None
    eta = float(cfg.sampler_eta if eta is None else eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    return eta


@dataclass
class DMTrackOutput:
    """One forward's outputs (as VisualOutput is the encoder's); a field the path taken does not
    produce is None. Maps are over the G x G search grid, masks at M x M = G * mask_scale."""
    score_map: torch.Tensor  # (B,1,G,G) centre score in (0, 1)
    offset_map: torch.Tensor  # (B,2,G,G)
    size_map: torch.Tensor  # (B,2,G,G) normalised (w, h)
    pred_boxes: torch.Tensor  # (B,4) cxcywh normalised to the search crop (arg-max decoding)
    removed: torch.Tensor | None = None  # (B,N_x) bool: search tokens candidate elimination dropped
    mask: torch.Tensor | None = None  # (B,1,M,M) the filtered mask the head uses (None without diffusion)
    mask_logits: list | None = None  # logits the structure loss is on
    mask_target: torch.Tensor | None = None  # (B,1,M,M) box mask (GT-CE applied in training), when gt is given
    samples_masks: torch.Tensor | None = None  # test: (B,k,1,M,M) the k averaged mask probabilities (final reading:
    # each chain's final mask; chain and maps readings: the one chain's k successive x0 predictions)
    chain: list | None = None  # test with return_chain: x_T .. x_0 of each chain, (B,chains,1,M,M) in [0,1]
    sample_logits: list | None = None  # training: logits of each sampling (double sampling: two)
    mask_select: str | None = None  # training: which sampling the loss used (first|second|mean|single)
    gt_ce: bool | None = None  # training: whether GT-CE shaped the target
    passes: list | None = None  # training with double_sample_loss=full: each sampling's own output (DMTrack.loss picks)


class DMTrack(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg  # its ranges and choices were checked when it was built (Config.validate)
        D, authors = cfg.embed_dim, cfg.reading == "authors"
        self.visual = VisualEncoder(cfg)
        self.grid = G = self.visual.grid
        self.text = self.fusion = None
        if cfg.use_language:
            from .language import TextEncoder  # transformers is slow to import; only when needed
            self.text = TextEncoder(cfg)
            self.fusion = (AuthorsCrossAttention(D, cfg.fusion_heads, G, text_grid(cfg.text_max_len)) if authors
                           else GatedCrossAttention(D, cfg.fusion_heads))
        self.mask_size = None
        if cfg.use_diffusion and authors:  # the authors' mask is the G x G token grid (mask_scale 1, Config.validate)
            self.mask_size, self.schedule = G, LogSNRSchedule()
            self.denoiser = AuthorsDenoiser(D, cfg.authors_view_scramble)
            self.filter = AuthorsFilter(D, G * G, cfg.authors_view_scramble) if cfg.use_filter else nn.Identity()
            self.struct_kernel = cfg.struct_kernel or struct_kernel_size(G, cfg.search_size)
        elif cfg.use_diffusion:
            s = cfg.mask_scale
            self.mask_size = G * s
            self.schedule = DiffusionSchedule(cfg.diffusion_timesteps, cfg.beta_schedule)
            self.denoiser = MaskDenoiser(D, cfg.denoiser_channels, s)
            self.filter = FeatureFilter(cfg.filter_topk, enabled=cfg.use_filter)
            # linear map of the filtered mask to the visual width: pixel-unshuffle keeps every one of
            # the s x s mask cells under a token as its own channel, then a 1x1 conv (= Linear)
            self.mask_proj = nn.Conv2d(s * s, D, 1)
            self.struct_kernel = cfg.struct_kernel or struct_kernel_size(self.mask_size, cfg.search_size)
        self.head = CenterHead(D, cfg.head_channels)

    # ------------------------------------------------------------------ language
    @property
    def device(self) -> torch.device:
        return self.head.score[0].weight.device

    def tokenize(self, sentences: list[str]):
        """dict(input_ids, attention_mask) (B, text_max_len) on CPU; None when the model has no language."""
        return self.text.tokenize(sentences) if self.text is not None else None

    def encode_text(self, tokens):
        """(feats (B,L,D), mask (B,L) bool) on the model's device, or None; call once per sequence
        when tracking. Pass the tokens as `tokenize` returns them, on the host (TextEncoder.forward)."""
        if self.text is None or tokens is None:
            return None
        return self.text(tokens["input_ids"], tokens["attention_mask"])

    # ------------------------------------------------------------------ diffusion pieces
    def mask_target(self, gt_boxes: torch.Tensor, removed: torch.Tensor | None) -> torch.Tensor:
        """Diffusion target: the box mask at M x M (gt_mask: soft coverage, or the authors' floored box); with
        GT-CE (Fig. 5) the search tokens that CE removed are set to 0 (each token covers mask_scale^2 cells),
        so only cells inside the box change."""
        m = (box_mask if self.cfg.gt_mask == "soft" else floored_box_mask)(gt_boxes.float(), self.mask_size)
        if removed is not None:
            s, G = self.cfg.mask_scale, self.grid
            keep = (~removed).float().view(-1, 1, G, G)
            m = m * keep.repeat_interleave(s, 2).repeat_interleave(s, 3)
        return m

    def _double_sample(self, cond: torch.Tensor):
        """Fig. 4. 1st sampling: pure noise at t = T-1, independent of the GT (double_sample_first_input=noise),
        or the all-background mask (-1) noised to a random t (empty_mask: A:models/ostrack/ostrack.py:117-123).
        2nd sampling: its noisy input is the 1st sampling's output x0_1, re-noised to a random t by Eq. 4
        ('renoise') or fed as it is at a random t ('direct'); x0_1 = tanh(l1 / 2), or with
        double_sample_clamp_inplace the authors' 2 clamp_(l1, 0, 1) - 1 (ostrack.py:181-182), in place, so l1
        itself, which the 1st sampling's loss reads, is clamped too. Returns ([l1, l2], the logits the loss
        uses under double_sample_loss=mask, the choice, [p1, p2] the mask probabilities a head pass reads (p1
        taken before the clamp, as the authors' head ran before it))."""
        cfg, sch = self.cfg, self.schedule
        B, _, M, _ = cond.shape
        if cfg.double_sample_first_input == "noise":
            x_1 = torch.randn(B, 1, M, M, device=cond.device)
            t1 = torch.full((B,), sch.T - 1, device=cond.device, dtype=torch.long)
        else:  # near t = 0 an almost clean empty mask, not pure noise
            t1 = torch.randint(0, sch.T, (B,), device=cond.device)
            x_1 = sch.q_sample(torch.full((B, 1, M, M), -1.0, device=cond.device), t1)
        l1 = self.denoiser(x_1, t1, cond)
        p1 = l1.sigmoid()  # sigmoid keeps its output for the backward pass: the clamp below leaves p1's gradient as is
        x0_1 = 2 * l1.clamp_(0.0, 1.0) - 1 if cfg.double_sample_clamp_inplace else logits_to_x0(l1)
        if cfg.double_sample_detach:
            x0_1 = x0_1.detach()  # like a sampler chain: the 2nd step sees the 1st estimate as data
        t2 = torch.randint(0, sch.T, (B,), device=cond.device)
        x_in = sch.q_sample(x0_1, t2) if cfg.double_sample_input == "renoise" else x0_1
        l2 = self.denoiser(x_in, t2, cond)
        mode = _loss_sampling(cfg)
        used = {"first": l1, "second": l2}.get(mode)
        if used is None:  # the average of the two sampled masks, back to logits for the structure loss
            used = _mean_logit(torch.stack([l1, l2], 1), 1)
        return [l1, l2], used, mode, [p1, l2.sigmoid()]

    def _single_sample(self, cond: torch.Tensor, target: torch.Tensor):
        """The usual recipe (ablation): x_t = q_sample(2 m - 1, t), t uniform, predict x0."""
        t = torch.randint(0, self.schedule.T, (cond.shape[0],), device=cond.device)
        logits = self.denoiser(self.schedule.q_sample(2 * target - 1, t), t, cond)
        return [logits], logits, "single", [logits.sigmoid()]

    def _mask_head(self, base: torch.Tensor, p: torch.Tensor):
        """The mask-driven head (Sec. 3.3) on mask probabilities p (N,1,M,M): filtered (Fig. 6), then a linear map
        of the filtered mask added to `base` (H_x or F_s as (N,D,G,G); not_mask_driven: the mask term alone).
        Returns (filtered, score, offset, size)."""
        filtered = self.filter(p)
        mask_feat = self.mask_proj(F.pixel_unshuffle(filtered, self.cfg.mask_scale))
        return (filtered, *self.head(base + mask_feat if self.cfg.mask_driven else mask_feat))

    def _head_output(self, base: torch.Tensor, p: torch.Tensor, **fields) -> DMTrackOutput:
        """The output of the mask head on p; `fields` are its other DMTrackOutput fields."""
        filtered, score, offset, size = self._mask_head(base, p)
        return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), mask=filtered, **fields)

    # ------------------------------------------------------------------ forward
    def forward(self, template, search, text=None, gt_boxes=None, epoch=None, return_chain=False, noise=None,
                **sampling):
        """See the module docstring. Training path when `self.training` and gt_boxes is given
        (keep rate and GT-CE from `epoch`; epoch None = no CE, no GT-CE); otherwise the test-time
        sampling runs in one batch over features computed once, as `sampling` says (`_test_masks`'s
        keywords samples, steps, average, eta; each None = the config's test_samples, sampling_steps,
        test_average, sampler_eta), from `noise` when given (`sample_masks`: x_T as a (B*chains,1,M,M)
        tensor, crop-major as the chains, or a function drawing x_T and each ancestral step's noise),
        else from torch's RNG."""
        cfg, G = self.cfg, self.grid
        train = self.training and gt_boxes is not None
        keep_rate = (keep_rate_schedule(cfg, epoch) if epoch is not None else 1.0) if train else None
        vis = self.visual(template, search, keep_rate)
        h_x = vis.search
        B, N, D = h_x.shape
        if self.fusion is not None:
            if text is None:
                raise ValueError("this DMTrack variant uses language: pass text=model.encode_text(model.tokenize(...))")
            feats, tmask = text
            if feats.shape[0] != B:  # one sentence for the whole batch (tracking): broadcast it
                if feats.shape[0] != 1:
                    raise ValueError(f"text features for {feats.shape[0]} sentences but {B} search crops; pass 1 or {B}")
                feats, tmask = feats.expand(B, -1, -1), tmask.expand(B, -1)
            f_s = self.fusion(h_x, feats, tmask)
        else:
            f_s = h_x
        to_map = lambda t: t.transpose(1, 2).reshape(B, D, G, G)
        if not cfg.use_diffusion:  # plain OSTrack-style VL tracker
            score, offset, size = self.head(to_map(f_s))
            return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), removed=vis.removed)
        base = to_map(h_x if cfg.head_features == "visual" else f_s)
        if cfg.reading == "authors":  # the authors' denoiser reads F_s as a map itself (no condition encoder)
            if train:
                return self._authors_train_outputs(to_map(f_s), base, gt_boxes, epoch, keep_rate, vis.removed)
            return self._authors_test_outputs(to_map(f_s), base, vis.removed, gt_boxes, return_chain, noise, **sampling)
        cond = self.denoiser.encode_cond(to_map(f_s))  # once per frame
        if train:
            return self._train_outputs(cond, base, gt_boxes, epoch, keep_rate, vis.removed)
        return self._test_outputs(cond, base, vis.removed, gt_boxes, return_chain, noise, **sampling)

    def _train_target(self, gt_boxes, epoch, keep_rate, removed):
        """(diffusion target, whether GT-CE shaped it): GT-CE from gt_ce_start_epoch on, while CE removes tokens."""
        cfg = self.cfg
        gt_ce = cfg.gt_ce and epoch is not None and epoch >= cfg.gt_ce_start_epoch and keep_rate < 1.0
        return self.mask_target(gt_boxes, removed if gt_ce else None), gt_ce

    def _train_outputs(self, cond, base, gt_boxes, epoch, keep_rate, removed) -> DMTrackOutput:
        """Training (Fig. 4): the target (GT-CE from gt_ce_start_epoch on, while CE removes tokens), the
        sampling(s), and the head on the mask the loss uses; with double_sample_loss=full the head runs on
        each sampling's mask, and DMTrack.loss picks among the two passes' full losses (the authors')."""
        cfg = self.cfg
        target, gt_ce = self._train_target(gt_boxes, epoch, keep_rate, removed)
        logits, used, choice, probs = self._double_sample(cond) if cfg.double_sample else self._single_sample(cond, target)
        known = dict(removed=removed, mask_target=target, sample_logits=logits, mask_select=choice, gt_ce=gt_ce)
        if cfg.double_sample and cfg.double_sample_loss == "full":
            passes = [self._head_output(base, p, mask_logits=[l], **known) for l, p in zip(logits, probs)]
            return replace(passes[0], passes=passes)
        p = {"first": probs[0], "second": probs[-1]}.get(choice)  # the very masks the loss is on
        return self._head_output(base, used.sigmoid() if p is None else p, mask_logits=[used], **known)

    def _test_outputs(self, cond, base, removed, gt_boxes, return_chain, noise, samples=None, steps=None, average=None,
                      eta=None) -> DMTrackOutput:
        """Tracking: the k averaged masks (_test_masks) and the head on them; the maps reading instead runs the
        head on each step's mask and averages its score, size and offset maps along the chain (the authors':
        A:models/ostrack/ostrack.py:287-289, 322-325), the filtered masks too (for display)."""
        B = base.shape[0]
        p, extra = self._test_masks(cond, B, return_chain, noise, samples, steps, average, eta)
        if gt_boxes is not None:
            extra["mask_target"] = self.mask_target(gt_boxes, None)
        if sampling_plan(self.cfg, samples, steps, average)[2] == "maps":
            k = extra["samples_masks"].shape[1]
            parts = self._mask_head(base.repeat_interleave(k, 0), extra["samples_masks"].flatten(0, 1))
            filtered, score, offset, size = (t.unflatten(0, (B, k)).mean(1) for t in parts)
            return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), removed=removed, mask=filtered, **extra)
        return self._head_output(base, p, removed=removed, **extra)

    def _test_masks(self, cond: torch.Tensor, B: int, return_chain: bool, noise=None, samples=None, steps=None,
                    average=None, eta: float | None = None):
        """The k averaged masks of one frame (Fig. 3, test) under either reading of test_average:
        final: B*k chains in one batch, each chain's final x0 prediction; chain (and maps): B chains of k
        steps, every step's x0 prediction. Their mask probabilities are averaged. eta: the sampler's DDIM eta
        (None = cfg.sampler_eta; 1 = the paper's stochastic reverse step, 0 = deterministic DDIM)."""
        chains, n_steps, average = sampling_plan(self.cfg, samples, steps, average)
        eta = resolve_eta(self.cfg, eta)
        M = self.mask_size
        logits, chain = sample_masks(self.denoiser, self.schedule, cond if chains == 1 else cond.repeat_interleave(chains, 0),
                                     n_steps, eta, return_chain, noise, every_step=average != "final")
        if average != "final":  # (k steps, B, 1, M, M) -> (B, k, 1, M, M)
            logits = logits.transpose(0, 1)
        logits = logits.reshape(B, -1, 1, M, M)
        probs = logits.sigmoid()
        extra = dict(samples_masks=probs, mask_logits=[_mean_logit(logits, 1)])
        if chain is not None:
            extra["chain"] = [c.view(B, chains, 1, M, M) for c in chain]
        return probs.mean(1), extra

    # ------------------------------------------------------------------ reading = authors
    def _authors_pass(self, x_t: torch.Tensor, logsnr: torch.Tensor, f_map: torch.Tensor):
        """One pass of the authors' forward_head (A:models/ostrack/ostrack.py:209-239): the denoiser's mask
        tokens, filtered, are the mask features; a linear layer reads the mask logits off them.
        Returns (features (B, G*G, D), logits (B,1,G,G))."""
        feats = self.filter(self.denoiser(x_t, logsnr, f_map))
        return feats, self.denoiser.readout(feats).view(-1, 1, self.grid, self.grid)

    def _authors_double_sample(self, f_map: torch.Tensor):
        """`_double_sample` on the authors' modules, in their continuous time (t in [0, 1], 1 = pure noise), under
        the same switches: the 1st input is N(0, I) at t = 1 (double_sample_first_input=noise) or the empty mask
        (-1) noised to t ~ U(0, 1) (empty_mask, A:models/ostrack/ostrack.py:117-123); x0_1 = tanh(l1), the reading
        of their sampler (ostrack.py:318), or 2 clamp_(l1, 0, 1) - 1 in place (double_sample_clamp_inplace,
        ostrack.py:181-182); the 2nd input is x0_1 re-noised to t2 ~ U(0, 1) ('renoise') or x0_1 at t2 ('direct').
        Returns ([l1, l2], the logits the loss uses under double_sample_loss=mask, the choice, [p1, p2] the mask
        probabilities (p1 before the clamp), [f1, f2] the mask features a head pass adds)."""
        cfg, sch, G = self.cfg, self.schedule, self.grid
        B, dev = f_map.shape[0], f_map.device
        if cfg.double_sample_first_input == "noise":
            x_1, lam1 = torch.randn(B, 1, G, G, device=dev), sch.logsnr(torch.ones(B, device=dev))
        else:
            x_1, lam1 = sch.q_sample(torch.full((B, 1, G, G), -1.0, device=dev), torch.rand(B, device=dev))
        f1, l1 = self._authors_pass(x_1, lam1, f_map)
        p1 = l1.sigmoid()  # before the in-place clamp, as the authors' head pass ran before it
        x0_1 = 2 * l1.clamp_(0.0, 1.0) - 1 if cfg.double_sample_clamp_inplace else l1.tanh()
        if cfg.double_sample_detach:
            x0_1 = x0_1.detach()
        t2 = torch.rand(B, device=dev)
        x_in, lam2 = sch.q_sample(x0_1, t2) if cfg.double_sample_input == "renoise" else (x0_1, sch.logsnr(t2))
        f2, l2 = self._authors_pass(x_in, lam2, f_map)
        mode = _loss_sampling(cfg)
        used = {"first": l1, "second": l2}.get(mode)
        if used is None:  # the average of the two sampled masks, back to logits for the structure loss
            used = _mean_logit(torch.stack([l1, l2], 1), 1)
        return [l1, l2], used, mode, [p1, l2.sigmoid()], [f1, f2]

    def _authors_head(self, base: torch.Tensor, feats: torch.Tensor):
        """The head on base + the mask features (N, G*G, D) as a map (ostrack.py:240; not_mask_driven: the
        features alone): (score, offset, size)."""
        mask_feat = feats.transpose(1, 2).reshape(base.shape)
        return self.head(base + mask_feat if self.cfg.mask_driven else mask_feat)

    def _authors_head_output(self, base: torch.Tensor, feats: torch.Tensor, p: torch.Tensor, **fields) -> DMTrackOutput:
        score, offset, size = self._authors_head(base, feats)
        return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), mask=p, **fields)

    def _authors_train_outputs(self, f_map, base, gt_boxes, epoch, keep_rate, removed) -> DMTrackOutput:
        """`_train_outputs` on the authors' modules: single-sample training noises 2 m - 1 to t ~ U(0, 1); the
        head adds the features of the pass the loss uses (the mean of both passes' for 'mean'), or, with
        double_sample_loss=full, each pass's own (two head passes, DMTrack.loss picks)."""
        cfg, sch = self.cfg, self.schedule
        target, gt_ce = self._train_target(gt_boxes, epoch, keep_rate, removed)
        if cfg.double_sample:
            logits, used, choice, probs, feats = self._authors_double_sample(f_map)
        else:
            f, l = self._authors_pass(*sch.q_sample(2 * target - 1, torch.rand(f_map.shape[0], device=f_map.device)), f_map)
            logits, used, choice, probs, feats = [l], l, "single", [l.sigmoid()], [f]
        known = dict(removed=removed, mask_target=target, sample_logits=logits, mask_select=choice, gt_ce=gt_ce)
        if cfg.double_sample and cfg.double_sample_loss == "full":
            passes = [self._authors_head_output(base, f, p, mask_logits=[l], **known) for l, p, f in zip(logits, probs, feats)]
            return replace(passes[0], passes=passes)
        i = {"first": 0, "second": -1, "single": 0}.get(choice)  # None: the mean of the two passes
        f, p = ((feats[0] + feats[1]) / 2, used.sigmoid()) if i is None else (feats[i], probs[i])
        return self._authors_head_output(base, f, p, mask_logits=[used], **known)

    def _authors_test_outputs(self, f_map, base, removed, gt_boxes, return_chain, noise, samples=None, steps=None,
                              average=None, eta=None) -> DMTrackOutput:
        """Tracking on the authors' modules: `authors_sample` under `sampling_plan(cfg, samples, steps, average)`.
        final: the k chains' last mask features averaged, one head pass; chain: one chain's k steps' features
        averaged (the paper's "we average the mask features obtained through multiple samplings"); maps: the
        head on each step's features, its score, size and offset maps averaged (ostrack.py:287-289, 322-325).
        `mask` and `samples_masks` are sigmoid(logits), what the structure loss trains (for display)."""
        B, D, G, _ = f_map.shape
        chains, n_steps, average = sampling_plan(self.cfg, samples, steps, average)
        resolve_eta(self.cfg, eta)  # the authors' sampler has no eta: refuses one it cannot run
        f = f_map if chains == 1 else f_map.repeat_interleave(chains, 0)
        feats, logits, chain = authors_sample(lambda x, lam: self._authors_pass(x.to(f.dtype), lam, f), self.schedule,
                                              (B * chains, 1, G, G), f.device, n_steps, noise, average != "final", return_chain)
        if average != "final":  # (k steps, B, ...) -> (B, k, ...)
            feats, logits = feats.transpose(0, 1), logits.transpose(0, 1)
        feats, logits = feats.reshape(B, -1, G * G, D), logits.reshape(B, -1, 1, G, G)
        probs = logits.sigmoid()
        extra = dict(removed=removed, samples_masks=probs, mask_logits=[_mean_logit(logits, 1)], mask=probs.mean(1))
        if chain is not None:
            extra["chain"] = [c.view(B, chains, 1, G, G) for c in chain]
        if gt_boxes is not None:
            extra["mask_target"] = self.mask_target(gt_boxes, None)
        if average == "maps":
            k = feats.shape[1]
            parts = self._authors_head(base.repeat_interleave(k, 0), feats.flatten(0, 1))
            score, offset, size = (t.unflatten(0, (B, k)).mean(1) for t in parts)
        else:
            score, offset, size = self._authors_head(base, feats.mean(1))
        return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), **extra)

    # ------------------------------------------------------------------ inference form
    def fuse_for_inference(self, samples=None, steps=None, average=None) -> "DMTrack":
        """Switch to the inference form, as timm's `reparameterize_model`: eval mode, the head's
        three branches folded into one conv stack (BN folded in), the denoiser's FiLM constants
        precomputed for the DDIM timesteps of `sampling_plan(cfg, samples, steps, average)` (the
        config's by default; a forward with another plan takes the plain path for its steps).
        The same function with fewer ops (tests check it). Call after the weights and the device
        are final; `train()` and `load_state_dict` drop it."""
        self.eval()
        self.head.fuse()
        if isinstance(getattr(self, "denoiser", None), MaskDenoiser):  # the authors' denoiser has no folded form
            n_steps = sampling_plan(self.cfg, samples, steps, average)[1]
            self.denoiser.fuse([t for t, *_ in self.schedule.ddim_plan(n_steps)])
        return self

    def unfuse(self) -> None:
        self.head.unfuse()
        if isinstance(getattr(self, "denoiser", None), MaskDenoiser):
            self.denoiser.unfuse()

    def compile_parts(self) -> "DMTrack":
        """torch.compile (in place: the state_dict keeps its names) the parts whose inputs are
        tensors only: the ViT blocks outside the CE layers, the fusion, the denoiser and the head,
        with dynamic shapes (candidate elimination's keep rate changes the token count during its
        warm-up). The epoch's schedule, CE's top-k and the double-sampling choice stay eager
        Python: a compiled forward would specialise on the epoch and recompile at every step."""
        for i, blk in enumerate(self.visual.blocks):
            if i not in self.visual.ce_layers:
                blk.compile(dynamic=True)
        for part in (self.fusion, getattr(self, "denoiser", None), self.head):
            if part is not None:
                part.compile(dynamic=True)
        return self

    # ------------------------------------------------------------------ checkpoints
    def frozen_text_state(self) -> dict:
        """A frozen BERT's weights by state-dict key ({} when there is none, or it is fine-tuned):
        they are the text encoder's own files, rebuilt from cfg.text_encoder, so checkpoints leave
        them out (dmtrack.model.weights.save_checkpoint)."""
        if self.text is None or self.cfg.text_finetune:
            return {}
        return {f"text.bert.{k}": v for k, v in self.text.bert.state_dict().items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """nn.Module's, after dropping the inference form; a state without any of the frozen BERT's
        keys (a checkpoint that left them out) keeps this model's own BERT. Any other missing key,
        or only some of the BERT's, is still an error under `strict`."""
        self.unfuse()  # the fused constants were computed from the weights being replaced
        own = self.frozen_text_state()
        if own and not any(k in state_dict for k in own):
            state_dict = {**state_dict, **own}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ loss and optimiser
    def loss(self, out: DMTrackOutput, gt_boxes: torch.Tensor) -> dict:
        """Eq. 6 with cfg.w_* weights; struct is 0 without a diffusion mask. An output with `passes`
        (double_sample_loss=full) gives each term of the pass mask_select picked, or the mean of both passes'
        (the authors' actor: A:train/actors/ostrack.py:37-66; the mean of two weighted sums is that of each term)."""
        if out.passes:
            picked = {"first": out.passes[:1], "second": out.passes[1:]}.get(out.mask_select, out.passes)
            terms = [self.loss(p, gt_boxes) for p in picked]
            return {k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]}
        cfg = self.cfg
        focal = focal_loss(out.score_map, gaussian_heatmap(gt_boxes, self.grid, peak=cfg.heatmap_peak))
        giou, l1, iou = box_losses(out.pred_boxes, gt_boxes)
        if cfg.use_diffusion and out.mask_target is not None:
            struct = torch.stack([structure_loss(l, out.mask_target, self.struct_kernel, cfg.struct_bce_weighted)
                                  for l in out.mask_logits]).mean()
        else:
            struct = focal.new_zeros(())
        total = cfg.w_focal * focal + cfg.w_giou * giou + cfg.w_l1 * l1 + cfg.w_struct * struct
        return {"total": total, "focal": focal, "giou": giou, "l1": l1, "struct": struct, "iou": iou}

    def param_groups(self) -> list[dict]:
        """AdamW groups: backbone (backbone_lr), fine-tuned BERT (text_lr), the rest (lr); no weight
        decay on norms, biases, position embeddings, gates and the filter temperature."""
        cfg = self.cfg
        buckets: dict[tuple[str, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            part = "backbone" if name.startswith("visual.") else "text" if name.startswith("text.bert.") else "rest"
            no_decay = p.ndim <= 1 or "pos_embed" in name or "gate" in name or "log_tau" in name
            buckets.setdefault((part, no_decay), []).append(p)
        lrs = {"backbone": cfg.backbone_lr, "text": cfg.text_lr, "rest": cfg.lr}
        return [{"params": ps, "lr": lrs[part], "weight_decay": 0.0 if nd else cfg.weight_decay,
                 "name": f"{part}{'_no_decay' if nd else ''}"} for (part, nd), ps in buckets.items()]


def build_model(cfg: Config) -> DMTrack:
    """DMTrack for `cfg`; cfg.pretrained (an OSTrack, MAE or DMTrack checkpoint) initialises
    the visual encoder, and the missing / unexpected keys are kept in `model.pretrained_report`."""
    model = DMTrack(cfg)
    model.pretrained_report = None
    if cfg.pretrained_file:
        from .weights import load_pretrained_backbone, load_pretrained_head
        model.pretrained_report = load_pretrained_backbone(model.visual, cfg.pretrained_file)
        if cfg.pretrained_head:
            load_pretrained_head(model.head, cfg.pretrained_file)
    return model
