"""Pictures of a training run: learning curves and a labelled confusion matrix (PNG, written atomically).

Uses matplotlib's Agg backend so it works without a display; no TensorFlow import.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from common.atomic import atomic_path

# Above this many classes the numbers in the cells become unreadable; colours alone remain.
MAX_ANNOTATED_CLASSES = 20


def plot_history(history: Mapping[str, Sequence[float]], path: Path, best_epoch: int | None = None,
                 title: str = "") -> None:
    """Two panels, accuracy and loss per epoch, train vs validation (epochs numbered from 1).
    An empty history (a model kept as given) gives panels that say so."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, name in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        ax.plot(epochs, history[metric], "o-", markersize=3, label="train")
        ax.plot(epochs, history[f"val_{metric}"], "o-", markersize=3, label="validation")
        if not len(epochs):
            ax.text(0.5, 0.5, "not trained here (model kept as given)", ha="center", va="center",
                    transform=ax.transAxes)
        if best_epoch is not None and best_epoch >= 1:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch {best_epoch}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.lower())
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, parse_math=False)  # holds the dataset path, which may contain "$"
    _tight_layout(fig)
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray | Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                   title: str = "Confusion matrix") -> None:
    """Counts with true class on the rows and predicted class on the columns, labelled by name."""
    cm = np.asarray(matrix)
    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    # Class names are user text: "$x$" must show as typed, not go to the mathtext parser (which
    # raises on input like "$\\foo$").
    ax.set_xticks(range(n), labels=list(labels), rotation=45 if max(map(len, labels)) > 2 else 0,
                  ha="right" if max(map(len, labels)) > 2 else "center", parse_math=False)
    ax.set_yticks(range(n), labels=list(labels), parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, parse_math=False)
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > threshold else "black")
    _tight_layout(fig)
    save_figure(fig, path)


def _tight_layout(fig: Figure) -> None:
    # With long class names tight_layout cannot fit everything and warns on the console; the
    # figure is still written, only with cramped margins.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG atomically and free it (figures are never shown, only saved)."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
