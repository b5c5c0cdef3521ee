"""Read an int8 `.tflite` flatbuffer: operators, tensors, constant buffers, and the deployability checks.

This is the only module that touches the flatbuffer schema. It answers: is this a valid
TFLite file, is it fully int8, can TFLM run every op, and what does each layer cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ModelError
from common.names import shown
from common.quant import IoSpec, read_io_spec
from common.quiet import silenced_stderr
from convert.tflm_ops import resolver_method

# A FlatBuffer file identifier lives at bytes 4..8; "TFL3" marks a TFLite model.
TFLITE_IDENTIFIER = b"TFL3"
_MIN_TFLITE_BYTES = 8

# Tensor types allowed in a deployable model besides int8: int32 carries biases and shape /
# axis operands, bool the results of comparisons. Anything float means the model (or part of
# it) was not fully quantized; int16 / uint8 activations are quantization schemes the firmware's
# int8 protocol does not carry.
_ALLOWED_SIDE_TYPES = {"int32", "bool"}
_FLOAT_TYPES = {"float32", "float16", "float64", "bfloat16"}
# Ops whose input 1 holds the weights. The TFLite int8 spec makes weights symmetric (zero point 0)
# and CMSIS-NN's kernels rely on it, so a non-zero weight zero point would be silently ignored.
# The board has 256 KB of RAM; an int8 input or output four times larger is a damaged shape.
_MAX_IO_ELEMENTS = 1 << 20
_WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
# An int8 LSTM keeps its cell state and some gate operands in int16 (TFLite's 8x8->16 scheme);
# TFLM's kernel takes them, and they never cross the protocol (the model's input and output
# stay int8).
_INT16_STATE_OPS = {"UNIDIRECTIONAL_SEQUENCE_LSTM"}


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    is_constant: bool
    zero_points: tuple[int, ...] = ()  # empty when the tensor is not quantized
    scale_count: int = 0  # quantization scales: 1 per tensor, >1 per channel, 0 not quantized
    scale: float = 0.0  # the first quantization scale, 0 when not quantized

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class OpInfo:
    index: int
    op: str  # builtin op name, e.g. "FULLY_CONNECTED"
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    # The builtin options' integer fields (strideW, padding, filterWidth, depthMultiplier, ...):
    # which kernel path TFLM takes, and so what the op costs, depends on them.
    options: tuple[tuple[str, int], ...] = ()

    def option(self, name: str, default: int = 0) -> int:
        return next((value for key, value in self.options if key == name), default)

    @property
    def layer(self) -> str:
        """The layer an op came from, as far as the file tells: its first output tensor's name."""
        return self.outputs[0].name if self.outputs else f"#{self.index}"


@dataclass(frozen=True)
class TfliteModel:
    data: bytes
    io: IoSpec
    ops: tuple[OpInfo, ...]
    output_index: int = -1  # the graph output's tensor index

    @property
    def class_scores(self) -> bool:
        """Whether the output reads as class scores: a vector of two or more written by SOFTMAX.
        Top-1 checks mean something only then (or when the test split has class labels)."""
        producer = next((op.op for op in self.ops if any(t.index == self.output_index for t in op.outputs)),
                        None)
        return producer == "SOFTMAX" and len(self.io.output.shape) == 2 and self.io.output.size >= 2

    @property
    def op_names(self) -> list[str]:
        """Distinct op types, sorted: the resolver registers exactly these."""
        return sorted({op.op for op in self.ops})

    @property
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.op] = counts.get(op.op, 0) + 1
        return dict(sorted(counts.items()))


