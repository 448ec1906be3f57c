"""What the DMTrack paper reports, and other trackers' published numbers, as typed data.

The project keeps its own copy of these facts (users and tests do not have the study's
notes). Values are in percent, named like `dmtrack.eval` names its metrics: `auc`
(success AUC), `precision` (PRE, at 20 px), `norm_precision` (P_norm). `None` = not stated.

Table 2 lost its check marks when the paper's PDF was turned into text; each row's
identity (trained variant, test-time k) is reconstructed from the differences that
Section 4.3 states, and `how` says how. `claim_rows_match` below recomputes every
stated difference from the rows, so the reconstruction is checked, not trusted.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

METRICS = ("auc", "precision", "norm_precision")
BENCHMARKS = ("lasot", "lasot_ext", "tnl2k", "otb_lang")
BENCHMARK_NAMES = {"lasot": "LaSOT", "lasot_ext": "LaSOT_ext", "tnl2k": "TNL2K", "otb_lang": "OTB-Lang"}
PAPER = "Diffusion Mask-Driven Visual-language Tracking (DMTrack), IJCAI 2024"


@dataclass(frozen=True)
class Scores:
    auc: float | None
    precision: float | None
    norm_precision: float | None = None

    def get(self, metric: str) -> float | None:
        return getattr(self, metric)


# --- Table 1: DMTrack-256, single diffusion sampling at test time (Sec. 4.2 text) ---------
# The body of Table 1 was lost in extraction; these are the numbers the text states.
TABLE1_DMTRACK = {
    "tnl2k": Scores(57.7, 59.9),
    "lasot": Scores(65.5, 70.9),
    "lasot_ext": Scores(45.3, 51.1),
    "otb_lang": Scores(68.5, 89.7),
}
TABLE1_K = 1  # "we only compared the results of single sampling during the testing phase"


# --- Table 2: ablations on OTB-Lang ---------------------------------------------------------
@dataclass(frozen=True)
class Table2Row:
    no: int
    variant: str  # a key of dmtrack.config.VARIANTS
    k: int  # test-time diffusion samplings (1 for no_diffusion: nothing is sampled)
    scores: Scores
    how: str  # how the row's identity was reconstructed

    @property
    def label(self) -> str:
        return f"#{self.no} {self.variant}" + ("" if self.variant == "no_diffusion" else f" k={self.k}")


TABLE2 = (
    Table2Row(1, "no_diffusion", 1, Scores(67.2, 88.0, 82.5), "row 9 minus (3.3, 4.6, 3.5) as the diffusion ablation states"),
    Table2Row(2, "not_mask_driven", 5, Scores(66.9, 88.4, 82.5), "row 9 minus (3.6, 4.2, 3.5) as the mask-driven ablation states"),
    Table2Row(3, "no_language", 5, Scores(68.7, 89.8, 83.5),
              "by elimination (k=5 presumed); the stated drop (1.6, 1.1, 1.0) matches no pair of rows"),
    Table2Row(4, "no_gt_ce", 1, Scores(69.1, 90.1, 84.0), "'similar to full in the initial sampling' (row 8)"),
    Table2Row(5, "no_gt_ce", 5, Scores(69.3, 90.5, 84.3), "row 9 minus (1.2, 2.1, 1.7) as the GT-CE ablation states"),
    Table2Row(6, "single_sample_train", 1, Scores(69.0, 90.3, 84.2), "row 7 plus (1.2, 0.7, 1.0): five samplings hurt this model"),
    Table2Row(7, "single_sample_train", 5, Scores(67.8, 89.6, 83.2), "row 9 minus (2.7, 3.0, 2.8) as the double-sample ablation states"),
    Table2Row(8, "full", 1, Scores(69.3, 90.9, 84.5), "row 1 plus (2.1, 2.9, 2.0) as the diffusion ablation states"),
    Table2Row(9, "full", 5, Scores(70.5, 92.6, 86.0), "the best row"),
)
TABLE2_BENCHMARK = "otb_lang"

DISCREPANCIES = (
    "The full model's single-sampling OTB-Lang result differs between Table 1 (AUC 68.5, PRE 89.7) "
    "and Table 2 row 8 (AUC 69.3, PRE 90.9); the paper does not say why. Both are shown.",
    "The language ablation's stated drop (1.6 AUC, 1.1 PRE, 1.0 P_norm) matches no pair of Table 2 rows; "
    "row 3 is identified by elimination, and full k=5 minus row 3 is (1.8, 2.8, 2.5).",
)


def table2_row(no: int) -> Table2Row:
    return TABLE2[no - 1]


# --- Section 4.3: the claims, as pairs of Table 2 rows -----------------------------------
@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    text: str  # the claim in the paper's words (shortened)
    better: int  # Table 2 row that the paper says is better (or similar, for kind="similar")
    worse: int
    stated: tuple | None  # stated (auc, precision, norm_precision) drop of `worse` vs `better`
    kind: str = "better"  # "better": better > worse; "similar": no real difference
    note: str = ""

    def row_difference(self) -> tuple:
        """The difference the paper's own Table 2 rows give (better - worse), rounded to 0.1."""
        a, b = table2_row(self.better).scores, table2_row(self.worse).scores
        return tuple(round(a.get(m) - b.get(m), 1) for m in METRICS)


