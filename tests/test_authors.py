"""reading = authors: the first author's modules (dmtrack/model/authors.py) by hand and at the authors' sizes
(768 channels, a 24 x 24 grid, 36 text tokens), the config key, and every variant training and tracking at smoke size."""
import math

import numpy as np
import pytest
import torch

from dmtrack import build_model, load_config
from dmtrack.config import PROFILES, VARIANTS, ConfigError, config_from_dict
from dmtrack.model.authors import (AuthorsCrossAttention, AuthorsDenoiser, AuthorsFilter, LogSNRSchedule, PixelShuffleUp,
                                   authors_sample, mask_tokens, text_grid)
from dmtrack.track import Tracker

torch.set_num_threads(1)  # shared CPU
SENTENCES = ["a red car on the road", "a dog running on grass", "a red car on the road", "the man in black"]
GT = torch.tensor([[0.30, 0.35, 0.30, 0.40], [0.65, 0.60, 0.25, 0.20], [0.20, 0.75, 0.35, 0.30], [0.72, 0.28, 0.40, 0.45]])


# ----------------------------------------------------------------------------- config
def test_reading_key_defaults_and_checks():
    assert load_config("smoke").reading == "paper" and load_config("smoke").sampling_steps == 2
    for profile in PROFILES:  # the authors' num_sample_steps = 1 under every profile, unless overridden
        assert load_config(profile, "full", reading="authors").sampling_steps == 1
    assert load_config("demo", "full", reading="authors", sampling_steps=4).sampling_steps == 4
    assert load_config("smoke", "full", reading="authors").authors_view_scramble is True
    with pytest.raises(ConfigError, match="'reading' = 'author'.*paper \\| authors"):
        load_config("smoke", "full", reading="author")
    with pytest.raises(ConfigError, match="embed_dim.*multiple of 16 under reading=authors"):
        load_config("smoke", "full", reading="authors", embed_dim=40, num_heads=2, fusion_heads=2)
    with pytest.raises(ConfigError, match="mask_scale.*1 under reading=authors"):
        load_config("smoke", "full", reading="authors", mask_scale=2)
    assert load_config("smoke", "full", embed_dim=40, mask_scale=2, num_heads=2, fusion_heads=2).reading == "paper"


def test_a_config_saved_before_the_key_loads_as_paper_and_an_authors_one_round_trips():
    old = load_config("smoke", "full").to_dict()
    del old["reading"], old["authors_view_scramble"]
    assert config_from_dict(old).reading == "paper"
    cfg = load_config("smoke", "no_gt_ce", reading="authors", authors_view_scramble=False)
    assert config_from_dict(cfg.to_dict()) == cfg


# ----------------------------------------------------------------------------- modules by hand
def test_text_grid():
    assert text_grid(36) == (6, 6) and text_grid(8) == (2, 4) and text_grid(7) == (1, 7) and text_grid(12) == (3, 4)


def test_log_snr_schedule_by_hand():
    sch = LogSNRSchedule()
    lam = sch.logsnr(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(lam, torch.tensor([15.0, 0.0, -15.0]), atol=1e-4)
    x0, eps = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.25]])
    x_t, l = sch.q_sample(x0, torch.tensor([0.5]), eps)  # lambda = 0: alpha = sigma = sqrt(1/2)
    assert torch.allclose(x_t, (x0 + eps) / math.sqrt(2), atol=1e-5) and l.shape == (1,)
    # one ancestral step 1 -> 1/2: c = 1 - exp(-15 - 0), mean = sqrt(1/2) (x (1 - c) / sqrt(sigmoid(-15)) + c x0), var = c / 2
    x, x0_hat, z = torch.tensor([1.5]), torch.tensor([0.8]), torch.tensor([-0.3])
    c = 1 - math.exp(-15)
    mean = math.sqrt(0.5) * (1.5 * (1 - c) / math.sqrt(1 / (1 + math.exp(15))) + c * 0.8)
    # (float32: c = 1 - 3e-7 is within a few ulps of 1, so x (1 - c) / alpha_t ~ 1e-3 is good to ~2e-5, as in the authors' code)
    assert sch.step(x, x0_hat, 1.0, 0.5, z).item() == pytest.approx(mean + math.sqrt(c / 2) * -0.3, abs=1e-4)
    # the last step returns the mean: from 1/2 to 0, c = 1 - exp(-15), alpha_0 = sqrt(sigmoid(15))
    c0 = 1 - math.exp(-15)
    last = math.sqrt(1 / (1 + math.exp(-15))) * (1.5 * (1 - c0) / math.sqrt(0.5) + c0 * 0.8)
    assert sch.step(x, x0_hat, 0.5, 0.0, z).item() == pytest.approx(last, abs=1e-5)


