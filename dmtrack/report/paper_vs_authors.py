"""The report's section "The paper, the authors' code and this study": the component table
(dmtrack.authors_reading) with what the chain measured, and the paper's reading against the authors'.

The chain trains the full model three ways from the same base tracker, with the same seeds, on the same data: under
the paper's reading (its own trainings), under reading=authors (arm "authors") and under reading=authors without the
two scrambling `.view`s (arm "authors-noscramble"; dmtrack.layout.ARMS), and tracks each at Table 2's k for the full
model (and the authors' models under their own test-time averaging, maps, where it differs from final). Each
comparison is the difference of two rows' mean AUC over the seeds both trained and the sequences both were scored on:

    different trainings   stats.paired_test: the sequences resampled once for both rows, each row's seeds on their
                          own (a seed of one reading is no twin of the same seed of the other); Student CI
    the same models       stats.within_test (maps - final: each model tracked twice): seeds and sequences paired
    family                the comparisons are one family: Bonferroni, every CI at 1 - 0.05 / len(COMPARISONS)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dmtrack import authors_reading, paper
from dmtrack.eval.stats import paired_test, seed_sequence_ci, within_test
from dmtrack.layout import AUTHORS_ARM, NOSCRAMBLE_ARM, step_arm, tracker_name
from dmtrack.report.results import Results
from dmtrack.report.verdicts import family_level

ROLES = {"paper": "paper", "authors": "authors", "noscramble": "authors without the scramble"}


@dataclass(frozen=True)
class Comparison:
    label: str
    measures: str  # a key of authors_reading.MEASURES
    k: int
    a: tuple  # (role, average): the difference is a - b
    b: tuple

    def rows(self) -> tuple[str, str]:
        return tuple(f"{ROLES[role]} ({average})" for role, average in (self.a, self.b))


def _comparisons() -> tuple:
    """At each k of the full model's Table 2 rows: the authors' training against the paper's (both tracked under
    final) and the scramble; at k > 1 also under the authors' averaging (maps; at k = 1 it is final: one step)."""
    out = []
    for k in sorted(r.k for r in paper.TABLE2 if r.variant == "full"):
        out.append(Comparison(f"the authors' training, k={k}", "reading", k, ("authors", "final"), ("paper", "final")))
        if k > 1:
            out.append(Comparison(f"the authors' whole reading, k={k}", "reading", k, ("authors", "maps"), ("paper", "final")))
        out.append(Comparison(f"the scramble, k={k}", "scramble", k, ("authors", "final"), ("noscramble", "final")))
        if k > 1:
            out.append(Comparison(f"the scramble under maps, k={k}", "scramble", k, ("authors", "maps"), ("noscramble", "maps")))
            out.append(Comparison(f"the authors' averaging, k={k}", "averaging", k, ("authors", "maps"), ("authors", "final")))
    return tuple(out)


COMPARISONS = _comparisons()


def role_arms(overrides: dict) -> dict:
    """{role: the arm whose full models play it, None when the chain trained none} from the chain's config overrides:
    under the paper reading its own trainings ('' arm) are the paper's, the arms the authors'; a chain trained under
    reading=authors has no paper row, its own trainings are the authors' (scrambled or not, as it set)."""
    if overrides.get("reading", "paper") == "paper":
        return {"paper": "", "authors": AUTHORS_ARM, "noscramble": NOSCRAMBLE_ARM}
    if overrides.get("authors_view_scramble", True):
        return {"paper": None, "authors": "", "noscramble": NOSCRAMBLE_ARM}
    return {"paper": None, "authors": None, "noscramble": ""}


def _matrix(res: Results, arm: str | None, k: int, average: str, protocol: str) -> pd.DataFrame:
    if arm is None:
        return pd.DataFrame()
    m = res.matrix(tracker_name("full", arm), res.bench(paper.TABLE2_BENCHMARK), k, protocol, "auc", average=average)
    return m.dropna(axis=1)


def _ci(c) -> str:
    return f"{c.estimate:.1f} [{c.low:.1f}, {c.high:.1f}]"


def _compare(c: Comparison, ma: pd.DataFrame, mb: pd.DataFrame, level: float) -> dict:
    """One row of the table from the two rows' (seeds x sequences) AUC, on the seeds and sequences they share."""
    seeds, seqs = ma.index.intersection(mb.index), ma.columns.intersection(mb.columns)
    if not len(seeds) or not len(seqs):
        return {"result": "not run", "why": "the two rows share no seed or no sequence"}
    a, b = ma.loc[seeds, seqs], mb.loc[seeds, seqs]
    test = (within_test if c.a[0] == c.b[0] else paired_test)(a, b, level)
    d, (name_a, name_b) = test.diff, (ROLES[c.a[0]], ROLES[c.b[0]])
    higher = (f"{name_a} ({c.a[1]}) higher" if d.low > 0 else f"{name_b} ({c.b[1]}) higher" if d.high < 0
              else "no resolvable difference")
    return {"A: AUC [95% CI]": _ci(seed_sequence_ci(a)), "B: AUC [95% CI]": _ci(seed_sequence_ci(b)),
            "A - B [family CI]": f"{d.estimate:+.1f} [{d.low:+.1f}, {d.high:+.1f}]", "p": f"{test.p:.2g}",
            "seeds": ", ".join(map(str, seeds)), "sequences": len(seqs), "result": higher, "why": "",
            "_diff": d}


