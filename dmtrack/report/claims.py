"""The paper's claims judged on a chain's results: the verdicts table (dmtrack.report.verdicts' rule on
Table 2's rows), the gate that holds them back, how many training seeds they would need, and the noise
budget: each row's variance split into seed, sequence and seed-by-sequence parts under each arm of the
chain (the base tracker's fine-tunes, the from-scratch arm), and what would shrink the claims' CIs most.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dmtrack import paper
from dmtrack.eval import stats
from dmtrack.layout import BASE, SCRATCH_ARM, step_arm, tracker_name
from dmtrack.report import verdicts as vd
from dmtrack.report.results import Results
from dmtrack.report.tables import reading
from dmtrack.report.verdicts import HELD_BACK, Gate, full_beats_static, judge


ARMS = {"": "base tracker", SCRATCH_ARM: "from scratch"}  # the chain's trainings (fine-tuned) and its from-scratch arm


def _row_matrix(res: Results, row, protocol: str, metric: str, average: str, arm: str = ""):
    return res.matrix(tracker_name(row.variant, arm), res.bench(paper.TABLE2_BENCHMARK), row.k, protocol, metric,
                      average=reading(row.variant, average))


def _claim_matrices(res: Results, claim, protocol: str, metric: str, average: str, arm: str = ""):
    return tuple(_row_matrix(res, paper.table2_row(n), protocol, metric, average, arm) for n in (claim.better, claim.worse))


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
                     "why": _largest_part(comp)})
    return pd.DataFrame(rows).set_index("claim")


def _largest_part(comp: stats.Components) -> str:
    """Which source of the difference's variance holds its CI wide now (`stats.Components.parts`), and its share."""
    parts = comp.parts()
    total = sum(parts.values())
    if not total > 0:
        return ""
    name = max(parts, key=parts.get)
    cure = "more sequences" if name == "sequence-by-variant" else "more seeds"
    return f"{name}: {parts[name] / total:.0%} of the difference's variance ({cure} shrink it)"


def _protocol_step(name: str) -> bool:
    """A step of the chain's own protocol: neither the base tracker's training (once, whatever the seeds)
    nor a step of an arm (its models are named <variant>-<arm>: dmtrack.layout.step_arm)."""
    return name != f"10_train/{BASE}" and not step_arm(name)


def extra_seed_minutes(manifest: dict) -> float | None:
    """Wall minutes one more training seed adds to the chain, from the manifest's step durations: its
    six trainings and its share of every evaluation that runs all seeds, at the chain's parallel jobs
    (`_protocol_step`: the base tracker and the arms are no part of a seed of the verdicts)."""
    seeds, jobs = manifest.get("seeds") or [], max(1, manifest.get("settings", {}).get("jobs", 1))
    steps = [st for st in manifest.get("steps", []) if st.get("seeds") and _protocol_step(st["step"])]
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



# --- the noise budget: base tracker vs from scratch (issue 20) --------------------------------------------
RESOLVE_GOAL = 5.0  # AUC points: every claim's resolvable difference at most this (the base tracker's aim)
SEED_VARIANCE_GOAL = 4.0  # full's seed variance at least this many times smaller on the base tracker than from scratch


def _row_components(res: Results, protocol: str, average: str) -> dict:
    """{(Table 2 row number, arm): stats.RowComponents of its AUC} for every row evaluated in each arm
    (over the sequences scored for all its seeds, as Results.summary)."""
    out = {}
    for r in paper.TABLE2:
        for arm in ARMS:
            m = _row_matrix(res, r, protocol, "auc", average, arm)
            if not m.empty:
                out[r.no, arm] = stats.row_components(m.dropna(axis=1))
    return out