CLAIMS = (
    Claim("diffusion_k1", "Diffusion helps (k=1)",
          "without the diffusion model: 2.1% lower AUC, 2.9% lower PRE, 2% lower P_norm than with a single sampling",
          better=8, worse=1, stated=(2.1, 2.9, 2.0)),
    Claim("diffusion_k5", "Diffusion helps (k=5)",
          "without the diffusion model: 3.3% AUC, 4.6% PRE, 3.5% P_norm lower than with five samplings",
          better=9, worse=1, stated=(3.3, 4.6, 3.5)),
    Claim("mask_driven", "Mask-driven localisation helps",
          "using only diffusion mask features for localisation: 3.6% AUC, 4.2% PRE, 3.5% P_norm lower",
          better=9, worse=2, stated=(3.6, 4.2, 3.5),
          note="the paper attributes it to first-frame sentences that become inaccurate as the target moves"),
    Claim("language", "Language helps",
          "a visual-only tracker: 1.6% AUC, 1.1% PRE, 1% P_norm lower than the visual-language tracker",
          better=9, worse=3, stated=(1.6, 1.1, 1.0),
          note="the stated numbers match no pair of Table 2 rows; the rows give (1.8, 2.8, 2.5)"),
    Claim("gt_ce_k1", "GT-CE: no difference at k=1",
          "without candidate elimination: similar performance in the initial sampling",
          better=8, worse=4, stated=None, kind="similar"),
    Claim("gt_ce_k5", "GT-CE helps (k=5)",
          "without candidate elimination, after five samplings: 1.2% AUC, 2.1% PRE, 1.7% P_norm lower",
          better=9, worse=5, stated=(1.2, 2.1, 1.7)),
    Claim("double_sample", "Double-sample training helps (k=5)",
          "trained with single sampling, tested with five: 2.7% AUC, 3% PRE, 2.8% P_norm lower",
          better=9, worse=7, stated=(2.7, 3.0, 2.8)),
    Claim("single_train_k", "Single-sample training: k=5 worse than k=1",
          "the single-sample-trained tracker loses 1.2% AUC, 0.7% PRE, 1% P_norm with five samplings vs one",
          better=6, worse=7, stated=(1.2, 0.7, 1.0)),
)


def claim_rows_match(claim: Claim, tol: float = 0.05) -> bool:
    """True when the claim's stated difference is exactly what its two rows give."""
    if claim.stated is None:
        return True
    return all(abs(d - s) <= tol for d, s in zip(claim.row_difference(), claim.stated))


def rows_matching(diff: tuple, tol: float = 0.05) -> list[tuple[int, int]]:
    """All ordered pairs (a, b) of Table 2 rows whose difference a - b equals `diff`."""
    out = []
    for a, b in permutations(TABLE2, 2):
        d = [a.scores.get(m) - b.scores.get(m) for m in METRICS]
        if all(abs(x - y) <= tol for x, y in zip(d, diff)):
            out.append((a.no, b.no))
    return out


