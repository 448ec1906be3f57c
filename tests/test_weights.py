"""Pretrained backbone loading (OSTrack / MAE layouts) and DMTrack checkpoints, at tiny widths."""
import os
import pickle
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmtrack.config import config_from_dict, load_config
from dmtrack.model.vit import VisualEncoder
from dmtrack.model.weights import load_checkpoint, load_pretrained_backbone, save_checkpoint

torch.set_num_threads(1)  # shared CPU: with 2 threads tiny ops spin-wait on each other (up to 200x slower)
D = 32  # tiny width; the paper grids (8x8 template, 16x16 search, 14x14 MAE) and depth 12 are kept


def paper_tiny(**kw):
    return load_config("paper", embed_dim=D, num_heads=2, **kw)


def bicubic(grid_tokens, side, out):  # (1, side*side, D) -> (1, out*out, D), the documented resampling
    img = grid_tokens.reshape(1, side, side, D).permute(0, 3, 1, 2)
    return F.interpolate(img, size=(out, out), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, out * out, D)


def ostrack_file(path, src, with_pos=True):
    """An OSTrack training checkpoint: {'net': ...} with backbone.* and box_head.* keys, plus extras."""
    net = {"backbone." + k: v.clone() for k, v in src.state_dict().items()}
    if not with_pos:
        del net["backbone.pos_embed_z"], net["backbone.pos_embed_x"]
    net["backbone.cls_token"] = torch.randn(1, 1, D)
    net["backbone.pos_embed"] = torch.randn(1, 1 + 14 * 14, D)
    net["box_head.conv1_ctr.0.weight"] = torch.randn(8, D, 3, 3)
    torch.save({"net": net, "epoch": 300, "settings": {"lr": 4e-4}}, path)
    return net


def test_ostrack_layout_loads_one_to_one(tmp_path):
    torch.manual_seed(0)
    cfg = paper_tiny()
    src, dst = VisualEncoder(cfg), VisualEncoder(cfg)
    ostrack_file(tmp_path / "OSTrack_ep0300.pth.tar", src)
    report = load_pretrained_backbone(dst, tmp_path / "OSTrack_ep0300.pth.tar")
    assert report == {"missing": [], "unexpected": []}
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k  # pos_embed_z / pos_embed_x taken as they are, not from pos_embed


def test_ostrack_without_grid_pos_embeds_and_other_grid(tmp_path):
    torch.manual_seed(1)
    cfg = paper_tiny()
    net = ostrack_file(tmp_path / "a.pth", VisualEncoder(cfg), with_pos=False)
    dst = VisualEncoder(cfg)
    load_pretrained_backbone(dst, tmp_path / "a.pth")
    grid14 = net["backbone.pos_embed"][:, 1:]  # cls slot dropped
    torch.testing.assert_close(dst.pos_embed_z.data, bicubic(grid14, 14, 8))
    torch.testing.assert_close(dst.pos_embed_x.data, bicubic(grid14, 14, 16))
    # an OSTrack-256 checkpoint into a 384 search crop: its own 16x16 pos_embed_x is resampled to 24x24
    net = ostrack_file(tmp_path / "b.pth", VisualEncoder(cfg))
    big = VisualEncoder(paper_tiny(search_size=384))
    assert load_pretrained_backbone(big, tmp_path / "b.pth")["missing"] == []
    torch.testing.assert_close(big.pos_embed_x.data, bicubic(net["backbone.pos_embed_x"], 16, 24))
    assert torch.equal(big.pos_embed_z.data, net["backbone.pos_embed_z"])


