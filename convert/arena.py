"""Tensor arena size: measured, plus a margin, checked in a child process.

The TFLM Python runtime segfaults (kills the process, no exception) when the arena is slightly
too small, and so does the board's library on an int8 LSTM, so every run with an untrusted
arena size happens in ``convert.arena_probe``. The board's library also under-reports what an
LSTM needs (``arena_used_bytes()`` leaves out the temporary tensors its Prepare allocates:
2,912 B reported for a 16-step, 8-unit LSTM that needed over 4,096 B), so when the chosen size
fails, ``smallest_arena`` searches for the smallest one that runs.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.childenv import python_env
from common.errors import ModelError
from common.names import shown

# Generous arena for the measuring run: larger than any model that fits the board's RAM.
PROBE_ARENA_BYTES = 1024 * 1024
# Margin rule: the host figure is from an x86-64 build (8-byte pointers) and is larger than
# on the Cortex-M4 (3,824 B host vs 2,852-2,916 B on the board for the same 7-node dnn, both
# measured with TFLM builds), but TFLM versions differ in per-node and persistent bookkeeping
# (the board build is not the PyPI runtime) and CMSIS-NN kernels ask for scratch buffers the
# reference kernels do not. So add max(MIN_MARGIN_BYTES, margin %) and round up to 16 (arena alignment).
MIN_MARGIN_BYTES = 1024
DEFAULT_MARGIN_PERCENT = 10.0
ARENA_ALIGN = 16
PROBE_TIMEOUT_S = 120  # a tiny model runs in well under a second; this only stops a hung child


def choose_arena(measured: int, margin_percent: float = DEFAULT_MARGIN_PERCENT) -> int:
    margin = max(MIN_MARGIN_BYTES, math.ceil(measured * margin_percent / 100.0))
    return (measured + margin + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def margin_rule(margin_percent: float, measured_on: str = "TFLM Python runtime, x86-64") -> str:
    return (f"measured ({measured_on}) + max({MIN_MARGIN_BYTES} B, {margin_percent:g}%), "
            f"rounded up to {ARENA_ALIGN}")


class ArenaTooLarge(ModelError):
    """TFLM ran out of the probe arena: the model needs more RAM than any board offers."""

    def __init__(self, at_least: int) -> None:
        super().__init__(f"model needs a tensor arena of at least {at_least} bytes "
                         f"(TFLM ran out of a {PROBE_ARENA_BYTES // 1024} KB probe arena)")
        self.at_least = at_least


# What the TFLM runtime prints on stderr when it cannot prepare or size a model.
_NODE_FAILED = re.compile(r"Node (\S+) \(number (\d+)\) failed to prepare")
_OUT_OF_ARENA = re.compile(r"Failed to resize buffer\. Requested: (\d+), available (\d+)")


@dataclass(frozen=True)
class ProbeResult:
    total: int | None  # arena bytes used; None when the probe failed
    error: str = ""  # one line for the user
    out_of_arena_at: int | None = None  # bytes in use + requested when TFLM ran out of arena
    op_failed: bool = False  # a kernel refused the model: no arena size would help


def _kernel_error(stderr: str, fallback: str) -> str:
    """The first kernel complaint, naming the op when TFLM says which node failed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    node = next((m for m in map(_NODE_FAILED.search, lines) if m), None)
    detail = next((ln for ln in lines if not _NODE_FAILED.search(ln)), "")
    # "tensorflow/lite/micro/kernels/exp.cc:41 input->type ..." -> "exp.cc:41 input->type ..."
    detail = re.sub(r"^\S*/(\S+:\d+)", r"\1", detail)
    if node:
        where = f"op {shown(node.group(1))} (node {node.group(2)})"
        return f"TFLM failed to prepare the model: {where}: {shown(detail, 160)}" if detail else \
            f"TFLM failed to prepare the model: {where}"
    return f"{fallback}: {shown(detail, 160)}" if detail else fallback


def _run_probe(model: bytes, arena_size: int, board: bool = False) -> ProbeResult:
    env = python_env()
    engine = ["--board"] if board else []
    with tempfile.TemporaryDirectory(prefix="arena_probe_") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        try:
            proc = subprocess.run([sys.executable, "-m", "convert.arena_probe", *engine, str(path),
                                   str(arena_size)],
                                  capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S,
                                  check=False, errors="replace")
        except subprocess.TimeoutExpired:
            return ProbeResult(None, f"TFLM did not finish within {PROBE_TIMEOUT_S} s")
    if proc.returncode < 0:
        return ProbeResult(None, f"TFLM crashed (signal {-proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        reply = {}
    if proc.returncode == 0 and "total" in reply:
        return ProbeResult(int(reply["total"]))
    stderr = proc.stderr or ""
    short = _OUT_OF_ARENA.search(stderr)
    if short:
        requested, available = int(short.group(1)), int(short.group(2))
        return ProbeResult(None, f"TFLM ran out of arena: a buffer of {requested} bytes with {available} "
                                 "bytes left", out_of_arena_at=arena_size - available + requested)
    reason = shown(str(reply.get("error") or f"probe exited with code {proc.returncode}"), 160)
    return ProbeResult(None, _kernel_error(stderr, reason), op_failed=bool(_NODE_FAILED.search(stderr)))


def measure_arena(model: bytes) -> int:
    result = _run_probe(model, PROBE_ARENA_BYTES)
    if result.out_of_arena_at is not None:
        raise ArenaTooLarge(result.out_of_arena_at)
    if result.op_failed:
        raise ModelError(result.error)
    if result.total is None:
        raise ModelError(f"TFLM cannot run the model with a {PROBE_ARENA_BYTES // 1024} KB arena: "
                         f"{result.error}")
    return result.total


def verify_arena(model: bytes, arena_size: int, board: bool = False) -> None:
    result = _run_probe(model, arena_size, board)
    if result.total is None:
        raise ModelError(f"TFLM fails with the chosen arena of {arena_size} bytes: {result.error}")


def smallest_arena(model: bytes, failing: int, board: bool = False) -> int:
    """The smallest arena (to ARENA_ALIGN) the model runs in, given a size it fails with: doubled
    until it runs, then halved down to one alignment step, one child process per size."""
    working = failing
    while True:
        working = min(2 * working, PROBE_ARENA_BYTES)
        if _run_probe(model, working, board).total is not None:
            break
        if working == PROBE_ARENA_BYTES:
            raise ModelError(f"TFLM cannot run the model with a {PROBE_ARENA_BYTES // 1024} KB arena")
        failing = working
    while working - failing > ARENA_ALIGN:
        middle = (failing + working) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if middle <= failing:
            break
        if _run_probe(model, middle, board).total is not None:
            working = middle
        else:
            failing = middle
    return working
