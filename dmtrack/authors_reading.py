"""The paper, the authors' code and this study, one row per component: what the paper says (its sentence), what
the first author's released code does (its file and line), what dmtrack does under the paper reading and under
`reading=authors` (file and line here, found when the table is made, so they follow the code), and what the
choice does to the numbers where it was measured. The one place these rows live: docs/method.md's table is
written from them (`python -m dmtrack.authors_reading`), and the report's section "The paper, the authors'
code and this study" shows them with the chain's measurements (dmtrack.report.paper_vs_authors).
docs/authors_code.md discusses each row (#) at length.

The authors' code: github.com/923714892/Diffusion-Mask-Driven-Visual-language-Tracking at commit 7478015;
`A:` = its lib/, `E:` = its experiments/ostrack/ (y256 = E:vitb_text_ep300.yaml, y384 = E:vitb_text_ep384.yaml).
The paper's sentences are quoted from its text as extracted, lost ligatures ("fltering") kept.

    print(table_markdown())      # the component table, as docs/method.md holds it
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the folder holding dmtrack/ (and docs/ in a clone)
COMMIT = "7478015"  # the authors' commit read (2024-01-10)
# what the chain measures (dmtrack.report.paper_vs_authors: its comparisons' `measures`): every switch of the reading
# at once, the two `.view` scrambles alone, the authors' test-time averaging alone
MEASURES = {"reading": "authors - paper (every switch together, not this one alone)",
            "scramble": "scrambled - unscrambled (authors_view_scramble)",
            "averaging": "maps - final on the authors' models (test_average)"}


@dataclass(frozen=True)
class Component:
    no: int  # its row in docs/authors_code.md ("Component by component")
    name: str
    paper: str  # the paper's sentence, with its section
    authors: str  # what the authors' code does, with its file:line
    ours: str  # what dmtrack does under the paper reading ...
    ours_at: tuple  # ... and where: (path, a text found on exactly one line of it)
    switch: str  # what reading=authors does
    switch_at: tuple | None  # (path, text) of the switch or module; None: nothing to switch
    effect: str  # what the choice does, or may do, to the numbers, as far as known without the chain
    measured: str = ""  # a key of MEASURES: the chain comparison that includes it ('' = none)


CFG, AUTH, DM = "dmtrack/config.py", "dmtrack/model/authors.py", "dmtrack/model/dmtrack.py"
COMPONENTS = (
    Component(1, "sizes", 'Sec. 4.1: "a template patch of size 128×128 , and a search patch of size 256×256"',
              "a 24 x 24 token grid hard-coded (`A:models/ostrack/ostrack.py:71`, 237, 450): only y384, 192 / 384 at "
              "factor 5, runs (`E:vitb_text_ep384.yaml:11`)",
              "128 / 256 at factor 4; the grid follows the sizes", (CFG, "    template_size: int"),
              "the paper profile takes y384's 192 / 384 at factor 5; demo and smoke keep their sizes",
              ("dmtrack/experiments/paper.py", "authors = dict(template_size=192"),
              "the runnable model sees 2.25x the tokens of Table 1's DMTrack-256: not the model of Table 1. Not measured"),
    Component(2, "initialisation", 'Sec. 3.1: "We chose the simple and effcient ViT model as the visual encoder [...] '
              'and pre-train it using OSTrack"',
              "the whole OSTrack checkpoint, its centre head included, non-strict (`A:models/ostrack/ostrack.py:377`)",
              "the visual encoder only, strict on its blocks", ("dmtrack/model/weights.py", "def load_pretrained_backbone"),
              "`pretrained_head=true`: the head from the base tracker too", (CFG, "    pretrained_head: bool"),
              "a head that already tracks: a head start", "reading"),
    Component(3, "language encoder", 'Sec. 4.1: "use the base uncased version of BERT[...] as our language encoder"',
              "frozen but left in train mode: dropout on while training (`A:models/language_model/bert.py:277`)",
              "frozen, in eval mode", ("dmtrack/model/language.py", "class TextEncoder"),
              "`text_dropout=true`", (CFG, "    text_dropout: bool"),
              "noisier text features in training than at test", "reading"),
    Component(4, "fusion", 'Sec. 3.1: "we employ a Gated Cross-Attention mechanism"; Eq. 2',
              "no gate; a pre-LN block with an MLP and a 2-D position bias, H_x added twice, no padding mask "
              "(`A:models/ostrack/cross_attention.py:117`; `A:models/ostrack/ostrack.py:144`)",
              "gated, padding masked (Eq. 2)", ("dmtrack/model/fusion.py", "class GatedCrossAttention"),
              "`AuthorsCrossAttention`", (AUTH, "class AuthorsCrossAttention"),
              "language at full strength from the first step; padding dilutes short sentences", "reading"),
    Component(5, "schedule", 'Sec. 3.2, Eq. 3: "variance is controlled by noise schedule β_t ∈ (0, 1)"',
              "continuous cosine log-SNR in [-15, 15] (`A:models/ostrack/ostrack.py:388`)",
              "discrete cosine DDPM schedule, T = 1000", ("dmtrack/model/diffusion.py", "class DiffusionSchedule"),
              "`LogSNRSchedule`", (AUTH, "class LogSNRSchedule"),
              "with one sampling step it only sets the noise levels seen in training", "reading"),
    Component(6, "sampler, steps", 'Sec. 3.2: "a series of incremental denoising steps" (Eq. 5)',
              "ancestral, `num_sample_steps = 1` (`A:models/ostrack/ostrack.py:42`)",
              "DDIM, the profile's steps per chain", ("dmtrack/model/diffusion.py", "def sample_masks"),
              "`authors_sample`, `sampling_steps=1`", (AUTH, "def authors_sample"),
              "Table 2's five samplings cannot run without editing their line 42", "reading"),
    Component(7, "x0 reading", "not stated",
              "one output read as a logit (loss), clamped to [0, 1] (2nd pass) and through tanh (sampler) "
              "(`A:models/ostrack/ostrack.py:318`)",
              "x0 = tanh(l / 2) everywhere", ("dmtrack/model/diffusion.py", "def logits_to_x0"),
              "tanh in `authors_sample`; the clamp with `double_sample_clamp_inplace`", (AUTH, "def authors_sample"),
              "the 2nd training pass sees another function of the logits than the sampler", "reading"),
    Component(8, "denoiser", 'Sec. 3.2: "utilizes a Ushaped network f_θ to implement a series of incremental denoising '
              'steps, obtaining clean mask features"',
              "conv, one ResNet block, conv; PixelShuffle to 96 x 96; `seg.contiguous().view(B, 576, 768)` scrambles "
              "its tokens (`A:models/ostrack/ostrack.py:237`)",
              "a two-level U-Net on the mask", ("dmtrack/model/diffusion.py", "class MaskDenoiser"),
              "`AuthorsDenoiser`; `authors_view_scramble` switches the view", (AUTH, "class AuthorsDenoiser"),
              "the head's mask features lose their spatial correspondence (fact 2)", "scramble"),
    Component(9, "filter", 'Sec. 3.2: "select and redistribute attention to features with the highest responses while '
              'suppressing other response features"',
              "top-1 per channel of a score-weighted token, a rank-1 term, BatchNorm1d(576), residual; a 2nd `.view` "
              "(`A:models/ostrack/ostrack.py:458`)",
              "the top 25 % of the mask kept, the rest set to 0", ("dmtrack/model/filtering.py", "class FeatureFilter"),
              "`AuthorsFilter`; `authors_view_scramble` switches its view", (AUTH, "class AuthorsFilter"),
              "nothing is suppressed: a batch-normalised rank-1 term is added", "scramble"),
    Component(10, "GT mask", 'Sec. 3.2: "the ground truth values for the diffusion model are the ground truth bounding '
              'boxes"',
              "x, y, w, h floored on their own on 24 x 24 (`A:train/data/sampler.py:223`)",
              "the fraction of each cell the box covers", (DM, "def box_mask"),
              "`gt_mask=floored`", (CFG, 'gt_mask="floored"'),
              "a box under one cell wide gives an empty target", "reading"),
    Component(11, "GT-CE", 'Sec. 3.2: "In the later stages of training, the introduced Ground Truth Candidate '
              'Elimination module is utilized"',
              "whenever CE removes tokens, i.e. from CE's start (`A:models/ostrack/ostrack.py:155`)",
              "from `gt_ce_start_epoch`", (DM, "def mask_target"),
              "`gt_ce_start_epoch=0`", (CFG, "gt_ce_start_epoch=0,"),
              "most of the box can be zeroed by the end of CE's warm-up", "reading"),
    Component(12, "double sampling", 'Sec. 3.2: "during the initial sampling in the training phase, the noisy image '
              'is generated as completely random noise"',
              "1st input the empty mask noised to a random t; 2nd from an in-place `clamp_`, nothing detached "
              "(`A:models/ostrack/ostrack.py:181`)",
              "pure noise at T - 1; x0 re-noised; detached", (DM, "def _double_sample"),
              "`double_sample_first_input=empty_mask`, `double_sample_clamp_inplace`, no detach",
              (CFG, 'double_sample_first_input="empty_mask"'),
              "the clamp caps the 1st pass's mask loss (no cell below probability 0.5)", "reading"),
    Component(13, "loss choice", 'Sec. 3.2: "it randomly selects either the frst diffusion-sampled image, the second '
              'sampled image, or the average of both"',
              "a random pick among two full losses, box losses included (`A:train/actors/ostrack.py:39`)",
              "a pick among the masks, one head pass", (CFG, "    double_sample_mode: str"),
              "`double_sample_loss=full`", (CFG, "    double_sample_loss: str"),
              "twice the head's cost per step; 'mean' averages losses, not masks", "reading"),
    Component(14, "head inputs", 'Sec. 3.3: "we linearly combine the visual features with the diffused position mask"',
              "F_s + the 768-d mask features (`A:models/ostrack/ostrack.py:240`)",
              "H_x + a linear map of the filtered mask", (DM, "def _mask_head"),
              "`head_features=fused`", (CFG, "    head_features: str"), "the fused features feed the head", "reading"),
    Component(15, "structure loss", 'Sec. 3.3: "we introduced structural loss for loss computation on the target '
              'location mask"',
              "kernel 31 on 24 x 24, the BCE unweighted (`reduce='none'`) (`A:train/actors/ostrack.py:158`)",
              "weighted BCE + IoU over a window of 31 crop pixels (3 cells at 16 x 16)",
              ("dmtrack/model/losses.py", "def structure_loss"),
              "`struct_kernel=31`, `struct_bce_weighted=false`", (CFG, "    struct_bce_weighted: bool"),
              "31 cells on a 24 x 24 map average most of it: nearly flat edge weights", "reading"),
    Component(16, "loss weights", 'Sec. 3.3: "λ_iou = 2, λ_L1 = 5 and λ_M = 5"',
              "the same values; λ_M is the L1 weight (`A:train/actors/ostrack.py:145`)",
              "1, 2, 5, 5", (CFG, "    w_struct: float"), "the same", None,
              "none: the same values"),
    Component(17, "CE", 'Sec. 3.2: "We have adopted the early elimination module from OSTrack"',
              "blocks (5, 8, 11); y384 keeps 0.8 at each; tracking ranks by every template token "
              "(`A:models/ostrack/ostrack.py:317`)",
              "blocks (3, 6, 9) keeping 0.7, ranked by the template's centre", (CFG, "    ce_layers: tuple"),
              "`ce_test_template_range=all`; the paper profile also y384's layers and ratios",
              (CFG, "    ce_test_template_range: str"), "tracking ranks tokens unlike training", "reading"),
    Component(18, "recipe", 'Sec. 4.1: "Our model is trained with 100 epochs, each epoch with 60,000 image pairs"',
              "y384: 50 epochs, lr 1e-4 dropped at 45, batch 32, LaSOT only (`E:vitb_text_ep384.yaml:61`)",
              "the paper's 100 epochs, four training sets", (CFG, "    epochs: int"),
              "the paper profile takes y384's recipe; demo and smoke keep theirs",
              ("dmtrack/experiments/paper.py", "epochs=50, lr_drop_frac=0.9"),
              "half the paper's training, from a full OSTrack tracker. Not measured"),
    Component(19, "test-time averaging", 'Fig. 3: "we average the mask features obtained through multiple samplings"',
              "the head's score, size and offset maps averaged along one chain (`A:models/ostrack/ostrack.py:287`)",
              "`final`: k chains' final masks averaged (or `chain`)", (DM, "def _test_masks"),
              "`test_average=maps`", (DM, "def _authors_test_outputs"),
              "docs/method.md, 'Two readings of multiple samplings': final vs chain on one demo model", "averaging"),
    Component(20, "seeding", "not stated",
              "test-time noise unseeded (`A:models/ostrack/ostrack.py:278`)",
              "seeded per sequence", ("dmtrack/track/tracker.py", "torch.manual_seed(self.seed)"),
              "`test_seeded=false` (the chain seeds every evaluation anyway)", (CFG, "    test_seeded: bool"),
              "repeated evaluations differ. Not measured"),
    Component(21, "post-processing", 'Sec. 3.3: "the location with the highest classifcation score"',
              "Hann window, clip margin 10, no template update (`A:test/tracker/ostrack.py:110`)",
              "the same rules", ("dmtrack/track/tracker.py", "def hann2d"), "the same", None,
              "none expected"),
    Component(22, "text reading", 'Sec. 3.1: "we first tokenize the language description"',
              "test: `str()` of `np.loadtxt(..., delimiter=',')`, an array's text for a sentence with a comma; "
              "training: the text before its first comma (`A:test/evaluation/lasotdataset.py:46`)",
              "the whole first line, cleaned alike in training and tracking", ("dmtrack/data/files.py", "def read_description"),
              "not reproduced: a bug, not a reading", None, "sentences with commas differ. Not measured"),
    Component(23, "heat-map peak", 'Sec. 3.3: "utilized weighted focal loss for classifcation"',
              "the focal target peaks on the box centre rounded, OSTrack's `generate_heatmap` "
              "(`A:utils/heapmap_utils.py:23`)",
              "on the cell that holds the centre, the cell the box decoding reads",
              ("dmtrack/model/losses.py", "def gaussian_heatmap"),
              "`heatmap_peak=round`", (CFG, "    heatmap_peak: str"),
              "one cell off for a centre in the right or lower half of its cell; the offsets learn [-0.5, 0.5)", "reading"),
    Component(24, "crop at the image border", "not stated",
              "one image column (row) short where the crop reaches the right (bottom) edge, a zero one padded instead "
              "(`A:train/data/processing_utils.py:42`)",
              "every image pixel the crop covers", ("dmtrack/data/crop.py", "def crop_square"),
              "not reproduced: a bug, not a reading", None, "one pixel column or row of a border crop. Not measured"),
)

# the two facts about the authors' code that matter most, and how they were established (docs/authors_code.md, (a), (b))
FACTS = (
    ("The paper's 256 configuration cannot run.",
     "The authors' model hard-codes a 24 x 24 = 576-token search grid, that of a 384 crop: the position bias "
     "(`A:models/ostrack/ostrack.py:71`), the masks (`A:train/data/sampler.py:206`), `view(B, 576, 768)` (237), the "
     "test noise (278) and `BatchNorm1d(576)` (450). Established by running their cross-attention block "
     "(`A:models/ostrack/cross_attention.py`) with our torch as their line 144 calls it: 576 search tokens run, "
     "256 raise `RuntimeError: The size of tensor a (256) must match the size of tensor b (576)` at "
     "`cross_attention.py:83`. So y256, the paper's DMTrack-256, fails at `ostrack.py:144` in training and tracking "
     "alike; only y384 (192 / 384) runs."),
    ("The mask features reach the head spatially scrambled.",
     "`seg.contiguous().view(B, 576, 768)` (`A:models/ostrack/ostrack.py:237`) cuts the denoiser's (48, 96, 96) "
     "output into 576 runs of 768 consecutive elements: token i is channel i // 12, rows 8 (i mod 12) to "
     "8 (i mod 12) + 7, all 96 columns, whatever grid cell it stands for. The filter's "
     "`x.view(B, C, -1).transpose(1, 2)` (458) reinterprets memory once more. Established by viewing "
     "`torch.arange(48*96*96).view(1, 48, 96, 96)` the same way and reading each token's channel, rows and "
     "columns off its values (tests/test_authors.py checks `mask_tokens`, the view `AuthorsDenoiser` takes, the same "
     "way). `authors_view_scramble=false` gives the spatially correct tokens instead, so the chain measures the "
     "scramble's effect alone."),
)


def source_line(path: str, text: str) -> int:
    """The line (1-based) of `path` (relative to the repository root) holding `text`; a ValueError unless
    exactly one line does (an anchor that moved or is ambiguous must be fixed here, not guessed)."""
    lines = (ROOT / path).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    if len(hits) != 1:
        raise ValueError(f"{path}: {len(hits)} lines hold {text!r} (dmtrack.authors_reading needs exactly one)")
    return hits[0]


def where(at: tuple | None) -> str:
    return f"`{at[0]}:{source_line(*at)}`" if at else "-"


def table_markdown(measured: dict | None = None) -> str:
    """The component table in markdown; `measured` {MEASURES key: text} fills the last column with what a chain
    measured (dmtrack.report.paper_vs_authors), else it names the comparison that measures each row."""
    measured = measured or {}
    rows = ["| # | component | paper | authors' code | dmtrack (paper reading) | `reading=authors` | effect on the numbers | measured |",
            "|---|---|---|---|---|---|---|---|"]
    for c in COMPONENTS:
        got = measured.get(c.measured, MEASURES.get(c.measured, "-"))
        rows.append(f"| {c.no} | {c.name} | {c.paper} | {c.authors} | {c.ours} ({where(c.ours_at)}) | {c.switch}"
                    + (f" ({where(c.switch_at)})" if c.switch_at else "") + f" | {c.effect} | {got} |")
    return "\n".join(rows)


def facts_markdown() -> str:
    return "\n".join(f"{i}. **{title}** {text}" for i, (title, text) in enumerate(FACTS, 1))


BEGIN, END = "<!-- authors_reading: begin (written by python -m dmtrack.authors_reading) -->", "<!-- authors_reading: end -->"


def docs_block() -> str:
    """What docs/method.md holds between BEGIN and END."""
    return "\n\n".join([BEGIN, facts_markdown(), table_markdown(), END])


def write_docs(path=ROOT / "docs" / "method.md") -> bool:
    """Rewrite the block between BEGIN and END of `path`; True when it changed."""
    text = Path(path).read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path}: no {BEGIN} ... {END} block")
    new = pattern.sub(lambda _: docs_block(), text)
    Path(path).write_text(new)
    return new != text


if __name__ == "__main__":
    print("docs/method.md " + ("rewritten" if write_docs() else "unchanged"), file=sys.stderr)
