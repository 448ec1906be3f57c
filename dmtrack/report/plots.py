"""Figures of the notebooks: sample frames, loss curves, success/precision plots, Fig. 7 panels,
diffusion sampling strips, the k and drift sweeps. Each function returns a matplotlib Figure."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from dmtrack.data import STAND_IN, read_frame
from dmtrack.layout import scores_path

TRACKER_COLOURS = dict(zip(["gt", "full", "no_diffusion", "not_mask_driven", "no_language", "no_gt_ce",
                            "single_sample_train"], ["#ffffff"] + sns.color_palette("tab10", 6).as_hex()))


def _label(title: str, synthetic: bool) -> str:
    return f"{title} ({STAND_IN})" if synthetic else title


def _box(ax, box, colour, lw=1.5, ls="-"):
    x, y, w, h = (float(v) for v in box)
    if np.isfinite([x, y, w, h]).all() and w > 0 and h > 0:
        ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=lw, linestyle=ls))


def _image(path) -> np.ndarray:
    return read_frame(path)


# --- 00_data -------------------------------------------------------------------------------------------
def sample_frames(seqs, benchmark: str, synthetic: bool, n_seqs: int = 3, n_frames: int = 3):
    """Rows of sequences, columns of frames (first, middle, last) with the ground-truth box and the sentence."""
    seqs = list(seqs)[:n_seqs]
    fig, axes = plt.subplots(len(seqs), n_frames, figsize=(3.2 * n_frames, 2.9 * len(seqs)), squeeze=False)
    for r, seq in enumerate(seqs):
        for c, i in enumerate(np.linspace(0, len(seq) - 1, n_frames).round().astype(int)):
            ax = axes[r, c]
            ax.imshow(_image(seq.frames[i]))
            _box(ax, seq.boxes[i], "lime", 2)
            drift = seq.drift is not None and bool(seq.drift[i])
            ax.set_title(f"{seq.name} #{i + 1}" + (" (sentence drifted)" if drift else ""), fontsize=8)
            ax.axis("off")
        axes[r, 0].text(0, -0.25, f'"{seq.description.strip()}"', transform=axes[r, 0].transAxes, fontsize=8,
                        va="top", ha="left", wrap=True)
    fig.suptitle(_label(f"{benchmark}: ground-truth boxes and sentences", synthetic), fontsize=10)
    fig.tight_layout()
    return fig


# --- 10_train ------------------------------------------------------------------------------------------
def loss_curves(losses_csv, title: str = ""):
    """One panel per loss term of losses.csv (raw and a moving average)."""
    df = pd.read_csv(losses_csv)
    terms = [c for c in df.columns if c not in ("epoch", "step", "seconds") and not c.startswith("lr_")]
    cols = min(3, len(terms))
    rows = int(np.ceil(len(terms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    win = max(1, len(df) // 20)
    for ax, term in zip(axes.flat, terms):
        ax.plot(df.step, df[term], alpha=0.3, lw=0.8)
        ax.plot(df.step, df[term].rolling(win, min_periods=1).mean(), lw=1.5)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.suptitle(title or f"training losses ({losses_csv})", fontsize=10)
    fig.tight_layout()
    return fig


# --- 20_evaluate ---------------------------------------------------------------------------------------
def success_precision(runs: dict, title: str, protocol: str = "pytracking"):
    """Success and precision plots; runs = {label: results folder holding scores_<protocol>.json}."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, folder in runs.items():
        sc = json.loads(scores_path(folder, protocol).read_text())
        a.plot(sc["thresholds"]["success"], sc["curves"]["success"], label=f"{label} [{sc['overall']['auc']:.1f}]")
        b.plot(sc["thresholds"]["precision"], sc["curves"]["precision"], label=f"{label} [{sc['overall']['precision']:.1f}]")
    a.set(xlabel="overlap threshold", ylabel="success rate (%)", title="success plot (legend: AUC)")
    b.set(xlabel="location error threshold (px)", ylabel="precision (%)", title="precision plot (legend: at 20 px)")
    b.axvline(20, color="grey", lw=0.5, ls=":")
    for ax in (a, b):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} | protocol: {protocol}", fontsize=10)
    fig.tight_layout()
    return fig


