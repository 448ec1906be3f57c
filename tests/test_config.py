"""Config validation: every kind of out-of-range value is refused when the Config is built,
with an error naming the key, the value and the allowed range."""
import dataclasses
import re

import pytest

from dmtrack.config import (AUTO_KEYS, CHOICES, PROFILES, RANGES, VARIANTS, Config, apply_overrides, config_from_dict,
                            load_config, parse_overrides)

PAPER = load_config("paper", "full")


def refused(key, value, allowed, **overrides):
    """The paper config with `overrides` must raise a ValueError naming key = value and the range."""
    with pytest.raises(ValueError, match=re.escape(f"config key {key!r} = {value!r} is out of range; allowed: {allowed}")):
        PAPER.replace(**overrides)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_profile_and_variant_validates(profile, variant):
    cfg = load_config(profile, variant)
    assert cfg.validate() is cfg
    assert config_from_dict(cfg.to_dict()) == cfg  # a checkpoint's saved config rebuilds (lists back to tuples)


def test_every_key_has_a_rule():
    # a new numeric key must get a range, a new string key a choice list or a rule in validate
    # (a key that may be "auto" is checked as the number it otherwise is: AUTO_KEYS)
    kinds = {f.name: AUTO_KEYS.get(f.name) or type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)}
    assert set(RANGES) == {k for k, t in kinds.items() if t in (int, float)}
    assert {k for k, t in kinds.items() if t is str} - set(CHOICES) == {"device", "text_encoder", "pretrained"}


@pytest.mark.parametrize("key,value,allowed", [
    ("epochs", -1, "[1, inf)"),  # used to write an untrained model with exit 0
    ("epochs", 0, "[1, inf)"),
    ("batch_size", 0, "[1, inf)"),  # used to be a bare ZeroDivisionError
    ("depth", 0, "[1, inf)"),
    ("sampling_steps", 0, "[1, inf)"),
    ("test_samples", 0, "[1, 100]"),
    ("test_samples", 101, "[1, 100]"),  # k chains run as one batch per frame: k = 10**6 used to run out of memory
    ("text_max_len", 1, "[2, 512]"),  # [CLS] and [SEP] alone need 2
    ("seed", -3, "[0, inf)"),
])
def test_positive_counts(key, value, allowed):
    refused(key, value, allowed, **{key: value})


@pytest.mark.parametrize("key,value,allowed", [
    ("ce_keep_ratio", 0.0, "(0, 1]"), ("ce_keep_ratio", 1.2, "(0, 1]"),
    ("filter_topk", 0.0, "(0, 1]"), ("flip_prob", 1.5, "[0, 1]"), ("lr_drop_frac", -0.1, "[0, 1]"),
    ("drop_path_rate", 1.0, "[0, 1)"), ("sampler_eta", 2.0, "[0, 1]"), ("brightness_jitter", -0.2, "[0, 1]"),
])
def test_probabilities_and_fractions(key, value, allowed):
    refused(key, value, allowed, **{key: value})


@pytest.mark.parametrize("key,value", [("lr", -1e-4), ("backbone_lr", -1e-5), ("weight_decay", -1.0), ("grad_clip", -0.1),
                                       ("num_workers", -1), ("frame_cache_mb", -1), ("text_cache", -5),
                                       ("checkpoint_every", -10)])
def test_non_negative(key, value):
    refused(key, value, "[0, inf)", **{key: value})
    load_config("paper", **{key: 0 if isinstance(value, int) else 0.0})  # 0 is allowed (off / frozen)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers(value):
    # NaN fails every comparison and the upper end is open at inf, so both are refused
    with pytest.raises(ValueError, match=r"'lr' = (nan|inf) is out of range; allowed: \[0, inf\)"):
        load_config("paper", lr=value)


@pytest.mark.parametrize("key,value", [("beta_schedule", "quadratic"), ("double_sample_mode", "both"),
                                       ("ce_template_range", "ctr"), ("double_sample_input", "noise"),
                                       ("head_features", "both"), ("profile", "tiny"), ("variant", "no_text")])
def test_enumerated_strings(key, value):
    refused(key, value, " | ".join(CHOICES[key]), **{key: value})


def test_device():
    for ok in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_config("smoke", device=ok).device == ok
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        refused("device", bad, "auto | cpu | cuda | cuda:N | mps", device=bad)


