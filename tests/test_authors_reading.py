"""reading = authors: each switch that follows the first author's released code (docs/method.md, "reading =
authors: the switches"), checked by hand on small examples, and every variant trained and tracked under it."""
import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from dmtrack import build_model, experiments, load_config
from dmtrack.config import _READINGS, BASE, PROFILES, VARIANTS, Config, ConfigError, config_from_dict
from dmtrack.model import box_mask
from dmtrack.model.dmtrack import DMTrackOutput, floored_box_mask
from dmtrack.model.head import decode_boxes
from dmtrack.model.losses import focal_loss, gaussian_heatmap, structure_loss
from dmtrack.model.vit import VisualEncoder
from dmtrack.track import Tracker
from dmtrack.train.loop import train_step
from test_model_encoders import mlp_token_counts

torch.set_num_threads(1)  # shared CPU: tiny ops only wait on each other with more threads
GT = torch.tensor([[0.30, 0.35, 0.30, 0.40], [0.65, 0.60, 0.25, 0.20]])
SENTENCES = ["a red car on the road", "a dog running on grass"]


def _inputs(cfg, b=2):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, 3, cfg.template_size, cfg.template_size, generator=g),
            torch.randn(b, 3, cfg.search_size, cfg.search_size, generator=g))


# ----------------------------------------------------------------------------- the config
@pytest.mark.parametrize("profile", PROFILES)
def test_reading_paper_is_the_default_and_authors_sets_every_switch(profile):
    for variant in VARIANTS + (BASE,):
        assert load_config(profile, variant, reading="paper") == load_config(profile, variant)
    paper, authors = load_config(profile), load_config(profile, reading="authors")
    assert paper.reading == "paper" and authors.reading == "authors"
    exp = experiments.get(profile)
    scaled = set(exp["model"]) | set(exp["scratch"])  # keys a profile sets to its own scale (gt_ce_start_epoch, text_cache)
    for key, value in _READINGS["authors"].items():
        assert getattr(authors, key) == value, key
        if key not in scaled:
            assert getattr(paper, key) == getattr(Config(), key), key  # each switch's default is the paper reading
    assert config_from_dict(authors.to_dict()) == authors  # a checkpoint's saved config rebuilds as it was trained
    assert load_config(profile, reading="authors", gt_mask="soft").gt_mask == "soft"  # the user's overrides come last


def test_the_paper_profile_takes_the_authors_runnable_384_configuration_and_the_embedded_ones_keep_their_sizes():
    cfg = load_config("paper", reading="authors")
    assert (cfg.template_size, cfg.search_size, cfg.search_factor) == (192, 384, 5.0)
    assert cfg.ce_layers == (5, 8, 11) and cfg.ce_keep_ratios == (0.8, 0.8, 0.8) and cfg.ce_keep_ratio == 0.8
    assert (cfg.epochs, cfg.lr_drop_frac, cfg.batch_size, cfg.lr, cfg.backbone_lr) == (50, 0.9, 32, 1e-4, 1e-5)
    assert cfg.train_datasets == {"lasot": 1.0} and (cfg.ce_start_epoch, cfg.ce_warm_epochs) == (30, 40)
    for profile in ("smoke", "demo"):
        paper, authors = load_config(profile), load_config(profile, reading="authors")
        for key in ("template_size", "search_size", "search_factor", "ce_layers", "ce_keep_ratio", "epochs", "lr"):
            assert getattr(authors, key) == getattr(paper, key), (profile, key)


def test_the_new_keys_are_checked():
    with pytest.raises(ConfigError, match="'reading' = 'code' is out of range; allowed: paper | authors"):
        load_config("smoke", reading="code")
    with pytest.raises(ConfigError, match=r"'ce_keep_ratios' = \(0.5,\) is out of range; allowed: \(\) or 3 ratios"):
        load_config("paper", ce_keep_ratios=(0.5,))
    with pytest.raises(ConfigError, match="'ce_keep_ratios' = .* is out of range"):
        load_config("paper", ce_keep_ratios=(0.5, 0.0, 1.0))
    with pytest.raises(ConfigError, match="'text_cache' = 4096 is out of range; allowed: 0 with text_dropout"):
        load_config("demo", text_dropout=True)  # dropout makes BERT's output differ per call: no cache
    for key, bad in (("gt_mask", "hard"), ("double_sample_first_input", "zeros"), ("double_sample_loss", "box"),
                     ("ce_test_template_range", "centre"), ("test_average", "mean"), ("heatmap_peak", "ceil")):
        with pytest.raises(ConfigError, match=f"'{key}' = '{bad}' is out of range"):
            load_config("smoke", **{key: bad})


