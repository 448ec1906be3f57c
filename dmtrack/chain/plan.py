"""What a profile's chain runs: its settings (`CHAINS`, what a command line changes in them), its folders,
and `plan`, the steps (data, trainings, evaluations, figures, report) on the generic chain of graph.py.

    steps = plan("smoke", default_paths("smoke"))     # = the steps `dmtrack report --profile smoke --plan` lists
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import get_args, get_type_hints

from dmtrack.chain.graph import Step, gpu_pool
from dmtrack.chain.preflight import PreflightError, absolute_path_overrides, chain_configs
from dmtrack import experiments
from dmtrack.config import BASE, PROFILES, SCRATCH, VARIANTS, ConfigError, load_config, parse_overrides
from dmtrack.data import dataset_root
from dmtrack.data.benchmarks import drift_benchmark, synthetic_name
from dmtrack.data.sentences import SENTENCES
from dmtrack.data.synthetic import GENERATOR_VERSION, PRESETS, preset_fingerprint
from dmtrack.eval.baselines import BASELINES
from dmtrack.layout import ARMS, EvalRun, eta_override, model_name, model_path, results_root, scores_path, tracker_name
from dmtrack.paper import TABLE2, TABLE2_BENCHMARK
from dmtrack.provenance import cpu_cores

# the benchmarks every chain tracks the full model on at k = 1 (Table 1's four; the report shows
# dmtrack.paper.BENCHMARKS, which tests/test_report.py holds equal to these; --other results lie in their folders)
CHAIN_BENCHMARKS = ("lasot", "lasot_ext", "tnl2k", "otb_lang")


@dataclass(frozen=True)
class ChainSettings:
    """What the chain runs for one profile (model sizes and recipe live in dmtrack.config); each field is
    defined and explained in dmtrack/experiments/paper.py, and shrunk in demo.py and smoke.py."""
    synthetic: bool
    preset: str | None
    seeds: int
    k_sweep: tuple
    steps_sweep: tuple
    readings: tuple
    drift: bool
    drift_variants: tuple
    drift_k: int
    sweep_seeds: int | None
    robust_variants: tuple
    robust_benchmark: str
    robust_seeds: int | None
    max_frames: int | None
    train: dict
    workers: int
    track_batch: int
    jobs: int
    fig7_sequences: int
    budget_minutes: float | None
    require_weights: bool
    gpus_per_train: int
    base_stage: bool
    arms: dict
    arm_seeds: dict
    sweep_etas: tuple


def override_settings(settings: ChainSettings, overrides: dict) -> ChainSettings:
    """`settings` with `overrides` (parsed `key=value` pairs, dmtrack.config.parse_overrides), checked as
    dmtrack.config.apply_overrides checks a Config: an unknown key raises naming it, a list becomes a tuple
    where a tuple is expected, an int a float, and any other value of the wrong type is a ConfigError."""
    hints = get_type_hints(ChainSettings)
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        raise KeyError(f"unknown chain setting(s): {', '.join(unknown)} (known: {', '.join(hints)})")
    clean = {}
    for key, value in overrides.items():
        allowed = get_args(hints[key]) or (hints[key],)
        value = tuple(value) if tuple in allowed and isinstance(value, list) else value
        value = float(value) if float in allowed and type(value) is int else value
        if type(value) not in allowed:
            raise ConfigError(f"chain setting {key!r} expects {' or '.join(t.__name__ for t in allowed)}, got {value!r}")
        clean[key] = value
    return replace(settings, **clean)


CHAINS = {p: ChainSettings(**experiments.get(p)["chain"]) for p in PROFILES}  # one experiment per profile


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
        return results_root(self.work)


def default_paths(profile: str, reports=None, work=None, data=None) -> ChainPaths:
    s = CHAINS[profile]
    if data is None and s.synthetic:  # demo uses the default synthetic root; other presets sit beside it
        root = dataset_root("synthetic")
        data = root if s.preset == "demo" else root.with_name(f"{root.name}_{s.preset}")
    resolve = lambda p: Path(p).resolve() if p is not None else None
    return ChainPaths(profile, resolve(reports or "reports"), resolve(work or Path("runs") / profile), resolve(data))


_OTHER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_other(name: str, folder) -> Path:
    """The absolute folder of another tracker's raw results (`--other NAME=DIR`), or a ValueError /
    FileNotFoundError naming it. NAME becomes results/<benchmark>/NAME/: it must be a plain name and not
    one of our own trackers' (their results would be overwritten). DIR is resolved against the working
    directory now (the notebooks run in notebooks/) and must hold at least one <benchmark>/ folder."""
    given = f"{name}={folder}"
    if not _OTHER_NAME.fullmatch(name):
        raise ValueError(f"{given}: NAME must be letters, digits, '_', '-' and '.', not starting with '-' or '.' "
                         "(it becomes a folder name)")
    folded = name.casefold()  # as case-insensitive file systems (macOS) compare folder names
    if folded in {b.casefold() for b in BASELINES} or folded.startswith(tracker_name("").casefold()):
        raise ValueError(f"{given}: {name!r} would overwrite our own results ({', '.join(BASELINES)} and "
                         f"{tracker_name('*')} are ours); choose another NAME")
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{given}: no folder {path}")
    if not any((path / b).is_dir() for b in CHAIN_BENCHMARKS):
        raise FileNotFoundError(f"{given}: {path} holds none of {', '.join(b + '/' for b in CHAIN_BENCHMARKS)} "
                                "(expected DIR/<benchmark>/<sequence>.txt)")
    return path


def drift_levels(settings: ChainSettings) -> list[float]:
    if not (settings.synthetic and settings.drift):
        return []
    return [float(x) for x in PRESETS[settings.preset].sweep_levels]


def plan(profile: str, paths: ChainPaths, seeds: int | None = None, others: dict | None = None,
         settings: ChainSettings | None = None) -> list[Step]:
    """The steps of `profile`'s chain: data, 6 variants x seeds trainings, the evaluations of Tables 1
    and 2 (Table 2 under each reading of "k samplings") and of the k, steps and drift sweeps, Fig. 7,
    the report."""
    s = settings or CHAINS[profile]
    seed_list = list(range(seeds if seeds is not None else s.seeds))
    threads = max(1, cpu_cores() // max(1, s.jobs))
    data = str(paths.data) if paths.data else ""
    common = dict(profile=profile, work=str(paths.work), data_dir=data, synthetic=s.synthetic)
    levels = drift_levels(s)
    sweep = seed_list[: s.sweep_seeds] if s.sweep_seeds else seed_list
    robust = seed_list[: s.robust_seeds] if s.robust_seeds else sweep
    data_fp = {}
    if s.synthetic:  # an edited preset regenerates the data (and so retrains and re-evaluates)
        data_fp = {"generator": GENERATOR_VERSION, "preset": preset_fingerprint(s.preset)}
    steps = [Step("00_data", "00_data.ipynb", dict(common, preset=s.preset, max_frames=s.max_frames, drift_levels=levels),
                  outputs=[str(paths.data / "manifest.json")] if s.synthetic else [], fingerprint=data_fp)]
    base = base_step(profile, s, paths, common, threads)
    steps += [base] if base else []
    trained = {}
    for arm, variants in {"": VARIANTS, **chain_arms(s)}.items():
        overrides, seeds_of_arm = arm_overrides(s, paths, arm), arm_seeds(s, arm, seed_list)
        configs = chain_configs(profile, overrides, seeds_of_arm, variants)  # every config validated before a step runs
        for v in variants:
            for seed in seeds_of_arm:
                name = f"10_train/{model_name(v, arm)}_seed{seed}"
                # keyed by the resolved config too: a changed profile definition retrains, it is not skipped
                # processes is keyed: DDP shards each batch over them, which changes the run's numbers
                params = dict(common, variant=v, seed=seed, overrides=overrides, processes=s.gpus_per_train)
                if arm:  # only then: the other steps keep the keys their finished runs were stamped with
                    params["arm"] = arm
                steps.append(Step(name, "10_train.ipynb", params, outputs=[str(model_path(paths.work, v, seed, arm))],
                                  deps=["00_data"] + ([base.name] if base and "pretrained" not in ARMS[arm] else []),
                                  fingerprint={"config": configs[v, seed].to_dict()}, runtime=dict(threads=threads),
                                  devices=s.gpus_per_train))
                trained.setdefault(model_name(v, arm), []).append(name)
    evaluated = {}  # {(variant, benchmarks, k, average, steps, sentence, arm, eta): step name}
    for (variant, benches, k, average, n_steps, sentence, arm, eta), eval_seeds in _evaluations(
            profile, s, seed_list, sweep, levels, robust).items():
        tag = "drift" if len(benches) > 1 else benches[0].removeprefix("synthetic_")
        runs = [EvalRun(variant, seed, k, average, n_steps, sentence, eta, arm) for seed in eval_seeds]
        name = f"20_evaluate/{runs[0].model}_{tag}_{runs[0].tag}"
        outs = [str(scores_path(run.folder(paths.work, b), "pytracking")) for b in benches for run in runs]
        params = dict(common, variant=variant, benchmarks=list(benches), k=k, average=average, steps_per_chain=n_steps,
                      seeds=eval_seeds, max_frames=s.max_frames, workers=s.workers)
        if s.track_batch != 1:  # only then, as the sentence below
            params["batch"] = s.track_batch
        if sentence != "true":  # only then: the other steps keep the keys their finished runs were stamped with
            params["sentence"] = sentence
        if arm:
            params["arm"] = arm
        if eta is not None:  # another sampler than the config's (sweep_etas)
            params["eta"] = eta
        steps.append(Step(name, "20_evaluate.ipynb", params, outputs=outs,
                          deps=[f"10_train/{runs[0].model}_seed{i}" for i in eval_seeds], runtime=dict(threads=threads)))
        evaluated[variant, benches, k, average, n_steps, sentence, arm, eta] = name
    all_train = [n for v in VARIANTS for n in trained[v]]
    fig7 = synthetic_name("tnl2k", s.synthetic)  # it reads only the full model's k=1 scores (Fig. 7's hardest sequences)
    hard = [evaluated[key] for key in [("full", (fig7,), 1, "final", None, "true", "", None)] if key in evaluated]
    steps.append(Step("30_visualize", "30_visualize.ipynb",
                      dict(common, benchmark=fig7, variants=list(VARIANTS), seed=seed_list[0],
                           k=5, n_sequences=s.fig7_sequences, max_frames=s.max_frames, others=others or {}),
                      deps=all_train + hard, runtime=dict(threads=threads)))
    steps.append(Step("40_report", "40_report.ipynb",
                      dict(common, manifest=str(paths.runs / "manifest.json"), k_sweep=list(s.k_sweep), sweep_seeds=sweep,
                           steps_sweep=list(s.steps_sweep), readings=list(s.readings), budget_minutes=s.budget_minutes,
                           drift_levels=levels, drift_variants=list(s.drift_variants), drift_k=s.drift_k,
                           robust_variants=list(s.robust_variants), robust_benchmark=s.robust_benchmark, robust_seeds=robust,
                           others=others or {}, max_frames=s.max_frames, overrides=s.train,
                           data_notebook=str(paths.runs / "00_data.ipynb"),
                           visualize_notebook=str(paths.runs / "30_visualize.ipynb")),
                      deps=[st.name for st in steps]))
    return steps


def base_stage(s: ChainSettings) -> bool:
    """Whether the chain trains the base tracker first: the profile asks for one and no `pretrained`
    was given for the trainings (a file of the user's is the base; pretrained=none trains from scratch)."""
    return s.base_stage and "pretrained" not in s.train


def base_step(profile: str, s: ChainSettings, paths: ChainPaths, common: dict, threads: int) -> Step | None:
    """The base tracker's training (ViT + CE + centre head, config variant 'base', the profile's scratch
    recipe), one for every variant and seed (every fine-tuning waits for it, the arms' too; the scratch arm's
    trainings do not, and share the cores with it). None when the chain has no base stage."""
    if not base_stage(s):
        return None
    try:
        cfg = load_config(profile, BASE, seed=0, **s.train)
    except (KeyError, TypeError, ValueError) as e:
        raise PreflightError(f"profile {profile}, the base tracker: {e.args[0] if e.args else e}") from None
    return Step(f"10_train/{BASE}", "10_train.ipynb",
                dict(common, variant=BASE, seed=0, overrides=s.train, processes=s.gpus_per_train),
                outputs=[str(model_path(paths.work, BASE, 0))], deps=["00_data"], fingerprint={"config": cfg.to_dict()},
                runtime=dict(threads=threads), devices=s.gpus_per_train)


def arm_overrides(s: ChainSettings, paths: ChainPaths, arm: str = "") -> dict:
    """The config overrides of an arm's trainings: the chain's `train`, plus pretrained=<the base tracker>
    when the chain has a base stage, then the arm's own (dmtrack.layout.ARMS: the scratch arm's pretrained=none,
    the authors arms' reading=authors, fine-tuned from the same base tracker as the chain's own trainings)."""
    own = {**s.train, "pretrained": str(model_path(paths.work, BASE, 0))} if base_stage(s) else dict(s.train)
    return {**own, **ARMS[arm]}


def chain_arms(s: ChainSettings) -> dict:
    """{arm: variants} of the arms the chain trains (`ChainSettings.arms`), less those whose overrides its own
    trainings already have (they would train the same models twice): the scratch arm of a chain that trains
    from scratch (pretrained=none, or no pretrained file and no base stage), the authors arm of one under
    reading=authors. KeyError for an arm or a variant that does not exist."""
    own = dict(s.train, pretrained=BASE if base_stage(s) else s.train.get("pretrained") or SCRATCH)
    for arm, variants in s.arms.items():
        if arm not in ARMS or not arm or not set(variants) <= set(VARIANTS):
            raise KeyError(f"chain setting arms: {arm!r}: {list(variants)!r} must name an arm of "
                           f"{', '.join(a for a in ARMS if a)} and variants of {', '.join(VARIANTS)}")
    return {arm: tuple(v) for arm, v in s.arms.items() if v and any(own.get(k) != x for k, x in ARMS[arm].items())}


def arm_seeds(s: ChainSettings, arm: str, seed_list: list) -> list:
    """The training seeds of an arm: the first `arm_seeds[arm]` of the chain's (all when not given)."""
    n = s.arm_seeds.get(arm) if arm else None
    return seed_list[:n] if n else seed_list


def arm_readings(profile: str, s: ChainSettings, arm: str, variant: str, k: int) -> tuple:
    """The readings of "k samplings" an arm's variant is evaluated under at k: final (Table 2's primary), and
    the reading its config tracks with (test_average; reading=authors: maps) where that runs another function:
    at k = 1 chain and maps are one chain of one step, the final reading when a chain has one step."""
    cfg = load_config(profile, variant, **{**s.train, **ARMS[arm]})
    same = cfg.test_average == "final" or not cfg.use_diffusion or (k == 1 and cfg.sampling_steps == 1)
    return ("final",) if same else ("final", cfg.test_average)


def _evaluations(profile: str, s: ChainSettings, seed_list: list, sweep: list, levels: list, robust: list) -> dict:
    """{(variant, benchmarks, k, average, steps, sentence, arm, eta): seeds} of every evaluation: Table 2's nine
    rows under each reading, Table 1 (full, k=1), the k and steps sweeps (full, Table 2 benchmark, sweep seeds)
    under each sampler of sweep_etas, the drift sweep (sweep seeds), the robustness test's three sentences
    (`robust`: its seeds) and each arm's Table 2 rows (its variants, its seeds, `arm_readings`). eta: the
    sampler's DDIM eta override (EvalRun.eta; None = the config's sampler_eta, every evaluation but the other
    samplers' sweeps). An evaluation needed twice is run once, for the larger set of seeds."""
    evals = {(v, b, k, a, n, "true", "", eta): seeds
             for (v, b, k, a, n, eta), seeds in _true_sentence_evaluations(profile, s, seed_list, sweep, levels).items()}
    bench = synthetic_name(s.robust_benchmark, s.synthetic)
    for v in s.robust_variants:
        for sentence in SENTENCES:
            key = (v, (bench,), 1, "final", None, sentence, "", None)
            evals[key] = max(evals.get(key, []), robust, key=len)
    t2 = synthetic_name(TABLE2_BENCHMARK, s.synthetic)  # the arms: their variants' Table 2 rows
    evals.update({(r.variant, (t2,), r.k, average, None, "true", arm, None): arm_seeds(s, arm, seed_list)
                  for arm, variants in chain_arms(s).items() for r in TABLE2 if r.variant in variants
                  for average in arm_readings(profile, s, arm, r.variant, r.k)})
    return evals


def _true_sentence_evaluations(profile: str, s: ChainSettings, seed_list: list, sweep: list, levels: list) -> dict:
    """{(variant, benchmarks, k, average, steps, eta): seeds} of the evaluations with the true sentence."""
    t2 = synthetic_name(TABLE2_BENCHMARK, s.synthetic)
    evals = {(r.variant, (t2,), r.k, "final", None, None): seed_list for r in TABLE2}
    evals.update({("full", (synthetic_name(b, s.synthetic),), 1, "final", None, None): seed_list for b in CHAIN_BENCHMARKS})
    if "chain" in s.readings:  # no_diffusion samples nothing: its row is the same under both readings
        evals.update({(r.variant, (t2,), r.k, "chain", None, None): seed_list for r in TABLE2 if r.variant != "no_diffusion"})
    cfg = load_config(profile, "full", **s.train)
    for eta in sweep_overrides(s, cfg):  # the config's sampler (None: Table 2's folders) and the others
        for k in s.k_sweep:
            evals.setdefault(("full", (t2,), k, "final", None, eta), sweep)
        for n in s.steps_sweep:  # at k = 1; one step is one denoiser pass, exactly the chain reading at k = 1
            run = (1, "chain", None) if n == 1 else (1, "final", None if n == cfg.sampling_steps else n)
            evals.setdefault(("full", (t2,), *run, eta), sweep)
    if levels:
        evals.update({(v, tuple(drift_benchmark(x) for x in levels), s.drift_k, "final", None, None): sweep
                      for v in s.drift_variants})
    return evals


def sweep_overrides(s: ChainSettings, cfg) -> list:
    """The EvalRun.eta of each sampler in s.sweep_etas (layout.eta_override: None for the config's own), or a
    PreflightError for an empty list or an eta outside [0, 1]. Under reading=authors only the config's: the
    authors' ancestral sampler has no DDIM eta (dmtrack.model.resolve_eta); the report says one sampler ran."""
    bad = [e for e in s.sweep_etas if type(e) not in (int, float) or not 0 <= e <= 1]
    if not s.sweep_etas or bad:
        raise PreflightError(f"sweep_etas must list DDIM etas in [0, 1] (the samplers of the k and steps sweeps), "
                             f"got {list(s.sweep_etas)!r}")
    if cfg.reading == "authors":
        return [None]
    return list(dict.fromkeys(eta_override(e, cfg.sampler_eta) for e in s.sweep_etas))




@dataclass(frozen=True)
class ChainOptions:
    """What a command line changes in a profile's chain; None (or empty) keeps the profile's value.

    seeds: training seeds per variant; jobs: notebooks at a time (default with a GPU pool: one per
    GPU); train_overrides: config overrides for every training (e.g. pretrained=<OSTrack checkpoint>,
    text_encoder=<bert-base-uncased folder>; paths made absolute; part of the steps' keys);
    max_frames: track only the first N frames of each sequence; k_sweep / steps_sweep: the values of
    the accuracy/speed sweeps; readings: the readings of "k samplings" Table 2 is evaluated under
    (final first: the primary one); robust_variants: the variants of the robustness test;
    gpus_per_train: processes (GPUs) per training, torchrun DDP when > 1; gpus: the GPU pool
    (CUDA_VISIBLE_DEVICES ids; None: every GPU this process sees; []: no pool); allow_minilm: let the
    paper profile train with the packaged MiniLM instead of bert-base-uncased."""
    seeds: int | None = None
    jobs: int | None = None
    train_overrides: dict = field(default_factory=dict)
    max_frames: int | None = None
    k_sweep: tuple | None = None
    steps_sweep: tuple | None = None
    readings: tuple | None = None
    robust_variants: tuple | None = None
    gpus_per_train: int | None = None
    gpus: tuple | None = None
    allow_minilm: bool = False
    chain_overrides: tuple = ()  # "key=value" chain settings (override_settings), before the options above

    def pool(self) -> list | None:
        """The GPU pool the chain's steps are spread over (None: no pool); PreflightError for an id this
        process does not see (a step given it would have no GPU, or someone else's)."""
        try:
            return gpu_pool(self.gpus)
        except ValueError as e:
            raise PreflightError(str(e)) from None


def chain_settings(profile: str, options: ChainOptions = ChainOptions(), pool: list | None = None) -> ChainSettings:
    """The profile's ChainSettings with `options` applied and checked (PreflightError names a bad
    value); `pool` is the GPU pool the chain runs on (options.pool())."""
    o = options
    if profile not in CHAINS:
        raise KeyError(f"unknown profile {profile!r}; choose from {', '.join(CHAINS)}")
    if o.robust_variants is not None and not set(o.robust_variants) <= set(VARIANTS):
        raise PreflightError(f"robustness variants must be among {', '.join(VARIANTS)}, got {o.robust_variants!r}")
    if o.readings is not None and (not o.readings or o.readings[0] != "final" or not set(o.readings) <= {"final", "chain"}):
        raise PreflightError(f"readings must start with final (the primary reading) and be final or chain, got {o.readings!r}")
    counts = (*(("k", k) for k in o.k_sweep or ()), *(("steps", n) for n in o.steps_sweep or ()))
    for name, value in (("seeds", o.seeds), ("jobs", o.jobs), ("max_frames", o.max_frames),
                        ("gpus_per_train", o.gpus_per_train), *counts):
        if value is not None and (type(value) is not int or value < 1):
            raise PreflightError(f"{name} must be a positive integer, got {value!r}")
    if pool and o.gpus_per_train and o.gpus_per_train > len(pool):
        raise PreflightError(f"--gpus-per-train {o.gpus_per_train} is more than the {len(pool)} GPU(s) given ({','.join(pool)})")
    s = override_settings(CHAINS[profile], parse_overrides(list(o.chain_overrides)))
    as_tuple = lambda v: tuple(v) if v else None  # noqa: E731
    changes = dict(seeds=o.seeds, jobs=o.jobs or (len(pool) if pool else None), max_frames=o.max_frames,
                   k_sweep=as_tuple(o.k_sweep), steps_sweep=as_tuple(o.steps_sweep), readings=as_tuple(o.readings),
                   gpus_per_train=o.gpus_per_train,
                   robust_variants=tuple(o.robust_variants) if o.robust_variants is not None else None,
                   train={**s.train, **absolute_path_overrides(o.train_overrides)} if o.train_overrides else None)
    return replace(s, **{k: v for k, v in changes.items() if v is not None})


