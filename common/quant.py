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


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(name=str(detail["name"]), shape=tuple(int(d) for d in detail["shape"]),
                      dtype=np.dtype(detail["dtype"]).name, scale=float(scale),
                      zero_point=int(zero_point))


def read_io_spec(tflite: bytes) -> IoSpec:
    """The single input and output tensor of a model, with their quantization."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_content=bytes(tflite))
        # Tensor names are decoded here: a damaged name raises UnicodeDecodeError (a ValueError).
        inputs, outputs = interp.get_input_details(), interp.get_output_details()
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"not a valid TFLite model: {shown(first, 200)}") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"model has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "exactly one of each is supported")
    return IoSpec(input=_spec(inputs[0]), output=_spec(outputs[0]))
