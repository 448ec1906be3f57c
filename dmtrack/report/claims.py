"""The paper's claims judged on a chain's results: the verdicts table (dmtrack.report.verdicts' rule on
Table 2's rows), the gate that holds them back, and how many training seeds they would need.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dmtrack import paper
from dmtrack.eval import stats
from dmtrack.layout import tracker_name
from dmtrack.report import verdicts as vd
from dmtrack.report.results import Results
from dmtrack.report.tables import reading
from dmtrack.report.verdicts import HELD_BACK, Gate, full_beats_static, judge


def _claim_matrices(res: Results, claim, protocol: str, metric: str, average: str):
    bench = res.bench(paper.TABLE2_BENCHMARK)
    a, b = paper.table2_row(claim.better), paper.table2_row(claim.worse)
    return (res.matrix(tracker_name(a.variant), bench, a.k, protocol, metric, average=reading(a.variant, average)),
            res.matrix(tracker_name(b.variant), bench, b.k, protocol, metric, average=reading(b.variant, average)))


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


def verdict_table(res: Results, protocol: str = "pytracking", metric: str = "auc", average: str = "final") -> pd.DataFrame:
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
    """Per claim, from the measured variance components (dmtrack.eval.stats.variance_components): the seed-to-seed
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
        comp = stats.variance_components(ma, mb.reindex(columns=ma.columns))
        effect = vd.SIMILAR_MARGIN - abs(paper_difference(c)) if c.kind == "similar" else paper_difference(c)
        need = lambda power: comp.seeds_needed(effect, level, power)
        show = lambda s: f"> {stats.MAX_SEEDS}" if s is None else str(s)
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
    most = (f"more than {stats.MAX_SEEDS} for {unresolvable} claim(s)" if unresolvable else f"{finite[worst]} ({worst})")
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

