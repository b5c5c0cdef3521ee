"""`python -m train` as a user runs it: models, determinism, the run folder, clean console, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import runfolder
from common.childenv import python_env
from train.cli import main
from train.config import FitConfig
from train.datasets import load_dataset
from train.splits import Splits, limit_dataset, make_splits

REPO = Path(__file__).resolve().parents[1]
# Ops the firmware's TFLM build can run after int8 conversion (Dropout disappears at inference).
ALLOWED_LAYERS = {"InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"}
INT8_WEIGHT_BUDGET = 100_000  # bytes; one byte per int8 weight (biases are int32 but few)
TRAIN_OUTPUTS = (runfolder.MODEL_KERAS, runfolder.HISTORY_JSON, runfolder.HISTORY_PNG,
                 runfolder.TRAIN_METRICS_JSON, runfolder.TEST_SET_NPZ, runfolder.CALIBRATION_SET_NPZ,
                 runfolder.TRAIN_CONFUSION_PNG, runfolder.TRAIN_REPORT_TXT, runfolder.TRAIN_REPORT_JSON)


def _run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A user's environment: no TF log-level overrides, no debug tracebacks; the repo importable
    # from any working directory.
    env = python_env({k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TINYML_DEBUG"))})
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1), (5, 7, 3), (1, 1, 1)])
def test_cnn_is_valid_for_any_image_size_and_uses_supported_layers(shape: tuple[int, int, int]) -> None:
    from train.models import build_cnn

    model = build_cnn(shape, 4)
    assert model.output_shape == (None, 4)
    assert {type(layer).__name__ for layer in model.layers} <= ALLOWED_LAYERS
    assert [layer.name for layer in model.layers if "conv" in layer.name] == ["conv1", "conv2"]
    assert model.layers[-1].name == "dense_out"
    assert model.count_params() < INT8_WEIGHT_BUDGET
    out = model.predict(np.zeros((2, *shape), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_on_mnist_pools_twice_and_dnn_is_the_classic() -> None:
    from train.models import build_model

    cnn = build_model("cnn", (28, 28, 1), 10)
    assert [layer.name for layer in cnn.layers if "pool" in layer.name] == ["pool1", "pool2"]
    dnn = build_model("dnn", (28, 28, 1), 10, hidden=20)
    assert [layer.name for layer in dnn.layers] == ["input", "flatten", "dense_hidden", "dense_out"]
    assert dnn.count_params() == 784 * 20 + 20 + 20 * 10 + 10
    with pytest.raises(ValueError, match="unknown model"):
        build_model("rnn", (28, 28, 1), 10)


# ---------------------------------------------------------------- determinism

@pytest.fixture(scope="module")
def small_splits() -> Splits:
    return make_splits(limit_dataset(load_dataset("mnist5k"), 300, seed=0), seed=0)


def _short_history(splits: Splits, model_name: str, seed: int) -> dict[str, list[float]]:
    from train.fit import fit, seed_everything
    from train.models import build_model

    seed_everything(seed)
    model = build_model(model_name, splits.x_train.shape[1:], 10)
    return fit(model, splits, FitConfig(epochs=2, patience=5)).history


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["dnn", "cnn"])
def test_same_seed_same_history_other_seed_differs(small_splits: Splits, model_name: str) -> None:
    first = _short_history(small_splits, model_name, seed=0)
    assert first == _short_history(small_splits, model_name, seed=0)
    assert first != _short_history(small_splits, model_name, seed=1)


# ---------------------------------------------------------------- the whole command

@pytest.mark.slow
def test_python_m_train_short_run_writes_everything_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = _run_train("--run", str(run), "--limit", "1500", "--epochs", "10", "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "nothing on stderr (no TensorFlow / absl log lines)"
    lines = result.stdout.splitlines()
    known = re.compile(r"^(dataset mnist5k: |model dnn: |epoch +\d+/10  loss |best epoch |test accuracy |"
                       r"wrote |  to )")
    assert [line for line in lines if not known.match(line)] == []
    assert sum(line.startswith("epoch") for line in lines) >= 1

    for name in TRAIN_OUTPUTS:
        assert (run / name).is_file(), name
    for picture in (runfolder.HISTORY_PNG, runfolder.TRAIN_CONFUSION_PNG):
        assert (run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left"

    metrics = json.loads((run / runfolder.TRAIN_METRICS_JSON).read_text())
    assert metrics["split_sizes"] == {"train": 1050, "validation": 150, "test": 300, "calibration": 1050}
    assert metrics["accuracy"]["test"] > 0.6
    assert metrics["input_shape"] == [28, 28, 1] and metrics["labels"] == [str(i) for i in range(10)]
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 10

    history = json.loads((run / runfolder.HISTORY_JSON).read_text())
    assert len(history["val_loss"]) == metrics["epochs_run"]
    assert history["best_epoch"] == int(np.argmin(history["val_loss"])) + 1

    with np.load(run / runfolder.TEST_SET_NPZ) as test:
        assert test["x"].shape == (300, 28, 28, 1) and test["x"].dtype == np.float32
        assert test["y"].dtype == np.int64 and np.bincount(test["y"]).tolist() == [30] * 10
        assert test["labels"].tolist() == [str(i) for i in range(10)]
        # The saved test split is what the saved model was scored on.
        import keras

        model = keras.models.load_model(run / runfolder.MODEL_KERAS)
        predicted = model.predict(test["x"], verbose=0).argmax(axis=1)
        assert np.mean(predicted == test["y"]) == pytest.approx(metrics["accuracy"]["test"])
    report = json.loads((run / runfolder.TRAIN_REPORT_JSON).read_text())
    assert report["accuracy"] == pytest.approx(metrics["accuracy"]["test"])


def _separable_npz(path: Path, n_per_class: int = 40) -> None:
    """8x8 images: class k lights up row k (plus noise), so even a few epochs learn it."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 60, size=(4 * n_per_class, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(4), n_per_class)
    for i, k in enumerate(y):
        x[i, 2 * k: 2 * k + 2, :] = 250
    np.savez(path, x=x, y=y, labels=np.array(["north", "east", "south", "west"]))


