"""The report's tables, built from the scored runs under <work>/results (dmtrack.layout).

Every number here is computed from raw results by dmtrack.eval; the paper's and other
trackers' numbers come from paper.py and are always labelled as published, never as ours.
Cells read "mean [low, high]": the mean over training seeds of the protocol's overall score,
and the 95% bootstrap CI that resamples seeds and sequences (verdicts.seed_sequence_ci).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dmtrack.data import STAND_IN
from dmtrack.data.benchmarks import drift_benchmark, synthetic_name
from dmtrack.layout import results_root, score_files, scored_runs, tracker_name
from dmtrack.provenance import git_label
from dmtrack.report import paper
from dmtrack.report.verdicts import judge, seed_sequence_ci

METRICS = ("auc", "precision", "norm_precision")
LABELS = {"auc": "AUC", "precision": "PRE", "norm_precision": "P_norm"}


def _times_fps(folder: Path) -> float:
    """Frames per second over the tracked frames (frame 1, the initialisation, excluded)."""
    total, frames = 0.0, 0
    for p in folder.glob("*_time.txt"):
        t = np.loadtxt(p, ndmin=1)
        total, frames = total + float(t[1:].sum()), frames + max(len(t) - 1, 0)
    return frames / total if total > 0 else float("nan")


def load_runs(results_root) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, per_sequence) of every scored run below results_root.

    runs: one row per (benchmark, tracker, k, seed, protocol) with the overall metrics and fps;
    per_sequence: the same keys plus `sequence`, one row per sequence."""
    runs, per_seq = [], []
    for folder, meta in scored_runs(results_root):
        key = dict(benchmark=meta["benchmark"], tracker=folder.parent.name, variant=meta.get("variant"),
                   k=meta.get("samples"), seed=meta.get("seed"))
        fps = _times_fps(folder)
        for sp in score_files(folder):
            sc = json.loads(sp.read_text())
            row = {**key, "protocol": sc["protocol"], "n_sequences": sc["n_sequences"], "fps": fps}
            runs.append({**row, **{m: sc["overall"][m] for m in ("auc", "precision", "norm_precision", "op50", "op75")}})
            for name, vals in sc["per_sequence"].items():
                per_seq.append({**key, "protocol": sc["protocol"], "sequence": name, **vals})
    cols = ["benchmark", "tracker", "variant", "k", "seed", "protocol"]
    runs = pd.DataFrame(runs, columns=cols + ["n_sequences", "fps", "auc", "precision", "norm_precision", "op50", "op75"])
    per_seq = pd.DataFrame(per_seq, columns=cols + ["sequence", "auc", "precision", "norm_precision", "op50", "op75"])
    return runs, per_seq


@dataclass
class Results:
    """The scored runs of one chain, with the selections the tables need."""
    runs: pd.DataFrame
    per_sequence: pd.DataFrame
    synthetic: bool

    @classmethod
    def load(cls, results_root, synthetic: bool) -> "Results":
        return cls(*load_runs(results_root), synthetic)

    def bench(self, b: str) -> str:
        """Loader name of the paper's benchmark `b` in this chain (synthetic_<b> on synthetic data)."""
        return synthetic_name(b, self.synthetic)

    def _sel(self, df, tracker, benchmark, k, protocol, seeds=None):
        m = (df.tracker == tracker) & (df.benchmark == benchmark) & (df.protocol == protocol)
        if k is not None:
            m &= df.k == k
        if seeds is not None:
            m &= df.seed.isin(list(seeds))
        return df[m]

    def matrix(self, tracker: str, benchmark: str, k, protocol: str, metric: str = "auc", seeds=None) -> pd.DataFrame:
        """Per-sequence `metric`: rows = seeds, columns = sequences (empty if never run)."""
        d = self._sel(self.per_sequence, tracker, benchmark, k, protocol, seeds)
        return d.pivot_table(index="seed", columns="sequence", values=metric) if len(d) else pd.DataFrame()

    def summary(self, tracker: str, benchmark: str, k, protocol: str, seeds=None) -> dict | None:
        """Mean over seeds of each overall metric, the AUC CI, fps and the number of seeds; None if not run."""
        r = self._sel(self.runs, tracker, benchmark, k, protocol, seeds)
        if r.empty:
            return None
        out = {m: float(r[m].mean()) for m in METRICS}
        out.update(fps=float(r.fps.mean()), seeds=int(r.seed.nunique()),
                   auc_ci=seed_sequence_ci(self.matrix(tracker, benchmark, k, protocol, seeds=seeds).dropna(axis=1)))
        return out


