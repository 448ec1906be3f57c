"""The report's header: what makes a run differ from the paper's setup (or its profile), what was
scored against the official test sets, and the run's provenance (hardware, packages, commit, weights,
the base tracker every variant was fine-tuned from).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dmtrack import paper
from dmtrack.config import SCRATCH, VARIANTS, config_from_dict, load_config
from dmtrack.data import STAND_IN
from dmtrack.data.benchmarks import OFFICIAL_SIZE
from dmtrack.eval.results import find_result_files
from dmtrack.layout import ARMS, BASE, model_name, model_path, results_root, scored_runs, scores_path, step_arm, tracker_name
from dmtrack.provenance import file_sha256, git_label, install_label
from dmtrack.report.results import Results


def _frames_scored(folder: Path, names) -> int:
    paths, _ = find_result_files(folder, list(names), skip_missing=True)
    return sum(sum(1 for line in open(p) if line.strip()) for p in paths.values())


def coverage(res: Results, work) -> pd.DataFrame:
    """Per Table 1 benchmark: the sequences and frames the full model (k = 1) was scored on (the fewest
    over its seeds), and the official test set's counts (empty on the synthetic stand-ins)."""
    rows = []
    for b in paper.BENCHMARKS:
        bench, seqs, frames = res.bench(b), [], []
        for folder, meta in scored_runs(results_root(work)):
            if meta["benchmark"] == bench and folder.parent.name == tracker_name("full") and meta.get("samples") == paper.TABLE1_K:
                names = json.loads(scores_path(folder, "pytracking").read_text())["per_sequence"]
                seqs.append(len(names))
                frames.append(_frames_scored(folder, names))
        official = (None, None) if res.synthetic else OFFICIAL_SIZE[b]
        rows.append(dict(benchmark=paper.BENCHMARK_NAMES[b], loader=bench, sequences=min(seqs, default=None),
                         official_sequences=official[0], frames=min(frames, default=None), official_frames=official[1]))
    return pd.DataFrame(rows, dtype=object)  # counts stay ints, and None where not run or not known


def run_flags(manifest: dict, cover: pd.DataFrame | None = None) -> list[str]:
    """What makes this run differ from the paper's setup (real data) or from its profile: overrides,
    missing weights, benchmarks not scored in full, an unchecked LaSOT split, --max-frames."""
    flags, synthetic = [], manifest.get("synthetic")
    changes = manifest.get("config_changes") or {}
    if changes:
        flags.append(f"**{len(changes)} config override(s)** of the profile `{manifest['profile']}`: "
                     + ", ".join(f"`{k}`" for k in changes) + " (values below)")
    weights = manifest.get("weights") or {}
    if not synthetic and weights:
        if not weights["pretrained"].get("sha256"):
            flags.append("the visual encoder was **trained from random initialisation** "
                         f"(`pretrained={weights['pretrained'].get('setting') or ''}`), not from an OSTrack / MAE checkpoint")
        if weights["text_encoder"].get("setting") == "minilm":
            flags.append("the language encoder is the packaged **MiniLM**, not bert-base-uncased")
    for r in ([] if cover is None or synthetic else cover.to_dict("records")):
        if r["sequences"] is None:
            flags.append(f"{r['benchmark']}: **not scored**")
        elif r["sequences"] != r["official_sequences"] or (r["official_frames"] and r["frames"] != r["official_frames"]):
            of = f" of the official {r['official_frames']:,} frames" if r["official_frames"] else " frames (no official count known)"
            flags.append(f"{r['benchmark']}: **{r['sequences']:,} of the official {r['official_sequences']:,} sequences** "
                         f"and {r['frames']:,}{of} scored")
    if not synthetic and manifest.get("lasot_split_check") is False:
        flags.append("the LaSOT split file was **not checked** against the official 280 test sequences "
                     "(DMTRACK_LASOT_SPLIT_CHECK=0): test sequences may have been trained on")
    if manifest.get("max_frames"):
        flags.append(f"every sequence was tracked and scored on its **first {manifest['max_frames']} frames** only")
    return flags


def _weights_rows(weights: dict) -> list[str]:
    rows = ["| weights | setting | file or directory | SHA-256 |", "|---|---|---|---|"]
    for label, key in (("visual encoder (pretrained=)", "pretrained"), ("language encoder (text_encoder=)", "text_encoder")):
        w = weights.get(key, {})
        where = w.get("path") or w.get("note", "")
        if w.get("files"):
            where = f"`{w['name']}` ({w['files']} files, hash over all): {where}"
        rows.append(f"| {label} | `{w.get('setting') or '(not set)'}` | {where} | `{w.get('sha256') or '-'}` |")
    return rows


