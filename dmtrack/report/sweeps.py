"""The sweeps (accuracy, speed and sample spread against k and the DDIM steps, under each test-time sampler; AUC
against the language drift) and the language-robustness test (dmtrack.data.sentences) with its verdicts, from a
chain's results.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dmtrack import paper
from dmtrack.data.benchmarks import drift_benchmark
from dmtrack.data.sentences import SENTENCES
from dmtrack.eval import stats
from dmtrack.layout import eta_override, tracker_name
from dmtrack.report import verdicts as vd
from dmtrack.report.results import Results

ROBUST_CONTROL = "no_language"  # ignores the sentence: its drops must be zero within noise
ROBUST_COMPARED = ("not_mask_driven", "no_diffusion")  # the variants full's drop is compared with
OTHER_SENTENCES = ("misleading", "uninformative")
# the test-time samplers (DDIM eta) by name; docs/method.md, "The reverse step"
SAMPLERS = {1.0: "stochastic (eta = 1, the paper's Eq. 5)", 0.0: "deterministic DDIM (eta = 0)"}


def sampler_label(eta: float) -> str:
    return SAMPLERS.get(float(eta), f"DDIM eta = {float(eta):g}")


def k_sweep(res: Results, ks, protocol: str = "pytracking", variant: str = "full", seeds=None,
            eta: float | None = None) -> pd.DataFrame:
    """Accuracy, speed and sample spread of `variant` on the Table 2 benchmark as k grows (final
    reading, the same seeds at every k), under the sampler of the runs' eta override (None = the config's)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    rows = []
    for k in ks:
        s = res.summary(tracker_name(variant), bench, k, protocol, seeds, eta=eta)
        if s is None:
            continue
        ci = s["auc_ci"]
        rows.append(dict(k=k, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, precision=s["precision"],
                         norm_precision=s["norm_precision"], fps=s["fps"], spread=s["spread"], seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["k", "auc", "auc_low", "auc_high", "precision", "norm_precision", "fps", "spread", "seeds"])


def steps_sweep(res: Results, steps, protocol: str = "pytracking", variant: str = "full", seeds=None,
                eta: float | None = None) -> pd.DataFrame:
    """Accuracy and speed of one chain (k = 1) against its DDIM steps, under the sampler of the runs' eta
    override (None = the config's). The run of each step count is the one whose chains ran that many steps:
    the config's own, a steps override, or (one step) the chain reading at k = 1, which is exactly one
    denoiser pass (no step adds noise: the same under every eta)."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    r = res.runs[(res.runs.tracker == tracker_name(variant)) & (res.runs.benchmark == bench) & (res.runs.k == 1)
                 & (res.runs.sentence == "true") & (res.runs.eta.isna() if eta is None else res.runs.eta == eta)]
    rows = []
    for n in steps:
        runs = r[r.sampling_steps == n][["average", "steps"]].drop_duplicates()
        if runs.empty:
            continue
        average, override = runs.iloc[0]
        s = res.summary(tracker_name(variant), bench, 1, protocol, seeds, average, None if pd.isna(override) else override,
                        eta=eta)
        if s is None:
            continue
        ci = s["auc_ci"]
        rows.append(dict(steps=n, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, precision=s["precision"],
                         norm_precision=s["norm_precision"], fps=s["fps"], seeds=s["seeds"]))
    return pd.DataFrame(rows, columns=["steps", "auc", "auc_low", "auc_high", "precision", "norm_precision", "fps", "seeds"])


def swept_etas(manifest: dict, config_eta: float) -> list[float]:
    """The test-time samplers (DDIM eta) the chain ran its k and steps sweeps under (the settings' sweep_etas
    in its manifest), the config's own first; just that one for a manifest without them."""
    etas = [float(config_eta)] + [float(e) for e in (manifest.get("settings") or {}).get("sweep_etas", ())]
    return list(dict.fromkeys(etas))


def sampler_sweeps(sweep, etas, config_eta: float, **kw) -> pd.DataFrame:
    """`sweep` (k_sweep or steps_sweep, called with `kw` and each sampler's eta override) under each DDIM eta of
    `etas`, stacked in that order with the columns sampler (its label, SAMPLERS) and eta first; the eta equal to
    config_eta reads the config's own runs (Table 2's folders, eta None)."""
    frames = [sweep(**kw, eta=eta_override(e, config_eta)).assign(sampler=sampler_label(e), eta=float(e)) for e in etas]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["sampler", "eta"])
    return df[["sampler", "eta"] + [c for c in df.columns if c not in ("sampler", "eta")]]


def side_by_side(df: pd.DataFrame, x: str = "k", columns=("auc", "auc_low", "auc_high", "spread", "fps")) -> pd.DataFrame:
    """A `sampler_sweeps` frame with one column group per sampler (in its order) and one row per `x`."""
    cols = [c for c in columns if c in df.columns]
    wide = df.pivot(index=x, columns="sampler", values=cols).swaplevel(axis=1)
    return wide[[(s, c) for s in df.sampler.unique() for c in cols]]


def spread_ratio(df: pd.DataFrame, k: int = 5, etas=(1.0, 0.0)) -> float:
    """How many times the median sample spread at k of the first sampler of `etas` is that of the second
    (a `sampler_sweeps` k frame); NaN when either was not run or the second's is 0."""
    at = lambda e: df[(df.eta == e) & (df.k == k)].spread  # noqa: E731
    a, b = at(etas[0]), at(etas[1])
    return float(a.iloc[0] / b.iloc[0]) if len(a) and len(b) and b.iloc[0] > 0 else float("nan")