# ----------------------------------------------------------------------------- the ground-truth mask
def test_floored_box_mask_by_hand():
    # 8x8 grid; x1, y1, w, h each floored on their own: (0.15, 0.225, 0.3, 0.35) * 8 = (1.2, 1.8, 2.4, 2.8) -> 1, 1, 2, 2
    m = floored_box_mask(torch.tensor([[0.30, 0.40, 0.30, 0.35]]), 8)[0, 0]
    want = torch.zeros(8, 8)
    want[1:3, 1:3] = 1
    assert torch.equal(m, want)
    # the soft mask covers every cell the box touches: x in [1.2, 3.6], y in [1.8, 4.6], 3 columns x 4 rows
    assert (box_mask(torch.tensor([[0.30, 0.40, 0.30, 0.35]]), 8)[0, 0] > 0).sum() == 12
    # a corner left of the crop is clamped to 0 but the width is not cut: x1 = -0.1 -> 0, w = 2.4 -> 2 (columns 0, 1)
    m = floored_box_mask(torch.tensor([[0.05, 0.50, 0.30, 0.25]]), 8)[0, 0]
    assert m.sum(0).nonzero().flatten().tolist() == [0, 1] and m.sum(1).nonzero().flatten().tolist() == [3, 4]
    # the far side runs past the crop: x1 = 0.7 * 8 = 5.6 -> 5, w = 3.2 -> 3 (columns 5, 6, 7)
    m = floored_box_mask(torch.tensor([[0.90, 0.50, 0.40, 0.25]]), 8)[0, 0]
    assert m.sum(0).nonzero().flatten().tolist() == [5, 6, 7]
    # under one cell wide: w = 0.1 * 8 = 0.8 -> 0, an empty mask
    assert floored_box_mask(torch.tensor([[0.5, 0.5, 0.1, 0.5]]), 8).sum() == 0


def test_mask_target_follows_gt_mask():
    model = build_model(load_config("smoke", gt_mask="floored"))  # 4x4 mask
    # x1, y1, w, h = 0.15, 0.15, 0.3, 0.4 -> 0.6, 0.6, 1.2, 1.6 -> 0, 0, 1, 1: the one cell (0, 0)
    want = torch.zeros(1, 1, 4, 4)
    want[0, 0, 0, 0] = 1
    assert torch.equal(model.mask_target(GT[:1], None), want)


# ----------------------------------------------------------------------------- double sampling
def _model(**overrides):
    torch.manual_seed(0)
    model = build_model(load_config("smoke", "full", **overrides)).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a denoiser that reads its input (mask_in starts at zero)
        for p in model.denoiser.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    cond = model.denoiser.encode_cond(torch.randn(2, model.cfg.embed_dim, model.grid, model.grid, generator=g))
    return model, cond


def _spy(model, first=None):
    """Record each denoiser call's input, timestep and raw output. The output handed on is a new tensor, so
    the recorded one stays as made (an in-place clamp changes only what was handed on); `first` replaces the
    1st call's output (kept in the graph: out * 0 + first)."""
    calls = []

    def hook(mod, args, out):
        raw = first if first is not None and not calls else out
        calls.append({"x": args[0].detach().clone(), "t": args[1].clone(), "raw": raw})
        return out * 0 + raw

    return calls, model.denoiser.register_forward_hook(hook)


