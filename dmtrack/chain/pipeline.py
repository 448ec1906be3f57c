"""The whole reproduction: `reproduce` runs a profile's planned chain (plan.py) with skip-if-done and renders
the last notebook (40_report) to a self-contained HTML page, after the checks of preflight.py (weights,
every config, absolute data paths) and with an ETA from estimate.py; `plan_estimate` is
`dmtrack report --plan`: the steps and their cost, nothing run.

    html = reproduce("smoke")                      # = python -m dmtrack report --profile smoke
    # or, piece by piece:
    paths = default_paths("smoke")
    stamps = run_chain(plan("smoke", paths), paths.runs, NOTEBOOKS, jobs=2)
    render_html(paths.runs / "40_report.ipynb", paths.reports / "index.html")
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dmtrack.chain.estimate import Progress, chain_estimate, duration
from dmtrack.chain.graph import Step, StepFailed, chain_keys, done_stamp, run_chain, run_one
from dmtrack.chain.plan import (CHAINS, ChainOptions, ChainPaths, ChainSettings, chain_settings, check_other,
                                default_paths, plan)
from dmtrack.chain.preflight import PreflightError, environment, preflight
from dmtrack.data import STAND_IN
from dmtrack.data.benchmarks import data_environment
from dmtrack.data.lasot import split_check_enabled
from dmtrack.eval.metrics import PROTOCOLS
from dmtrack.io import atomic_write_text, exclusive_lock
from dmtrack.provenance import REPO, provenance
from dmtrack.report.render import render_html
from dmtrack.report.results import Results
from dmtrack.report.tables import caption, table1

NOTEBOOKS = REPO / "notebooks"
__all__ = ["CHAINS", "ChainOptions", "ChainPaths", "ChainSettings", "NOTEBOOKS", "PreflightError", "Step", "StepFailed", "chain_settings",
           "check_other", "default_paths", "plan", "plan_estimate", "render_html", "reproduce", "run_chain"]


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


def _step_seeds(params: dict) -> list | None:
    """The training seeds a step ran for (what one more seed would cost is read from these)."""
    return params.get("seeds", [params["seed"]] if "seed" in params else None)


def write_manifest(paths: ChainPaths, settings: ChainSettings, seeds: list[int], env: dict, stamps: list[dict],
                   others: dict | None = None) -> Path:
    """runs/<profile>/manifest.json: what the report's provenance section shows. `env` holds the
    provenance record and preflight's (data_env, overrides, config_changes, weights)."""
    data = (f"{STAND_IN}s (preset {settings.preset}) at {paths.data}" if settings.synthetic
            else f"the real benchmarks under {env.get('data_env', {}).get('DMTRACK_DATA', 'DMTRACK_DATA')}")
    manifest = dict(profile=paths.profile, synthetic=settings.synthetic, data=data, settings=asdict(settings), seeds=seeds,
                    max_frames=settings.max_frames, lasot_split_check=split_check_enabled(), work=str(paths.work),
                    others=others or {},
                    steps=[dict(step=s["step"], status=s["status"], seconds=s["seconds"], loadavg=s.get("loadavg"),
                                seeds=_step_seeds(s.get("params", {}))) for s in stamps], **env)
    path = paths.runs / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=1, default=str))
    return path


def plan_estimate(profile: str = "demo", options: ChainOptions = ChainOptions(), reports=None, work=None, data=None,
                  others: dict | None = None, command: list[str] | None = None) -> dict:
    """`dmtrack report --plan`: every step of the chain with its work and estimated duration on this
    machine (estimate.py), the steps it reads from, the GPUs it takes, and (given `command`, the
    `dmtrack report` command line of this chain) the command that runs it alone (`command --step NAME`),
    and the problems that would stop `reproduce` before its first step. Runs nothing."""
    pool = options.pool()
    settings = chain_settings(profile, options, pool)
    problems = []
    try:
        preflight(profile, settings.train, list(range(settings.seeds)), settings.require_weights, options.allow_minilm)
    except PreflightError as e:
        problems.append(str(e))
    paths = default_paths(profile, reports, work, data)
    with environment(data_environment()):
        steps = plan(profile, paths, others=others, settings=settings)  # an invalid config raises here
        est = chain_estimate(profile, steps, paths.data, settings, problems, pool)
    by_name = {st.name: st for st in steps}
    for row in est["steps"]:
        st = by_name[row["step"]]
        row.update(deps=st.deps, gpus=st.devices, **({"command": shlex.join([*command, "--step", st.name])} if command else {}))
    return est


