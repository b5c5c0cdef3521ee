"""Models written here, one per case, through the command line: train (or --from-tflite),
convert, evaluate on the virtual board and compare, each exiting 0 with a written report.

Small on purpose (tens of samples, one epoch): the cases check that each kind of model gets
through every stage, and that the device's outputs are identical to TFLM's on the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

pytestmark = pytest.mark.slow

DEVICE_STEP = "TFLM (host) -> device (virtual board)"


def _keras():  # TensorFlow only for the tests that build a model here
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras


def _later_stages(run: Path, *convert_args: str) -> tuple[str, str, dict]:
    """convert, evaluate --port virtual, compare; (convert's stdout, report.md, convert_report)."""
    converted = run_tool("convert", "--run", str(run), *convert_args, timeout=600)
    run_tool("host_tools", "evaluate", "--run", str(run), "--port", "virtual", "--no-progress", timeout=600)
    run_tool("host_tools", "compare", "--run", str(run), timeout=300)
    assert (run / "report.html").is_file()
    report = json.loads((run / "convert_report.json").read_text())
    return converted.stdout, (run / "report.md").read_text(), report


def _device_row(md: str) -> list[str]:
    for line in md.splitlines():
        if line.startswith(f"| {DEVICE_STEP} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row for {DEVICE_STEP}")


def _assert_device_identical(md: str, classifier: bool) -> None:
    row = _device_row(md)
    exact, max_lsb = (row[4], row[5]) if classifier else (row[2], row[3])
    assert (exact, max_lsb) == ("100.00%", "0")


def _classes(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def test_tabular_features_train_a_standardised_dnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = _classes(100, 3)
    # Six sensor features on different scales, some negative: no pixel rule may touch them.
    x = rng.normal(size=(100, 6)) * [1, 10, 100, 1, 1, 5] + 3 * y[:, None] * [1, 10, 100, 0, 0, 0]
    np.savez(tmp_path / "tab.npz", x=x.astype(np.float32), y=y, labels=np.array(["idle", "walk", "run"]))
    run = tmp_path / "run"
    trained = run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "tab.npz"), "--epochs", "1")
    assert "features 6" in trained.stdout and "pixel" not in trained.stdout + trained.stderr
    _, md, report = _later_stages(run)
    assert report["io"]["input"]["shape"] == [1, 6]
    assert {"SUB", "MUL"} <= set(report["ops"])  # the standardisation, inside the model
    assert "## Accuracy" in md
    _assert_device_identical(md, classifier=True)


def test_sequence_trains_a_1d_convolution(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = _classes(90, 3)
    t = np.arange(64)[None, :, None]
    x = np.sin(2 * np.pi * (y[:, None, None] + 1) * t / 64) * 300 + 1000 + rng.normal(0, 20, (90, 64, 3))
    np.savez(tmp_path / "gesture.npz", x=x.astype(np.float32), y=y)
    run = tmp_path / "run"
    trained = run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "gesture.npz"),
                       "--model", "cnn1d", "--epochs", "1")
    assert "sequences 64x3" in trained.stdout
    _, md, report = _later_stages(run)
    assert report["io"]["input"]["shape"] == [1, 64, 3] and "CONV_2D" in report["ops"]
    _assert_device_identical(md, classifier=True)
    assert "![training curves](history.png)" in md


def test_own_depthwise_separable_model_with_batch_norm_trained_by_train(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 1)(h)
    h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    keras.Model(inputs, outputs).save(tmp_path / "mine.keras")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 256, (60, 12, 12), dtype=np.uint8), y=_classes(60, 3))
    run = tmp_path / "run"
    run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "img.npz"),
             "--model", str(tmp_path / "mine.keras"), "--epochs", "1")
    _, md, report = _later_stages(run)
    assert {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "CONV_2D"} <= set(report["ops"])
    _assert_device_identical(md, classifier=True)
    # The curves are this model's: train recorded the digest of the model.keras convert used.
    assert "![training curves](history.png)" in md


