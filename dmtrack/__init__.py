"""dmtrack: a reproducibility study of DMTrack (Diffusion Mask-Driven Visual-language Tracking)."""
__version__ = "0.1.0"


def load_config(profile="demo", variant="full", **overrides):
    from .config import load_config as _load
    return _load(profile, variant, **overrides)


def build_model(config):
    from .model import build_model as _build
    return _build(config)