# --- 30_visualize --------------------------------------------------------------------------------------
def fig7_panel(seq, frames, boxes: dict, masks: dict, synthetic: bool, mask_label: str = "full"):
    """Fig. 7 of the paper for one sequence: top row the frames with every tracker's box (and the
    ground truth in white), bottom row the same frames with the diffusion mask overlaid."""
    fig, axes = plt.subplots(2, len(frames), figsize=(3.2 * len(frames), 6.2), squeeze=False)
    colours = dict(TRACKER_COLOURS)
    extra = iter(sns.color_palette("Set2", 8).as_hex())
    for c, i in enumerate(frames):
        img = _image(seq.frames[i])
        for r in range(2):
            axes[r, c].imshow(img)
            axes[r, c].axis("off")
        _box(axes[0, c], seq.boxes[i], colours["gt"], 2, "--")
        for name, b in boxes.items():
            if name not in colours:
                colours[name] = next(extra)
            if b is not None and i < len(b):
                _box(axes[0, c], b[i], colours[name])
        axes[0, c].set_title(f"#{i + 1}" + (" (sentence drifted)" if seq.drift is not None and seq.drift[i] else ""), fontsize=8)
        if i in masks:
            axes[1, c].imshow(masks[i], cmap="magma", alpha=0.6, vmin=0, vmax=1)
            _box(axes[1, c], boxes[mask_label][i], colours[mask_label])
    handles = [plt.Line2D([], [], color=colours[n], lw=2, ls="--" if n == "gt" else "-") for n in ["gt", *boxes]]
    axes[0, 0].legend(handles, ["ground truth", *boxes], fontsize=6, loc="upper left", framealpha=0.7)
    axes[1, 0].set_title(f"diffusion mask of {mask_label}", fontsize=8)
    fig.suptitle(_label(f'{seq.name}: "{seq.description.strip()}"', synthetic), fontsize=9)
    fig.tight_layout()
    return fig


def sampling_chains(chain: np.ndarray, crop: np.ndarray, title: str):
    """Every sampling chain of one frame, one row each, x_T .. x_0 (chain: (steps+1, chains, M, M) in
    [0, 1], as Tracker.track(return_chain=True) gives it) next to the search crop."""
    n, rows = chain.shape[:2]
    fig, axes = plt.subplots(rows, n + 1, figsize=(1.7 * (n + 1), 1.9 * rows + 0.4), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(crop)
        axes[r, 0].set_title("search crop" if r == 0 else "", fontsize=8)
        axes[r, 0].text(-0.08, 0.5, f"chain {r + 1}", transform=axes[r, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
        for j in range(n):
            axes[r, j + 1].imshow(chain[j, r], cmap="gray", vmin=0, vmax=1)
            if r == 0:
                axes[r, j + 1].set_title("x_T (noise)" if j == 0 else ("x_0" if j == n - 1 else f"step {j}"), fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def k_samples(samples: np.ndarray, average: np.ndarray, spread: np.ndarray, crop: np.ndarray, title: str):
    """The k predicted masks of one frame, their average (what the tracker uses) and their spread (the
    per-pixel range over the k, its maximum in the panel's title and its scale on a colour bar)."""
    k = len(samples)
    fig, axes = plt.subplots(1, k + 3, figsize=(2.1 * (k + 3), 2.5))
    axes[0].imshow(crop)
    axes[0].set_title("search crop", fontsize=8)
    for j, m in enumerate(samples):
        axes[j + 1].imshow(m, cmap="magma", vmin=0, vmax=1)
        axes[j + 1].set_title(f"sample {j + 1}", fontsize=8)
    axes[-2].imshow(average, cmap="magma", vmin=0, vmax=1)
    axes[-2].set_title(f"average of {k}", fontsize=8)
    # scaled to its own maximum, on a colour bar: a small spread still shows where the samples disagree
    im = axes[-1].imshow(spread, cmap="viridis", vmin=0, vmax=float(spread.max()) or 1.0)
    fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.04)
    axes[-1].set_title(f"spread (max {spread.max():.3g})", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --- 40_report -----------------------------------------------------------------------------------------
SWEEP_AXES = {"k": "diffusion samplings k at test time", "steps": "DDIM steps per sampling chain (k = 1)"}


def k_sweep_plot(df: pd.DataFrame, title: str, x: str = "k"):
    """AUC (with its CI band) and tracking speed against k (or, x="steps", the steps per chain); one pair of
    lines per test-time sampler when `df` has a sampler column (dmtrack.report.sweeps.sampler_sweeps)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax2 = ax.twinx()
    groups = df.groupby("sampler", sort=False) if "sampler" in df.columns else [("", df)]
    for i, (sampler, d) in enumerate(groups):
        colour, name = f"C{2 * i}", f" ({sampler})" if sampler else ""
        ax.plot(d[x], d.auc, "o-", color=colour, label="AUC" + name)
        ax.fill_between(d[x], d.auc_low, d.auc_high, color=colour, alpha=0.2, label="95% CI" + name)
        ax2.plot(d[x], d.fps, "s--", color=colour if sampler else "tab:red", alpha=0.7, label="frames / s" + name)
    ax.set(xlabel=SWEEP_AXES[x], ylabel="AUC (%)")
    ax.set_xticks(sorted(set(df[x])))
    ax2.set_ylabel("frames / s (this machine)", color="tab:red")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def drift_plot(df: pd.DataFrame, title: str):
    """AUC against the language-drift level, one line (with CI band) per variant."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for v, d in df.groupby("variant", sort=False):
        colour = TRACKER_COLOURS.get(v, "grey")
        ax.plot(d.level, d.auc, "o-" if v != "static" else "x:", color=colour, label=v)
        ax.fill_between(d.level, d.auc_low, d.auc_high, color=colour, alpha=0.15)
    ax.set(xlabel="drift level (fraction of each sequence before the sentence stops fitting; 1 = never)",
           ylabel="AUC (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
