"""The report's tables: Tables 1 and 2 next to the paper's, the published numbers, other trackers'
results re-scored, the sample spread, and the caption every table carries.

Every number here is computed from raw results by dmtrack.eval; the paper's and other
trackers' numbers come from dmtrack.paper and are always labelled as published, never as ours.
Cells read "mean [low, high]": the mean over training seeds of the protocol's overall score,
and the 95% bootstrap CI that resamples seeds and sequences (dmtrack.report.results.Results.summary).
"""
from __future__ import annotations

import pandas as pd

from dmtrack import paper
from dmtrack.data import STAND_IN
from dmtrack.layout import tracker_name
from dmtrack.paper import METRICS
from dmtrack.report.results import Results

LABELS = {"auc": "AUC", "precision": "PRE", "norm_precision": "P_norm"}


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


def styled(df: pd.DataFrame, title: str, protocol: str | None, synthetic: bool | None, precision: int = 1):
    """A pandas Styler with the caption every table must carry (protocol, and the data it ran on);
    floats shown with `precision` decimals (the Styler's default is 6)."""
    return (df.style.set_caption(caption(title, protocol, synthetic)).format(precision=precision)
            .set_table_styles([{"selector": "caption", "props": "caption-side: top; font-weight: bold; text-align: left;"}]))




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
def reading(variant: str, average: str) -> str:
    """no_diffusion samples nothing: its run stands for both readings."""
    return "final" if variant == "no_diffusion" else average


def table2(res: Results, protocol: str, readings=("final", "chain")) -> pd.DataFrame:
    """The nine rows of Table 2 as reproduced next to the paper's, with the differences to row 9, under
    each reading of "k samplings" (`final`, the primary one, gets every metric; the others AUC)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    ours = {(r.no, a): res.summary(tracker_name(r.variant), bench, r.k, protocol, average=reading(r.variant, a))
            for r in paper.TABLE2 for a in readings}
    ref_p = paper.table2_row(9).scores
    rows = []
    for r in paper.TABLE2:
        row = {("row", "#"): r.no, ("row", "variant"): r.variant, ("row", "k"): r.k if r.variant != "no_diffusion" else "-"}
        for m in METRICS:
            row[("paper (published)", LABELS[m])] = f"{r.scores.get(m):.1f}"
        for i, a in enumerate(readings):
            head = f"ours, {a} reading" + (" (primary)" if a == "final" else "")
            for m in METRICS if i == 0 else ("auc",):
                row[(head, LABELS[m])] = fmt_ci(ours[(r.no, a)], m)
        row[("AUC minus row 9", "paper")] = f"{r.scores.auc - ref_p.auc:+.1f}"
        for a in readings:
            o, ref_o = ours[(r.no, a)], ours[(9, a)]
            row[("AUC minus row 9", f"ours, {a}")] = "not run" if o is None or ref_o is None else f"{o['auc'] - ref_o['auc']:+.1f}"
        if not res.synthetic:  # on the real benchmark the absolute numbers are comparable
            o = ours[(r.no, readings[0])]
            row[("ours minus paper", "AUC")] = "not run" if o is None else f"{o['auc'] - r.scores.auc:+.1f}"
        rows.append(row)
    df = pd.DataFrame(rows).set_index(("row", "#"))
    df.index.name = "row"
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def spread_table(res: Results, protocol: str = "pytracking", readings=("final", "chain"), sampler: str = "",
                 other_samplers: dict | None = None) -> pd.DataFrame:
    """The diversity of the k averaged masks per trained variant at Table 2's k (> 1) under each reading:
    the median over sequences and seeds of each sequence's median, over frames, of the largest
    per-pixel range of the k mask probabilities (tracker.sample_spread), with AUC next to it. The runs are
    the config's sampler's (`sampler`: its name in the column heads); other_samplers {name: eta override}
    adds the final reading under each other sampler (the k sweep runs the full model under each)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    groups = [(f"{a} reading" + (f", {sampler}" if sampler else ""), a, None) for a in readings]
    groups += [(f"final reading, {name}", "final", eta) for name, eta in (other_samplers or {}).items()]
    rows = []
    for r in paper.TABLE2:
        if r.k < 2:
            continue
        row = {"variant": r.variant, "k": r.k}
        for head, a, eta in groups:
            s = res.summary(tracker_name(r.variant), bench, r.k, protocol, average=a, eta=eta)
            row[(head, "spread")] = "not run" if s is None else f"{s['spread']:.3f}"
            row[(head, "AUC")] = fmt_ci(s)
        rows.append(row)
    df = pd.DataFrame(rows).set_index(["variant", "k"])
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


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