def reproduce(profile: str = "demo", options: ChainOptions = ChainOptions(), force: bool = False, reports=None,
              work=None, data=None, others: dict | None = None, log=print, step: str | None = None) -> Path:
    """Run `profile`'s chain with `options` (ChainOptions), render <reports>/index.html and return its
    path (StepFailed on a failing notebook).

    Nothing runs when preflight.py finds a problem (PreflightError): the paper profile needs its weights
    (or pretrained=none, and allow_minilm for the packaged MiniLM), every config must be valid. Steps
    run one per GPU of the pool (a training takes gpus_per_train); without a pool every kernel sees
    this process's GPUs. step: run only that step (`run_one`: its inputs must be done) and return its
    executed notebook (40_report: the HTML page); many such jobs run at once on a cluster, so this takes
    no work-folder lock (the trainer and the evaluations lock their own folders).
    Else holds the work folder's lock: a second report on it raises dmtrack.io.RunLocked."""
    pool = options.pool()
    settings = chain_settings(profile, options, pool)
    seed_list = list(range(settings.seeds))
    record = preflight(profile, settings.train, seed_list, settings.require_weights, options.allow_minilm)
    others = {name: str(check_other(name, folder)) for name, folder in (others or {}).items()}
    paths = default_paths(profile, reports, work, data)
    env = dict(provenance(), **record, gpus=pool, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    run = _ResolvedChain(profile, paths, settings, seed_list, record, env, others, pool)
    if step is not None:
        return _reproduce_step(run, step, force, log)
    with exclusive_lock(paths.work, "dmtrack report"):  # one chain per work folder (RunLocked for a second)
        return _reproduce(run, force, log)


@dataclass(frozen=True)
class _ResolvedChain:
    """What `reproduce` settled before running anything: the profile, its folders and settings, the
    seeds, the preflight record, the manifest's environment, the other trackers and the GPU pool."""
    profile: str
    paths: ChainPaths
    settings: ChainSettings
    seed_list: list
    record: dict
    env: dict
    others: dict
    gpus: list | None


def _reproduce(run: _ResolvedChain, force: bool, log) -> Path:
    """The body of `reproduce`, run while this process holds the work folder."""
    profile, paths, settings, seed_list, record, env, others, gpus = (
        run.profile, run.paths, run.settings, run.seed_list, run.record, run.env, run.others, run.gpus)
    t0 = time.time()
    with environment(record["data_env"]):  # the notebooks' kernels inherit these absolute paths
        steps = plan(profile, paths, others=others, settings=settings)
        est = chain_estimate(profile, steps, paths.data, settings, gpus=gpus)
        keys = chain_keys(steps)
        done = set() if force else {st.name for st in steps if done_stamp(st, paths.runs, keys[st.name])}
        left = sum(r["seconds"] or 0 for r in est["steps"] if r["step"] not in done) / max(1, est["jobs"])
        log(f"dmtrack report --profile {profile}: {len(steps)} steps ({len(done)} done already), seeds {seed_list}, "
            f"data {'synthetic (' + str(paths.data) + ')' if settings.synthetic else 'real (' + record['data_env']['DMTRACK_DATA'] + ')'}, "
            f"executed notebooks in {paths.runs}; the steps to run estimated at {duration(left)} on this machine "
            f"(`dmtrack report --plan` lists every step)")
        progress = Progress(est, log)

        def before(step, stamps):
            progress(stamps)
            if step.name == "40_report":
                write_manifest(paths, settings, seed_list, env, stamps, others)

        stamps = run_chain(steps, paths.runs, NOTEBOOKS, force=force, log=log, before=before, jobs=settings.jobs, gpus=gpus)
        progress(stamps)
    wall = time.time() - t0
    write_manifest(paths, settings, seed_list, dict(env, wall_seconds=round(wall, 1)), stamps, others)
    return _render(paths, settings, stamps, wall, log)


def _render(paths: ChainPaths, settings: ChainSettings, stamps: list[dict], wall: float, log) -> Path:
    """index.html from the executed 40_report notebook, with the steps' durations appended."""
    html = render_html(paths.runs / "40_report.ipynb", paths.reports / "index.html", durations_markdown(stamps, wall))
    (paths.runs / "index.html").write_text(html.read_text())  # a per-profile copy that other profiles do not overwrite
    log(console_summary(paths, settings))
    log(f"report: {html}")
    return html


def _reproduce_step(run: _ResolvedChain, name: str, force: bool, log) -> Path:
    """`dmtrack report --step NAME`: one step of the chain, as in the whole chain (same key and stamp); the
    report step writes the manifest from the other steps' stamps first and renders the HTML after."""
    profile, paths, settings, seed_list, record, env, others, gpus = (
        run.profile, run.paths, run.settings, run.seed_list, run.record, run.env, run.others, run.gpus)
    t0 = time.time()
    with environment(record["data_env"]):
        steps = plan(profile, paths, others=others, settings=settings)
        if name == "40_report":
            keys = chain_keys(steps)
            stamps = [dict(st, status="skipped") for s in steps if s.name != name
                      for st in [done_stamp(s, paths.runs, keys[s.name])] if st is not None]
            write_manifest(paths, settings, seed_list, env, stamps, others)
        stamp = run_one(steps, name, paths.runs, NOTEBOOKS, force=force, log=log, gpus=gpus)
    if name == "40_report":
        return _render(paths, settings, stamps + [stamp], time.time() - t0, log)
    return paths.runs / f"{name}.ipynb"


def console_summary(paths: ChainPaths, settings: ChainSettings) -> str:
    """Table 1 as text under both protocols (includes the two trivial trackers), for the terminal."""
    res = Results.load(paths.results, settings.synthetic)
    out = []
    for protocol in PROTOCOLS:
        out += ["", caption("Table 1 (AUC [95% CI], PRE, P_norm in %)", protocol, settings.synthetic),
                table1(res, protocol).to_string()]
    return "\n".join(out)
