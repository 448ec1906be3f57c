"""The work folder of a study: where trainings, raw results and scores go, and the one schema
of the evaluate.json that marks a scored run. A leaf module: of dmtrack it imports only io.

    <work>/train/<model>/seed<N>/                   model.pth, last.pth, losses.csv, run.json
        model = <variant> (the chain's protocol: fine-tuned from the base tracker or the pretrained file),
                <variant>-<arm> (an arm of the chain, `ARMS`: -scratch trained from random initialisation,
                -authors and -authors-noscramble under reading=authors, fine-tuned from the same base tracker),
                base (the base tracker every variant is fine-tuned from: ViT + CE + centre head)
    <work>/results/<benchmark>/<tracker>/<param>/   raw results (pytracking layout), evaluate.json,
                                                    scores_pytracking.json, scores_official.json,
                                                    spread/<seq>.csv (diffusion models: sample spread per frame)
        tracker = dmtrack-<model>, param = <run tag>_seed<N>  (a trained model at k samplings: an EvalRun's
                  folder, EvalRun.tag its run tag), run tag =
            k<k>            k chains of the config's sampling_steps, final masks averaged (test_average final)
            k<k>c           one chain of k steps, its x0 predictions averaged (test_average chain)
            k<k>m           one chain of k steps, the head's maps of each step averaged (test_average maps: the authors')
            k<k>_steps<n>   final reading with n DDIM steps per chain instead of the config's
            k<k>_eta<e>     sampled with DDIM eta e instead of the config's sampler_eta (0 = deterministic DDIM)
            k<k>_mislead, k<k>_uninf   tracked with the robustness test's misleading / uninformative
                            sentence instead of the true one (dmtrack.data.sentences)
        tracker = static | oracle-jitter, param = seed<N> (the trivial trackers)
        tracker = <name given to --other>, param = raw    (another tracker's results, re-scored)

`dmtrack evaluate --out DIR` and `dmtrack score --baselines-all --out ROOT` write the same
files, so any folder they make can be read back by the report.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_write_json

RUN_META = "evaluate.json"
OTHER_PARAM = "raw"


BASE = "base"  # the base tracker's training (dmtrack.config: its variant)
SCRATCH_ARM, AUTHORS_ARM, NOSCRAMBLE_ARM = "scratch", "authors", "authors-noscramble"
# The arms of a chain (dmtrack.chain.plan): a variant trained beside the chain's own trainings ('' arm), each with
# the config overrides that make it differ (after the chain's own: an arm without `pretrained` is fine-tuned from the
# same base tracker). Its models are <variant>-<arm> (train/ and the results' tracker dmtrack-<variant>-<arm>).
ARMS = {
    "": {},  # the chain's protocol
    SCRATCH_ARM: {"pretrained": "none"},  # from random initialisation (config.SCRATCH): today's protocol, measured beside the new one
    AUTHORS_ARM: {"reading": "authors"},  # the first author's code's reading (docs/method.md, "reading = authors")
    NOSCRAMBLE_ARM: {"reading": "authors", "authors_view_scramble": False},  # the same without its two `.view` scrambles
}


def model_name(variant: str, arm: str = "") -> str:
    """The name of a trained model's folder: the variant, suffixed with its arm ('' = the chain's protocol)."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {', '.join(map(repr, ARMS))}, got {arm!r}")
    return f"{variant}-{arm}" if arm else variant


def step_arm(step: str) -> str:
    """The arm whose model a chain step trains or evaluates ('10_train/full-authors_seed0' -> 'authors'; '' for the
    chain's own trainings, the base tracker and the other steps): a variant's name has no '-', an arm's no '_'."""
    return max((a for a in ARMS if a and f"-{a}_" in step), key=len, default="")


def train_dir(work, variant: str, seed: int, arm: str = "") -> Path:
    return Path(work) / "train" / model_name(variant, arm) / f"seed{seed}"


def model_path(work, variant: str, seed: int, arm: str = "") -> Path:
    """The final weights of one training (what evaluation loads)."""
    return train_dir(work, variant, seed, arm) / "model.pth"


def results_root(work) -> Path:
    return Path(work) / "results"


def tracker_name(variant: str, arm: str = "") -> str:
    return f"dmtrack-{model_name(variant, arm)}"


SENTENCE_TAGS = {"true": "", "misleading": "_mislead", "uninformative": "_uninf"}  # dmtrack.data.sentences


def eta_override(eta: float, config_eta: float) -> float | None:
    """The EvalRun.eta of a run sampled with DDIM eta `eta` by a model whose config says `config_eta`: None
    when they are equal (the config's sampler: Table 2's folders, tag without _eta), else `eta`."""
    return None if float(eta) == float(config_eta) else float(eta)