def _coverage_rows(cover: pd.DataFrame) -> list[str]:
    fmt = lambda v: "-" if v is None or pd.isna(v) else f"{int(v):,}"
    rows = ["| benchmark | sequences scored | official | frames scored | official |", "|---|---|---|---|---|"]
    return rows + [f"| {r['benchmark']} (`{r['loader']}`) | {fmt(r['sequences'])} | {fmt(r['official_sequences'])} | "
                   f"{fmt(r['frames'])} | {fmt(r['official_frames'])} |" for r in cover.to_dict("records")]


def base_tracker(work, manifest: dict) -> dict | None:
    """The base tracker of a chain (<work>/train/base/seed0/model.pth; None when the chain has no base stage
    or the file is not there): its path, SHA-256, training steps (the checkpoint's global_step), its config's
    differences from the profile's `full` config as the chain fine-tunes it (its overrides, pretrained = the
    base tracker) {key: (full, base)}, and every trained checkpoint of the chain's seeds checked against it: a
    fine-tuned variant (the chain's own and those of an arm fine-tuned from it, dmtrack.layout.ARMS) must record
    the base tracker's SHA-256 as the file it started from (`pretrained_sha256`), one of the from-scratch arm
    none. `stale` names those that do not."""
    from dmtrack.model.weights import load_checkpoint  # torch, only when there is a checkpoint to read

    path, overrides = model_path(work, BASE, 0), manifest.get("overrides") or {}
    # the chain has a base stage when its profile asks for one and no pretrained= was given (chain.plan.base_stage)
    if not (manifest.get("settings") or {}).get("base_stage") or "pretrained" in overrides or not path.is_file():
        return None
    ckpt, sha = load_checkpoint(path), file_sha256(path)
    saved = config_from_dict(ckpt["config"]).to_dict()
    full = load_config(manifest["profile"], "full", **{**overrides, "pretrained": str(path)}).to_dict()
    out = dict(path=str(path), sha256=sha, steps=ckpt.get("global_step"), fine_tuned=[], scratch=[], stale=[], missing=[],
               changes={k: (v, saved.get(k)) for k, v in full.items() if k != "variant" and saved.get(k) != v})
    for arm, arm_overrides in ARMS.items():
        want, key = (None, "scratch") if arm_overrides.get("pretrained") == SCRATCH else (sha, "fine_tuned")
        for v in VARIANTS:
            for seed in manifest.get("seeds") or []:
                name, p = f"{model_name(v, arm)} seed {seed}", model_path(work, v, seed, arm)
                if not p.is_file():
                    out["missing"] += [] if arm else [name]  # an arm trains only some variants, some seeds
                    continue
                got = load_checkpoint(p).get("pretrained_sha256")
                out[key if got == want else "stale"].append(
                    name if got == want else f"{name} started from " + (f"`{got[:12]}...`" if got else "random initialisation"))
    return out


def base_tracker_flags(base: dict | None) -> list[str]:
    """The header's loud line when a checkpoint was not trained from this base tracker (a stale mix-up)."""
    if not base or not base["stale"]:
        return []
    return [f"**STALE CHECKPOINTS: {len(base['stale'])} trained model(s) did not start from this chain's base tracker** "
            f"(SHA-256 `{base['sha256']}`): " + "; ".join(base["stale"]) + ". Their results mix two protocols: "
            "retrain them (`dmtrack report --force`, or delete their train/ folders) before reading any table"]


def _base_tracker_lines(base: dict) -> list[str]:
    lines = [f"**The base tracker** the chain fine-tunes every variant from: `{base['path']}`, SHA-256 `{base['sha256']}`, "
             f"{base['steps']} training steps (config variant `{BASE}`: the ViT with candidate elimination and the centre "
             "head, from random initialisation). Its config against the profile's `full` config as fine-tuned from it:", ""]
    lines += ["| key | full (fine-tuned) | base tracker |", "|---|---|---|"]
    lines += [f"| `{k}` | `{json.dumps(a, default=str)}` | `{json.dumps(b, default=str)}` |" for k, (a, b) in base["changes"].items()]
    checked = (f"{len(base['fine_tuned'])} fine-tuned checkpoint(s) record its SHA-256 as the file they started from"
               + (f", the from-scratch arm's {len(base['scratch'])} start from random initialisation" if base["scratch"] else ""))
    if base["stale"]:
        checked = f"**{len(base['stale'])} checkpoint(s) did not start from it** ({'; '.join(base['stale'])}); " + checked
    missing = f" (not found: {', '.join(base['missing'])})" if base["missing"] else ""
    return lines + ["", ("Every variant was fine-tuned from it: " if not base["stale"] and not base["missing"] else "")
                    + checked + missing + "."]


