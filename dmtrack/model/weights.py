"""Pretrained backbone loading (OSTrack / MAE ViT-B / DMTrack) and DMTrack checkpoints.

The paper starts from a ViT pretrained with OSTrack (Sec. 4.1). Three layouts are read:
- OSTrack (`OSTrack_ep0300.pth.tar`): {'net': state_dict}, backbone keys prefixed 'backbone.',
  with pos_embed_z / pos_embed_x already at the template / search grids;
- MAE ViT-B (`mae_pretrain_vit_base.pth`): {'model': state_dict}, timm names, one pos_embed
  (1, 1 + 14*14, D) with a cls slot;
- a DMTrack checkpoint (format 'dmtrack-v1'): its 'visual.*' weights.
Position embeddings are resampled bicubically (align_corners False, as OSTrack does) from the
checkpoint grid to the template and search grids whenever the shapes differ.

Every file is read with torch.load(weights_only=True): no pickled code is ever executed. A
pretrained file that also pickles its trainer's objects (OSTrack's 'settings' and 'stats') is
refused by weights_only, so it is read again by _InertUnpickler, which rebuilds tensors with
torch's own weights_only allow-list and turns every other class into an inert placeholder.
"""
from __future__ import annotations

import hashlib
import logging
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._utils import IMPORT_MAPPING, NAME_MAPPING
from torch._weights_only_unpickler import _get_allowed_globals

from dmtrack.io import atomic_open

log = logging.getLogger(__name__)
FORMAT = "dmtrack-v1"
_CONSUMED = ("cls_token", "pos_embed")  # known ViT keys that the encoder reads (pos_embed) or has no use for (no cls token)
_LAYOUTS = "an OSTrack ('net'), MAE ('model') or DMTrack ('dmtrack-v1') checkpoint"


