"""The report's tables, built from the scored runs under <work>/results (dmtrack.layout).

Every number here is computed from raw results by dmtrack.eval; the paper's and other
trackers' numbers come from paper.py and are always labelled as published, never as ours.
Cells read "mean [low, high]": the mean over training seeds of the protocol's overall score,
and the 95% bootstrap CI that resamples seeds and sequences (verdicts.seed_sequence_ci). A run
of a trained model is identified by (variant, k, reading, steps): reading = final | chain (the
two readings of "k samplings", config key test_average; final is the primary one), steps = an
override of the DDIM steps per chain (None = the config's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dmtrack.data import STAND_IN
from dmtrack.data.benchmarks import OFFICIAL_SIZE, drift_benchmark, synthetic_name
from dmtrack.data.sentences import SENTENCES
from dmtrack.eval.results import find_result_files
from dmtrack.layout import results_root, score_files, scored_runs, scores_path, spread_dir, tracker_name
from dmtrack.provenance import git_label, install_label
from dmtrack.report import paper
from dmtrack.report import verdicts as vd
from dmtrack.report.verdicts import HELD_BACK, Gate, full_beats_static, judge, seed_sequence_ci

METRICS = ("auc", "precision", "norm_precision")
LABELS = {"auc": "AUC", "precision": "PRE", "norm_precision": "P_norm"}


def _times_fps(folder: Path) -> float:
    """Frames per second over the tracked frames (frame 1, the initialisation, excluded)."""
    total, frames = 0.0, 0
    for p in folder.glob("*_time.txt"):
        t = np.loadtxt(p, ndmin=1)
        total, frames = total + float(t[1:].sum()), frames + max(len(t) - 1, 0)
    return frames / total if total > 0 else float("nan")


def _spreads(folder: Path) -> dict[str, float]:
    """{sequence: median over its tracked frames of the sample spread} (dmtrack.layout.spread_path)."""
    return {p.stem: float(np.median(np.loadtxt(p, ndmin=1))) for p in sorted(spread_dir(folder).glob("*.csv"))
            if p.stat().st_size}


def load_runs(results_root) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, per_sequence) of every scored run below results_root.

    runs: one row per (benchmark, tracker, k, average, steps, sentence, seed, protocol) with the overall metrics,
    fps, the DDIM steps each chain ran and the sample spread (median over sequences of each
    sequence's median over frames; NaN without samples); per_sequence: the same keys plus
    `sequence`, one row per sequence, with its spread."""
    runs, per_seq = [], []
    for folder, meta in scored_runs(results_root):
        key = dict(benchmark=meta["benchmark"], tracker=folder.parent.name, variant=meta.get("variant"),
                   k=meta.get("samples"), average=meta.get("average", "final"), steps=meta.get("steps"),
                   sentence=meta.get("sentence", "true"), seed=meta.get("seed"))
        fps, spread, chain_steps = _times_fps(folder), _spreads(folder), meta.get("sampling_steps")
        overall_spread = float(np.median(list(spread.values()))) if spread else float("nan")
        for sp in score_files(folder):
            sc = json.loads(sp.read_text())
            row = {**key, "protocol": sc["protocol"], "n_sequences": sc["n_sequences"], "fps": fps,
                   "sampling_steps": chain_steps, "spread": overall_spread}
            runs.append({**row, **{m: sc["overall"][m] for m in ("auc", "precision", "norm_precision", "op50", "op75")}})
            for name, vals in sc["per_sequence"].items():
                per_seq.append({**key, "protocol": sc["protocol"], "sequence": name, **vals,
                                "spread": spread.get(name, float("nan"))})
    cols = ["benchmark", "tracker", "variant", "k", "average", "steps", "sentence", "seed", "protocol"]
    runs = pd.DataFrame(runs, columns=cols + ["n_sequences", "fps", "sampling_steps", "spread", "auc", "precision",
                                              "norm_precision", "op50", "op75"])
    per_seq = pd.DataFrame(per_seq, columns=cols + ["sequence", "auc", "precision", "norm_precision", "op50", "op75", "spread"])
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

    def _sel(self, df, tracker, benchmark, k, protocol, seeds=None, average="final", steps=None, sentence="true"):
        m = (df.tracker == tracker) & (df.benchmark == benchmark) & (df.protocol == protocol) & (df.sentence == sentence)
        if k is not None:  # trained models: the reading and the steps override (None = the config's) too
            m &= (df.k == k) & (df.average == average) & (df.steps.isna() if steps is None else df.steps == steps)
        if seeds is not None:
            m &= df.seed.isin(list(seeds))
        return df[m]

    def matrix(self, tracker: str, benchmark: str, k, protocol: str, metric: str = "auc", seeds=None,
               average: str = "final", steps=None, sentence: str = "true") -> pd.DataFrame:
        """Per-sequence `metric`: rows = seeds, columns = sequences (empty if never run)."""
        d = self._sel(self.per_sequence, tracker, benchmark, k, protocol, seeds, average, steps, sentence)
        return d.pivot_table(index="seed", columns="sequence", values=metric) if len(d) else pd.DataFrame()

    def summary(self, tracker: str, benchmark: str, k, protocol: str, seeds=None, average: str = "final",
                steps=None, sentence: str = "true") -> dict | None:
        """Mean over seeds of each overall metric, the AUC CI, fps, the sample spread (median over
        seeds) and the number of seeds; None if not run."""
        r = self._sel(self.runs, tracker, benchmark, k, protocol, seeds, average, steps, sentence)
        if r.empty:
            return None
        out = {m: float(r[m].mean()) for m in METRICS}
        auc = self.matrix(tracker, benchmark, k, protocol, seeds=seeds, average=average, steps=steps, sentence=sentence)
        out.update(fps=float(r.fps.mean()), seeds=int(r.seed.nunique()), spread=float(r.spread.median()),
                   sampling_steps=r.sampling_steps.iloc[0], auc_ci=seed_sequence_ci(auc.dropna(axis=1)))
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


