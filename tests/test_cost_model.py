"""convert's fitted cost model against the emulated Cortex-M4's own instruction counts.

Acceptance (issue 11): for the ``dnn``, the ``cnn``, a depthwise-separable model, a 1-D
model and a residual model, none of them a probe of the fit (``bench/cost_fit.py``), the
estimate of every layer with at least 1 % of the model's instructions is within 1.5x of what
the emulator measured, and the total within 1.25x. The oracle is the board's TFLM library
itself, cross-compiled and run under QEMU with ``-icount shift=0`` (one PROFILE each).
The fit's own arithmetic and the labelling of ops it has no data for are checked without
the emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert import cost
from convert.tflite_model import OpInfo, TensorInfo

LAYER_LIMIT = 1.5  # per layer, for layers with at least LAYER_SHARE of the instructions
LAYER_SHARE = 0.01
TOTAL_LIMIT = 1.25
SEED = 1  # the probes use seed 0


def _keras() -> Any:
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(SEED)
    return keras


def _dnn() -> Any:
    from train.models import build_dnn

    return build_dnn((28, 28, 1), 10, hidden=20)


def _cnn() -> Any:
    from train.models import build_cnn

    return build_cnn((28, 28, 1), 10)


def _cnn1d() -> Any:
    from train.models import build_cnn1d

    signals = np.random.default_rng(SEED).normal(size=(64, 128, 3)).astype(np.float32)
    return build_cnn1d((128, 3), 6, standardise=signals)


def _ds_cnn() -> Any:
    """MobileNet-style: a strided 3x3 conv, then depthwise 3x3 + pointwise 1x1 blocks, each
    with batch normalisation (folded by the converter), global average pooling, softmax."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters, stride in ((32, 1), (64, 2), (64, 1)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def _resnet() -> Any:
    """A residual block (two 3x3 convs and an ADD), average pooling, a strided conv, two Dense."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((24, 24, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(16, 3, padding="same")(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(5, activation="softmax")(x))


MODELS: dict[str, Callable[[], Any]] = {"dnn": _dnn, "cnn": _cnn, "ds_cnn": _ds_cnn, "cnn1d": _cnn1d,
                                        "resnet": _resnet}


def _calibration(model: Any) -> np.ndarray:
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(SEED).random((32, *shape), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fitted_estimate_is_within_the_limits_of_the_emulators_count(
        name: str, qemu: str, cross_compiler: str, board_library: Path, board_core: Path,
        tmp_path: Path) -> None:
    from convert.generated import write_generated
    from convert.quantize import quantize_int8
    from host_tools.profiling import profile_emulated

    keras_model = MODELS[name]()
    model = write_generated(quantize_int8(keras_model, _calibration(keras_model)), tmp_path, f"{name}.tflite")
    profile = profile_emulated(tmp_path)
    assert profile.unit == "instructions" and not profile.truncated
    assert [op.name for op in profile.ops] == [op.op for op in model.ops]
    measured = np.array([op.ticks for op in profile.ops], dtype=np.float64)
    estimates = [cost.estimate(op) for op in model.ops]
    assert all(e.basis == "fit" for e in estimates), [e.basis for e in estimates]
    estimated = np.array([e.instructions for e in estimates], dtype=np.float64)
    ratios = estimated / measured
    share = measured / measured.sum()
    table = [f"{op.index:>2} {cost.kernel_path(op):<22} est {e:>9,.0f} meas {m:>9,.0f} "
             f"ratio {r:5.2f} share {100 * s:5.1f}%"
             for op, e, m, r, s in zip(model.ops, estimated, measured, ratios, share, strict=True)]
    total = estimated.sum() / measured.sum()
    table.append(f"   total est {estimated.sum():,.0f} meas {measured.sum():,.0f} ratio {total:.3f}")
    print(f"\n{name}\n" + "\n".join(table))
    counted = share >= LAYER_SHARE
    assert counted.any()
    outside = [line for line, keep, r in zip(table, counted, ratios, strict=False)
               if keep and not 1 / LAYER_LIMIT <= r <= LAYER_LIMIT]
    assert not outside, "\n".join(outside)
    assert 1 / TOTAL_LIMIT <= total <= TOTAL_LIMIT, table[-1]


# ---------------------------------------------------------------- without the emulator


def test_the_fit_recovers_non_negative_coefficients_and_never_goes_negative() -> None:
    from bench.cost_fit import nnls_relative

    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(12), rng.uniform(100, 5000, 12), rng.uniform(10, 400, 12)])
    y = x @ np.array([300.0, 2.5, 40.0])
    assert np.allclose(nnls_relative(x, y), [300.0, 2.5, 40.0], rtol=1e-6)
    # A truly negative term cannot be matched: the coefficient stays at 0, not below.
    y_neg = x @ np.array([5000.0, 2.0, -5.0])
    coef = nnls_relative(x, y_neg)
    assert (coef >= 0).all() and coef[2] == 0


def _t(shape: tuple[int, ...], const: bool = False) -> TensorInfo:
    return TensorInfo(index=0, name="t", shape=shape, dtype="int8", is_constant=const)


def test_an_op_without_fitted_data_is_labelled_a_fallback() -> None:
    op = OpInfo(0, "HARD_SWISH", (_t((1, 10, 10, 8)),), (_t((1, 10, 10, 8)),))
    est = cost.estimate(op)
    assert est.basis.startswith("fallback: no fitted data for HARD_SWISH") and est.instructions > 0
    known = OpInfo(1, "SOFTMAX", (_t((1, 10)),), (_t((1, 10)),))
    assert cost.estimate(known).basis == "fit"
    # An unprobed path of a fitted op says whose fit it borrowed.
    borrowed = cost.estimate(op, {"kernels": {"HARD_SWISH:other": {"coefficients": {"const": 7.0}}}})
    assert borrowed.basis.startswith("fallback: no probe of HARD_SWISH") and borrowed.instructions == 7
    rows = cost.layer_costs(type("M", (), {"ops": (op, known)})())  # type: ignore[arg-type]
    from convert.boards import NANO33BLE

    latency = cost.latency_estimate(rows, NANO33BLE)
    assert latency["fallback_ops"] == ["HARD_SWISH"] and "HARD_SWISH (fallback" in latency["basis"]
    assert latency["instructions"] == sum(r.est_instructions for r in rows)


def test_kernel_paths_follow_the_cmsis_nn_wrappers() -> None:
    def conv(kernel: tuple[int, int], stride: int, in_c: int = 4) -> OpInfo:
        return OpInfo(0, "CONV_2D", (_t((1, 8, 8, in_c)), _t((8, *kernel, in_c), True)), (_t((1, 8, 8, 8)),),
                      options=(("strideH", stride), ("strideW", stride)))

    def dw(kernel: tuple[int, int], out_c: int) -> OpInfo:
        return OpInfo(0, "DEPTHWISE_CONV_2D", (_t((1, 8, 8, 4)), _t((1, *kernel, out_c), True)),
                      (_t((1, 8, 8, out_c)),))

    assert cost.kernel_path(conv((1, 1), 1)) == "CONV_2D:1x1"
    assert cost.kernel_path(conv((1, 1), 2)) == "CONV_2D"  # arm_convolve_1x1_s8_fast needs stride 1
    assert cost.kernel_path(conv((3, 3), 1)) == "CONV_2D"
    assert cost.kernel_path(dw((3, 3), 4)) == "DEPTHWISE_CONV_2D:3x3"
    assert cost.kernel_path(dw((5, 5), 4)) == "DEPTHWISE_CONV_2D:opt"
    assert cost.kernel_path(dw((3, 3), 8)) == "DEPTHWISE_CONV_2D"  # channel multiplier 2
    add = OpInfo(0, "ADD", (_t((1, 4, 3)), _t((1, 1, 3), True)), (_t((1, 4, 3)),))
    assert cost.kernel_path(add) == "ADD:broadcast"


def test_the_committed_model_names_its_library_and_every_probe_residual() -> None:
    model = cost.fitted_model()
    assert model["unit"] == "instructions" and model["library"]["pin"] and model["library"]["version"]
    for kernel, fitted in model["kernels"].items():
        assert all(value >= 0 for value in fitted["coefficients"].values()), kernel
    ops = [op for probe in model["probes"] for op in probe["ops"]]
    assert ops and all(op["measured"] > 0 for op in ops)
    for op in ops:
        fitted = model["kernels"].get(op["kernel"])
        if fitted is not None:  # the residual stored is the model's own estimate
            features = {"const": 1.0, **{k: float(v) for k, v in op["features"].items()}}
            est = sum(c * features.get(n, 0.0) for n, c in fitted["coefficients"].items())
            assert op["estimated"] == pytest.approx(est, abs=1)


# ---------------------------------------------------------------- convert --measure


@pytest.mark.slow
def test_convert_measure_prints_and_stores_the_emulators_count_per_layer(
        run_copy: Path, qemu: str, cross_compiler: str, board_library: Path, board_core: Path) -> None:
    import json

    from conftest import run_tool

    from common import provenance, runfolder
    from host_tools.profiling import profile_emulated

    proc = run_tool("convert", "--run", str(run_copy), "--measure", timeout=1800)
    report = json.loads((run_copy / runfolder.CONVERT_REPORT_JSON).read_text())
    measured = report["measured"]
    assert measured["unit"] == "instructions" and measured["board"] == "emulated Cortex-M4 (QEMU)"
    assert [m["op"] for m in measured["layers"]] == [layer["op"] for layer in report["layers"]]
    # The oracle: the emulator itself, run again on the generated files convert wrote.
    again = profile_emulated(run_copy / runfolder.GENERATED_DIR)
    for stored, op in zip(measured["layers"], again.ops, strict=True):
        assert abs(stored["measured_instructions"] - op.ticks) <= 40  # one SysTick tick
        line = (f"{stored['index']:>3} {stored['op']:<18} {stored['est_instructions']:>11,} "
                f"{stored['measured_instructions']:>11,}")
        assert line in proc.stdout
    assert measured["measured_instructions"] == sum(m["measured_instructions"] for m in measured["layers"])
    provenance.check_convert(run_copy)  # the measurement is part of what convert recorded


def test_convert_measure_without_qemu_is_one_line_and_exit_6(run_copy: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT, tool_env

    from common import runfolder

    report = run_copy / runfolder.CONVERT_REPORT_JSON
    before = report.read_bytes()
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**tool_env(), "PATH": str(empty)}
    proc = subprocess.run([sys.executable, "-m", "convert", "--run", str(run_copy), "--measure"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 6
    assert proc.stderr == "error: --measure needs qemu-system-arm: install it (Debian: apt-get install " \
                          "qemu-system-arm)\n"
    assert report.read_bytes() == before


def test_the_reports_layer_table_shows_estimate_fallback_and_measured(tmp_path: Path) -> None:
    from convert.boards import NANO33BLE
    from host_tools.compare import _layer_blocks
    from host_tools.report_doc import to_markdown

    fc = OpInfo(0, "FULLY_CONNECTED", (_t((1, 784)), _t((20, 784), True)), (_t((1, 20)),))
    odd = OpInfo(1, "HARD_SWISH", (_t((1, 20)),), (_t((1, 20)),))
    rows = cost.layer_costs(type("M", (), {"ops": (fc, odd)})())  # type: ignore[arg-type]
    layers = cost.rows_as_dicts(rows)
    report: Any = {"layers": layers, "latency_estimate": cost.latency_estimate(rows, NANO33BLE),
                   "measured": {"layers": [{"index": 0, "measured_instructions": 30_760},
                                           {"index": 1, "measured_instructions": 2_000}]}}
    text = to_markdown(_layer_blocks(report), tmp_path)
    est_fc, est_odd = rows[0].est_instructions, rows[1].est_instructions
    assert f"| {est_fc:,} | {est_fc / 64:,.1f} | 30,760 | {est_fc / 30_760:.2f} |" in text
    assert f"| {est_odd:,} (fallback) |" in text
    assert f"| {est_fc + est_odd:,} | {(est_fc + est_odd) / 64:,.1f} | 32,760 |" in text
    assert "lower bound" in text and "no fitted data for HARD_SWISH" in text


@pytest.mark.slow
def test_the_committed_fit_is_of_the_features_convert_computes_today() -> None:
    """A change to op_features() or kernel_path() needs a re-fit: every probe, rebuilt and
    quantized, has the kernel paths and features the coefficients were fitted on."""
    from bench.cost_fit import PROBES, tflite_of
    from convert.tflite_model import load

    stored = {probe["name"]: probe["ops"] for probe in cost.fitted_model()["probes"]}
    assert sorted(stored) == sorted(p.name for p in PROBES)
    for probe in PROBES:
        model = load(tflite_of(probe), probe.name)
        today = [(op.op, cost.kernel_path(op), {k: int(v) for k, v in cost.op_features(op).items()
                                                  if k != "const" and v})
                 for op in model.ops]
        assert today == [(op["op"], op["kernel"], op["features"]) for op in stored[probe.name]], probe.name
