"""The one metric implementation: success (AUC), precision, normalised precision, OP50 and
OP75, per sequence and averaged over sequences, under two named protocols.

    pytracking : `calc_seq_err_robust` of pytracking and the OSTrack-derived VL codebases
                 (OSTrack, MMTrack, JointNLT, UVLTrack): what those papers publish.
    official   : the LaSOT / TNL2K / OTB MATLAB toolkits (`calc_seq_err_robust.m`,
                 `eval_tracker.m`, `plot_draw_save.m`).

Every rule is listed in docs/protocol.md with the test that pins it. Per frame a protocol
yields an IoU, a centre error e (pixels) and a normalised centre error ne; a frame counts
for success at threshold t when IoU > t (strict), for precision at d when e <= d. The
toolkits mark frames with sentinels instead of masks, and so do we, because the sentinel
decides hit or miss: IoU = -1 is always a miss, e = +inf a miss, e = -1 a hit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dmtrack.boxes import center_xywh, iou_xywh
from dmtrack.data.benchmarks import STAND_IN
from dmtrack.paper import METRICS as PAPER_METRICS

if TYPE_CHECKING:
    import pandas as pd

# Thresholds are the nearest doubles to k/20, k and k/100. pytracking builds them with
# torch.arange(0, 1.05, 0.05), which is 1 ulp above k/20 for 9 of the 21 values; that only
# matters for an IoU within 1e-16 of a threshold.
SUCCESS_THRESHOLDS = np.arange(21) / 20  # IoU 0, 0.05, ..., 1
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)  # centre error 0..50 px
NORM_PRECISION_THRESHOLDS = np.arange(51) / 100  # normalised centre error 0..0.5
PROTOCOLS = ("pytracking", "official")
VALID_RULES = ("wh", "all4")
DEFAULT_VALID_RULE = {"pytracking": "wh", "official": "all4"}
# the three the paper reports (Tables 1 and 2) and the report tabulates are the paper's own list
REPORTED = PAPER_METRICS
METRICS = REPORTED + ("op50", "op75")
_I20, _I50, _I75 = 20, 10, 15  # index of 20 px / 0.20 in the error curves, of 0.5 / 0.75 in the success curve


class InvalidResults(ValueError):
    """Predictions a protocol refuses to score (NaN or negative size under pytracking, too few rows)."""


def _fill_from_previous(boxes: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Replace every bad row by the nearest earlier good row; row 0 is never replaced.
    This is the toolkits' loop `for i = 2..N: if bad(i): r(i) = r(i-1)` without the loop:
    since r(i-1) was already repaired, it equals the last good row before i."""
    keep = ~bad
    keep[0] = True
    src = np.maximum.accumulate(np.where(keep, np.arange(len(boxes)), 0))
    return boxes[src]