def noise_budget(res: Results, protocol: str = "pytracking", average: str = "final") -> pd.DataFrame:
    """Per Table 2 row and arm (`ARMS`: 'base tracker' = the chain's fine-tuned trainings, 'from scratch' =
    the from-scratch arm, today's protocol before the base stage): seeds, sequences, mean AUC and the AUC's
    variance split into seed, sequence and seed-by-sequence parts (stats.row_components, squared AUC
    points) with their standard deviations. Rows not evaluated in an arm are left out."""
    rows = []
    for (no, arm), c in _row_components(res, protocol, average).items():
        parts = {"seed": c.seed, "sequence": c.sequence, "seed x sequence": c.residual}
        rows.append({"row": paper.table2_row(no).label, "arm": ARMS[arm], "seeds": c.seeds, "sequences": c.sequences,
                     "mean AUC": c.mean, **{f"{k} variance": v for k, v in parts.items()},
                     **{f"{k} sd": np.sqrt(v) for k, v in parts.items()}})
    return pd.DataFrame(rows).set_index(["row", "arm"]) if rows else pd.DataFrame()


def seed_variance_ratios(budget: pd.DataFrame, variant: str = "full") -> dict:
    """{row label: `variant`'s seed variance from scratch / on the base tracker} for its rows in both arms
    (inf when the base tracker's estimate is 0; NaN when either is not estimable, one seed, or both are 0)."""
    out = {}
    for label in budget.index.get_level_values("row").unique() if len(budget) else []:
        arms = budget.loc[label]
        if label.split()[1] == variant and set(ARMS.values()) <= set(arms.index):
            before, after = arms.loc[ARMS[SCRATCH_ARM], "seed variance"], arms.loc[ARMS[""], "seed variance"]
            if np.isnan(before) or np.isnan(after) or before == after == 0:
                out[label] = float("nan")
            else:
                out[label] = float(before / after) if after > 0 else float("inf")
    return out


def _pooled(parts: list) -> stats.RowComponents:
    """The arm's evaluated rows' mean components: what a row not trained in the arm is predicted to have."""
    mean = lambda key: float(np.mean([getattr(p, key) for p in parts]))
    return stats.RowComponents(mean("seed"), mean("sequence"), mean("residual"), max(p.seeds for p in parts),
                               parts[0].sequences, float("nan"))


def _resolvable(res: Results, claim, arm: str, rows: dict, protocol: str, average: str) -> tuple[float, str]:
    """(resolvable difference, how) of a claim in an arm: the half-width of its family-level CI (`judge`'s
    test) when both rows were evaluated in the arm; else predicted (stats.Components.half_width) from the
    arm's measured rows (a row not trained in the arm: their mean seed and residual variances) and the
    sequence-by-variant part measured on the base tracker; NaN and 'not run' when neither is there."""
    ma, mb = _claim_matrices(res, claim, protocol, "auc", average, arm)
    if not ma.empty and not mb.empty:
        return judge(claim, ma, mb, family=len(paper.CLAIMS)).test.half_width, "measured"
    base = [m for m in _claim_matrices(res, claim, protocol, "auc", average) if not m.empty]
    measured = [c for (_, a), c in rows.items() if a == arm]
    if len(base) < 2 or not measured:
        return float("nan"), "not run"
    ref = stats.variance_components(base[0], base[1].reindex(columns=base[0].columns))
    missing = [n for n in (claim.better, claim.worse) if (n, arm) not in rows]
    parts = [rows.get((n, arm)) or _pooled(measured) for n in (claim.better, claim.worse)]
    comp = stats.Components(tuple(p.seed for p in parts), tuple(p.residual for p in parts), ref.interaction,
                            tuple(p.seeds for p in parts), ref.sequences)
    half = comp.half_width(vd.family_level(len(paper.CLAIMS)))
    return half, (f"predicted: {', '.join(f'#{n}' for n in missing)} not run {ARMS[arm]}" if np.isfinite(half) else
                  "not estimable: a row with one seed")


