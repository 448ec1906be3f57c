"""Our `reading = authors` model against the first author's own code, on identical random weights (issue 21).

The authors' model code (github 923714892/Diffusion-Mask-Driven-Visual-language-Tracking) is imported at
run time from a local checkout, never copied into this project. Both models are built at the authors' one
runnable configuration (E:vitb_text_ep384.yaml; ours: the paper profile under reading=authors): template
192, search 384, ViT-B (embed 768, depth 12), CE at blocks (5, 8, 11). Their parameters are drawn at random
(non-trivial BatchNorm statistics and position tables), copied into ours through `their_name`, and each
part runs on the same inputs; the table gives each part's largest |ours - theirs|, the tolerance, and why a
part is not bit-equal. Parts: backbone with CE (the removed tokens must be equal), fusion, one denoiser step
(their forward_head), filter, head, losses, one training step's loss under each double-sample choice, and one
test-time frame.

What is only environment gets a stand-in:
- BERT: no weights can be downloaded, so their language model is a stand-in that returns fixed token
  features, and ours is handed the same features (our text encoder does not run). BERT is not compared.
- mmcv's ConvModule (conv without bias, BatchNorm2d, ReLU: its layout with norm_cfg BN), imported by their model.
- pytorch_pretrained_bert: the names their BERT module imports, never called.
- their `lib/denoising_diffusion_pytorch/__init__.py` imports the package's trainer (ema_pytorch, accelerate,
  pytorch_fid), and `lib/train/data/__init__.py` the data loaders (jpeg4py); both packages are loaded without
  their __init__, the modules used (simple_diffusion.py, processing_utils.py) as they are.
einops and easydict, which their code computes with and reads its yaml with, must be importable:

    pip install --target /tmp/authors_deps einops easydict
    git --git-dir=<bare clone> worktree add --detach /tmp/authors-wt 7478015ff16c60f78a9f698de47bdcc3c0e6541f
    PYTHONPATH=/tmp/authors_deps:. python bench/compare_authors.py --authors-repo /tmp/authors-wt [--device cpu] [--json out.json]

Not part of `make test` (it needs their code). The table and the command are in docs/method.md,
"reading = authors: checked against the authors' code".
"""
from __future__ import annotations

import argparse
import copy
import datetime
import random
import sys
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

INNER = "Diffusion-Mask-Driven-Visual-language-Tracking"  # the checkout's one top folder
YAML = "experiments/ostrack/vitb_text_ep384.yaml"
B, G, L, D = 2, 24, 36, 768  # batch, search grid, text tokens, width (the authors hard-code G, L and D)
EPOCH = 50  # training step: CE keep rate 0.9 at every CE layer (start 30, warm-up 40), GT-CE on
RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}  # tolerance = RTOL x max(1, largest |their value|)
# their parameters that never act on an output: the ViT's class token and 224-px position table (the crops
# use pos_embed_z / pos_embed_x), the filter's q and k rows and its proj (its attention is over one token)
UNUSED = ("backbone.cls_token", "backbone.pos_embed", "filter.proj.weight", "filter.proj.bias")


def _prefixes() -> list[tuple[str, str]]:
    """(our prefix, their prefix), the more specific first; the docstrings of dmtrack/model/authors.py give the
    same map. Their model: backbone, cross_attention_p, untied_{search,text}_pos_enc_p, time_embed, down, up,
    pred, filter, box_head (A:models/ostrack/ostrack.py:33-76)."""
    out = [("visual.", "backbone."), ("fusion.norm_q.", "cross_attention_p.norm1_q."),
           ("fusion.norm_t.", "cross_attention_p.norm1_kv."), ("fusion.norm_mlp.", "cross_attention_p.norm2."),
           ("fusion.mlp.", "cross_attention_p.mlp.")]
    out += [(f"fusion.{p}.", f"cross_attention_p.attn.{p}.") for p in ("q", "k", "v", "proj")]
    for ours, theirs, proj in (("search_pos", "untied_search_pos_enc_p", "pos_q_linear"),
                               ("text_pos", "untied_text_pos_enc_p", "pos_k_linear")):
        out += [(f"fusion.{ours}.rows", f"{theirs}.pos.h_pos"), (f"fusion.{ours}.cols", f"{theirs}.pos.w_pos"),
                (f"fusion.{ours}.norm.", f"{theirs}.norm."), (f"fusion.{ours}.proj.", f"{theirs}.{proj}.")]
    out += [("denoiser.time_mlp.", "time_embed."), ("denoiser.down.1.film.", "down.1.mlp.1."),
            ("denoiser.down.1.conv1.", "down.1.block1.proj."), ("denoiser.down.1.norm1.", "down.1.block1.norm."),
            ("denoiser.down.1.conv2.", "down.1.block2.proj."), ("denoiser.down.1.norm2.", "down.1.block2.norm."),
            ("denoiser.up.1.conv.", "up.1.net.0."), ("denoiser.up.3.conv.", "up.3.net.0."), ("denoiser.readout.", "pred."),
            ("denoiser.down.", "down."), ("denoiser.up.", "up."), ("filter.score.", "filter.summation."),
            ("filter.mix.", "filter.cross_heads."), ("filter.norm.", "filter.norm.")]
    for ours, theirs in (("score", "ctr"), ("offset", "offset"), ("size", "size")):
        for i in range(4):  # Conv-BN-ReLU i: ours at 3i, 3i+1 of one Sequential, theirs conv{i+1}_<branch>.0, .1
            out += [(f"head.{ours}.{3 * i}.", f"box_head.conv{i + 1}_{theirs}.0."),
                    (f"head.{ours}.{3 * i + 1}.", f"box_head.conv{i + 1}_{theirs}.1.")]
        out.append((f"head.{ours}.12.", f"box_head.conv5_{theirs}."))
    return out


