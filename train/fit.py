"""The training loop: Adam, sparse categorical cross-entropy, early stopping, reproducible runs.

Reproducibility: ``seed_everything`` seeds Python, NumPy and TensorFlow and turns on
TensorFlow's deterministic ops, so the same seed and data give the same history, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.quiet import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402 - TensorFlow must be silenced before it is imported
import tensorflow as tf  # noqa: E402

from train.config import FitConfig  # noqa: E402
from train.splits import Splits  # noqa: E402

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Evaluation needs no gradients, so larger batches only make it faster.
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based; the model holds this epoch's weights
    epochs_run: int
    wall_time_s: float


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class EpochLine(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no type information
    """One console line per epoch (Keras' own progress bar is off: ``verbose=0``)."""

    def __init__(self, epochs: int, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._epochs = epochs
        self._emit = emit
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        width = len(str(self._epochs))
        self._emit(f"epoch {epoch + 1:>{width}}/{self._epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                   f"acc {logs.get('accuracy', float('nan')):.4f}  "
                   f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
                   f"val_acc {logs.get('val_accuracy', float('nan')):.4f}  "
                   f"{time.perf_counter() - self._started:.1f}s")


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fit(model: keras.Model, splits: Splits, config: FitConfig,
        emit: Callable[[str], None] | None = None) -> FitResult:
    """Train until validation loss stops improving for ``patience`` epochs; keep the best weights.

    The caller seeds (``seed_everything``) before building the model, so weight initialisation
    is covered by the seed too.
    """
    compile_model(model, config.learning_rate)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                            restore_best_weights=True)
    callbacks: list[keras.callbacks.Callback] = [stopper]
    if emit is not None:
        callbacks.append(EpochLine(config.epochs, emit))
    started = time.perf_counter()
    keras_history = model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                              epochs=config.epochs, batch_size=config.batch_size, shuffle=True,
                              callbacks=callbacks, verbose=0)
    wall = time.perf_counter() - started
    history = {key: [float(v) for v in keras_history.history[key]] for key in HISTORY_KEYS}
    # EarlyStopping counts from 0 and restored that epoch's weights at the end of training.
    best_epoch = int(stopper.best_epoch) + 1
    return FitResult(history=history, best_epoch=best_epoch, epochs_run=len(history["loss"]),
                     wall_time_s=wall)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of the model as it is now."""
    loss, accuracy = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)
    return float(loss), float(accuracy)


def predict_classes(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float32 (N, C), argmax int64 (N,))."""
    probs = np.asarray(model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0), dtype=np.float32)
    return probs, probs.argmax(axis=1).astype(np.int64)


def kept_as_given(model: keras.Model, config: FitConfig) -> FitResult:
    """``--epochs 0``: no training; compiled only so each split's loss can be reported."""
    compile_model(model, config.learning_rate)
    return FitResult(history={key: [] for key in HISTORY_KEYS}, best_epoch=0, epochs_run=0, wall_time_s=0.0)
