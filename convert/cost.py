"""Per-layer cost of an int8 model: parameters, multiply-accumulates and an on-board latency estimate.

The latency is an ESTIMATE from published cycles-per-MAC figures, not a measurement: the
device column of the final report has the measured invoke times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from common.convert_report import LatencyEstimate
from convert.boards import Board
from convert.tflite_model import OpInfo, TfliteModel

# Cycles per MAC on a Cortex-M4F, by kernel family (published MLPerf Tiny results and
# instruction counts of TFLM builds for Cortex-M4F):
# - CMSIS-NN fully connected: 4.57 cycles/MAC (MLPerf Tiny v0.5 reference, TFLM + CMSIS-NN).
# - CMSIS-NN conv / depthwise: 6.8-9.6 cycles/MAC whole-network in the same submission: use 8.
# - Reference fully connected: about 11 instructions/MAC measured on the dnn; with the nRF52840's
#   flash wait states about 14 cycles/MAC.
# - Reference conv / depthwise: reference kernels are about 10x slower than CMSIS-NN on convs
#   (index arithmetic per MAC); 20 cycles/MAC is the conservative end of that.
CYCLES_PER_MAC = {
    "cmsis_nn": {"FULLY_CONNECTED": 4.6, "CONV_2D": 8.0, "DEPTHWISE_CONV_2D": 8.0, "TRANSPOSE_CONV": 8.0},
    "reference": {"FULLY_CONNECTED": 14.0, "CONV_2D": 20.0, "DEPTHWISE_CONV_2D": 20.0,
                  "TRANSPOSE_CONV": 20.0},
}
# Per-op dispatch (interpreter loop, Eval prologue, quantization setup): a few hundred cycles.
CYCLES_PER_OP = 500
# Ops without MACs (reshape, pooling, softmax, activations) touch each output element a few times.
CYCLES_PER_OUTPUT_ELEMENT = 8

_MAC_OPS = set(CYCLES_PER_MAC["reference"])


@dataclass(frozen=True)
class LayerCost:
    index: int
    op: str
    layer: str
    output_shape: list[int]
    params: int
    macs: int
    est_cycles_cmsis_nn: int
    est_cycles_reference: int


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


def op_params(op: OpInfo) -> int:
    """Weights + bias elements: constant operands of MAC ops; other ops' constants are shapes/axes."""
    if op.op in _MAC_OPS:
        return sum(t.size for t in op.inputs if t.is_constant)
    return sum(t.size for t in op.inputs if t.is_constant and t.dtype == "int8")


def op_macs(op: OpInfo) -> int:
    if not op.outputs or len(op.inputs) < 2:
        return 0
    out, weights = op.outputs[0].shape, op.inputs[1].shape
    if op.op == "FULLY_CONNECTED" and len(weights) == 2:
        # weights are [units, in_features]; every output element needs in_features MACs.
        return _prod(out) * int(weights[1])
    if op.op == "CONV_2D" and len(weights) == 4 and len(out) == 4:
        _, kh, kw, in_c = weights  # filter [out_c, kh, kw, in_c]
        return _prod(out) * int(kh) * int(kw) * int(in_c)
    if op.op == "DEPTHWISE_CONV_2D" and len(weights) == 4 and len(out) == 4:
        _, kh, kw, _ = weights  # filter [1, kh, kw, out_c]
        return _prod(out) * int(kh) * int(kw)
    if op.op == "TRANSPOSE_CONV" and len(op.inputs) >= 2:
        filt = op.inputs[1].shape  # [out_c, kh, kw, in_c]; each input element scatters kh*kw*out_c
        data = op.inputs[2].shape if len(op.inputs) > 2 else ()
        if len(filt) == 4 and data:
            return _prod(data) * int(filt[0]) * int(filt[1]) * int(filt[2])
    return 0


def _cycles(op: OpInfo, macs: int, family: str) -> int:
    per_mac = CYCLES_PER_MAC[family].get(op.op)
    work = macs * per_mac if per_mac else CYCLES_PER_OUTPUT_ELEMENT * (
        _prod(op.outputs[0].shape) if op.outputs else 0)
    return round(CYCLES_PER_OP + work)


def layer_costs(model: TfliteModel) -> list[LayerCost]:
    rows = []
    for op in model.ops:
        macs = op_macs(op)
        rows.append(LayerCost(index=op.index, op=op.op, layer=op.layer,
                              output_shape=list(op.outputs[0].shape) if op.outputs else [],
                              params=op_params(op), macs=macs,
                              est_cycles_cmsis_nn=_cycles(op, macs, "cmsis_nn"),
                              est_cycles_reference=_cycles(op, macs, "reference")))
    return rows


def latency_estimate(rows: list[LayerCost], board: Board) -> LatencyEstimate:
    cmsis = sum(r.est_cycles_cmsis_nn for r in rows)
    ref = sum(r.est_cycles_reference for r in rows)
    return {
        "kind": "estimate",
        "clock_hz": board.clock_hz,
        "cmsis_nn_us": round(cmsis / board.clock_hz * 1e6, 1),
        "reference_us": round(ref / board.clock_hz * 1e6, 1),
        "basis": "cycles/MAC: CMSIS-NN FC 4.6, conv 8 (MLPerf Tiny v0.5); reference FC 14, conv 20; "
                 f"+{CYCLES_PER_OP} cycles/op, {CYCLES_PER_OUTPUT_ELEMENT} cycles/output element "
                 "for ops without MACs",
    }


def rows_as_dicts(rows: list[LayerCost]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