PREFIXES = _prefixes()


class AuthorsCodeError(RuntimeError):
    """The authors' checkout cannot be found or imported (one line for the user)."""


def their_name(key: str, dim: int = D):
    """Our state-dict key -> (their key, rows of it: a slice or None), or None for our text encoder (not
    compared). Their filter's qkv weight holds q, k and v; only v's rows [2 dim, 3 dim) act (AuthorsFilter)."""
    if key.startswith("text."):
        return None
    if key == "filter.value.weight":
        return "filter.qkv.weight", slice(2 * dim, 3 * dim)
    for ours, theirs in PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):], None
    raise KeyError(f"no counterpart in the authors' model for our {key!r}")


def copy_weights(ours: nn.Module, theirs: nn.Module, dim: int = D) -> None:
    """Load their state into ours through `their_name`; every parameter of theirs must be used or in UNUSED."""
    src, state, used = theirs.state_dict(), {}, set()
    for key in ours.state_dict():
        hit = their_name(key, dim)
        if hit is not None:
            name, rows = hit
            state[key] = src[name] if rows is None else src[name][rows]
            used.add(name)
    missing, unexpected = ours.load_state_dict(state, strict=False)
    left = set(src) - used - set(UNUSED)
    if unexpected or any(not k.startswith("text.") for k in missing) or left:
        raise RuntimeError(f"weight map incomplete: ours missing {missing}, unexpected {unexpected}, theirs unused {sorted(left)}")


