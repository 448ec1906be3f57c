"""What each notebook of the chain does, as plain functions (the notebooks call these and plot).

Layout of one profile's work folder (default runs/<profile>/):

    train/<variant>/seed<N>/                    model.pth, last.pth, losses.csv, run.json  (dmtrack.train)
    results/<benchmark>/<tracker>/<param>/      raw results in pytracking's layout, evaluate.json,
                                                scores_pytracking.json, scores_official.json
        tracker = dmtrack-<variant> with param = k<k>_seed<N>, or a trivial tracker with param = seed<N>
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dmtrack.report.paper import BENCHMARKS
from dmtrack.io import atomic_write_json

PROTOCOLS = ("pytracking", "official")
BASELINES = ("static", "oracle-jitter")


def benchmark_name(bench: str, synthetic: bool) -> str:
    """The loader name of one of the paper's four benchmarks ('lasot' -> 'synthetic_lasot' on synthetic data)."""
    return f"synthetic_{bench}" if synthetic else bench


def drift_benchmarks(levels) -> list[str]:
    from dmtrack.data.synthetic import level_tag

    return [f"synthetic_drift_{level_tag(x)}" for x in levels]


def set_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(max(1, int(threads)))
    cv2.setNumThreads(1)


def load_sequences(benchmark: str, data_dir=None, max_frames: int | None = None):
    """A benchmark's sequences (data_dir: the synthetic root, or None for the real dataset's root)."""
    from dmtrack.data import load_benchmark

    seqs = load_benchmark(benchmark, root=data_dir if benchmark.startswith("synthetic") else None, progress=False)
    return [truncate(s, max_frames) for s in seqs]


def truncate(seq, n: int | None):
    """The first n frames of a sequence (smoke runs track and score only these)."""
    if n is None or n >= len(seq):
        return seq
    cut = lambda a: None if a is None else a[:n]
    return dataclasses.replace(seq, frames=seq.frames[:n], boxes=seq.boxes[:n], visible=cut(seq.visible), drift=cut(seq.drift))


# --- 00_data ----------------------------------------------------------------------------------------
def prepare_data(synthetic: bool, data_dir, preset: str | None = None, seed: int = 0) -> dict:
    """Generate the synthetic benchmark (with its drift sweep) at data_dir, or check that the four real
    test sets load. Returns {benchmark: number of sequences}."""
    if synthetic:
        from dmtrack.data.synthetic import generate

        try:
            manifest = generate(data_dir, preset=preset, seed=seed, sweep=True, progress=False)
        except FileExistsError as e:  # made with other settings (e.g. an edited preset): the chain's data, regenerate
            print(f"{e}\nregenerating it")
            manifest = generate(data_dir, preset=preset, seed=seed, sweep=True, progress=False, force=True)
        return {name: s["sequences"] for name, s in manifest["suites"].items()}
    return {b: len(load_sequences(b)) for b in BENCHMARKS}


def score_baselines(benchmarks, results_root, data_dir=None, seed: int = 0, max_frames: int | None = None):
    """Run and score the two trivial trackers on `benchmarks` under both protocols; rows as in load_runs."""
    import pandas as pd

    from dmtrack.eval.baselines import run_baseline
    from dmtrack.track.runner import score_results

    rows = []
    for bench in benchmarks:
        seqs = load_sequences(bench, data_dir, max_frames)
        for name in BASELINES:
            out = Path(results_root) / bench / name / f"seed{seed}"
            run_baseline(name, seqs, out, seed)
            atomic_write_json(out / "evaluate.json", dict(benchmark=bench, variant=name, samples=None, seed=seed,
                                                    max_frames=max_frames))
            for protocol, sc in score_results(out, seqs, PROTOCOLS, bench).items():
                rows.append(dict(benchmark=bench, tracker=name, protocol=protocol, **sc.overall()))
    return pd.DataFrame(rows)


# --- 10_train ---------------------------------------------------------------------------------------
def train_dir(work, variant: str, seed: int) -> Path:
    return Path(work) / "train" / variant / f"seed{seed}"