def claim_budget(res: Results, protocol: str = "pytracking", average: str = "final") -> pd.DataFrame:
    """Per claim: its resolvable difference (AUC points) in each arm (`_resolvable`: measured or predicted,
    and how), and for the base tracker the predicted family-level half-width now, with one more seed per row
    and with twice the sequences (the sequence terms of stats.Components.terms halved: a prediction for more
    sequences like these), from the measured variance components (both rows need >= 2 seeds)."""
    level, rows = vd.family_level(len(paper.CLAIMS)), _row_components(res, protocol, average)
    out = []
    for c in paper.CLAIMS:
        row = {"claim": c.title, "rows": f"#{c.better} vs #{c.worse}"}
        for arm, name in ARMS.items():
            row[f"{name}: resolvable"], row[f"{name}: how"] = _resolvable(res, c, arm, rows, protocol, average)
        ma, mb = _claim_matrices(res, c, protocol, "auc", average)
        comp = (None if ma.empty or mb.empty or min(len(ma), len(mb)) < vd.MIN_SEEDS else
                stats.variance_components(ma, mb.reindex(columns=ma.columns)))
        nan = float("nan")
        row.update({"predicted now": comp.half_width(level) if comp else nan,
                    "one more seed per row": comp.half_width(level, tuple(s + 1 for s in comp.seeds)) if comp else nan,
                    "twice the sequences": comp.half_width(level, sequences=2 * comp.sequences) if comp else nan})
        out.append(row)
    return pd.DataFrame(out).set_index("claim")


def more_sequences_minutes(manifest: dict) -> float | None:
    """Wall minutes twice the Table 2 benchmark's sequences would add: every evaluation of the chain's
    protocol on it (`_protocol_step`) tracking twice as many, from the manifest's step durations."""
    jobs = max(1, manifest.get("settings", {}).get("jobs", 1))
    steps = [st for st in manifest.get("steps", []) if st["step"].startswith("20_evaluate/")
             and f"_{paper.TABLE2_BENCHMARK}_" in st["step"] and _protocol_step(st["step"])]
    return sum(st["seconds"] for st in steps) / jobs / 60 if steps else None


def base_stage_minutes_saved(manifest: dict) -> float | None:
    """Wall minutes the base tracker saves against training every variant from scratch, from the manifest's
    step durations: each fine-tune's time against the from-scratch arm's trainings of the same variants
    (mean per training), times the chain's fine-tunes, less the base tracker's own training; None without
    the base tracker's training or a from-scratch arm in the manifest."""
    jobs = max(1, manifest.get("settings", {}).get("jobs", 1))
    train = {st["step"].removeprefix("10_train/"): st["seconds"] for st in manifest.get("steps", [])
             if st["step"].startswith("10_train/")}
    model = lambda name: name.rpartition("_seed")[0]  # 'full_seed0' -> 'full', 'full-scratch_seed1' -> 'full-scratch'
    tuned = [n for n in train if model(n) and not step_arm(f"10_train/{n}")]
    pairs = [([n for n in train if model(n) == f"{model(t)}-{SCRATCH_ARM}"], [n for n in tuned if model(n) == model(t)])
             for t in {model(n): n for n in tuned}.values()]
    pairs = [(scratch, same) for scratch, same in pairs if scratch]
    if BASE not in train or not pairs:
        return None
    mean = lambda names: float(np.mean([train[n] for n in names]))
    saving = float(np.mean([mean(scratch) - mean(same) for scratch, same in pairs]))
    return (len(tuned) * saving - train[BASE]) / jobs / 60