def fig7_sequences(work, benchmark: str, names: list, n: int, variant: str = "full", k: int = 1,
                   protocol: str = "pytracking") -> tuple[list[str], str]:
    """Fig. 7's n sequences of `benchmark` and why them: where `variant` (mean over its evaluated seeds)
    scores the lowest AUC; before it is scored (30_visualize right after training) the first n of
    `names`, the benchmark's sequences in order."""
    _, per = load_runs(results_root(work))
    d = per[(per.benchmark == benchmark) & (per.variant == variant) & (per.k == k) & (per.protocol == protocol)
            & (per.average == "final") & per.steps.isna()]
    if d.empty:
        return list(names[:n]), f"the first {n} sequences ({variant} k={k} is not scored on {benchmark} yet)"
    return list(d.groupby("sequence").auc.mean().sort_values().index[:n]), f"the {n} hardest for {variant} (lowest AUC, k={k})"


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
def _reading(variant: str, average: str) -> str:
    """no_diffusion samples nothing: its run stands for both readings."""
    return "final" if variant == "no_diffusion" else average


def table2(res: Results, protocol: str, readings=("final", "chain")) -> pd.DataFrame:
    """The nine rows of Table 2 as reproduced next to the paper's, with the differences to row 9, under
    each reading of "k samplings" (`final`, the primary one, gets every metric; the others AUC)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    ours = {(r.no, a): res.summary(tracker_name(r.variant), bench, r.k, protocol, average=_reading(r.variant, a))
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


# --- verdicts --------------------------------------------------------------------------------------
def _claim_matrices(res: Results, claim, protocol: str, metric: str, average: str):
    bench = res.bench(paper.TABLE2_BENCHMARK)
    a, b = paper.table2_row(claim.better), paper.table2_row(claim.worse)
    return (res.matrix(tracker_name(a.variant), bench, a.k, protocol, metric, average=_reading(a.variant, average)),
            res.matrix(tracker_name(b.variant), bench, b.k, protocol, metric, average=_reading(b.variant, average)))


def paper_difference(claim) -> float:
    """The AUC difference the paper states for a claim (its two rows' difference for "similar")."""
    return claim.stated[0] if claim.stated is not None else claim.row_difference()[0]


def judge_claims(res: Results, protocol: str = "pytracking", metric: str = "auc", average: str = "final") -> dict:
    """{claim key: Verdict or None (a row not evaluated)}: the eight claims judged as one family."""
    out = {}
    for c in paper.CLAIMS:
        ma, mb = _claim_matrices(res, c, protocol, metric, average)
        out[c.key] = None if ma.empty or mb.empty else judge(c, ma, mb, family=len(paper.CLAIMS))
    return out


def verdict_gate(res: Results, protocol: str = "pytracking", metric: str = "auc") -> Gate:
    """May verdicts be drawn? Only when the full model of Table 2's reference row (row 9) clearly
    beats the static baseline on the Table 2 benchmark (verdicts.full_beats_static)."""
    bench, ref = res.bench(paper.TABLE2_BENCHMARK), paper.table2_row(9)
    full = res.matrix(tracker_name(ref.variant), bench, ref.k, protocol, metric)
    return full_beats_static(full, res.matrix("static", bench, None, protocol, metric))


def verdicts(res: Results, protocol: str = "pytracking", metric: str = "auc", average: str = "final") -> pd.DataFrame:
    """One row per Section 4.3 claim: the paper's difference, ours with its family-level CI (Bonferroni
    over the eight claims), whether the paper's difference lies inside it, the smallest difference
    the design resolves (the CI's half-width), the rows' own 95% CIs, and the verdict (held back, with
    the reason, when the full model does not clearly beat the static baseline: `verdict_gate`)."""
    level = vd.family_level(len(paper.CLAIMS))
    ci_head = f"ours: difference [{100 * level:.3g}% CI]"
    judged = judge_claims(res, protocol, metric, average)
    gate = verdict_gate(res, protocol, metric)
    rows = []
    for c in paper.CLAIMS:
        v, stated = judged[c.key], paper_difference(c)
        row = {"claim": c.title, "rows": f"#{c.better} vs #{c.worse}",
               "paper: difference": ("similar, rows " if c.kind == "similar" else "") + f"{stated:+.1f}"}
        if v is None:
            row.update({ci_head: "not run", "paper's difference inside our CI": "", "resolvable difference": "",
                        "p": "", "ours: better row": "", "ours: worse row": "", "seeds": "", "sequences": "",
                        "verdict": "not run", "why": "a row was not evaluated"})
        else:
            d = v.diff
            row.update({ci_head: f"{d.estimate:+.1f} [{d.low:+.1f}, {d.high:+.1f}]",
                        "paper's difference inside our CI": "yes" if d.low <= stated <= d.high else "no",
                        "resolvable difference": f"{v.test.half_width:.1f}" if np.isfinite(v.test.half_width) else
                        "none (1 seed)", "p": f"{v.test.p:.2g}",
                        "ours: better row": f"{v.better.estimate:.1f} [{v.better.low:.1f}, {v.better.high:.1f}]",
                        "ours: worse row": f"{v.worse.estimate:.1f} [{v.worse.low:.1f}, {v.worse.high:.1f}]",
                        "seeds": f"{v.seeds[0]} / {v.seeds[1]}", "sequences": v.sequences,
                        "verdict": v.verdict, "why": v.reason})
            if not gate.ok:
                row.update({"verdict": HELD_BACK, "why": gate.reason})
        rows.append(row)
    return pd.DataFrame(rows).set_index("claim")


def seeds_needed(res: Results, protocol: str = "pytracking", average: str = "final") -> pd.DataFrame:
    """Per claim, from the measured variance components (verdicts.variance_components): the seed-to-seed
    and sequence-to-sequence spread, the difference the measured design resolves at the family level,
    and how many training seeds per row would resolve the paper's difference (the CI's half-width below
    it; for "similar", below the margin minus the paper's difference), and detect it with POWER."""
    level = vd.family_level(len(paper.CLAIMS))
    rows = []
    for c in paper.CLAIMS:
        ma, mb = _claim_matrices(res, c, protocol, "auc", average)
        row = {"claim": c.title, "paper: AUC difference": f"{paper_difference(c):+.1f}"}
        if ma.empty or mb.empty or min(len(ma), len(mb)) < vd.MIN_SEEDS:
            rows.append({**row, "seeds now": "" if ma.empty or mb.empty else f"{len(ma)} / {len(mb)}",
                         "why": f"needs both rows with >= {vd.MIN_SEEDS} seeds"})
            continue
        comp = vd.variance_components(ma, mb.reindex(columns=ma.columns))
        effect = vd.SIMILAR_MARGIN - abs(paper_difference(c)) if c.kind == "similar" else paper_difference(c)
        need = lambda power: comp.seeds_needed(effect, level, power)
        show = lambda s: f"> {vd.MAX_SEEDS}" if s is None else str(s)
        rows.append({**row, "seeds now": f"{comp.seeds[0]} / {comp.seeds[1]}",
                     "seed sd (better / worse)": f"{np.sqrt(comp.seed[0]):.1f} / {np.sqrt(comp.seed[1]):.1f}",
                     "residual sd": f"{np.sqrt(np.mean(comp.residual)):.1f}",
                     "sequence x variant sd": f"{np.sqrt(comp.interaction):.1f}",
                     "resolvable now (predicted)": f"{comp.half_width(level):.1f}",
                     "seeds to resolve": show(need(None)), f"seeds for {vd.POWER:.0%} power": show(need(vd.POWER)),
                     "why": ""})
    return pd.DataFrame(rows).set_index("claim")


def extra_seed_minutes(manifest: dict) -> float | None:
    """Wall minutes one more training seed adds to the chain, from the manifest's step durations: its
    six trainings and its share of every evaluation that runs all seeds, at the chain's parallel jobs."""
    seeds, jobs = manifest.get("seeds") or [], max(1, manifest.get("settings", {}).get("jobs", 1))
    steps = [st for st in manifest.get("steps", []) if st.get("seeds")]
    if not seeds or not steps:
        return None
    per_seed = sum(st["seconds"] for st in steps if st["step"].startswith("10_train/")) / len(seeds)
    per_seed += sum(st["seconds"] for st in steps if st["step"].startswith("20_evaluate/")
                    and sorted(st["seeds"]) == sorted(seeds)) / len(seeds)
    return per_seed / jobs / 60


def seed_budget_markdown(needed: pd.DataFrame, manifest: dict, budget_minutes: float | None) -> str:
    """What the seeds-needed table means for this chain: the seeds it ran, the most any claim needs to
    resolve the paper's difference, and how many the chain's time budget affords."""
    seeds = len(manifest.get("seeds") or [])
    counts = needed["seeds to resolve"].dropna() if "seeds to resolve" in needed else pd.Series(dtype=object)
    if not len(counts):
        return "Too few seeds or rows were evaluated to estimate how many seeds the verdicts need."
    finite = {claim: int(x) for claim, x in counts.items() if str(x).isdigit()}
    unresolvable = len(counts) - len(finite)
    worst = max(finite, key=finite.get) if finite else None
    most = (f"more than {vd.MAX_SEEDS} for {unresolvable} claim(s)" if unresolvable else f"{finite[worst]} ({worst})")
    lines = [f"This chain trained **{seeds} seed(s)** per variant. Seeds per row for a family-level CI narrower than the "
             f"paper's difference: at most **{most}**; {sum(n <= seeds for n in finite.values())} of {len(counts)} "
             "claims are resolvable with the seeds run."]
    extra, jobs = extra_seed_minutes(manifest), max(1, manifest.get("settings", {}).get("jobs", 1))
    if extra and budget_minutes:
        now = sum(st["seconds"] for st in manifest.get("steps", [])) / jobs / 60
        afford = seeds + max(0, int((budget_minutes - now) // extra))
        enough = not unresolvable and max(finite.values()) <= seeds
        lines.append(f"One more seed costs about {extra:.1f} min of wall time here (its trainings and its Table 1 and 2 "
                     f"evaluations, {jobs} at a time); the steps so far take about {now:.0f} min, so the "
                     f"{budget_minutes:g}-minute budget affords **{afford} seed(s)**. " +
                     ("The profile's seeds suffice." if enough else
                      "The verdicts need more seeds than the budget affords: a claim that needs more stays "
                      "inconclusive by design here, whatever its true effect."))
    return " ".join(lines)


# --- sweeps ----------------------------------------------------------------------------------------
def k_sweep(res: Results, ks, protocol: str = "pytracking", variant: str = "full", seeds=None) -> pd.DataFrame:
    """Accuracy, speed and sample spread of `variant` on the Table 2 benchmark as k grows (final
    reading, the same seeds at every k)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    rows = []
    for k in ks:
        s = res.summary(tracker_name(variant), bench, k, protocol, seeds)
        if s is None:
            continue
        ci = s["auc_ci"]
        rows.append(dict(k=k, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, precision=s["precision"],
                         norm_precision=s["norm_precision"], fps=s["fps"], spread=s["spread"], seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["k", "auc", "auc_low", "auc_high", "precision", "norm_precision", "fps", "spread", "seeds"])


def steps_sweep(res: Results, steps, protocol: str = "pytracking", variant: str = "full", seeds=None) -> pd.DataFrame:
    """Accuracy and speed of one chain (k = 1) against its DDIM steps. The run of each step count is
    the one whose chains ran that many steps: the config's own, a steps override, or (one step) the
    chain reading at k = 1, which is exactly one denoiser pass."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    r = res.runs[(res.runs.tracker == tracker_name(variant)) & (res.runs.benchmark == bench) & (res.runs.k == 1)
              & (res.runs.sentence == "true")]
    rows = []
    for n in steps:
        runs = r[r.sampling_steps == n][["average", "steps"]].drop_duplicates()
        if runs.empty:
            continue
        average, override = runs.iloc[0]
        s = res.summary(tracker_name(variant), bench, 1, protocol, seeds, average, None if pd.isna(override) else override)
        if s is None:
            continue
        ci = s["auc_ci"]
        rows.append(dict(steps=n, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, precision=s["precision"],
                         norm_precision=s["norm_precision"], fps=s["fps"], seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["steps", "auc", "auc_low", "auc_high", "precision", "norm_precision", "fps", "seeds"])


def spread_table(res: Results, protocol: str = "pytracking", readings=("final", "chain")) -> pd.DataFrame:
    """The diversity of the k averaged masks per trained variant at Table 2's k (> 1) under each reading:
    the median over sequences and seeds of each sequence's median, over frames, of the largest
    per-pixel range of the k mask probabilities (tracker.sample_spread), with AUC next to it."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    rows = []
    for r in paper.TABLE2:
        if r.k < 2:
            continue
        row = {"variant": r.variant, "k": r.k}
        for a in readings:
            s = res.summary(tracker_name(r.variant), bench, r.k, protocol, average=a)
            row[(f"{a} reading", "spread")] = "not run" if s is None else f"{s['spread']:.3f}"
            row[(f"{a} reading", "AUC")] = fmt_ci(s)
        rows.append(row)
    df = pd.DataFrame(rows).set_index(["variant", "k"])
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def drift_sweep(res: Results, levels, variants, k: int, protocol: str = "pytracking", seeds=None) -> pd.DataFrame:
    """AUC against the language-drift level of the synthetic sweep, per variant (and the static tracker),
    and each variant's difference from no_language on the same videos at the same level with its paired
    95% CI (verdicts.paired_ci: the level's own video changes, which move no_language too, cancel out)."""
    rows = []
    for level, bench in zip(levels, map(drift_benchmark, levels)):
        blind = res.matrix(tracker_name(ROBUST_CONTROL), bench, k, protocol, seeds=seeds)
        for v in list(variants) + ["static"]:
            s = (res.summary("static", bench, None, protocol) if v == "static"
                 else res.summary(tracker_name(v), bench, k, protocol, seeds))
            if s is None:
                continue
            ci, vs = s["auc_ci"], None
            if v not in ("static", ROBUST_CONTROL) and not blind.empty:
                m = res.matrix(tracker_name(v), bench, k, protocol, seeds=seeds)
                vs = vd.paired_ci(m, blind[m.columns]) if set(m.columns) == set(blind.columns) else None
            rows.append(dict(level=float(level), variant=v, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, seeds=s["seeds"],
                             vs_no_language=vs.estimate if vs else np.nan, vs_no_language_low=vs.low if vs else np.nan,
                             vs_no_language_high=vs.high if vs else np.nan))
    return pd.DataFrame(rows, columns=["level", "variant", "auc", "auc_low", "auc_high", "seeds", "vs_no_language",
                                       "vs_no_language_low", "vs_no_language_high"])


# --- the language-robustness test --------------------------------------------------------------------------
ROBUST_CONTROL = "no_language"  # ignores the sentence: its drops must be zero within noise
ROBUST_COMPARED = ("not_mask_driven", "no_diffusion")  # the variants full's drop is compared with
OTHER_SENTENCES = ("misleading", "uninformative")


def _sentence_matrices(res: Results, variant: str, bench: str, k: int, protocol: str, seeds) -> dict | None:
    """{sentence: (seeds x sequences) AUC} of one variant, on the seeds and sequences all three share; None if
    a sentence was not run."""
    m = {s: res.matrix(tracker_name(variant), bench, k, protocol, seeds=seeds, sentence=s) for s in SENTENCES}
    if any(x.empty for x in m.values()):
        return None
    rows = sorted(set.intersection(*(set(x.index) for x in m.values())))
    cols = sorted(set.intersection(*(set(x.columns) for x in m.values())))
    return {s: x.loc[rows, cols] for s, x in m.items()}


def _robust_row(variant: str, m: dict | None) -> dict:
    """One variant's AUC under each sentence and its drops (true minus the other) with 95% CIs."""
    row = {"variant": variant}
    if m is None:
        return {**row, "note": "not run under all three sentences"}
    row.update({f"auc_{s}": float(x.to_numpy().mean()) for s, x in m.items()})
    for other in OTHER_SENTENCES:
        t = vd.within_test(m["true"], m[other], vd.LEVEL)
        row.update({f"drop_{other}": t.diff.estimate, f"drop_{other}_low": t.diff.low, f"drop_{other}_high": t.diff.high})
    row.update(seeds=len(m["true"]), sequences=m["true"].shape[1], note="")
    if variant == ROBUST_CONTROL:
        inside = all(row[f"drop_{o}_low"] <= 0 <= row[f"drop_{o}_high"] for o in OTHER_SENTENCES)
        row["note"] = ("control: drops zero within noise" if inside else
                       "control FAILS: a model that ignores the sentence changed with it; the test itself is suspect")
    return row


def _drop_verdict(variant: str, full: dict, other: dict, family: int) -> dict:
    """full's misleading drop against `variant`'s: the claim "full loses less than `variant`" from the
    paired difference of the two drops (verdicts.judge: sequences paired, each variant's seeds on their own)."""
    key = f"full vs {variant}"
    d_full, d_other = full["true"] - full["misleading"], other["true"] - other["misleading"]
    claim = paper.Claim(key, key, f"full's AUC drops less than {variant}'s under a misleading sentence", 0, 0, None)
    v = vd.judge(claim, d_other, d_full, family)
    ci, what = v.diff, f"{variant}'s drop minus full's, {100 * v.test.level:.3g}% CI"
    if min(v.seeds) < vd.MIN_SEEDS:  # the verdict's CI is unbounded: show the one for these trainings instead
        ci = vd.paired_ci(d_other, d_full[d_other.columns], v.test.level)
        what += " over sequences only (these trainings, not the variants)"
    return {"variant": key, "drop_misleading": ci.estimate, "drop_misleading_low": ci.low,
            "drop_misleading_high": ci.high, "seeds": min(v.seeds), "sequences": v.sequences,
            "note": f"{v.verdict} ({v.reason}; {what})"}


def robustness(res: Results, variants, protocol: str = "pytracking", seeds=None, benchmark: str = "lasot",
               k: int = 1) -> pd.DataFrame:
    """The language-robustness test on the same drift-free videos (dmtrack.data.sentences): per variant, AUC
    under the true, a misleading and an uninformative sentence, and the drops true - misleading and true -
    uninformative with their 95% CIs (verdicts.within_test: the same models on the same sequences). Then one
    row per variant of ROBUST_COMPARED: the difference of misleading drops (its drop minus full's) at the
    family level over those comparisons, and the verdict. ROBUST_CONTROL (no_language) is the built-in check."""
    bench = res.bench(benchmark)
    m = {v: _sentence_matrices(res, v, bench, k, protocol, seeds) for v in variants}
    rows = [_robust_row(v, m[v]) for v in variants]
    compared = [v for v in ROBUST_COMPARED if v in m]
    for v in compared:
        if m.get("full") is not None and m[v] is not None:
            rows.append(_drop_verdict(v, m["full"], m[v], len(compared)))
    cols = (["variant"] + [f"auc_{s}" for s in SENTENCES]
            + [f"drop_{o}{e}" for o in OTHER_SENTENCES for e in ("", "_low", "_high")] + ["seeds", "sequences", "note"])
    return pd.DataFrame(rows, columns=cols).set_index("variant")


def styled(df: pd.DataFrame, title: str, protocol: str | None, synthetic: bool | None, precision: int = 1):
    """A pandas Styler with the caption every table must carry (protocol, and the data it ran on);
    floats shown with `precision` decimals (the Styler's default is 6)."""
    return (df.style.set_caption(caption(title, protocol, synthetic)).format(precision=precision)
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


# --- what was run: coverage, flags, provenance ------------------------------------------------------------
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


def provenance_markdown(manifest: dict, cover: pd.DataFrame | None = None, notes=()) -> str:
    """The report's header: what differs from the paper's setup (flagged first), then profile, data,
    hardware, packages, seeds, git commit, the config overrides, the weights and what was scored."""
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
    flags = run_flags(manifest, cover) + list(notes)
    if flags:
        what = f"the profile `{manifest['profile']}`" if manifest.get("synthetic") else "the paper's setup"
        lines += [f"> **This run differs from {what}**; read every table below with this in mind:", ">"]
        lines += [f"> - {f}" for f in flags] + [""]
    roots = ", ".join(f"`{k}={v}`" for k, v in (manifest.get("data_env") or {}).items())
    lines += ["| | |", "|---|---|",
              f"| profile | `{manifest['profile']}` |",
              f"| data | {manifest.get('data', '')} |"] + ([f"| data roots | {roots} |"] if roots and not manifest.get("synthetic") else []) + [
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
    if cover is not None:
        lines += ["**What was scored** (the full model at k = 1, fewest over its seeds):", ""] + _coverage_rows(cover) + [""]
    steps = manifest.get("steps", [])
    if steps:
        total = sum(s["seconds"] for s in steps)
        lines += [f"Steps before this report: {len(steps)}, {total / 60:.1f} min of notebook time "
                  f"({sum(s['status'] == 'skipped' for s in steps)} reused from an earlier run for the same parameters). "
                  "The durations of every step are listed at the end."]
    return "\n".join(lines)