def train_variant(profile: str, variant: str, seed: int, work, data_dir=None, overrides: dict | None = None,
                  progress: bool = False) -> Path:
    """Train one Table 2 variant (resumes a stopped run); returns model.pth."""
    import shutil

    from dmtrack.config import load_config
    from dmtrack.model.weights import load_checkpoint
    from dmtrack.train import load_train_sequences, train
    from dmtrack.train.loop import config_diff

    cfg = load_config(profile, variant, seed=seed, **(overrides or {}))
    out = train_dir(work, variant, seed)
    model = out / "model.pth"
    done = model if model.exists() else out / "last.pth" if (out / "last.pth").exists() else None
    if done is not None:
        diff = config_diff(cfg, load_checkpoint(done)["config"])
        if not diff and model.exists():  # finished before (the pipeline's stamp was lost): nothing to redo
            return model
        if diff:  # a run of another config (e.g. the profile changed): keep it aside, train afresh
            aside = out.with_name(out.name + ".replaced")
            shutil.rmtree(aside, ignore_errors=True)
            out.rename(aside)
            print(f"{out} was trained with other settings ({', '.join(diff[:6])}); moved to {aside}, training afresh")
    roots = {"synthetic": str(data_dir)} if data_dir else None
    sequences = load_train_sequences(cfg, roots=roots)
    return train(cfg, out, resume=True, sequences=sequences, progress=progress)


# --- 20_evaluate ------------------------------------------------------------------------------------
def results_dir(work, benchmark: str, variant: str, k: int, seed: int) -> Path:
    return Path(work) / "results" / benchmark / f"dmtrack-{variant}" / f"k{k}_seed{seed}"


def evaluate_variant(variant: str, benchmarks, k: int, seeds, work, data_dir=None, max_frames: int | None = None,
                     workers: int = 1):
    """Track `benchmarks` (a name or a list) with every seed's model of `variant` at k samplings, scored
    under both protocols; returns the overall scores (one row per benchmark, seed and protocol)."""
    import pandas as pd

    from dmtrack.track.runner import evaluate, file_sha256, load_model

    benchmarks = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    rows = []
    for seed in seeds:
        path = train_dir(work, variant, seed) / "model.pth"
        if not path.exists():
            raise FileNotFoundError(f"{path}: variant {variant} seed {seed} has not been trained (run 10_train)")
        model, cfg = load_model(path)  # once per seed, shared by the benchmarks (the drift sweep has several)
        weights = file_sha256(path)  # results of an earlier model.pth (retrained since) are redone, not resumed
        for bench in benchmarks:
            out = results_dir(work, bench, variant, k, seed)
            scores = evaluate(model, bench, out, samples=k, config=cfg, workers=workers, max_frames=max_frames, seed=seed,
                              data_root=data_dir if bench.startswith("synthetic") else None, progress=False,
                              weights_id=weights, replace_stale=True)
            for protocol, sc in scores.items():
                rows.append(dict(benchmark=bench, variant=variant, k=k, seed=seed, protocol=protocol, **sc.overall()))
    return pd.DataFrame(rows)


# --- 30_visualize -----------------------------------------------------------------------------------
def hard_sequences(work, benchmark: str, n: int, variant: str = "full", k: int = 1, protocol: str = "pytracking") -> list[str]:
    """The n sequences of `benchmark` where `variant` (mean over its evaluated seeds) scores the lowest AUC."""
    from dmtrack.report.tables import load_runs

    _, per = load_runs(Path(work) / "results")
    d = per[(per.benchmark == benchmark) & (per.variant == variant) & (per.k == k) & (per.protocol == protocol)]
    if d.empty:
        raise FileNotFoundError(f"{work}/results/{benchmark}: no scored run of {variant} k={k} to pick hard sequences from")
    return list(d.groupby("sequence").auc.mean().sort_values().index[:n])


def load_tracker(work, variant: str, seed: int, k: int):
    """A Tracker for the trained model of (variant, seed) with k samplings."""
    from dmtrack.track.runner import load_model, make_tracker

    model, cfg = load_model(train_dir(work, variant, seed) / "model.pth")
    return make_tracker(model, cfg, samples=k, seed=seed)


