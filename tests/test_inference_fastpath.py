"""The inference form (`DMTrack.fuse_for_inference`: folded denoiser steps, fused head) computes the same
function as the plain modules, is explicit (never switched on by autograd being off), is dropped by
train() and load_state_dict, and leaves the state_dict untouched."""
import pytest
import torch

from dmtrack import build_model, load_config
from dmtrack.model.diffusion import DiffusionSchedule, MaskDenoiser, sample_masks
from dmtrack.model.head import CenterHead

torch.set_num_threads(1)


def randomise(module, seed=0):
    """Non-trivial weights everywhere (mask_in is zero-initialised, BN stats start at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def plain(net):
    """The denoiser behind a lambda: sample_masks then takes its generic per-step path."""
    return lambda x, t, c: net(x, t, c)


def fused(net, sch, steps):
    net.fuse([t for t, *_ in sch.ddim_plan(steps)])
    return net


def test_folded_sampler_equals_plain_sampler():
    for scale in (1, 2):
        net = MaskDenoiser(dim=24, channels=8, mask_scale=scale)
        randomise(net)
        sch = DiffusionSchedule(1000, "cosine")
        cond = net.encode_cond(torch.randn(2, 24, 4, 4)).detach().repeat_interleave(3, 0)  # B=2, k=3
        for eta in (0.0, 1.0):
            for steps in (1, 3):
                noise = torch.randn(6, 1, 4 * scale, 4 * scale)
                with torch.inference_mode():
                    torch.manual_seed(5)
                    want, want_chain = sample_masks(plain(net), sch, cond, steps, eta, True, noise.clone())
                    torch.manual_seed(5)
                    got, got_chain = sample_masks(fused(net, sch, steps), sch, cond, steps, eta, True, noise.clone())
                    torch.manual_seed(5)
                    got_nochain, _ = sample_masks(net, sch, cond, steps, eta, False, noise.clone())
                    net.unfuse()
                assert want.abs().max() > 0.1  # the weights are not trivial
                assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
                assert torch.allclose(got_nochain, got, atol=1e-6)
                assert len(got_chain) == steps + 1
                assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got_chain, want_chain))


def test_fusing_is_explicit_and_refusing_follows_weight_updates():
    net = MaskDenoiser(dim=16, channels=8)
    randomise(net, 1)
    sch = DiffusionSchedule(1000, "cosine")
    cond = net.encode_cond(torch.randn(1, 16, 4, 4)).detach()
    noise = torch.randn(1, 1, 4, 4)
    with torch.inference_mode():
        assert net.fused is None  # inference mode alone does not switch the folded path on
        before, _ = sample_masks(fused(net, sch, 3), sch, cond, 3, noise=noise)
        other_steps, _ = sample_masks(net, sch, cond, 2, noise=noise)  # steps it was not fused for: the plain path
        assert torch.allclose(other_steps, sample_masks(plain(net), sch, cond, 2, noise=noise)[0], atol=1e-5)
    with torch.no_grad():  # an optimiser-like in-place update of a FiLM and a conv weight
        net.enc0.film.weight.add_(0.5)
        net.dec0.conv2.weight.mul_(-1.0)
    with torch.inference_mode():
        stale, _ = sample_masks(net, sch, cond, 3, noise=noise)  # fused before the update: documented, not guessed
        after, _ = sample_masks(fused(net, sch, 3), sch, cond, 3, noise=noise)
        want, _ = sample_masks(plain(net), sch, cond, 3, noise=noise)
    assert torch.allclose(stale, before) and (after - before).abs().max() > 1e-3
    assert torch.allclose(after, want, atol=1e-5, rtol=1e-5)
    net.train()
    assert net.fused is None  # training drops the inference form


def test_fused_head_equals_the_three_branches():
    head = CenterHead(24, 16)
    randomise(head, 2)
    x = torch.randn(2, 24, 6, 6)
    head.eval()
    want = (head.score(x).sigmoid().clamp(1e-4, 1 - 1e-4), head.offset(x), head.size(x).sigmoid().clamp(1e-4, 1 - 1e-4))
    head.fuse()
    with torch.inference_mode():
        got = head(x)
    for a, b in zip(got, want):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # BN statistics change (e.g. another training epoch): fuse again
        head.offset[1].running_mean.add_(1.0)
        want_offset = head.offset(x)
        head.fuse()
        assert torch.allclose(head(x)[1], want_offset, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("average,k", [("final", 3), ("chain", 3), ("chain", 1)])
def test_model_outputs_and_state_dict_unchanged_by_fast_paths(average, k):
    cfg = load_config("smoke", "full", test_samples=k, test_average=average)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    randomise(model.denoiser, 3)
    randomise(model.head, 4)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tmpl, search = torch.randn(1, 3, cfg.template_size, cfg.template_size), torch.randn(1, 3, cfg.search_size, cfg.search_size)
    text = model.encode_text(model.tokenize(["a red car"]))
    torch.manual_seed(7)
    with torch.inference_mode():
        want = model(tmpl, search, text)  # not fused: the plain modules
    model.fuse_for_inference()
    torch.manual_seed(7)
    with torch.inference_mode():
        got = model(tmpl, search, text)
    for name in ("score_map", "offset_map", "size_map", "pred_boxes", "mask", "samples_masks"):
        assert torch.allclose(getattr(got, name), getattr(want, name), atol=1e-5, rtol=1e-5), name
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys
    model.load_state_dict(model.state_dict())  # new weights: the fused constants are dropped, not kept stale
    assert model.head.fused is None and model.denoiser.fused is None


def test_fuse_for_inference_fuses_the_plan_it_will_run_and_other_plans_fall_back():
    from dmtrack.track import Tracker

    cfg = load_config("smoke", "full")  # sampling_steps 2
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    randomise(model.denoiser, 5)
    plan_ts = lambda n: sorted(t for t, *_ in model.schedule.ddim_plan(n))
    assert sorted(model.fuse_for_inference().denoiser.fused[0]) == plan_ts(2)  # the config's: k chains of 2 steps
    assert sorted(model.fuse_for_inference(4, average="chain").denoiser.fused[0]) == plan_ts(4)  # one chain of 4
    assert sorted(model.fuse_for_inference(3, steps=5).denoiser.fused[0]) == plan_ts(5)
    assert sorted(Tracker(model, cfg, samples=5, average="chain").model.denoiser.fused[0]) == plan_ts(5)
    tmpl, search = torch.randn(1, 3, cfg.template_size, cfg.template_size), torch.randn(1, 3, cfg.search_size, cfg.search_size)
    text = model.encode_text(model.tokenize(["a red car"]))
    outs = {}
    for fused in (False, True):  # fused for the final reading's 2 steps; the chain of 5 runs the plain path
        model.unfuse()
        if fused:
            model.fuse_for_inference()
        torch.manual_seed(7)
        with torch.inference_mode():
            outs[fused] = model(tmpl, search, text, samples=5, average="chain")
    assert torch.allclose(outs[True].mask, outs[False].mask, atol=1e-5)
    assert torch.allclose(outs[True].samples_masks, outs[False].samples_masks, atol=1e-5)
