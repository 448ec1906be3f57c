"""The paper profile's chain end to end on fixture datasets in the real layouts of all five datasets,
run the way a user runs it: `dmtrack report --profile paper` from the folder holding data/ (a relative
DMTRACK_DATA), with tiny overrides on the command line, scratch training (pretrained=none), the packaged
MiniLM (--allow-minilm), one seed, --max-frames, a k sweep of the two k Table 2 runs anyway, the final
reading only and the robustness test with its control (26 notebooks: 5 of them the language-robustness
test on LaSOT). The LaSOT fixture lists 2 test sequences, so it runs with the custom-split opt-out (DMTRACK_LASOT_SPLIT_CHECK=0), which the report must flag.
The same chain runs once more under reading=authors (`--set reading=authors`), the authors' choices switched on."""
import html as htmllib
import json
import os
import re

import pytest

from dmtrack.cli import main
from fixtures import boxes, ref, write_lasot_seq, write_otb_video, write_query, write_refcocog, write_tnl2k_seq

SIZE = (64, 48)  # frame width, height: every fixture box lies inside
N = 6  # frames per sequence; --max-frames 4 tracks and scores the first 4
# the smoke profile's sizes and recipe, typed as a user types them
TOY = ["template_size=32", "search_size=64", "embed_dim=48", "depth=2", "num_heads=2", "fusion_heads=2",
       "drop_path_rate=0.0", "ce_layers=[1]", "ce_start_epoch=0", "ce_warm_epochs=1", "gt_ce_start_epoch=1",
       "sampling_steps=2", "denoiser_channels=8", "head_channels=16", "epochs=2", "pairs_per_epoch=16", "batch_size=4",
       "lr=1e-3", "backbone_lr=1e-3", "grad_clip=1.0", "num_workers=0", "max_gap=20", "text_cache=4096", "pretrained=none"]


def write_datasets(data):
    """data/{LaSOT, LaSOT_ext, TNL2K, OTB_lang, refcoco} in the layouts of docs/datasets.md."""
    for name in ("airplane-1", "bird-2", "airplane-2", "bird-10"):  # the first two are official test sequences
        write_lasot_seq(data / "LaSOT", name, n=N, size=SIZE)
    (data / "LaSOT" / "testing_set.txt").write_text("airplane-1\nbird-2\n")
    for name in ("atv-1", "wingsuit-10"):
        write_lasot_seq(data / "LaSOT_ext", name, n=N, size=SIZE)
    tnl = data / "TNL2K"
    write_tnl2k_seq(tnl / "test", "Assian_video_Z03_done", [f"{i}.png" for i in range(1, N + 1)], boxes(N), size=SIZE)
    write_tnl2k_seq(tnl / "test", "BF5_Blade_video_01-Done", [f"{i:08d}.png" for i in range(490, 490 + N)], boxes(N), size=SIZE)
    write_tnl2k_seq(tnl / "train" / "TNL2k_train_subset_p1", "Arrow_Video_ZZ04_done", [f"{i:05d}.jpg" for i in range(1, N + 1)],
                    boxes(N), size=SIZE)
    write_tnl2k_seq(tnl / "train", "monitor_manypeople", [f"{i:04d}.jpg" for i in range(1, N + 1)], boxes(N), size=SIZE)
    otb = data / "OTB_lang"
    write_otb_video(otb, "Biker", {"groundtruth_rect.txt": boxes(N)}, N, sep=" ", size=SIZE)
    write_otb_video(otb, "Board", {"groundtruth_rect.txt": boxes(N)}, N, fmt="{:05d}.jpg", size=SIZE)
    for name, split in (("Biker", "test"), ("Board", "test"), ("Crossing", "train"), ("Dog1", "train")):
        if split == "train":
            write_otb_video(otb, name, {"groundtruth_rect.txt": boxes(N)}, N, size=SIZE)
        write_query(otb, split, name, f"the target of {name} moving right\n")
    anns = [dict(id=1, image_id=9, bbox=[10, 8, 60, 56], category_id=1, iscrowd=0),
            dict(id=2, image_id=9, bbox=[2, 2, 90, 70], category_id=1, iscrowd=1)]  # a crowd: never trained on
    write_refcocog(data / "refcoco", [ref(1, 1, 9, "train", [(1, "the man on the left")]),
                                      ref(2, 2, 9, "train", [(2, "the people")])],
                   anns, [{"id": 1, "name": "person"}], size=(96, 80))


