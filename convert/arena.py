"""Tensor arena size: measured in a child process, plus a margin, checked in a child process.

The TFLM Python runtime segfaults (kills the process, no exception) when the arena is slightly
too small, so every run with an untrusted arena size happens in ``convert.arena_probe``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common.errors import ModelError

# Generous arena for the measuring run: larger than any model that fits the board's RAM.
PROBE_ARENA_BYTES = 1024 * 1024
# Margin rule: the host figure is from an x86-64 build (8-byte pointers) and is larger than
# on the Cortex-M4 (3,824 B host vs 2,852-2,916 B on the board for the same model,
# measurements.md), but TFLM versions differ in per-node and persistent bookkeeping (the board
# build is not the PyPI runtime) and CMSIS-NN kernels ask for scratch buffers the reference
# kernels do not. So add max(MIN_MARGIN_BYTES, margin %) and round up to 16 (arena alignment).
MIN_MARGIN_BYTES = 1024
DEFAULT_MARGIN_PERCENT = 10.0
ARENA_ALIGN = 16
PROBE_TIMEOUT_S = 120  # a tiny model runs in well under a second; this only stops a hung child


def choose_arena(measured: int, margin_percent: float = DEFAULT_MARGIN_PERCENT) -> int:
    margin = max(MIN_MARGIN_BYTES, math.ceil(measured * margin_percent / 100.0))
    return (measured + margin + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def margin_rule(margin_percent: float) -> str:
    return (f"measured (TFLM Python runtime, x86-64) + max({MIN_MARGIN_BYTES} B, {margin_percent:g}%), "
            f"rounded up to {ARENA_ALIGN}")


def _run_probe(model: bytes, arena_size: int) -> tuple[int | None, str]:
    repo_root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="arena_probe_") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        try:
            proc = subprocess.run([sys.executable, "-m", "convert.arena_probe", str(path), str(arena_size)],
                                  capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return None, f"TFLM did not finish within {PROBE_TIMEOUT_S} s"
    if proc.returncode < 0:
        return None, f"TFLM crashed (signal {-proc.returncode})"
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        reply = {}
    if proc.returncode == 0 and "total" in reply:
        return int(reply["total"]), ""
    return None, str(reply.get("error") or f"probe exited with code {proc.returncode}")


def measure_arena(model: bytes) -> int:
    total, error = _run_probe(model, PROBE_ARENA_BYTES)
    if total is None:
        raise ModelError(f"TFLM cannot run the model with a {PROBE_ARENA_BYTES // 1024} KB arena: {error}")
    return total


def verify_arena(model: bytes, arena_size: int) -> None:
    total, error = _run_probe(model, arena_size)
    if total is None:
        raise ModelError(f"TFLM fails with the chosen arena of {arena_size} bytes: {error}")
