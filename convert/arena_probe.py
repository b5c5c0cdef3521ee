"""Child-process entry: run a model once in a TFLM and report its arena use.

Run as ``python -m convert.arena_probe [--board] MODEL.tflite ARENA_BYTES``: the TFLM Python
runtime, or with ``--board`` the board's library built for the host (``common.board_tflm``).
It is a separate process because both can crash the whole interpreter (SIGSEGV) when the
arena is too small: the runtime's allocator, and the board library's LSTM kernel, which uses
the temporary tensors its Prepare asks for without checking that they were allocated. The
parent (convert.arena) turns a crash into an error message. Prints one JSON line:
``{"total": bytes}`` on success, ``{"error": text}`` otherwise (exit code 3).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
PROBE_SEED = 1234


def _captured_stderr(call: Callable[[], object]) -> str:
    """Text a native call writes to fd 2 (print_allocations() reports on stderr, not stdout)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace")


def probe(model: bytes, arena_size: int) -> int:
    """Bytes the recording allocator used for one invoke (x86-64 layout)."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    details = interp.get_input_details(0)
    shape = tuple(int(d) for d in details["shape"])
    rng = np.random.default_rng(PROBE_SEED)
    interp.set_input(rng.integers(-128, 128, size=shape, dtype=np.int8), 0)
    interp.invoke()
    text = _captured_stderr(interp.print_allocations)
    match = _TOTAL.search(text)
    if not match:
        raise RuntimeError("TFLM printed no arena total")
    return int(match.group(1))


def probe_board(model: bytes, arena_size: int) -> int:
    """Bytes the board's library reports used after one invoke (x86-64 layout)."""
    from common import board_tflm

    runner = board_tflm.BoardTflm.open(model, arena_size)
    rng = np.random.default_rng(PROBE_SEED)
    runner.run(rng.integers(-128, 128, size=(1, runner.input_bytes), dtype=np.int8))
    return runner.arena_used


def main(argv: list[str]) -> int:
    board = argv[:1] == ["--board"]
    argv = argv[1:] if board else argv
    if len(argv) != 2:
        usage = "usage: python -m convert.arena_probe [--board] MODEL.tflite ARENA_BYTES"
        print(json.dumps({"error": usage}))
        return 2
    try:
        total = (probe_board if board else probe)(Path(argv[0]).read_bytes(), int(argv[1]))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(json.dumps({"error": first}))
        return 3
    print(json.dumps({"total": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