def _text(path) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def _run_paper_chain(tmp_path, monkeypatch, capsys, toy: list, n_steps: int) -> tuple[dict, str]:
    """Plan, then run, the paper profile's chain (`n_steps` steps) on the fixtures with the `toy` overrides; check what every
    reading must give (the plan's steps and sizes, the ETA, the manifest, the report's tables and flags) and
    return the manifest and the report's text."""
    monkeypatch.chdir(tmp_path)
    for var in [k for k in os.environ if k.startswith("DMTRACK_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("DMTRACK_DATA", "data")  # relative: the notebooks run in notebooks/, it must still work
    monkeypatch.setenv("DMTRACK_LASOT_SPLIT_CHECK", "0")
    write_datasets(tmp_path / "data")
    args = ["report", "--profile", "paper", "--seeds", "1", "--max-frames", "4", "--k-sweep", "1,5", "--steps-sweep", "2",
            "--readings", "final", "--robust-variants", "full,no_language", "--jobs", "2", "--allow-minilm",
            "--reports", "reports", "--work", "runs"] + [w for kv in toy for w in ("--set", kv)]

    assert main(args + ["--plan", "--json"]) == 0  # the plan first: it reads the data and runs nothing
    plan = json.loads(capsys.readouterr().out)
    assert plan["problems"] == [] and not (tmp_path / "reports").exists() and not (tmp_path / "runs").exists()
    assert len(plan["steps"]) == n_steps and plan["not_estimated"] == []
    assert {b: (s["sequences"], s["frames"], s["source"]) for b, s in plan["sizes"].items()} == {
        b: (2, 8, "read from the dataset") for b in ("lasot", "lasot_ext", "otb_lang", "tnl2k")}
    train = next(s for s in plan["steps"] if s["step"] == "10_train/full_seed0")
    assert train["work"]["pairs"] == 32 and train["seconds"] > 0 and plan["total_seconds"] > 0

    assert main(args) == 0
    out = capsys.readouterr().out
    etas = re.findall(r"\[eta \] (\d+)/(\d+) steps done", out)  # progress with an ETA after each step
    assert etas[0][0] == "0" and etas[-1][0] == etas[-1][1] == str(len(plan["steps"]))
    manifest = json.loads((tmp_path / "reports" / "runs" / "paper" / "manifest.json").read_text())
    assert manifest["data_env"]["DMTRACK_DATA"] == str(tmp_path / "data") and manifest["lasot_split_check"] is False
    assert manifest["seeds"] == [0] and manifest["settings"]["seeds"] == 1 and manifest["max_frames"] == 4
    assert manifest["weights"]["pretrained"]["setting"] == "none" and len(manifest["weights"]["text_encoder"]["sha256"]) == 64
    assert manifest["config_changes"]["depth"] == [12, 2] and len(manifest["config_changes"]) == len(toy)

    text = _text(tmp_path / "reports" / "index.html")
    assert "data: the real benchmarks" in text and "SYNTHETIC STAND-IN" not in text
    for title in ("Table 1, reproduced (ours, %)", "Table 2: paper (published) and ours (%)"):
        for protocol in ("pytracking", "official"):
            assert f"{title} | protocol: {protocol} | data: the real benchmarks" in text, (title, protocol)
    # the flags at the top: overrides, weights, what was scored, the unchecked split, --max-frames
    top = text[text.index("This run differs from the paper's setup"):text.index("training seeds")]
    assert f"{len(toy)} config override(s) of the profile paper" in top
    assert "trained from random initialisation" in top and "MiniLM" in top
    for name in ("LaSOT", "LaSOT_ext", "TNL2K", "OTB-Lang"):
        assert f"{name}: 2 of the official" in top, name
    assert "not checked against the official 280" in top and "first 4 frames" in top
    assert "1 per variant (seed 0)" in text
    assert re.search(r"OTB-Lang \(otb_lang\)\s*2\s*48\s*8\s*29,077", text)
    assert "Verdicts held back" in text or "Verdicts are drawn" in text
    for name in ("LaSOT (lasot)", "LaSOT_ext (lasot_ext)", "TNL2K (tnl2k)", "OTB-Lang (otb_lang)"):
        assert f"Sample frames: {name}" in text, name
    assert "Fig. 7 on TNL2K: sequence" in text
    return manifest, text


@pytest.mark.slow
def test_paper_chain_on_the_real_layouts(tmp_path, monkeypatch, capsys):
    manifest, text = _run_paper_chain(tmp_path, monkeypatch, capsys, TOY, 26)  # 21 + the robustness test's 5
    assert "paper: the chain's trainings follow the paper's text" in text  # the header names the reading


@pytest.mark.slow
def test_paper_chain_under_the_authors_reading(tmp_path, monkeypatch, capsys):
    """The same chain under reading=authors (`make reproduce PROFILE=paper ARGS="--set reading=authors"`): the paper
    profile then takes the authors' 192/384 configuration, so the toy sizes override it as a user would (one CE layer:
    one keep ratio), and the reading's one sampling step and uncached text (its BERT dropout) stay."""
    toy = [kv for kv in TOY if kv.split("=")[0] not in ("sampling_steps", "text_cache")] + ["ce_keep_ratios=[0.8]",
                                                                                         "reading=authors"]
    # one more step than the paper reading's: the steps sweep's 2 steps per chain is no longer Table 2's (1 step)
    manifest, text = _run_paper_chain(tmp_path, monkeypatch, capsys, toy, 27)
    assert manifest["overrides"]["reading"] == "authors" and manifest["config_changes"]["reading"] == ["paper", "authors"]
    from dmtrack.layout import RUN_META
    from dmtrack.model.weights import load_checkpoint
    cfg = load_checkpoint(tmp_path / "runs" / "train" / "full" / "seed0" / "model.pth")["config"]
    assert (cfg["reading"], cfg["test_average"], cfg["sampling_steps"], cfg["search_factor"]) == ("authors", "maps", 1, 5.0)
    assert cfg["train_datasets"] == {"lasot": 1.0}  # the authors' y384 recipe: LaSOT alone
    meta = json.loads((tmp_path / "runs" / "results" / "otb_lang" / "dmtrack-full" / "k5_seed0" / RUN_META).read_text())
    assert meta["reading"] == "authors" and meta["seed"] == 0  # the chain seeds its evaluations under either reading
    assert "authors: the chain's trainings follow the first author's released code" in text
    assert "None of the comparisons was run" in text and "This chain trained no authors' arm" in text