# --- Other trackers' published numbers (Table 1 context; never re-typed as our results) ---
SOURCES = {  # short tag -> the citation the report prints under the table
    "RGBL": "Zhangyong-Tang/RGBL-Tracking-Results-Datasets-and-Methods (GitHub), README.md, Results tables (PR / NPR / SR)",
    "MMTrack": "Azong-HQU/MMTrack (GitHub), README.md",
    "UVLTrack": "OpenSpaceAI/UVLTrack (GitHub), README.md",
    "All-in-One": "983632847/All-in-One (GitHub), README.md",
    "OSTrack": "botaoye/OSTrack (GitHub), README.md",
}
RGBL = "RGBL"


@dataclass(frozen=True)
class Published:
    tracker: str
    venue: str
    scores: dict  # benchmark -> Scores
    source: str  # keys of SOURCES, "+"-joined
    note: str = ""


PUBLISHED = (
    Published("MMTrack", "TCSVT'24", {
        "tnl2k": Scores(58.6, 59.4, 75.2), "lasot": Scores(70.0, 75.7, 82.3),
        "lasot_ext": Scores(49.4, 55.3, 59.9), "otb_lang": Scores(70.5, 91.8)}, RGBL,
        "AUCs also in [MMTrack]"),
    Published("UVLTrack", "AAAI'24", {
        "tnl2k": Scores(64.9, 69.3), "lasot": Scores(71.4, 78.7), "otb_lang": Scores(71.1, 92.0)}, RGBL,
        "the TNL2K row is UVLTrack-L with NL+BBOX [UVLTrack]; UVLTrack-B: 63.1 / 66.7"),
    Published("JointNLT", "CVPR'23", {
        "tnl2k": Scores(56.9, 58.1), "lasot": Scores(60.4, 63.6), "otb_lang": Scores(65.3, 85.6)}, RGBL),
    Published("VLT_TT", "NeurIPS'22", {
        "tnl2k": Scores(53.1, 53.3), "lasot": Scores(67.3, 72.1), "lasot_ext": Scores(48.4, 55.9),
        "otb_lang": Scores(76.4, 93.1)}, RGBL,
        "[MMTrack] gives TNL2K 54.7 and OTB-Lang 74.0 AUC instead"),
    Published("All-in-One", "ICCV'23", {
        "tnl2k": Scores(55.3, 57.2), "lasot": Scores(71.7, 78.5, 82.4), "lasot_ext": Scores(54.5, 66.0),
        "otb_lang": Scores(71.0, 93.0)}, RGBL,
        "the re-released model in [All-in-One] scores higher (LaSOT 72.8 AUC)"),
    Published("CiteTracker", "ICCV'23", {
        "tnl2k": Scores(57.7, 59.6), "lasot": Scores(69.7, 75.7, 78.6), "otb_lang": Scores(69.6, 92.2, 85.1)}, RGBL),
    Published("DecoupleTNL", "ICCV'23", {
        "tnl2k": Scores(56.7, 56.0), "lasot": Scores(71.2, 75.3), "otb_lang": Scores(73.8, 94.8)}, RGBL,
        "listed as DecoupleNLT in the source"),
    Published("SNLT", "CVPR'21", {
        "lasot": Scores(54.0, 57.4, 63.6), "otb_lang": Scores(66.6, 84.8, 80.4)}, RGBL),
    Published("OSTrack-256 (vision only)", "ECCV'22", {
        "lasot": Scores(69.1, None), "tnl2k": Scores(54.3, None)}, "OSTrack+UVLTrack",
        "LaSOT AUC from [OSTrack], TNL2K AUC from [UVLTrack]"),
)


# --- Speed (Sec. 4.1). The paper states no parameter count and no FLOPs. ------------------
@dataclass(frozen=True)
class Speed:
    tracker: str
    fps: float | None  # None = not stated
    hardware: str
    source: str


SPEEDS = (
    Speed("DMTrack-256, k=1", 40.0, "NVIDIA RTX 3080",
          "paper Sec. 4.1: 'the single sample tracking speed is about 40 FPS'"),
    Speed("OSTrack-256", None, "RTX 2080Ti",
          "not stated in the DMTrack paper; botaoye/OSTrack's README names the GPU of its "
          "paper's speeds but gives them only in a figure"),
)