def _centre_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre error in pixels and normalised by the gt size (c = x + (w - 1) / 2), in the toolkits'
    order of operations (calc_seq_err_robust.m, pytracking's calc_err_center): each centre is
    divided by the gt w, h first, then subtracted, then sqrt(dx^2 + dy^2). The order decides
    hits: a 6 px offset on a 30 px box is exactly 0.2 when subtracted first, 0.2 + 1 ulp (a
    miss at 0.2) for the toolkits, which is what we must reproduce."""
    cp, cg, size = center_xywh(pred), center_xywh(gt), gt[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = cp / size - cg / size
        return np.sqrt(((cp - cg) ** 2).sum(1)), np.sqrt((norm**2).sum(1))


def _valid(gt: np.ndarray, rule: str) -> np.ndarray:
    """'wh': w > 0 and h > 0 (OSTrack, MMTrack, JointNLT, UVLTrack, TNL2K python toolkit);
    'all4': x, y, w, h all > 0 (MATLAB toolkits; pytracking since 2022-08). NaN is invalid."""
    if rule not in VALID_RULES:
        raise ValueError(f"valid_rule must be one of {VALID_RULES}, got {rule!r}")
    cols = gt[:, 2:] if rule == "wh" else gt
    return (cols > 0).all(axis=1) & ~np.isnan(gt).any(axis=1)  # a NaN x or y must not slip through 'wh'


def frame_errors(pred, gt, visible=None, *, protocol: str = "pytracking", dataset: str = "",
                 valid_rule: str | None = None, name: str = "sequence"):
    """Per-frame (iou, e, ne) after the protocol's repairs and sentinels.

    pred, gt: (N, 4) x, y, w, h; visible: (N,) bool or None; dataset: the tag the
    pytracking protocol keys on (only the exact tag 'lasot' changes anything).
    Raises InvalidResults for predictions the protocol refuses.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    rule = valid_rule or DEFAULT_VALID_RULE[protocol]
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)  # a copy: repairs never touch the caller's array
    n = len(gt)
    if n == 0:
        raise ValueError(f"{name}: empty ground truth")
    vis = None if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    if vis is not None and len(vis) != n:
        raise ValueError(f"{name}: {len(vis)} visibility flags for {n} ground-truth rows")

    if protocol == "pytracking":
        bad = np.isnan(pred).any(axis=1) | (pred[:, 2:] < 0).any(axis=1)
        if bad.any():
            raise InvalidResults(f"{name}: invalid results (NaN or negative w/h) in frame {int(np.argmax(bad)) + 1}")
        if np.isnan(gt).any():
            raise ValueError(f"{name}: NaN in the ground truth (frame {int(np.argmax(np.isnan(gt).any(1))) + 1})")
        pred = pred[:n]  # longer results are cut (LaSOT monkey-17)
        pred = _fill_from_previous(pred, (pred[:, 2:] == 0).any(axis=1))  # zero-size box -> previous box
        if len(pred) < n:
            if dataset == "lasot":
                raise InvalidResults(f"{name}: {len(pred)} result rows for {n} ground-truth rows (tag 'lasot' refuses short results)")
            pred = np.concatenate([pred, np.zeros((n - len(pred), 4))])  # other tags: zero boxes (misses)
        pred[0] = gt[0]
        valid = _valid(gt, rule) if vis is None else _valid(gt, rule) & vis
        iou = iou_xywh(pred, gt)
        e, ne = _centre_errors(pred, gt)
        iou[~valid], e[~valid], ne[~valid] = -1.0, np.inf, -1.0  # ne = -1 is a HIT for norm precision
        if dataset == "lasot" and vis is not None:
            e[~vis], ne[~vis] = np.inf, np.inf  # only the exact tag 'lasot' makes invisible frames misses
        return iou, e, ne, valid

    # official MATLAB toolkits
    if len(pred) < n:
        raise InvalidResults(f"{name}: {len(pred)} result rows for {n} ground-truth rows (the MATLAB toolkits fail on short results)")
    pred = pred[:n]
    bad = np.isnan(pred).any(axis=1) | (pred[:, 2] <= 0) | (pred[:, 3] <= 0)
    pred = _fill_from_previous(pred, bad & ~np.isnan(gt).any(axis=1))  # NaN / w<=0 / h<=0 -> previous box
    pred[0] = gt[0]
    if vis is None and dataset.startswith("tnl2k"):
        # The TNL2K toolkit reads absent flags from its own annos/absent/<seq>.txt, which the
        # dataset folder lacks. On all 516,038 test rows those flags mark exactly the rows that are
        # 0,0,0,0: the 12 rows with w > 0 and h = 0 are present, hence invalid (a miss for success,
        # a hit for both precisions), not absent.
        vis = ~(gt == 0).all(axis=1)
    valid = _valid(gt, rule)
    iou = iou_xywh(pred, gt)
    e, ne = _centre_errors(pred, gt)
    iou[~valid], e[~valid], ne[~valid] = -1.0, -1.0, -1.0  # e = ne = -1 are HITS for both precisions
    if vis is not None:
        # absent frames are deleted from the numerator while N stays the full length: a miss for every metric
        iou[~vis], e[~vis], ne[~vis] = -1.0, np.inf, np.inf
        valid = valid & vis
    return iou, e, ne, valid


