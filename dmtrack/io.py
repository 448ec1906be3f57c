"""Files, folders and processes of resumable jobs: atomic writes, stale temps, one run per folder.

A file is written to a temporary sibling (`.<name>.<pid>.<random>.tmp`, pid = the writer's
process; `.<name>.<pid>.<random>.tmp.<ext>` for a writer that picks its format from the
extension, as OpenCV's video writer does: `temp_path`), flushed to disk and renamed over the target, so a reader (or a resumed run) sees
the old file or the new one, never half of one. A killed writer leaves only such temp files;
`remove_stale_temps` deletes those whose writer is gone and never one a live process is still
writing. `exclusive_lock` keeps a second run out of a folder a run is writing (train, evaluate,
report). `sigterm_as_interrupt` lets SIGTERM run the same cleanup as Ctrl-C, and
`exit_with_parent` ends a worker process whose parent is gone.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp(?P<ext>\.[A-Za-z0-9]+)?")


@contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """Open a temp file beside `path`; on a clean exit it replaces `path`, on an error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_path(path) -> Path:
    """A new empty temp file beside `path` for a writer that cannot use `atomic_open` (it opens the file
    itself): `.<name>.<pid>.<random>.tmp<suffix>`, the suffix kept for writers that read the format from it.
    `remove_stale_temps` deletes it once its writer is gone; the caller renames it over `path` or deletes it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    return Path(tmp)


def atomic_write_text(path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ----------------------------------------------------------------------------- temp files of killed writers
def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (a zombie counts as gone: it writes nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):  # no /proc (macOS): os.kill said it exists
        return True


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temp files of atomic writes (`.<name>.<pid>.<random>.tmp`, or `...tmp.<ext>` of
    `temp_path`) in `folder` whose writer is no longer running; returns them. A temp whose pid is
    alive is kept: that process may be writing it (a pid reused since only keeps a dead temp, it never deletes a live one).
    Temp names without a pid (`.<name>.<random>.tmp`, written before dmtrack put the pid in
    them) count as stale."""
    folder = Path(folder)
    stale = []
    for p in sorted([*folder.glob(".*.tmp"), *folder.glob(".*.tmp.*")]) if folder.is_dir() else []:
        m = _TEMP.fullmatch(p.name)
        if m is None and not p.name.endswith(".tmp"):  # `.x.tmp.bak`: not a name we write
            continue
        if m is None or not pid_alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            stale.append(p)
    return stale


# ----------------------------------------------------------------------------- one run per folder
class RunLocked(RuntimeError):
    """Another live process holds the folder's lock; the message names the folder and that process."""

    def __init__(self, folder: Path, what: str, holder: str):
        self.folder, self.holder = folder, holder
        super().__init__(f"{folder}: another {what} is running in this folder ({holder or 'a process that is starting'}); "
                         "wait for it to finish or use another folder")


_HELD: dict[str, int] = {}  # folders this process has locked -> nesting depth (evaluate wraps track_benchmark)


def _lock_fd(path: Path, folder: Path, what: str) -> int:
    """An open descriptor of `path` holding its flock; RunLocked when a live process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(folder, what, holder) from None
            raise
        try:  # a releasing holder unlinks the file: if ours is no longer at `path`, lock the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def exclusive_lock(folder, what: str = "run"):
    """Hold `<folder>/.lock` (fcntl.flock, non-blocking) while the block runs: a second process
    asking for it gets RunLocked naming the folder and the holder's pid and command line
    (written into the lock file). The kernel drops the lock when the holder dies, so a killed
    run never leaves a stale lock; a clean exit removes the file. Nested use in one process is
    a no-op."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = f"{os.getpid()}:{folder.resolve()}"
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    path = folder / LOCK_NAME
    fd = _lock_fd(path, folder, what)
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {shlex.join(sys.orig_argv)}\n".encode(), 0)
        yield folder
    finally:
        del _HELD[key]
        try:
            os.unlink(path)  # while still locked, so no other process can be holding this file
        except FileNotFoundError:  # the folder was deleted meanwhile
            pass
        os.close(fd)


# ----------------------------------------------------------------------------- SIGTERM
@contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so `finally` and
    `except` cleanups run (e.g. stopping worker processes) instead of the process dying on
    the spot. Outside the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        e = KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
        e.signum = signum  # dmtrack.cli exits 128 + signum (143 for SIGTERM), as the shell reports a kill
        raise e

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def exit_with_parent(parent: int, use_prctl: bool = True) -> None:
    """Make this (worker) process end when process `parent` dies, even by SIGKILL, which gives the
    parent no chance to stop it: on Linux the kernel sends SIGTERM (prctl PR_SET_PDEATHSIG);
    where that is unavailable a daemon thread polls os.getppid() every second."""
    armed = False
    if use_prctl and sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_poll_parent, args=(parent,), daemon=True, name="exit_with_parent").start()


def _poll_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented to init or a subreaper
        time.sleep(1.0)
    os._exit(1)