def test_first_sampling_from_the_empty_mask_noised_at_a_random_t():
    model, cond = _model(double_sample_first_input="empty_mask")
    sch, (B, _, M, _) = model.schedule, cond.shape
    calls, h = _spy(model)
    torch.manual_seed(5)
    model._double_sample(cond)
    h.remove()
    torch.manual_seed(5)  # the draws _double_sample makes first: t1 ~ U{0..T-1}, then Eq. 4's noise
    t1, eps = torch.randint(0, sch.T, (B,)), torch.randn(B, 1, M, M)
    abar = sch.alphas_cumprod[t1].view(B, 1, 1, 1)
    assert torch.equal(calls[0]["t"], t1) and (t1 < sch.T - 1).all()
    torch.testing.assert_close(calls[0]["x"], abar.sqrt() * -1.0 + (1 - abar).sqrt() * eps)  # x0 = -1: all background
    # at t = 0 the input is the empty mask itself, almost clean: abar_0 ~ 1
    x = sch.q_sample(torch.full((1, 1, M, M), -1.0), torch.zeros(1, dtype=torch.long))
    assert (x < -0.95).all()


def test_in_place_clamp_and_no_detach():
    for clamp in (False, True):
        model, cond = _model(double_sample_clamp_inplace=clamp, double_sample_detach=False, double_sample_mode="first")
        # the 1st sampling's logits: -2.1, -1.77, ..., 2.9 in steps of 1/3; 3 of the 16 cells (0.23, 0.57, 0.9) in [0, 1]
        raw = torch.linspace(-2.1, 2.9, 16).view(1, 1, 4, 4).repeat(2, 1, 1, 1).requires_grad_()
        calls, h = _spy(model, raw)
        noised = []
        q_sample = model.schedule.q_sample
        model.schedule.q_sample = lambda x0, t, noise=None: noised.append(x0) or q_sample(x0, t, noise)
        (l1, l2), used, mode, (p1, _) = model._double_sample(cond)
        h.remove()
        torch.testing.assert_close(p1, raw.sigmoid())  # what a head pass reads: taken before the clamp
        if not clamp:
            assert torch.equal(l1, raw) and torch.equal(noised[0], torch.tanh(raw / 2))
            continue
        # the 2nd input is 2 clamp(l1, 0, 1) - 1, and l1 itself, the 1st sampling's loss input, is clamped
        assert torch.equal(l1, raw.clamp(0, 1)) and used is l1 and torch.equal(noised[0], 2 * raw.clamp(0, 1) - 1)
        assert l1.sigmoid().min() >= 0.5 and l1.sigmoid().max() <= 1 / (1 + math.exp(-1)) + 1e-6
        target = torch.zeros_like(raw)
        g1, = torch.autograd.grad(structure_loss(l1, target, 3), raw, retain_graph=True)
        outside = (raw < 0) | (raw > 1)
        assert outside.sum() == 2 * 13 and (g1[outside] == 0).all() and (g1[~outside] != 0).all()  # none where clamped
        # nothing detached: the 2nd sampling's loss reaches the 1st sampling's output
        g2, = torch.autograd.grad(structure_loss(l2, target, 3), raw)
        assert g2[~outside].abs().sum() > 0
    model, cond = _model(double_sample_detach=True)
    calls, h = _spy(model)
    (l1, l2), *_ = model._double_sample(cond)
    h.remove()
    assert torch.autograd.grad(l2.sum(), calls[0]["raw"], allow_unused=True)[0] is None  # detached: no path back


class _Echo(nn.Module):
    def forward(self, x, t, cond):
        return x


def test_random_pick_is_one_third_each_as_the_authors_randint():
    model, cond = _model()
    model.denoiser = _Echo()  # the pick alone: no network needed
    torch.manual_seed(0)
    n = 3000
    counts = {m: 0 for m in ("first", "second", "mean")}
    for _ in range(n):
        counts[model._double_sample(cond)[2]] += 1
    rng = random.Random(0)  # the authors' draw: random.randint(0, 2) over (mean, loss1, loss2)
    theirs = [0, 0, 0]
    for _ in range(n):
        theirs[rng.randint(0, 2)] += 1
    sd = math.sqrt(n * (1 / 3) * (2 / 3))  # binomial: 25.8
    for c in list(counts.values()) + theirs:
        assert abs(c - n / 3) < 4 * sd, (counts, theirs)


