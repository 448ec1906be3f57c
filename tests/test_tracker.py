"""The online tracker: Hann window, crop <-> image mapping, clipping, masks, and what runs how often."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dmtrack.config import load_config
from dmtrack.data.crop import box_in_crop, crop_square, normalize_images
from dmtrack.model import DMTrackOutput, build_model, decode_boxes
from dmtrack.track.tracker import Tracker, box_to_image, crop_window, hann1d, hann2d, mask_to_image, sample_spread, spread_map

torch.set_num_threads(1)  # the test machines are shared: more threads only wait on each other


# ----------------------------------------------------------------------------- pure functions
def test_hann_window_n4_hand_computed():
    # 0.5 (1 - cos(2 pi k / 5)), k = 1..4 -> (5 - sqrt5)/8, (5 + sqrt5)/8, (5 + sqrt5)/8, (5 - sqrt5)/8
    lo, hi = (5 - math.sqrt(5)) / 8, (5 + math.sqrt(5)) / 8
    assert lo == pytest.approx(0.3454915, abs=1e-7) and hi == pytest.approx(0.9045085, abs=1e-7)
    np.testing.assert_allclose(hann1d(4).numpy(), [lo, hi, hi, lo], atol=1e-7)
    w = hann2d(4)
    assert w.shape == (1, 1, 4, 4)
    w = w[0, 0].numpy()
    assert w[0, 1] == pytest.approx(0.3125, abs=1e-7)  # (25 - 5) / 64 exactly
    assert w[0, 0] == pytest.approx(lo * lo, abs=1e-7) and w[1, 2] == pytest.approx(hi * hi, abs=1e-7)
    np.testing.assert_allclose(w, w.T)  # symmetric, centred, no zero border
    assert w.min() > 0.119


def test_box_to_image_hand_computed_and_round_trip():
    prev = [100, 50, 20, 20]  # centre (110, 60); search crop side ceil(20 * 4) = 80 -> resize factor 64/80
    rf, S = 64 / 80, 64
    np.testing.assert_allclose(box_to_image([0.5, 0.5, 0.25, 0.25], prev, rf, S), [100, 50, 20, 20])
    # crop centre (48, 16) px, size (32, 8) -> image centre (48/0.8 + 70, 16/0.8 + 20) = (130, 40), size (40, 10)
    np.testing.assert_allclose(box_to_image([0.75, 0.25, 0.5, 0.125], prev, rf, S), [110, 35, 40, 10])
    assert crop_window(prev, rf, S) == pytest.approx((70.0, 20.0, 80.0))
    rng = np.random.default_rng(0)
    for _ in range(20):
        box = np.concatenate([rng.uniform(0, 300, 2), rng.uniform(5, 80, 2)])
        prev = np.concatenate([rng.uniform(0, 300, 2), rng.uniform(5, 80, 2)])
        rf = rng.uniform(0.2, 3.0)
        x, y, w, h = box_in_crop(box, prev, rf, S)
        cxcywh = np.array([x + w / 2, y + h / 2, w, h]) / S
        np.testing.assert_allclose(box_to_image(cxcywh, prev, rf, S), box, atol=1e-9)


def test_mask_to_image_pastes_over_the_crop_window():
    m = mask_to_image(np.ones((4, 4), np.float32), (70.0, 20.0, 80.0), (150, 200))
    assert m.shape == (150, 200) and m.dtype == np.float32
    # pixel centres in [70, 150) x [20, 100) are inside: columns 70..149, rows 20..99
    assert (m[20:100, 70:150] == 1).all() and m.sum() == 80 * 80
    assert mask_to_image(np.ones((4, 4)), (-50.0, -50.0, 40.0), (150, 200)).sum() == 0  # crop left the image
    m = mask_to_image(np.ones((4, 4)), (180.0, 130.0, 80.0), (150, 200))  # crop over the bottom-right corner
    assert (m[130:, 180:] == 1).all() and m.sum() == 20 * 20
    # a single hot cell lands on its 20x20-pixel block: cell (row 1, col 2) -> x 110..130, y 40..60
    one = np.zeros((4, 4), np.float32)
    one[1, 2] = 1
    m = mask_to_image(one, (70.0, 20.0, 80.0), (150, 200))
    ys, xs = np.nonzero(m > 0.5)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (40, 59, 110, 129)


# ----------------------------------------------------------------------------- a scripted network
class Scripted(nn.Module):
    """A network with fixed outputs on a 4x4 grid: the raw arg-max is the corner cell, but the
    Hann window moves the peak to cell (row 1, col 2) whose box is known."""

    def __init__(self, use_mask=True):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.use_mask = use_mask
        self.calls = []

    def tokenize(self, sentences):
        self.sentences = sentences
        return {"n": len(sentences)}

    def encode_text(self, tokens):
        return ("text", tokens["n"])

    def fuse_for_inference(self, *plan):
        self.plan = plan  # (samples, steps, average) the tracker will run
        self.fused = True
        return self.eval()

    def forward(self, template, search, text, return_chain=False, samples=1, steps=None, average=None, eta=None):
        self.calls.append((tuple(template.shape), tuple(search.shape), text, samples, search.clone(), eta))
        score = torch.full((1, 1, 4, 4), 0.1)
        score[0, 0, 0, 0], score[0, 0, 1, 2] = 1.0, 0.5
        offset = torch.full((1, 2, 4, 4), 0.5)
        size = torch.zeros(1, 2, 4, 4)
        size[0, 0], size[0, 1] = 0.25, 0.5
        mask = torch.ones(1, 1, 4, 4) if self.use_mask else None
        return DMTrackOutput(score, offset, size, decode_boxes(score, offset, size), mask=mask)


def _image(h=150, w=200, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_track_applies_hann_decodes_maps_back_and_clips():
    cfg = load_config("smoke", "full")  # template 32, search 64, factors 2 and 4
    net = Scripted()
    tr = Tracker(net, cfg, samples=3)
    img = _image()
    tr.initialize(img, [100, 50, 20, 20], "The Box (left-most)!")
    assert net.sentences == ["the box left most"]  # cleaned as the training sentences are
    out = tr.track(img)
    # windowed peak at (row 1, col 2): cx = 2.5/4, cy = 1.5/4, w = 0.25, h = 0.5 of the 64-px crop
    # crop px (40, 24, 16, 32) / 0.8 + crop corner (70, 20) -> centre (120, 50), size (20, 40)
    np.testing.assert_allclose(out["box"], [110, 30, 20, 40], atol=1e-9)
    assert out["score"] == pytest.approx(0.5 * ((5 + math.sqrt(5)) / 8) ** 2, abs=1e-6)
    assert out["mask"].shape == (150, 200) and out["mask"][25:95, 75:145].min() == 1.0 and out["mask"][:, :60].max() == 0
    assert net.fused  # the Tracker put the model in its inference form once, at construction
    tmpl_shape, search_shape, text, k, search, eta = net.calls[0]
    assert tmpl_shape == (1, 3, 32, 32) and search_shape == (1, 3, 64, 64) and text == ("text", 1) and k == 3
    assert eta == cfg.sampler_eta == 1.0  # the config's sampler, passed explicitly
    # the search tensor equals the shared normalisation of the shared crop
    crop, rf, _ = crop_square(img, [100, 50, 20, 20], 4.0, 64)
    assert rf == pytest.approx(0.8)
    np.testing.assert_allclose(search[0].numpy(), normalize_images(torch.from_numpy(crop)).numpy(), atol=1e-5)
    # next frame searches around the new box; near the right border the box is clipped with a 10-px margin:
    # prev (185, 50, 20, 20): crop corner x = 195 - 40 = 155 -> box x 195..215 -> x1 <= 200 - 10, x2 <= 200
    tr.box = np.array([185.0, 50.0, 20.0, 20.0])
    np.testing.assert_allclose(tr.track(img, return_mask=False)["box"], [190, 30, 10, 40], atol=1e-9)


def test_sample_spread_is_the_largest_per_pixel_range():
    samples = torch.zeros(3, 1, 2, 2)  # k = 3 masks of 2 x 2
    samples[0, 0] = torch.tensor([[0.1, 0.5], [0.9, 0.2]])
    samples[1, 0] = torch.tensor([[0.1, 0.7], [0.8, 0.2]])
    samples[2, 0] = torch.tensor([[0.1, 0.6], [0.5, 0.2]])
    # per-pixel ranges: 0, 0.2, 0.4, 0 -> 0.4
    assert float(sample_spread(samples)) == pytest.approx(0.4)
    np.testing.assert_allclose(spread_map(samples[:, 0]).numpy(), [[0, 0.2], [0.4, 0]], atol=1e-7)  # 30_visualize's map
    assert float(sample_spread(samples[:1])) == 0.0  # one sample: nothing to differ


def test_bgr_flag_and_input_checks():
    cfg = load_config("smoke", "full")
    img = _image()
    a, b = Tracker(Scripted(), cfg), Tracker(Scripted(), cfg, bgr=True)
    a.initialize(img, [60, 40, 30, 20], "x")
    b.initialize(np.ascontiguousarray(img[..., ::-1]), [60, 40, 30, 20], "x")
    a.track(img), b.track(np.ascontiguousarray(img[..., ::-1]))
    torch.testing.assert_close(a.model.calls[0][4], b.model.calls[0][4])
    for empty in ("   ", "?!."):  # nothing left after the caption cleaning
        with pytest.raises(ValueError, match="empty sentence"):
            a.initialize(img, [60, 40, 30, 20], empty)
    with pytest.raises(ValueError, match="positive width"):
        a.initialize(img, [60, 40, 0, 20], "x")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        a.initialize(img.astype(np.float32), [60, 40, 30, 20], "x")
    with pytest.raises(RuntimeError, match="initialize"):
        Tracker(Scripted(), cfg).track(img)
    deterministic = Tracker(Scripted(), cfg, eta=0.0)  # another sampler for this tracker only: the config stays
    deterministic.initialize(img, [60, 40, 30, 20], "x")
    deterministic.track(img)
    assert deterministic.model.calls[0][5] == 0.0 and cfg.sampler_eta == 1.0
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        Tracker(Scripted(), cfg, eta=-0.5)
    no_mask = Tracker(Scripted(use_mask=False), cfg)
    no_mask.initialize(img, [60, 40, 30, 20], "x")
    assert no_mask.track(img)["mask"] is None


# ----------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def smoke_full():
    torch.manual_seed(0)
    cfg = load_config("smoke", "full")
    return build_model(cfg).eval(), cfg


def test_sentence_once_per_sequence_backbone_once_per_frame(smoke_full):
    model, cfg = smoke_full
    counts = {"text": 0, "visual": 0, "denoiser": []}
    hooks = [model.text.register_forward_hook(lambda m, i, o: counts.__setitem__("text", counts["text"] + 1)),
             model.visual.register_forward_hook(lambda m, i, o: counts.__setitem__("visual", counts["visual"] + 1)),
             model.denoiser.register_forward_hook(lambda m, i, o: counts["denoiser"].append(i[0].shape[0]))]
    try:
        tr = Tracker(model, cfg, samples=5)
        img = _image(96, 96)
        tr.initialize(img, [30, 30, 16, 14], "the red star on the left moving up")
        assert counts == {"text": 1, "visual": 0, "denoiser": []}
        outs = [tr.track(img) for _ in range(4)]
        assert counts["text"] == 1  # encoded once for the whole sequence
        assert counts["visual"] == 4  # one backbone pass per frame, shared by the k = 5 chains
        assert counts["denoiser"] == [5] * (4 * cfg.sampling_steps)  # k chains batched, sampling_steps calls per frame
    finally:
        for h in hooks:
            h.remove()
    for o in outs:
        assert o["box"].shape == (4,) and np.isfinite(o["box"]).all() and o["box"][2] >= 10 and o["box"][3] >= 10
        assert o["box"][0] <= 96 - 10 and o["box"][1] <= 96 - 10  # clipped into the image
        assert o["mask"].shape == (96, 96) and o["mask"].dtype == np.float32
        assert 0 <= o["mask"].min() and o["mask"].max() <= 1 and o["mask"].max() > 0
        assert 0 < o["score"] < 1


def test_tracker_runs_the_reading_and_steps_it_is_given(smoke_full):
    model, cfg = smoke_full  # sampling_steps 2
    img, batches = _image(96, 96), []
    hook = model.denoiser.register_forward_hook(lambda m, i, o: batches.append(i[0].shape[0]))
    try:
        for kw, calls in ((dict(samples=4, average="chain"), [1] * 4),  # one chain of 4 steps
                          (dict(samples=3, steps=1), [3]),  # 3 chains of 1 step
                          (dict(samples=1), [1] * cfg.sampling_steps)):
            batches.clear()
            tr = Tracker(model, cfg, **kw)
            tr.initialize(img, [30, 30, 16, 14], "the red star")
            tr.track(img)
            assert batches == calls, kw
            assert 0 <= float(tr.last["spread"]) <= 1
        assert float(tr.last["spread"]) == 0.0  # k = 1: a single mask
    finally:
        hook.remove()


def test_seeded_tracker_is_reproducible(smoke_full):
    model, cfg = smoke_full
    img1, img2 = _image(96, 96, 1), _image(96, 96, 2)
    runs = []
    for _ in range(2):
        tr = Tracker(model, cfg, samples=2, seed=7)
        tr.initialize(img1, [30, 30, 16, 14], "the red star")
        runs.append([tr.track(img2)["box"] for _ in range(3)])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))


def test_variants_without_language_or_diffusion():
    torch.manual_seed(0)
    cfg = load_config("smoke", "no_language")
    tr = Tracker(build_model(cfg), cfg)
    img = _image(96, 96)
    tr.initialize(img, [30, 30, 16, 14], "")  # no language: an empty sentence is fine
    assert tr.text is None and tr.track(img)["mask"].shape == (96, 96)
    cfg = load_config("smoke", "no_diffusion", use_language=False)
    tr = Tracker(build_model(cfg), cfg)
    tr.initialize(img, [30, 30, 16, 14], "")
    out = tr.track(img)
    assert out["mask"] is None and np.isfinite(out["box"]).all()