def run_tag(k: int, average: str = "final", steps: int | None = None, sentence: str = "true",
            eta: float | None = None) -> str:
    """How a trained model was run: k samplings, the reading of "k samplings" (final | chain | maps), for the
    final reading an override of the DDIM steps per chain (None = the config's), the sentence the
    sequences were tracked with (true | misleading | uninformative: the robustness test), and an
    override of the sampler's DDIM eta (None = the config's sampler_eta)."""
    if eta is not None and not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    if average not in ("final", "chain", "maps"):
        raise ValueError(f"average must be final, chain or maps, got {average!r}")
    if average != "final" and steps is not None:
        raise ValueError(f"the {average} reading has k steps; a steps override applies to the final reading only")
    if sentence not in SENTENCE_TAGS:
        raise ValueError(f"sentence must be one of {', '.join(SENTENCE_TAGS)}, got {sentence!r}")
    return (f"k{k}" + {"final": "", "chain": "c", "maps": "m"}[average] + (f"_steps{steps}" if steps is not None else "")
            + (f"_eta{eta:g}" if eta is not None else "") + SENTENCE_TAGS[sentence])


def baseline_param(seed: int) -> str:
    return f"seed{seed}"


def results_dir(root, benchmark: str, tracker: str, param: str) -> Path:
    """<root>/<benchmark>/<tracker>/<param> (root = <work>/results)."""
    return Path(root) / benchmark / tracker / param


@dataclass(frozen=True)
class EvalRun:
    """One evaluation of a trained model, i.e. what names its results: the variant and the seed of its
    training, and how it was run (see run_tag). Hashable, so a plan can key its evaluations by it; an
    impossible run (a steps override with the chain reading, an unknown sentence) fails when made.

        EvalRun("full", 0, 5).folder(work, "lasot")  # <work>/results/lasot/dmtrack-full/k5_seed0"""
    variant: str
    seed: int
    k: int
    average: str = "final"  # the reading of "k samplings": final | chain | maps
    steps: int | None = None  # DDIM steps per chain, final reading only (None = the config's sampling_steps)
    sentence: str = "true"  # true | misleading | uninformative (the robustness test)
    eta: float | None = None  # the sampler's DDIM eta (None = the config's sampler_eta)
    arm: str = ""  # which training of the variant: '' = the chain's protocol, else one of ARMS

    def __post_init__(self):
        run_tag(self.k, self.average, self.steps, self.sentence, self.eta)  # checks the combination
        model_name(self.variant, self.arm)

    @property
    def tag(self) -> str:
        return run_tag(self.k, self.average, self.steps, self.sentence, self.eta)

    @property
    def model(self) -> str:
        """The trained model's name (its folder under train/)."""
        return model_name(self.variant, self.arm)

    @property
    def param(self) -> str:
        return f"{self.tag}_seed{self.seed}"

    def folder(self, work, benchmark: str) -> Path:
        """<work>/results/<benchmark>/dmtrack-<model>/<tag>_seed<N>."""
        return results_dir(results_root(work), benchmark, tracker_name(self.variant, self.arm), self.param)

    def model_path(self, work) -> Path:
        return model_path(work, self.variant, self.seed, self.arm)


def scores_path(folder, protocol: str) -> Path:
    return Path(folder) / f"scores_{protocol}.json"


def spread_dir(folder) -> Path:
    return Path(folder) / "spread"


def spread_path(folder, seq_name: str) -> Path:
    """Per-frame sample spread of one sequence (one value per tracked frame, frames 2..n)."""
    return spread_dir(folder) / f"{seq_name}.csv"


def score_files(folder) -> list[Path]:
    """Every scores_<protocol>.json of a results folder, sorted."""
    return sorted(Path(folder).glob("scores_*.json"))


# --- evaluate.json: one record per results folder ---------------------------------------------------
# benchmark: loader name; variant: Table 2 variant or the tracker's name; samples: k (None for trackers
# without diffusion samplings); seed; max_frames; and what identifies the inputs: weights (checkpoint,
# weights_sha256), data (data_root, and `inputs`: {sequence: fingerprint of its first box, sentence, frame
# count and first image's size}, dmtrack.track.runner.sequence_inputs; what a resume compares, not paths).
# Trained models add average (final | chain), steps (the override of the DDIM steps per chain, None =
# the config's) and sampling_steps (the steps each chain ran); a record without them is a final-reading run.
# sentence: true | misleading | uninformative (the robustness test's; a record without it is a true-sentence run).
# reading: the checkpoint config's paper | authors (a record without it is a paper-reading run).
RUN_META_KEYS = ("benchmark", "variant", "samples", "seed")


def write_run_meta(folder, meta: dict) -> Path:
    """Write <folder>/evaluate.json (atomically); `meta` must hold at least RUN_META_KEYS."""
    missing = [k for k in RUN_META_KEYS if k not in meta]
    if missing:
        raise KeyError(f"evaluate.json needs {', '.join(missing)}")
    path = Path(folder) / RUN_META
    atomic_write_json(path, meta)
    return path


def read_run_meta(folder) -> dict | None:
    """<folder>/evaluate.json as a dict, or None when the folder has none."""
    path = Path(folder) / RUN_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable ({e}); delete the folder to redo that run") from None


def scored_runs(root):
    """(folder, meta) of every results folder under <root> = <work>/results, sorted by path."""
    for path in sorted(Path(root).glob(f"*/*/*/{RUN_META}")):
        yield path.parent, read_run_meta(path.parent)
