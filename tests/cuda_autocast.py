"""CUDA's autocast op policy, run on the CPU (test support; see docs/training.md).

    with cuda_autocast(torch.bfloat16):   # the code under test keeps calling torch.autocast("cpu", ...)
        train_step(..., precision="bf16")

CPU autocast differs from CUDA's: it leaves exp, log, pow, softmax, sum, layer_norm, upsampling ...
in the input's low precision, where CUDA runs them in float32, so a dtype clash that crashes
on the first GPU step passes on a CPU. Here the AutocastCPU dispatch key gets CUDA's kernels:
a test-only torch.library registration, at the same place in the dispatcher as CUDA's own
(above autograd, so the casts are differentiated exactly as on a GPU), for the same aten
overloads with the same five policies, and every op that CPU autocast registers but CUDA does
not is made to follow its inputs, as on CUDA. The lists are read from the installed torch's
own ATen/autocast_mode.h (the macros that aten/src/ATen/autocast_mode.cpp registers for the
Autocast(CUDA) key, torch 2.15 here), not typed in; the three CUDA registrations outside those
macros (cudnn_convolution, cudnn_convolution_transpose: low precision; binary_cross_entropy:
banned) are transcribed from that .cpp file (torch 2.15). The registration is removed on exit.
"""
from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

HEADER = Path(torch.__file__).parent / "include" / "ATen" / "autocast_mode.h"
# registered for CUDA in autocast_mode.cpp next to the macros (not in the shipped header)
CUDA_EXTRA_LOW = ("cudnn_convolution", "cudnn_convolution_transpose")
# fp32_append_dtype: the overload the header wraps -> the dtype-taking overload it redispatches to
APPEND_DTYPE = {"norm.Scalar": "norm.ScalarOpt_dtype", "norm.ScalarOpt_dim": "norm.ScalarOpt_dim_dtype"}
_AUTOCAST_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)


def _macro(text: str, name: str) -> list[str]:
    """The aten overloads ('op' or 'op.overload') that `#define name(_) _(op[, overload]) \\ ...` lists."""
    start = text.find(f"#define {name}(_)")
    if start < 0:
        raise RuntimeError(f"{HEADER}: no macro {name}; the emulation needs updating for this torch")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line)
        if not line.rstrip().endswith("\\"):
            break
    body = "\n".join(lines)
    quoted = re.findall(r'"([\w.]+)"', body)
    if quoted:  # AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE names its overloads as strings
        return quoted
    return [f"{op}.{ov}" if ov else op for op, ov in re.findall(r"_\((\w+)(?:,\s*(\w+))?\)", body)]


def cuda_policy() -> dict[str, str]:
    """{aten overload: policy} of CUDA autocast in the installed torch: lower_precision_fp, fp32,
    fp32_set_opt_dtype, fp32_append_dtype, promote or banned."""
    if not HEADER.is_file():
        raise FileNotFoundError(f"{HEADER} is missing: the CUDA autocast emulation reads its op lists there")
    text = HEADER.read_text()
    policy = {}
    for macro, kind in (("AT_FORALL_LOWER_PRECISION_FP", "lower_precision_fp"), ("AT_FORALL_FP32", "fp32"),
                        ("AT_FORALL_FP32_SET_OPT_DTYPE", "fp32_set_opt_dtype"),
                        ("AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE", "fp32_append_dtype"), ("AT_FORALL_PROMOTE", "promote")):
        policy.update(dict.fromkeys(_macro(text, macro), kind))
    policy.update(dict.fromkeys(CUDA_EXTRA_LOW, "lower_precision_fp"))
    policy["binary_cross_entropy"] = "banned"
    return policy


def _overload(name: str):
    op, _, ov = name.partition(".")
    packet = getattr(torch.ops.aten, op, None)
    return None if packet is None else getattr(packet, ov or "default", None)


def _eligible(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device.type == "cpu"


def _cast(v, dtype):
    if isinstance(v, (list, tuple)):
        return type(v)(_cast(x, dtype) for x in v)
    return v.to(dtype) if _eligible(v) else v


def _promote_type(values, low):
    """autocast::promote_type: float32 if any eligible tensor is float32, else the low precision."""
    flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    return torch.float32 if any(_eligible(x) and x.dtype == torch.float32 for x in flat) else low


def _kernel(op, kind: str, low: torch.dtype):
    """A Python kernel for `op` at AutocastCPU that applies CUDA's `kind` (autocast_mode.h's WrapFunction_)."""
    names = [a.name for a in op._schema.arguments]
    target = _overload(APPEND_DTYPE[op._schema.name.removeprefix("aten::") + "." + op._schema.overload_name]) \
        if kind == "fp32_append_dtype" else None

    def run(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
            if kind == "banned":
                raise RuntimeError("torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast "
                                   "(CUDA autocast, emulated)")
            if kind in ("lower_precision_fp", "fp32", "promote"):
                to = {"lower_precision_fp": low, "fp32": torch.float32}.get(kind) or _promote_type([*args, *kwargs.values()], low)
                return op(*_cast(args, to), **{k: _cast(v, to) for k, v in kwargs.items()})
            first = _eligible(args[0])
            if kind == "fp32_set_opt_dtype":
                i = names.index("dtype")
                if first and i < len(args) and args[i] is None:
                    args = (*args[:i], torch.float32, *args[i + 1:])
                elif first and i >= len(args) and kwargs.get("dtype") is None:
                    kwargs["dtype"] = torch.float32
                return op(*args, **kwargs)
            if kind == "fp32_append_dtype":  # the dispatcher leaves out trailing arguments at their defaults
                full = [*args, *(kwargs.pop(a.name, a.default_value) for a in op._schema.arguments[len(args):])]
                return target(*full, dtype=torch.float32 if first else args[0].dtype)
            return op(*args, **kwargs)  # "follow": an op CPU autocast registers and CUDA does not
    return run


@contextmanager
def cuda_autocast(dtype: torch.dtype):
    """Within: AutocastCPU applies CUDA's policy with `dtype` as the low precision, and
    torch.autocast("cpu", dtype) is on (the code under test may enter it again, as the library does)."""
    policy = cuda_policy()
    cpu_only = {r.removeprefix("aten::") for r in torch._C._dispatch_get_registrations_for_dispatch_key("AutocastCPU")}
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():  # "Overriding a previously registered kernel": that is the point
            warnings.simplefilter("ignore")
            for name in sorted(set(policy) | cpu_only):
                op = _overload(name)
                if op is not None:  # an op of another build (cudnn_*) may be absent on this one
                    lib.impl(name, _kernel(op, policy.get(name, "follow"), dtype), "AutocastCPU")
        with torch.autocast("cpu", dtype=dtype):
            yield policy
    finally:
        lib._destroy()
