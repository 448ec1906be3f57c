"""Diffusion schedule, sampler, denoiser, feature filter, head decoding and losses, on plain tensors."""
import math

import torch
import torch.nn.functional as F

from dmtrack.model.diffusion import DiffusionSchedule, MaskDenoiser, logits_to_x0, make_betas, sample_masks
from dmtrack.model.dmtrack import box_mask
from dmtrack.model.filtering import FeatureFilter
from dmtrack.model.head import CenterHead, decode_boxes
from dmtrack.model.losses import (focal_loss, gaussian_heatmap, gaussian_radius, struct_kernel_size,
                                  structure_loss)

torch.set_num_threads(1)  # shared CPU: with 2 threads tiny ops spin-wait on each other (up to 200x slower)


def test_betas_hand_values():
    lin = make_betas(1000, "linear")
    assert math.isclose(lin[0].item(), 1e-4) and math.isclose(lin[-1].item(), 0.02)
    cos = make_betas(1000, "cosine")
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    assert math.isclose(cos[0].item(), 1 - f(1) / f(0), rel_tol=1e-9)
    assert cos[-1].item() == 0.999  # clipped: abar_T = 0 exactly, so x_T is pure noise
    sch = DiffusionSchedule(1000, "cosine")
    assert torch.all(sch.alphas_cumprod[1:] < sch.alphas_cumprod[:-1])
    assert math.isclose(sch.alphas_cumprod[499].item(), f(500) / f(0), rel_tol=1e-5)


def test_q_sample_marginals():
    """Eq. 4: x_t | x0 ~ N(sqrt(abar_t) x0, (1 - abar_t) I), checked over 200k draws."""
    torch.manual_seed(0)
    for schedule in ("cosine", "linear"):
        sch = DiffusionSchedule(1000, schedule)
        x0 = torch.full((200_000, 1), 0.6)
        for t in (0, 250, 700, 999):
            xt = sch.q_sample(x0, torch.full((200_000,), t, dtype=torch.long))
            abar = sch.alphas_cumprod[t].item()
            assert abs(xt.mean().item() - math.sqrt(abar) * 0.6) < 0.01, (schedule, t)
            assert abs(xt.var().item() - (1 - abar)) < 0.01 + 0.02 * (1 - abar), (schedule, t)


def test_sample_timesteps_and_ddim_step_by_hand():
    sch = DiffusionSchedule(1000, "cosine")
    assert sch.sample_timesteps(5) == [(999, 799), (799, 599), (599, 399), (399, 199), (199, -1)]
    assert sch.sample_timesteps(1) == [(999, -1)]
    sch = DiffusionSchedule(50, "linear")
    x_t, x0 = torch.tensor([0.3]), torch.tensor([0.8])
    a, an = sch.alphas_cumprod[7].item(), sch.alphas_cumprod[3].item()
    eps = (0.3 - math.sqrt(a) * 0.8) / math.sqrt(1 - a)
    want = math.sqrt(an) * 0.8 + math.sqrt(1 - an) * eps
    assert math.isclose(sch.ddim_step(x_t, x0, 7, 3).item(), want, rel_tol=1e-5)
    assert sch.ddim_step(x_t, x0, 7, -1) is x0


def test_eta_1_steps_are_the_exact_ddpm_posterior_between_the_chains_timesteps():
    """docs/method.md, "The reverse step": with eta = 1 a step t -> s of any stride samples q(x_s | x_t, x0)
    of DDPM (forward step s -> t with alpha = abar_t / abar_s), not Eq. 5's one-timestep beta_t; for a
    stride of one timestep its variance is DDPM's beta_tilde_t. Formulas written out here, not DDIM's."""
    sch = DiffusionSchedule(50, "linear")
    abar, betas = sch.alphas_cumprod.double(), sch.betas.double()
    x_t, x0, z = torch.tensor([0.3]), torch.tensor([0.8]), torch.tensor([0.5])
    for t, s in ((7, 3), (40, 20), (7, 6)):
        a_t, a_s = abar[t].item(), abar[s].item()
        alpha = a_t / a_s  # the forward process from s to t: x_t | x_s ~ N(sqrt(alpha) x_s, (1 - alpha) I)
        var = (1 - a_s) * (1 - alpha) / (1 - a_t)
        mean = math.sqrt(a_s) * (1 - alpha) / (1 - a_t) * 0.8 + math.sqrt(alpha) * (1 - a_s) / (1 - a_t) * 0.3
        got = sch.ddim_step(x_t, x0, t, s, eta=1.0, z=z).item()
        assert math.isclose(got, mean + math.sqrt(var) * 0.5, rel_tol=1e-4), (t, s)
        assert math.isclose(sch.ddim_step(x_t, x0, t, s, eta=1.0, z=torch.zeros(1)).item(), mean, rel_tol=1e-4)
    beta_tilde = (1 - abar[6].item()) / (1 - abar[7].item()) * betas[7].item()  # Ho et al.'s posterior variance
    step = lambda z: sch.ddim_step(x_t, x0, 7, 6, eta=1.0, z=torch.tensor([z])).item()  # noqa: E731
    assert math.isclose(step(1.0) - step(0.0), math.sqrt(beta_tilde), rel_tol=1e-4)
    # the chain's strides are far wider than one timestep: beta_t there would add far too little noise
    sch = DiffusionSchedule(1000, "cosine")
    (t, s), ab = sch.sample_timesteps(3)[1], sch.alphas_cumprod.double()
    sigma = sch.ddim_step(torch.zeros(1), torch.zeros(1), t, s, eta=1.0, z=torch.ones(1)).item()
    assert (t, s) == (666, 332) and math.isclose(sigma, 0.477, abs_tol=1e-3)  # docs/method.md's numbers
    assert math.isclose(sch.betas[666].item() ** 0.5, 0.074, abs_tol=1e-3)
    # abar_{T-1} is 2.4e-9: the first step of an eta = 1 chain keeps nothing of x_T (its weight, 7.5e-5 in
    # exact arithmetic, rounds to 0 in float32), where eta = 0 keeps it at sqrt(1 - abar_666) = 0.868
    first = lambda eta: sch.ddim_step(torch.ones(1), torch.zeros(1), 999, 666, eta, z=torch.zeros(1)).item()  # noqa: E731
    assert 0 <= first(1.0) < 8e-5 and math.isclose(first(0.0), 0.868, abs_tol=1e-3)
    assert math.isclose(ab[999].item(), 2.43e-9, rel_tol=1e-2)


