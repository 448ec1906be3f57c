"""Model cost accounting (dmtrack.track.profile) at the smoke size: parameters per part, FLOPs
per sequence and per frame as the Tracker runs, and how they scale with k and the step count."""
import pytest
import torch

from dmtrack.config import load_config
from dmtrack.track.profile import PARTS, profile_model

torch.set_num_threads(1)  # the test machines are shared: more threads only wait on each other


@pytest.fixture(scope="module")
def rows():
    # smoke sampling_steps = 2: settings (k, steps) = (1, 2), (3, 2), (1, 1), (1, 3)
    return {v: {(r["k"], r["sampling_steps"]): r for r in profile_model(load_config("smoke", v), ks=(1, 3), steps=(1, 3))}
            for v in ("full", "no_diffusion", "no_language")}


def test_parameters_per_part_add_up_to_the_total(rows):
    for v, by_setting in rows.items():
        r = next(iter(by_setting.values()))
        assert sum(r[f"params_{p}"] for p in PARTS) == r["params_total"], v
        assert r["params_backbone"] > 0 and r["params_head"] > 0
    full = rows["full"][1, 2]
    assert full["params_trainable"] < full["params_total"]  # the BERT is frozen by default
    assert rows["no_language"][1, 2]["params_trainable"] == rows["no_language"][1, 2]["params_total"]


def test_flops_grow_with_k_and_steps_by_whole_denoiser_calls(rows):
    full = rows["full"]
    assert set(full) == {(1, 2), (3, 2), (1, 1), (1, 3)}
    d = {s: r["frame_gflops_diffusion"] for s, r in full.items()}
    call = d[1, 2] - d[1, 1]  # one denoiser call of one chain; the condition encoder runs once per frame
    assert call > 0 and d[1, 3] - d[1, 2] == pytest.approx(call, rel=1e-9)
    assert d[3, 2] - d[1, 2] == pytest.approx(4 * call, rel=1e-9)  # 2 more chains x 2 steps
    assert full[1, 1]["frame_gflops"] < full[1, 2]["frame_gflops"] < full[1, 3]["frame_gflops"] < full[3, 2]["frame_gflops"]
    for s, r in full.items():  # only the diffusion part depends on k and the steps
        for p in ("backbone", "fusion", "head"):
            assert r[f"frame_gflops_{p}"] == full[1, 2][f"frame_gflops_{p}"] > 0, (s, p)
        assert r["frame_gflops"] == pytest.approx(sum(r[f"frame_gflops_{p}"] for p in PARTS), rel=1e-9)


def test_no_diffusion_has_no_denoiser_cost(rows):
    (setting, r), = rows["no_diffusion"].items()  # k and steps do not apply: one row
    assert setting == (None, None)
    assert r["params_diffusion"] == 0 and r["frame_gflops_diffusion"] == 0
    assert rows["full"][1, 2]["params_diffusion"] > 0


def test_language_costs_once_per_sequence_not_per_frame(rows):
    full, blind = rows["full"][1, 2], rows["no_language"][1, 2]
    assert blind["params_language"] == blind["params_fusion"] == 0
    assert blind["seq_gflops"] == 0 and blind["frame_gflops_fusion"] == 0
    assert full["seq_gflops"] > 0 and full["frame_gflops_language"] == 0
    # per frame, the model with language costs exactly its fusion more: no BERT work per frame
    assert full["frame_gflops"] - blind["frame_gflops"] == pytest.approx(full["frame_gflops_fusion"], rel=1e-9)
    assert full["seq_gflops"] > full["frame_gflops"]  # a 6-layer BERT over 36 tokens outweighs the smoke tracker


def test_bert_base_random_has_bert_base_uncased_shape():
    from dmtrack.model.language import TextEncoder

    enc = TextEncoder(load_config("smoke", text_encoder="bert-base-random"))
    c = enc.bert.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (12, 768, 12, 3072)
    # bert-base-uncased has 109,482,240 parameters with its pooler (768 x 768 + 768), which we drop
    assert sum(p.numel() for p in enc.bert.parameters()) == 109_482_240 - 768 * 768 - 768
    assert len(enc.tokenizer) == c.vocab_size == 30522  # MiniLM's tokenizer: bert-base-uncased's wordpieces
    with torch.inference_mode():
        feats, mask = enc(**enc.tokenize(["a red car on the left"]))
    assert feats.shape == (1, 36, 48) and mask.sum() == 8