def test_ce_layers_inside_depth_and_increasing():
    refused("ce_layers", (3, 6, 12), "increasing block indices in [0, depth) = [0, 12)", ce_layers=(3, 6, 12))
    refused("ce_layers", (-1,), "increasing block indices in [0, depth) = [0, 12)", ce_layers=(-1,))
    refused("ce_layers", (6, 3), "increasing block indices in [0, depth) = [0, 12)", ce_layers=(6, 3))
    refused("ce_layers", (3, 3), "increasing block indices in [0, depth) = [0, 12)", ce_layers=(3, 3))
    # the paper's CE layers 3, 6, 9 do not fit a 4-block model: refused now, not hours into training
    refused("ce_layers", (3, 6, 9), "increasing block indices in [0, depth) = [0, 4)", depth=4)
    assert load_config("paper", depth=4, ce_layers=(1, 3)).ce_layers == (1, 3)
    assert load_config("paper", ce_layers=()).ce_layers == ()  # no candidate elimination at all


def test_divisibility():
    refused("embed_dim", 100, "a multiple of num_heads (12)", embed_dim=100)  # 100 / 12 heads
    refused("embed_dim", 36, "a multiple of fusion_heads (8)", embed_dim=36, num_heads=12)  # 36 / 12 ok, 36 / 8 not
    refused("template_size", 120, "a multiple of patch_size (16)", template_size=120)
    refused("search_size", 250, "a multiple of patch_size (16)", search_size=250)
    refused("head_channels", 100, "a multiple of 8 (the head halves it three times)", head_channels=100)
    refused("denoiser_channels", 9, "even (the sinusoidal timestep embedding has sin and cos halves)", denoiser_channels=9)
    refused("struct_kernel", 4, "0 (auto) or odd (a centred window)", struct_kernel=4)
    assert load_config("paper", struct_kernel=5).struct_kernel == 5


def test_rules_between_keys():
    # 60000 pairs of 64 -> 937 steps; 32 pairs in batches of 64 -> none
    refused("pairs_per_epoch", 32, ">= batch_size (64): else no step per epoch", pairs_per_epoch=32)
    assert load_config("paper", pairs_per_epoch=64).pairs_per_epoch == 64
    refused("diffusion_timesteps", 4, ">= sampling_steps (5)", diffusion_timesteps=4)
    assert load_config("paper", diffusion_timesteps=5).diffusion_timesteps == 5


@pytest.mark.parametrize("ratios", [{"lasot": -1.0, "tnl2k": 1.0}, {"lasot": 0.0}, {}, {"lasot": "1"},
                                    {"lasot": float("nan")}, {"lasot": True}])
def test_train_dataset_ratios(ratios):
    refused("train_datasets", ratios, "{name: ratio} with every ratio >= 0 and at least one > 0", train_datasets=ratios)


def test_types():
    with pytest.raises(TypeError, match="'epochs' expects int, got 1.5"):
        load_config("paper", epochs=1.5)
    with pytest.raises(TypeError, match="'compile' expects bool, got 1"):
        load_config("paper", compile=1)
    assert load_config("paper", lr=1).lr == 1.0 and isinstance(load_config("paper", lr=1).lr, float)  # int -> float


def test_every_way_of_building_a_config_is_checked():
    cfg = load_config("smoke")
    msg = re.escape("'batch_size' = 0 is out of range")
    for build in (lambda: Config(batch_size=0), lambda: cfg.replace(batch_size=0),
                  lambda: apply_overrides(cfg, {"batch_size": 0}), lambda: dataclasses.replace(cfg, batch_size=0),
                  lambda: config_from_dict({**cfg.to_dict(), "batch_size": 0}),
                  lambda: load_config("smoke", **parse_overrides(["batch_size=0"]))):
        with pytest.raises(ValueError, match=msg):
            build()


def test_pretrained_none_means_scratch_on_purpose(tmp_path):
    from dmtrack.model import build_model

    assert load_config("smoke", **parse_overrides(["pretrained=none"])).pretrained == "none"
    for value in ("", "none"):
        cfg = load_config("smoke", pretrained=value)
        assert cfg.pretrained_file is None
        assert build_model(cfg).pretrained_report is None  # "none" is not read as a file name
    assert load_config("smoke", pretrained=str(tmp_path / "w.pth")).pretrained_file == str(tmp_path / "w.pth")


