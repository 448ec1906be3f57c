"""dmtrack.io: atomic writes name their writer, stale temps of dead writers only are removed, one
process at a time holds a folder (and a killed holder never leaves it locked), a worker ends with its parent."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmtrack.io import LOCK_NAME, RunLocked, atomic_open, exclusive_lock, remove_stale_temps, temp_path

HOLD = """import sys, time
from dmtrack.io import exclusive_lock
with exclusive_lock(sys.argv[1], "dmtrack train"):
    print("locked", flush=True)
    time.sleep(600)
"""


def running(pid: int) -> bool:
    """pid exists and is not a zombie (an orphan's zombie may wait for a PID 1 that never reaps)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not running(p.pid)
    return p.pid


@pytest.fixture
def sleeper():
    """A live process that is not this one (its pid stands for another run's writer)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p.pid
    p.kill()
    p.wait()


def test_a_second_process_cannot_lock_a_held_folder_until_the_holder_dies(tmp_path):
    folder, script = tmp_path / "run", tmp_path / "hold.py"
    script.write_text(HOLD)
    holder = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (folder / LOCK_NAME).read_text() == f"pid {holder.pid}: {sys.executable} {script} {folder}\n"
        with pytest.raises(RunLocked) as e:  # a second holder in this process
            with exclusive_lock(folder, "dmtrack train"):
                pass
        assert str(e.value) == (f"{folder}: another dmtrack train is running in this folder (pid {holder.pid}: "
                                f"{sys.executable} {script} {folder}); wait for it to finish or use another folder")
        second = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and second.stdout == ""  # a second process: stopped at once, never held it
        assert f"RunLocked: {folder}: another dmtrack train is running in this folder (pid {holder.pid}" in second.stderr
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file stays, the kernel drops the lock
        holder.wait()
    assert (folder / LOCK_NAME).read_text().startswith(f"pid {holder.pid}: ")
    with exclusive_lock(folder, "dmtrack train"):
        assert (folder / LOCK_NAME).read_text().startswith(f"pid {os.getpid()}: ")
        with exclusive_lock(folder, "dmtrack train"):  # nested in the same process: no-op
            pass
        assert (folder / LOCK_NAME).exists()
    assert not (folder / LOCK_NAME).exists()  # a clean exit removes it


def test_atomic_temp_names_carry_the_writer_pid_and_only_dead_writers_temps_are_removed(tmp_path, sleeper):
    gone = dead_pid()
    live = tmp_path / f".a.txt.{sleeper}.k2j4x9q1.tmp"  # another live process is writing a.txt
    stale = tmp_path / f".last.pth.{gone}.w8e1m0zz.tmp"  # a killed writer's checkpoint
    legacy = tmp_path / ".b.txt.x8k2abcd.tmp"  # no pid: written before pids were in the names
    keep = [tmp_path / "a.txt", tmp_path / LOCK_NAME, tmp_path / ".notes.tmp.txt"]
    for p in [live, stale, legacy, *keep]:
        p.write_text("x")
    with atomic_open(tmp_path / "c.txt") as f:
        f.write("half")
        (mine,) = [p for p in tmp_path.glob(".c.txt.*.tmp")]
        assert re.fullmatch(rf"\.c\.txt\.{os.getpid()}\.[^.]+\.tmp", mine.name)
        assert remove_stale_temps(tmp_path) == sorted([stale, legacy])  # this writer's temp survives
        f.write(" and the rest")
    assert (tmp_path / "c.txt").read_text() == "half and the rest"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [live, *keep, tmp_path / "c.txt"])
    assert remove_stale_temps(tmp_path / "absent") == []


def test_temp_path_keeps_the_extension_and_its_dead_writers_temps_are_removed(tmp_path, sleeper):
    mine = temp_path(tmp_path / "tracked.mp4")  # OpenCV's video writer picks the container from ".mp4"
    assert re.fullmatch(rf"\.tracked\.mp4\.{os.getpid()}\.[^.]+\.tmp\.mp4", mine.name) and mine.read_bytes() == b""
    live = tmp_path / f".tracked.mp4.{sleeper}.k2j4x9q1.tmp.mp4"
    stale = tmp_path / f".tracked.mp4.{dead_pid()}.w8e1m0zz.tmp.mp4"  # a run killed while writing its video
    keep = tmp_path / ".notes.tmp.bak"  # not a name dmtrack writes: never deleted
    for p in [live, stale, keep]:
        p.write_text("x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(tmp_path.iterdir()) == sorted([mine, live, keep])


CHILD = """import os, sys, time
from dmtrack.io import exit_with_parent
exit_with_parent(os.getppid(), use_prctl=sys.argv[1] == "prctl")
print("armed", flush=True)
time.sleep(600)
"""
PARENT = """import subprocess, sys, time
child = subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "armed"
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["prctl", "poll"])
def test_a_worker_ends_when_its_parent_is_killed(tmp_path, how):
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "child.py"), how],
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert running(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_until(lambda: not running(child), timeout=5), f"worker {child} outlived its killed parent ({how})"


def test_install_state_names_the_lock_and_every_package_off_it(tmp_path, monkeypatch):
    from importlib import metadata
    from dmtrack import provenance as prov
    lock = tmp_path / "requirements.lock"
    torch_v = metadata.version("torch")
    lock.write_text(f"torch=={torch_v} \\\n    --hash=sha256:00\n"
                    f"numpy==0.0.1 ; python_version >= '3.0' \\\n    --hash=sha256:11\n    # via pandas\n"
                    f"pywin-only==1.0 ; sys_platform == 'win32' \\\n    --hash=sha256:22\n")
    assert prov.locked_versions(lock) == {"torch": torch_v, "numpy": "0.0.1"}  # the win32 line does not apply
    state = prov.install_state(lock)
    assert state["lock_sha256"] == prov.file_sha256(lock)
    assert state["differs"] == {"numpy": f"{metadata.version('numpy')} (lock: 0.0.1)"}
    assert "numpy" in prov.install_label(state) and state["lock_sha256"] in prov.install_label(state)
    # the repository's own lock applies to this machine and the suite runs in the environment it made
    # (make test installs from it), unless this is the newest-versions check
    real = prov.install_state()
    assert len(real["lock_sha256"]) == 64
    assert prov.install_label({}) == "not recorded"
