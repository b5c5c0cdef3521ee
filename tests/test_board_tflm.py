"""The board's own TFLM library built for the host: the reference for what the board computes.

Oracle: the ``tflite-micro`` Python runtime, an independent (newer) build of TFLM. The two must
agree on every sample of a per-tensor-quantized model, and part on a per-channel Dense model,
which the board's library computes with one scale: the reason convert refuses such models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

from common import runfolder
from common.errors import ModelError
from common.quiet import quiet_tensorflow
from convert import tflite_model

SAMPLES = 300


def _dense_model():  # a small Dense net whose output channels have very different weight ranges
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((24,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(6, activation="softmax")])
    kernel, bias = model.layers[0].get_weights()
    # Per-channel scales differ only if the channels' ranges do: spread them over 30x.
    model.layers[0].set_weights([kernel * np.geomspace(0.1, 3.0, 16, dtype=np.float32), bias + 0.05])
    return model


def _convert(model, per_channel: bool) -> bytes:
    from convert.quantize import quantize_int8

    calibration = np.random.default_rng(0).normal(size=(100, 24)).astype(np.float32)
    return quantize_int8(model, calibration, per_channel_dense=per_channel)


@pytest.fixture(scope="module")
def dense_models() -> dict[str, bytes]:
    model = _dense_model()
    # A batch of 1 as the firmware runs it.
    import keras

    fixed_in = keras.Input(batch_shape=(1, 24))
    fixed = keras.Model(fixed_in, model(fixed_in))
    return {"per_tensor": _convert(fixed, per_channel=False),
            "per_channel": _convert(fixed, per_channel=True)}


def _python_runtime(model: bytes, inputs: np.ndarray) -> np.ndarray:
    from convert import verify

    return verify.run_tflm(model, inputs, 64 * 1024)


def _inputs(n: int = SAMPLES) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, size=(n, 24), dtype=np.int8)


def test_the_converter_really_made_per_channel_and_per_tensor_dense(dense_models: dict[str, bytes]) -> None:
    def fc_scales(data: bytes) -> list[int]:
        model = tflite_model.load(data, "m.tflite")
        return [op.inputs[1].scale_count for op in model.ops if op.op == "FULLY_CONNECTED"]

    assert fc_scales(dense_models["per_tensor"]) == [1, 1]
    assert fc_scales(dense_models["per_channel"]) == [16, 6]


def test_board_library_matches_tflite_micro_on_per_tensor_dense(board_library: Path,
                                                                 dense_models: dict[str, bytes]) -> None:
    from common.board_tflm import BoardTflm

    inputs = _inputs()
    board = BoardTflm.open(dense_models["per_tensor"], 16 * 1024).run(inputs)
    np.testing.assert_array_equal(board, _python_runtime(dense_models["per_tensor"], inputs))


def test_board_library_computes_per_channel_dense_with_one_scale(board_library: Path,
                                                                 dense_models: dict[str, bytes]) -> None:
    """The measured defect convert.board_compat refuses: outputs part from the TFLite spec."""
    from common.board_tflm import BoardTflm

    inputs = _inputs()
    board = BoardTflm.open(dense_models["per_channel"], 16 * 1024).run(inputs)
    python = _python_runtime(dense_models["per_channel"], inputs)
    differing = np.any(board != python, axis=1)
    assert differing.mean() > 0.5, f"only {differing.sum()} of {len(inputs)} samples differ"


def test_board_runner_reports_allocation_failures_in_one_line(board_library: Path,
                                                              dense_models: dict[str, bytes]) -> None:
    from common.board_tflm import BoardTflm

    with pytest.raises(ModelError, match=r"^the board's TFLM library cannot run the model: AllocateTensors"):
        BoardTflm.open(dense_models["per_tensor"], 256)
    with pytest.raises(ModelError, match=r"too small for any model"):
        BoardTflm.open(dense_models["per_tensor"], 64)  # would crash the library, never reaches it


def test_convert_refuses_a_per_channel_dense_tflite(tmp_path: Path, dense_models: dict[str, bytes]) -> None:
    src = tmp_path / "per_channel.tflite"
    src.write_bytes(dense_models["per_channel"])
    proc = run_tool("convert", "--run", str(tmp_path / "run"), "--from-tflite", str(src), check=False)
    assert proc.returncode == ModelError.exit_code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "per-channel weights (16 scales)" in lines[0]
    assert "_experimental_disable_per_channel_quantization_for_dense_layers" in lines[0]
    assert not (tmp_path / "run" / runfolder.MODEL_TFLITE).exists()


def test_convert_uses_the_board_library_and_cross_checks_it(board_library: Path, host_run: Path) -> None:
    """The run folder `train` and `convert` made for the host tests: its TFLM column is the
    board's library, identical to the Python runtime on every test image."""
    report = json.loads((host_run / runfolder.CONVERT_REPORT_JSON).read_text())
    assert report["tflm_engine"].startswith("Arduino_TensorFlowLite ")
    check = report["tflm_crosscheck"]
    assert check["engine"].startswith("tflite-micro ")
    assert check["samples"] == 1000 and check["identical"] == 1000, check
    assert report["generated_dir"] == runfolder.GENERATED_DIR


def test_virtual_board_runs_the_board_library_by_default(board_library: Path, host_run: Path,
                                                         start_board) -> None:
    board = start_board(host_run)
    assert board.port.startswith("/dev/")
    assert board.stop() == 0
    assert "the firmware's TFLM adapter on the board's TFLM library" in board.stderr()


def test_virtual_board_python_engine_is_still_there(host_run: Path, start_board) -> None:
    board = start_board(host_run, "--engine", "python")
    assert board.stop() == 0
    assert "tflite-micro Python runtime" in board.stderr()


def test_parting_samples_are_reported_loudly() -> None:
    from convert import tflm_engines

    board = np.zeros((10, 3), dtype=np.int8)
    other = board.copy()
    other[3, 1], other[7, 0] = 2, -1
    check, warnings = tflm_engines._crosscheck(board, other, "second TFLM")
    assert check == {"engine": "second TFLM", "samples": 10, "identical": 8, "max_abs_diff_lsb": 2,
                     "parting_samples": [3, 7]}
    assert warnings == ["the board's TFLM library and the second TFLM differ on 2 of 10 samples "
                        "(up to 2 LSB; first: sample 3): one of them computes this model wrongly"]
    assert tflm_engines._crosscheck(board, board.copy(), "second TFLM")[1] == []


def test_running_out_of_the_probe_arena_on_the_board_library_says_how_much_is_needed(
        board_library: Path, dense_models: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from convert import arena, tflm_engines

    needed = tflm_engines.measure_arena(dense_models["per_tensor"]).measured
    monkeypatch.setattr(arena, "PROBE_ARENA_BYTES", needed // 2)  # a probe the model does not fit
    with pytest.raises(arena.ArenaTooLarge) as err:
        tflm_engines.measure_arena(dense_models["per_tensor"])
    assert err.value.at_least > needed // 2
