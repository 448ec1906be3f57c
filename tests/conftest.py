"""Fixtures several test modules share: the smoke synthetic benchmark and an untrained smoke checkpoint
(module scope, so a module that edits its copy never affects another).

The suite runs on the CPU, GPU host or not: its expectations (exact resume, `cpu` and `gloo` in run.json,
bit-equal results) are the CPU's, and CUDA's backward kernels are not all deterministic. The variable is
set before torch starts CUDA, and every process the tests start (torchrun workers, notebook kernels,
evaluation workers) inherits it, which a device=cpu in the tests' configs would not reach. The GPU
paths are checked by issue 19's GPU acceptance script instead."""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported (below and in every test module)

import pytest
import torch

from dmtrack.config import load_config
from dmtrack.data.synthetic import generate
from dmtrack.model import build_model, save_checkpoint


def smoke_checkpoint(folder, variant: str = "full"):
    """An untrained smoke-size model of `variant` (seeded: the same weights every time) saved as a real checkpoint."""
    torch.manual_seed(0)
    cfg = load_config("smoke", variant)
    return save_checkpoint(folder / f"smoke_{variant}.pth", build_model(cfg), cfg)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The smoke synthetic benchmark (no drift sweep), generated once per module."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, preset="smoke", seed=0, sweep=False, workers=1, progress=False)
    return out
