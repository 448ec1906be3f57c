"""A generic papermill chain: steps (notebooks with parameters), keys, skip-if-done, failures, the GPU pool.

A chain is a list of `Step`s, each one notebook run with papermill on its parameters. Every
executed notebook is kept under <runs>/ next to a JSON stamp holding the hash of the step's
parameters (and of the steps it reads from), its duration and its outputs. A rerun skips a
step whose stamp has the same hash and whose outputs all exist; a failing cell stops the
chain with `StepFailed`, whose message names the notebook, the cell and the error. Given a list
of GPUs, the chain hands each running step `Step.devices` of them (its kernel's CUDA_VISIBLE_DEVICES)
and gives them back when it ends: two running steps never share a GPU. SIGINT
(Ctrl-C) or SIGTERM kills the running steps' kernels at once and raises `ChainInterrupted`
naming them; they get no stamp, so a rerun runs them again. This module knows nothing of
DMTrack: dmtrack.chain.plan builds the profiles' chains.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dmtrack.io import atomic_write_text
from dmtrack.provenance import check_gpus, gpu_environment, visible_gpus

# The notebooks declare the project's kernel (`make setup` installs it for `make lab`), but the chain never
# looks a kernelspec up: ChainKernelManager starts every kernel with this process's interpreter. An
# installed spec may be missing (a GPU image, a plain pip install), may be another clone's (`--user`
# specs share one name per user), and a user-level `python3` spec outranks the venv's own.
KERNEL = "dmtrack"


@dataclass
class Step:
    name: str  # unique, also the executed notebook's path below runs/<profile>/ (e.g. "10_train/full_seed0")
    notebook: str  # file in notebooks/
    params: dict  # papermill parameters (JSON-serialisable)
    outputs: list = field(default_factory=list)  # paths that must exist for the step to count as done
    deps: list = field(default_factory=list)  # names of earlier steps whose results this step reads
    fingerprint: dict = field(default_factory=dict)  # what else fixes the result (e.g. the resolved config), not a parameter
    runtime: dict = field(default_factory=dict)  # parameters saying how it runs, not what (threads): not in its key,
    # so that a step run on another machine (a cluster node with other cores) finds its inputs' stamps valid
    devices: int = 1  # GPUs it takes from the chain's pool while it runs (when the chain is given GPUs)


def step_key(step: Step, dep_keys: dict) -> str:
    """Hash of what determines a step's result: notebook, parameters, fingerprint and the keys of its inputs."""
    blob = json.dumps({"notebook": step.notebook, "params": step.params, "fingerprint": step.fingerprint,
                       "deps": {d: dep_keys[d] for d in step.deps}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class StepFailed(RuntimeError):
    """A notebook of the chain failed; the message names the notebook, the cell and the error."""

    def __init__(self, step: Step, path: Path, cell: int | None, ename: str, evalue: str, source: str = ""):
        self.step, self.path, self.cell, self.ename, self.evalue = step, path, cell, ename, evalue
        first = _first_line(evalue)
        where = f"cell In[{cell}]" + (f" `{_first_line(source)[:60]}`" if source else "") if cell is not None else "setup"
        super().__init__(f"step {step.name}: notebook {step.notebook} failed in {where}: {ename}: {first} "
                         f"(executed notebook: {path})")


class ChainInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the chain; `steps` were running: their kernels were killed, no stamp written."""

    def __init__(self, steps: list[str], signum: int = signal.SIGINT):
        self.steps, self.signum = steps, signum
        what = f"step(s) {', '.join(steps)} stopped, not done" if steps else "no step was running"
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {what}; "
                         "run the same command again to continue from there (finished steps are skipped)")


def _first_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[0].strip() if lines else ""


# --- kernels ------------------------------------------------------------------------------------------
# jupyter_client starts every kernel in a session of its own, so a Ctrl-C in the terminal never reaches
# it. The chain's kernel managers register here; an interrupted chain kills their process groups.
_LIVE = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set when the chain is interrupted: a kernel that starts after it is killed


def _kill(km) -> None:
    """SIGKILL the kernel's process group: the kernel and whatever it started (evaluation workers)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:  # not started, or exited and reaped (its pid may be reused)
        return
    try:
        pgid = os.getpgid(process.pid)
        if pgid == os.getpgrp():  # never our own group (a kernel started without a session of its own)
            process.kill()
        else:
            os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _quiet_when_stopping(record: logging.LogRecord) -> bool:
    """Filter of papermill's logger: nbclient logs `Kernel died ...` for every kernel stop_kernels killed."""
    return not _STOPPING.is_set()


def stop_kernels() -> None:
    """Kill every kernel the chain's steps are running, and any that starts from now on."""
    _STOPPING.set()
    with _LIVE_LOCK:
        kms = list(_LIVE)
    for km in kms:
        _kill(km)


@functools.cache
def kernel_manager_class(env: tuple = ()):
    """The kernel manager papermill uses for the chain's steps: registered so `stop_kernels` reaches it;
    its kernels start with this process's environment updated by `env` ((name, value) pairs, e.g. the
    step's CUDA_VISIBLE_DEVICES: papermill takes a class, not an instance, hence one class per env).

    It also skips the SIGINT jupyter_client 8 sends to a kernel's process group before every shutdown:
    the steps' kernels are idle when shut down, and a kernel that the signal caught inside a message
    handler printed `[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.` after a step that succeeded.
    Instead, what the step left running in the kernel's process group is killed once the kernel is down.
    Its kernel spec is ipykernel's for sys.executable, whatever kernelspecs are installed (see KERNEL).
    """
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ChainKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(**{**get_kernel_dict(), "display_name": "dmtrack (this process's python)"})
            return self._kernel_spec

        async def start_kernel(self, **kw):
            with _LIVE_LOCK:
                _LIVE.add(self)
            if env:
                kw["env"] = {**kw.get("env", os.environ), **dict(env)}
            await super().start_kernel(**kw)
            if _STOPPING.is_set():  # the chain was interrupted while this kernel started
                _kill(self)

        async def _async_interrupt_kernel(self):
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):
            pgid = getattr(self.provisioner, "pgid", None)  # the kernel's own group (LocalProvisioner)
            await super().shutdown_kernel(now=now, restart=restart)
            if pgid and not restart and pgid != os.getpgrp():
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:  # the usual case: nothing left
                    pass

    return ChainKernelManager


@contextmanager
def _signals_interrupt():
    """Within: SIGINT and SIGTERM raise ChainInterrupted (without steps) in the main thread, once; a
    second signal while the chain stops its kernels is ignored. Outside the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise ChainInterrupted([], signum)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def done_stamp(step: Step, runs: Path, key: str) -> dict | None:
    """The step's stamp if it is done for `key` (same key, every output present), else None."""
    stamp_path = runs / f"{step.name}.json"
    if not stamp_path.exists():
        return None
    stamp = json.loads(stamp_path.read_text())
    return stamp if stamp.get("key") == key and all(Path(o).exists() for o in step.outputs) else None


def run_step(step: Step, runs: Path, key: str, notebooks: Path, force: bool = False, log=print,
             gpus: list | None = None) -> dict:
    """Run one step unless its stamp says it is done for `key`; return its stamp (+ "status").
    gpus: the GPU ids its kernel sees (CUDA_VISIBLE_DEVICES, and DMTRACK_GPUS: device=auto there runs on
    them or stops); None: this process's own."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = runs / f"{step.name}.ipynb"
    stamp_path = out.with_suffix(".json")
    stamp = None if force else done_stamp(step, runs, key)
    if stamp is not None:
        log(f"[skip] {step.name} (done for this config in {stamp['seconds']:.0f} s)")
        return {**stamp, "status": "skipped"}
    stamp_path.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = () if gpus is None else tuple(sorted(gpu_environment(gpus).items()))  # device=auto there: on them or an error
    log(f"[run ] {step.name} ({step.notebook})" + (f" on GPU(s) {','.join(map(str, gpus)) or 'none'}" if env else ""))
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebooks / step.notebook), str(out), parameters={**step.params, **step.runtime},
                            kernel_name=KERNEL, cwd=str(notebooks), progress_bar=False, log_output=False,
                            kernel_manager_class=kernel_manager_class(env),
                            extra_arguments=["--IPKernelApp.log_level=40"])  # no kernel banner warnings
    except Exception as e:
        if _STOPPING.is_set():  # its kernel was killed by stop_kernels
            raise ChainInterrupted([step.name]) from None
        if isinstance(e, PapermillExecutionError):
            raise StepFailed(step, out, e.exec_count, e.ename, e.evalue, e.source) from None
        raise StepFailed(step, out, None, type(e).__name__, str(e)) from None  # kernel died, notebook missing, ...
    if _STOPPING.is_set():  # interrupted: even a notebook that got to its end is not stamped as done
        raise ChainInterrupted([step.name])
    missing = [o for o in step.outputs if not Path(o).exists()]
    if missing:
        raise StepFailed(step, out, None, "MissingOutput", f"the notebook ran but did not write {missing[0]}")
    stamp = dict(step=step.name, notebook=step.notebook, key=key, params=step.params, outputs=step.outputs,
                 seconds=round(time.time() - t0, 2), started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
                 finished=time.strftime("%Y-%m-%d %H:%M:%S"), gpus=gpus,
                 loadavg=round(os.getloadavg()[0], 1))  # durations on a shared machine need this context
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1, default=str))
    log(f"[done] {step.name} in {stamp['seconds']:.1f} s")
    return {**stamp, "status": "ran"}


def chain_keys(steps: list[Step]) -> dict[str, str]:
    """Each step's key, in order; a duplicate name or a dependency that does not run before is an error."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate step names in the chain: {sorted({n for n in names if names.count(n) > 1})}")
    keys = {}
    for step in steps:
        unknown = [d for d in step.deps if d not in keys]
        if unknown:
            raise ValueError(f"step {step.name} depends on {unknown}, which do not run before it")
        keys[step.name] = step_key(step, keys)
    return keys


# --- GPUs ---------------------------------------------------------------------------------------------
def gpu_pool(gpus) -> list | None:
    """The GPU pool a chain's steps are spread over: `gpus` (CUDA_VISIBLE_DEVICES ids) checked against the
    GPUs this process sees (ValueError naming an id it does not see: a step given it would have no GPU, or
    someone else's), None for every GPU it sees; None (no pool) when that leaves none."""
    return (visible_gpus() if gpus is None else check_gpus(gpus)) or None


class GpuPool:
    """The free GPU ids of a running chain: a step starts when `step.devices` of them are free and holds
    them (its kernel's CUDA_VISIBLE_DEVICES) until it ends, so two running steps never share a GPU."""

    def __init__(self, gpus: list, steps: list[Step]):
        too_big = [s.name for s in steps if s.devices > len(gpus)]
        if too_big:
            raise ValueError(f"step(s) {', '.join(too_big)} need more GPUs than the {len(gpus)} given ({gpus})")
        self.free, self.held = list(gpus), {}

    def fits(self, step: Step) -> bool:
        return len(self.free) >= step.devices

    def take(self, step: Step) -> list:
        self.held[step.name], self.free = self.free[: step.devices], self.free[step.devices:]
        return self.held[step.name]

    def give_back(self, name: str) -> None:
        self.free.extend(self.held.pop(name))


def run_chain(steps: list[Step], runs: Path, notebooks: Path, force: bool = False, log=print,
              before=None, jobs: int = 1, gpus: list | None = None) -> list[dict]:
    """Run `steps` (each keyed by its parameters and its inputs' keys); stop at the first failure.

    A step starts once the steps it depends on are done; up to `jobs` run at the same time (each
    notebook has its own kernel process). gpus: the pool of GPU ids; a step starts only when
    `step.devices` of them are free, holds them (its kernel's CUDA_VISIBLE_DEVICES) until it ends;
    None: no pool, every kernel sees this process's GPUs. before(step, stamps_so_far) is called as a step starts
    (the pipeline uses it to write the manifest the report notebook reads). Returns the stamps in
    step order, each with "status" ran or skipped. SIGINT or SIGTERM (in the main thread) kills the
    running steps' kernels at once and raises ChainInterrupted naming those steps (not stamped).
    One chain at a time per process: the kernels are tracked per process.
    """
    from concurrent.futures import ThreadPoolExecutor

    keys = chain_keys(steps)
    pool = None if gpus is None else GpuPool(gpus, steps)
    done: dict[str, dict] = {}
    pending, running = list(steps), {}
    _STOPPING.clear()
    logging.getLogger("papermill").addFilter(_quiet_when_stopping)  # nbclient logs through it; added once
    try:
        with ThreadPoolExecutor(max(1, jobs)) as threads, _signals_interrupt():
            try:
                while pending or running:
                    for step in [s for s in pending if all(d in done for d in s.deps)]:
                        if len(running) >= max(1, jobs) or (pool is not None and not pool.fits(step)):
                            continue
                        if before is not None:
                            before(step, [done[s.name] for s in steps if s.name in done])
                        pending.remove(step)
                        running[threads.submit(run_step, step, runs, keys[step.name], notebooks, force, log,
                                               None if pool is None else pool.take(step))] = step
                    for name in _collect(running, done):
                        if pool is not None:  # its GPUs go back to the pool
                            pool.give_back(name)
            except KeyboardInterrupt as e:
                raise _interrupted(running, getattr(e, "signum", signal.SIGINT)) from None
    finally:
        _STOPPING.clear()  # every step's thread has ended here (the pool waited for them)
    return [done[s.name] for s in steps]


class DependenciesNotDone(RuntimeError):
    """`run_one` was asked for a step whose inputs are not done (for the current keys)."""


def run_one(steps: list[Step], name: str, runs: Path, notebooks: Path, force: bool = False, log=print,
            gpus: list | None = None) -> dict:
    """Run the chain's step `name` alone (skip-if-done, with the key and stamp it has in the whole chain),
    as one job of a cluster scheduler does; DependenciesNotDone, naming them, when a step it reads from is
    not done for its current key. gpus: as in run_chain (the step takes the first `step.devices`)."""
    keys = chain_keys(steps)
    by_name = {s.name: s for s in steps}
    if name not in by_name:
        raise KeyError(f"no step {name!r} in this chain; `dmtrack report --plan` lists them")
    step = by_name[name]
    missing = [d for d in step.deps if done_stamp(by_name[d], runs, keys[d]) is None]
    if missing:
        raise DependenciesNotDone(f"step {name} reads from step(s) not done for this config: {', '.join(missing)}; "
                                  "run them first")
    if gpus is not None and len(gpus) < step.devices:
        raise ValueError(f"step {name} needs {step.devices} GPUs, {len(gpus)} given ({gpus})")
    _STOPPING.clear()
    with _signals_interrupt():
        try:
            return run_step(step, runs, keys[name], notebooks, force, log, None if gpus is None else gpus[: step.devices])
        except KeyboardInterrupt as e:
            stop_kernels()
            raise ChainInterrupted([name], getattr(e, "signum", signal.SIGINT)) from None
        finally:
            _STOPPING.clear()


def _collect(running: dict, done: dict) -> list[str]:
    """Wait until a running step ends, record its stamp and return the names of the steps that ended; a
    failure is raised once the other running steps have ended too (their kernels cannot be cut mid-cell cleanly)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    finished, _ = wait(running, return_when=FIRST_COMPLETED)
    failure, ended = None, []
    for future in finished:
        step = running.pop(future)
        ended.append(step.name)
        try:
            done[step.name] = future.result()
        except StepFailed as e:
            failure = failure or e
    if failure is not None:
        wait(running)
        raise failure
    return ended


def _interrupted(running: dict, signum: int) -> ChainInterrupted:
    """Kill the running steps' kernels, wait for their threads, name the steps that did not finish."""
    from concurrent.futures import wait

    stop_kernels()
    wait(running, timeout=60)  # each papermill call fails within a second of its kernel's death (nbclient polls it)
    return ChainInterrupted([s.name for f, s in running.items() if not f.done() or f.exception() is not None], signum)
