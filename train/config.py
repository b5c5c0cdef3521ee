"""Training settings and their defaults, importable without TensorFlow (fast `--help`)."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAMES = ("dnn", "cnn", "cnn1d")
DEFAULT_MODEL = "dnn"
DEFAULT_HIDDEN = 20
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 32
DEFAULT_PATIENCE = 5
DEFAULT_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class FitConfig:
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    patience: int = DEFAULT_PATIENCE
    learning_rate: float = DEFAULT_LEARNING_RATE
