"""Visual encoder (ViT + candidate elimination), language encoder (MiniLM BERT) and gated cross-attention."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the MiniLM must load with no hub access

import pytest
import torch
import torch.nn.functional as F

from dmtrack.config import load_config
from dmtrack.model.fusion import GatedCrossAttention
from dmtrack.model.language import TextEncoder, minilm_path, resolve_text_encoder
from dmtrack.model.vit import VisualEncoder, ce_keep_count, keep_rate_schedule

torch.set_num_threads(1)  # shared CPU: with 2 threads tiny ops spin-wait on each other (up to 200x slower)


def crops(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, cfg.template_size, cfg.template_size, generator=g),
            torch.randn(b, 3, cfg.search_size, cfg.search_size, generator=g))


def mlp_token_counts(enc, z, x, keep_rate=None):
    """Tokens entering each block's MLP (CE happens before the MLP, so this shows each layer's cut)."""
    counts = []
    hooks = [b.mlp.register_forward_hook(lambda m, i, o: counts.append(i[0].shape[1])) for b in enc.blocks]
    with torch.no_grad():
        out = enc(z, x, keep_rate)
    for h in hooks:
        h.remove()
    return counts, out


@pytest.mark.parametrize("profile,nz,nx,d", [("smoke", 4, 16, 48), ("demo", 16, 64, 128)])
def test_visual_shapes(profile, nz, nx, d):
    cfg = load_config(profile)
    enc = VisualEncoder(cfg).eval()
    out = enc(*crops(cfg))
    assert enc.grid * enc.grid == nx
    assert out.search.shape == (2, nx, d) and out.template.shape == (2, nz, d)
    assert out.removed.shape == (2, nx) and out.removed.dtype == torch.bool


def test_ce_keep_arithmetic():
    # OSTrack ViT-B/256: 256 search tokens, keep 0.7 at three layers
    counts = [256]
    for _ in range(3):
        counts.append(ce_keep_count(counts[-1], 0.7))
    assert counts == [256, 180, 126, 89]
    assert ce_keep_count(64, 0.7) == 45 and ce_keep_count(45, 0.7) == 32  # demo: 0.7*64 = 44.8, 0.7*45 = 31.5
    assert ce_keep_count(16, 0.7) == 12  # smoke: 11.2


def test_ce_paper_grid_counts_and_zero_fill():
    # paper grid and depth (64 + 256 tokens, CE at blocks 3, 6, 9) at a tiny width
    cfg = load_config("paper", embed_dim=32, num_heads=2)
    enc = VisualEncoder(cfg).eval()
    counts, out = mlp_token_counts(enc, *crops(cfg))
    assert counts == [320] * 3 + [64 + 180] * 3 + [64 + 126] * 3 + [64 + 89] * 3
    assert out.removed.sum(1).tolist() == [256 - 89, 256 - 89]
    zero = out.search.abs().sum(-1) == 0
    assert torch.equal(zero, out.removed)  # exactly the eliminated positions are zero-filled


def test_ce_small_size_counts():
    cfg = load_config("demo")  # CE at blocks 1 and 2, 64 search tokens
    enc = VisualEncoder(cfg).eval()
    counts, out = mlp_token_counts(enc, *crops(cfg))
    assert counts == [80, 16 + 45, 16 + 32, 16 + 32]
    assert out.removed.sum(1).tolist() == [32, 32]
    assert torch.equal(out.search.abs().sum(-1) == 0, out.removed)
    counts, out = mlp_token_counts(enc, *crops(cfg), keep_rate=0.5)  # a training-schedule rate: 64 -> 32 -> 16
    assert counts == [80, 48, 32, 32] and out.removed.sum(1).tolist() == [48, 48]


def test_keep_rate_one_removes_none():
    cfg = load_config("demo")
    enc = VisualEncoder(cfg).eval()
    counts, out = mlp_token_counts(enc, *crops(cfg), keep_rate=1.0)
    assert counts == [80] * 4 and not out.removed.any()
    assert (out.search.abs().sum(-1) > 0).all()


def test_ce_block_matches_timm_block_and_drops_least_attended():
    cfg = load_config("demo", ce_layers=(0,), depth=1)
    enc = VisualEncoder(cfg).eval()
    z, x = crops(cfg, b=3)
    with torch.no_grad():
        ref = enc(z, x, keep_rate=1.0)  # timm's Block.forward
        full = enc(z, x, keep_rate=0.999)  # CE path keeping all 64 tokens (ceil(63.9) = 64), then scattered back
        out = enc(z, x)  # keeps 45
        # independent reference: full attention matrix of block 0, centre template query (1,1) of 4x4
        h = torch.cat([enc.patch_embed(z) + enc.pos_embed_z, enc.patch_embed(x) + enc.pos_embed_x], 1)
        a = enc.blocks[0].attn
        q, k, _ = a.qkv(enc.blocks[0].norm1(h)).reshape(3, h.shape[1], 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * a.head_dim**-0.5).softmax(-1)  # (B, H, N, N)
        score = attn[:, :, 1 * 4 + 1, 16:].mean(1)  # (B, 64)
    assert not full.removed.any()
    torch.testing.assert_close(full.search, ref.search, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.template, ref.template, atol=1e-5, rtol=1e-5)
    expect_removed = torch.zeros(3, 64, dtype=torch.bool).scatter(1, score.argsort(1)[:, :64 - 45], True)
    assert torch.equal(out.removed, expect_removed)


def test_ce_template_range_all_differs_from_ctr_point():
    cfg = load_config("demo", ce_template_range="all")
    enc = VisualEncoder(cfg).eval()
    assert enc.ce_rows == list(range(16))
    assert VisualEncoder(load_config("demo")).ce_rows == [5]  # (1,1) of the 4x4 template
    assert VisualEncoder(load_config("paper", embed_dim=32, num_heads=2)).ce_rows == [27]  # (3,3) of 8x8, OSTrack


def test_keep_rate_schedule_values():
    cfg = load_config("paper", ce_start_epoch=20, ce_warm_epochs=80, ce_keep_ratio=0.7)  # OSTrack-256's recipe
    # 0.7 + 0.3 * (cos(pi * (e - 20) / 80) + 1) / 2, hand-evaluated
    expect = {0: 1.0, 19.5: 1.0, 20: 1.0, 40: 0.7 + 0.15 * (1 + 0.7071067811865476), 60: 0.85,
              80: 0.7 + 0.15 * (1 - 0.7071067811865476), 100: 0.7, 300: 0.7}
    for epoch, value in expect.items():
        assert keep_rate_schedule(cfg, epoch) == pytest.approx(value, abs=1e-12), epoch
    smoke = load_config("smoke")  # start 0, warm 1: 1 -> 0.7 within the first epoch
    assert keep_rate_schedule(smoke, 0) == 1.0 and keep_rate_schedule(smoke, 0.5) == pytest.approx(0.85)
    assert keep_rate_schedule(smoke, 1) == pytest.approx(0.7)


def test_paper_size_encoder_forward():
    cfg = load_config("paper")
    enc = VisualEncoder(cfg).eval()
    assert sum(p.numel() for p in enc.parameters()) == 85_892_352  # ViT-B/16 without cls token / head
    with torch.no_grad():
        out = enc(*crops(cfg, b=1))
    assert out.search.shape == (1, 256, 768) and out.template.shape == (1, 64, 768)
    assert out.removed.sum().item() == 167


# ---- language encoder ----

@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder(load_config("demo"))


def test_minilm_offline_path_and_bad_dir(tmp_path):
    path = resolve_text_encoder("minilm")
    assert path == minilm_path() and (path / "config.json").is_file()
    with pytest.raises(FileNotFoundError, match="bert-base-uncased-missing"):
        resolve_text_encoder(str(tmp_path / "bert-base-uncased-missing"))


def test_tokenize_36_with_cls_sep_and_truncation(text_encoder):
    tok = text_encoder.tokenize(["A red car", "the " + "very " * 60 + "long description"])
    ids, mask = tok["input_ids"], tok["attention_mask"]
    assert ids.shape == mask.shape == (2, 36) and ids.dtype == mask.dtype == torch.long
    # bert-base-uncased vocabulary: [CLS]=101, a=1037, red=2417, car=2482, [SEP]=102, [PAD]=0
    assert ids[0, :6].tolist() == [101, 1037, 2417, 2482, 102, 0] and (ids[0, 5:] == 0).all()
    assert mask[0].tolist() == [1] * 5 + [0] * 31
    assert ids[1, 0] == 101 and ids[1, 35] == 102 and mask[1].sum() == 36  # 34 wordpieces kept
    assert text_encoder.tokenizer.convert_ids_to_tokens(ids[1, 1:3].tolist()) == ["the", "very"]


def test_tokenize_empty_sentence_names_it(text_encoder):
    with pytest.raises(ValueError, match=r"sentence 1 is empty \(' '\)"):
        text_encoder.tokenize(["a dog", " "])


def test_bert_runs_once_per_distinct_sentence(text_encoder):
    calls = []
    hook = text_encoder.bert.register_forward_hook(lambda m, args, kw, out: calls.append(kw["input_ids"].shape[0]), with_kwargs=True)
    sents = ["a red car", "a small white dog", "a red car", "a red car"]
    with torch.no_grad():
        feats, mask = text_encoder(**text_encoder.tokenize(sents))
        alone, _ = text_encoder(**text_encoder.tokenize(["a small white dog"]))
    hook.remove()
    assert calls == [2, 1]  # one BERT call on the 2 distinct rows, then the single sentence
    assert feats.shape == (4, 36, text_encoder.proj.out_features) and mask.dtype == torch.bool and mask.sum(1).tolist() == [5, 6, 5, 5]
    assert torch.equal(feats[0], feats[2]) and torch.equal(feats[0], feats[3])
    torch.testing.assert_close(feats[1, :6], alone[0, :6], atol=1e-5, rtol=1e-4)
    assert (feats[0, :5] - feats[1, :5]).abs().max() > 1e-2


def test_minilm_has_trained_weights(text_encoder):
    # mean-pooled MiniLM features: a paraphrase is closer than an unrelated sentence
    tok = text_encoder.tokenize(["a red car driving on the road", "a red automobile on the street", "a man playing guitar on stage"])
    with torch.no_grad():
        h = text_encoder.bert(**tok).last_hidden_state
    m = tok["attention_mask"].unsqueeze(-1).float()
    e = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_frozen_vs_finetune(text_encoder):
    assert not any(p.requires_grad for p in text_encoder.bert.parameters())
    assert all(p.requires_grad for p in text_encoder.proj.parameters())
    text_encoder.train()
    assert text_encoder.training and not text_encoder.bert.training  # frozen BERT stays in eval mode
    text_encoder.eval()
    tuned = TextEncoder(load_config("smoke", text_finetune=True)).train()
    assert tuned.bert.training and all(p.requires_grad for p in tuned.parameters())
    assert not any("pooler" in n for n, _ in tuned.named_parameters())  # no parameter that never gets a gradient
    feats, mask = tuned(**tuned.tokenize(["a red car", "a dog"]))
    feats[mask].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tuned.parameters())


# ---- gated cross-attention (Eq. 2) ----

def test_gated_cross_attention_changes_output_and_gets_gradients():
    torch.manual_seed(0)
    gca = GatedCrossAttention(32, 4)
    assert torch.allclose(torch.tanh(gca.gate), torch.full((32,), math.tanh(0.1)))
    h = torch.randn(2, 16, 32, requires_grad=True)
    t = torch.randn(2, 6, 32)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = gca(h, t, mask)
    assert out.shape == h.shape and (out - h).abs().max() > 1e-3
    (out ** 2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gca.parameters())
    # padded words are ignored; a zero gate leaves the visual tokens untouched
    t2 = t.clone()
    t2[1, 3:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(gca(h, t2, mask), out)
        gca.gate.zero_()
        assert torch.equal(gca(h, t, mask), h)
