"""Numeric precision of a training step (`cfg.train_precision`) or a tracked frame (the tracker's own option).

    fp32  float32 everywhere; on CUDA with TF32 matmuls (torch.set_float32_matmul_precision("high"))
    bf16  torch.autocast to bfloat16: float32's range, so no GradScaler is needed
    fp16  torch.autocast to float16 with a GradScaler (training unscales before clipping)
    auto  bf16 where the device computes it natively (CUDA compute capability 8.0 and up), else fp32

Autocast keeps the weights, the optimiser state and the losses in float32 (dmtrack.model.losses
casts its inputs), and runs on a CPU as on a GPU, so every path here is tested on a CPU.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .config import PRECISIONS
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively (not emulated): CUDA compute capability >= 8.0 of that
    GPU (torch.cuda.is_bf16_supported asks about the current one), any ROCm GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    return bool(torch.version.hip) or torch.cuda.get_device_properties(device).major >= 8


def resolve_precision(requested: str, device) -> str:
    """The precision that runs on `device` for the config value `requested` ("auto" resolved)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}; choose from {' | '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(torch.device(device)) else "fp32"


def autocast(precision: str, device):
    """The autocast context of a resolved precision on `device` (a no-op context for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def enable_tf32(precision: str, device) -> None:
    """fp32 on CUDA: let matmuls and convolutions use TF32 tensor cores (10-bit mantissa inputs,
    float32 accumulation), as PyTorch's own recipes do; a no-op elsewhere."""
    if precision == "fp32" and torch.device(device).type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
