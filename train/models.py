"""Model builders. Layer names are stable: `convert` uses them to point at a layer in its errors.

Every layer maps onto an op TFLM supports after full-int8 conversion: CONV_2D, MAX_POOL_2D,
RESHAPE (Flatten), FULLY_CONNECTED, SOFTMAX. Dropout only acts in training and is dropped.
"""

from __future__ import annotations

from common.quiet import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402 - TensorFlow must be silenced before it is imported

from train.config import DEFAULT_HIDDEN, MODEL_NAMES  # noqa: E402

CNN_FILTERS = (8, 16)
CNN_DROPOUT = 0.25
# Below this size a 3x3 'valid' convolution eats too much of the image: pad instead.
VALID_CONV_MIN_SIZE = 12
# Pool only while the result keeps at least 2 pixels per side.
POOL_MIN_SIZE = 4


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                hidden: int = DEFAULT_HIDDEN) -> keras.Model:
    if name == "dnn":
        return build_dnn(input_shape, num_classes, hidden)
    if name == "cnn":
        return build_cnn(input_shape, num_classes)
    raise ValueError(f"unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")


def build_dnn(input_shape: tuple[int, int, int], num_classes: int,
              hidden: int = DEFAULT_HIDDEN) -> keras.Model:
    """The classic: Flatten -> Dense(hidden, relu) -> Dense(classes, softmax)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(hidden, activation="relu", name="dense_hidden")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="dnn")


def build_cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Two conv + max-pool blocks, then one softmax layer; a few thousand parameters.

    For small inputs (an 8x8 image) the convolutions pad and pooling stops before the feature
    map would vanish, so the same builder serves any image size.
    """
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
