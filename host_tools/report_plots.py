"""Figures of the comparison report (PNG, written atomically): accuracy bars, sample thumbnails."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.plots import save_figure

THUMBS_PER_ROW = 10


def plot_accuracy(titles: Sequence[str], accuracies: Sequence[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(1.8 * len(titles) + 2, 3.5))
    bars = ax.bar(range(len(titles)), [100 * a for a in accuracies], color="#4c72b0")
    ax.set_xticks(range(len(titles)), labels=list(titles))
    low = min(accuracies) * 100 if accuracies else 0
    ax.set_ylim(max(0.0, low - 5), 100)
    ax.set_ylabel("accuracy (%)")
    for bar, acc in zip(bars, accuracies, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{100 * acc:.2f}%",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_thumbnails(
    images: np.ndarray,
    indices: np.ndarray,
    labels: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    class_names: Sequence[str],
    column_names: tuple[str, str],
    path: Path,
    title: str,
) -> None:
    """A grid of samples captioned with index, true label and both columns' predictions."""
    n = len(images)
    cols = min(THUMBS_PER_ROW, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.55 * rows + 0.5), squeeze=False)
    a_short, b_short = (name.split()[0] for name in column_names)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(
            f"#{indices[k]} y={class_names[labels[k]]}\n{a_short}={class_names[preds_a[k]]} "
            f"{b_short}={class_names[preds_b[k]]}",
            fontsize=7,
            parse_math=False,  # class names are data: "$" must not start mathtext
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
