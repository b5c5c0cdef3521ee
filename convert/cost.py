"""Per-layer cost of an int8 model: parameters, multiply-accumulates and estimated instructions.

The instruction estimate comes from ``cost_model.json``: per kernel path (the CMSIS-NN or TFLM
kernel the board's library picks for an op, ``kernel_path``) a linear model of a few shape
features (``op_features``), fitted to per-op instruction counts the emulated Cortex-M4
measured on probe models (``python -m bench.cost_fit``; docs/cost-model.md). It is an
ESTIMATE: instructions at one cycle each are a lower bound on the board's time, because flash
wait states and multi-cycle instructions add to it. An op whose kernel path the fit has no
data for gets a fallback estimate, and its row says so.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.convert_report import LatencyEstimate
from convert.boards import Board
from convert.tflite_model import OpInfo, TfliteModel

MODEL_PATH = Path(__file__).with_name("cost_model.json")
UNIT = "instructions"
CONST = "const"
# Which features each kernel path's model has (op_features says what each counts); a path
# not listed has DEFAULT_FEATURES. They follow the loops of the kernels the board's library
# runs on a Cortex-M4 (CMSIS-NN's DSP paths):
# - arm_convolve_s8 copies one kernel window per output pixel into an im2col buffer (one
#   arm_q7_to_q15_with_offset call per window position: calls, im2col), then multiplies it with
#   the filter four values at a time (macs) with a slower loop for the K % 4 rest (ktail), and
#   requantizes every output (out);
# - arm_convolve_1x1_s8_fast (and a FULLY_CONNECTED with more than 2 output dimensions) is one
#   matrix product over the pixels (arm_nn_mat_mult_nt_t_s8), 16 input channels at a time
#   with a scalar loop for the in_c % 16 rest (mtail);
# - arm_depthwise_conv_3x3_s8 works per output pixel on four channels at a time, the
#   channels % 4 rest one by one (ctail); arm_depthwise_conv_s8_opt copies each window
#   position (calls) first;
# - the pooling kernels compare or add one window position of all channels at a time (calls,
#   window, ctail);
# - TFLM's reference MEAN walks every input element with an index of the input's rank (in_rank).
FEATURES: dict[str, tuple[str, ...]] = {
    "CONV_2D": (CONST, "macs", "im2col", "calls", "out", "ktail"),
    "CONV_2D:1x1": (CONST, "macs", "mtail", "out", "pixels"),
    "DEPTHWISE_CONV_2D": (CONST, "macs", "out"),
    "DEPTHWISE_CONV_2D:3x3": (CONST, "pixels", "out", "ctail"),
    "DEPTHWISE_CONV_2D:opt": (CONST, "macs", "calls", "out"),
    "FULLY_CONNECTED": (CONST, "macs", "out", "in"),
    "FULLY_CONNECTED:1x1": (CONST, "macs", "mtail", "out", "pixels"),
    "MAX_POOL_2D": (CONST, "calls", "window", "ctail", "out"),
    "AVERAGE_POOL_2D": (CONST, "calls", "window", "ctail", "out"),
    "MEAN": (CONST, "in", "in_rank", "out"),
}
DEFAULT_FEATURES = (CONST, "in", "out")
_MAC_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}
# Elementwise ops whose CMSIS-NN kernel needs equal shapes; with broadcasting TFLM runs its
# reference BroadcastXxx4DSlow instead (SUB has no CMSIS-NN kernel but the same split).
_BROADCASTING_OPS = {"ADD", "MUL", "SUB"}
_SAME_PADDING = 0  # tflite Padding enum: SAME = 0, VALID = 1


@dataclass(frozen=True)
class LayerCost:
    index: int
    op: str
    layer: str
    output_shape: list[int]
    params: int
    macs: int
    kernel: str  # the kernel path the estimate is for (kernel_path)
    est_instructions: int
    estimate_basis: str  # "fit" or "fallback: ..." (the fit has no data for this kernel path)
    # The same figure under its older name (instructions at one cycle each), for readers of
    # reports written before the fit.
    est_cycles_cmsis_nn: int


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


def _undilated(op: OpInfo) -> bool:
    return op.option("dilationWFactor", 1) == 1 and op.option("dilationHFactor", 1) == 1


def kernel_path(op: OpInfo) -> str:
    """The op type, with the CMSIS-NN path the board's library takes for it when it has several
    (arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8, cmsis_nn/fully_connected.cpp)."""
    name = op.op
    if not op.outputs or not op.inputs:
        return name
    out, data = op.outputs[0].shape, op.inputs[0].shape
    weights = op.inputs[1].shape if len(op.inputs) > 1 else ()
    if name == "CONV_2D" and len(weights) == 4 and len(data) == 4 and len(out) == 4:
        _, kh, kw, _ = weights
        stride_1 = op.option("strideW", 1) == 1 and op.option("strideH", 1) == 1
        # A 1x1 filter has no padding under either scheme.
        if kh == 1 and kw == 1 and stride_1 and _undilated(op):
            return "CONV_2D:1x1"
        # arm_convolve_1_x_n_s8 (Conv1D) is arm_convolve_s8 on a Cortex-M4 (it has no MVE).
        return name
    if name == "DEPTHWISE_CONV_2D" and len(weights) == 4 and len(data) == 4:
        _, kh, kw, out_c = weights
        if out_c == data[3] and _undilated(op):  # channel multiplier 1
            # A 3x3 window pads at most 1 on each side under SAME and VALID alike.
            return "DEPTHWISE_CONV_2D:3x3" if (kh, kw) == (3, 3) else "DEPTHWISE_CONV_2D:opt"
        return name
    if name == "FULLY_CONNECTED" and len(out) > 2 and len(weights) == 2 and weights[1] % 4 == 0:
        return "FULLY_CONNECTED:1x1"
    if name in _BROADCASTING_OPS and len(op.inputs) >= 2 and op.inputs[0].size != op.inputs[1].size:
        return f"{name}:broadcast"
    return name


def op_features(op: OpInfo) -> dict[str, float]:
    """Every shape feature of an op (each kernel path's model uses a few of them):
    macs; in / out: elements of the first input / the output; in_rank: in times the input's
    rank; pixels: output positions (out / output channels); calls: pixels times the filter's
    or pooling window's height x width; im2col: calls times the input channels (conv); window:
    calls times the channels (pooling); ktail: out times (filter height x width x input
    channels) % 4 (conv); mtail: out times input channels % 16 (conv, fully connected); ctail:
    pixels (depthwise 3x3) or calls (pooling) times channels % 4."""
    out_shape = op.outputs[0].shape if op.outputs else ()
    in_shape = op.inputs[0].shape if op.inputs else ()
    out = _prod(out_shape) if op.outputs else 0
    inp = _prod(in_shape) if op.inputs else 0
    channels = int(out_shape[-1]) if out_shape else 1
    pixels = out // max(1, channels)
    features = {CONST: 1.0, "macs": float(op_macs(op)), "out": float(out), "in": float(inp),
                "in_rank": float(inp * len(in_shape)), "pixels": float(pixels), "calls": 0.0,
                "im2col": 0.0, "window": 0.0, "ktail": 0.0, "mtail": 0.0, "ctail": 0.0}
    weights = op.inputs[1].shape if len(op.inputs) > 1 else ()
    if op.op in ("CONV_2D", "FULLY_CONNECTED") and weights:
        features["mtail"] = float(out * (int(weights[-1]) % 16))
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(weights) == 4 and len(in_shape) == 4:
        kh, kw = int(weights[1]), int(weights[2])
        features["calls"] = float(pixels * kh * kw)
        if op.op == "CONV_2D":
            in_c = int(in_shape[3])
            features["im2col"] = float(pixels * kh * kw * in_c)
            features["ktail"] = float(out * ((kh * kw * in_c) % 4))
        else:
            features["ctail"] = float(pixels * (channels % 4))
    if op.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        calls = pixels * op.option("filterWidth", 1) * op.option("filterHeight", 1)
        features.update(calls=float(calls), window=float(calls * channels),
                        ctail=float(calls * (channels % 4)))
    return features


def features_of(kernel: str) -> tuple[str, ...]:
    return FEATURES.get(kernel, DEFAULT_FEATURES)


@functools.cache
def fitted_model(path: Path = MODEL_PATH) -> dict[str, Any]:
    """The fitted coefficients (``cost_model.json``); an empty model when the file is absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"kernels": {}}
    if not isinstance(data, dict) or not isinstance(data.get("kernels"), dict):
        raise ValueError(f"{path} holds no fitted kernels")
    return data