def _spend_markdown(claimed: pd.DataFrame, manifest: dict, synthetic: bool) -> str:
    """What the measured components say to spend minutes on: one more seed per row or twice the Table 2
    benchmark's sequences, by the mean narrowing of the claims' CIs per minute of wall time."""
    now, seed, seq = (claimed[c].astype(float) for c in ("predicted now", "one more seed per row", "twice the sequences"))
    ok = np.isfinite(now) & np.isfinite(seed) & np.isfinite(seq)
    if not ok.any():
        return "Too few seeds or rows were evaluated on the base tracker to say what would narrow the CIs most."
    gain = {"one more seed per row": float((now - seed)[ok].mean()), "twice the sequences": float((now - seq)[ok].mean())}
    w = now[ok].idxmax()
    text = [f"What narrows the CIs most, predicted from the measured components: one more seed per row narrows the "
            f"claims' CIs by {gain['one more seed per row']:.1f} AUC points on average (the widest, {w}: {now[w]:.1f} to "
            f"{seed[w]:.1f}), twice the Table 2 benchmark's sequences by {gain['twice the sequences']:.1f} "
            f"({now[w]:.1f} to {seq[w]:.1f})."]
    cost = {"one more seed per row": extra_seed_minutes(manifest), "twice the sequences": more_sequences_minutes(manifest)}
    if not synthetic:
        cost.pop("twice the sequences")
        text.append("The real benchmark's test sequences are fixed: more seeds are the option here.")
    if all(cost.values()):
        per = {k: gain[k] / cost[k] for k in cost}
        best = max(per, key=per.get)
        priced = " and ".join(f"{k} costs about {cost[k]:.1f} min of wall time here ({per[k]:.2f} points per minute)"
                              for k in cost)
        text.append(priced[0].upper() + priced[1:] + f": the minutes go to **{best}**.")
        saved = base_stage_minutes_saved(manifest)
        if saved is not None and saved > 0:
            text.append(f"Fine-tuning from the base tracker saves about {saved:.0f} min against training every variant "
                        f"from scratch: {int(saved // cost[best])} time(s) the cost of {best}.")
        elif saved is not None:
            text.append(f"Fine-tuning from the base tracker costs about {-saved:.0f} min more than training every "
                        "variant from scratch here.")
    else:
        text.append("The manifest has no step durations to price them.")
    text.append("Longer fine-tuning changes the components themselves, so they cannot predict it: a run with more epochs "
                "measures it.")
    return " ".join(text)


def noise_budget_markdown(budget: pd.DataFrame, claimed: pd.DataFrame, manifest: dict, synthetic: bool) -> str:
    """The noise budget in words: the full model's seed variance from scratch against on the base tracker
    (goal: SEED_VARIANCE_GOAL times smaller), the widest resolvable difference in each arm (goal: every claim
    within RESOLVE_GOAL), and what the measured components say to spend minutes on."""
    lines, ratios = [], seed_variance_ratios(budget)
    if ratios:
        var = lambda label, arm: budget.loc[(label, ARMS[arm]), "seed variance"]
        parts = [f"{label}: not estimable (one seed)" if np.isnan(r) else f"{label}: {var(label, SCRATCH_ARM):.1f} from "
                 f"scratch, {var(label, ''):.1f} on the base tracker, **{r:.1f}x** smaller" for label, r in ratios.items()]
        met = ("not estimable" if any(np.isnan(r) for r in ratios.values()) else
               "met" if all(r >= SEED_VARIANCE_GOAL for r in ratios.values()) else "**not met**")
        lines.append("The full model's seed variance (squared AUC points): " + "; ".join(parts)
                     + f" (goal: at least {SEED_VARIANCE_GOAL:g}x smaller: {met}).")
    else:
        lines.append("The full model was not evaluated in both arms (chain setting `arms`, its scratch arm): no before / after "
                     "ratio of its seed variance.")
    for name in ARMS.values():
        col, how = claimed[f"{name}: resolvable"].astype(float), claimed[f"{name}: how"]
        known = col[col.notna()]  # inf: measured with a row of one seed, whose seed variance is unknown
        if len(known):
            widest = "unbounded (a row with one seed)" if np.isinf(known.max()) else f"{known.max():.1f} AUC points"
            lines.append(f"{name.capitalize()}: the widest resolvable difference is **{widest}** "
                         f"({known.idxmax()}); {int((known <= RESOLVE_GOAL).sum())} of {len(col)} claims within "
                         f"{RESOLVE_GOAL:g} AUC points (goal: all; {int((how == 'measured').sum())} measured, "
                         f"{int(how.str.startswith('predicted').sum())} predicted).")
    return " ".join(lines) + "\n\n" + _spend_markdown(claimed, manifest, synthetic)