def test_full_loss_picks_among_the_two_head_passes():
    cfg = load_config("smoke", "full", double_sample_loss="full")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    z, x = _inputs(cfg)
    heads = []
    h = model.head.register_forward_hook(lambda m, a, o: heads.append(a[0].shape[0]))
    for mode in ("first", "second", "mean"):
        model.cfg = cfg.replace(double_sample_mode=mode)
        heads.clear()
        out = model(z, x, model.encode_text(model.tokenize(SENTENCES)), gt_boxes=GT, epoch=3)
        assert heads == [2, 2] and len(out.passes) == 2 and out.mask_select == mode  # one head pass per sampling
        one, two = (model.loss(p, GT) for p in out.passes)
        assert one["struct"] != two["struct"] and one["focal"] != two["focal"]  # two passes, two full losses
        got = model.loss(out, GT)
        for k in got:
            want = {"first": one[k], "second": two[k], "mean": (one[k] + two[k]) / 2}[mode]
            torch.testing.assert_close(got[k], want)
        assert out.passes[0].mask_logits[0] is out.sample_logits[0] and out.passes[1].mask_logits[0] is out.sample_logits[1]
    h.remove()


# ----------------------------------------------------------------------------- structure loss
def test_unweighted_bce_on_a_3x3_example_by_hand():
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    logits = torch.zeros(1, 1, 3, 3)
    logits[0, 0, 1, 1] = math.log(3)  # p = 0.75 at the centre, 0.5 elsewhere
    # kernel 3, zero padding counted: every cell's window holds the centre, so AvgPool = 1/9 everywhere;
    # w = 1 + 5 |1/9 - G| = 14/9 off the centre, 49/9 at it
    bce_off, bce_c = math.log(2), math.log(4 / 3)
    plain = (8 * bce_off + bce_c) / 9
    weighted = (8 * 14 / 9 * bce_off + 49 / 9 * bce_c) / (8 * 14 / 9 + 49 / 9)
    inter = 49 / 9 * 0.75
    union = 8 * 14 / 9 * 0.5 + 49 / 9 * 1.75
    wiou = 1 - (inter + 1) / (union - inter + 1)
    assert structure_loss(logits, target, 3).item() == pytest.approx(weighted + wiou, rel=1e-6)
    assert structure_loss(logits, target, 3, weighted_bce=False).item() == pytest.approx(plain + wiou, rel=1e-6)
    assert plain > weighted  # the weights favour the centre cell (49/9 against 14/9), whose BCE is the smaller
    # the authors' kernel 31 on a small map: padding 15, the window holds the whole map and 961 cells in all
    w31 = 1 + 5 * (1 / 961 - target).abs()
    assert structure_loss(logits, target, 31).item() == pytest.approx(
        ((w31 * nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")).sum() / w31.sum()
         + 1 - ((w31 * logits.sigmoid() * target).sum() + 1)
         / ((w31 * (logits.sigmoid() + target)).sum() - (w31 * logits.sigmoid() * target).sum() + 1)).item(), rel=1e-6)


def test_heatmap_peak_round_puts_the_peak_on_the_rounded_centre():
    # 16x16 grid, a 4 x 4-cell box centred at (8.48, 7.52) cells: radius 1, sigma 3/6
    box = torch.tensor([[0.53, 0.47, 0.25, 0.25]])
    floor, rounded = (gaussian_heatmap(box, 16, peak=p)[0, 0] for p in ("floor", "round"))
    assert floor[7, 8] == 1 and rounded[8, 8] == 1 and floor.max() == rounded.max() == 1  # row 7.52 -> 7 or 8
    assert rounded[8, 9].item() == pytest.approx(math.exp(-1 / (2 * 0.5 ** 2)), rel=1e-6)  # one cell away
    assert rounded[9, 9].item() == pytest.approx(math.exp(-2 / (2 * 0.5 ** 2)), rel=1e-6)  # one diagonal step
    assert rounded[8, 10] == 0 and rounded[6, 8] == 0  # outside the 3 x 3 window around (8, 8)
    # a centre in the upper left half of its cell, (8.16, 7.2): both give the same map
    low = torch.tensor([[0.51, 0.45, 0.25, 0.25]])
    assert torch.equal(gaussian_heatmap(low, 16, peak="round"), gaussian_heatmap(low, 16))
    # the model's focal loss reads the config's peak (reading=authors: round)
    cfg = load_config("smoke", "no_language", reading="authors")
    assert cfg.heatmap_peak == "round" and load_config("smoke").heatmap_peak == "floor"
    model = build_model(cfg)
    G, g = model.grid, torch.Generator().manual_seed(0)
    score = torch.rand(1, 1, G, G, generator=g).clamp(1e-4, 1 - 1e-4)
    offset, size = torch.rand(1, 2, G, G, generator=g), torch.rand(1, 2, G, G, generator=g)
    out = DMTrackOutput(score, offset, size, decode_boxes(score, offset, size))
    gt = torch.tensor([[0.53, 0.47, 0.25, 0.25]])  # centre (2.12, 1.88) on the smoke grid of 4: rounding moves the row
    assert G == 4 and not torch.equal(gaussian_heatmap(gt, G, peak="round"), gaussian_heatmap(gt, G))
    assert model.loss(out, gt)["focal"] == focal_loss(score, gaussian_heatmap(gt, G, peak="round"))


# ----------------------------------------------------------------------------- candidate elimination
def test_per_layer_keep_ratios_at_test_and_the_first_ratio_at_every_layer_in_training():
    # the y256 ratios at the demo size: 16 template + 64 search tokens, CE at blocks 0, 1, 2
    cfg = load_config("demo", depth=3, ce_layers=(0, 1, 2), ce_keep_ratio=0.6, ce_keep_ratios=(0.6, 0.4, 0.2))
    enc = VisualEncoder(cfg).eval()
    z, x = _inputs(cfg)
    counts, out = mlp_token_counts(enc, z, x)  # tracking: 64 -> ceil(38.4) = 39 -> ceil(15.6) = 16 -> ceil(3.2) = 4
    assert counts == [16 + 39, 16 + 16, 16 + 4] and (out.removed.sum(1) == 60).all()
    counts, out = mlp_token_counts(enc.train(), z, x, keep_rate=0.6)  # training: 64 -> 39 -> ceil(23.4) = 24 -> ceil(14.4) = 15
    assert counts == [16 + 39, 16 + 24, 16 + 15] and (out.removed.sum(1) == 49).all()
    # y384 at the paper profile under authors (narrow, to stay cheap): 576 -> 461 -> 369 -> 296, the first ratio in training
    cfg = load_config("paper", reading="authors", embed_dim=32, num_heads=2, fusion_heads=2)
    enc = VisualEncoder(cfg).eval()
    assert enc.grid == 24 and enc.num_z == 144
    z, x = _inputs(cfg, 1)
    counts, out = mlp_token_counts(enc, z, x)
    assert [c - 144 for c in counts] == [576] * 5 + [461] * 3 + [369] * 3 + [296] and out.removed.sum() == 280


def test_ce_at_test_scores_with_every_template_token_under_authors():
    paper, authors = VisualEncoder(load_config("demo")), VisualEncoder(load_config("demo", reading="authors"))
    assert paper.ce_rows == paper.ce_rows_test == [5]  # the centre token (1, 1) of the 4x4 template
    assert authors.ce_rows == [5] and authors.ce_rows_test == list(range(16))  # A:models/ostrack/ostrack.py:317
    make = lambda **kw: VisualEncoder(load_config("demo", ce_layers=(0,), depth=1, **kw)).eval()
    enc, every, centre = make(ce_test_template_range="all"), make(ce_template_range="all"), make()
    every.load_state_dict(enc.state_dict())
    centre.load_state_dict(enc.state_dict())
    z, x = _inputs(load_config("demo"), 3)
    with torch.no_grad():
        assert torch.equal(enc(z, x).removed, every(z, x).removed)  # tracking: every template row scores
        assert torch.equal(enc(z, x, 0.7).removed, centre(z, x, 0.7).removed)  # training: the centre token
        assert not torch.equal(every(z, x).removed, centre(z, x).removed)  # and the two rankings differ here


# ----------------------------------------------------------------------------- test time
def test_maps_reading_averages_the_heads_maps_along_one_chain():
    torch.manual_seed(0)
    model = build_model(load_config("smoke", "full", test_average="maps", sampler_eta=0.0)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    z, x = _inputs(model.cfg)
    text = model.encode_text(model.tokenize(SENTENCES))
    seen = {"h_x": [], "head": []}
    hooks = [model.visual.register_forward_hook(lambda m, a, o: seen["h_x"].append(o.search)),
             model.head.register_forward_hook(lambda m, a, o: seen["head"].append((a[0], o)))]
    with torch.inference_mode():
        torch.manual_seed(3)
        out = model(z, x, text, samples=3)
        torch.manual_seed(3)
        chain = model(z, x, text, samples=3, average="chain")
    for h in hooks:
        h.remove()
    B, k, D, G = 2, 3, model.cfg.embed_dim, model.grid
    torch.testing.assert_close(out.samples_masks, chain.samples_masks)  # the same chain of k = 3 steps
    head_in, (score, offset, size) = seen["head"][0]  # the maps reading's head call
    assert head_in.shape == (B * k, D, G, G)  # the head ran once per step, batched
    base = seen["h_x"][0].transpose(1, 2).reshape(B, D, G, G)
    for j in range(k):  # step j's head input: H_x + the projection of step j's filtered mask
        with torch.inference_mode():
            want = base + model.mask_proj(model.filter(out.samples_masks[:, j]))
        torch.testing.assert_close(head_in.view(B, k, D, G, G)[:, j], want)
    torch.testing.assert_close(out.score_map, score.view(B, k, 1, G, G).mean(1))
    torch.testing.assert_close(out.size_map, size.view(B, k, 2, G, G).mean(1))
    torch.testing.assert_close(out.offset_map, offset.view(B, k, 2, G, G).mean(1))
    assert not torch.allclose(out.score_map, chain.score_map)  # not the head on the averaged mask


# ----------------------------------------------------------------------------- the frozen BERT's mode
def test_text_dropout_leaves_the_frozen_bert_in_train_mode():
    for dropout in (False, True):
        model = build_model(load_config("smoke", text_dropout=dropout, text_cache=0)).train()
        assert model.text.bert.training is dropout and not any(p.requires_grad for p in model.text.bert.parameters())
        assert model.eval().text.bert.training is False
        assert model.text.cache_outputs(16) is (not dropout)  # no memo of outputs that differ per call
    model.train()
    tokens = model.tokenize(SENTENCES)
    a, b = model.encode_text(tokens)[0], model.encode_text(tokens)[0]
    assert not torch.equal(a, b)  # dropout: two calls, two features


# ----------------------------------------------------------------------------- every variant, trained and tracked
@pytest.mark.parametrize("variant", VARIANTS + (BASE,))
def test_every_variant_trains_and_tracks_at_smoke_size_under_authors(variant):
    """One training step at every choice of the pick (CE and GT-CE on) with every trainable parameter
    getting a gradient (what DDP needs), then a few tracked frames."""
    for mode in ("first", "second", "mean"):
        cfg = load_config("smoke", variant, reading="authors", double_sample_mode=mode)
        torch.manual_seed(0)
        model = build_model(cfg).train()
        opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        batch = {"template": torch.randn(4, 3, 32, 32, generator=g), "search": torch.randn(4, 3, 64, 64, generator=g),
                 "box": torch.rand(4, 4, generator=g) * 0.4 + 0.3, "text": SENTENCES * 2}
        losses = train_step(model, model, opt, torch.amp.GradScaler("cpu", enabled=False), batch, 2.0, cfg.grad_clip, "fp32")
        assert all(torch.isfinite(v) for v in losses.values()), (variant, mode)
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{variant}, {mode}: no gradient for {missing}"
        if not cfg.use_diffusion:
            break
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    tr = Tracker(model.eval(), cfg, samples=2)
    tr.initialize(img, [30, 30, 16, 14], "the red star")
    for _ in range(3):
        out = tr.track(img)
        assert np.isfinite(out["box"]).all() and 0 < out["score"] < 1
