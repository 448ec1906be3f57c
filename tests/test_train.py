"""Training loop at smoke size: run folder, lr drop, exact resume, DDP with 2 processes, CLI errors."""
import csv
import json
from importlib import metadata
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from dmtrack.cli import main as cli_main
from dmtrack.config import config_from_dict, load_config
from dmtrack.data.lasot import write_sequence
from dmtrack.io import RunLocked
from dmtrack.model import build_model, load_checkpoint
from dmtrack.train import make_scheduler, train
from dmtrack.train.loop import TrainRun, train_step, wrap_net

SENTENCES = ["the red square on the left", "a small green box moving right", "blue block"]


def write_lasot_train(root, n_seq=3, n_frames=12):
    """A tiny synthetic_train set in the real LaSOT layout: <root>/train/<class>/<class>-<k>/..."""
    rng = np.random.default_rng(0)
    for k in range(n_seq):
        cls = ["square", "box", "block"][k]
        boxes, occ, frames = [], [], []
        colour = [(0, 0, 255), (0, 255, 0), (255, 0, 0)][k]  # BGR
        for i in range(n_frames):
            img = np.full((96, 128, 3), 90, np.uint8)
            img[:] += rng.integers(0, 40, img.shape, dtype=np.uint8)
            x, y, w, h = 10 + 5 * i, 20 + 2 * k + i, 18 + k, 14
            img[y:y + h, x:x + w] = colour
            frames.append(cv2.imencode(".jpg", img)[1].tobytes())
            boxes.append((x, y, w, h))
            occ.append(int(i == 5))
        write_sequence(root / "train" / cls / f"{cls}-{k + 1}", boxes, SENTENCES[k] + "\n", occ, frames=frames)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_lasot_train(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def env(data_root, monkeypatch):
    monkeypatch.setenv("DMTRACK_SYNTHETIC_ROOT", str(data_root))
    torch.set_num_threads(1)  # tiny smoke ops: one thread is as fast, and far faster on a loaded CPU


def smoke(variant="full", **kw):
    return load_config("smoke", variant, **{**dict(pairs_per_epoch=8, batch_size=4, epochs=2), **kw})


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_losses_lr_drop_and_model(env, tmp_path, monkeypatch):
    monkeypatch.setattr("dmtrack.train.sampler.cpu_cores", lambda: 1)  # "auto" data workers: 1 core, 1 process
    cfg = smoke(epochs=3, lr_drop_frac=0.67, lr=1e-3, backbone_lr=2e-4, train_precision="bf16",  # drop from epoch round(2.01) = 2
                num_workers="auto")
    path = train(cfg, tmp_path / "run", progress=False)
    assert path == tmp_path / "run" / "model.pth"
    rows = read_rows(tmp_path / "run" / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert {"focal", "giou", "l1", "struct", "iou", "total", "lr_backbone", "lr_rest", "seconds"} <= set(rows[0])
    assert [float(r["lr_rest"]) for r in rows] == pytest.approx([1e-3] * 4 + [1e-4] * 2)
    assert [float(r["lr_backbone"]) for r in rows] == pytest.approx([2e-4] * 4 + [2e-5] * 2)
    for r in rows:  # Eq. 6 with the smoke weights 1, 2, 5, 5
        parts = float(r["focal"]) + 2 * float(r["giou"]) + 5 * float(r["l1"]) + 5 * float(r["struct"])
        assert float(r["total"]) == pytest.approx(parts, abs=1e-4) and np.isfinite(float(r["total"]))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"] == json.loads(cfg.to_json())
    assert len(info["git"]["commit"]) == 40 and isinstance(info["git"]["dirty"], bool)
    assert info["packages"]["torch"] == metadata.version("torch") and info["hardware"]["cores"] >= 1
    assert info["world_size"] == 1 and info["device"] == "cpu"
    session = info["sessions"][0]
    assert session["from_step"] == 0 and session["to_step"] == 6 and session["pairs_per_second"] > 0
    assert session["precision"] == "bf16" and session["compile"] is False  # bf16 autocast runs on a CPU too
    assert session["num_workers"] == 1  # the resolved "auto"
    ckpt = load_checkpoint(path)  # weights_only=True
    assert ckpt["config"] == cfg.to_dict() and ckpt["global_step"] == 6
    build_model(config_from_dict(ckpt["config"])).load_state_dict(ckpt["model"])
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 0 and len(state["rng"]) == 1
    with pytest.raises(FileExistsError, match="last.pth"):
        train(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize("variant", ["no_language", "no_diffusion"])
def test_variants_without_text_or_diffusion_train(env, tmp_path, variant):
    path = train(smoke(variant, epochs=1, pairs_per_epoch=4), tmp_path / variant, progress=False)
    rows = read_rows(tmp_path / variant / "losses.csv")
    assert len(rows) == 1 and np.isfinite(float(rows[0]["total"]))
    if variant == "no_diffusion":
        assert float(rows[0]["struct"]) == 0.0  # no mask, no structure loss
    assert load_checkpoint(path)["config"]["variant"] == variant


def test_the_authors_reading_trains_and_is_recorded_in_the_checkpoint(env, tmp_path):
    # CE from epoch 0 in the smoke profile, so GT-CE (from CE's start under authors) and the full-loss pick both run
    path = train(smoke("full", reading="authors", epochs=1, pairs_per_epoch=4), tmp_path / "authors", progress=False)
    rows = read_rows(tmp_path / "authors" / "losses.csv")
    assert len(rows) == 1 and all(np.isfinite(float(rows[0][k])) for k in ("total", "struct", "focal", "giou"))
    saved = config_from_dict(load_checkpoint(path)["config"])
    assert saved.reading == "authors" and saved.double_sample_loss == "full" and saved.gt_mask == "floored"


def test_paper_schedule_drops_after_epoch_80():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = make_scheduler(opt, load_config("paper", "full"))
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:80] == pytest.approx([2e-4] * 80) and lrs[80:] == pytest.approx([2e-5] * 20)


def test_resume_reproduces_the_uninterrupted_run(env, tmp_path):
    cfg = smoke(pairs_per_epoch=12, flip_prob=0.5)  # 3 steps per epoch, 6 in all
    train(cfg, tmp_path / "full", progress=False)
    # stopped mid-epoch 0, then mid-epoch 1, then to the end
    assert train(cfg, tmp_path / "cut", max_steps=2, progress=False) is None
    assert not (tmp_path / "cut" / "model.pth").exists()
    assert train(cfg, tmp_path / "cut", resume=True, max_steps=4, progress=False) is None
    with pytest.raises(ValueError, match="lr"):
        train(cfg.replace(lr=0.5), tmp_path / "cut", resume=True, progress=False)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "model.pth")["model"]
    b = load_checkpoint(tmp_path / "cut" / "model.pth")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_rows(tmp_path / "full" / "losses.csv"), read_rows(tmp_path / "cut" / "losses.csv")
    assert [int(r["step"]) for r in rb] == [1, 2, 3, 4, 5, 6]
    assert [r["total"] for r in ra] == [r["total"] for r in rb]
    sessions = json.loads((tmp_path / "cut" / "run.json").read_text())["sessions"]
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 2), (2, 4), (4, 6)]


