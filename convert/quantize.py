"""Keras float model -> full-integer (int8) `.tflite` by post-training quantization.

The model is wrapped with a fixed batch of 1 before conversion: with a dynamic batch, Keras 3's
Flatten becomes SHAPE, STRIDED_SLICE, PACK and RESHAPE, three extra op types the firmware would
have to register; with batch 1 it is a single RESHAPE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError, ModelError, first_line
from common.quiet import captured_stdout_fd, quiet_tensorflow, silenced_stderr
from convert import keras_rnn


def load_keras(path: Path) -> Any:  # a keras.Model (Keras ships no type information)
    quiet_tensorflow()
    import keras

    try:
        with silenced_stderr():
            return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(f"cannot load Keras model {path}: {first_line(exc)}") from None


def input_shape(model: Any) -> tuple[int, ...]:
    """Per-sample input shape (without batch) of a single-input model."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # a subclassed model that was never built on an Input
        raise ModelError("the Keras model has no defined input; save a functional or Sequential model "
                         "with an Input layer") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"model has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "exactly one of each is supported")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ModelError(f"model input shape {shape} has unknown dimensions; a fixed shape is required")
    return tuple(int(d) for d in shape)


def calibration_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded subset of the calibration images: the same seed gives the same int8 model."""
    if size <= 0:
        raise DataError(f"--calibration-size must be positive, got {size}")
    if len(x) == 0:
        raise DataError("calibration_set.npz holds no samples")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(size, len(x)), replace=False))
    return np.asarray(x[idx], dtype=np.float32)


def quantize_int8(model: Any, calibration: np.ndarray, per_channel_dense: bool = False) -> bytes:
    """Full-integer PTQ: int8 weights, activations, input and output; builtin int8 ops only.
    Keras LSTM layers become UNIDIRECTIONAL_SEQUENCE_LSTM (int16 cell state), see ``keras_rnn``."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    shape = input_shape(model)
    keras_rnn.check_recurrent_layers(model)
    if tuple(calibration.shape[1:]) != shape:
        raise DataError(f"calibration images have shape {tuple(calibration.shape[1:])}, "
                        f"the model takes {shape}")
    fixed_input = keras.Input(batch_shape=(1, *shape), dtype="float32")
    fixed = keras.Model(fixed_input, model(fixed_input))

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    # The converter prints "Saved artifact at ..." on stdout and MLIR noise on stderr.
    with silenced_stderr(), captured_stdout_fd(), keras_rnn.conversion_hooks():
        converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        # One scale per Dense weight tensor: the board's TFLM library computes a per-channel
        # FULLY_CONNECTED with the first channel's scale for every output (convert.board_compat).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
        try:
            return bytes(converter.convert())
        except ModelError:  # a recurrent layer refused by keras_rnn while the model was traced
            raise
        except Exception as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()]
            first = (lines or str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"int8 conversion failed: {first[:300]}") from None


def float_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Keras float outputs for the test split (the 'float' column of the report), one row per
    sample (N, outputs), flattened like the int8 outputs of the runtimes."""
    with silenced_stderr():
        out = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)
    return out.reshape(len(x), -1)