def test_mask_tokens_are_stripes_of_rows_with_the_scrambling_view_at_the_authors_size():
    """(1, 48, 96, 96) = the up path's output at D = 768, G = 24; value = its own flat index."""
    seg = torch.arange(48 * 96 * 96, dtype=torch.float32).view(1, 48, 96, 96)
    scrambled, spatial = mask_tokens(seg, True), mask_tokens(seg, False)
    assert scrambled.shape == spatial.shape == (1, 576, 768)
    for i in range(576):  # token i: channel i // 12, rows 8 (i mod 12) .. +7, every column (docs/authors_code.md, fact (b))
        r0 = 8 * (i % 12)
        assert torch.equal(scrambled[0, i], seg[0, i // 12, r0:r0 + 8, :].flatten())
    for r in range(24):  # token (r, c): the 4 x 4 cells over grid cell (r, c), channel-major
        for c in range(24):
            assert torch.equal(spatial[0, 24 * r + c], seg[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].flatten())
    # the two readings hold the same values, permuted; the scrambled token at grid cell (r, c) holds channel 2r + c // 12
    assert torch.equal(scrambled.flatten().sort().values, spatial.flatten().sort().values)
    channel = (scrambled[0, :, 0] // (96 * 96)).view(24, 24)
    r, c = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    assert torch.equal(channel, (2 * r + c // 12).float())
    assert not torch.equal(scrambled, spatial)


def test_filter_by_hand_both_readings_of_the_view():
    """D = 3 channels, N = 4 tokens, BN in eval mode with set statistics: every sum written out."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3)
    for scramble in (True, False):
        f = AuthorsFilter(3, 4, scramble).eval()
        with torch.no_grad():
            f.score.weight.copy_(torch.tensor([[0.5, -1.0, 0.25]]))
            f.score.bias.fill_(0.1)
            f.value.weight.copy_(torch.randn(3, 3))
            f.mix.weight.fill_(0.7)
            f.norm.running_mean.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
            f.norm.running_var.copy_(torch.tensor([1.0, 2.0, 0.5, 4.0]))
            f.norm.weight.copy_(torch.tensor([1.0, 0.5, 2.0, 1.5]))
            f.norm.bias.copy_(torch.tensor([0.0, 0.1, -0.1, 0.2]))
        flat, W = x.flatten().tolist(), f.value.weight.tolist()
        s = [0.5 * x[0, n, 0].item() - x[0, n, 1].item() + 0.25 * x[0, n, 2].item() + 0.1 for n in range(4)]
        p = [math.exp(v) / sum(math.exp(u) for u in s) for v in s]
        xs = lambda n, ch: flat[ch * 4 + n] if scramble else x[0, n, ch].item()  # the authors' view: (D, N) memory read as (N, D)
        top = [max(p[n] * xs(n, ch) for n in range(4)) for ch in range(3)]
        v = [0.7 * sum(W[o][i] * top[i] for i in range(3)) for o in range(3)]
        bn = f.norm
        want = [[(s[n] * v[ch] - bn.running_mean[n].item()) / math.sqrt(bn.running_var[n].item() + bn.eps) * bn.weight[n].item()
                 + bn.bias[n].item() + x[0, n, ch].item() for ch in range(3)] for n in range(4)]
        with torch.no_grad():
            assert torch.allclose(f(x)[0], torch.tensor(want), atol=1e-5), scramble


def test_cross_attention_by_hand_no_gate_no_padding_mask_and_h_x_twice():
    """D = 4, 2 heads, a 2 x 2 search grid and 2 words (a 1 x 2 text grid); the MLP zeroed, so
    F_s = 2 H_x + softmax(q k^T / sqrt(2) + P_x P_t^T) v W_o + b_o per head."""
    torch.manual_seed(0)
    fus = AuthorsCrossAttention(4, 2, 2, text_grid(2)).eval()
    with torch.no_grad():
        fus.mlp.fc2.weight.zero_()
        fus.mlp.fc2.bias.zero_()
        for p in (fus.search_pos.rows, fus.search_pos.cols, fus.text_pos.rows, fus.text_pos.cols):
            p.normal_()
    h_x, t_q = torch.randn(1, 4, 4), torch.randn(1, 2, 4)
    ln = lambda v: torch.nn.functional.layer_norm(v, (4,))  # the norms are at their init (weight 1, bias 0)
    q, k, v = ln(h_x)[0] @ fus.q.weight.T, ln(t_q)[0] @ fus.k.weight.T, ln(t_q)[0] @ fus.v.weight.T
    pos = lambda m, scale: (m.proj(ln((m.rows[:, None] + m.cols[None]).flatten(0, 1))) * scale)
    px, pt = pos(fus.search_pos, 2 ** -0.5), pos(fus.text_pos, 1.0)
    att = torch.zeros(4, 4)
    for h in range(2):
        cols = slice(2 * h, 2 * h + 2)
        logits = q[:, cols] @ k[:, cols].T / math.sqrt(2) + px[:, cols] @ pt[:, cols].T
        att[:, cols] = logits.softmax(-1) @ v[:, cols]
    want = 2 * h_x[0] + att @ fus.proj.weight.T + fus.proj.bias
    with torch.no_grad():
        out = fus(h_x, t_q, torch.tensor([[True, False]]))
        assert torch.allclose(out[0], want, atol=1e-5)
        assert torch.equal(fus(h_x, t_q, torch.tensor([[True, True]])), out)  # no padding mask: the mask is not read
        other = torch.cat([t_q[:, :1], torch.randn(1, 1, 4)], 1)
        assert not torch.allclose(fus(h_x, other, torch.tensor([[True, False]])), out)  # the "padding" word counts


def test_pixel_shuffle_up_starts_as_nearest_neighbour_upsampling():
    up = PixelShuffleUp(6, 3)
    y = up(torch.randn(2, 6, 3, 3))
    assert y.shape == (2, 3, 6, 6)
    assert torch.allclose(y, y[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3), atol=1e-6)  # equal filters (ulps apart)


def test_sampler_one_step_is_one_pass_from_noise_two_steps_by_hand():
    sch, seen = LogSNRSchedule(), []

    def net(x, lam):
        seen.append((x.clone(), lam.clone()))
        return x.flatten(1)[:, None, :] * 2, torch.sin(3 * x) + 0.1 * lam.view(-1, 1, 1, 1)

    torch.manual_seed(0)
    feats, logits, chain = authors_sample(net, sch, (2, 1, 3, 3), "cpu", 1)
    torch.manual_seed(0)
    x_T = torch.randn(2, 1, 3, 3)
    assert len(seen) == 1 and torch.equal(seen[0][0], x_T) and torch.allclose(seen[0][1], torch.full((2,), -15.0), atol=1e-4)
    assert torch.equal(feats, x_T.flatten(1)[:, None] * 2) and chain is None
    seen.clear()
    torch.manual_seed(0)
    feats, logits, chain = authors_sample(net, sch, (2, 1, 3, 3), "cpu", 2, every_step=True, return_chain=True)
    torch.manual_seed(0)
    x_T, z = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    x_half = sch.step(x_T, (torch.sin(3 * x_T) + 0.1 * sch.logsnr(torch.tensor(1.0))).tanh(), 1.0, 0.5, z)  # lambda(1) = -15
    assert len(seen) == 2 and torch.allclose(seen[1][0], x_half) and torch.allclose(seen[1][1], torch.zeros(2), atol=1e-4)
    assert feats.shape == (2, 2, 1, 9) and logits.shape == (2, 2, 1, 3, 3) and len(chain) == 3
    assert torch.allclose(chain[1], ((x_half + 1) / 2).clamp(0, 1))


def test_module_shapes_at_the_authors_sizes():
    """D = 768, 8 heads, a 24 x 24 grid, 36 words as 6 x 6: the authors' parameter shapes and outputs."""
    torch.manual_seed(0)
    D, G = 768, 24
    fus, den, filt = AuthorsCrossAttention(D, 8, G, text_grid(36)).eval(), AuthorsDenoiser(D).eval(), AuthorsFilter(D, G * G).eval()
    assert fus.search_pos.rows.shape == (24, D) and fus.text_pos.rows.shape == fus.text_pos.cols.shape == (6, D)
    assert den.down[0].conv.weight.shape == (D, 1, 3, 3) and den.up[0].conv.weight.shape == (D, 2 * D, 1, 1)
    assert den.up[1].conv.weight.shape == (D, D, 1, 1) and den.up[3].conv.weight.shape == (384, 192, 1, 1)
    assert den.up[4].conv.weight.shape == (48, 96, 3, 3) and den.readout.weight.shape == (1, D)
    assert filt.norm.num_features == 576 and filt.value.weight.shape == (D, D) and filt.mix.weight.shape == (1, 1)
    up_out = []
    den.up.register_forward_hook(lambda m, a, out: up_out.append(out.shape))
    with torch.no_grad():
        f_s = fus(torch.randn(1, G * G, D), torch.randn(1, 36, D))
        tokens = den(torch.randn(1, 1, G, G), torch.tensor([-15.0]), f_s.transpose(1, 2).reshape(1, D, G, G))
        feats = filt(tokens)
    assert f_s.shape == tokens.shape == feats.shape == (1, 576, D) and up_out == [(1, 48, 96, 96)]
    assert torch.isfinite(feats).all()


# ----------------------------------------------------------------------------- the assembled model
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_a_step_and_tracks_a_frame_at_smoke_size(variant):
    cfg = load_config("smoke", variant, reading="authors", head_channels=32)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert type(model.fusion).__name__ == ("NoneType" if variant == "no_language" else "AuthorsCrossAttention")
    assert type(getattr(model, "denoiser", None)).__name__ == ("NoneType" if variant == "no_diffusion" else "AuthorsDenoiser")
    z, x = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 64, 64)
    opt = torch.optim.AdamW(model.param_groups())
    out = model(z, x, model.encode_text(model.tokenize(SENTENCES)), gt_boxes=GT, epoch=cfg.gt_ce_start_epoch + 5)
    losses = model.loss(out, GT)
    assert all(torch.isfinite(v) for v in losses.values()) and (losses["struct"].item() == 0) == (variant == "no_diffusion")
    if variant != "no_diffusion":
        assert out.mask_select in (("single",) if variant == "single_sample_train" else ("first", "second", "mean"))
        assert out.mask.shape == (4, 1, 4, 4) and len(out.sample_logits) == (1 if variant == "single_sample_train" else 2)
    opt.zero_grad()
    losses["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing
    before = model.head.score[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.score[0].weight)

    tracker = Tracker(model, cfg, samples=2)
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    tracker.initialize(frame, [50, 40, 20, 16], "a red car")
    res = tracker.track(frame, return_chain=variant != "no_diffusion")
    assert res["box"].shape == (4,) and np.isfinite(res["box"]).all() and (res["box"][2:] > 0).all()
    if variant != "no_diffusion":
        # the maps reading (the authors'): one chain of k = 2 steps, x_T .. x_0
        assert res["mask"].shape == (96, 128) and res["chain"].shape == (3, 1, 4, 4) and res["samples"].shape == (2, 4, 4)


def test_the_head_input_is_base_plus_the_averaged_mask_features_or_the_maps_are_averaged():
    """Test time under each reading of "k samplings", base = F_s (head_features=fused under authors): final, k = 2:
    the head on F_s + the mean of the two chains' filtered tokens; chain, k = 3: the mean over one chain's three
    steps; maps, k = 3: the head on each step's F_s + tokens, its maps averaged. One denoiser pass per step."""
    cfg = load_config("smoke", "full", reading="authors", authors_view_scramble=False)
    assert cfg.head_features == "fused" and cfg.test_average == "maps" and cfg.sampling_steps == 1
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    seen, passes = [], []
    model.head.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
    model.denoiser.register_forward_hook(lambda m, a, o: passes.append(a[0].shape[0]))
    to_map = lambda t: t.transpose(1, 2).reshape(-1, 48, 4, 4)
    with torch.no_grad():
        text = model.encode_text(model.tokenize(SENTENCES[:2]))
        f_s = model.fusion(model.visual(z, x).search, *text)
        for k, average in ((2, "final"), (3, "chain"), (3, "maps")):
            seen.clear(), passes.clear()
            torch.manual_seed(1)
            out = model(z, x, text, samples=k, average=average)
            model_passes, (head_in, (score, offset, size)) = list(passes), seen[0]
            chains = k if average == "final" else 1
            f = to_map(f_s).repeat_interleave(chains, 0)
            torch.manual_seed(1)
            feats, logits, _ = authors_sample(lambda xt, lam: model._authors_pass(xt, lam, f), model.schedule, (2 * chains, 1, 4, 4),
                                              "cpu", 1 if average == "final" else k, every_step=average != "final")
            assert model_passes == ([2 * k] if average == "final" else [2] * k)  # sampling_steps = 1 for final
            assert out.samples_masks.shape == (2, k, 1, 4, 4) and torch.allclose(out.mask, out.samples_masks.mean(1))
            if average == "maps":  # head input j of crop b: F_s + step j's tokens; then its maps averaged over the steps
                steps_first = feats.transpose(0, 1).flatten(0, 1)  # (2 * k, 16, 48), crop-major
                assert torch.allclose(head_in, to_map(f_s.repeat_interleave(k, 0) + steps_first), atol=1e-5)
                assert torch.allclose(out.score_map, score.view(2, k, 1, 4, 4).mean(1))
                assert torch.allclose(out.size_map, size.view(2, k, 2, 4, 4).mean(1))
                continue
            mean = feats.view(2, k, 16, 48).mean(1) if average == "final" else feats.mean(0)
            assert torch.allclose(head_in, to_map(f_s + mean), atol=1e-5) and torch.equal(out.score_map, score)


def test_cost_accounting_covers_the_authors_parts():
    """dmtrack.track.profile (the report's cost table): every parameter in one part; one denoiser pass per step."""
    from dmtrack.track.profile import PARTS, profile_model

    cfg = load_config("smoke", "full", reading="authors", test_average="final")  # k chains of sampling_steps steps
    rows = {(r["k"], r["sampling_steps"]): r for r in profile_model(cfg, ks=(1, 2), steps=(2,))}
    r = rows[1, 1]  # sampling_steps = 1 under authors
    assert sum(r[f"params_{p}"] for p in PARTS) == r["params_total"]
    assert r["params_fusion"] > 0 and r["params_diffusion"] > 0 and r["params_filter"] > 0
    assert r["frame_gflops_diffusion"] > 0 and r["frame_gflops_filter"] > 0
    for k, steps in ((2, 1), (1, 2)):  # k = 2 chains, or 2 steps of one chain: two denoiser passes
        assert rows[k, steps]["frame_gflops_diffusion"] == pytest.approx(2 * r["frame_gflops_diffusion"], rel=1e-6)