READINGS = {"paper": "the paper's text (`docs/method.md`)",
            "authors": "the first author's released code (`docs/method.md`, \"reading = authors\")"}


def reading_text(manifest: dict) -> str:
    """The reading the chain's trainings follow (its overrides' `reading`; the paper's when not given) and the
    arms trained beside them (the arms of its training steps, dmtrack.layout.ARMS) with their overrides."""
    reading = (manifest.get("overrides") or {}).get("reading", "paper")
    arms = sorted({step_arm(st["step"]) for st in manifest.get("steps", []) if st["step"].startswith("10_train/")} - {""})
    beside = "; ".join(f"`{a}` (" + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in ARMS[a].items()) + ")" for a in arms)
    return f"`{reading}`: the chain's trainings follow {READINGS[reading]}" + (f"; its arms beside them: {beside}" if arms else "")


def provenance_markdown(manifest: dict, cover: pd.DataFrame | None = None, notes=(), work=None) -> str:
    """The report's header: what differs from the paper's setup (flagged first), then profile, data,
    hardware, packages, seeds, git commit, the config overrides, the weights, the base tracker (given the
    chain's `work` folder: `base_tracker`) and what was scored."""
    hw = manifest.get("hardware", {})
    gpus = ", ".join(hw.get("gpus", [])) or "none"
    pk = ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())
    seeds = manifest.get("seeds", [])
    lines = [f"# DMTrack reproduction report: profile `{manifest['profile']}`", ""]
    if manifest.get("synthetic"):
        lines += [f"> **All results in this report are on {STAND_IN.upper()}S of the benchmarks** (procedurally rendered "
                  "videos written in the real layouts), with models at the profile's small sizes. They test the "
                  "paper's claims on a stage built for them; they are **not** the paper's numbers reproduced, and "
                  "must not be compared with them in absolute terms.", ""]
    base = base_tracker(work, manifest) if work is not None else None
    flags = base_tracker_flags(base) + run_flags(manifest, cover) + list(notes)
    if flags:
        what = f"the profile `{manifest['profile']}`" if manifest.get("synthetic") else "the paper's setup"
        lines += [f"> **This run differs from {what}**; read every table below with this in mind:", ">"]
        lines += [f"> - {f}" for f in flags] + [""]
    roots = ", ".join(f"`{k}={v}`" for k, v in (manifest.get("data_env") or {}).items())
    lines += ["| | |", "|---|---|",
              f"| profile | `{manifest['profile']}` |",
              f"| data | {manifest.get('data', '')} |"] + ([f"| data roots | {roots} |"] if roots and not manifest.get("synthetic") else []) + [
              f"| reading | {reading_text(manifest)} |",
              f"| training seeds | {len(seeds)} per variant (seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}) |",
              f"| hardware | {hw.get('cpu', '?')}, {hw.get('cores', '?')} cores, {hw.get('ram_gib', '?')} GiB RAM, GPUs: {gpus} |",
              f"| platform | {hw.get('platform', '?')}, Python {hw.get('python', '?')} |",
              f"| packages | {pk} |",
              f"| install | {install_label(manifest.get('install', {}))} |",
              f"| git commit | `{git_label(manifest.get('git', {}))}` |",
              f"| started | {manifest.get('started', '?')} |", ""]
    changes = manifest.get("config_changes") or {}
    lines += [f"**Config overrides** (`--set`) of the profile `{manifest['profile']}`, in every training of the chain: "
              + ("none." if not changes else ""), ""]
    if changes:
        lines += ["| key | profile | this run |", "|---|---|---|"]
        lines += [f"| `{k}` | `{json.dumps(a, default=str)}` | `{json.dumps(b, default=str)}` |" for k, (a, b) in changes.items()] + [""]
    if manifest.get("weights"):
        lines += _weights_rows(manifest["weights"]) + [""]
    if base:
        lines += _base_tracker_lines(base) + [""]
    if cover is not None:
        lines += ["**What was scored** (the full model at k = 1, fewest over its seeds):", ""] + _coverage_rows(cover) + [""]
    steps = manifest.get("steps", [])
    if steps:
        total = sum(s["seconds"] for s in steps)
        lines += [f"Steps before this report: {len(steps)}, {total / 60:.1f} min of notebook time "
                  f"({sum(s['status'] == 'skipped' for s in steps)} reused from an earlier run for the same parameters). "
                  "The durations of every step are listed at the end."]
    return "\n".join(lines)