def fake_cuda_generators(monkeypatch, gpus: int) -> dict:
    """torch.cuda's RNG functions over `gpus` fake generators ({index: state}); an index past them raises
    IndexError as torch.cuda.default_generators[index] does on a machine with fewer GPUs."""
    states = {i: torch.tensor([i], dtype=torch.uint8) for i in range(gpus)}

    def index(device) -> int:
        i = device if isinstance(device, int) else torch.device(device).index or 0
        if i >= gpus:
            raise IndexError("tuple index out of range")
        return i

    def set_state(state, device="cuda"):
        states[index(device)] = state.clone()

    for module in (torch.cuda, torch.cuda.random):  # get/set_rng_state_all call the module's own names
        monkeypatch.setattr(module, "device_count", lambda: gpus)
        monkeypatch.setattr(module, "get_rng_state", lambda device="cuda": states[index(device)].clone())
        monkeypatch.setattr(module, "set_rng_state", set_state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return states


def test_a_checkpoint_written_on_a_two_gpu_host_resumes_on_one_gpu(monkeypatch):
    # issue 19 item 6: last.pth held every visible GPU's RNG state; restoring them all on a host (or a
    # CUDA_VISIBLE_DEVICES) with fewer GPUs raised IndexError. Now: the rank's own device's state only.
    from dmtrack.train.loop import rng_state, set_rng_state

    cpu_state = torch.get_rng_state()
    try:
        two = fake_cuda_generators(monkeypatch, 2)
        two[0] = torch.tensor([7, 7], dtype=torch.uint8)  # the generator the run drew from
        saved = rng_state(torch.device("cuda:0"))
        assert torch.equal(saved["cuda"], two[0])  # one tensor: cuda:1's state is not this rank's
        one = fake_cuda_generators(monkeypatch, 1)
        set_rng_state(saved, torch.device("cuda:0"))
        assert torch.equal(one[0], torch.tensor([7, 7], dtype=torch.uint8))
        assert "cuda" not in rng_state(torch.device("cpu"))  # a CPU run on a GPU host keeps no GPU's state
    finally:
        torch.set_rng_state(cpu_state)


def test_the_suite_trains_on_the_cpu_even_on_a_gpu_host():
    # issue 19 item 5: the tests expect the CPU's exact resume, `cpu` and `gloo`; conftest.py hides the GPUs
    # from this process and every process it starts
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and not torch.cuda.is_available()


def test_deterministic_trains_on_deterministic_kernels_and_restores_the_settings(env, tmp_path, monkeypatch):
    from dmtrack.config import ConfigError
    from dmtrack.train import loop

    seen, real_step = [], loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: seen.append(
        (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         os.environ.get("CUBLAS_WORKSPACE_CONFIG"))) or real_step(*a, **k))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as a user's earlier code may have left it
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # absent here; both undone, in reverse, after the test
    cfg = smoke(epochs=1)  # 2 steps
    train(cfg.replace(deterministic=True), tmp_path / "det", progress=False)  # no CPU op refuses the mode
    assert seen == [(True, False, True, ":4096:8")] * 2
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark  # restored
    seen.clear()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own valid setting is kept
    train(cfg.replace(deterministic=True), tmp_path / "det16", progress=False)
    assert seen[0][3] == ":16:8"
    seen.clear()
    train(cfg, tmp_path / "plain", progress=False)  # off (the default): nothing touched
    assert seen == [(False, True, False, ":16:8")] * 2
    with pytest.raises(ConfigError, match="config key 'deterministic' expects bool, got 'yes'"):
        cfg.replace(deterministic="yes")
    assert loop.config_diff(cfg.replace(deterministic=True), cfg.to_dict()) == []  # a run may be resumed with it