def predict(coefficients: dict[str, float], features: dict[str, float]) -> float:
    return sum(value * features[name] for name, value in coefficients.items())


@dataclass(frozen=True)
class Estimate:
    instructions: int
    basis: str


def _fallback(op: OpInfo, features: dict[str, float], kernels: dict[str, Any]) -> Estimate:
    """No probe of this kernel path: another path of the same op, else the fitted kernels'
    median per-op constant, their largest per-MAC cost times the MACs and their largest
    per-element cost times the input and output elements."""
    same_op = sorted(k for k in kernels if k.split(":")[0] == op.op)
    if same_op:
        coefficients = kernels[same_op[0]]["coefficients"]
        if all(name in features for name in coefficients):
            return Estimate(round(predict(coefficients, features)),
                            f"fallback: no probe of {kernel_path(op)}; {same_op[0]}'s fit")
    if not kernels:
        return Estimate(0, "fallback: no fitted cost model (convert/cost_model.json is missing)")
    consts = [k["coefficients"].get(CONST, 0.0) for k in kernels.values()]
    per_mac = max(k["coefficients"].get("macs", 0.0) for k in kernels.values())
    per_element = max(max(k["coefficients"].get("in", 0.0), k["coefficients"].get("out", 0.0))
                      for k in kernels.values() if "macs" not in k["coefficients"])
    value = statistics.median(consts) + per_mac * features["macs"] + \
        per_element * (features["in"] + features["out"])
    return Estimate(round(value), f"fallback: no fitted data for {op.op}; median per-op constant, "
                                  "largest fitted per-MAC and per-element costs")