def comparison_table(res: Results, overrides: dict, protocol: str = "pytracking") -> pd.DataFrame:
    """One row per comparison (`COMPARISONS`): the two rows (A, B), their AUC with a 95% CI, A - B with its
    family-level CI, p, the seeds and sequences used, and which is higher; 'not run' where a row is missing
    (`role_arms`: the arm that plays it; the chain's arms: ChainSettings.arms). The hidden column `_diff` holds
    the difference's CI (`measured_cells`)."""
    arms, level = role_arms(overrides), family_level(len(COMPARISONS))
    rows = []
    for c in COMPARISONS:
        ma, mb = (_matrix(res, arms[role], c.k, average, protocol) for role, average in (c.a, c.b))
        row = {"comparison": c.label, "A": c.rows()[0], "B": c.rows()[1]}
        if ma.empty or mb.empty:
            missing = [f"{ROLES[r]} ({avg})" for (r, avg), m in ((c.a, ma), (c.b, mb)) if m.empty]
            rows.append({**row, "result": "not run", "why": f"not evaluated: {', '.join(missing)}"})
        else:
            rows.append({**row, **_compare(c, ma, mb, level)})
    return pd.DataFrame(rows).set_index("comparison")


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it (without the hidden `_diff`), its level in the difference's header."""
    out = table.drop(columns=["_diff"], errors="ignore").fillna("")
    return out.rename(columns={"A - B [family CI]": f"A - B [{100 * family_level(len(COMPARISONS)):.3g}% CI]"})


def measured_cells(table: pd.DataFrame) -> dict:
    """{MEASURES key: what the chain measured}: the first comparison of each key at its largest k that was run
    (the training switches: the authors' training against the paper's; the scramble; the averaging)."""
    diffs = table["_diff"] if "_diff" in table else pd.Series(dtype=object)
    out = {}
    for key, what in authors_reading.MEASURES.items():
        done = [c for c in COMPARISONS if c.measures == key and isinstance(diffs.get(c.label), tuple)]
        if done:
            c = max(done, key=lambda c: c.k)  # the first of the largest k
            d = diffs[c.label]
            out[key] = f"{what}: {d.estimate:+.1f} [{d.low:+.1f}, {d.high:+.1f}] AUC ({c.label}, below)"
    return out


def section_markdown(table: pd.DataFrame) -> str:
    """The two facts about the authors' code and the component table, its last column what this chain measured."""
    return "\n\n".join(["**Two facts about the authors' code**, and how they were established:",
                        authors_reading.facts_markdown(),
                        f"**The components** (# = the row of `docs/authors_code.md`; `A:` / `E:` = the authors' `lib/` / "
                        f"`experiments/ostrack/` at commit {authors_reading.COMMIT}; our lines at this run's commit):",
                        authors_reading.table_markdown(measured_cells(table))])


def arm_minutes(manifest: dict, arms=(AUTHORS_ARM, NOSCRAMBLE_ARM)) -> tuple[float, int, int] | None:
    """(wall minutes, trainings, evaluations) of the steps of `arms` in the manifest (their durations summed, over
    the chain's parallel jobs, as claims.extra_seed_minutes); None when the chain ran none."""
    steps = [st for st in manifest.get("steps", []) if step_arm(st["step"]) in arms]
    if not steps:
        return None
    jobs = max(1, (manifest.get("settings") or {}).get("jobs", 1))
    count = lambda prefix: sum(st["step"].startswith(prefix) for st in steps)
    return sum(st["seconds"] for st in steps) / jobs / 60, count("10_train/"), count("20_evaluate/")


def cost_markdown(manifest: dict, budget_minutes: float | None) -> str:
    """What the authors' arms cost here, against the chain's steps and its time budget."""
    cost = arm_minutes(manifest)
    if cost is None:
        return "This chain trained no authors' arm (chain setting `arms`), so nothing here compares the two readings."
    jobs = max(1, (manifest.get("settings") or {}).get("jobs", 1))
    total = sum(st["seconds"] for st in manifest.get("steps", [])) / jobs / 60
    budget = f" (budget: {budget_minutes:g} min)" if budget_minutes else ""
    return (f"The authors' arms cost about **{cost[0]:.1f} min** of wall time here: {cost[1]} trainings and {cost[2]} "
            f"evaluations, {jobs} step(s) at a time, of the chain's {total:.0f} min{budget}.")


def summary_markdown(table: pd.DataFrame) -> str:
    """The comparisons in words: which were resolved, at the family level."""
    level = 100 * family_level(len(COMPARISONS))
    run = table[table["result"] != "not run"]
    if run.empty:
        return "None of the comparisons was run: the chain has no authors' arm, or the rows they need were not evaluated."
    lines = [f"{len(run)} of {len(table)} comparisons run; each CI at {level:.3g}% (Bonferroni over the {len(table)})."]
    lines += [f"**{label}**: {r['result']} ({r['A - B [family CI]']} AUC)." for label, r in run.iterrows()]
    if np.isinf(np.array([d.high for d in run["_diff"]])).any():
        lines.append("An unbounded CI comes from rows with one seed: their seed-to-seed variance is unknown.")
    return " ".join(lines)
