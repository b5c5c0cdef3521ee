"""Hardware in the loop: the flashed Nano 33 BLE Sense against the run folder that built it.

Skipped unless TINYML_PORT names the board's serial port and TINYML_RUN the run folder whose
generated files were flashed (`make demo flash`, then
`TINYML_PORT=/dev/ttyACM0 TINYML_RUN=artifacts make test`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

PORT = os.environ.get("TINYML_PORT")
RUN = Path(os.environ.get("TINYML_RUN", "artifacts"))

pytestmark = [pytest.mark.board,
              pytest.mark.skipif(not PORT, reason="no board: set TINYML_PORT (and TINYML_RUN)")]


def test_board_reports_the_run_folders_model() -> None:
    proc = run_tool("host_tools", "info", "--port", str(PORT), "--run", str(RUN))
    assert "matches" in proc.stdout, proc.stdout


def test_board_outputs_match_tflm_on_the_host(tmp_path: Path) -> None:
    proc = run_tool("host_tools", "evaluate", "--port", str(PORT), "--run", str(RUN), "--restart",
                    "--no-progress", timeout=1800)
    assert proc.returncode == 0
    device = json.loads((RUN / "device_eval.json").read_text())
    assert device["header"]["virtual"] is False
    samples = sorted(device["samples"], key=lambda s: s["index"])
    outputs = np.array([s["output"] for s in samples], dtype=np.int8)
    with np.load(RUN / "desktop_outputs.npz") as desk:
        reference = desk["tflm_int8"]
    assert [s["index"] for s in samples] == list(range(len(reference)))
    # CMSIS-NN kernels may round differently from the reference kernels by an LSB or two;
    # top-1 must still agree on almost every sample.
    assert np.abs(outputs.astype(int) - reference.astype(int)).max() <= 3
    assert (outputs.argmax(1) == reference.argmax(1)).mean() >= 0.99
    assert all(s["cycles"] for s in samples)  # the DWT counter is running
