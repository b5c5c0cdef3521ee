"""Figures of the comparison report (PNG, written atomically): accuracy bars, confusion matrices
side by side, differing samples (image thumbnails or signal plots) and a latency histogram.

Every figure takes inputs of any shape: a picture is drawn as an image only when it is one
(H x W with 1 or 3 channels); anything else is drawn as a signal, so no shape can crash the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from common.plots import MAX_ANNOTATED_CLASSES, save_figure

THUMBS_PER_ROW = 10
SIGNALS_PER_ROW = 5
# Up to this many channels a signal is drawn as lines; more become a heat map (time x channel).
MAX_LINE_CHANNELS = 8
# Smallest side of an input still drawn as an image (a 30x1x40 spectrogram slice is not one).
MIN_IMAGE_SIDE = 4


def is_image(sample_shape: Sequence[int]) -> bool:
    """H x W x C with C = 1 (grey) or 3 (RGB) and both sides large enough to be a picture."""
    return (len(sample_shape) == 3 and sample_shape[2] in (1, 3)
            and min(sample_shape[0], sample_shape[1]) >= MIN_IMAGE_SIDE)


def as_signal(sample: np.ndarray) -> np.ndarray:
    """Any sample as (steps, channels): the last axis is the channel axis, the others are time."""
    a = np.asarray(sample, dtype=np.float32)
    if a.ndim <= 1:
        return a.reshape(-1, 1)
    return a.reshape(-1, a.shape[-1])


def _own_range(a: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(a)), float(np.max(a))
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _draw_image(ax: Axes, img: np.ndarray) -> None:
    # Scaled to the picture's own range: 0..255 and 0..1 inputs both show, a flat one shows grey.
    lo, hi = _own_range(img)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=lo, vmax=hi)
    else:
        ax.imshow(np.clip((img - lo) / (hi - lo), 0.0, 1.0))
    ax.axis("off")


def _draw_signal(ax: Axes, sample: np.ndarray) -> None:
    sig = as_signal(sample)
    if sig.shape[1] <= MAX_LINE_CHANNELS:
        ax.plot(sig, linewidth=0.8)
        ax.set_xlim(0, max(1, len(sig) - 1))
        ax.tick_params(labelsize=6)
    else:
        lo, hi = _own_range(sig)
        ax.imshow(sig.T, aspect="auto", cmap="viridis", vmin=lo, vmax=hi, origin="lower")
        ax.set_xticks([])
        ax.set_yticks([])


def plot_samples(samples: np.ndarray, captions: Sequence[str], path: Path, title: str) -> None:
    """A grid of samples, each captioned: image thumbnails for images, small signal plots otherwise."""
    n = len(samples)
    image = is_image(samples.shape[1:])
    per_row = THUMBS_PER_ROW if image else SIGNALS_PER_ROW
    cols = max(1, min(per_row, n))
    rows = max(1, -(-n // cols))
    w, h = (1.3, 1.55) if image else (2.4, 1.9)
    # At least 6 inches wide, so the title fits above a single sample.
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, w * cols), h * rows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        if image:
            _draw_image(ax, samples[k])
        else:
            _draw_signal(ax, samples[k])
        # Captions hold class names, which are data: "$" must not start mathtext.
        ax.set_title(captions[k], fontsize=7, parse_math=False)
    fig.suptitle(title, fontsize=9, parse_math=False)
    fig.tight_layout()
    save_figure(fig, path)


def plot_thumbnails(images: np.ndarray, indices: np.ndarray, labels: np.ndarray, preds_a: np.ndarray,
                    preds_b: np.ndarray, class_names: Sequence[str], column_names: tuple[str, str],
                    path: Path, title: str) -> None:
    """Samples captioned with index, true label and both columns' predicted classes."""
    a_short, b_short = (name.split()[0] for name in column_names)
    captions = [f"#{indices[k]} y={class_names[labels[k]]}\n{a_short}={class_names[preds_a[k]]} "
                f"{b_short}={class_names[preds_b[k]]}" for k in range(len(images))]
    plot_samples(images, captions, path, title)


def plot_accuracy(titles: Sequence[str], accuracies: Sequence[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(1.8 * len(titles) + 2, 3.2))
    bars = ax.bar(range(len(titles)), [100 * a for a in accuracies], color="#4c72b0")
    ax.set_xticks(range(len(titles)), labels=list(titles))
    low = min(accuracies) * 100 if accuracies else 0
    ax.set_ylim(max(0.0, low - 5), 100)
    ax.set_ylabel("accuracy (%)")
    for bar, acc in zip(bars, accuracies, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{100 * acc:.2f}%",
                ha="center", va="bottom", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusions(matrices: Sequence[np.ndarray], titles: Sequence[str], labels: Sequence[str],
                    path: Path) -> None:
    """Confusion matrices side by side in one figure (row = true class, column = predicted)."""
    n = len(labels)
    k = len(matrices)
    cols = k if n <= 12 else min(k, 2)
    rows = -(-k // cols)
    side = min(9.0, max(2.8, 0.32 * n + 1.6))
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + 0.3), squeeze=False)
    rotate = max(map(len, labels)) > 2
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        cm = np.asarray(matrices[i])
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(n), labels=list(labels), rotation=45 if rotate else 0,
                      ha="right" if rotate else "center", fontsize=7, parse_math=False)
        ax.set_yticks(range(n), labels=list(labels) if i % cols == 0 else [""] * n, fontsize=7,
                      parse_math=False)
        ax.set_xlabel("predicted", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("true", fontsize=8)
        ax.set_title(titles[i], fontsize=9, parse_math=False)
        if n <= MAX_ANNOTATED_CLASSES:
            threshold = cm.max() / 2 if cm.size else 0
            for r in range(n):
                for c in range(n):
                    ax.text(c, r, str(int(cm[r, c])), ha="center", va="center", fontsize=6,
                            color="white" if cm[r, c] > threshold else "black")
    fig.tight_layout()
    save_figure(fig, path)


def plot_histogram(values: np.ndarray, xlabel: str, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.hist(np.asarray(values, dtype=np.float64), bins=min(50, max(5, len(values) // 10)), color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=9, parse_math=False)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