def test_precision_replaces_amp_and_old_configs_still_load():
    assert load_config("paper").train_precision == "auto" and load_config("demo").train_precision == "fp32"
    assert load_config("paper").log_every == 50 and load_config("smoke").log_every == 1
    refused("train_precision", "fp8", "fp32 | bf16 | fp16 | auto", train_precision="fp8")
    refused("log_every", 0, "[1, inf)", log_every=0)
    with pytest.raises(KeyError, match="unknown config key.*amp"):
        load_config("paper", amp=True)  # the old switch is no override any more ...
    old = {k: v for k, v in load_config("smoke").to_dict().items() if k not in ("train_precision", "log_every", "compile")}
    assert config_from_dict({**old, "amp": True}).train_precision == "fp16"  # ... but a checkpoint saved with it loads:
    assert config_from_dict({**old, "amp": False}) == load_config("smoke")  # float16 autocast, or float32 as before


def test_precision_was_renamed_train_precision():
    # the training's autocast is named apart from the tracker's own --precision (fp32 unless asked)
    with pytest.raises(KeyError, match=re.escape("unknown config key(s): precision was renamed train_precision (known keys: ")):
        load_config("smoke", **parse_overrides(["precision=bf16"]))  # an old override is refused, naming the new key
    with pytest.raises(KeyError, match=re.escape("unknown config key(s): nope, precision was renamed train_precision (")):
        load_config("smoke", precision="bf16", nope=1)  # with the other unknown keys
    saved = load_config("smoke", train_precision="bf16").to_dict()
    old = {("precision" if k == "train_precision" else k): v for k, v in saved.items()}  # a checkpoint saved before the rename
    assert "train_precision" not in old and config_from_dict(old) == load_config("smoke", train_precision="bf16")
    with pytest.raises(ValueError, match="'train_precision' = 'fp8' is out of range"):
        config_from_dict({**old, "precision": "fp8"})  # the old name's value is checked as the new key's
    with pytest.raises(ValueError, match="saved config has both 'precision' and its new name 'train_precision'"):
        config_from_dict({**saved, "precision": "fp16"})  # which one ran? not guessed


def test_one_experiment_per_profile_feeds_the_config_the_preset_and_the_chain():
    from dmtrack import experiments
    from dmtrack.chain.plan import CHAINS
    from dmtrack.data.synthetic import PRESETS

    smoke, demo, paper = (experiments.get(p) for p in ("smoke", "demo", "paper"))
    assert paper["synthetic"] is None and set(smoke["model"]) == set(demo["model"])  # smoke shrinks demo in place
    assert set(smoke["chain"]) == set(demo["chain"]) == set(paper["chain"])  # every setting defined in paper.py
    assert load_config("smoke").embed_dim == smoke["model"]["embed_dim"] == 48 and load_config("paper").log_every == 50
    assert CHAINS["demo"].budget_minutes == 60.0 and CHAINS["smoke"].budget_minutes is None and CHAINS["paper"].drift is False
    assert PRESETS["demo"].suites["otb_lang"].n_seq == 36 and PRESETS["smoke"].sweep.length == (30, 30)
    smoke["chain"]["seeds"] = 9  # a copy: editing it changes no profile
    assert experiments.get("smoke")["chain"]["seeds"] == 1 == CHAINS["smoke"].seeds
    with pytest.raises(KeyError, match="unknown profile 'tiny'; choose from smoke, demo, paper"):
        experiments.get("tiny")


def test_chain_settings_take_key_value_overrides_checked_as_configs_are():
    from dmtrack.chain.plan import CHAINS, override_settings
    from dmtrack.config import ConfigError, parse_overrides

    s = override_settings(CHAINS["smoke"], parse_overrides(["seeds=2", "k_sweep=[1,3]", "budget_minutes=5",
                                                            "preset=demo", "sweep_seeds=null"]))
    assert (s.seeds, s.k_sweep, s.budget_minutes, s.preset, s.sweep_seeds) == (2, (1, 3), 5.0, "demo", None)
    assert type(s.budget_minutes) is float and s.max_frames == 12  # the rest is smoke's
    with pytest.raises(KeyError, match=r"unknown chain setting\(s\): seed, sweeps \(known: synthetic, preset, seeds,"):
        override_settings(CHAINS["smoke"], parse_overrides(["seed=2", "sweeps=1"]))
    with pytest.raises(ConfigError, match=r"chain setting 'seeds' expects int, got '2x'"):
        override_settings(CHAINS["smoke"], parse_overrides(["seeds=2x"]))
    with pytest.raises(ConfigError, match=r"chain setting 'drift' expects bool, got 1"):  # exact, as in Config: 1 is no bool
        override_settings(CHAINS["smoke"], {"drift": 1})
    with pytest.raises(ConfigError, match=r"chain setting 'max_frames' expects int or NoneType, got 1.5"):
        override_settings(CHAINS["smoke"], {"max_frames": 1.5})
