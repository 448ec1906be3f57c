"""Pair sampling: gap rule, visible frames, crop-box correctness, flips vs left/right, determinism, sharding."""
import re

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dmtrack.config import ConfigError, load_config
from dmtrack.data import FrameError, read_frame
from dmtrack.data.crop import crop_square, decode_scale, normalize_images
from dmtrack.data.files import jpeg_size, read_frame_reduced
from dmtrack.data.sequence import Sequence
from dmtrack.train.loop import make_loader, model_input
from dmtrack.train.sampler import (FrameCache, PairDataset, brightness, PairSampler, collate, data_workers, jitter_box,
                                   mirror_sentence, sample_frame_ids, visible_frames, worker_init)

RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (100, 100, 100)


def write_video(folder, boxes, second=None, size=(200, 160)):
    """Frames with a red target at `boxes` (xywh ints) and optionally a blue box; PNG, RGB drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (x, y, w, h) in enumerate(boxes):
        img = np.full((size[1], size[0], 3), GREY, np.uint8)
        if second is not None:
            bx, by, bw, bh = second[i]
            img[by:by + bh, bx:bx + bw] = BLUE
        img[y:y + h, x:x + w] = RED
        p = folder / f"{i + 1:08d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def colour_bbox(img, colour):
    """xyxy (exclusive) of the pixels closest to `colour` in a uint8 RGB crop."""
    ys, xs = np.nonzero((np.abs(img.astype(int) - colour).max(-1) < 100))
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def smoke_cfg(**kw):
    base = dict(brightness_jitter=0.0, flip_prob=0.0, train_datasets={"synthetic": 1.0}, pairs_per_epoch=16)
    return load_config("smoke", "full", **{**base, **kw})


@pytest.fixture
def video(tmp_path):
    n = 30
    boxes = np.array([[20 + 3 * i, 40 + i, 24, 18] for i in range(n)])
    visible = np.ones(n, bool)
    visible[[0, 5, 6, 20, 29]] = False
    return Sequence("vid", write_video(tmp_path / "vid", boxes), boxes.astype(float), "The red box", "synthetic",
                    visible=visible)


def test_frame_ids_follow_the_gap_rule_and_visibility():
    rng = np.random.default_rng(0)
    vis = np.ones(100, bool)
    vis[::3] = False
    for _ in range(500):
        t, s = sample_frame_ids(vis, 4, rng)
        assert vis[t] and vis[s] and t < s <= t + 4
    # hand-computed widening: only frames 2 and 40 visible; gap 10 fails until 10 + 5 * 6 = 40 >= 38
    vis = np.zeros(50, bool)
    vis[[2, 40]] = True
    assert sample_frame_ids(vis, 10, np.random.default_rng(1)) == (2, 40)
    assert sample_frame_ids(np.ones(1, bool), 10, rng) == (0, 0)  # image dataset: the frame is reused
    with pytest.raises(ValueError):
        sample_frame_ids(np.array([True, False, False]), 10, rng)


def test_visible_frames_combines_flags_and_empty_boxes():
    seq = Sequence("s", ["a", "b", "c", "d"], np.array([[0, 0, 5, 5], [0, 0, 0, 5], [1, 1, 2, 2], [np.nan, 0, 1, 1]]),
                   "x", "t", visible=np.array([True, True, False, True]))
    assert visible_frames(seq).tolist() == [True, False, False, False]


def test_pairs_from_dataset_use_visible_frames_within_gap(video):
    ds = PairDataset(smoke_cfg(max_gap=3), {"synthetic": [video]})
    for i in range(40):
        s = ds.raw(0, i)
        t, f = s["frame_ids"]
        # no run of 3 hidden frames here, so the gap never needs widening
        assert video.visible[t] and video.visible[f] and t < f <= t + 3


def test_jitter_box_matches_ostrack_formula():
    rng, r2 = np.random.default_rng(3), np.random.default_rng(3)  # r2 replays the draws by hand
    n = r2.standard_normal(2)
    u = r2.random(2)
    w, h = 20 * np.exp(n[0] * 0.25), 10 * np.exp(n[1] * 0.25)
    c = np.array([10 + 10, 30 + 5]) + (u - 0.5) * np.sqrt(w * h) * 3
    np.testing.assert_allclose(jitter_box([10, 30, 20, 10], 3.0, 0.25, rng), [c[0] - w / 2, c[1] - h / 2, w, h])
    np.testing.assert_allclose(jitter_box([10, 30, 20, 10], 0.0, 0.0, rng), [10, 30, 20, 10])


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_crop_box_lands_on_the_drawn_target(video, flip):
    cfg = smoke_cfg(flip_prob=flip)
    ds = PairDataset(cfg, {"synthetic": [video]})
    S = cfg.search_size
    for i in range(12):
        s = ds.raw(0, i)
        assert s["flipped"] == bool(flip)
        cx, cy, w, h = s["box"] * S
        found = colour_bbox(s["search"], RED)
        np.testing.assert_allclose(found, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1.5)
        # the template crop is centred on the template box, side ceil(2 sqrt(wh)) -> template_size
        t = s["frame_ids"][0]
        side = np.ceil(2 * np.sqrt(24 * 18))
        tw, th = 24 * cfg.template_size / side, 18 * cfg.template_size / side
        T = cfg.template_size
        np.testing.assert_allclose(colour_bbox(s["template"], RED), [T / 2 - tw / 2, T / 2 - th / 2, T / 2 + tw / 2, T / 2 + th / 2],
                                   atol=1.5)
        assert not s["search_pad"].all()


def test_flip_swaps_left_and_right_in_the_sentence(tmp_path):
    n = 10
    red = np.array([[40 + i, 60, 20, 20] for i in range(n)])
    blue = red + [25, 0, 0, 0]  # blue is right of red: "the red box left of the blue box" is true
    seq = Sequence("lr", write_video(tmp_path / "lr", red, second=blue), red.astype(float),
                   "The red box, left of the blue box", "synthetic")
    assert seq.text == "the red box left of the blue box"
    for flip, sentence in ((0.0, "the red box left of the blue box"), (1.0, "the red box right of the blue box")):
        ds = PairDataset(smoke_cfg(flip_prob=flip, search_factor=5.0, search_center_jitter=0.5), {"synthetic": [seq]})
        for i in range(6):
            s = ds.raw(0, i)
            r, b = colour_bbox(s["search"], RED), colour_bbox(s["search"], BLUE)
            assert s["text"] == sentence
            # the sentence stays true of the picture: red left of blue unless mirrored
            assert (r[0] < b[0]) == (flip == 0.0)
            assert abs(s["box"][0] * 64 - (r[0] + r[2]) / 2) < 1.5
    assert mirror_sentence("left hand of the rightmost man turning counter clockwise") == \
        "right hand of the leftmost man turning clockwise"
    assert mirror_sentence("bright leftover alright") == "bright leftover alright"  # whole words only


def test_image_dataset_reuses_its_frame(tmp_path):
    img = Sequence("ref1", write_video(tmp_path / "ref", [[50, 50, 60, 70]]), np.array([[50.0, 50, 60, 70]]),
                   "a man on the left", "refcocog")
    ds = PairDataset(smoke_cfg(train_datasets={"refcocog": 1.0}), {"refcocog": [img]})
    s = ds.raw(0, 0)
    assert s["frame_ids"] == (0, 0) and s["dataset"] == "refcocog"


def test_refcocog_crowd_and_small_references_are_not_trained_on(tmp_path):
    # JointNLT's rule (docs/datasets.md): a reference is a training target when iscrowd == 0 and w, h > 50
    from dmtrack.data import load_benchmark
    from fixtures import ref, write_refcocog

    anns = [dict(id=1, image_id=1, bbox=[10, 10, 60, 55], category_id=1, iscrowd=0),  # kept
            dict(id=2, image_id=1, bbox=[5, 5, 80, 70], category_id=1, iscrowd=1),  # a crowd
            dict(id=3, image_id=2, bbox=[10, 10, 50, 90], category_id=1, iscrowd=0),  # w = 50: not over 50
            dict(id=4, image_id=2, bbox=[10, 10, 90, 50.5], category_id=1, iscrowd=0)]  # kept
    refs = [ref(i, i, anns[i - 1]["image_id"], "train", [(10 * i, f"person number {i}")]) for i in (1, 2, 3, 4)]
    root = write_refcocog(tmp_path / "refcoco", refs, anns, [{"id": 1, "name": "person"}], size=(120, 100))
    seqs = load_benchmark("refcocog", root)
    assert [s.name for s in seqs] == ["1_10", "2_20", "3_30", "4_40"]  # the reader keeps every one
    assert [bool(visible_frames(s)[0]) for s in seqs] == [True, False, False, True]
    ds = PairDataset(smoke_cfg(train_datasets={"refcocog": 1.0}), {"refcocog": seqs})
    assert {ds.raw(0, i)["seq"] for i in range(40)} == {"1_10", "4_40"}


def test_whole_padding_crops_are_rejected(tmp_path):
    # big centre jitter at factor 2: many raw draws leave the image entirely; none may come out
    boxes = np.array([[2, 2, 10, 10]] * 5)
    seq = Sequence("corner", write_video(tmp_path / "c", boxes, size=(40, 40)), boxes.astype(float), "x", "synthetic")
    ds = PairDataset(smoke_cfg(search_center_jitter=12.0, search_factor=2.0), {"synthetic": [seq]})
    grid = 64 // 16
    for i in range(30):
        pad = ds.raw(0, i)["search_pad"]
        small = cv2.resize(pad.astype(np.uint8), (grid, grid), interpolation=cv2.INTER_NEAREST)
        assert not small.all()


def test_mixture_ratios(video, tmp_path):
    img = Sequence("ref1", write_video(tmp_path / "ref", [[50, 50, 60, 70]]), np.array([[50.0, 50, 60, 70]]), "a cup", "refcocog")
    ds = PairDataset(smoke_cfg(train_datasets={"synthetic": 3.0, "refcocog": 1.0, "lasot": 0.0}),
                     {"synthetic": [video], "refcocog": [img]})
    names = [ds.raw(0, i)["dataset"] for i in range(400)]
    assert 0.68 < names.count("synthetic") / 400 < 0.82
    with pytest.raises(KeyError, match="lasot"):
        PairDataset(smoke_cfg(train_datasets={"lasot": 1.0}), {"synthetic": [video]})


def test_determinism_and_workers(video):
    cfg = smoke_cfg(brightness_jitter=0.2, flip_prob=0.5)
    a, b = PairDataset(cfg, {"synthetic": [video]}), PairDataset(cfg, {"synthetic": [video]})
    for i in range(5):
        x, y = a[(1, i)], b[(1, i)]
        assert torch.equal(x["search"], y["search"]) and torch.equal(x["box"], y["box"]) and x["text"] == y["text"]
    assert not torch.equal(a[(1, 0)]["search"], a[(2, 0)]["search"])  # a new epoch draws new pairs
    assert not torch.equal(PairDataset(cfg.replace(seed=1), {"synthetic": [video]})[(1, 0)]["search"], a[(1, 0)]["search"])
    sampler = PairSampler(16)
    sampler.set_epoch(3)
    serial = next(iter(DataLoader(a, batch_size=8, sampler=sampler, collate_fn=collate)))
    parallel = next(iter(DataLoader(a, batch_size=8, sampler=sampler, collate_fn=collate, num_workers=2)))
    assert serial["search"].shape == (8, 64, 64, 3) and serial["template"].shape == (8, 32, 32, 3)
    assert serial["search"].dtype == torch.uint8  # normalised on the training device (train_step)
    assert serial["box"].dtype == torch.float32 and len(serial["text"]) == 8
    assert torch.equal(serial["search"], parallel["search"]) and serial["text"] == parallel["text"]
    # issue 19 item 9: only what train_step reads crosses /dev/shm: 8 x (32*32*3 + 64*64*3 uint8 + 4 float32)
    # bytes; the padding masks (8 x (32*32 + 64*64) bools more) were collated and pinned for nothing
    assert set(serial) == {"template", "search", "box", "text", "flipped", "dataset", "seq", "key"}
    assert sum(v.nbytes for v in serial.values() if torch.is_tensor(v)) == 8 * (3072 + 12288 + 16) == 123008


def test_ranks_get_disjoint_shares_and_resume_offsets(video):
    r0, r1 = PairSampler(10, 0, 2), PairSampler(10, 1, 2)
    for s in (r0, r1):
        s.set_epoch(4)
    assert list(r0) == [(4, 0), (4, 2), (4, 4), (4, 6), (4, 8)]
    assert list(r1) == [(4, 1), (4, 3), (4, 5), (4, 7), (4, 9)]
    r1.set_epoch(5, start=3)
    assert list(r1) == [(5, 7), (5, 9)] and len(r1) == 2
    ds = PairDataset(smoke_cfg(), {"synthetic": [video]})
    assert not torch.equal(ds[(4, 0)]["search"], ds[(4, 1)]["search"])


def test_truncated_frame_stops_sampling_naming_the_file(tmp_path):
    # a half-written JPEG (OpenCV alone decodes it with grey rows) must not become a training sample
    boxes = np.array([[20, 40, 24, 18], [23, 41, 24, 18]])
    seq = Sequence("cut", write_video(tmp_path / "cut", boxes), boxes.astype(float), "x", "synthetic")
    noise = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    bad = tmp_path / "cut" / "00000002.jpg"
    bad.write_bytes(data[: len(data) // 2])
    seq.frames[1] = bad
    message = re.escape(f"{bad}: incomplete image: no JPEG end marker FF D9")
    with pytest.raises(FrameError, match=message):
        FrameCache(8)(bad)
    ds = PairDataset(smoke_cfg(frame_cache_mb=8), {"synthetic": [seq]})
    with pytest.raises(FrameError, match=message):  # every pair of a 2-frame video reads frame 2
        ds[(0, 0)]


def textured_jpeg(path, seed=0, size=(1280, 720)):
    """A 1280x720 JPEG (quality 90) with detail from 4 to 256 pixels: smoothed noise at four scales."""
    rng, (w, h) = np.random.default_rng(seed), size
    img = np.zeros((h, w, 3), np.float32)
    for s, amp in [(4, 40), (16, 50), (64, 60), (256, 60)]:
        noise = rng.random((h // s + 2, w // s + 2, 3)).astype(np.float32)
        img += amp * (cv2.resize(noise, ((w // s + 2) * s, (h // s + 2) * s), interpolation=cv2.INTER_CUBIC)[:h, :w] - 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(img + 128, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def test_decode_scale_is_the_largest_power_of_two_the_crop_shrinks_by():
    # crop side ceil(factor sqrt(w h)) over the output side
    assert decode_scale([0, 0, 100, 100], 4.0, 256) == 1  # 400 / 256 = 1.56
    assert decode_scale([0, 0, 128, 128], 4.0, 256) == 2  # 512 / 256 = 2 exactly
    assert decode_scale([0, 0, 127, 128], 4.0, 256) == 1  # ceil(4 sqrt(127 * 128)) = 510 < 512
    assert decode_scale([0, 0, 300, 300], 4.0, 256) == 4  # 1200 / 256 = 4.69
    assert decode_scale([0, 0, 300, 300], 2.0, 64) == 8  # 600 / 64 = 9.4: 8 is the largest DCT scaling


def test_reduced_jpeg_decode_and_its_size(tmp_path):
    path = textured_jpeg(tmp_path / "f.jpg")
    assert jpeg_size(path.read_bytes()) == (720, 1280)
    for f in (2, 4, 8):
        image, scale, size = read_frame_reduced(path, f)
        assert scale == f and size == (720, 1280) and image.shape == (720 // f, 1280 // f, 3)
    odd = textured_jpeg(tmp_path / "odd.jpg", size=(201, 99))  # the reduced side is ceil(side / f)
    image, scale, size = read_frame_reduced(odd, 4)
    assert (scale, size, image.shape) == (4, (99, 201), (25, 51, 3))
    png = tmp_path / "f.png"  # no reduced decoding for other formats: decoded whole, scale 1
    cv2.imwrite(str(png), cv2.imread(str(path)))
    image, scale, size = read_frame_reduced(png, 4)
    assert jpeg_size(png.read_bytes()) is None and scale == 1 and size == (720, 1280) and image.shape == (720, 1280, 3)
    data = path.read_bytes()  # the end-marker check holds on the reduced path too
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match=re.escape(f"{path}: incomplete image: no JPEG end marker FF D9")):
        read_frame_reduced(path, 2)


@pytest.mark.parametrize("box,factor,out", [
    ([500, 300, 200, 150], 4.0, 256),  # 1/2, inside the frame
    ([100, 100, 300, 300], 4.0, 256),  # 1/4, padded on the left and top
    ([1100, 600, 150, 100], 4.0, 128),  # 1/4, padded right and bottom
    ([-20, 500, 400, 300], 4.0, 128),  # 1/8, partly outside the frame
    ([600, 300, 160, 120], 2.0, 64),  # 1/4, a template-like crop
])
def test_crop_from_reduced_decode_is_close_with_the_same_geometry(tmp_path, box, factor, out):
    path = textured_jpeg(tmp_path / "f.jpg")
    f = decode_scale(box, factor, out)
    assert f > 1
    whole, rf_whole, pad_whole = crop_square(read_frame(path), box, factor, out)
    image, scale, size = read_frame_reduced(path, f)
    reduced, rf, pad = crop_square(image, box, factor, out, scale=scale, size=size)
    assert rf == rf_whole and np.array_equal(pad, pad_whole)  # geometry in frame pixels: identical
    assert reduced.shape == whole.shape == (out, out, 3)
    assert np.abs(reduced.astype(int) - whole).mean() < 3  # pixels: libjpeg's DCT scaling, not a resize


def jpeg_video(folder, n=6):
    """Textured 1280x720 JPEG frames with a large target (sqrt(w h) = 240: search crops shrink 3.75x)."""
    boxes = np.array([[400 + 20 * i, 200 + 10 * i, 320, 180] for i in range(n)], float)
    paths = [textured_jpeg(folder / f"{i + 1:08d}.jpg", seed=i) for i in range(n)]
    return Sequence("big", paths, boxes, "a large textured box", "synthetic")


def test_pairs_with_reduced_decode_keep_boxes_and_masks(tmp_path):
    seq = jpeg_video(tmp_path / "big")
    cfg = load_config("paper", train_datasets={"synthetic": 1.0}, pairs_per_epoch=64, max_gap=5, frame_cache_mb=64)
    exact, reduced = PairDataset(cfg.replace(reduced_decode=False), {"synthetic": [seq]}), PairDataset(cfg, {"synthetic": [seq]})
    for i in range(4):
        a, b = exact[(0, i)], reduced[(0, i)]
        assert torch.equal(a["box"], b["box"]) and a["text"] == b["text"] and a["flipped"] == b["flipped"]
        ra, rb = exact.raw(0, i), reduced.raw(0, i)
        assert np.array_equal(ra["search_pad"], rb["search_pad"]) and np.array_equal(ra["template_pad"], rb["template_pad"])
        for k in ("template", "search"):  # uint8 crops: within 3 grey levels on average
            assert (a[k].int() - b[k].int()).abs().float().mean() < 3
    # the cache holds frames by (path, scale): whole ones for the exact path, reduced ones here
    assert {f for _, f in exact.read.frames} == {1}
    scales = {f for _, f in reduced.read.frames}
    assert scales and min(scales) >= 2  # template 2 x 240 / 128 = 3.75, search 4 x 240 / 256 = 3.75 (jittered)
    for (path, f), (image, scale, size) in reduced.read.frames.items():
        assert scale == f and size == (720, 1280) and image.shape == (720 // f, 1280 // f, 3)


def test_auto_workers_share_the_cores_between_processes(monkeypatch):
    assert load_config("paper").num_workers == "auto"
    assert load_config("demo").num_workers == 0 and load_config("smoke").num_workers == 0  # CPU training: no workers
    cfg = load_config("paper")
    for cores, env, expected in [(2, {}, 2), (64, {}, 16), (64, {"WORLD_SIZE": "8"}, 8), (12, {"WORLD_SIZE": "16"}, 0),
                                 (64, {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}, 8)]:  # two nodes of 8 processes
        monkeypatch.setattr("dmtrack.train.sampler.cpu_cores", lambda: cores)
        for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert data_workers(cfg) == expected
        assert data_workers(cfg.replace(num_workers=3)) == 3  # an explicit number is kept
    with pytest.raises(ConfigError, match="config key 'num_workers' expects int or 'auto', got 'four'"):
        load_config("paper", num_workers="four")


class ThreadCounts(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return torch.tensor([cv2.getNumThreads(), torch.get_num_threads()])


def test_data_workers_run_single_threaded(video, monkeypatch):
    monkeypatch.setattr("dmtrack.train.sampler.cpu_cores", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cv2.resize(np.zeros((800, 800, 3), np.uint8), (100, 100))  # this process's OpenCV pool has run
    threads = cv2.getNumThreads()
    try:
        loader, _ = make_loader(smoke_cfg(num_workers="auto"), {"synthetic": [video]}, 0, 1, torch.device("cpu"))
        assert loader.num_workers == 2 and loader.worker_init_fn is worker_init
        counts = next(iter(DataLoader(ThreadCounts(), num_workers=1, worker_init_fn=worker_init)))
        assert counts.tolist() == [[1, 1]]  # OpenCV and torch threads seen in a worker
    finally:
        cv2.setNumThreads(threads)


def test_brightness_table_is_the_per_pixel_float_product():
    # OSTrack's jitter on 0..255 values: clip(pixel x factor) truncated to uint8, here through a table
    crop = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for factor in (0.8, 0.9137, 1.0, 1.0721, 1.2):
        expected = np.clip(crop * factor, 0, 255).astype(np.uint8)
        assert np.array_equal(brightness(crop, factor), expected)
        assert np.array_equal(brightness(crop[:, ::-1], factor), expected[:, ::-1])  # flipped views too
    assert brightness(np.array([[[100, 200, 255]]], np.uint8), 1.2).tolist() == [[[120, 240, 255]]]


def test_crops_are_normalised_on_the_device_as_torchvision_would():
    crop = np.random.default_rng(1).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    x = normalize_images(torch.from_numpy(crop))
    assert x.shape == (2, 3, 16, 24) and x.dtype == torch.float32 and x.is_contiguous()
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    reference = (torch.from_numpy(crop).permute(0, 3, 1, 2).float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    assert torch.equal(x, reference)
    assert x[0, 0, 0, 0] == pytest.approx((crop[0, 0, 0, 0] / 255 - 0.485) / 0.229, abs=1e-6)
    # train_step takes the loader's uint8 crops and normalises them; float batches pass as they are
    assert torch.equal(model_input(torch.from_numpy(crop)), x) and model_input(x) is x