def fmt_ci(s: dict | None, metric: str = "auc") -> str:
    if s is None:
        return "not run"
    if metric == "auc":
        ci = s["auc_ci"]
        return f"{s['auc']:.1f} [{ci.low:.1f}, {ci.high:.1f}]"
    return f"{s[metric]:.1f}"


def caption(title: str, protocol: str | None, synthetic: bool | None) -> str:
    parts = [title]
    if protocol:
        parts.append(f"protocol: {protocol}")
    if synthetic is True:
        parts.append(f"data: {STAND_IN.upper()}S of the benchmarks (not the real datasets)")
    elif synthetic is False:
        parts.append("data: the real benchmarks")
    return " | ".join(parts)


def hard_sequences(work, benchmark: str, n: int, variant: str = "full", k: int = 1, protocol: str = "pytracking") -> list[str]:
    """The n sequences of `benchmark` where `variant` (mean over its evaluated seeds) scores the lowest AUC."""
    _, per = load_runs(results_root(work))
    d = per[(per.benchmark == benchmark) & (per.variant == variant) & (per.k == k) & (per.protocol == protocol)]
    if d.empty:
        raise FileNotFoundError(f"{work}/results/{benchmark}: no scored run of {variant} k={k} to pick hard sequences from")
    return list(d.groupby("sequence").auc.mean().sort_values().index[:n])


# --- Table 1 ---------------------------------------------------------------------------------------
def table1(res: Results, protocol: str) -> pd.DataFrame:
    """Our full model (k=1, as the paper's Table 1) and the trivial trackers on the four benchmarks."""
    rows = {}
    trackers = [(f"DMTrack full, k={paper.TABLE1_K} (ours)", tracker_name("full"), paper.TABLE1_K),
                ("static (first box held still)", "static", None), ("oracle-jitter (gt + noise)", "oracle-jitter", None)]
    for label, tracker, k in trackers:
        row, seeds = {}, set()
        for b in paper.BENCHMARKS:
            s = res.summary(tracker, res.bench(b), k, protocol)
            seeds |= {s["seeds"]} if s else set()
            for m in METRICS:
                row[(paper.BENCHMARK_NAMES[b], LABELS[m])] = fmt_ci(s, m)
        row[("", "seeds")] = "/".join(map(str, sorted(seeds))) or "-"
        rows[label] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def published_table(real: bool) -> pd.DataFrame:
    """The paper's DMTrack row and other trackers' published numbers, with their sources."""
    rows = {"DMTrack (paper, Table 1 text, k=1)": {**_pub_cells(paper.TABLE1_DMTRACK), ("", "source"): "the paper, Sec. 4.2"}}
    for p in paper.PUBLISHED:
        cite = ", ".join(f"[{k}]" for k in p.source.split("+"))
        rows[f"{p.tracker} ({p.venue})"] = {**_pub_cells(p.scores), ("", "source"): cite + (f"; {p.note}" if p.note else "")}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def sources_markdown() -> str:
    """The full citations behind the [tags] of published_table."""
    return "Sources: " + "; ".join(f"[{k}] {v}" for k, v in paper.SOURCES.items()) + f"; the paper: {paper.PAPER}."


