"""`compare`: the four-column report, built from an evaluation over the virtual board."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

pytestmark = pytest.mark.slow


def _agreement_row(md: str, step: str) -> list[str]:
    for line in md.splitlines():
        if line.startswith(f"| {step} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no agreement row for {step}")


def test_report_has_four_columns_and_flags_a_corrupted_device_output(run_copy: Path) -> None:
    run_tool(
        "host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), "--no-progress", timeout=300
    )
    proc = run_tool("host_tools", "compare", "--run", str(run_copy), timeout=300)
    assert str(run_copy / "report.html") in proc.stdout and str(run_copy / "report.md") in proc.stdout
    md = (run_copy / "report.md").read_text()
    for column in ("Keras float", "LiteRT int8", "TFLM (host)", "device (virtual board)"):
        assert column in md
    row = _agreement_row(md, "TFLM (host) -> device (virtual board)")
    assert row[2:5] == ["100.00%", "0", "100.00%"]
    html = (run_copy / "report.html").read_text()
    # accuracy, the confusion matrices side by side, the latency histogram, the training curves
    assert html.count("data:image/png;base64,") >= 4
    assert (run_copy / "compare_confusion.png").is_file() and (run_copy / "compare_latency.png").is_file()
    assert "## Training curves\n\n![training curves](history.png)" in md
    assert "## Layers" in md and "| FULLY_CONNECTED |" in md
    assert "virtual board: Invoke() on this computer (host time, not the board)" in md
    assert "device Invoke() (measured)" not in md

    # One device output changed by one LSB: the report must show it as a firmware/link fault.
    data = json.loads((run_copy / "device_eval.json").read_text())
    out = data["samples"][17]["output"]
    k = max(range(len(out)), key=lambda j: out[j])
    out[k] -= 1 if out[k] > -128 else -1
    (run_copy / "device_eval.json").write_text(json.dumps(data))
    run_tool("host_tools", "compare", "--run", str(run_copy), timeout=300)
    md = (run_copy / "report.md").read_text()
    row = _agreement_row(md, "TFLM (host) -> device (virtual board)")
    assert row[4] == f"{100 * (1 - 1 / len(data['samples'])):.2f}%" and row[5] == "1"
    assert (run_copy / "compare_diff_tflm_int8_vs_device.png").is_file()
    assert re.search(r"compare_diff_tflm_int8_vs_device\.png", md)


def test_report_without_device_results_has_three_columns(run_copy: Path) -> None:
    run_tool("host_tools", "compare", "--run", str(run_copy), timeout=300)
    md = (run_copy / "report.md").read_text()
    assert "not evaluated yet" in md and "device (" not in md


def test_compare_on_empty_folder_is_one_line_error(tmp_path: Path) -> None:
    proc = run_tool("host_tools", "compare", "--run", str(tmp_path), check=False, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "python -m train" in proc.stderr


def test_thumbnails_draw_class_names_literally(tmp_path: Path) -> None:
    from host_tools.report_plots import plot_thumbnails

    names = [r"$\foo$", "cost $5"]  # mathtext would fail on the first one
    out = tmp_path / "thumbs.png"
    plot_thumbnails(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]), np.array([0, 1]),
                    np.array([1, 0]), np.array([0, 1]), names, ("LiteRT int8", "TFLM (host)"), out, "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
