"""The scored runs of a chain, read back from <work>/results (dmtrack.layout): one DataFrame of runs and
one of sequences, and the selections the tables, claims and sweeps make from them.

A run of a trained model is identified by (variant, k, reading, steps, sentence, eta, seed): reading = final |
chain (the two readings of "k samplings", config key test_average; final is the primary one), steps = an
override of the DDIM steps per chain (None = the config's), eta = an override of the sampler's DDIM eta
(None = the config's sampler_eta, the primary sampler: Table 2's; a k<k>_eta<e> folder has one). `Results.summary`'s AUC CI resamples seeds and
sequences (dmtrack.eval.stats.seed_sequence_ci).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dmtrack.data.benchmarks import synthetic_name
from dmtrack.eval.stats import seed_sequence_ci
from dmtrack.layout import results_root, score_files, scored_runs, spread_dir
from dmtrack.paper import METRICS


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

    runs: one row per (benchmark, tracker, k, average, steps, sentence, eta, seed, protocol) with the overall
    metrics, fps, the DDIM steps each chain ran, the DDIM eta it sampled with (sampler_eta; NaN when not recorded or
    without diffusion) and the sample spread (median over sequences of each
    sequence's median over frames; NaN without samples); per_sequence: the same keys plus
    `sequence`, one row per sequence, with its spread."""
    runs, per_seq = [], []
    for folder, meta in scored_runs(results_root):
        key = dict(benchmark=meta["benchmark"], tracker=folder.parent.name, variant=meta.get("variant"),
                   k=meta.get("samples"), average=meta.get("average", "final"), steps=meta.get("steps"),
                   sentence=meta.get("sentence", "true"), eta=meta.get("eta"), seed=meta.get("seed"))
        fps, spread, chain_steps = _times_fps(folder), _spreads(folder), meta.get("sampling_steps")
        overall_spread = float(np.median(list(spread.values()))) if spread else float("nan")
        for sp in score_files(folder):
            sc = json.loads(sp.read_text())
            row = {**key, "protocol": sc["protocol"], "n_sequences": sc["n_sequences"], "fps": fps,
                   "sampling_steps": chain_steps, "sampler_eta": meta.get("sampler_eta"), "spread": overall_spread}
            runs.append({**row, **{m: sc["overall"][m] for m in ("auc", "precision", "norm_precision", "op50", "op75")}})
            for name, vals in sc["per_sequence"].items():
                per_seq.append({**key, "protocol": sc["protocol"], "sequence": name, **vals,
                                "spread": spread.get(name, float("nan"))})
    cols = ["benchmark", "tracker", "variant", "k", "average", "steps", "sentence", "eta", "seed", "protocol"]
    runs = pd.DataFrame(runs, columns=cols + ["n_sequences", "fps", "sampling_steps", "sampler_eta", "spread", "auc",
                                              "precision", "norm_precision", "op50", "op75"])
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

    def _sel(self, df, tracker, benchmark, k, protocol, seeds=None, average="final", steps=None, sentence="true",
             eta=None):
        m = (df.tracker == tracker) & (df.benchmark == benchmark) & (df.protocol == protocol) & (df.sentence == sentence)
        if k is not None:  # trained models: the reading and the steps and eta overrides (None = the config's) too
            m &= (df.k == k) & (df.average == average) & (df.steps.isna() if steps is None else df.steps == steps)
            m &= df.eta.isna() if eta is None else df.eta == eta
        if seeds is not None:
            m &= df.seed.isin(list(seeds))
        return df[m]

    def matrix(self, tracker: str, benchmark: str, k, protocol: str, metric: str = "auc", seeds=None,
               average: str = "final", steps=None, sentence: str = "true", eta=None) -> pd.DataFrame:
        """Per-sequence `metric`: rows = seeds, columns = sequences (empty if never run)."""
        d = self._sel(self.per_sequence, tracker, benchmark, k, protocol, seeds, average, steps, sentence, eta)
        return d.pivot_table(index="seed", columns="sequence", values=metric) if len(d) else pd.DataFrame()

    def summary(self, tracker: str, benchmark: str, k, protocol: str, seeds=None, average: str = "final",
                steps=None, sentence: str = "true", eta=None) -> dict | None:
        """Mean over seeds of each overall metric, the AUC CI, fps, the sample spread (median over
        seeds) and the number of seeds; None if not run."""
        r = self._sel(self.runs, tracker, benchmark, k, protocol, seeds, average, steps, sentence, eta)
        if r.empty:
            return None
        out = {m: float(r[m].mean()) for m in METRICS}
        auc = self.matrix(tracker, benchmark, k, protocol, seeds=seeds, average=average, steps=steps, sentence=sentence,
                          eta=eta)
        out.update(fps=float(r.fps.mean()), seeds=int(r.seed.nunique()), spread=float(r.spread.median()),
                   sampling_steps=r.sampling_steps.iloc[0], auc_ci=seed_sequence_ci(auc.dropna(axis=1)))
        return out


def fig7_sequences(work, benchmark: str, names: list, n: int, variant: str = "full", k: int = 1,
                   protocol: str = "pytracking") -> tuple[list[str], str]:
    """Fig. 7's n sequences of `benchmark` and why them: where `variant` (mean over its evaluated seeds)
    scores the lowest AUC; before it is scored (30_visualize right after training) the first n of
    `names`, the benchmark's sequences in order."""
    _, per = load_runs(results_root(work))
    d = per[(per.benchmark == benchmark) & (per.variant == variant) & (per.k == k) & (per.protocol == protocol)
            & (per.average == "final") & per.steps.isna() & per.eta.isna()]
    if d.empty:
        return list(names[:n]), f"the first {n} sequences ({variant} k={k} is not scored on {benchmark} yet)"
    return list(d.groupby("sequence").auc.mean().sort_values().index[:n]), f"the {n} hardest for {variant} (lowest AUC, k={k})"

