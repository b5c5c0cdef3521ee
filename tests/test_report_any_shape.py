"""`compare` on run folders of any shape, and the report as a browser shows it.

The run folders are written here by hand (no TensorFlow), so each case pins exactly what the
report must say: accuracy only for class scores with labels, value-level agreement figures
against numpy / scikit-learn / SciPy, pictures only where the input is an image, latency
labelled by what was measured, and an HTML page that renders in headless Chromium with every
image loaded and no console error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser_check import check_page, find_browser
from conftest import skip_or_fail
from scipy.spatial.distance import cosine
from sklearn.metrics import mean_absolute_error, mean_squared_error

from common.metrics import output_agreement
from common.saved_split import write_split
from host_tools.compare import compare

SCALE, ZERO_POINT = 0.05, -3


def _run(tmp_path: Path, x: np.ndarray, n_out: int, *, y: np.ndarray | None = None,
         labels: list[str] | None = None, classifier: bool = True, virtual: bool = True,
         flip: tuple[int, ...] = (3,)) -> tuple[Path, dict[str, np.ndarray]]:
    """A run folder with a test split, desktop outputs, a convert report and device results;
    the device departs from TFLM by one LSB on the samples in ``flip``."""
    rng = np.random.default_rng(0)
    n = len(x)
    run = tmp_path / "run"
    run.mkdir(parents=True)
    write_split(run / "test_set.npz", x, y, labels)
    litert = rng.integers(-128, 128, size=(n, n_out)).astype(np.int8)
    if y is not None:  # make the class of each sample win, so accuracies are high but not 100 %
        litert[np.arange(n), y] = 127
    tflm = litert.copy()
    tflm[1, 0] = np.int8(max(-128, int(tflm[1, 0]) - 1))
    device = tflm.copy()
    for i in flip:
        device[i, -1] = np.int8(int(device[i, -1]) - 1 if device[i, -1] > -128 else -127)
    float_out = (litert.astype(np.float32) - ZERO_POINT) * SCALE + rng.normal(0, 0.01, size=(n, n_out))
    np.savez(run / "desktop_outputs.npz", float_probs=float_out.astype(np.float32), litert_int8=litert,
             tflm_int8=tflm)
    report = {
        "model_hash": "0123456789abcdef", "source": "tflite", "source_file": "m.tflite",
        "classifier": classifier,
        "io": {"input": {"shape": [1, *x.shape[1:]], "scale": 0.1, "zero_point": 0},
               "output": {"shape": [1, n_out], "scale": SCALE, "zero_point": ZERO_POINT}},
        "layers": [{"index": 0, "op": "FULLY_CONNECTED", "layer": "dense", "output_shape": [1, n_out],
                    "params": 330, "macs": 320, "est_cycles_cmsis_nn": 6400, "est_cycles_reference": 12800}],
        "latency_estimate": {"clock_hz": 64_000_000, "cmsis_nn_us": 100.0, "reference_us": 200.0,
                             "basis": "test"},
        "budget": {"board": "nano33ble", "flash_for_model": 1000, "ram_for_arena": 1000},
        "model_bytes": 500, "arena_bytes": 400, "arena_measured_bytes": 300,
    }
    (run / "convert_report.json").write_text(json.dumps(report))
    times = rng.integers(10, 40, size=n)
    samples = [{"index": i, "label": -1, "output": device[i].tolist(), "pred": 0, "invoke_us": int(times[i]),
                "cycles": None} for i in range(n)]
    stats = {"mean": float(times.mean()), "p50": 20.0, "p90": 30.0, "p99": 39.0, "min": 10.0, "max": 39.0}
    (run / "device_eval.json").write_text(json.dumps({
        "header": {"model_hash": "0123456789abcdef", "virtual": virtual, "port": "/dev/pts/9",
                   "device": {"board": "virtual" if virtual else "nano33ble", "firmware": "0.1.0",
                              "arena_used": 280}},
        "summary": {"invoke_us": stats, "samples_per_s": 100.0}, "samples": samples}))
    return run, {"litert": litert, "tflm": tflm, "device": device, "float": float_out}


def _table_row(md: str, first_cell: str) -> list[str]:
    for line in md.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row starting with {first_cell!r}")


def test_value_agreement_matches_independent_formulas() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 7)), rng.normal(size=(20, 7))
    got = output_agreement(a, b)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(a.ravel(), b.ravel())))
    assert got["mae"] == pytest.approx(mean_absolute_error(a.ravel(), b.ravel()))
    assert got["cosine"] == pytest.approx(1 - cosine(a.ravel(), b.ravel()))
    assert got["rel_l2"] == pytest.approx(np.sqrt(((a - b) ** 2).sum() / (a ** 2).sum()))
    same = output_agreement(a, a)
    assert same == {"rmse": 0.0, "mae": 0.0, "cosine": pytest.approx(1.0), "rel_l2": 0.0}
    zeros = np.zeros((2, 3))
    assert output_agreement(zeros, zeros)["cosine"] == 1.0
    assert output_agreement(zeros, np.ones((2, 3)))["rel_l2"] == float("inf")


def test_regression_output_without_labels_gets_value_agreement_only(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(12, 32)).astype(np.float32)  # a 2-D input (N, F)
    run, out = _run(tmp_path, x, 32, classifier=False)
    compare(run)
    md = (run / "report.md").read_text()
    assert "## Accuracy" not in md and "top-1" not in md and "Confusion" not in md
    assert "the output is not class scores" in md
    row = _table_row(md, "TFLM (host) -> device (virtual board)")
    # exact output, max diff (LSB), RMSE, MAE, cosine, relative L2: against numpy on the same values
    tflm = (out["tflm"].astype(np.float32) - ZERO_POINT) * np.float32(SCALE)
    dev = (out["device"].astype(np.float32) - ZERO_POINT) * np.float32(SCALE)
    assert row[2] == f"{100 * 11 / 12:.2f}%" and row[3] == "1"
    assert float(row[4]) == pytest.approx(np.sqrt(np.mean((tflm - dev) ** 2)), rel=1e-3)
    assert float(row[5]) == pytest.approx(np.mean(np.abs(tflm - dev)), rel=1e-3)
    assert float(row[7]) == pytest.approx(np.linalg.norm(tflm - dev) / np.linalg.norm(tflm), rel=1e-3)
    # A non-image input is drawn as a signal plot of the differing sample, not as a thumbnail.
    assert (run / "compare_diff_tflm_int8_vs_device.png").is_file()


@pytest.mark.parametrize("shape", [(30, 1, 40), (64, 3), (16,), (8, 8, 5), (2, 3, 4, 5)],
                         ids=["audio-40-channels", "sequence", "features", "8x8x5", "rank5"])
def test_no_input_shape_crashes_the_report(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(3).normal(size=(10, *shape)).astype(np.float32)
    y = np.arange(10) % 4
    run, _ = _run(tmp_path, x, 4, y=y, labels=["a", "b", "c", "d"])
    compare(run)
    md = (run / "report.md").read_text()
    assert "## Accuracy" in md and "![confusion matrices, one per column](compare_confusion.png)" in md
    assert (run / "compare_diff_tflm_int8_vs_device.png").is_file()


def test_classifier_report_labels_latency_by_what_was_measured(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(20, 12, 12, 1)).astype(np.float32)  # a 0..255 image
    y = np.arange(20) % 3
    run, _ = _run(tmp_path, x, 3, y=y, virtual=False)
    compare(run)
    md = (run / "report.md").read_text()
    assert "| board: Invoke() measured on the device |" in md
    assert "nano33ble: estimate, CMSIS-NN kernels (64 MHz)" in md
    assert "![histogram of per-sample Invoke() time" in md
    assert "| 0 | FULLY_CONNECTED | dense | 1x3 | 330 | 320 | 100.0 | 200.0 |" in md  # the per-layer table
    # No training history in the folder: no curves of any model.
    assert "training curves" not in md
    virtual_run, _ = _run(tmp_path / "v", x, 3, y=y, virtual=True)
    compare(virtual_run)
    vmd = (virtual_run / "report.md").read_text()
    assert "virtual board: Invoke() on this computer (host time, not the board)" in vmd
    assert "measured on the device" not in vmd


def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    browser = find_browser()
    if browser is None:
        skip_or_fail("needs a headless browser: chromium not found (Debian: apt-get install chromium)")
    assert browser is not None
    x = np.random.default_rng(5).integers(0, 256, size=(20, 10, 10, 1)).astype(np.float32)
    run, _ = _run(tmp_path, x, 3, y=np.arange(20) % 3, labels=["cat", "<dog>", "a & b"])
    (html_path, _) = compare(run)
    html = html_path.read_text()
    assert "src='data:image/png;base64," in html and "src='compare" not in html  # self-contained

    seen = check_page(browser, html_path, tmp_path / "profile")
    assert seen.loaded and seen.heading == "Model report: run"
    assert seen.errors == []
    assert len(seen.images) == html.count("<img ") >= 4
    assert seen.broken_images == [] and not any(i["external"] for i in seen.images)
    assert seen.text_chars > 500


def test_the_browser_check_sees_broken_images_and_console_errors(tmp_path: Path) -> None:
    browser = find_browser()
    if browser is None:
        skip_or_fail("needs a headless browser: chromium not found (Debian: apt-get install chromium)")
    assert browser is not None
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><h1>bad</h1><img src='data:image/png;base64,AAAA' alt='x'>"
                    "<script>console.error('boom')</script></body></html>")
    seen = check_page(browser, page, tmp_path / "profile")
    assert seen.loaded and seen.heading == "bad"
    assert len(seen.broken_images) == 1 and any("boom" in e for e in seen.errors)


@pytest.mark.parametrize(("source", "history_sha", "epochs", "shown"), [
    ("keras", "aa", 3, "image"), ("keras", "bb", 3, "other"), ("tflite", "aa", 3, "other"),
    ("keras", "aa", 0, "kept")])
def test_training_curves_only_of_the_converted_model(tmp_path: Path, source: str, history_sha: str,
                                                      epochs: int, shown: str) -> None:
    x = np.random.default_rng(6).normal(size=(8, 5)).astype(np.float32)
    run, _ = _run(tmp_path, x, 3, y=np.arange(8) % 3)
    report = json.loads((run / "convert_report.json").read_text())
    (run / "convert_report.json").write_text(json.dumps({**report, "source": source, "source_sha256": "aa"}))
    (run / "history.json").write_text(json.dumps({"loss": [1.0] * epochs, "epochs_run": epochs,
                                                  "model_sha256": history_sha}))
    (run / "history.png").write_bytes(_PNG)
    compare(run)
    md = (run / "report.md").read_text()
    assert ("![training curves](history.png)" in md) == (shown == "image")
    assert ("belongs to another model" in md) == (shown == "other")
    assert ("kept as given" in md) == (shown == "kept")


# A 1x1 PNG: the curves' content does not matter here, only whether the report shows them.
_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                     "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