def curves(iou, e, ne, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Success (21,), precision (51,) and normalised-precision (51,) curves as fractions of n_frames."""
    if n_frames <= 0:
        raise ValueError("sequence length for the curves must be > 0")
    # counts by binary search in the sorted values (NaN sorts last: never <= d, and IoU has no NaN)
    s = (len(iou) - np.searchsorted(np.sort(iou), SUCCESS_THRESHOLDS, side="right")) / n_frames  # IoU > t, strict
    p = np.searchsorted(np.sort(e), PRECISION_THRESHOLDS, side="right") / n_frames  # e <= d
    q = np.searchsorted(np.sort(ne), NORM_PRECISION_THRESHOLDS, side="right") / n_frames
    return s, p, q


def sequence_curves(pred, gt, visible=None, *, protocol="pytracking", dataset="", valid_rule=None,
                    exclude_invalid_frames=False, name="sequence"):
    """The three curves of one sequence. N_s = all gt rows, or the valid frames only with
    pytracking's `exclude_invalid_frames` option (pytracking protocol only)."""
    if exclude_invalid_frames and protocol != "pytracking":
        raise ValueError("exclude_invalid_frames is an option of the pytracking protocol only")
    iou, e, ne, valid = frame_errors(pred, gt, visible, protocol=protocol, dataset=dataset, valid_rule=valid_rule, name=name)
    n = int(valid.sum()) if exclude_invalid_frames else len(iou)
    if n == 0:
        raise ValueError(f"{name}: no valid frame to score")
    return curves(iou, e, ne, n)


@dataclass
class Scores:
    """Curves of M sequences under one protocol; every number derived from them is in percent."""
    names: list[str]
    success: np.ndarray  # (M, 21) fractions
    precision: np.ndarray  # (M, 51)
    norm_precision: np.ndarray  # (M, 51)
    protocol: str
    valid_rule: str
    dataset_tag: str
    benchmark: str = ""
    skipped: list[str] = field(default_factory=list)  # sequences without a result file (skip_missing)
    runs: int = 1  # > 1: per-sequence curves averaged over several runs (merge_runs)

    def _kept(self, curve: np.ndarray) -> np.ndarray:
        # MATLAB (plot_draw_save.m) averages only over sequences whose whole curve is non-zero,
        # each curve type on its own; pytracking averages over all sequences.
        if self.protocol == "official":
            kept = curve[curve.sum(1) > np.finfo(float).eps]
            return kept if len(kept) else np.zeros_like(curve[:1])  # nothing left: 0, not MATLAB's NaN
        return curve

    def mean_curves(self) -> dict[str, np.ndarray]:
        """Curves averaged over sequences (percent), for plots; x values in `thresholds()`."""
        return {k: 100 * self._kept(getattr(self, k)).mean(0) for k in ("success", "precision", "norm_precision")}

    @staticmethod
    def thresholds() -> dict[str, np.ndarray]:
        return {"success": SUCCESS_THRESHOLDS, "precision": PRECISION_THRESHOLDS, "norm_precision": NORM_PRECISION_THRESHOLDS}

    def overall(self) -> dict[str, float]:
        c = self.mean_curves()
        return {"auc": float(c["success"].mean()), "precision": float(c["precision"][_I20]),
                "norm_precision": float(c["norm_precision"][_I20]),
                "op50": float(c["success"][_I50]), "op75": float(c["success"][_I75])}

    def per_sequence(self) -> pd.DataFrame:
        """One row per sequence, columns METRICS, in percent."""
        import pandas as pd  # here, not at the top: tracking and scoring run where pandas is absent (a stock GPU image)

        return pd.DataFrame({"auc": 100 * self.success.mean(1), "precision": 100 * self.precision[:, _I20],
                             "norm_precision": 100 * self.norm_precision[:, _I20],
                             "op50": 100 * self.success[:, _I50], "op75": 100 * self.success[:, _I75]},
                            index=pd.Index(self.names, name="sequence"))

    def header(self) -> str:
        """The line every printed table starts with: which convention produced the numbers."""
        skip = f", {len(self.skipped)} skipped (no result file)" if self.skipped else ""
        runs = f" runs={self.runs} (merged)" if self.runs > 1 else ""
        # the synthetic suites must never be read as the real benchmarks
        stand_in = f" ({STAND_IN}, not the real benchmark)" if self.benchmark.startswith("synthetic") else ""
        return (f"[{self.benchmark or 'benchmark'}] protocol={self.protocol} valid_rule={self.valid_rule} "
                f"dataset_tag={self.dataset_tag!r} sequences={len(self.names)}{skip}{runs}{stand_in}")

    def table(self, per_sequence: bool = False) -> str:
        import pandas as pd

        df = self.per_sequence() if per_sequence else pd.DataFrame([self.overall()], index=["overall"])
        return self.header() + "\n" + df.round(2).to_string()

    def to_json(self) -> dict:
        per = self.per_sequence()
        return {"benchmark": self.benchmark, "protocol": self.protocol, "overall": self.overall(),
                "per_sequence": {n: {k: float(v) for k, v in row.items()} for n, row in per.iterrows()},
                "valid_rule": self.valid_rule, "dataset_tag": self.dataset_tag,
                "n_sequences": len(self.names), "skipped": list(self.skipped), "runs": self.runs,
                "curves": {k: [round(float(x), 4) for x in v] for k, v in self.mean_curves().items()},
                "thresholds": {k: v.tolist() for k, v in self.thresholds().items()}}


def score_sequences(predictions, sequences, *, protocol: str = "pytracking", valid_rule: str | None = None,
                    dataset_tag: str | None = None, exclude_invalid_frames: bool = False,
                    benchmark: str = "", skipped=()) -> Scores:
    """Score predictions {sequence name: (N, 4) boxes} against `Sequence`s (those without a
    prediction must have been dropped by the caller, e.g. `results.load_results`).
    dataset_tag overrides each sequence's own `dataset` tag (the pytracking protocol keys on it)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    rule = valid_rule or DEFAULT_VALID_RULE[protocol]
    if rule not in VALID_RULES:
        raise ValueError(f"valid_rule must be one of {VALID_RULES}, got {rule!r}")
    sequences = list(sequences)
    if not sequences:
        raise ValueError("no sequences to score")
    missing = [s.name for s in sequences if s.name not in predictions]
    if missing:
        raise KeyError(f"no predictions for {len(missing)} sequences: {', '.join(missing[:20])}")
    out = [sequence_curves(predictions[s.name], s.boxes, s.visible, protocol=protocol,
                           dataset=dataset_tag if dataset_tag is not None else s.dataset, valid_rule=rule,
                           exclude_invalid_frames=exclude_invalid_frames, name=s.name) for s in sequences]
    tags = dataset_tag if dataset_tag is not None else ",".join(sorted({s.dataset for s in sequences}))
    s, p, q = (np.stack(x) for x in zip(*out))
    return Scores([x.name for x in sequences], s, p, q, protocol, rule, tags, benchmark, list(skipped))


def merge_runs(runs) -> Scores:
    """pytracking's `merge_results=True` (what MMTrack publishes with): several runs of one tracker
    (<param>_000, <param>_001, ...) scored on the same sequences; each sequence's curves are
    averaged over the runs, then the usual average over sequences applies."""
    runs = list(runs)
    if not runs:
        raise ValueError("merge_runs: no runs")
    first = runs[0]
    for r in runs[1:]:
        if sorted(r.names) != sorted(first.names):
            raise ValueError("merge_runs: the runs were scored on different sequences")
        if (r.protocol, r.valid_rule, r.dataset_tag) != (first.protocol, first.valid_rule, first.dataset_tag):
            raise ValueError("merge_runs: the runs were scored under different protocols, valid rules or tags")
    order = [{n: i for i, n in enumerate(r.names)} for r in runs]
    idx = [[o[n] for n in first.names] for o in order]  # align every run to the first one's order
    mean = {k: np.mean([getattr(r, k)[i] for r, i in zip(runs, idx)], axis=0)
            for k in ("success", "precision", "norm_precision")}
    return Scores(list(first.names), mean["success"], mean["precision"], mean["norm_precision"], first.protocol,
                  first.valid_rule, first.dataset_tag, first.benchmark, list(first.skipped),
                  runs=sum(r.runs for r in runs))