def test_sampler_ends_at_the_predicted_x0():
    """A denoiser that always predicts the same x0 makes every chain end exactly at that x0."""
    target = torch.tensor([[0.9, 0.1], [0.5, 0.02]]).view(1, 1, 2, 2)
    logits = torch.logit(target)

    calls = []

    def fixed(x, t, cond):
        calls.append((x.shape[0], t.tolist()))
        return logits.expand(x.shape[0], -1, -1, -1)

    sch = DiffusionSchedule(1000, "cosine")
    for eta in (0.0, 1.0):
        calls.clear()
        torch.manual_seed(1)
        out, chain = sample_masks(fixed, sch, torch.zeros(3, 4, 2, 2), steps=4, eta=eta, return_chain=True)
        assert torch.allclose(out, logits.expand(3, -1, -1, -1))
        assert torch.allclose(chain[-1], target.expand(3, -1, -1, -1), atol=1e-6)  # x_0 mapped to [0,1]
        assert len(chain) == 5 and [c[1][0] for c in calls] == [999, 749, 499, 249]
        assert all(c[0] == 3 for c in calls)
    assert torch.allclose(logits_to_x0(logits), 2 * target - 1, atol=1e-6)


def test_denoiser_shapes_and_zero_init_mask_input():
    torch.manual_seed(0)
    for scale in (1, 2):
        net = MaskDenoiser(dim=24, channels=8, mask_scale=scale)
        cond = net.encode_cond(torch.randn(2, 24, 8, 8))
        assert cond.shape == (2, 8, 8 * scale, 8 * scale)
        m = 8 * scale
        a = net(torch.randn(2, 1, m, m), torch.tensor([0, 999]), cond)
        b = net(torch.randn(2, 1, m, m), torch.tensor([0, 999]), cond)
        assert a.shape == (2, 1, m, m)
        assert torch.allclose(a, b)  # zero-initialised noisy-mask input: x_t enters only once trained
        c = net(torch.randn(2, 1, m, m), torch.tensor([5, 500]), cond)
        assert not torch.allclose(a, c)  # the timestep does enter


def test_feature_filter_hand_values():
    p = torch.tensor([0.9, 0.5, 0.1, 0.3]).view(1, 1, 2, 2)
    f = FeatureFilter(topk=0.5, tau=0.25)(p)
    want = torch.tensor([1.0, math.exp(-0.4 / 0.25), 0.0, 0.0]).view(1, 1, 2, 2)
    assert torch.allclose(f, want, atol=1e-6)
    assert torch.equal(FeatureFilter(0.5, enabled=False)(p), p)


def test_box_mask_coverage_by_hand():
    m = box_mask(torch.tensor([[0.5, 0.5, 0.5, 0.25]]), 4)[0, 0]
    want = torch.tensor([[0, 0, 0, 0], [0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0]])
    assert torch.allclose(m, want)


def test_head_and_decode_by_hand():
    head = CenterHead(8, 16)
    s, o, z = head(torch.randn(2, 8, 4, 4))
    assert s.shape == (2, 1, 4, 4) and o.shape == (2, 2, 4, 4) and z.shape == (2, 2, 4, 4)
    assert s.min() >= 1e-4 and s.max() <= 1 - 1e-4 and z.min() >= 1e-4
    score = torch.zeros(1, 1, 4, 4)
    score[0, 0, 2, 1] = 1  # row 2, column 1
    offset = torch.zeros(1, 2, 4, 4)
    offset[0, :, 2, 1] = torch.tensor([0.5, 0.25])
    size = torch.zeros(1, 2, 4, 4)
    size[0, :, 2, 1] = torch.tensor([0.3, 0.2])
    box = decode_boxes(score, offset, size)
    assert torch.allclose(box, torch.tensor([[1.5 / 4, 2.25 / 4, 0.3, 0.2]]))


