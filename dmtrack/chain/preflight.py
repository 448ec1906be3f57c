"""What `dmtrack report` checks and records before its first step, so that a mistake costs
seconds instead of a GPU week:

- every DMTRACK_* dataset path and every path override (pretrained=, text_encoder=) is made
  absolute against the caller's working directory: papermill runs the notebooks in notebooks/;
- the paper profile refuses to start without an OSTrack / MAE checkpoint and a BERT directory,
  unless the user opts out on purpose (pretrained=none; text_encoder=minilm with --allow-minilm);
- every resolved config of the chain (each variant and seed) is validated;
- the weights the run starts from are identified by SHA-256 for the manifest and the report.

    record = preflight("paper", overrides, seeds=[0, 1, 2], require_weights=True)
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from dmtrack.config import SCRATCH, VARIANTS, Config, load_config
from dmtrack.data.benchmarks import data_environment
from dmtrack.provenance import file_sha256, folder_sha256
from dmtrack.train.preconditions import MINILM, PreflightError, check_weights

PATH_KEYS = {"pretrained": ("", SCRATCH), "text_encoder": (MINILM,)}  # path-valued keys -> their non-path values


def absolute_path_overrides(overrides: dict, cwd=None) -> dict:
    """`overrides` with pretrained= / text_encoder= paths made absolute against `cwd` (default: the
    working directory); their named values ("", none, minilm) are kept."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    out = dict(overrides)
    for key, names in PATH_KEYS.items():
        value = out.get(key)
        if isinstance(value, str) and value not in names:
            out[key] = str(base / Path(value).expanduser())
    return out


def chain_configs(profile: str, overrides: dict, seeds, variants=VARIANTS) -> dict[tuple[str, int], Config]:
    """{(variant, seed): resolved Config} of every training of the chain, each validated (a bad
    value names the variant, the key and the allowed range)."""
    out = {}
    for variant in variants:
        for seed in seeds:
            try:
                out[variant, seed] = load_config(profile, variant, seed=seed, **overrides)
            except (KeyError, TypeError, ValueError) as e:
                raise PreflightError(f"profile {profile}, variant {variant}, seed {seed}: {e.args[0] if e.args else e}") from None
    return out


def config_changes(profile: str, overrides: dict) -> dict[str, list]:
    """{key: [the profile's value, this run's value]} for every override (full variant)."""
    base, cfg = load_config(profile, "full"), load_config(profile, "full", **overrides)
    return {k: [getattr(base, k), getattr(cfg, k)] for k in sorted(overrides)}


def weights_record(cfg: Config) -> dict:
    """The weights a training starts from: the visual checkpoint (path, SHA-256) and the text
    encoder's directory (name, path, SHA-256 over its files). Unreadable ones say why."""
    from dmtrack.model.language import resolve_text_encoder

    pre = cfg.pretrained_file
    if pre is None:
        visual = dict(setting=cfg.pretrained, path=None, sha256=None, note="random initialisation")
    else:
        visual = dict(setting=cfg.pretrained, path=str(Path(pre).resolve()), sha256=file_sha256(pre))
    try:
        folder = resolve_text_encoder(cfg.text_encoder)
        digest, n = folder_sha256(folder)
        text = dict(setting=cfg.text_encoder, name=folder.name, path=str(folder), sha256=digest, files=n)
    except (FileNotFoundError, ModuleNotFoundError) as e:
        text = dict(setting=cfg.text_encoder, name=None, path=None, sha256=None, note=str(e))
    return {"pretrained": visual, "text_encoder": text}


@contextmanager
def environment(env: dict):
    """Set `env` in os.environ (the notebooks' kernels inherit it) and restore the old values after."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def preflight(profile: str, overrides: dict, seeds, require_weights: bool = False, allow_minilm: bool = False) -> dict:
    """Check the chain before it starts (PreflightError naming what to change) and return what the
    manifest records: the absolute data environment and overrides, the config changes, the weights."""
    overrides = absolute_path_overrides(overrides)
    configs = chain_configs(profile, overrides, seeds)
    check_weights(profile, overrides, require_weights, allow_minilm)
    first = configs["full", seeds[0]]
    return dict(data_env=data_environment(), overrides=overrides, config_changes=config_changes(profile, overrides),
                weights=weights_record(first))
