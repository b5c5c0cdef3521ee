"""convert's TFLM column: the board's own library built for the host, checked against a second TFLM.

The board's library (``common.board_tflm``) is the reference: it is what the Nano compiles.
The ``tflite-micro`` Python runtime is a newer TFLM and an independent cross-check; a sample
on which the two part is reported loudly, because one of them computes the model wrongly and
it may be the board. Without the board's sources on this machine the Python runtime stands
in, and the report says so.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import numpy as np

from common import board_sources, board_tflm
from common.errors import ModelError
from convert import arena as arena_mod
from convert import verify

__all__ = ["ArenaMeasure", "TflmRun", "arena_runs", "board_available", "measure_arena", "run_tflm",
           "smallest_arena", "verify_arena"]

# The Python runtime lays tensors out for x86-64 too, but its newer TFLM keeps more bookkeeping
# than the board's library; twice the chosen arena (at least 16 KB) leaves room for that, and a
# too-small arena would crash the process rather than raise.
PYTHON_ARENA_FACTOR = 2
PYTHON_ARENA_MIN = 16 * 1024
# What TFLM's allocator logs when the arena is too small (micro_allocator.cpp,
# micro_allocation_info.cpp and the arena allocators of the board's library).
OUT_OF_ARENA_WORDS = ("Failed to resize buffer", "Failed to allocate", "Failed to reserve")
# How many parting sample indices the report lists.
LISTED_SAMPLES = 20


def board_available() -> bool:
    return board_sources.find_library() is not None


def python_engine_name() -> str:
    try:
        version = importlib.metadata.version("tflite-micro")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"tflite-micro {version} Python runtime"


@dataclass(frozen=True)
class ArenaMeasure:
    measured: int
    how: str  # for arena_rule in the report


def measure_arena(data: bytes) -> ArenaMeasure:
    """Arena the model uses: on the board's library when present (x86-64 layout, larger than on
    the 32-bit board), else on the Python runtime in a child process."""
    if board_available():
        try:
            probe = board_tflm.BoardTflm.open(data, arena_mod.PROBE_ARENA_BYTES)
        except ModelError as exc:
            # Out of arena (TFLM's allocator says so) is a size problem; any other failure, such
            # as a kernel refusing the model in Prepare, keeps TFLM's own words.
            if any(words in str(exc) for words in OUT_OF_ARENA_WORDS):
                short = arena_mod._OUT_OF_ARENA.search(str(exc))  # "Requested: N, available M"
                need = (arena_mod.PROBE_ARENA_BYTES - int(short.group(2)) + int(short.group(1))
                        if short else arena_mod.PROBE_ARENA_BYTES + 1)
                raise arena_mod.ArenaTooLarge(need) from None
            raise
        return ArenaMeasure(probe.arena_used, f"{board_tflm.engine_name()}, x86-64")
    return ArenaMeasure(arena_mod.measure_arena(data), f"{python_engine_name()}, x86-64")


def arena_runs(data: bytes, arena_bytes: int) -> bool:
    """Whether the model runs in this arena, tried in a child process (a too-small arena can crash
    the board's library as well as the Python runtime)."""
    try:
        verify_arena(data, arena_bytes)
    except ModelError:
        return False
    return True


def smallest_arena(data: bytes, failing: int) -> ArenaMeasure:
    engine = f"{board_tflm.engine_name()}, x86-64" if board_available() else f"{python_engine_name()}, x86-64"
    size = arena_mod.smallest_arena(data, failing, board=board_available())
    return ArenaMeasure(size, f"smallest arena that ran on the {engine}, to {arena_mod.ARENA_ALIGN} B")


def verify_arena(data: bytes, arena_bytes: int) -> None:
    arena_mod.verify_arena(data, arena_bytes, board=board_available())


@dataclass(frozen=True)
class TflmRun:
    outputs: np.ndarray  # the TFLM column (N, outputs)
    engine: str
    crosscheck: dict[str, Any]  # the other TFLM against this one; empty without a second engine
    warnings: list[str]


def _crosscheck(board: np.ndarray, python: np.ndarray, name: str) -> tuple[dict[str, Any], list[str]]:
    diff = np.abs(board.astype(np.int16) - python.astype(np.int16)).max(axis=1)
    parting = np.flatnonzero(diff)
    result = {"engine": name, "samples": len(board), "identical": int(len(board) - len(parting)),
              "max_abs_diff_lsb": int(diff.max()) if diff.size else 0,
              "parting_samples": parting[:LISTED_SAMPLES].tolist()}
    warnings = []
    if len(parting):
        warnings.append(f"the board's TFLM library and the {name} differ on {len(parting)} of {len(board)} "
                        f"samples (up to {result['max_abs_diff_lsb']} LSB; first: sample {int(parting[0])}): "
                        "one of them computes this model wrongly")
    return result, warnings


def run_tflm(data: bytes, inputs: np.ndarray, arena_bytes: int) -> TflmRun:
    python_arena = max(PYTHON_ARENA_MIN, PYTHON_ARENA_FACTOR * arena_bytes)
    if not board_available():
        outputs = verify.run_tflm(data, inputs, python_arena)
        note = (f"the board's TFLM library is not on this machine, so the TFLM column is the "
                f"{python_engine_name()}, not what the board computes: {board_sources.FETCH_HINT}")
        return TflmRun(outputs, python_engine_name(), {}, [note])
    board = board_tflm.BoardTflm.open(data, arena_bytes).run(inputs)
    python = verify.run_tflm(data, inputs, python_arena)
    crosscheck, warnings = _crosscheck(board, python, python_engine_name())
    return TflmRun(board, board_tflm.engine_name(), crosscheck, warnings)
