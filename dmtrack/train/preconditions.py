"""What a training needs before it starts, checked in the time of a few stat calls: the weights it
starts from. `dmtrack train` and `dmtrack report` (dmtrack.chain.preflight) both refuse to start without
them, with one message naming everything missing.

    check_weights("paper", {"pretrained": "/w/OSTrack_ep0300.pth.tar"}, required=True)  # PreflightError: text_encoder=...
"""
from __future__ import annotations

from pathlib import Path

from dmtrack.config import SCRATCH, ConfigError

WEIGHTS_DOC = 'README.md, section "Pointing the project at real datasets and weights"'
MINILM = "minilm"  # the packaged MiniLM (dmtrack.model.language), the text encoder of the small profiles


class PreflightError(ConfigError):
    """The run would fail or mislead; raised before it starts (the chain: before any step). The message says
    what to change (a ConfigError: the CLI prints it as one line and exits 2)."""


def weight_problems(overrides: dict, required: bool, allow_minilm: bool = False) -> list[str]:
    """Why a run may not start with these weights (empty: it may). Every profile: a pretrained
    file or text encoder that is named must exist. required (the paper profile): the visual encoder's
    checkpoint (or pretrained=none) and a local BERT directory (or minilm with allow_minilm) are needed."""
    from dmtrack.model.language import resolve_text_encoder

    problems = []
    pretrained = overrides.get("pretrained", "")
    if required and pretrained == "":
        problems.append("pretrained= is not set: give the OSTrack or MAE ViT-B checkpoint "
                        "(--set pretrained=/path/OSTrack_ep0300.pth.tar), or --set pretrained=none to train from scratch")
    elif pretrained not in ("", SCRATCH) and not Path(pretrained).is_file():
        problems.append(f"pretrained={pretrained}: no such file")
    text = overrides.get("text_encoder", MINILM)
    if required and not Path(text).is_dir() and not (text == MINILM and allow_minilm):
        problems.append(f"text_encoder={text} is not a BERT directory: give bert-base-uncased "
                        "(--set text_encoder=/path/bert-base-uncased), or --set text_encoder=minilm with --allow-minilm "
                        "to run with the packaged MiniLM")
    else:
        try:
            resolve_text_encoder(text)
        except (FileNotFoundError, ModuleNotFoundError) as e:
            problems.append(str(e))
    return problems


def check_weights(profile: str, overrides: dict, required: bool, allow_minilm: bool = False, more=()) -> None:
    """PreflightError naming every weight problem, then the `more` ones (e.g. missing data: one message, not one per try)."""
    problems = weight_problems(overrides, required, allow_minilm)
    if problems:
        need = f"profile {profile} trains at the paper's settings and needs its weights: " if required else ""
        raise PreflightError(need + "; ".join([*problems, *more]) + f". See {WEIGHTS_DOC}.")