def test_many_channel_input_kept_as_given(tmp_path: Path) -> None:
    keras = _keras()
    # A keyword-spotting-like input: 16 frames x 1 x 40 filterbank channels.
    inputs = keras.Input((16, 1, 40))
    h = keras.layers.Conv2D(8, (3, 1), activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(4, activation="softmax")(h)
    keras.Model(inputs, outputs).save(tmp_path / "kws.keras")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "kws.npz", x=rng.normal(size=(80, 16, 1, 40)).astype(np.float32), y=_classes(80, 4))
    run = tmp_path / "run"
    trained = run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "kws.npz"),
                       "--model", str(tmp_path / "kws.keras"), "--epochs", "0")
    assert "kept as given" in trained.stdout
    _, md, report = _later_stages(run)
    assert report["io"]["input"]["shape"] == [1, 16, 1, 40]
    _assert_device_identical(md, classifier=True)
    assert "None: the model was kept as given" in md


def test_regression_autoencoder_from_tflite_without_labels(tmp_path: Path) -> None:
    keras = _keras()
    from common.saved_split import write_split
    from convert.quantize import quantize_int8

    x = np.random.default_rng(4).normal(size=(60, 32)).astype(np.float32)
    inputs = keras.Input((32,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(32)(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    model.fit(x[:40], x[:40], epochs=1, verbose=0)
    (tmp_path / "ae.tflite").write_bytes(quantize_int8(model, x[:40]))
    run = tmp_path / "run"
    run.mkdir()
    write_split(run / "test_set.npz", x[40:])  # inputs only: no labels for a reconstruction
    out, md, report = _later_stages(run, "--from-tflite", str(tmp_path / "ae.tflite"))
    assert report["classifier"] is False and "top-1" not in out
    assert "## Accuracy" not in md and "the output is not class scores" in md
    assert report["io"]["output"]["shape"] == [1, 32]
    _assert_device_identical(md, classifier=False)
    assert "Training curves" not in md


def _lstm_cell_scale_power(tflite: bytes) -> int:
    """log2 of the int16 cell state's scale, read by LiteRT's own interpreter (not convert's reader)."""
    import math

    from ai_edge_litert.interpreter import Interpreter

    cells = [d["quantization"][0] for d in Interpreter(model_content=tflite).get_tensor_details()
             if d["dtype"] == np.int16]
    assert len(cells) == 1, cells  # one LSTM: one int16 tensor, its cell state
    return round(math.log2(cells[0]))


def test_own_keras_lstm_becomes_an_int8_sequence_lstm_with_int16_state(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((16, 3))
    h = keras.layers.LSTM(8)(inputs)  # unroll=False, as Keras builds it by default
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    keras.Model(inputs, outputs).save(tmp_path / "lstm.keras")
    rng = np.random.default_rng(5)
    y = _classes(90, 3)
    t = np.arange(16)[None, :, None]
    x = np.sin(2 * np.pi * (y[:, None, None] + 1) * t / 16) + rng.normal(0, 0.2, (90, 16, 3))
    np.savez(tmp_path / "motion.npz", x=x.astype(np.float32), y=y)
    run = tmp_path / "run"
    run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "motion.npz"),
             "--model", str(tmp_path / "lstm.keras"), "--epochs", "30")
    out, md, report = _later_stages(run)
    # TFLite's fused LSTM (not a WHILE loop), int8 at both ends, int16 cell state inside.
    assert report["op_counts"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "WHILE" not in report["ops"]
    assert report["io"]["input"]["dtype"] == report["io"]["output"]["dtype"] == "int8"
    tflite = (run / "model_int8.tflite").read_bytes()
    power = _lstm_cell_scale_power(tflite)
    # The fused int8 op computes the Keras layer: LiteRT's outputs against Keras's own float kernels
    # (measured 1.5-4 LSB at most, 0.4-0.5 on average; a wrong gate order or state is tens of LSB).
    desk = np.load(run / "desktop_outputs.npz")
    spec = report["io"]["output"]
    litert = (desk["litert_int8"].astype(np.float32) - spec["zero_point"]) * spec["scale"]
    err = np.abs(litert - desk["float_probs"]) / spec["scale"]
    print(f"float vs LiteRT: max {err.max():.2f} LSB, mean {err.mean():.2f} LSB")
    assert err.max() <= 6 and err.mean() <= 1.5
    # The device is the board's library on the host, sample for sample.
    _assert_device_identical(md, classifier=True)
    # Named when the board's library shifts the cell state in place (scales below 2^-12).
    assert ("shifts the cell state" in out) == (power < -12)
    cross = report["tflm_crosscheck"]
    print(f"cell state 2^{power}; board vs tflite-micro: {cross['identical']}/{cross['samples']} identical, "
          f"max {cross['max_abs_diff_lsb']} LSB; accuracy {report['accuracy']}")


def test_recurrent_layer_the_converter_would_crash_on_is_refused_in_one_line(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((16, 3))
    h = keras.layers.GRU(8)(inputs)  # no fused TFLite op: a WHILE loop, whose int8 calibration segfaults
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h)).save(tmp_path / "gru.keras")
    x = np.random.default_rng(6).normal(size=(60, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "motion.npz", x=x, y=_classes(60, 3))
    run = tmp_path / "run"
    run_tool("train", "--run", str(run), "--dataset", str(tmp_path / "motion.npz"),
             "--model", str(tmp_path / "gru.keras"), "--epochs", "0")
    proc = run_tool("convert", "--run", str(run), check=False)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'gru' (GRU)" in lines[0] and "WHILE" in lines[0], proc.stderr
    assert not (run / "model_int8.tflite").exists()


def test_model_litert_refuses_but_tflm_runs_is_converted_without_the_litert_column(tmp_path: Path) -> None:
    keras = _keras()
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    from common.quant import read_io_spec
    from common.saved_split import write_split
    from convert import verify
    from convert.quantize import quantize_int8

    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(h))
    x = np.random.default_rng(7).normal(size=(60, 12, 12, 1)).astype(np.float32)
    original = quantize_int8(keras.Model(inputs, outputs), x[:40])
    # As in TFLM's person_detect: a per-channel bias (rank 1) whose quantized_dimension is that of
    # the depthwise weights (3). TFLM's kernels take the channel axis from the weights and never read
    # it; LiteRT checks it against the tensor's rank and refuses the whole model.
    model = schema.ModelT.InitFromPackedBuf(bytearray(original), 0)
    graph = model.subgraphs[0]
    depthwise = next(op for op in graph.operators if model.operatorCodes[op.opcodeIndex].builtinCode
                     == schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    bias = graph.tensors[depthwise.inputs[2]]
    assert len(bias.shape) == 1 and len(bias.quantization.scale) == 4  # per channel
    bias.quantization.quantizedDimension = 3
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "odd.tflite").write_bytes(bytes(builder.Output()))
    with pytest.raises(ValueError, match="quantized_dimension must be in range"):
        Interpreter(model_content=(tmp_path / "odd.tflite").read_bytes())
    run = tmp_path / "run"
    run.mkdir()
    write_split(run / "test_set.npz", x[40:], y=_classes(20, 3))
    out, md, report = _later_stages(run, "--from-tflite", str(tmp_path / "odd.tflite"))
    warned = [ln for ln in out.splitlines() if "LiteRT" in ln and ln.startswith("warning:")]
    assert len(warned) == 1 and "quantized_dimension must be in range" in warned[0], out
    assert "quantized_dimension" in report["litert_unavailable"]
    assert report["agreement_tflm_vs_litert"] is None and report["accuracy"]["litert_int8"] is None
    assert "LiteRT int8 column: not available (LiteRT cannot run the model" in md
    assert not any(ln.startswith("| LiteRT int8") or "-> LiteRT int8" in ln for ln in md.splitlines())
    # What TFLM ran is the model: LiteRT's reference kernels on the unedited file agree with it.
    desk = np.load(run / "desktop_outputs.npz")
    assert "litert_int8" not in desk
    reference = verify.run_litert(original, read_io_spec(original).input.quantize(x[40:]),
                                  default_delegates=False)
    assert np.abs(desk["tflm_int8"].astype(int) - reference).max() <= 1
    _assert_device_identical(md, classifier=True)
