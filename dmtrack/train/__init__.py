"""Training: pair sampling (sampler.py), the loop with exact resume and DDP (loop.py), the CLI (cli.py).

    from dmtrack.train import train
    train(load_config("demo", "full"), "runs/demo/full", resume=True)
"""
import importlib

_EXPORTS = {"train": "loop", "make_scheduler": "loop", "PairDataset": "sampler", "PairSampler": "sampler",
            "load_train_sequences": "sampler", "mirror_sentence": "sampler"}
__all__ = list(_EXPORTS)


def __getattr__(name):  # lazy, so `dmtrack train --help` does not import torch
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