def track_for_figure(tracker, seq, keep_frames) -> dict:
    """Boxes of every frame and the diffusion masks (image coordinates) of `keep_frames`."""
    from dmtrack.track.runner import track_sequence

    return track_sequence(tracker, seq, keep_masks=keep_frames)


def other_boxes(folder, seq):
    """Another tracker's boxes for `seq` from its raw results folder (any of the layouts dmtrack.eval reads)."""
    from dmtrack.eval.results import find_result_files, read_results

    found, _ = find_result_files(folder, [seq.name], skip_missing=True)
    return read_results(found[seq.name])[: len(seq)] if seq.name in found else None


def sampling_chain(tracker, seq, frame: int) -> dict:
    """The diffusion sampling of one frame, as the tracker runs it: track up to frame - 1, crop the search
    region of `frame` around the previous box, run the model once with return_chain=True.

    Returns crop (S,S,3 uint8), chain (steps+1, k, M, M: x_T .. x_0 mapped to [0,1]), samples (k, M, M: the
    k predicted masks), average (M, M: their mean, what the head uses before filtering), filtered (M, M)."""
    import torch

    from dmtrack.data.crop import crop_square, normalize
    from dmtrack.track.runner import read_frame

    if not 1 <= frame < len(seq):
        raise ValueError(f"{seq.name}: frame {frame} is outside 1..{len(seq) - 1}")
    cfg, first = tracker.cfg, read_frame(seq.frames[0])
    tracker.initialize(first, seq.boxes[0], seq.description)
    for i in range(1, frame):
        tracker.track(read_frame(seq.frames[i]), return_mask=False)
    crop, _, _ = crop_square(read_frame(seq.frames[frame]), tracker.box, cfg.search_factor, cfg.search_size)
    tensor = lambda img: torch.from_numpy(normalize(img))[None].to(tracker.device)
    template = tensor(crop_square(first, seq.boxes[0], cfg.template_factor, cfg.template_size)[0])
    with torch.inference_mode():
        out = tracker.model(template, tensor(crop), tracker.text, samples=tracker.samples, return_chain=True)
    if "chain" not in out:
        raise ValueError(f"variant {tracker.cfg.variant} has no diffusion module: no sampling chain to show")
    chain = torch.stack([c[0, :, 0] for c in out["chain"]]).float().cpu().numpy()
    samples = out["samples_masks"][0, :, 0].float().cpu().numpy()
    return dict(crop=crop, chain=chain, samples=samples, average=samples.mean(0),
                filtered=out["mask"][0, 0].float().cpu().numpy())


# --- 40_report --------------------------------------------------------------------------------------
def score_others(others: dict, results_root, synthetic: bool, data_dir=None) -> list[str]:
    """Re-score other trackers' raw results (others = {name: DIR}, DIR/<benchmark>/<seq>.txt with
    benchmark one of lasot, lasot_ext, tnl2k, otb_lang) under both protocols; returns what was scored."""
    from dmtrack.eval.results import score_folder

    done = []
    for name, folder in (others or {}).items():
        for b in BENCHMARKS:
            src = Path(folder) / b
            if not src.is_dir():
                continue
            bench = benchmark_name(b, synthetic)
            seqs = load_sequences(bench, data_dir)
            out = Path(results_root) / bench / name / "raw"
            atomic_write_json(out / "evaluate.json", dict(benchmark=bench, variant=name, samples=None, seed=0, source=str(src)))
            for protocol in PROTOCOLS:
                sc = score_folder(src, seqs, protocol=protocol, benchmark=bench, skip_missing=True)
                atomic_write_json(out / f"scores_{protocol}.json", sc.to_json())
            done.append(f"{name} on {bench}")
    return done


def notebook_figures(path) -> list[tuple[str, bytes]]:
    """(heading, PNG bytes) of every figure in an executed notebook, in order; heading = the last
    markdown heading above it. The report shows 30_visualize's figures this way instead of redrawing them."""
    import base64

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    heading, out = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            heading = lines[-1] if lines else heading
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png = o.get("data", {}).get("image/png")
            if png:
                out.append((heading, base64.b64decode(png)))
    return out