def _names_by_value(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _schema() -> Any:  # the LiteRT wheel ships the generated schema; import it lazily (it is large)
    from ai_edge_litert import schema_py_generated as schema

    return schema


def check_container(data: bytes, source: str) -> None:
    """Cheap structural checks before any parser sees the bytes."""
    if len(data) < _MIN_TFLITE_BYTES:
        raise ModelError(f"{source} is truncated or empty ({len(data)} bytes): not a TFLite model")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{source} is not a TFLite model (file identifier {data[4:8]!r}, expected 'TFL3')")


def load(data: bytes, source: str) -> TfliteModel:
    """Parse and validate a model; every failure is a one-line ModelError naming ``source``."""
    check_container(data, source)
    # LiteRT runs the FlatBuffer verifier, so truncation and corrupted offsets are caught here,
    # before the unchecked Python schema reader walks the buffer.
    try:
        with silenced_stderr():
            io = read_io_spec(data)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    _check_io_shapes(io, source)
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        count = len(model.subgraphs or [])
        ops = _read_ops(model, schema) if count == 1 else ()
        outputs = list(model.subgraphs[0].outputs if count == 1 and model.subgraphs[0].outputs is not None
                       else [])
    except ModelError as exc:
        raise ModelError(f"{source} is corrupted: {exc}") from None
    except Exception as exc:  # the Python schema reader does no bounds checks of its own
        raise ModelError(f"{source} is corrupted: {type(exc).__name__} while reading the flatbuffer"
                         ) from None
    if count != 1:
        raise ModelError(f"{source} has {count} subgraphs; exactly one is supported")
    return TfliteModel(data=bytes(data), io=io, ops=ops, output_index=int(outputs[0]) if outputs else -1)


def _check_io_shapes(io: IoSpec, source: str) -> None:
    """Firmware and verification feed one sample per invoke; a fixed larger batch cannot take it.
    The shapes size host buffers too, so absurd (damaged) dimensions stop here."""
    for role, spec in (("input", io.input), ("output", io.output)):
        if not spec.shape or spec.shape[0] != 1:
            raise ModelError(f"{source}: {role} tensor '{shown(spec.name)}' has shape {list(spec.shape)}; "
                             "a batch of 1 (shape [1, ...]) is required")
        if any(d < 1 for d in spec.shape) or math.prod(spec.shape) > _MAX_IO_ELEMENTS:
            raise ModelError(f"{source}: {role} tensor '{shown(spec.name)}' has shape {list(spec.shape)}, "
                             f"which no board can hold (at most {_MAX_IO_ELEMENTS:,} elements)")


def _read_ops(model: Any, schema: Any) -> tuple[OpInfo, ...]:
    op_names = _names_by_value(schema.BuiltinOperator)
    type_names = {k: v.lower() for k, v in _names_by_value(schema.TensorType).items()}
    graph = model.subgraphs[0]
    buffers = model.buffers or []

    def has_data(buffer_index: int) -> bool:
        if not 0 < buffer_index < len(buffers):
            return False
        buf = buffers[buffer_index]
        return (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "offset", 0))

    tensors = []
    for i, t in enumerate(graph.tensors or []):
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        quant = t.quantization
        zero_points = tuple(int(z) for z in (quant.zeroPoint if quant is not None and
                                             quant.zeroPoint is not None else []))
        scales = quant.scale if quant is not None and quant.scale is not None else []
        tensors.append(TensorInfo(index=i, name=name, shape=shape,
                                  dtype=type_names.get(t.type, f"type{t.type}"),
                                  is_constant=has_data(t.buffer), zero_points=zero_points,
                                  scale_count=len(scales), scale=float(scales[0]) if len(scales) else 0.0))
    codes = model.operatorCodes or []
    ops = []
    for i, op in enumerate(graph.operators or []):
        if not 0 <= op.opcodeIndex < len(codes):
            raise ModelError(f"operator {i} uses opcode {op.opcodeIndex} of {len(codes)}")
        code = codes[op.opcodeIndex]
        # Schema v3a: codes above 127 live only in builtinCode; older files only in the deprecated field.
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode("utf-8", "replace") if isinstance(code.customCode, bytes) \
                else str(code.customCode)
            name = f"CUSTOM:{shown(custom)}"
        in_idx = [int(j) for j in (op.inputs if op.inputs is not None else [])]
        out_idx = [int(j) for j in (op.outputs if op.outputs is not None else [])]
        if any(j >= len(tensors) or j < -1 for j in (*in_idx, *out_idx)):
            raise ModelError(f"operator {i} refers to a tensor outside the {len(tensors)} in the model")
        # -1 marks an omitted optional operand; it is left out, not looked up.
        ins = tuple(tensors[j] for j in in_idx if j >= 0)
        outs = tuple(tensors[j] for j in out_idx if j >= 0)
        ops.append(OpInfo(index=i, op=name, inputs=ins, outputs=outs, options=_int_options(op)))
    return tuple(ops)


def _int_options(op: Any) -> tuple[tuple[str, int], ...]:
    """The integer (and bool) fields of an operator's builtin options, sorted by name."""
    options = getattr(op, "builtinOptions", None)
    if options is None:
        return ()
    return tuple(sorted((key, int(value)) for key, value in vars(options).items()
                        if isinstance(value, int)))


def check_int8(model: TfliteModel, source: str) -> None:
    """Input, output and every op's tensors must be int8 (int32 / bool operands allowed), with
    zero points the int8 spec allows."""
    for role, spec in (("input", model.io.input), ("output", model.io.output)):
        if spec.dtype != "int8":
            kind = "a float model" if spec.dtype in _FLOAT_TYPES else "not an int8 model"
            raise ModelError(f"{source} is {kind}: {role} tensor '{shown(spec.name)}' is {spec.dtype}, "
                             "int8 required (convert with full-integer quantization)")
        if not (spec.scale > 0 and math.isfinite(spec.scale)):
            raise ModelError(f"{source}: {role} tensor '{shown(spec.name)}' has no quantization scale")
    for op in model.ops:
        for t in (*op.inputs, *op.outputs):
            if t.dtype == "int8" or t.dtype in _ALLOWED_SIDE_TYPES:
                continue
            if t.dtype == "int16" and op.op in _INT16_STATE_OPS and t.index != model.output_index:
                continue
            what = "weights" if t.is_constant else "tensor"
            kind = "a float model" if t.dtype in _FLOAT_TYPES else "not fully int8"
            raise ModelError(f"{source} is {kind}: {what} '{shown(t.name)}' of op {op.op} "
                             f"(layer {shown(op.layer)}) is {t.dtype}, int8 required")
        _check_zero_points(op, source)


def _check_zero_points(op: OpInfo, source: str) -> None:
    for t in (*op.inputs, *op.outputs):
        if t.dtype == "int8" and any(not -128 <= z <= 127 for z in t.zero_points):
            raise ModelError(f"{source}: int8 tensor '{shown(t.name)}' of op {op.op} has a zero point "
                             "outside -128..127")
        if t.dtype == "int32" and t.is_constant and any(t.zero_points):
            raise ModelError(f"{source}: int32 bias '{shown(t.name)}' of op {op.op} has a non-zero "
                             "zero point (the int8 spec requires 0)")
    if op.op in _WEIGHT_OPS and len(op.inputs) > 1:
        weights = op.inputs[1]
        if weights.dtype == "int8" and any(weights.zero_points):
            raise ModelError(f"{source}: int8 weights '{shown(weights.name)}' of op {op.op} "
                             f"(layer {shown(op.layer)}) have a non-zero zero point; the TFLite int8 "
                             "spec and CMSIS-NN require symmetric weights (zero point 0)")


def check_tflm_ops(model: TfliteModel) -> None:
    for op in model.ops:
        if resolver_method(op.op) is None:
            raise ModelError(f"op {op.op} (layer {shown(op.layer)}) is not supported by TFLM")