def estimate(op: OpInfo, model: dict[str, Any] | None = None) -> Estimate:
    """Estimated instructions of one op on the board's library (Cortex-M4, CMSIS-NN)."""
    kernels: dict[str, Any] = (model if model is not None else fitted_model())["kernels"]
    kernel = kernel_path(op)
    features = op_features(op)
    fitted = kernels.get(kernel)
    if fitted is None:
        return _fallback(op, features, kernels)
    return Estimate(round(predict(fitted["coefficients"], features)), "fit")


def layer_costs(model: TfliteModel) -> list[LayerCost]:
    rows = []
    for op in model.ops:
        est = estimate(op)
        rows.append(LayerCost(index=op.index, op=op.op, layer=op.layer,
                              output_shape=list(op.outputs[0].shape) if op.outputs else [],
                              params=op_params(op), macs=op_macs(op), kernel=kernel_path(op),
                              est_instructions=est.instructions, estimate_basis=est.basis,
                              est_cycles_cmsis_nn=est.instructions))
    return rows


def latency_estimate(rows: list[LayerCost], board: Board) -> LatencyEstimate:
    instructions = sum(r.est_instructions for r in rows)
    lower_us = round(instructions / board.clock_hz * 1e6, 1)
    library = fitted_model().get("library", {}).get("version", "the board's TFLM library")
    fallback = sorted({r.op for r in rows if r.estimate_basis != "fit"})
    basis = ("instructions at 1 cycle each (a lower bound; flash wait states and multi-cycle "
             "instructions add to it): per-op models fitted to instruction counts of the emulated "
             f"Cortex-M4 (QEMU -icount) running {library}, see docs/cost-model.md")
    if fallback:
        basis += f"; no fitted data for {', '.join(fallback)} (fallback estimate)"
    return {
        "kind": "estimate",
        "clock_hz": board.clock_hz,
        "instructions": instructions,
        "lower_bound_us": lower_us,
        "fallback_ops": fallback,
        "basis": basis,
    }


def rows_as_dicts(rows: list[LayerCost]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
