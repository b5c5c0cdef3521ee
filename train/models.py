"""Model builders. Layer names are stable: `convert` uses them to point at a layer in its errors.

Every layer maps onto an op TFLM supports after full-int8 conversion: CONV_2D (also for Conv1D,
between RESHAPEs), MAX_POOL_2D, MEAN (global average pooling), RESHAPE (Flatten), FULLY_CONNECTED,
SOFTMAX, and SUB + MUL for the standardisation of signals. Dropout only acts in training and is
dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import ModelError
from common.quiet import quiet_tensorflow, silenced_stderr

quiet_tensorflow()
import keras  # noqa: E402 - TensorFlow must be silenced before it is imported

from train.config import DEFAULT_HIDDEN, MODEL_NAMES  # noqa: E402

CNN_FILTERS = (8, 16)
CNN_DROPOUT = 0.25
CNN1D_FILTERS = (8, 16)
CNN1D_KERNEL = 5
# Below this size a 3x3 'valid' convolution eats too much of the image: pad instead.
VALID_CONV_MIN_SIZE = 12
# Pool only while the result keeps at least 2 pixels per side.
POOL_MIN_SIZE = 4
# A feature whose training variance is below this is constant: dividing by its deviation would
# put a huge constant into the int8 MUL and crush every other feature's multiplier.
MIN_VARIANCE = 1e-12


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int,
                hidden: int = DEFAULT_HIDDEN, standardise: np.ndarray | None = None) -> keras.Model:
    """A built-in model; ``standardise`` (training-split inputs) puts a Normalization layer with
    their per-channel mean and variance first, so every later stage feeds the raw values."""
    if name == "dnn":
        return build_dnn(input_shape, num_classes, hidden, standardise)
    if name == "cnn":
        return build_cnn(input_shape, num_classes)  # type: ignore[arg-type]
    if name == "cnn1d":
        return build_cnn1d(input_shape, num_classes, standardise)
    raise ValueError(f"unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")


def normalization(x_train: np.ndarray, name: str = "standardise") -> keras.layers.Layer:
    """Per-channel (last axis) standardisation with statistics of ``x_train``."""
    axes = tuple(range(x_train.ndim - 1))
    mean = np.mean(x_train, axis=axes, dtype=np.float64)
    variance = np.var(x_train, axis=axes, dtype=np.float64)
    variance = np.where(variance < MIN_VARIANCE, 1.0, variance)
    return keras.layers.Normalization(axis=-1, mean=mean.astype(np.float32),
                                      variance=variance.astype(np.float32), name=name)


def build_dnn(input_shape: tuple[int, ...], num_classes: int, hidden: int = DEFAULT_HIDDEN,
              standardise: np.ndarray | None = None) -> keras.Model:
    """The classic: [standardise ->] Flatten -> Dense(hidden, relu) -> Dense(classes, softmax)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    if standardise is not None:
        x = normalization(standardise)(x)
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(hidden, activation="relu", name="dense_hidden")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="dnn")


def build_cnn1d(input_shape: tuple[int, ...], num_classes: int,
                standardise: np.ndarray | None = None) -> keras.Model:
    """For sequences (T,) or (T, C), e.g. accelerometer windows: two Conv1D + max-pool blocks,
    global average pooling, one softmax layer."""
    if len(input_shape) not in (1, 2):
        raise ModelError(f"cnn1d takes sequences (T,) or (T, C); the data has samples of shape "
                         f"{tuple(input_shape)}")
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    if len(input_shape) == 1:
        x = keras.layers.Reshape((input_shape[0], 1), name="channels")(x)
        if standardise is not None:
            standardise = standardise.reshape(len(standardise), -1, 1)
    if standardise is not None:
        x = normalization(standardise)(x)
    steps = input_shape[0]
    for block, filters in enumerate(CNN1D_FILTERS, start=1):
        x = keras.layers.Conv1D(filters, min(CNN1D_KERNEL, steps), padding="same", activation="relu",
                                name=f"conv{block}")(x)
        if steps >= POOL_MIN_SIZE:
            x = keras.layers.MaxPooling1D(2, name=f"pool{block}")(x)
            steps //= 2
    x = keras.layers.GlobalAveragePooling1D(name="average")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="cnn1d")


def load_user_model(path: Path, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """A Keras model of the user's own architecture, checked against the data before training."""
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    try:
        with silenced_stderr():
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load Keras model {path}: {first[:200]}") from None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        raise ModelError(f"{path}: the model has no defined input; save a functional or Sequential "
                         "model with an Input layer") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "exactly one of each is supported")
    takes = tuple(inputs[0].shape[1:])
    if takes != tuple(input_shape):
        raise ModelError(f"{path}: the model takes samples of shape {takes}, the dataset has "
                         f"{tuple(input_shape)}")
    gives = tuple(outputs[0].shape[1:])
    if gives != (num_classes,):
        raise ModelError(f"{path}: the model outputs shape {gives}; training on {num_classes} classes "
                         f"needs ({num_classes},) class probabilities (a softmax layer last)")
    return model


def build_cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Two conv + max-pool blocks, then one softmax layer; a few thousand parameters.

    For small inputs (an 8x8 image) the convolutions pad and pooling stops before the feature
    map would vanish, so the same builder serves any image size.
    """
    if len(input_shape) != 3:
        raise ModelError(f"cnn takes images (H, W, C); the data has samples of shape {tuple(input_shape)} "
                         "(use dnn, or cnn1d for sequences)")
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    height, width = input_shape[0], input_shape[1]
    for block, filters in enumerate(CNN_FILTERS, start=1):
        padding = "valid" if min(height, width) >= VALID_CONV_MIN_SIZE else "same"
        x = keras.layers.Conv2D(filters, 3, padding=padding, activation="relu", name=f"conv{block}")(x)
        if padding == "valid":
            height, width = height - 2, width - 2
        if min(height, width) >= POOL_MIN_SIZE:
            x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
            height, width = height // 2, width // 2
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(CNN_DROPOUT, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="cnn")