def test_a_run_saved_before_precision_was_renamed_resumes():
    # its checkpoints hold `precision`; read as `train_precision`, the same config: resumed, not moved aside and retrained
    from dmtrack.train.loop import config_diff

    cfg = smoke(train_precision="bf16")
    old = {("precision" if k == "train_precision" else k): v for k, v in cfg.to_dict().items()}
    assert config_diff(cfg, old) == []
    assert config_diff(cfg.replace(train_precision="fp32"), old) == ["train_precision"]


def test_a_training_handed_a_gpu_it_cannot_see_stops_before_training(env, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a chain step's kernel given GPU 3, on a machine where torch sees none
    monkeypatch.setenv("DMTRACK_GPUS", "3")
    with pytest.raises(RuntimeError, match=r"device=auto in a process handed GPU\(s\) 3 .* sees 0 GPU\(s\): it would not "
                                           "run on them"):
        train(smoke(), tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run" / "last.pth").exists()


def test_torchrun_ranks_refuse_a_gpu_they_cannot_have(monkeypatch):
    from dmtrack.config import ConfigError
    from dmtrack.train.loop import setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("DMTRACK_GPUS", raising=False)
    with pytest.raises(ConfigError, match=r"device=cuda:0 under torchrun with 2 processes puts every rank on that one "
                                          "device; use device=auto or cuda"):  # NCCL refuses two ranks on one GPU
        setup_distributed(smoke(device="cuda:0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # --nproc_per_node=2 on a one-GPU job
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    for device in ("auto", "cuda"):
        with pytest.raises(RuntimeError, match=r"torchrun rank with LOCAL_RANK=1 but this process sees 1 GPU\(s\) "
                                                r"\(CUDA_VISIBLE_DEVICES='5'\): --nproc_per_node is more than the GPUs"):
            setup_distributed(smoke(device=device))
    assert not torch.distributed.is_initialized()


def test_ddp_two_processes_identical_replicas_different_data(data_root, tmp_path):
    env = {**os.environ, "DMTRACK_SYNTHETIC_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dmtrack", "train", "--profile", "smoke", "--out", str(tmp_path / "ddp"), "--no-progress",
           "pairs_per_epoch=16", "batch_size=4", "epochs=1"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    ddp = info["sessions"][0]["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["replicas_identical"] is True
    r0, r1 = (r["first_batch"] for r in ddp["ranks"])
    # global batch 4 = 2 pairs per rank: rank 0 takes indices 0, 2; rank 1 takes 1, 3
    assert r0["keys"] == [[0, 0], [0, 2]] and r1["keys"] == [[0, 1], [0, 3]]
    assert r0["box"] != r1["box"]
    rows = read_rows(tmp_path / "ddp" / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "ddp" / "model.pth")["global_step"] == 4


def test_the_chain_trains_a_variant_over_two_gloo_processes_with_torchrun(data_root, tmp_path):
    from dmtrack.chain.steps import torchrun_command, train_variant

    overrides = {"pairs_per_epoch": 16, "batch_size": 4, "epochs": 1, "pretrained": "/w/a b.pth"}
    cmd = torchrun_command("smoke", "full", 0, tmp_path / "out", overrides, processes=2, threads=5)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:] == ["-m", "dmtrack", "train", "--profile", "smoke", "--variant", "full", "--seed", "0", "--out",
                       str(tmp_path / "out"), "--resume", "--no-progress", "--threads", "2", "--allow-minilm", "batch_size=4", "epochs=1",
                       "pairs_per_epoch=16", 'pretrained="/w/a b.pth"']  # 5 threads // 2 processes; JSON values
    del overrides["pretrained"]
    model = train_variant("smoke", "full", 0, tmp_path / "work", data_root, overrides, processes=2, threads=2)
    ddp = json.loads((model.parent / "run.json").read_text())["sessions"][0]["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo" and ddp["replicas_identical"] is True
    assert load_checkpoint(model)["global_step"] == 4  # 16 pairs / global batch 4
    assert train_variant("smoke", "full", 0, tmp_path / "work", data_root, overrides, processes=2) == model  # done: kept


KERNEL_STAND_IN = """import json, sys
from dmtrack.chain.steps import train_variant
train_variant("smoke", "full", 0, sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), processes=2, threads=2)
"""


def processes_naming(marker: str) -> list[int]:
    """Pids of the live (not zombie) processes whose command line contains `marker`."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace")
            state = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # not a process, or it ended meanwhile
        if d.isdigit() and int(d) != os.getpid() and marker in cmdline and state != "Z":
            pids.append(int(d))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_kernel_of_a_torchrun_training_stops_its_workers_and_the_rerun_resumes(data_root, tmp_path):
    # issue 19 item 11: the chain SIGKILLs a step's kernel's process group; torchrun's workers live in
    # sessions of their own, so before the fix they kept training and holding the folder's lock
    from dmtrack.layout import model_path, train_dir
    from dmtrack.chain.steps import torchrun_command

    work, overrides = tmp_path / "work", {"pairs_per_epoch": 8, "batch_size": 4, "epochs": 400, "checkpoint_every": 1}
    out, env = train_dir(work, "full", 0), {**os.environ, "OMP_NUM_THREADS": "1"}
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL_STAND_IN, str(work), str(data_root), json.dumps(overrides)],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 240
        while not (out / "last.pth").exists() and kernel.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        assert kernel.poll() is None and (out / "last.pth").exists(), kernel.stderr.read()[-3000:] if kernel.poll() else ""
        assert len(processes_naming(str(out))) == 3  # torchrun and its two workers
        os.killpg(kernel.pid, signal.SIGKILL)  # what the chain does to a step's kernel on Ctrl-C / SIGTERM
        kernel.wait()
        end = time.monotonic() + 30
        while processes_naming(str(out)) and time.monotonic() < end:
            time.sleep(0.2)
        assert processes_naming(str(out)) == []
    finally:
        for pid in processes_naming(str(out)):  # the survivors of a failed check, never left behind
            os.kill(pid, signal.SIGKILL)
        kernel.stderr.close()
    assert not model_path(work, "full", 0).exists()
    saved = load_checkpoint(out / "last.pth")["global_step"]
    cmd = torchrun_command("smoke", "full", 0, out, overrides, processes=2, threads=2) + ["--max-steps", str(saved + 1)]
    res = subprocess.run(cmd, env={**env, "DMTRACK_SYNTHETIC_ROOT": str(data_root)}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]  # the folder's lock died with the workers
    session = json.loads((out / "run.json").read_text())["sessions"][-1]
    assert (session["from_step"], session["to_step"]) == (saved, saved + 1)  # resumed where the killed run stopped


def test_a_failed_torchrun_training_names_the_workers_error_on_the_first_line(data_root, tmp_path):
    from dmtrack.chain.steps import _torchrun, torchrun_command

    cmd = torchrun_command("smoke", "full", 0, tmp_path / "out", {"no_such_key": 1}, processes=2, threads=2)
    with pytest.raises(RuntimeError) as e:
        _torchrun(cmd, data_root, tmp_path / "out" / "model.pth")
    first = str(e.value).splitlines()[0]  # what the chain's StepFailed shows (issue 19: it ended at the colon)
    assert first.startswith(f"{' '.join(cmd[:5])} ... exited with 1 without writing {tmp_path / 'out' / 'model.pth'}: "
                            "dmtrack train: error: unknown config key(s): no_such_key (known keys: ")


DDP_LOCK_RANK = """import sys
from pathlib import Path
import torch.distributed as dist
from dmtrack.io import RunLocked
from dmtrack.train.loop import run_lock

rank, init, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
try:
    with run_lock(out, rank == 0, 2):  # as train() asks for its folder
        print("held", flush=True)
except RunLocked as e:
    print(e, flush=True)
dist.destroy_process_group()
"""


def test_under_ddp_rank_0_locks_and_every_rank_stops_when_the_folder_is_busy(tmp_path):
    out, hold = tmp_path / "run", "import sys, time\nfrom dmtrack.io import exclusive_lock\n" \
        "with exclusive_lock(sys.argv[1], 'dmtrack train'):\n    print('locked', flush=True)\n    time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        ranks = [subprocess.Popen([sys.executable, "-c", DDP_LOCK_RANK, str(r), f"file://{tmp_path / 'rdzv'}", str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
        got = [r.communicate(timeout=300) for r in ranks]
    finally:
        holder.kill()
        holder.wait()
    message = f"{out}: another dmtrack train is running in this folder (pid {holder.pid}: "
    assert got[0][0].startswith(message), got[0][1][-2000:]
    assert got[1][0] == got[0][0]  # rank 1 never asked for the lock: rank 0 told it


def test_frozen_text_cache_matches_the_model_and_counts_hits():
    cfg = load_config("smoke", "full")
    model = build_model(cfg).eval()
    tokens = model.tokenize(SENTENCES + SENTENCES[:1])
    plain = model.encode_text(tokens)[0]
    single = torch.cat([model.encode_text(model.tokenize([s]))[0] for s in SENTENCES + SENTENCES[:1]])
    assert model.text.cache_outputs(2)
    cached = model.encode_text(tokens)[0]  # 3 distinct sentences: all misses, computed one by one
    assert torch.equal(cached, single)  # exactly what the tracker computes (batch 1)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    assert (model.text.cache_hits, model.text.cache_misses, len(model.text._cache)) == (0, 3, 2)  # LRU keeps 2
    assert torch.equal(model.encode_text(model.tokenize(SENTENCES[2:]))[0], single[2:3])
    assert model.text.cache_hits == 1
    assert not build_model(cfg.replace(text_finetune=True)).text.cache_outputs(10)  # fine-tuned: never cached
    assert not model.text.cache_outputs(0) and model.text._cache is None
    assert "text.bert.embeddings.word_embeddings.weight" in model.state_dict()  # keys untouched


def test_cli_rejects_unknown_override(tmp_path, capsys):
    assert cli_main(["train", "--profile", "smoke", "--out", str(tmp_path / "x"), "no_such_key=3"]) == 2
    assert capsys.readouterr().err.startswith("dmtrack train: error: unknown config key(s): no_such_key (known keys: ")
    assert not (tmp_path / "x").exists()


def test_a_second_run_into_a_busy_folder_stops_and_a_killed_run_leaves_no_lock(data_root, env, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dmtrack", "train", "--profile", "smoke", "--out", str(out), "--no-progress",
           "pairs_per_epoch=8", "batch_size=4", "epochs=100000"]
    first = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    cfg = smoke(epochs=100000)  # the same config: the killed run can be resumed
    try:
        end = time.monotonic() + 240
        while len(read_rows(out / "losses.csv") if (out / "losses.csv").exists() else []) < 2 and first.poll() is None \
                and time.monotonic() < end:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[1][-3000:]
        with pytest.raises(RunLocked, match=re.escape(f"{out}: another dmtrack train is running in this folder "
                                                      f"(pid {first.pid}: ") + ".* -m dmtrack train --profile smoke"):
            train(cfg, out, resume=True, max_steps=4, progress=False)
        steps = [int(r["step"]) for r in read_rows(out / "losses.csv")]
        assert steps == list(range(1, len(steps) + 1))  # only the first run's rows
    finally:
        first.send_signal(signal.SIGKILL)  # killed with no cleanup, maybe in the middle of a checkpoint write
        first.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        dead_tmp = out / f".last.pth.{first.pid}.q0w9e8r7.tmp"  # what a kill during save_checkpoint leaves
        live_tmp = out / f".notes.txt.{alive.pid}.a1s2d3f4.tmp"  # another live process's: never touched
        for p in (dead_tmp, live_tmp):
            p.write_bytes(b"\0" * 64)
        assert train(cfg, out, resume=True, max_steps=1, progress=False) is None  # the lock died with its holder
        assert not dead_tmp.exists() and live_tmp.exists() and not (out / ".lock").exists()
    finally:
        alive.kill()
        alive.wait()
    fresh = tmp_path / "fresh"  # a fresh start in a folder a killed run left temps in
    fresh.mkdir()
    (fresh / f".run.json.{first.pid}.z1x2c3v4.tmp").write_text("{")
    train(smoke(epochs=1), fresh, progress=False)
    assert not list(fresh.glob(".*"))


def test_log_every_writes_the_mean_of_the_steps_since_the_last_row(env, tmp_path):
    cfg = smoke(pairs_per_epoch=12)  # 3 steps per epoch, 6 in all
    train(cfg, tmp_path / "every", progress=False)
    train(cfg.replace(log_every=2), tmp_path / "two", progress=False)
    each = {int(r["step"]): r for r in read_rows(tmp_path / "every" / "losses.csv")}
    rows = read_rows(tmp_path / "two" / "losses.csv")
    # every 2nd step, and at each checkpoint (the epoch ends, 3 and 6), so no window spans a resume point
    windows = {2: [1, 2], 3: [3], 4: [4], 6: [5, 6]}
    assert [int(r["step"]) for r in rows] == list(windows)
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1]
    for r in rows:
        for term in ("total", "focal", "giou", "l1", "struct", "iou"):
            want = np.mean([float(each[s][term]) for s in windows[int(r["step"])]])
            assert float(r[term]) == pytest.approx(want, abs=2e-6), (r["step"], term)
    a = load_checkpoint(tmp_path / "every" / "model.pth")["model"]
    b = load_checkpoint(tmp_path / "two" / "model.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # logging less never changes the training


@pytest.mark.parametrize("variant", ["full", "no_diffusion", "not_mask_driven", "no_language", "no_gt_ce",
                                     "single_sample_train"])
def test_every_trainable_parameter_gets_a_gradient_at_every_step(variant):
    """What lets DDP run without find_unused_parameters: one training step of every variant, at
    every choice the random double-sampling mode can make, with candidate elimination and GT-CE on."""
    modes = ["first", "second", "mean"] if variant != "single_sample_train" else ["random"]
    for mode in modes:
        cfg = load_config("smoke", variant, double_sample_mode=mode)
        torch.manual_seed(0)
        model = build_model(cfg).train()
        opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        batch = {"template": torch.randn(4, 3, 32, 32, generator=g), "search": torch.randn(4, 3, 64, 64, generator=g),
                 "box": torch.rand(4, 4, generator=g) * 0.4 + 0.3, "text": SENTENCES + SENTENCES[:1]}
        train_step(model, model, opt, torch.amp.GradScaler("cpu", enabled=False), batch, cfg.gt_ce_start_epoch + 1.0,
                   cfg.grad_clip, "fp32")
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{variant}, {mode}: no gradient for {missing}"


def test_distinct_sentences_are_found_on_the_host_before_the_tokens_move(monkeypatch):
    model = build_model(load_config("smoke", "full"))
    tokens = model.tokenize(SENTENCES + SENTENCES[:1])
    events, real_unique, real_to = [], torch.unique, torch.Tensor.to
    monkeypatch.setattr(torch, "unique", lambda x, *a, **k: events.append(("unique", x.device.type)) or real_unique(x, *a, **k))
    monkeypatch.setattr(torch.Tensor, "to", lambda x, *a, **k: events.append(("to",)) or real_to(x, *a, **k))
    feats, mask = model.encode_text(tokens)
    assert events[0] == ("unique", "cpu")  # found first, on the host; only then do the rows travel
    assert feats.shape == (4, 36, 48) and torch.equal(feats[0], feats[3])


def test_compile_compiles_the_parts_and_keeps_the_weights_names():
    cfg = load_config("smoke", "full", compile=True, depth=3, ce_layers=(1,))
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.param_groups())
    run = TrainRun(model, model, opt, make_scheduler(opt, cfg), torch.amp.GradScaler("cpu", enabled=False), "fp32")
    wrap_net(run, cfg, world=1)
    compiled = lambda m: m._compiled_call_impl is not None
    assert [compiled(b) for b in model.visual.blocks] == [True, False, True]  # the CE block's top-k stays eager
    assert compiled(model.fusion) and compiled(model.denoiser) and compiled(model.head) and not compiled(model.visual)
    assert run.net is model and list(model.state_dict()) == list(build_model(cfg).state_dict())  # checkpoints unchanged


def test_under_ddp_on_gpus_the_batchnorms_are_synchronised(monkeypatch):
    # issue 19 item 10: per-rank BatchNorm made the result depend on the number of processes
    from dmtrack.model.dmtrack import DMTrack
    from dmtrack.train import loop

    cfg = load_config("smoke", "full")
    monkeypatch.setattr(loop, "DistributedDataParallel", lambda m: m)  # no process group here: the wrap is DDP's
    for device, world, synced in [("cuda", 2, True), ("cuda", 1, False), ("cpu", 2, False)]:
        monkeypatch.setattr(DMTrack, "device", property(lambda self: torch.device(device)))  # as if moved there
        model = build_model(cfg)
        keys, bns = list(model.state_dict()), sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        opt = torch.optim.AdamW(model.param_groups())
        run = TrainRun(model, model, opt, make_scheduler(opt, cfg), torch.amp.GradScaler("cpu", enabled=False), "fp32")
        wrap_net(run, cfg, world)
        kinds = [type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        # the head's 3 branches of 4 Conv-BN-ReLU each: its 12 BatchNorms, the model's only ones
        assert bns == 12 and kinds == [torch.nn.SyncBatchNorm if synced else torch.nn.BatchNorm2d] * 12, (device, world)
        assert list(model.state_dict()) == keys  # checkpoints unchanged
        trained = {id(p) for g in opt.param_groups for p in g["params"]}
        assert trained == {id(p) for p in model.parameters() if p.requires_grad}  # the optimiser still holds them
