"""Keras 3 recurrent layers through TensorFlow's TFLite converter: LSTM fused, the rest refused in one line.

TensorFlow's converter turns a Keras LSTM into its fused UNIDIRECTIONAL_SEQUENCE_LSTM op only
when the layer's loop is a function marked ``api_implements: lstm_<id>`` with ``time_major``
and ``go_backwards`` attributes, which ``tf_keras`` (Keras 2) does and Keras 3 does not: Keras 3
traces the loop as a WHILE op, and TensorFlow 2.21's int8 calibration of a WHILE graph kills
the process with a segmentation fault (measured with LSTM, GRU and SimpleRNN, unroll=False).

While ``quantize_int8`` converts, ``conversion_hooks()`` replaces Keras 3's TensorFlow-backend
LSTM kernel (``keras.src.backend.lstm``, the hook Keras gives backends for an optimised loop)
by such a marked function, so the converter emits UNIDIRECTIONAL_SEQUENCE_LSTM (int8
activations and weights, int16 cell state), which the board's TFLM library registers. Any other
recurrent loop that would become a WHILE op (``keras.src.backend.rnn`` with unroll=False) stops
the conversion with a ``ModelError`` instead of crashing it. ``check_recurrent_layers`` names the
layer before TensorFlow starts. The Keras model itself is untouched: its float outputs (the
report's float column) come from Keras's own kernels, an independent check of the fused op.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from common.errors import ModelError
from common.names import shown

__all__ = ["check_recurrent_layers", "conversion_hooks"]

WHILE_CRASH = ("TensorFlow's converter makes it a WHILE loop, whose int8 calibration crashes "
               "TensorFlow 2.21")
LSTM_FIX = ("use an LSTM layer with the default activations (tanh, sigmoid), use_bias=True, "
            "go_backwards=False, stateful=False, recurrent_dropout=0 and no mask")


def _layers(model: Any) -> Iterator[Any]:
    """Every layer of a model, nested models and Bidirectional's two directions included."""
    for layer in getattr(model, "layers", None) or []:
        yield layer
        yield from _layers(layer)
        for wrapped in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)):
            if wrapped is not None:
                yield wrapped


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", fn))


def _lstm_problem(layer: Any) -> str | None:
    """Why this LSTM cannot become UNIDIRECTIONAL_SEQUENCE_LSTM, or None if it can."""
    if _activation_name(layer.cell.activation) != "tanh" \
            or _activation_name(layer.cell.recurrent_activation) != "sigmoid":
        return "non-default activations"
    if not layer.cell.use_bias:
        return "use_bias=False"
    if layer.go_backwards:
        return "go_backwards=True"
    if layer.stateful:
        return "stateful=True"
    if layer.cell.recurrent_dropout or getattr(layer, "use_cudnn", "auto") is False:
        return "recurrent_dropout or use_cudnn=False (Keras then skips its LSTM kernel)"
    return None


def check_recurrent_layers(model: Any) -> None:
    """Refuse, naming the layer, a recurrent layer the conversion would crash on."""
    import keras

    for layer in _layers(model):
        if not isinstance(layer, keras.layers.RNN):
            continue
        name = f"layer '{shown(layer.name)}' ({type(layer).__name__})"
        if isinstance(layer, keras.layers.LSTM):
            problem = _lstm_problem(layer)
            if problem is not None:
                raise ModelError(f"{name} has {problem}, which TFLite's fused LSTM op does not take (as a "
                                 f"loop, {WHILE_CRASH}): {LSTM_FIX}")
        elif not layer.unroll:
            raise ModelError(f"{name} with unroll=False: {WHILE_CRASH}; use an LSTM layer (converted "
                             "to UNIDIRECTIONAL_SEQUENCE_LSTM) or unroll=True")


def _standard_lstm(inputs: Any, init_h: Any, init_c: Any, kernel: Any, recurrent_kernel: Any,
                   bias: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The LSTM the marked function stands for (Keras's gate order i, f, c, o). The converter
    replaces its body by the fused op; the body only gives the traced graph its shapes and math.
    Returns what the converter expects of a Keras LSTM function: last output, all outputs, h, c
    and a runtime marker."""
    import tensorflow as tf

    h, c = init_h, init_c
    outputs = []
    for t in range(int(inputs.shape[1])):
        z = tf.matmul(inputs[:, t, :], kernel) + tf.matmul(h, recurrent_kernel) + bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_c)
        h = tf.sigmoid(z_o) * tf.tanh(c)
        outputs.append(h)
    return h, tf.stack(outputs, axis=1), h, c, tf.constant(0.0)


def _fusable_lstm(inputs: Any, initial_state_h: Any, initial_state_c: Any, mask: Any, kernel: Any,
                  recurrent_kernel: Any, bias: Any, activation: Any, recurrent_activation: Any,
                  return_sequences: bool = False, go_backwards: bool = False, unroll: bool = False,
                  time_major: bool = False) -> tuple[Any, Any, list[Any]]:
    """Stands in for ``keras.src.backend.tensorflow.rnn.lstm`` (same signature and results)."""
    import tensorflow as tf

    if mask is not None or go_backwards or time_major or bias is None \
            or _activation_name(activation) != "tanh" or _activation_name(recurrent_activation) != "sigmoid":
        raise ModelError(f"an LSTM layer is not one TFLite's fused LSTM op takes (as a loop, {WHILE_CRASH}): "
                         f"{LSTM_FIX}")
    marked = tf.function(_standard_lstm, autograph=False, experimental_attributes={
        "api_implements": f"lstm_{uuid.uuid4()}", "api_preferred_device": "CPU",
        "time_major": False, "go_backwards": False})

    def tensor(v: Any) -> Any:  # the variable's value: the fused op takes rank-2 weights, not handles
        return tf.convert_to_tensor(v.value if hasattr(v, "value") else v)

    last, outputs, h, c, _ = marked(inputs, initial_state_h, initial_state_c, tensor(kernel),
                                    tensor(recurrent_kernel), tensor(bias))
    if not return_sequences:
        outputs = tf.expand_dims(last, 1)
    return last, outputs, [h, c]


def _refusing_rnn(original: Any) -> Any:
    def rnn(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("unroll", False):
            raise ModelError(f"a recurrent layer with unroll=False: {WHILE_CRASH}; use an LSTM layer "
                             "(converted to UNIDIRECTIONAL_SEQUENCE_LSTM) or unroll=True")
        return original(*args, **kwargs)

    return rnn


@contextlib.contextmanager
def conversion_hooks() -> Iterator[None]:
    """Within the block, Keras 3 LSTMs trace as the converter's fusable LSTM function and any
    other rolled recurrent loop raises ModelError."""
    from keras.src import backend

    saved = {name: getattr(backend, name) for name in ("lstm", "rnn")}
    backend.lstm = _fusable_lstm
    backend.rnn = _refusing_rnn(saved["rnn"])
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(backend, name, fn)
