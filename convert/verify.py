"""Run the int8 model on the desktop twice: LiteRT and the TFLM Python runtime.

LiteRT runs as a desktop user gets it, with its default XNNPACK delegate, whose int8 kernels
round slightly differently from TFLM's; with the delegate off (builtin kernels) the outputs were
bit-identical to TFLM on MNIST models. Both figures are reported. The outputs here are the
'LiteRT int8' and 'TFLM host' columns of the final report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from common.errors import ModelError
from common.names import shown
from common.quiet import silenced_stderr

# Inputs for --from-tflite without a test split: enough to see rounding differences.
RANDOM_SAMPLES = 200


@dataclass(frozen=True)
class Agreement:
    identical_share: float  # samples whose whole output vector is identical
    max_abs_diff_lsb: int
    top1_agreement: float

    def as_dict(self) -> dict[str, float | int]:
        return {"identical_share": self.identical_share, "max_abs_diff_lsb": self.max_abs_diff_lsb,
                "top1_agreement": self.top1_agreement}


def run_litert(model: bytes, inputs: np.ndarray, default_delegates: bool = True) -> np.ndarray:
    """int8 outputs (N, C) for int8 inputs (N, *input_shape[1:]), one sample per invoke (batch 1).
    ``default_delegates=False`` runs LiteRT's builtin kernels without XNNPACK."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if default_delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    results = []
    try:
        with silenced_stderr():
            interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
            inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
            for sample in inputs:
                interp.set_tensor(inp["index"], sample[np.newaxis])
                interp.invoke()
                results.append(interp.get_tensor(out["index"]).reshape(-1).copy())
    except (RuntimeError, ValueError) as exc:
        # Damaged quantization parameters get this far: XNNPACK refuses them when it prepares.
        # LiteRT joins its reporter's messages without a space ("... Was 3.Tensor 5 has invalid ...").
        reason = re.sub(r"\.(?=[A-Z])", ". ", _first_line(exc)).rstrip(".")
        raise ModelError(f"LiteRT cannot run the model: {reason}") from None
    return np.stack(results).astype(np.int8)


def _first_line(exc: BaseException) -> str:
    """First line of a runtime's message, without control characters and of sane length."""
    return shown((str(exc).strip().splitlines() or [type(exc).__name__])[0], 200)


def run_tflm(model: bytes, inputs: np.ndarray, arena_size: int) -> np.ndarray:
    """Same as run_litert with the TFLM Python runtime; ``arena_size`` must already be known to work
    (convert.arena checks it in a child process, because a too-small arena crashes the process)."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        with silenced_stderr():
            interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
            results = []
            for sample in inputs:
                interp.set_input(sample[np.newaxis], 0)
                interp.invoke()
                results.append(np.asarray(interp.get_output(0)).reshape(-1).copy())
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"TFLM failed to run the model: {_first_line(exc)}") from None
    return np.stack(results).astype(np.int8)


def agreement(a: np.ndarray, b: np.ndarray) -> Agreement:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return Agreement(identical_share=float(np.mean(np.all(diff == 0, axis=1))),
                     max_abs_diff_lsb=int(diff.max()) if diff.size else 0,
                     top1_agreement=float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


def random_inputs(shape: tuple[int, ...], seed: int, count: int = RANDOM_SAMPLES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(count, *shape[1:]), dtype=np.int8)