def spread_ratio_markdown(df: pd.DataFrame, k: int = 5, etas=(1.0, 0.0)) -> str:
    """One sentence: the median sample spread at k under the two samplers of `etas` and their ratio."""
    at = {e: df[(df.eta == e) & (df.k == k)].spread for e in etas}
    if any(v.empty for v in at.values()):
        return (f"The spread ratio at k = {k} needs both samplers' k sweeps; this run has "
                f"{', '.join(sampler_label(e) for e in df.eta.unique()) or 'neither'} (the chain setting sweep_etas).")
    parts = ", ".join(f"{sampler_label(e)} {v.iloc[0]:.3f}" for e, v in at.items())
    return f"Median sample spread of k = {k} chains: {parts}; ratio **{spread_ratio(df, k, etas):.1f}x**."


def training_spread_markdown(res: Results, protocol: str = "pytracking", k: int = 5) -> str:
    """One sentence: the median sample spread at k (the config's sampler, Table 2's folders) of the full model,
    trained with double sampling (Fig. 4: its denoiser's noisy input is its own first estimate, never the ground
    truth, so x_t carries nothing F_s lacks), against single_sample_train (the usual recipe x_t = q(x_t | gt),
    where x_t does carry the answer), and their ratio: where the k chains' diversity comes from."""
    bench = res.bench(paper.TABLE2_BENCHMARK)
    full, single = (res.summary(tracker_name(v), bench, k, protocol) for v in ("full", "single_sample_train"))
    if full is None or single is None:
        return f"The spread by training needs full and single_sample_train at k = {k}; this run lacks one."
    ratio = single["spread"] / full["spread"] if full["spread"] > 0 else float("inf")
    why = (" The diversity comes from the training: a denoiser whose noisy input never carried information beyond "
           "F_s learns to ignore it, so its k chains agree whatever the sampler draws." if ratio >= 2 else
           " The two trainings' chains are about as diverse: here the training does not set the spread.")
    return (f"Median sample spread of k = {k} chains under the config's sampler, by training: single_sample_train "
            f"(the usual recipe, x_t noised from the ground truth) {single['spread']:.3f}, full (double sampling, "
            f"x_t noised from its own first estimate) {full['spread']:.3f}; ratio **{ratio:.1f}x**.{why}")


def drift_sweep(res: Results, levels, variants, k: int, protocol: str = "pytracking", seeds=None) -> pd.DataFrame:
    """AUC against the language-drift level of the synthetic sweep, per variant (and the static tracker),
    and each variant's difference from no_language on the same videos at the same level with its paired
    95% CI (stats.paired_ci: the level's own video changes, which move no_language too, cancel out)."""
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
                vs = stats.paired_ci(m, blind[m.columns]) if set(m.columns) == set(blind.columns) else None
            rows.append(dict(level=float(level), variant=v, auc=s["auc"], auc_low=ci.low, auc_high=ci.high, seeds=s["seeds"],
                             vs_no_language=vs.estimate if vs else np.nan, vs_no_language_low=vs.low if vs else np.nan,
                             vs_no_language_high=vs.high if vs else np.nan))
    return pd.DataFrame(rows, columns=["level", "variant", "auc", "auc_low", "auc_high", "seeds", "vs_no_language",
                                       "vs_no_language_low", "vs_no_language_high"])


# --- the language-robustness test --------------------------------------------------------------------------


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
        t = stats.within_test(m["true"], m[other], stats.LEVEL)
        row.update({f"drop_{other}": t.diff.estimate, f"drop_{other}_low": t.diff.low, f"drop_{other}_high": t.diff.high})
    row.update(seeds=len(m["true"]), sequences=m["true"].shape[1], note="")
    if variant == ROBUST_CONTROL:
        inside = all(row[f"drop_{o}_low"] <= 0 <= row[f"drop_{o}_high"] for o in OTHER_SENTENCES)
        row["note"] = ("control: drops zero within noise" if inside else
                       "control FAILS: a model that ignores the sentence changed with it; the test itself is suspect")
    return row


def _drop_verdict(variant: str, full: dict, other: dict, family: int) -> dict:
    """full's misleading drop against `variant`'s: the claim "full loses less than `variant`" from the
    paired difference of the two drops (verdicts.judge_difference: sequences paired, each variant's seeds on their own)."""
    key = f"full vs {variant}"
    d_full, d_other = full["true"] - full["misleading"], other["true"] - other["misleading"]
    v = vd.judge_difference(key, d_other, d_full, family)
    ci, what = v.diff, f"{variant}'s drop minus full's, {100 * v.test.level:.3g}% CI"
    if min(v.seeds) < vd.MIN_SEEDS:  # the verdict's CI is unbounded: show the one for these trainings instead
        ci = stats.paired_ci(d_other, d_full[d_other.columns], v.test.level)
        what += " over sequences only (these trainings, not the variants)"
    return {"variant": key, "drop_misleading": ci.estimate, "drop_misleading_low": ci.low,
            "drop_misleading_high": ci.high, "seeds": min(v.seeds), "sequences": v.sequences,
            "note": f"{v.verdict} ({v.reason}; {what})"}


def robustness(res: Results, variants, protocol: str = "pytracking", seeds=None, benchmark: str = "lasot",
               k: int = 1) -> pd.DataFrame:
    """The language-robustness test on the same drift-free videos (dmtrack.data.sentences): per variant, AUC
    under the true, a misleading and an uninformative sentence, and the drops true - misleading and true -
    uninformative with their 95% CIs (stats.within_test: the same models on the same sequences). Then one
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


