"""A generic papermill chain: steps (notebooks with parameters), keys, skip-if-done, failures, HTML.

A chain is a list of `Step`s, each one notebook run with papermill on its parameters. Every
executed notebook is kept under <runs>/ next to a JSON stamp holding the hash of the step's
parameters (and of the steps it reads from), its duration and its outputs. A rerun skips a
step whose stamp has the same hash and whose outputs all exist; a failing cell stops the
chain with `StepFailed`, whose message names the notebook, the cell and the error. This
module knows nothing of DMTrack: dmtrack.report.pipeline builds the profiles' chains.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from dmtrack.io import atomic_write_text

KERNEL = "python3"  # jupyter_client runs the native kernel with sys.executable, i.e. this venv's python


@dataclass
class Step:
    name: str  # unique, also the executed notebook's path below runs/<profile>/ (e.g. "10_train/full_seed0")
    notebook: str  # file in notebooks/
    params: dict  # papermill parameters (JSON-serialisable)
    outputs: list = field(default_factory=list)  # paths that must exist for the step to count as done
    deps: list = field(default_factory=list)  # names of earlier steps whose results this step reads
    fingerprint: dict = field(default_factory=dict)  # what else fixes the result (e.g. the resolved config), not a parameter


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


def _first_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[0].strip() if lines else ""


def run_step(step: Step, runs: Path, key: str, notebooks: Path, force: bool = False, log=print) -> dict:
    """Run one step unless its stamp says it is done for `key`; return its stamp (+ "status")."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = runs / f"{step.name}.ipynb"
    stamp_path = out.with_suffix(".json")
    if not force and stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("key") == key and all(Path(o).exists() for o in step.outputs):
            log(f"[skip] {step.name} (done for this config in {stamp['seconds']:.0f} s)")
            return {**stamp, "status": "skipped"}
    stamp_path.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"[run ] {step.name} ({step.notebook})")
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebooks / step.notebook), str(out), parameters=step.params, kernel_name=KERNEL,
                            cwd=str(notebooks), progress_bar=False, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=40"])  # no kernel banner warnings
    except PapermillExecutionError as e:
        raise StepFailed(step, out, e.exec_count, e.ename, e.evalue, e.source) from None
    except Exception as e:  # kernel died, notebook missing, ...: still name the step
        raise StepFailed(step, out, None, type(e).__name__, str(e)) from None
    missing = [o for o in step.outputs if not Path(o).exists()]
    if missing:
        raise StepFailed(step, out, None, "MissingOutput", f"the notebook ran but did not write {missing[0]}")
    stamp = dict(step=step.name, notebook=step.notebook, key=key, params=step.params, outputs=step.outputs,
                 seconds=round(time.time() - t0, 2), finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                 loadavg=round(os.getloadavg()[0], 1))  # durations on a shared machine need this context
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1, default=str))
    log(f"[done] {step.name} in {stamp['seconds']:.1f} s")
    return {**stamp, "status": "ran"}


def run_chain(steps: list[Step], runs: Path, notebooks: Path, force: bool = False, log=print,
              before=None, jobs: int = 1) -> list[dict]:
    """Run `steps` (each keyed by its parameters and its inputs' keys); stop at the first failure.

    A step starts once the steps it depends on are done; up to `jobs` run at the same time (each
    notebook has its own kernel process). before(step, stamps_so_far) is called as a step starts
    (the pipeline uses it to write the manifest the report notebook reads). Returns the stamps in
    step order, each with "status" ran or skipped.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate step names in the chain: {sorted({n for n in names if names.count(n) > 1})}")
    keys = {}
    for step in steps:
        unknown = [d for d in step.deps if d not in keys]
        if unknown:
            raise ValueError(f"step {step.name} depends on {unknown}, which do not run before it")
        keys[step.name] = step_key(step, keys)
    done: dict[str, dict] = {}
    pending, running = list(steps), {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        while pending or running:
            for step in [s for s in pending if all(d in done for d in s.deps)][: max(1, jobs) - len(running)]:
                if before is not None:
                    before(step, [done[n] for n in names if n in done])
                running[pool.submit(run_step, step, runs, keys[step.name], notebooks, force, log)] = step
                pending.remove(step)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            failure = None
            for future in finished:
                step = running.pop(future)
                try:
                    done[step.name] = future.result()
                except StepFailed as e:
                    failure = failure or e
            if failure is not None:
                wait(running)  # let the steps already running finish (their kernels cannot be cut mid-cell cleanly)
                raise failure
    return [done[n] for n in names]


# --- HTML --------------------------------------------------------------------------------------------
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


def render_html(executed: Path, html: Path, appendix_md: str = "") -> Path:
    """Render an executed notebook to a self-contained page: inputs hidden, images embedded, no scripts.

    nbconvert's lab template loads require.js, MathJax and mermaid from a CDN; the report needs
    none of them (tables are HTML, figures are PNGs), so every <script> is removed and the page
    loads nothing from the network. `appendix_md` is added as a last markdown cell.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    if appendix_md:
        nb.cells.append(nbformat.v4.new_markdown_cell(appendix_md))
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "DMTrack reproduction report"}})
    body = _SCRIPT.sub("", body)
    atomic_write_text(Path(html), body)
    return Path(html)