def _pub_cells(scores: dict) -> dict:
    out = {}
    for b in paper.BENCHMARKS:
        s = scores.get(b)
        for m in METRICS:
            v = None if s is None else s.get(m)
            out[(paper.BENCHMARK_NAMES[b], LABELS[m])] = "–" if v is None else f"{v:.1f}"
    return out


# --- Table 2 ---------------------------------------------------------------------------------------
def table2(res: Results, protocol: str) -> pd.DataFrame:
    """The nine rows of Table 2 as reproduced next to the paper's, with the differences to row 9."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    ours = {r.no: res.summary(tracker_name(r.variant), bench, r.k, protocol) for r in paper.TABLE2}
    ref_p, ref_o = paper.table2_row(9).scores, ours[9]
    rows = []
    for r in paper.TABLE2:
        o = ours[r.no]
        row = {("row", "#"): r.no, ("row", "variant"): r.variant, ("row", "k"): r.k if r.variant != "no_diffusion" else "-"}
        for m in METRICS:
            row[("paper (published)", LABELS[m])] = f"{r.scores.get(m):.1f}"
        for m in METRICS:
            row[("ours", LABELS[m])] = fmt_ci(o, m)
        row[("AUC minus row 9", "paper")] = f"{r.scores.auc - ref_p.auc:+.1f}"
        row[("AUC minus row 9", "ours")] = "not run" if o is None or ref_o is None else f"{o['auc'] - ref_o['auc']:+.1f}"
        if not res.synthetic:  # on the real benchmark the absolute numbers are comparable
            row[("ours minus paper", "AUC")] = "not run" if o is None else f"{o['auc'] - r.scores.auc:+.1f}"
        rows.append(row)
    df = pd.DataFrame(rows).set_index(("row", "#"))
    df.index.name = "row"
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


# --- verdicts --------------------------------------------------------------------------------------
def verdicts(res: Results, protocol: str = "pytracking", metric: str = "auc") -> pd.DataFrame:
    """One row per Section 4.3 claim: the paper's numbers, ours with CIs, and the verdict."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    rows = []
    for c in paper.CLAIMS:
        a, b = paper.table2_row(c.better), paper.table2_row(c.worse)
        ma = res.matrix(tracker_name(a.variant), bench, a.k, protocol, metric)
        mb = res.matrix(tracker_name(b.variant), bench, b.k, protocol, metric)
        row = {"claim": c.title, "rows": f"#{c.better} vs #{c.worse}",
               "paper: stated": "similar" if c.stated is None else f"{c.stated[0]:+.1f}",
               "paper: rows": f"{c.row_difference()[0]:+.1f}"}
        if ma.empty or mb.empty:
            row.update({"ours: difference [CI]": "not run", "ours: better row": "", "ours: worse row": "",
                        "seeds": "", "sequences": "", "verdict": "not run", "why": "a row was not evaluated"})
        else:
            v = judge(c, ma, mb, metric)
            row.update({"ours: difference [CI]": f"{v.diff.estimate:+.1f} [{v.diff.low:+.1f}, {v.diff.high:+.1f}]",
                        "ours: better row": f"{v.better.estimate:.1f} [{v.better.low:.1f}, {v.better.high:.1f}]",
                        "ours: worse row": f"{v.worse.estimate:.1f} [{v.worse.low:.1f}, {v.worse.high:.1f}]",
                        "seeds": f"{v.seeds[0]} / {v.seeds[1]}", "sequences": v.sequences,
                        "verdict": v.verdict, "why": v.reason})
        rows.append(row)
    return pd.DataFrame(rows).set_index("claim")


