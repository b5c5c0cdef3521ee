"""Read an int8 `.tflite` flatbuffer: operators, tensors, constant buffers, and the deployability checks.

This is the only module that touches the flatbuffer schema. It answers: is this a valid
TFLite file, is it fully int8, can TFLM run every op, and what does each layer cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.errors import ModelError
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


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    is_constant: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class OpInfo:
    index: int
    op: str  # builtin op name, e.g. "FULLY_CONNECTED"
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def layer(self) -> str:
        """The layer an op came from, as far as the file tells: its first output tensor's name."""
        return self.outputs[0].name if self.outputs else f"#{self.index}"


@dataclass(frozen=True)
class TfliteModel:
    data: bytes
    io: IoSpec
    ops: tuple[OpInfo, ...]

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


def _schema():  # the LiteRT wheel ships the generated schema; import it lazily (it is large)
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
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:
        raise ModelError(f"{source} is corrupted: {type(exc).__name__} while reading the flatbuffer"
                         ) from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        count = len(model.subgraphs or [])
        raise ModelError(f"{source} has {count} subgraphs; exactly one is supported")
    return TfliteModel(data=bytes(data), io=io, ops=_read_ops(model, schema))


def _read_ops(model, schema) -> tuple[OpInfo, ...]:
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
        tensors.append(TensorInfo(index=i, name=name, shape=shape,
                                  dtype=type_names.get(t.type, f"type{t.type}"),
                                  is_constant=has_data(t.buffer)))
    ops = []
    for i, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        # Schema v3a: codes above 127 live only in builtinCode; older files only in the deprecated field.
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM:{custom}"
        ins = tuple(tensors[j] for j in (op.inputs if op.inputs is not None else []) if j >= 0)
        outs = tuple(tensors[j] for j in (op.outputs if op.outputs is not None else []) if j >= 0)
        ops.append(OpInfo(index=i, op=name, inputs=ins, outputs=outs))
    return tuple(ops)


def check_int8(model: TfliteModel, source: str) -> None:
    """Input, output and every op's tensors must be int8 (int32 / bool operands allowed)."""
    for role, spec in (("input", model.io.input), ("output", model.io.output)):
        if spec.dtype != "int8":
            kind = "a float model" if spec.dtype in _FLOAT_TYPES else "not an int8 model"
            raise ModelError(f"{source} is {kind}: {role} tensor '{spec.name}' is {spec.dtype}, "
                             "int8 required (convert with full-integer quantization)")
        if not (spec.scale > 0 and math.isfinite(spec.scale)):
            raise ModelError(f"{source}: {role} tensor '{spec.name}' has no quantization scale")
    for op in model.ops:
        for t in (*op.inputs, *op.outputs):
            if t.dtype == "int8" or t.dtype in _ALLOWED_SIDE_TYPES:
                continue
            what = "weights" if t.is_constant else "tensor"
            kind = "a float model" if t.dtype in _FLOAT_TYPES else "not fully int8"
            raise ModelError(f"{source} is {kind}: {what} '{t.name}' of op {op.op} (layer {op.layer}) "
                             f"is {t.dtype}, int8 required")


def check_tflm_ops(model: TfliteModel) -> None:
    for op in model.ops:
        if resolver_method(op.op) is None:
            raise ModelError(f"op {op.op} (layer {op.layer}) is not supported by TFLM")