class _Inert:
    """Stands in for every pickled class or function outside torch's weights_only allow-list:
    it accepts whatever the pickle hands it (call args, state, items) and keeps nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):  # dict subclasses (EasyDict configs) get SETITEMS
        pass

    def append(self, item):  # list subclasses get APPENDS
        pass

    extend = append


class _InertUnpickler(pickle._Unpickler):  # the pure-Python unpickler, whose BUILD can be checked too
    """A global is the only way a pickle reaches code, so every global goes through find_class:
    torch's weights_only allow-list (tensor rebuild functions, storages, dtypes, OrderedDict)
    resolves to the real object, anything else to _Inert. As in weights_only, BUILD (set an object's
    state) is allowed on tensors, OrderedDicts and placeholders only, so no class can be patched.
    torch.load wraps this class with its own storage handling (persistent_load)."""

    def find_class(self, module, name):
        module, name = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))  # Python-2 names, as torch maps them
        found = _get_allowed_globals().get(f"{module}.{name}")
        if found is None:
            log.info("pickled global %s.%s replaced by an inert placeholder", module, name)
            return _Inert
        return found

    def load_build(self):
        inst = self.stack[-2]
        if not isinstance(inst, (Tensor, OrderedDict, _Inert)):
            raise pickle.UnpicklingError(f"refused to set the state of a {type(inst).__name__} ({inst!r})")
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}


class _InertPickleModule:  # the `pickle_module` handed to torch.load, which uses only these two names
    Unpickler = _InertUnpickler
    load = staticmethod(lambda f, **kw: _InertUnpickler(f, **kw).load())


def _read(path: Path, map_location="cpu", inert_objects: bool = False):
    """torch.load with weights_only=True; with `inert_objects`, a file that weights_only refuses is
    read again by _InertUnpickler (torch takes a pickle_module only with weights_only=False; the
    safety then rests on _InertUnpickler, which never calls a class or function of the file's). A missing, corrupt or truncated file raises
    naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            if not inert_objects:
                raise
            return torch.load(path, map_location=map_location, pickle_module=_InertPickleModule, weights_only=False)
    except Exception as e:  # zip/pickle/unpickler errors all mean the same thing to the user
        raise RuntimeError(f"cannot read checkpoint {path}: corrupt, truncated or not a weights-only "
                           f"torch file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def resample_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """(1, N, D) square-grid position embeddings (any leading cls/extra slots dropped) -> (1, grid*grid, D)."""
    n = pos.shape[1]
    side = math.isqrt(n)
    pos = pos[:, n - side * side:]  # extra tokens (cls) come first in timm / MAE layouts
    if side == grid:
        return pos
    D = pos.shape[2]
    img = pos.reshape(1, side, side, D).permute(0, 3, 1, 2).float()
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(1, grid * grid, D).to(pos.dtype)


def backbone_state(state: dict, encoder) -> dict:
    """Map an OSTrack/MAE/timm ViT state dict onto `encoder`'s names: strip 'backbone.'/'module.',
    and build pos_embed_z / pos_embed_x (OSTrack's own when they fit, else resampled)."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            k = k[len(prefix):] if k.startswith(prefix) else k
        out[k] = v
    for name, grid in (("pos_embed_z", encoder.grid_z), ("pos_embed_x", encoder.grid)):
        src = out.get(name, out.get("pos_embed"))
        if src is not None and not (name in out and out[name].shape == getattr(encoder, name).shape):
            out[name] = resample_pos_embed(src, grid)
    return out


def _pretrained_state(ckpt, path: Path) -> dict:
    """The tensors of a pretrained file that may hold visual-encoder weights, by layout."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected {_LAYOUTS}, found a {type(ckpt).__name__}")
    if ckpt.get("format") == FORMAT and isinstance(ckpt.get("model"), dict):  # DMTrack: its visual encoder
        return {k[len("visual."):]: v for k, v in ckpt["model"].items() if k.startswith("visual.")}
    if isinstance(ckpt.get("net"), dict):  # OSTrack: keep the backbone only
        state = {k: v for k, v in ckpt["net"].items() if k.startswith("backbone.") and isinstance(v, Tensor)}
        if not state:
            raise ValueError(f"{path}: 'net' holds no 'backbone.*' tensors; not an OSTrack checkpoint")
        return state
    if isinstance(ckpt.get("model"), dict):  # MAE / timm training checkpoint
        return {k: v for k, v in ckpt["model"].items() if isinstance(v, Tensor)}
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):  # bare state dict
        return ckpt
    raise ValueError(f"{path}: expected {_LAYOUTS}, found keys {list(ckpt)[:10]}")


def load_pretrained_backbone(encoder, path) -> dict:
    """Load an OSTrack ('net', 'backbone.*'), MAE ('model', timm keys) or DMTrack ('visual.*')
    checkpoint into a VisualEncoder. The patch embedding, blocks and final norm must all be in the
    file (else a ValueError naming the file and the missing keys: training would silently start
    from random init); position embeddings may be absent (left at their init). Returns
    {'missing': [...], 'unexpected': [...]} (encoder keys the file lacks; file keys the encoder
    does not use, cls_token / pos_embed excepted) and logs them."""
    path = Path(path)
    found = _pretrained_state(_read(path, inert_objects=True), path)
    state = backbone_state(found, encoder)
    own = encoder.state_dict()
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(f"{path}: shape mismatch with the visual encoder (check embed_dim / patch_size / depth): " + "; ".join(bad[:8]))
    required = [k for k in own if k not in state and not k.startswith("pos_embed_")]
    if required:
        raise ValueError(f"{path}: lacks {len(required)} of the visual encoder's {len(own)} tensors "
                         f"(patch embedding, blocks and final norm are required): {', '.join(required[:5])}"
                         + (f" and {len(required) - 5} more" if len(required) > 5 else "")
                         + f"; the file offers {len(found)} tensors, e.g. {list(found)[:5]}")
    load = {k: v for k, v in state.items() if k in own}
    encoder.load_state_dict(load, strict=False)
    report = {"missing": sorted(set(own) - set(load)),
              "unexpected": sorted(k for k in state if k not in own and k not in _CONSUMED)}
    log.info("loaded %d backbone tensors from %s; missing %s; unexpected %s", len(load), path, report["missing"], report["unexpected"])
    if report["missing"]:
        log.warning("%s lacks %d visual-encoder keys (left at their init): %s", path, len(report["missing"]), report["missing"][:10])
    return report


_OSTRACK_BRANCHES = {"score": "ctr", "offset": "offset", "size": "size"}


def _ostrack_head_name(key: str) -> str | None:
    """OSTrack's 'box_head.conv<i>_<branch>.<j>.*' (i = 1..4 Conv-BN-ReLU, 5 the 1x1 conv) -> CenterHead's
    '<branch>.<n>.*' (_branch: 3 modules per layer, the 1x1 conv last at 12); None for other keys."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "box_head" or not parts[1].startswith("conv"):
        return None
    layer, _, branch = parts[1][4:].partition("_")
    ours = {v: k for k, v in _OSTRACK_BRANCHES.items()}.get(branch)
    if ours is None or not layer.isdigit():
        return None
    i = int(layer)
    if i == 5:
        return ".".join([ours, "12", *parts[2:]])
    return ".".join([ours, str(3 * (i - 1) + int(parts[2])), *parts[3:]])


def load_pretrained_head(head, path) -> None:
    """Initialise a CenterHead from a DMTrack checkpoint's 'head.*' or OSTrack's 'box_head.*' (config
    pretrained_head): every head tensor must be there at its shape, else a ValueError naming the file."""
    path = Path(path)
    ckpt = _read(path, inert_objects=True)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT and isinstance(ckpt.get("model"), dict):
        state = {k[len("head."):]: v for k, v in ckpt["model"].items() if k.startswith("head.")}
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("net"), dict):
        state = {_ostrack_head_name(k): v for k, v in ckpt["net"].items() if _ostrack_head_name(k)}
    else:
        raise ValueError(f"{path}: pretrained_head needs a DMTrack ('head.*') or OSTrack ('box_head.*') checkpoint")
    own = head.state_dict()
    problems = [f"missing {k}" for k in own if k not in state] + [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if problems:
        raise ValueError(f"{path}: its centre head does not fit (check embed_dim / head_channels): " + "; ".join(problems[:8]))
    head.load_state_dict({k: state[k] for k in own})
    log.info("loaded the centre head (%d tensors) from %s", len(own), path)


def _check_plain(obj, where: str) -> None:
    """Refuse anything weights_only=True could not load back (e.g. numpy arrays, custom classes)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (Tensor, int, float, bool, str, torch.Size))):
        raise TypeError(f"checkpoint entry {where} is a {type(obj).__name__}; only tensors and plain "
                        "python values can be saved (they must load with weights_only=True)")


def tensors_sha256(state: dict) -> str:
    """SHA-256 over the bytes of a state dict's tensors, in key order (which weights, exactly)."""
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path, model, cfg, **extra) -> Path:
    """Atomically write {'model': state_dict, 'config': cfg.to_dict(), 'format': 'dmtrack-v1', **extra}.
    A frozen BERT (DMTrack.frozen_text_state) is left out, since cfg.text_encoder rebuilds it:
    'left_out' records its keys' prefix, the encoder and the SHA-256 of its weights instead."""
    path = Path(path)
    state = model.state_dict()
    frozen = model.frozen_text_state() if hasattr(model, "frozen_text_state") else {}
    payload = {"model": {k: v for k, v in state.items() if k not in frozen}, "config": cfg.to_dict(), "format": FORMAT, **extra}
    if frozen:
        payload["left_out"] = {"prefix": "text.bert.", "text_encoder": cfg.text_encoder, "sha256": tensors_sha256(frozen)}
    _check_plain(payload, "checkpoint")
    with atomic_open(path, "wb") as f:  # readers see the old file or the new one, never half of one
        torch.save(payload, f)
    return path


def load_weights(model, ckpt: dict, path) -> None:
    """Load a checkpoint's weights into `model`, strictly: a checkpoint of another variant or size
    is a ValueError naming the file and the missing / unexpected / mismatched keys. The keys a
    checkpoint left out (its 'left_out' record: a frozen BERT) are the only ones allowed missing,
    and only when the model's own BERT, built from cfg.text_encoder, has the weights saved then."""
    own, state, left = model.state_dict(), ckpt["model"], ckpt.get("left_out")
    skip = {k for k in own if left and k.startswith(left["prefix"]) and k not in state}
    problems = ([f"missing {k}" for k in own if k not in state and k not in skip] + [f"unexpected {k}" for k in state if k not in own]
                + [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
                   if k in own and v.shape != own[k].shape])
    if problems:
        saved = ckpt["config"]
        raise ValueError(f"{path}: does not match the model (checkpoint of profile {saved.get('profile')!r}, "
                         f"variant {saved.get('variant')!r}): {'; '.join(problems[:8])}"
                         + (f" and {len(problems) - 8} more" if len(problems) > 8 else ""))
    if skip:
        now = tensors_sha256({k: own[k] for k in skip})
        if now != left["sha256"]:
            raise ValueError(f"{path}: saved without its frozen text encoder {left['text_encoder']!r}, whose weights have "
                             f"changed since (SHA-256 {left['sha256'][:12]}... then, {now[:12]}... now); point "
                             "text_encoder at the model it was trained with")
    model.load_state_dict(state)


def load_checkpoint(path, map_location="cpu", model=None) -> dict:
    """Read a checkpoint written by save_checkpoint (weights_only=True); bad files raise naming the file.
    With `model`, its weights are also loaded (`load_weights`: strict, errors name the file and keys)."""
    path = Path(path)
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a DMTrack checkpoint (top level is a {type(ckpt).__name__})")
    missing = [k for k in ("model", "config", "format") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a DMTrack checkpoint, missing key(s) {missing} (has {list(ckpt)[:10]})")
    if ckpt["format"] != FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt['format']!r}, expected {FORMAT!r}")
    if model is not None:
        load_weights(model, ckpt, path)
    return ckpt