@pytest.mark.slow
def test_cnn_on_small_npz_with_names_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.npz"
    _separable_npz(data)
    run = tmp_path / "run"
    assert main(["--run", str(run), "--dataset", str(data), "--model", "cnn", "--epochs", "15",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    metrics = json.loads((run / runfolder.TRAIN_METRICS_JSON).read_text())
    assert metrics["input_shape"] == [8, 8, 1] and metrics["model"] == "cnn"
    assert metrics["split_sizes"] == {"train": 112, "validation": 16, "test": 32, "calibration": 112}
    assert metrics["accuracy"]["test"] > 0.9
    assert "north" in (run / runfolder.TRAIN_REPORT_TXT).read_text()
    with np.load(run / runfolder.TEST_SET_NPZ) as test, np.load(run / runfolder.CALIBRATION_SET_NPZ) as cal:
        assert test["labels"].tolist() == ["north", "east", "south", "west"]
        # Calibration images come from the train split only: none of them is a test image.
        flat_test = {row.tobytes() for row in test["x"].reshape(len(test["x"]), -1)}
        assert not any(row.tobytes() in flat_test for row in cal["x"].reshape(len(cal["x"]), -1))


# ---------------------------------------------------------------- errors

def _assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode not in (0, 70), result.stderr  # 70 = an internal error, i.e. a bug
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_missing_dataset_file(tmp_path: Path) -> None:
    result = _run_train("--run", str(tmp_path / "run"), "--dataset", "missing.npz", cwd=tmp_path)
    _assert_one_line_error(result, "missing.npz not found")
    assert not (tmp_path / "run").exists()


def test_cli_malformed_npz(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated zip")
    _assert_one_line_error(_run_train("--dataset", "junk.npz", cwd=tmp_path), "not a valid .npz")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((30, 8, 8), np.uint8))
    _assert_one_line_error(_run_train("--dataset", "nolabels.npz", cwd=tmp_path), "missing key(s) y")


def test_cli_unknown_model_is_an_argparse_error(tmp_path: Path) -> None:
    result = _run_train("--model", "rnn", cwd=tmp_path)
    assert result.returncode == 2
    assert "choose from dnn, cnn, cnn1d or a path to a .keras file, got 'rnn'" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- rerunning into an existing run folder

STALE_DOWNSTREAM = (runfolder.MODEL_TFLITE, runfolder.CONVERT_REPORT_JSON, runfolder.DESKTOP_OUTPUTS_NPZ,
                    runfolder.DEVICE_EVAL_JSON, runfolder.DEVICE_EVAL_JOURNAL, runfolder.REPORT_MD,
                    runfolder.REPORT_HTML, "compare_accuracy.png", "compare_diff_tflm_int8_vs_device.png")


def _stale_run(run: Path) -> None:
    run.mkdir(exist_ok=True)
    for name in (*STALE_DOWNSTREAM, runfolder.TRAIN_METRICS_JSON):
        (run / name).write_text("from the previous model\n")
    (run / "notes.txt").write_text("the user's own file\n")


def test_rerun_removes_the_previous_models_outputs_and_keeps_metrics_last(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "rows.npz"
    _separable_npz(data)
    run = tmp_path / "run"
    args = ["--run", str(run), "--dataset", str(data), "--epochs", "1", "--hidden", "4"]

    # A rerun that fails while its files are staged changes nothing: no new model next to old
    # files, and no temporary file left behind.
    _stale_run(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    from common import plots

    def broken_plot(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(plots, "plot_history", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        main(args)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name != runfolder.LOCK_FILE}
    assert after == before
    monkeypatch.undo()

    capsys.readouterr()
    _stale_run(run)
    assert main(args) == 0
    out = capsys.readouterr().out
    removed = [line for line in out.splitlines() if line.startswith("removed ")]
    assert len(removed) == 1 and all(name in removed[0] for name in STALE_DOWNSTREAM), out
    assert [name for name in STALE_DOWNSTREAM if (run / name).exists()] == []
    assert (run / "notes.txt").is_file()
    assert json.loads((run / runfolder.TRAIN_METRICS_JSON).read_text())["epochs_run"] == 1
