"""Constructs the board's TFLM library runs but computes wrongly: refused with the reason and the fix.

The op check (``tflm_ops``) says whether the library can run an op at all; this module says
whether it computes it right. Measured, not assumed: the library's CMSIS-NN
FULLY_CONNECTED (``kernels/cmsis_nn/fully_connected.cpp``) fills every output channel's
multiplier with the first channel's, so a per-channel quantized Dense layer gives other
outputs than the TFLite spec; the tests run such a model through the library built for the
host and through the newer ``tflite-micro`` runtime and see them part (and agree again with
per-tensor weights). Upstream TFLM fixed this on 2024-09-27, after both TFLM Arduino libraries
were generated.

Warned about, not refused (``board_warnings``): an int8 LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM,
int16 cell state) whose cell-state scale is below 2^-12, which is what TensorFlow's converter
picks whenever the calibrated cell state stays within +-4. Before its tanh, the library's
``lstm_internal::Tanh`` (``kernels/lstm_eval.cpp``, kernels of February 2023) shifts its input
right by -(12 + log2 scale) bits *in place*, and that input is the cell state itself: every time
step truncates the state that the next step carries on. Upstream TFLM passes the shift to the
tanh instead (tflite-micro pull request 1797, March 2023). Measured on a 16-step, 8-unit LSTM
(scale 2^-15, a 3-bit shift): the library parts from the ``tflite-micro`` runtime on most
samples by a few LSB, and with that one function replaced by upstream's it agreed on all. No
re-conversion avoids it, so the model is accepted with the reason, and the report shows both
TFLMs and LiteRT side by side.
"""

from __future__ import annotations

import functools
import math

from common import board_sources
from common.errors import ModelError
from common.names import shown
from convert.tflite_model import TfliteModel

__all__ = ["board_warnings", "check_board_computes"]

PER_TENSOR_DENSE_FIX = ("re-convert with one scale per Dense weight tensor (TFLiteConverter: "
                        "converter._experimental_disable_per_channel_quantization_for_dense_layers = True; "
                        "`python -m convert` does this for models it quantizes)")


def check_board_computes(model: TfliteModel, source: str) -> None:
    for op in model.ops:
        if op.op != "FULLY_CONNECTED" or len(op.inputs) < 2:
            continue
        weights = op.inputs[1]
        if weights.scale_count > 1:
            raise ModelError(f"{source}: FULLY_CONNECTED '{shown(op.layer)}' has per-channel weights "
                             f"({weights.scale_count} scales), which the board's TFLM library computes with "
                             f"one scale, giving wrong outputs: {PER_TENSOR_DENSE_FIX}")


LSTM_EVAL = "src/tensorflow/lite/micro/kernels/lstm_eval.cpp"
# The statement of the in-place shift in the library's lstm_eval.cpp.
IN_PLACE_TANH_SHIFT = "input_data[i] = input_data[i] >> tanh_input_left_shift"
# The library's tanh takes the cell state in Q3.12: scales below 2^-12 are shifted down to it.
TANH_INPUT_SCALE_POWER = -12


@functools.cache
def _shifts_lstm_cell_state() -> bool:
    """Whether the board's library shifts the LSTM cell state in place. Read from its source when
    it is on this machine; otherwise the library the board builds (Arduino_TensorFlowLite
    2.4.0-ALPHA, whose lstm_eval.cpp does)."""
    library = board_sources.find_library()
    if library is None or not (library / LSTM_EVAL).is_file():
        return True
    return IN_PLACE_TANH_SHIFT in (library / LSTM_EVAL).read_text(errors="replace")


def board_warnings(model: TfliteModel) -> list[str]:
    """Constructs the board's library runs, but computes differently from TFLite, with no re-conversion
    that avoids it: one line each for convert's warnings."""
    warnings = []
    for op in model.ops:
        if op.op != "UNIDIRECTIONAL_SEQUENCE_LSTM":
            continue
        cell = next((t for t in op.inputs if t.dtype == "int16" and t.scale > 0), None)
        if cell is None or not _shifts_lstm_cell_state():
            continue
        power = round(math.log2(cell.scale))
        if power < TANH_INPUT_SCALE_POWER:
            shift = TANH_INPUT_SCALE_POWER - power
            warnings.append(f"LSTM '{shown(op.layer)}': the board's TFLM library shifts the cell state "
                            f"(scale 2^{power}) right by {shift} bits in place before its tanh at every "
                            "time step (lstm_eval.cpp; fixed in upstream TFLM in March 2023), so the "
                            "board's outputs differ from TFLite's")
    return warnings