def test_mae_layout_interpolates_and_reports(tmp_path):
    torch.manual_seed(2)
    cfg = load_config("smoke")  # D 48, template grid 2x2, search grid 4x4
    src = VisualEncoder(cfg)
    model = {k: v.clone() for k, v in src.state_dict().items() if not k.startswith("pos_embed_")}
    pos = torch.randn(1, 1 + 4 * 4, 48)
    pos[:, 0] = 1e3  # the cls row must never leak into the grid
    model.update(cls_token=torch.zeros(1, 1, 48), pos_embed=pos, mask_token=torch.zeros(1, 1, 48),
                 **{"decoder_embed.weight": torch.randn(16, 48)})
    torch.save({"model": model, "epoch": 799}, tmp_path / "mae_pretrain_vit_base.pth")
    dst = VisualEncoder(cfg)
    report = load_pretrained_backbone(dst, tmp_path / "mae_pretrain_vit_base.pth")
    assert report == {"missing": [], "unexpected": ["decoder_embed.weight", "mask_token"]}
    assert torch.equal(dst.pos_embed_x.data, pos[:, 1:])  # 4x4 grid = search grid: copied
    img = pos[:, 1:].reshape(1, 4, 4, 48).permute(0, 3, 1, 2)
    expect = F.interpolate(img, size=(2, 2), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(dst.pos_embed_z.data, expect)
    assert dst.pos_embed_z.abs().max() < 100
    assert torch.equal(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert torch.equal(dst.patch_embed.proj.weight, src.patch_embed.proj.weight)


def test_mae_pos_embed_14x14_to_paper_grids(tmp_path):
    torch.manual_seed(3)
    cfg = paper_tiny()
    model = {k: v for k, v in VisualEncoder(cfg).state_dict().items() if not k.startswith("pos_embed_")}
    pos = torch.randn(1, 197, D)
    torch.save({"model": dict(model, pos_embed=pos, cls_token=torch.zeros(1, 1, D))}, tmp_path / "mae.pth")
    dst = VisualEncoder(cfg)
    assert load_pretrained_backbone(dst, tmp_path / "mae.pth") == {"missing": [], "unexpected": []}
    torch.testing.assert_close(dst.pos_embed_z.data, bicubic(pos[:, 1:], 14, 8))
    torch.testing.assert_close(dst.pos_embed_x.data, bicubic(pos[:, 1:], 14, 16))


def test_backbone_shape_mismatch_names_file(tmp_path):
    ostrack_file(tmp_path / "wide.pth", VisualEncoder(paper_tiny()))
    narrow = VisualEncoder(load_config("paper", embed_dim=16, num_heads=2))
    with pytest.raises(ValueError, match=r"wide\.pth: shape mismatch.*blocks\.0\.attn\.qkv\.weight"):
        load_pretrained_backbone(narrow, tmp_path / "wide.pth")


class TrainerSettings:  # stands for OSTrack's trainer settings, pickled whole into its released checkpoint
    def __init__(self, marker):
        self.marker, self.cfg, self.milestones = str(marker), EasyDictLike(lr=4e-4), ListLike([200])

    def __setstate__(self, state):  # runs only if a loader executes the file's own classes
        Path(state["marker"]).write_text("executed")


class EasyDictLike(dict):  # a dict subclass (OSTrack's configs are EasyDicts): pickled as NEWOBJ + SETITEMS
    pass


class ListLike(list):  # pickled as NEWOBJ + APPENDS
    pass


class MeterLike:  # stands for OSTrack's 'stats' meters; unpickling it calls open(), i.e. runs code
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_ostrack_release_with_pickled_trainer_objects(tmp_path):
    torch.manual_seed(6)
    cfg = load_config("smoke")
    src, dst = VisualEncoder(cfg), VisualEncoder(cfg)
    settings, meter = TrainerSettings(tmp_path / "setstate_ran"), MeterLike(tmp_path / "reduce_ran")
    for obj, marker in ((settings, tmp_path / "setstate_ran"), (meter, tmp_path / "reduce_ran")):
        pickle.loads(pickle.dumps(obj))  # an unrestricted unpickler does run the fixture's code ...
        assert marker.exists()
        marker.unlink()
    net = {"backbone." + k: v for k, v in src.state_dict().items()} | {"box_head.bias": torch.randn(4)}
    torch.save({"net": net, "settings": settings, "stats": {"train": {"Loss/total": meter}}, "epoch": 300,
                "net_type": "OSTrack"}, tmp_path / "OSTrack_ep0300.pth.tar")
    report = load_pretrained_backbone(dst, tmp_path / "OSTrack_ep0300.pth.tar")
    assert report == {"missing": [], "unexpected": []}
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    assert sorted(os.listdir(tmp_path)) == ["OSTrack_ep0300.pth.tar"]  # ... this loader never does
    with pytest.raises(RuntimeError, match=r"cannot read checkpoint .*OSTrack_ep0300\.pth\.tar"):
        load_checkpoint(tmp_path / "OSTrack_ep0300.pth.tar")  # DMTrack checkpoints stay weights_only, no fallback


class RawPickler:  # a pickle_module.Pickler for torch.save that writes a hand-made pickle stream as data.pkl
    def __init__(self, f, protocol):
        self.f = f

    def dump(self, raw):
        self.f.write(raw)


def test_pretrained_pickle_cannot_patch_torch_classes(tmp_path):
    # GLOBAL collections.Counter, (None, {'foo': 1}), BUILD: would setattr(Counter, 'foo', 1) in the loading process
    raw = b"\x80\x02ccollections\nCounter\nN}X\x03\x00\x00\x00fooK\x01s\x86b."
    torch.save(raw, tmp_path / "patch.pth", pickle_module=SimpleNamespace(Pickler=RawPickler, __name__="raw"))
    with pytest.raises(RuntimeError, match=r"cannot read checkpoint .*patch\.pth.*refused to set the state of a type"):
        load_pretrained_backbone(VisualEncoder(load_config("smoke")), tmp_path / "patch.pth")
    assert not hasattr(Counter, "foo")


def test_pretrained_without_backbone_weights_is_an_error(tmp_path):
    torch.manual_seed(7)
    cfg = load_config("smoke")  # depth 2: 2 patch-embed + 2 x 12 block + 2 norm tensors required, 2 pos embeds not
    src, dst = VisualEncoder(cfg), VisualEncoder(cfg)
    init = {k: v.clone() for k, v in dst.state_dict().items()}
    torch.save({"fc.weight": torch.randn(4, 4), "fc.bias": torch.randn(4)}, tmp_path / "unrelated.pth")
    with pytest.raises(ValueError, match=r"unrelated\.pth: lacks 28 of the visual encoder's 30 tensors .*: "
                                         r"patch_embed\.proj\.weight, patch_embed\.proj\.bias, blocks\.0\.norm1\.weight, "
                                         r"blocks\.0\.norm1\.bias, blocks\.0\.attn\.qkv\.weight and 23 more;"):
        load_pretrained_backbone(dst, tmp_path / "unrelated.pth")
    model = {k: v for k, v in src.state_dict().items() if not k.startswith("blocks.1.mlp.")}
    torch.save({"model": model}, tmp_path / "mae.pth")
    with pytest.raises(ValueError, match=r"mae\.pth: lacks 4 .*: blocks\.1\.mlp\.fc1\.weight, blocks\.1\.mlp\.fc1\.bias, "
                                         r"blocks\.1\.mlp\.fc2\.weight, blocks\.1\.mlp\.fc2\.bias; "):
        load_pretrained_backbone(dst, tmp_path / "mae.pth")
    assert all(torch.equal(init[k], v) for k, v in dst.state_dict().items())  # nothing half-loaded
    # position embeddings may be absent: left at their init and reported
    torch.save({"model": {k: v for k, v in src.state_dict().items() if not k.startswith("pos_embed")}}, tmp_path / "nopos.pth")
    assert load_pretrained_backbone(dst, tmp_path / "nopos.pth") == {"missing": ["pos_embed_x", "pos_embed_z"], "unexpected": []}
    assert torch.equal(dst.pos_embed_x, init["pos_embed_x"]) and torch.equal(dst.norm.weight, src.norm.weight)


def test_dmtrack_checkpoint_as_pretrained(tmp_path):
    from dmtrack import build_model
    torch.manual_seed(8)
    cfg = load_config("smoke", "no_language")
    trained = build_model(cfg)
    path = save_checkpoint(tmp_path / "model.pth", trained, cfg, epoch=3)
    other = build_model(cfg.replace(use_diffusion=False, pretrained=str(path)))  # another variant: only visual.* is taken
    assert other.pretrained_report == {"missing": [], "unexpected": []}
    for (k, a), b in zip(trained.visual.state_dict().items(), other.visual.state_dict().values()):
        assert torch.equal(a, b), k


def test_unknown_layout_names_file(tmp_path):
    torch.save({"state": 3}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth.*'net'.*'model'"):
        load_pretrained_backbone(VisualEncoder(load_config("smoke")), tmp_path / "odd.pth")


@pytest.mark.parametrize("damage", ["random", "truncated", "pickled_object"])
def test_corrupt_files_raise_naming_file(tmp_path, damage):
    cfg = load_config("smoke")
    enc = VisualEncoder(cfg)
    path = tmp_path / f"{damage}.pth"
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif damage == "truncated":
        save_checkpoint(path, enc, cfg)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a pickle that would run code: refused by weights_only=True (a *pretrained* file's pickled
        # objects become inert placeholders instead: test_ostrack_release_with_pickled_trainer_objects)
        torch.save({"model": enc.state_dict(), "config": cfg, "format": "dmtrack-v1"}, path)
    loaders = (load_checkpoint,) + (() if damage == "pickled_object" else (lambda p: load_pretrained_backbone(enc, p),))
    for load in loaders:
        with pytest.raises(RuntimeError, match=f"cannot read checkpoint .*{damage}\\.pth"):
            load(path)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_checkpoint(tmp_path / "nothing.pth")


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(4)
    cfg = load_config("smoke", variant="no_gt_ce")
    model = VisualEncoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)).search.sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "run" / "last.pth", model, cfg, epoch=3, step=12, optimizer=opt.state_dict())
    assert sorted(os.listdir(tmp_path / "run")) == ["last.pth"]  # no temp file left behind
    ck = load_checkpoint(path)
    assert ck["format"] == "dmtrack-v1" and ck["epoch"] == 3 and ck["step"] == 12
    assert config_from_dict(ck["config"]) == cfg and ck["config"]["ce_layers"] == (1,)
    fresh = VisualEncoder(config_from_dict(ck["config"]))
    fresh.load_state_dict(ck["model"])
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1
    # overwrite is atomic and replaces the content
    save_checkpoint(path, model, cfg, epoch=4)
    assert load_checkpoint(path)["epoch"] == 4


def test_checkpoint_refuses_unloadable_values_and_foreign_files(tmp_path):
    cfg = load_config("smoke")
    enc = VisualEncoder(cfg)
    with pytest.raises(TypeError, match=r"checkpoint\['stats'\]\['arr'\] is a ndarray"):
        save_checkpoint(tmp_path / "x.pth", enc, cfg, stats={"arr": np.zeros(3)})
    assert not any(tmp_path.iterdir())
    torch.save({"model": enc.state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match=r"bare\.pth: not a DMTrack checkpoint, missing key\(s\) \['config', 'format'\]"):
        load_checkpoint(tmp_path / "bare.pth")


def test_build_model_with_ostrack_pretrained_and_mismatched_checkpoint(tmp_path):
    from dmtrack import build_model
    torch.manual_seed(5)
    cfg = load_config("paper", "no_language", embed_dim=D, num_heads=2, fusion_heads=2, head_channels=16, denoiser_channels=8)
    src = VisualEncoder(cfg)
    ostrack_file(tmp_path / "OSTrack_ep0300.pth.tar", src)
    model = build_model(cfg.replace(pretrained=str(tmp_path / "OSTrack_ep0300.pth.tar")))
    assert model.pretrained_report == {"missing": [], "unexpected": []}
    assert torch.equal(model.visual.blocks[11].mlp.fc2.weight, src.blocks[11].mlp.fc2.weight)
    # a DMTrack checkpoint loaded into a model of another variant: the error names file and keys
    path = save_checkpoint(tmp_path / "full.pth", model, cfg)
    other = build_model(cfg.replace(use_diffusion=False))
    with pytest.raises(ValueError, match=r"full\.pth: does not match the model .*variant 'no_language'.*unexpected denoiser\."):
        load_checkpoint(path, model=other)
    again = build_model(cfg)
    load_checkpoint(path, model=again)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_checkpoint_leaves_out_the_frozen_bert_and_loads_back_identical(tmp_path):
    from dmtrack import build_model
    from dmtrack.track import load_model

    cfg = load_config("smoke", "full")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    bert = model.frozen_text_state()
    n_bert = sum(v.numel() for v in bert.values())
    assert bert and all(k.startswith("text.bert.") for k in bert) and n_bert == 22_565_376  # MiniLM
    whole = tmp_path / "whole.pth"  # what save_checkpoint wrote before: every tensor
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "format": "dmtrack-v1"}, whole)
    path = save_checkpoint(tmp_path / "model.pth", model, cfg)
    assert whole.stat().st_size - path.stat().st_size == pytest.approx(4 * n_bert, rel=0.01)  # float32 bytes of BERT
    ckpt = load_checkpoint(path)
    assert set(ckpt["model"]) == set(model.state_dict()) - set(bert)
    assert ckpt["left_out"]["prefix"] == "text.bert." and ckpt["left_out"]["text_encoder"] == "minilm"

    loaded, _ = load_model(path)  # a fresh model: the BERT comes from cfg.text_encoder, the rest from the file
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    outs = []
    for m in (model, loaded):
        torch.manual_seed(1)
        with torch.inference_mode():
            outs.append(m(z, x, m.encode_text(m.tokenize(["a red car", "the dog"])), samples=2))
    for name in ("score_map", "offset_map", "size_map", "mask"):
        assert torch.equal(getattr(outs[0], name), getattr(outs[1], name)), name

    other = build_model(cfg)  # the text encoder's files changed since: refused, naming the file
    with torch.no_grad():
        other.text.bert.embeddings.word_embeddings.weight[5] += 1
    with pytest.raises(ValueError, match=r"model\.pth: saved without its frozen text encoder 'minilm', whose weights have changed"):
        load_checkpoint(path, model=other)
    partial = {k: v for k, v in model.state_dict().items() if k != "text.bert.encoder.layer.0.output.dense.weight"}
    with pytest.raises(RuntimeError, match="Missing key.*text.bert.encoder.layer.0.output.dense.weight"):
        build_model(cfg).load_state_dict(partial)  # some of BERT's keys but not all: never a partial load
    tuned = cfg.replace(text_finetune=True)  # a fine-tuned BERT is the model's own: kept
    kept = load_checkpoint(save_checkpoint(tmp_path / "tuned.pth", build_model(tuned), tuned))
    assert set(bert) <= set(kept["model"]) and "left_out" not in kept
    del kept["model"]["text.bert.embeddings.word_embeddings.weight"]
    torch.save(kept, tmp_path / "tuned.pth")
    with pytest.raises(ValueError, match=r"tuned\.pth: does not match .*missing text\.bert\.embeddings\.word_embeddings"):
        load_checkpoint(tmp_path / "tuned.pth", model=build_model(tuned))