def test_gaussian_heatmap_and_focal_by_hand():
    # CornerNet radius for a 4x4 box, min_overlap 0.7: min of the three quadratic roots
    r = gaussian_radius(4, 4)
    r1 = (8 + math.sqrt(64 - 4 * 16 * 0.3 / 1.7)) / 2
    r2 = (16 + math.sqrt(256 - 16 * 0.3 * 16)) / 2
    r3 = (-2 * 0.7 * 8 + math.sqrt((2 * 0.7 * 8) ** 2 + 4 * 4 * 0.7 * 0.3 * 16)) / 2
    assert math.isclose(r, min(r1, r2, r3)) and int(r) == 1
    heat = gaussian_heatmap(torch.tensor([[0.53, 0.47, 0.25, 0.25]]), 16)[0, 0]
    assert heat[7, 8] == 1 and heat.max() == 1  # the centre (8.48, 7.52) lies in row 7, column 8
    sigma = 3 / 6
    assert math.isclose(heat[7, 9].item(), math.exp(-1 / (2 * sigma ** 2)), rel_tol=1e-6)
    assert heat[7, 10] == 0  # outside the (2r+1)^2 window
    pred = torch.tensor([0.8, 0.3, 0.1]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    want = -(math.log(0.8) * 0.2 ** 2 + math.log(0.7) * 0.3 ** 2 * 0.5 ** 4 + math.log(0.9) * 0.1 ** 2)
    assert math.isclose(focal_loss(pred, target).item(), want, rel_tol=1e-5)


def test_structure_loss_weights_the_bce_per_pixel():
    assert (struct_kernel_size(16, 256), struct_kernel_size(64, 256), struct_kernel_size(256, 256)) == (3, 9, 31)
    g = torch.zeros(1, 1, 3, 3)
    g[0, 0, 1, 1] = 1
    logits = torch.tensor([[-1.0, 0.5, -2.0], [0.0, 1.5, -0.5], [2.0, -1.0, 0.3]]).view(1, 1, 3, 3)
    # hand-built weights: AvgPool 3x3 (zero padding counted) of a single 1 is 1/9 everywhere
    w = 1 + 5 * (torch.full((3, 3), 1 / 9) - g[0, 0]).abs()
    bce = F.binary_cross_entropy_with_logits(logits[0, 0], g[0, 0], reduction="none")
    wbce = (w * bce).sum() / w.sum()
    p = logits[0, 0].sigmoid()
    inter, union = (w * p * g[0, 0]).sum(), (w * (p + g[0, 0])).sum()
    want = wbce + 1 - (inter + 1) / (union - inter + 1)
    got = structure_loss(logits, g, kernel=3)
    assert math.isclose(got.item(), want.item(), rel_tol=1e-6)
    # the CamoDiffusion bug (unweighted BCE mean) gives a different number
    buggy = bce.mean() + 1 - (inter + 1) / (union - inter + 1)
    assert abs(got.item() - buggy.item()) > 1e-3


def _heatmap_loop(boxes, grid, min_overlap=0.7):
    """The per-box Python loop the heat-map was built with before (host floats, one box at a time)."""
    heat = torch.zeros(boxes.shape[0], 1, grid, grid)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    for i, (cx, cy, w, h) in enumerate((boxes.float() * grid).tolist()):
        r = max(0, int(gaussian_radius(h, w, min_overlap)))
        ci, cj = min(max(math.floor(cx), 0), grid - 1), min(max(math.floor(cy), 0), grid - 1)
        sigma = (2 * r + 1) / 6
        dx, dy = (xs - ci).float(), (ys - cj).float()
        g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
        heat[i, 0] = torch.where((dx.abs() <= r) & (dy.abs() <= r), g, torch.zeros_like(g))
    return heat


def test_gaussian_heatmap_is_tensor_ops_equal_to_the_loop():
    g = torch.Generator().manual_seed(0)
    # centres inside and outside the crop, boxes from a sliver to larger than the crop
    boxes = torch.rand(2000, 4, generator=g) * torch.tensor([1.4, 1.4, 1.2, 1.2]) - torch.tensor([0.2, 0.2, 0.0, 0.0])
    for grid in (4, 16):
        torch.testing.assert_close(gaussian_heatmap(boxes, grid), _heatmap_loop(boxes, grid), rtol=0, atol=1e-7)
    # no host round trip: dynamo captures it as one graph (a .tolist() or .item() would break it)
    whole = torch.compile(gaussian_heatmap, fullgraph=True, backend="eager")
    assert torch.equal(whole(boxes[:8], 16), gaussian_heatmap(boxes[:8], 16))