# ----------------------------------------------------------------------------- their code
class ConvModule(nn.Module):
    """Stand-in for mmcv.cnn.ConvModule with norm_cfg BN, as their model builds it: conv (no bias when a norm
    follows), BatchNorm2d named `bn`, ReLU named `activate`, in that order."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, norm_cfg=None):
        super().__init__()
        if (norm_cfg or {}).get("type") != "BN":
            raise ValueError(f"the ConvModule stand-in covers norm_cfg type BN only, got {norm_cfg}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn, self.activate = nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class TokenFeatures(nn.Module):
    """Stand-in for their BERT: returns `features` (B, L, D), whatever it is handed."""

    def __init__(self):
        super().__init__()
        self.features = None

    def forward(self, text):
        return self.features


def _never(*args, **kwargs):
    raise RuntimeError("pytorch_pretrained_bert is a stand-in here: BERT is not compared (no weights to download)")


def authors_root(path: str) -> Path:
    """The folder holding their `lib/` and `experiments/`: DIR itself or DIR/<INNER>."""
    for root in (Path(path), Path(path) / INNER):
        if (root / "lib/models/ostrack/ostrack.py").is_file() and (root / YAML).is_file():
            return root
    raise AuthorsCodeError(f"--authors-repo {path}: no {INNER} checkout there (lib/models/ostrack/ostrack.py and {YAML})")


def import_authors(root: Path) -> types.SimpleNamespace:
    """Their model, config, actor and test-time modules, imported from `root` with the stand-ins above."""
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    module("mmcv")
    module("mmcv.cnn", ConvModule=ConvModule)
    names = lambda *ns: dict.fromkeys(ns, _never)
    module("pytorch_pretrained_bert", **names("BertConfig", "cached_path", "CONFIG_NAME", "WEIGHTS_NAME",
                                              "load_tf_weights_in_bert", "BertTokenizer"))
    module("pytorch_pretrained_bert.modeling", **names("BertLayerNorm", "PRETRAINED_MODEL_ARCHIVE_MAP", "logger",
                                                       "BERT_CONFIG_NAME", "BertEmbeddings", "BertEncoder"))
    module("pytorch_pretrained_bert.modeling_transfo_xl", TF_WEIGHTS_NAME="model.ckpt")
    for package in ("denoising_diffusion_pytorch", "train.data"):  # without their __init__ (see the module docstring)
        module(f"lib.{package}").__path__ = [str(root / "lib" / package.replace(".", "/"))]
    sys.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm's deprecation notices for their old import paths
            import lib.models.ostrack.ostrack as ostrack
            import lib.config.ostrack.config as config
            import lib.train.actors.ostrack as actor
            import lib.utils.box_ops as box_ops
            import lib.utils.ce_utils as ce_utils
            import lib.utils.focal_loss as focal_loss
            import lib.utils.heapmap_utils as heatmap
            import lib.test.utils.hann as hann
            import lib.train.data.processing_utils as processing
    except Exception as e:  # a missing dependency, or a checkout of another commit that does not load
        raise AuthorsCodeError(f"cannot import the authors' code from {root}: {type(e).__name__}: {e} "
                               "(their code needs einops and easydict: pip install --target DIR einops easydict, "
                               "then PYTHONPATH=DIR)") from e
    return types.SimpleNamespace(ostrack=ostrack, config=config, actor=actor, box_ops=box_ops, ce_utils=ce_utils,
                                 focal_loss=focal_loss, heatmap=heatmap, hann=hann, processing=processing)


# ----------------------------------------------------------------------------- the two models
@dataclass
class Pair:
    ours: nn.Module  # DMTrack, paper profile, reading=authors
    theirs: nn.Module  # their OSTrack (DMTrack) model
    A: types.SimpleNamespace  # their modules (import_authors)
    cfg: object  # their config (EasyDict)


@dataclass
class Inputs:
    template: torch.Tensor  # (B,3,192,192) normalised crops
    search: torch.Tensor  # (B,3,384,384)
    text: torch.Tensor  # (B,L,D) token features, fed to both fusions
    text_mask: torch.Tensor  # (B,L) bool, True on real tokens (our fusion, as theirs, does not read it)
    boxes: torch.Tensor  # (B,4) ground truth xywh normalised to the search crop (their layout)
    x_t: torch.Tensor  # (B,1,G,G) a noisy mask
    logsnr: torch.Tensor  # (B,) its log-SNR

    @property
    def cxcywh(self) -> torch.Tensor:
        return torch.cat([self.boxes[:, :2] + self.boxes[:, 2:] / 2, self.boxes[:, 2:]], 1)


def make_inputs(seed: int) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    n = lambda *shape: torch.randn(*shape, generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 9:] = False  # a short sentence: 7 words, [CLS], [SEP], padding
    # centres at (9.72, 13.32) and (6.36, 8.04) grid cells: one in the right half of its cell (heatmap_peak matters)
    boxes = torch.tensor([[0.31, 0.41, 0.19, 0.29], [0.14, 0.15, 0.25, 0.37]])
    return Inputs(n(B, 3, 192, 192), n(B, 3, 384, 384), n(B, L, D), mask, boxes, n(B, 1, G, G), torch.tensor([-4.0, 3.2]))


def randomise(model: nn.Module, seed: int) -> None:
    """Weights no initialiser gives, so that every entry of the map matters: biases N(0, 0.02), norm scales
    U(0.5, 1.5), BatchNorm running statistics away from (0, 1), the fusion's 2-D position tables N(0, 1) (they
    start near 0), and the PixelShuffle convs redrawn (their start repeats each filter 4 times, which would hide
    a mix-up of the sub-pixel order)."""
    g = torch.Generator().manual_seed(seed)
    norms = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            owner, _, leaf = name.rpartition(".")
            if leaf in ("h_pos", "w_pos"):
                t.normal_(generator=g)
            elif leaf == "bias":
                t.normal_(0.0, 0.02, generator=g)
            elif leaf == "running_mean":
                t.normal_(0.0, 0.1, generator=g)
            elif leaf == "running_var":
                t.uniform_(0.5, 2.0, generator=g)
            elif leaf == "weight" and isinstance(model.get_submodule(owner), norms):
                t.uniform_(0.5, 1.5, generator=g)
            elif name.endswith("net.0.weight"):  # simple diffusion's Upsample conv
                t.normal_(0.0, float(t.std()), generator=g)


def build_pair(A, root: Path, seed: int) -> Pair:
    from dmtrack import build_model, load_config

    A.config.update_config_from_file(str(root / YAML))
    cfg = A.config.cfg
    cfg.TRAIN.DROP_PATH_RATE = 0.0  # stochastic depth off on both sides: its draws cannot be paired
    A.ostrack.build_bert = TokenFeatures
    torch.manual_seed(seed)
    theirs = A.ostrack.build_ostrack(cfg, training=False)  # training=False: no checkpoint is read
    randomise(theirs, seed)
    ours = build_model(load_config("paper", reading="authors", drop_path_rate=0.0))
    copy_weights(ours, theirs)
    return Pair(ours.eval(), theirs.eval(), A, cfg)


# ----------------------------------------------------------------------------- rows of the table
@dataclass
class Row:
    part: str
    dtype: str
    diff: float  # largest |ours - theirs|, or the count of unequal entries (exact rows)
    scale: float  # largest |theirs| (exact rows: the entries compared)
    tol: float
    note: str  # why the part is not bit-equal, or what it compares
    known: str = ""  # a difference beyond tolerance that docs/method.md explains (not a failure of the check)

    @property
    def ok(self) -> bool:
        return self.diff <= self.tol


def compare(part: str, ours, theirs, note: str = "") -> Row:
    ours, theirs = torch.as_tensor(ours).detach().cpu(), torch.as_tensor(theirs).detach().cpu()
    if ours.shape != theirs.shape:
        raise RuntimeError(f"{part}: shapes differ, ours {tuple(ours.shape)} theirs {tuple(theirs.shape)}")
    diff, scale = (ours.double() - theirs.double()).abs().max().item(), theirs.double().abs().max().item()
    dtype = theirs.dtype if theirs.is_floating_point() else torch.float32
    return Row(part, str(theirs.dtype).removeprefix("torch."), diff, scale, RTOL.get(dtype, 1e-4) * max(1.0, scale),
               note if diff else "bit-equal")


def exact(part: str, ours, theirs, note: str = "") -> Row:
    unequal = int((torch.as_tensor(ours).cpu() != torch.as_tensor(theirs).cpu()).sum())
    return Row(part, "exact", unequal, torch.as_tensor(theirs).numel(), 0, note)


# ----------------------------------------------------------------------------- the parts
SDPA = "ours: torch's fused attention; theirs: softmax(Q K^T / sqrt(d) + bias) V written out; rounding"
MAPS = ("score_map", "size_map", "offset_map")  # their head's maps, in the order ours are concatenated


class _Stop(Exception):
    """Raised inside their forward_head to end a float64 trace (see trace_theirs)."""


def trace_theirs(p: Pair, x: Inputs, dtype, keep, ce_mask) -> dict:
    """Their forward (eval, x_t and its log-SNR given, as their sampler calls it) with its intermediates captured:
    backbone output, F_s (forward_head's input), the up path's map, the filter's input and output, the head's
    input, the output dict. In float64 it stops at F_s: their time embedding casts to float32
    (A:models/ostrack/ostrack.py:405), so the denoiser cannot run in float64."""
    th, cap = p.theirs, {}

    def forward_head(cat_feature, timesteps, seg, gt_score_map=None):
        cap["F_s"] = cat_feature
        if dtype == torch.float64:
            raise _Stop
        return type(th).forward_head(th, cat_feature=cat_feature, timesteps=timesteps, seg=seg)

    hooks = [th.backbone.register_forward_hook(lambda m, i, o: cap.__setitem__("backbone", o)),
             th.up[-1].register_forward_hook(lambda m, i, o: cap.__setitem__("up", o)),  # forward_head walks `up`
             th.filter.register_forward_hook(lambda m, i, o: cap.update(tokens=i[0], filtered=o)),
             th.box_head.register_forward_hook(lambda m, i, o: cap.__setitem__("head_in", i[0]))]
    th.forward_head, th.language_backbone.features = forward_head, x.text.to(dtype)
    try:
        with torch.no_grad():
            cap["out"] = th(template=x.template.to(dtype), search=x.search.to(dtype), text=None, ce_template_mask=ce_mask,
                            ce_keep_rate=keep, xx=x.x_t.to(dtype), logsnr=x.logsnr.to(dtype))
    except _Stop:
        pass
    finally:
        del th.forward_head
        for h in hooks:
            h.remove()
    return cap


def ce_modes(p: Pair, device) -> dict:
    """training | tracking -> (label, keep rate, their template mask): training (EPOCH's keep rate at every CE layer, scored by the
    template's centre token, their CTR_POINT) and tracking (each layer's ratio, every template token: their test
    forward passes no mask, A:models/ostrack/ostrack.py:317)."""
    keep = p.A.ce_utils.adjust_keep_rate(EPOCH, p.cfg.TRAIN.CE_START_EPOCH, p.cfg.TRAIN.CE_START_EPOCH + p.cfg.TRAIN.CE_WARM_EPOCH,
                                         1, p.cfg.MODEL.BACKBONE.CE_KEEP_RATIO[0])
    ratios = "/".join(f"{r:g}" for r in p.cfg.MODEL.BACKBONE.CE_KEEP_RATIO)
    return {"training": (f"training (keep {keep:g})", keep, p.A.ce_utils.generate_mask_cond(p.cfg, B, device, None)),
            "tracking": (f"tracking (keep {ratios} by layer)", None, None)}


def part_backbone(p: Pair, x: Inputs, dtype, traces: dict) -> list[Row]:
    rows = []
    for mode, (label, keep, _) in ce_modes(p, x.search.device).items():
        with torch.no_grad():
            v = p.ours.visual(x.template.to(dtype), x.search.to(dtype), keep)
        h, aux = traces[mode]["backbone"]
        removed = torch.zeros_like(v.removed).scatter_(1, torch.cat(aux["removed_indexes_s"], 1).long(), True)
        rows += [compare(f"backbone + CE, {label}: search features", v.search, h[:, -G * G:], SDPA),
                 exact(f"backbone + CE, {label}: removed tokens", v.removed, removed, f"{int(removed[0].sum())} of {G * G} removed")]
    return rows


def part_fusion(p: Pair, x: Inputs, dtype, cap: dict) -> list[Row]:
    h_x = cap["backbone"][0][:, -G * G:]
    with torch.no_grad():
        f_s = p.ours.fusion(h_x, x.text.to(dtype), x.text_mask)
    return [compare("fusion: F_s from their H_x", f_s, cap["F_s"], SDPA)]


def part_filter(p: Pair, dtype, seed: int, device) -> list[Row]:
    """The filter alone on N(0, 1) tokens; and without scramble, which their code does not have, on symmetric
    tokens at D = N = 576, where their `x.view(B, C, -1).transpose(1, 2)` is the identity."""
    from dmtrack.model.authors import AuthorsFilter

    g = torch.Generator().manual_seed(seed)
    t = torch.randn(B, G * G, D, generator=g).to(device, dtype)
    a = torch.randn(B, G * G, G * G, generator=g).to(device, dtype)
    sym = (a + a.transpose(1, 2)) / 2
    ours = nn.ModuleDict({"filter": AuthorsFilter(G * G, G * G, scramble=False)})
    theirs = nn.ModuleDict({"filter": p.A.ostrack.SpatialAttention(G * G)})
    randomise(theirs, seed)
    copy_weights(ours, theirs, dim=G * G)
    ours, theirs = ours.to(device, dtype).eval(), theirs.to(device, dtype).eval()
    with torch.no_grad():
        return [compare("filter, scramble", p.ours.filter(t), p.theirs.filter(t), "ours: only the top token's value "
                        "projection (their softmax over one key is 1); rounding"),
                compare("filter, no scramble (symmetric tokens, D = N = 576)", ours.filter(sym), theirs.filter(sym),
                        "theirs has only the scrambling view; rounding")]


def part_head(p: Pair, dtype, seed: int, device) -> list[Row]:
    from dmtrack.model.head import decode_boxes

    m = torch.randn(B, D, G, G, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    with torch.no_grad():
        score, offset, size = p.ours.head(m)
        t_score, t_box, t_size, t_offset = p.theirs.box_head(m, None)
    return [compare("head: score, size, offset maps", torch.cat([score, size, offset], 1),
                    torch.cat([t_score, t_size, t_offset], 1)),
            compare("head: arg-max box", decode_boxes(score, offset, size), t_box)]


def part_denoiser(p: Pair, x: Inputs, cap: dict) -> list[Row]:
    """One denoiser step, their forward_head (float32) on their own F_s, against ours on the same F_s."""
    f_map = cap["F_s"].transpose(1, 2).reshape(B, D, G, G)
    seen = {}
    hook = p.ours.head.register_forward_hook(lambda m, i, o: seen.__setitem__("head_in", i[0]))
    unscrambled = copy.deepcopy(p.ours.denoiser)
    unscrambled.scramble = False
    with torch.no_grad():
        tokens = p.ours.denoiser(x.x_t, x.logsnr, f_map)
        feats, logits = p.ours._authors_pass(x.x_t, x.logsnr, f_map)
        score, offset, size = p.ours._authors_head(f_map, feats)  # head_features=fused: the base is F_s
        plain = unscrambled(x.x_t, x.logsnr, f_map)
    hook.remove()
    out = cap["out"]
    return [compare("denoiser step: mask tokens (scramble)", tokens, cap["tokens"]),
            compare("denoiser step: mask tokens, no scramble", plain, F.pixel_unshuffle(cap["up"], 4).flatten(2).transpose(1, 2),
                    "theirs has only the scrambling view: ours against their up-path map cut into the 4 x 4 cells of each token"),
            compare("denoiser step: filtered tokens", feats, cap["filtered"]),
            compare("denoiser step: mask logits", logits[:, 0], out["seg_mask"]),
            compare("denoiser step: head input (F_s + mask features)", seen["head_in"], cap["head_in"]),
            compare("denoiser step: score, size, offset maps", torch.cat([score, size, offset], 1), torch.cat([out[k] for k in MAPS], 1),
                    "the same head input, in channels-last memory order on our side (F_s transposed): the convolutions sum "
                    "in another order")]


def their_actor(p: Pair):
    """Their training actor with the objective and weights of A:train/train_script.py:72-74."""
    A, cfg = p.A, p.cfg
    objective = {"giou": A.box_ops.giou_loss, "l1": F.l1_loss, "focal": A.focal_loss.FocalLoss()}
    weights = {"giou": cfg.TRAIN.GIOU_WEIGHT, "l1": cfg.TRAIN.L1_WEIGHT, "focal": 1.0}
    return A.actor.OSTrackActor(p.theirs, objective, weights, types.SimpleNamespace(batchsize=B, num_template=1), cfg)


def part_losses(p: Pair, x: Inputs, out: dict) -> list[Row]:
    """Each term of Eq. 6 on the same predictions (their float32 forward's) and ground truth, and the focal loss's
    heat-map target (also over 1000 random boxes). The box mask is ours (`floored_box_mask`): theirs is built
    inline in their data sampler (A:train/data/sampler.py:223-231)."""
    from dmtrack.model.dmtrack import DMTrackOutput, floored_box_mask
    from dmtrack.model.losses import gaussian_heatmap

    gt, peak = x.cxcywh, p.ours.cfg.heatmap_peak
    mask = floored_box_mask(gt, G)
    _, status = their_actor(p).compute_losses(out, {"search_gt_mask": mask[:, 0], "search_anno": x.boxes[None]})
    ours = p.ours.loss(DMTrackOutput(out["score_map"], out["offset_map"], out["size_map"], out["pred_boxes"][:, 0],
                                     mask_logits=[out["seg_mask"][:, None]], mask_target=mask), gt)
    heat = lambda xywh: p.A.heatmap.generate_heatmap(xywh[None], p.cfg.DATA.SEARCH.SIZE, p.cfg.MODEL.BACKBONE.STRIDE)[-1]
    g = torch.Generator().manual_seed(1)
    many = torch.cat([0.05 + 0.6 * torch.rand(1000, 2, generator=g), 0.02 + 0.3 * torch.rand(1000, 2, generator=g)], 1)
    many_cxcywh, many_heat = torch.cat([many[:, :2] + many[:, 2:] / 2, many[:, 2:]], 1), heat(many)
    rows = [compare(f"losses: focal target (heat-map, heatmap_peak={peak})", gaussian_heatmap(gt, G, peak=peak)[:, 0], heat(x.boxes)),
            compare(f"losses: focal target, 1000 random boxes (heatmap_peak={peak})", gaussian_heatmap(many_cxcywh, G, peak=peak)[:, 0],
                    many_heat, "their Gaussian is computed in float64 (numpy) and cast, ours in float32")]
    differs = (gaussian_heatmap(many_cxcywh, G)[:, 0] - many_heat).abs().flatten(1).amax(1) > 1e-6  # under the paper reading
    rows.append(exact("losses: focal target, 1000 random boxes, heatmap_peak=floor: boxes that differ", differs, torch.zeros_like(differs)))
    rows[-1].known = ("the paper reading's peak, the cell that holds the centre: the boxes whose centre lies in the right or lower half "
                      "of its cell; theirs is the rounded centre (heatmap_peak=round, set by reading=authors)")
    why = {"struct": "their BCE is one mean over the batch, ours a mean per image, then over the batch: summed in another order"}
    for ours_key, their_key in (("focal", "location"), ("giou", "giou"), ("l1", "l1"), ("struct", "mask"), ("total", "total")):
        theirs = torch.tensor(status[f"Loss/{their_key}"], dtype=torch.float32)  # .item() of a float32: exact
        rows.append(compare(f"losses: {ours_key}", ours[ours_key], theirs, why.get(ours_key, "")))
    return rows


def part_training(p: Pair, x: Inputs, seed: int) -> list[Row]:
    """One training step (train mode, float32) at epoch EPOCH: CE, GT-CE, the two samplings and their head
    passes. The (t, noise) draws of the two samplings are drawn once and handed to both sides in the same order
    (their noise_begin, our schedule's q_sample); their random.randint(0, 2) is forced to each branch, and our
    loss is given the same pick (mean, first, second). Runs last: train-mode BatchNorm moves the running stats."""
    from dmtrack.model.authors import LogSNRSchedule
    from dmtrack.model.dmtrack import floored_box_mask

    g = torch.Generator().manual_seed(seed)
    dev = x.search.device
    draws = [(torch.rand(B, generator=g).to(dev), torch.randn(B, 1, G, G, generator=g).to(dev)) for _ in range(2)]
    th, sched, actor = p.theirs, p.ours.schedule, their_actor(p)
    theirs_queue, ours_queue = list(draws), list(draws)
    th.noise_begin = lambda x_start, times, seg=None, noise=None: th.q_sample(x_start, *theirs_queue.pop(0))
    sched.q_sample = lambda x0, t, noise=None: LogSNRSchedule.q_sample(sched, x0, *ours_queue.pop(0))
    th.language_backbone.features = x.text
    gt = x.cxcywh
    data = dict(template_images=x.template[None], search_images=x.search[None], template_anno=x.boxes[None],
                search_anno=x.boxes[None], search_seg=gt.new_zeros(1, B, G, G),  # the empty 1st-sampling input
                search_gt_mask=floored_box_mask(gt, G)[:, 0][None], nl_token_ids=x.text_mask.T.long() * 0,
                nl_token_masks=x.text_mask.T.long(), epoch=EPOCH)
    p.ours.train()
    th.train()
    try:
        with torch.no_grad():
            out_t = actor.forward_pass(dict(data))
            out_o = p.ours(x.template, x.search, (x.text, x.text_mask), gt_boxes=gt, epoch=EPOCH)
        why = "the rounding of the parts above (attention; the head's channels-last input), through train-mode BatchNorm"
        rows = [exact("training step: GT-CE target", out_o.mask_target[:, 0], out_t[2], f"{int(out_t[2].sum())} box cells kept"),
                compare("training step: 1st sampling's mask logits (clamped in place)", out_o.passes[0].mask_logits[0][:, 0],
                        out_t[0]["seg_mask"], why),
                compare("training step: 2nd sampling's mask logits", out_o.passes[1].mask_logits[0][:, 0], out_t[1]["seg_mask"], why)]
        actor.forward_pass = lambda data: out_t  # the forward above: only the random pick changes
        for choice, mode in enumerate(("mean", "first", "second")):
            p.A.actor.random = types.SimpleNamespace(randint=lambda a, b: choice)
            loss_t, _ = actor(dict(data))
            loss_o = p.ours.loss(replace(out_o, mask_select=mode), gt)["total"]
            rows.append(compare(f"training step: total loss, pick {choice} ({mode})", loss_o, loss_t, why))
    finally:
        p.A.actor.random = random
        del th.noise_begin, sched.q_sample
        p.ours.eval()
        th.eval()
    return rows


def part_crop(p: Pair, seed: int) -> list[Row]:
    """The search crop of a tracked frame (factor 5, 384 px) from a 480 x 640 uint8 frame: their sample_target
    (A:train/data/processing_utils.py:12-75, called by their tracker) against our crop_square, a box well inside
    the frame and one whose crop runs over the right edge."""
    import numpy as np

    from dmtrack.data.crop import crop_square

    image = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    factor, size = p.cfg.TEST.SEARCH_FACTOR, p.cfg.TEST.SEARCH_SIZE
    rows = []
    for where, box in (("inside the frame", [300.0, 200.0, 40.0, 30.0]), ("over the right edge", [600.0, 200.0, 40.0, 30.0])):
        crop, scale, _ = crop_square(image, box, factor, size)
        t_crop, t_scale, _ = p.A.processing.sample_target(image, box, factor, output_sz=size)
        rows.append(exact(f"test-time frame: search crop, {where}", torch.from_numpy(crop), torch.from_numpy(t_crop),
                          f"resize factor {scale:.6f} (theirs {t_scale:.6f})"))
    rows[-1].known = ("their sample_target drops the frame's last column inside the crop and pads one zero column "
                      "more (x2_pad = x2 - W + 1, processing_utils.py:42, 45; rows alike); ours keeps it. A bug, not reproduced")
    return rows


def part_frame(p: Pair, x: Inputs, seed: int) -> list[Row]:
    """One test-time frame (eval, float32, batch 1 as their tracker): their p_sample_loop against our Tracker's
    network call and decoding, k = 1 (their num_sample_steps) and k = 3 steps, the noise from the same seed
    (x_T and each step's z are the first draws on both sides); the box is the arg-max of the Hann-windowed
    mean score map, in the search crop (A:test/tracker/ostrack.py:39, 108-111)."""
    from dmtrack.track.tracker import Tracker

    th, rows = p.theirs, []
    th.language_backbone.features = x.text[:1]
    window = p.A.hann.hann2d(torch.tensor([G, G]).long(), centered=True).to(x.search.device)
    for k in (1, 3):
        th.num_sample_steps = k
        tracker = Tracker(p.ours, p.ours.cfg, samples=k, seed=None)  # its inference form: the head's BN folded
        with torch.no_grad():
            torch.manual_seed(seed)
            o_t = th.p_sample_loop(x.template[:1], x.search[:1], None)
            torch.manual_seed(seed)
            o_o = tracker.model(x.template[:1], x.search[:1], (x.text[:1], x.text_mask[:1]), samples=k)
            box_t = th.box_head.cal_bbox(window * o_t["score_map"], o_t["size_map"], o_t["offset_map"]).view(-1, 4)
        maps, t_maps = torch.cat([o_o.score_map, o_o.size_map, o_o.offset_map], 1), torch.cat([o_t[k_] for k_ in MAPS], 1)
        box = torch.as_tensor(tracker.decode(o_o)[0][0]).float()
        rows += [compare(f"test-time frame, k = {k}: score, size, offset maps", maps, t_maps, "the rounding of the parts "
                         "above; ours folds the head's BatchNorm into its convs (the tracker's inference form)"),
                 compare(f"test-time frame, k = {k}: box in the search crop", box, box_t[0], "from the maps above (the same arg-max cell)")]
    p.ours.unfuse()
    return rows


# ----------------------------------------------------------------------------- table and CLI
def table(rows: list[Row]) -> str:
    """The rows as a Markdown table: part, dtype, largest |difference|, tolerance, ok or why not."""
    out = ["| part | dtype | max abs diff | tolerance | ok / why not |", "|---|---|---|---|---|"]
    for r in rows:
        num = (lambda v: f"{int(v)} of {int(r.scale)}") if r.dtype == "exact" else (lambda v: f"{v:.2e}")
        verdict = "ok" if r.ok else "differs, known" if r.known else "DIFFERS"
        verdict += f": {r.known or r.note}" if r.known or r.note else ""
        out.append(f"| {r.part} | {r.dtype} | {num(r.diff)} | {num(r.tol) if r.dtype != 'exact' else '0'} | {verdict} |")
    return "\n".join(out)


def run_all(p: Pair, x: Inputs, seed: int) -> list[Row]:
    """Every part: backbone, fusion, filter and head in float64 and float32; the rest in float32 (their time
    embedding casts to float32). Models and inputs on one device; the training step last."""
    rows, traces = [], {}
    for dtype in (torch.float64, torch.float32):
        p.ours.to(dtype)
        p.theirs.to(dtype)
        traces = {mode: trace_theirs(p, x, dtype, keep, mask) for mode, (_, keep, mask) in ce_modes(p, x.search.device).items()}
        rows += part_backbone(p, x, dtype, traces)
        rows += part_fusion(p, x, dtype, traces["tracking"])
        rows += part_filter(p, dtype, seed, x.search.device) + part_head(p, dtype, seed, x.search.device)
    cap = traces["tracking"]
    rows += part_denoiser(p, x, cap) + part_losses(p, x, cap["out"]) + part_crop(p, seed) + part_frame(p, x, seed)
    return rows + part_training(p, x, seed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-repo", required=True, metavar="DIR",
                    help=f"a checkout of the authors' repository (DIR or DIR/{INNER} holds lib/ and experiments/)")
    ap.add_argument("--device", default="cpu", help="torch device of both models (default cpu)")
    ap.add_argument("--json", metavar="OUT", help="also write the rows, the commits and the command to OUT")
    ap.add_argument("--seed", type=int, default=0, help="weights, inputs and the noise of both sides")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = ap.parse_args(argv)
    try:
        root = authors_root(args.authors_repo)
        A = import_authors(root)
    except AuthorsCodeError as e:
        print(f"compare_authors: {e}", file=sys.stderr)
        return 2
    from dmtrack.io import atomic_write_json
    from dmtrack.provenance import git_state

    torch.set_num_threads(args.threads)
    pair = build_pair(A, root, args.seed)
    pair.ours.to(args.device)
    pair.theirs.to(args.device)
    x = Inputs(*(t.to(args.device) for t in vars(make_inputs(args.seed)).values()))
    rows = run_all(pair, x, args.seed)
    head = {"date": datetime.date.today().isoformat(), "command": " ".join(["python", *sys.argv]),
            "ours": git_state(), "theirs": git_state(root), "torch": torch.__version__}
    print("\n".join(f"{k}: {v}" for k, v in head.items()) + "\n\n" + table(rows))
    if args.json:
        atomic_write_json(args.json, {**head, "rows": [{**vars(r), "ok": r.ok} for r in rows]})
    return 0 if all(r.ok or r.known for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
