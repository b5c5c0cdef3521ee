"""Input / output quantization of an int8 `.tflite`, read from the file itself.

Every stage that feeds or reads int8 tensors (convert's verification, the virtual board,
evaluate, compare) takes the parameters from here, so they can never drift apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ModelError
from common.names import shown

# The first bytes of the SHA-256 of the .tflite identify a model (settings header, handshake).
MODEL_HASH_BYTES = 8


def model_hash(tflite: bytes) -> str:
    """Hex prefix of the SHA-256 of the model bytes (16 hex digits)."""
    return hashlib.sha256(tflite).hexdigest()[: 2 * MODEL_HASH_BYTES]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, "int8" for a deployable model
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values (any leading batch) -> int8, the way TFLite's QUANTIZE kernel does it:
        round half away from zero (not numpy's ties-to-even), add the zero point, saturate."""
        v = np.asarray(x, dtype=np.float32) / np.float32(self.scale)
        whole = np.trunc(v)
        # v - trunc(v) is exact; floor(|v| + 0.5) is not (0.49999997 + 0.5 rounds up to 1.0).
        q = np.where(np.abs(v - whole) >= 0.5, whole + np.sign(v), whole) + self.zero_point
        quantized: np.ndarray = np.clip(q, -128, 127).astype(np.int8)
        return quantized


@dataclass(frozen=True)
class IoSpec:
    input: TensorSpec
    output: TensorSpec


def read_io_spec(tflite: bytes) -> IoSpec:
    """The single input and output tensor of a model, with their quantization, read from the
    flatbuffer itself (the schema LiteRT ships). Not from a LiteRT interpreter: LiteRT refuses
    models TFLM runs (its stricter reading of ``quantized_dimension`` in TFLM's own
    person_detect model), and the board runs TFLM."""
    _check_structure(tflite)
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(bytearray(tflite), 0)
        if model.SubgraphsLength() < 1:
            raise ModelError("not a valid TFLite model: it has no subgraph")
        graph = model.Subgraphs(0)
        inputs = [int(graph.Inputs(i)) for i in range(graph.InputsLength())]
        outputs = [int(graph.Outputs(i)) for i in range(graph.OutputsLength())]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"model has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "exactly one of each is supported")
        types = {v: k.lower() for k, v in vars(schema.TensorType).items()
                 if not k.startswith("_") and isinstance(v, int)}
        return IoSpec(input=_flatbuffer_spec(graph.Tensors(inputs[0]), types),
                      output=_flatbuffer_spec(graph.Tensors(outputs[0]), types))
    except ModelError:
        raise
    except UnicodeDecodeError:
        raise ModelError("not a valid TFLite model: an input or output tensor name is not UTF-8 "
                         "text") from None
    except Exception as exc:  # the schema reader does no bounds checks of its own
        raise ModelError(f"not a valid TFLite model: {type(exc).__name__} while reading its inputs and "
                         "outputs") from None


def _check_structure(tflite: bytes) -> None:
    """LiteRT's flatbuffer verifier catches truncation and corrupted offsets before the unchecked
    schema reader walks the buffer. What LiteRT refuses after verifying is LiteRT's own rule,
    not damage, and does not stop a model TFLM may run."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=bytes(tflite))
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "not a valid flatbuffer" in first.lower() or "identifier" in first.lower():
            raise ModelError(f"not a valid TFLite model: {shown(first, 200)}") from None


def _flatbuffer_spec(tensor: Any, types: dict[int, str]) -> TensorSpec:
    name = tensor.Name()
    quant = tensor.Quantization()
    scale = float(quant.Scale(0)) if quant is not None and quant.ScaleLength() else 0.0
    zero_point = int(quant.ZeroPoint(0)) if quant is not None and quant.ZeroPointLength() else 0
    kind = types.get(int(tensor.Type()), f"type{int(tensor.Type())}")
    try:
        dtype = np.dtype(kind).name
    except TypeError:
        dtype = kind
    return TensorSpec(name=name.decode("utf-8") if isinstance(name, bytes) else str(name or ""),
                      shape=tuple(int(tensor.Shape(j)) for j in range(tensor.ShapeLength())),
                      dtype=dtype, scale=scale, zero_point=zero_point)