# --- sweeps ----------------------------------------------------------------------------------------
def k_sweep(res: Results, ks, protocol: str = "pytracking", variant: str = "full", seeds=None) -> pd.DataFrame:
    """Accuracy and speed of `variant` on the Table 2 benchmark as k grows (the same seeds at every k)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    rows = []
    for k in ks:
        s = res.summary(tracker_name(variant), bench, k, protocol, seeds)
        if s is None:
            continue
        ci = s["auc_ci"]
        rows.append(dict(k=k, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, precision=s["precision"],
                         norm_precision=s["norm_precision"], fps=s["fps"], seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["k", "auc", "auc_low", "auc_high", "precision", "norm_precision", "fps", "seeds"])


def drift_sweep(res: Results, levels, variants, k: int, protocol: str = "pytracking", seeds=None) -> pd.DataFrame:
    """AUC against the language-drift level of the synthetic sweep, per variant (and the static tracker)."""
    rows = []
    for level, bench in zip(levels, map(drift_benchmark, levels)):
        for v in list(variants) + ["static"]:
            s = (res.summary("static", bench, None, protocol) if v == "static"
                 else res.summary(tracker_name(v), bench, k, protocol, seeds))
            if s is None:
                continue
            ci = s["auc_ci"]
            rows.append(dict(level=float(level), variant=v, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["level", "variant", "auc", "auc_low", "auc_high", "seeds"])


def styled(df: pd.DataFrame, title: str, protocol: str | None, synthetic: bool | None):
    """A pandas Styler with the caption every table must carry (protocol, and the data it ran on)."""
    return (df.style.set_caption(caption(title, protocol, synthetic))
            .set_table_styles([{"selector": "caption", "props": "caption-side: top; font-weight: bold; text-align: left;"}]))


def others_table1(res: Results, others, protocol: str) -> pd.DataFrame:
    """Other trackers' raw results, re-scored by our evaluator (one row per tracker)."""
    rows = {}
    for name in others:
        row = {}
        for b in paper.BENCHMARKS:
            s = res.summary(name, res.bench(b), None, protocol)
            for m in METRICS:
                row[(paper.BENCHMARK_NAMES[b], LABELS[m])] = "–" if s is None else f"{s[m]:.1f}"
        rows[f"{name} (raw results re-scored)"] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    if len(df):
        df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def provenance_markdown(manifest: dict) -> str:
    """The report's header: profile, data, hardware, packages, seeds, git commit, steps so far."""
    hw = manifest.get("hardware", {})
    gpus = ", ".join(hw.get("gpus", [])) or "none"
    pk = ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())
    lines = [f"# DMTrack reproduction report: profile `{manifest['profile']}`", ""]
    if manifest.get("synthetic"):
        lines += [f"> **All results in this report are on {STAND_IN.upper()}S of the benchmarks** (procedurally rendered "
                  "videos written in the real layouts), with models at the profile's small sizes. They test the "
                  "paper's claims on a stage built for them; they are **not** the paper's numbers reproduced, and "
                  "must not be compared with them in absolute terms.", ""]
    lines += ["| | |", "|---|---|",
              f"| profile | `{manifest['profile']}` |",
              f"| data | {manifest.get('data', '')} |",
              f"| training seeds per variant | {', '.join(map(str, manifest.get('seeds', [])))} |",
              f"| hardware | {hw.get('cpu', '?')}, {hw.get('cores', '?')} cores, {hw.get('ram_gib', '?')} GiB RAM, GPUs: {gpus} |",
              f"| platform | {hw.get('platform', '?')}, Python {hw.get('python', '?')} |",
              f"| packages | {pk} |",
              f"| git commit | `{git_label(manifest.get('git', {}))}` |",
              f"| started | {manifest.get('started', '?')} |", ""]
    steps = manifest.get("steps", [])
    if steps:
        total = sum(s["seconds"] for s in steps)
        lines += [f"Steps before this report: {len(steps)}, {total / 60:.1f} min of notebook time "
                  f"({sum(s['status'] == 'skipped' for s in steps)} reused from an earlier run for the same parameters). "
                  "The durations of every step are listed at the end."]
    return "\n".join(lines)
