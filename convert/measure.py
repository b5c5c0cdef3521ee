"""``python -m convert --measure``: the model's instructions per layer on the emulated Cortex-M4,
next to convert's estimate.

The generated files are profiled before anything is written (they go to a temporary folder
first), so the measurement lands in convert_report.json with everything else. The emulator
belongs to ``host_tools``, which convert does not import: it runs ``python -m
host_tools.emulated_profile`` as a child process and reads the JSON it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import board_sources, cross_build, emulated_image
from common.childenv import python_env
from common.errors import DeviceError, ToolError, first_line
from convert.cost import LayerCost

__all__ = ["check_available", "measure", "table"]

REPO = Path(__file__).resolve().parent.parent
# First use compiles the board's TFLM library for the Cortex-M4 (minutes on two cores); later
# images take 5-15 s to build and a second to run.
PROFILE_TIMEOUT_S = 1800.0


def check_available() -> None:
    """Everything the emulated board needs, before any work: exit 6 with one line if not."""
    emulated_image.require_qemu("--measure")
    cross_build.require_toolchain()
    board_sources.require_library()
    board_sources.require_core()


def _profile(generated: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "host_tools.emulated_profile", str(generated)],
                          cwd=REPO, env=python_env(), capture_output=True, text=True,
                          timeout=PROFILE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        message = first_line(proc.stderr, default=f"exit code {proc.returncode}").removeprefix("error: ")
        error = ToolError(f"--measure: the emulated board failed: {message}")
        error.exit_code = proc.returncode if 0 < proc.returncode < 64 else DeviceError.exit_code
        raise error
    try:
        record = json.loads(proc.stdout)
    except ValueError:
        raise DeviceError("--measure: the emulated board's profile is not JSON") from None
    if not isinstance(record, dict):
        raise DeviceError("--measure: the emulated board's profile is not a JSON object")
    return record


def measure(files: dict[str, str], rows: list[LayerCost]) -> dict[str, Any]:
    """Profile the generated ``files`` (name -> text) on the emulated board; per layer the
    estimate, the measured instructions and their ratio, for convert_report.json."""
    with tempfile.TemporaryDirectory(prefix="tinyml-measure-") as tmp:
        folder = Path(tmp)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        record = _profile(folder)
    ops = record.get("ops") or []
    names, want = [str(op.get("name")) for op in ops], [r.op for r in rows]
    if record.get("truncated") or names != want:
        raise DeviceError(f"--measure: the emulated board ran ops {names}, the model has {want}")
    layers = []
    for row, op in zip(rows, ops, strict=True):
        measured = int(op["ticks"])
        layers.append({"index": row.index, "op": row.op, "kernel": row.kernel,
                       "est_instructions": row.est_instructions, "measured_instructions": measured,
                       "ratio": round(row.est_instructions / measured, 3) if measured else None})
    measured_total = sum(int(op["ticks"]) for op in ops)
    estimated_total = sum(r.est_instructions for r in rows)
    return {"board": str(record.get("board")), "unit": str(record.get("unit")),
            "clock_hz": int(record.get("clock_hz") or 0),
            "what": "one PROFILE of an input of zeros: each op's instructions, TFLM's per-op dispatch "
                    "included (40-instruction resolution)",
            "est_instructions": estimated_total, "measured_instructions": measured_total,
            "ratio": round(estimated_total / measured_total, 3) if measured_total else None,
            "invoke_instructions": int(record.get("total") or 0), "layers": layers}


def table(measured: dict[str, Any]) -> list[str]:
    lines = [f"measured   on the {measured['board']}, {measured['unit']} per op "
             "(convert's estimate / measured)",
             f"{'#':>3} {'op':<18} {'estimated':>11} {'measured':>11} {'ratio':>6}"]
    for layer in measured["layers"]:
        ratio = f"{layer['ratio']:.2f}" if layer["ratio"] is not None else "-"
        lines.append(f"{layer['index']:>3} {layer['op']:<18} {layer['est_instructions']:>11,} "
                     f"{layer['measured_instructions']:>11,} {ratio:>6}")
    total = f"{measured['ratio']:.2f}" if measured["ratio"] is not None else "-"
    lines.append(f"{'':>3} {'total':<18} {measured['est_instructions']:>11,} "
                 f"{measured['measured_instructions']:>11,} {total:>6}")
    return lines
