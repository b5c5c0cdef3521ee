"""Constructs the board's TFLM library runs but computes wrongly: refused with the reason and the fix.

The op check (``tflm_ops``) says whether the library can run an op at all; this module says
whether it computes it right. Measured, not assumed: the library's CMSIS-NN
FULLY_CONNECTED (``kernels/cmsis_nn/fully_connected.cpp``) fills every output channel's
multiplier with the first channel's, so a per-channel quantized Dense layer gives other
outputs than the TFLite spec; the tests run such a model through the library built for the
host and through the newer ``tflite-micro`` runtime and see them part (and agree again with
per-tensor weights). Upstream TFLM fixed this on 2024-09-27, after both TFLM Arduino libraries
were generated.
"""

from __future__ import annotations

from common.errors import ModelError
from common.names import shown
from convert.tflite_model import TfliteModel

__all__ = ["check_board_computes"]

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
