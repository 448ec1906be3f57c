"""bench/compare_authors.py without the authors' code: its weight map, by hand and over every parameter of our
reading=authors model, and its one-line refusals (exit 2) when the checkout is missing or cannot be imported."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from dmtrack import build_model, load_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "compare_authors.py"
HARNESS = runpy.run_path(str(SCRIPT))  # defines, does not run


@pytest.mark.parametrize("ours,theirs", [
    ("visual.blocks.5.attn.qkv.weight", "backbone.blocks.5.attn.qkv.weight"),
    ("visual.pos_embed_x", "backbone.pos_embed_x"),
    ("fusion.norm_t.weight", "cross_attention_p.norm1_kv.weight"),
    ("fusion.q.weight", "cross_attention_p.attn.q.weight"),
    ("fusion.mlp.fc2.bias", "cross_attention_p.mlp.fc2.bias"),
    ("fusion.search_pos.rows", "untied_search_pos_enc_p.pos.h_pos"),
    ("fusion.text_pos.cols", "untied_text_pos_enc_p.pos.w_pos"),
    ("fusion.search_pos.proj.weight", "untied_search_pos_enc_p.pos_q_linear.weight"),
    ("fusion.text_pos.proj.bias", "untied_text_pos_enc_p.pos_k_linear.bias"),
    ("denoiser.time_mlp.2.weight", "time_embed.2.weight"),
    ("denoiser.down.0.bn.running_var", "down.0.bn.running_var"),
    ("denoiser.down.1.film.weight", "down.1.mlp.1.weight"),
    ("denoiser.down.1.norm2.bias", "down.1.block2.norm.bias"),
    ("denoiser.up.3.conv.weight", "up.3.net.0.weight"),
    ("denoiser.up.4.conv.weight", "up.4.conv.weight"),
    ("denoiser.readout.bias", "pred.bias"),
    ("filter.score.weight", "filter.summation.weight"),
    ("filter.mix.weight", "filter.cross_heads.weight"),
    ("filter.norm.running_mean", "filter.norm.running_mean"),
    ("head.score.0.weight", "box_head.conv1_ctr.0.weight"),
    ("head.offset.4.bias", "box_head.conv2_offset.1.bias"),
    ("head.size.10.running_mean", "box_head.conv4_size.1.running_mean"),
    ("head.size.12.weight", "box_head.conv5_size.weight"),
    ("head.score.1.weight", "box_head.conv1_ctr.1.weight"),  # not head.score.12's prefix
])
def test_their_name_by_hand(ours, theirs):
    assert HARNESS["their_name"](ours) == (theirs, None)


def test_their_name_value_rows_text_and_unknown_keys():
    name = HARNESS["their_name"]
    key, rows = name("filter.value.weight", 48)
    assert key == "filter.qkv.weight" and (rows.start, rows.stop) == (96, 144)  # v = rows [2 D, 3 D) of q | k | v
    assert name("text.bert.encoder.layer.0.output.dense.weight") is None  # BERT is not compared
    with pytest.raises(KeyError, match="no counterpart"):
        name("mask_proj.weight")  # the paper reading's module has none


def test_every_parameter_of_our_authors_model_has_one_counterpart():
    model = build_model(load_config("smoke", reading="authors"))
    D = model.cfg.embed_dim
    keys = [k for k in model.state_dict() if not k.startswith("text.")]
    hits = [HARNESS["their_name"](k, D) for k in keys]
    assert all(h is not None for h in hits) and len(keys) > 100
    assert len({(n, None if r is None else (r.start, r.stop)) for n, r in hits}) == len(keys)  # no two share one


def _run(*args, env_path=""):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (env_path, str(REPO)) if p)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_cli_refuses_a_missing_or_unimportable_checkout_in_one_line(tmp_path):
    r = _run()
    assert r.returncode == 2 and "--authors-repo" in r.stderr  # argparse: the option is required
    r = _run("--authors-repo", str(tmp_path / "absent"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"compare_authors: --authors-repo {tmp_path / 'absent'}: no Diffusion-Mask-Driven-Visual-language-Tracking "
        "checkout there (lib/models/ostrack/ostrack.py and experiments/ostrack/vitb_text_ep384.yaml)"]
    # a checkout whose model module cannot be imported (here: a module it needs is missing)
    root = tmp_path / "repo" / "Diffusion-Mask-Driven-Visual-language-Tracking"
    (root / "lib/models/ostrack").mkdir(parents=True)
    (root / "lib/models/ostrack/ostrack.py").write_text("import module_the_authors_need_xyz\n")
    (root / "experiments/ostrack").mkdir(parents=True)
    (root / "experiments/ostrack/vitb_text_ep384.yaml").write_text("MODEL: {}\n")
    r = _run("--authors-repo", str(tmp_path / "repo"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"compare_authors: cannot import the authors' code from {root}: ModuleNotFoundError")
    assert "module_the_authors_need_xyz" in lines[0]
