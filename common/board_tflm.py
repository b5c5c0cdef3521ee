"""Run a .tflite on the board's TFLM library built for the host (``firmware/host/board_runner.cpp``).

convert's TFLM column: the same kernels and the same library version as the board, so a
model the library computes differently from newer TFLM (per-channel fully connected, for one)
shows it here, before anything is flashed. The runner library is cached next to the archive.

    runner = BoardTflm.open(model_bytes, arena_bytes)   # builds once, minutes
    outputs = runner.run(int8_inputs)                   # (N, *input) -> (N, output_size)
    runner.arena_used                                   # bytes, x86-64 layout
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from common import native_tflm
from common.errors import ModelError

__all__ = ["BoardTflm", "engine_name"]

RUNNER_SOURCE = native_tflm.HOST_DIR / "board_runner.cpp"
RUNNER_NAME = "libboard_runner.so"
# Below this the library's allocator cannot even place its own bookkeeping and crashes the
# process (a 64-byte arena segfaults; 256 B fails cleanly), so such sizes never reach it.
MIN_ARENA_BYTES = 256


@functools.cache
def _library() -> tuple[ctypes.CDLL, str]:
    native = native_tflm.build_archive()
    target = native.archive.parent / f"runner-{native_tflm.source_digest([RUNNER_SOURCE])}" / RUNNER_NAME
    path = native_tflm.compile_shared([RUNNER_SOURCE], [native_tflm.HOST_DIR], native, target)
    lib = ctypes.CDLL(str(path))
    u32, i32, vp = ctypes.c_uint32, ctypes.c_int32, ctypes.c_void_p
    for name, args, res in (("br_open", [vp, u32, u32], i32), ("br_close", [], None),
                            ("br_message", [], ctypes.c_char_p), ("br_input_bytes", [], u32),
                            ("br_output_bytes", [], u32), ("br_arena_used", [], u32),
                            ("br_run", [vp, u32, vp], u32)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib, native.version


def engine_name() -> str:
    """``<library> <version> (<digest>), host build``: how reports name this engine."""
    return f"{_library()[1]}, host build"


class BoardTflm:
    """One model opened in the runner (the runner holds one model at a time)."""

    def __init__(self, lib: ctypes.CDLL, model: bytes, arena_bytes: int) -> None:
        self._lib = lib
        self._model = model
        if arena_bytes < MIN_ARENA_BYTES:
            raise ModelError(f"an arena of {arena_bytes} bytes is too small for any model "
                             f"(at least {MIN_ARENA_BYTES})")
        code = lib.br_open(model, len(model), arena_bytes)
        if code != 0:
            message = lib.br_message().decode("utf-8", "replace")
            raise ModelError(f"the board's TFLM library cannot run the model: {message}")
        self.input_bytes = int(lib.br_input_bytes())
        self.output_bytes = int(lib.br_output_bytes())
        self.arena_used = int(lib.br_arena_used())

    @classmethod
    def open(cls, model: bytes, arena_bytes: int) -> BoardTflm:
        lib, _ = _library()
        return cls(lib, model, arena_bytes)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Raw output bytes per sample as int8, shape (N, output_bytes), one Invoke per sample."""
        batch = np.ascontiguousarray(inputs).reshape(len(inputs), -1).view(np.uint8)
        if batch.shape[1] != self.input_bytes:
            raise ModelError(f"inputs have {batch.shape[1]} bytes per sample, "
                             f"the model takes {self.input_bytes}")
        out = np.zeros((len(inputs), self.output_bytes), dtype=np.uint8)
        done = self._lib.br_run(batch.ctypes.data, len(inputs), out.ctypes.data)
        if done != len(inputs):
            message = self._lib.br_message().decode("utf-8", "replace")
            raise ModelError(f"the board's TFLM library failed on sample {done}: {message}")
        return out.view(np.int8)