def test_a_checkpoint_saved_before_precision_was_renamed_evaluates(tmp_path):
    from dmtrack.model import build_model
    from dmtrack.track import load_model

    cfg = load_config("smoke", "full", train_precision="bf16")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "model.pth", model, cfg)
    ckpt = load_checkpoint(path)
    ckpt["config"] = {("precision" if k == "train_precision" else k): v for k, v in ckpt["config"].items()}
    torch.save(ckpt, path)  # what a training wrote before the key was renamed
    loaded, got = load_model(path)  # what dmtrack evaluate reads
    assert got == cfg and got.train_precision == "bf16"
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_pretrained_head_loads_a_base_trackers_head_and_ostracks_box_head(tmp_path):
    from dmtrack import build_model
    from dmtrack.model.head import CenterHead

    torch.manual_seed(9)
    base_cfg = load_config("smoke", "base")
    base = build_model(base_cfg)
    path = save_checkpoint(tmp_path / "base.pth", base, base_cfg)
    cfg = load_config("smoke", "full", pretrained=str(path), pretrained_head=False)
    assert not any(torch.equal(a, b) for a, b in zip(build_model(cfg).head.state_dict().values(),
                                                     base.head.state_dict().values()) if a.dim() > 1)  # the paper: backbone only
    model = build_model(cfg.replace(pretrained_head=True))
    for (k, a), b in zip(base.head.state_dict().items(), model.head.state_dict().values()):
        assert torch.equal(a, b), k
    # OSTrack's box head: conv<i>_<ctr|offset|size>.<0 conv | 1 bn>, conv5 the 1x1 output conv
    head = CenterHead(D, 16)
    net = {}
    for ours, theirs in (("score", "ctr"), ("offset", "offset"), ("size", "size")):
        for i in range(1, 5):
            for j in (0, 1):
                for k, v in getattr(head, ours)[3 * (i - 1) + j].state_dict().items():
                    net[f"box_head.conv{i}_{theirs}.{j}.{k}"] = torch.randn_like(v.float()).to(v.dtype)
        for k, v in getattr(head, ours)[12].state_dict().items():
            net[f"box_head.conv5_{theirs}.{k}"] = torch.randn_like(v)
    torch.save({"net": net}, tmp_path / "ostrack.pth")
    from dmtrack.model.weights import load_pretrained_head

    load_pretrained_head(head, tmp_path / "ostrack.pth")
    assert torch.equal(head.score[0].weight, net["box_head.conv1_ctr.0.weight"])
    assert torch.equal(head.size[10].running_var, net["box_head.conv4_size.1.running_var"])
    assert torch.equal(head.offset[12].bias, net["box_head.conv5_offset.bias"])
    del net["box_head.conv3_size.0.weight"]
    torch.save({"net": net}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth: its centre head does not fit .*missing size\.6\.weight"):
        load_pretrained_head(CenterHead(D, 16), tmp_path / "partial.pth")
