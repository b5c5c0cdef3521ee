"""Fit convert's cost model to instruction counts measured on the emulated Cortex-M4.

Every probe below is a small Keras model that puts a few op types through several shapes. Each
is quantized to int8 by convert's own ``quantize_int8`` (random weights, random calibration
inputs: the cost of these kernels does not depend on the values), given the generated firmware
files (``convert.generated``) and profiled once on the emulated board
(``host_tools.profiling.profile_emulated``: the board's TFLM library with CMSIS-NN, -O2, under
``qemu-system-arm -M mps2-an386 -icount shift=0``, one PROFILE of an all-zero input). Each op's
instructions become one row: its kernel path and shape features (``convert.cost``) and the
measured count.

Per kernel path, the coefficients minimise the sum of squared *relative* errors
((estimate - measured) / measured) under the constraint that every coefficient is >= 0 (an
instruction count cannot fall as a shape grows): an exact non-negative least squares over the
few features, by trying every subset of them. The result, with the library and compiler it was
measured on and every probe op's residual, goes to ``convert/cost_model.json``.

Run: ``python -m bench.cost_fit`` (needs qemu-system-arm, arm-none-eabi-g++ and the board's
sources; about 10 minutes, most of it building one image per probe). The probes are different
models from the acceptance models of ``tests/test_cost_model.py``.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_text
from common.errors import ToolError, run_cli

REPO = Path(__file__).resolve().parent.parent
WORK_DIR = REPO / "build" / "cost_fit"
CALIBRATION_SAMPLES = 32
SEED = 0
# A kernel path measured on fewer probe ops gets no fit (convert labels its estimate a
# fallback); with few ops, the fit keeps fewer features than ops so it cannot interpolate.
MIN_PROBE_OPS = 3


@dataclass(frozen=True)
class Probe:
    name: str
    what: str
    build: Callable[[], Any]  # -> keras.Model


def _keras() -> Any:
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras


def _chain(shape: tuple[int, ...], layers: Callable[[Any, Any], Any]) -> Callable[[], Any]:
    """A builder: Input(shape) -> layers(keras, x)."""
    def build() -> Any:
        keras = _keras()
        keras.utils.set_random_seed(SEED)
        inputs = keras.Input(shape=shape)
        return keras.Model(inputs, layers(keras, inputs))
    return build


def _conv_stack(specs: Sequence[tuple[int, int | tuple[int, int], int, str]]) -> Callable[[Any, Any], Any]:
    """Conv2D layers (filters, kernel, stride, padding), ReLU fused."""
    def layers(keras: Any, x: Any) -> Any:
        for filters, kernel, stride, padding in specs:
            x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, activation="relu")(x)
        return x
    return layers


def _conv1d_stack(specs: Sequence[tuple[int, int, str]]) -> Callable[[Any, Any], Any]:
    def layers(keras: Any, x: Any) -> Any:
        for filters, kernel, padding in specs:
            x = keras.layers.Conv1D(filters, kernel, padding=padding, activation="relu")(x)
        return x
    return layers


def _dw_stack(specs: Sequence[tuple[int | tuple[int, int], int, str, int]]) -> Callable[[Any, Any], Any]:
    """DepthwiseConv2D layers (kernel, stride, padding, depth multiplier)."""
    def layers(keras: Any, x: Any) -> Any:
        for kernel, stride, padding, mult in specs:
            x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, depth_multiplier=mult,
                                             activation="relu")(x)
        return x
    return layers


def _dense_stack(units: Sequence[int], last: str = "relu") -> Callable[[Any, Any], Any]:
    def layers(keras: Any, x: Any) -> Any:
        if len(x.shape) > 2:
            x = keras.layers.Flatten()(x)
        for i, n in enumerate(units):
            x = keras.layers.Dense(n, activation=last if i == len(units) - 1 else "relu")(x)
        return x
    return layers


def _pools(kind: str, specs: Sequence[tuple[int, int]], first_filters: int) -> Callable[[Any, Any], Any]:
    """A 1x1 conv (so the pools see a non-trivial tensor) then pools (size, stride)."""
    def layers(keras: Any, x: Any) -> Any:
        x = keras.layers.Conv2D(first_filters, 1, activation="relu")(x)
        for size, stride in specs:
            pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
            x = pool(size, strides=stride)(x)
        return x
    return layers


def _softmaxes(keras: Any, x: Any) -> Any:
    # Dense -> softmax at several widths, chained so every softmax is a real op.
    for n in (3, 24, 120, 7, 60):
        x = keras.layers.Dense(n)(x)
        x = keras.layers.Softmax()(x)
    return x


def _residual(keras: Any, x: Any) -> Any:
    # ADD of equal shapes at three sizes, with convs between.
    for filters in (4, 12, 24):
        x = keras.layers.Conv2D(filters, 1, activation="relu")(x)
        y = keras.layers.Conv2D(filters, 1)(x)
        x = keras.layers.Add()([x, y])
        x = keras.layers.MaxPooling2D(2)(x)
    return x


def _normalisation(keras: Any, size: int) -> Any:
    rng = np.random.default_rng(SEED + size)
    return keras.layers.Normalization(axis=-1, mean=rng.normal(size=size).astype(np.float32),
                                      variance=rng.uniform(0.5, 2.0, size=size).astype(np.float32))


def _normalised_vectors(keras: Any, x: Any) -> Any:
    # Normalization layers (SUB and MUL of equal shapes) of 48, 200 and 10 values; the ReLU of
    # each Dense keeps the converter from folding the next one into its weights.
    for size, units in ((48, 200), (200, 10), (10, 4)):
        x = _normalisation(keras, size)(x)
        x = keras.layers.Dense(units, activation="relu")(x)
    return x


def _normalised_sequences(keras: Any, x: Any) -> Any:
    # Normalization of (T, C) sequences: SUB and MUL broadcast over time.
    x = _normalisation(keras, int(x.shape[-1]))(x)
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(x)
    x = _normalisation(keras, 8)(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(5, 1, activation="relu")(x)
    return _normalisation(keras, 5)(x)


def _means(keras: Any, x: Any) -> Any:
    # Global average pooling (MEAN) of 12x12x4, 6x6x32 and 3x3x8 maps.
    outs = []
    for filters, pool in ((4, 1), (32, 2), (8, 4)):
        y = keras.layers.Conv2D(filters, 1, activation="relu")(x)
        if pool > 1:
            y = keras.layers.MaxPooling2D(pool)(y)
        outs.append(keras.layers.GlobalAveragePooling2D()(y))
    return keras.layers.Concatenate()(outs)


def _means_1d(keras: Any, x: Any) -> Any:
    # Global average pooling (MEAN) of 70x12, 35x24 and 17x6 sequences.
    outs = []
    for filters, pool in ((12, 1), (24, 2), (6, 4)):
        y = keras.layers.Conv1D(filters, 1, activation="relu")(x)
        if pool > 1:
            y = keras.layers.MaxPooling1D(pool)(y)
        outs.append(keras.layers.GlobalAveragePooling1D()(y))
    return keras.layers.Concatenate()(outs)


def _reshapes(keras: Any, x: Any) -> Any:
    # A RESHAPE (Flatten) that copies 1,152 values; the converter folds the Reshape / Flatten
    # pairs between the Dense layers away.
    for units in (200, 90, 31):
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Reshape((units, 1))(x)
    return keras.layers.Flatten()(x)


def _logistic(keras: Any, x: Any) -> Any:
    for units in (400, 150, 40, 9, 1):
        x = keras.layers.Dense(units, activation="sigmoid")(x)
    return x


PROBES: tuple[Probe, ...] = (
    Probe("conv3x3_c1", "3x3 conv, one input channel, 4 filters, VALID",
          _chain((22, 22, 1), _conv_stack([(4, 3, 1, "valid")]))),
    Probe("conv3x3_c1_same", "3x3 conv, one input channel, 12 filters, SAME",
          _chain((18, 18, 1), _conv_stack([(12, 3, 1, "same")]))),
    Probe("conv3x3_small_c", "3x3 convs, 2-6 input channels",
          _chain((16, 16, 2), _conv_stack([(6, 3, 1, "same"), (10, 3, 1, "valid"), (5, 3, 2, "same")]))),
    Probe("conv3x3_wide", "3x3 convs, 8-32 channels",
          _chain((10, 10, 8), _conv_stack([(8, 3, 1, "same"), (20, 3, 1, "valid"), (32, 3, 1, "same")]))),
    Probe("conv3x3_rgb_stride2", "3x3 stride-2 convs from 3 channels",
          _chain((33, 33, 3), _conv_stack([(12, 3, 2, "same"), (24, 3, 2, "valid")]))),
    Probe("conv5x5", "5x5 and 2x2 convs",
          _chain((20, 20, 1), _conv_stack([(6, 5, 1, "valid"), (16, 5, 1, "same"), (8, 2, 1, "valid")]))),
    Probe("conv_rect", "rectangular kernels (7x3, 3x1) and a stride-2 1x1",
          _chain((30, 12, 1), _conv_stack([(10, (7, 3), 1, "same"), (14, (3, 1), (2, 1), "valid"),
                                           (20, 1, 2, "valid")]))),
    Probe("conv1x1", "1x1 convs (CMSIS-NN's 1x1 fast path), 3-64 channels",
          _chain((14, 14, 3), _conv_stack([(8, 1, 1, "valid"), (24, 1, 1, "same"), (64, 1, 1, "valid"),
                                           (12, 1, 1, "valid")]))),
    Probe("conv1x1_small_map", "1x1 convs on a 5x5 map",
          _chain((5, 5, 40), _conv_stack([(48, 1, 1, "valid"), (16, 1, 1, "valid")]))),
    Probe("conv1d_1xn", "Conv1D, output lengths divisible by 4 (CMSIS-NN's 1xN wrapper: arm_convolve_s8 "
                        "on a Cortex-M4)",
          _chain((64, 3), _conv1d_stack([(8, 5, "same"), (16, 3, "same"), (12, 7, "same")]))),
    Probe("conv1d_1xn_more", "more Conv1D with output lengths divisible by 4",
          _chain((96, 4), _conv1d_stack([(6, 3, "same"), (20, 5, "same"), (3, 9, "same")]))),
    Probe("conv1d_general", "Conv1D whose output length is not divisible by 4",
          _chain((50, 2), _conv1d_stack([(6, 9, "same"), (10, 4, "valid")]))),
    Probe("conv1d_long", "Conv1D on long single-channel input",
          _chain((200, 1), _conv1d_stack([(4, 9, "same"), (8, 3, "same")]))),
    Probe("dw3x3", "3x3 depthwise convs, multiplier 1",
          _chain((20, 20, 6), _dw_stack([(3, 1, "same", 1), (3, 2, "same", 1), (3, 1, "valid", 1)]))),
    Probe("dw3x3_deep", "3x3 depthwise convs on 24-48 channels",
          _chain((9, 9, 24), lambda k, x: _dw_stack([(3, 1, "same", 1)])(
              k, k.layers.Conv2D(48, 1, activation="relu")(_dw_stack([(3, 1, "same", 1)])(k, x))))),
    Probe("dw3x3_more", "3x3 depthwise convs on 3 and 16 channels",
          _chain((28, 28, 3), lambda k, x: _dw_stack([(3, 1, "valid", 1)])(
              k, k.layers.Conv2D(16, 1, activation="relu")(
                  _dw_stack([(3, 1, "same", 1), (3, 2, "same", 1)])(k, x))))),
    Probe("dw_other", "5x5 and 3x1 depthwise convs, multiplier 1 (the general optimised path)",
          _chain((16, 16, 8), _dw_stack([(5, 1, "same", 1), ((3, 1), 1, "valid", 1), (5, 2, "same", 1)]))),
    Probe("dw_other_more", "7x7, 1x5 and 5x5 depthwise convs, multiplier 1",
          _chain((20, 20, 4), _dw_stack([(7, 1, "same", 1), ((1, 5), 1, "same", 1), (5, 1, "valid", 1)]))),
    Probe("dw_other_deep", "5x5 depthwise convs on 20 channels",
          _chain((10, 10, 20), _dw_stack([(5, 1, "same", 1), (2, 1, "valid", 1)]))),
    Probe("dw_multiplier", "depthwise convs with multiplier 2 and 3 (the generic path)",
          _chain((12, 12, 4), _dw_stack([(3, 1, "same", 2), (3, 2, "valid", 2), (5, 1, "same", 3),
                                         (1, 1, "valid", 2)]))),
    Probe("dense", "fully connected 300->16->64->3",
          _chain((300,), _dense_stack([16, 64, 3]))),
    Probe("dense_wide", "fully connected 1000->40->128->8",
          _chain((1000,), _dense_stack([40, 128, 8]))),
    Probe("dense_small", "fully connected 12->12->30->1",
          _chain((12,), _dense_stack([12, 30, 1]))),
    Probe("maxpool", "max pooling 2x2 and 3x3 at several sizes",
          _chain((24, 24, 2), _pools("max", [(2, 2), (3, 2), (2, 1)], 6))),
    Probe("maxpool_deep", "max pooling of 24 channels",
          _chain((10, 10, 4), _pools("max", [(2, 2), (2, 2)], 24))),
    Probe("avgpool", "average pooling 2x2, 3x3, 4x4",
          _chain((26, 26, 1), _pools("avg", [(2, 2), (3, 3), (4, 1)], 8))),
    Probe("avgpool_deep", "average pooling of 16 channels",
          _chain((12, 12, 2), _pools("avg", [(2, 2), (3, 1), (2, 2)], 16))),
    Probe("softmax", "softmax of 3 to 120 values", _chain((16,), _softmaxes)),
    Probe("add", "ADD of equal shapes", _chain((16, 16, 2), _residual)),
    Probe("add_big", "ADD of larger equal shapes", _chain((24, 24, 3), _residual)),
    Probe("normalization_1d", "Normalization of vectors (SUB, MUL without broadcasting)",
          _chain((48,), _normalised_vectors)),
    Probe("normalization_2d", "Normalization of sequences (SUB, MUL broadcast over time)",
          _chain((40, 3), _normalised_sequences)),
    Probe("normalization_2d_long", "Normalization of longer 6-channel sequences",
          _chain((100, 6), _normalised_sequences)),
    Probe("mean", "global average pooling (MEAN) of 2-D maps", _chain((12, 12, 3), _means)),
    Probe("mean_1d", "global average pooling (MEAN) of a sequence", _chain((70, 2), _means_1d)),
    Probe("reshape", "flatten of a 24x24x2 map (1,152 values), fully connected 1152->200->90->31",
          _chain((24, 24, 2), _reshapes)),
    Probe("logistic", "sigmoid of 1 to 400 values", _chain((64,), _logistic)),
)


# -- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    probe: str
    index: int
    op: str
    kernel: str
    features: dict[str, float]
    measured: int


def tflite_of(probe: Probe) -> bytes:
    from convert.quantize import quantize_int8

    model = probe.build()
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    calibration = np.random.default_rng(SEED).random((CALIBRATION_SAMPLES, *shape), dtype=np.float32)
    return quantize_int8(model, calibration)


def measure(probe: Probe, work: Path) -> list[Row]:
    """Quantize, generate and profile one probe: one row per op."""
    from convert import cost
    from convert.generated import write_generated
    from host_tools.profiling import profile_emulated

    data = tflite_of(probe)
    folder = work / probe.name
    model = write_generated(data, folder, f"{probe.name}.tflite")
    profile = profile_emulated(folder)
    if profile.unit != "instructions":
        raise ToolError(f"{probe.name}: the emulated board counted {profile.unit}, not instructions")
    names = [op.op for op in model.ops]
    if profile.truncated or [op.name for op in profile.ops] != names:
        raise ToolError(f"{probe.name}: the profile's ops {[op.name for op in profile.ops]} are not "
                        f"the model's {names}")
    return [Row(probe.name, op.index, op.op, cost.kernel_path(op), cost.op_features(op), ticks.ticks)
            for op, ticks in zip(model.ops, profile.ops, strict=True)]


# -- fitting -------------------------------------------------------------------------------------


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients c >= 0 minimising sum(((x @ c - y) / y) ** 2): the best unconstrained least
    squares over every subset of the columns whose solution is non-negative (exact for the few
    features of a kernel path)."""
    weighted = x / y[:, None]
    ones = np.ones(len(y))
    best, best_err = np.zeros(x.shape[1]), float(np.sum(ones ** 2))
    for size in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), size):
            sub = weighted[:, cols]
            coef, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if np.any(coef < 0):
                continue
            err = float(np.sum((sub @ coef - ones) ** 2))
            if err < best_err - 1e-12:
                best = np.zeros(x.shape[1])
                best[list(cols)] = coef
                best_err = err
    return best


def fit(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """Per kernel path: its features, fitted coefficients and how many probe ops it rests on."""
    from convert.cost import features_of

    kernels: dict[str, dict[str, Any]] = {}
    for kernel in sorted({r.kernel for r in rows}):
        mine = [r for r in rows if r.kernel == kernel]
        if len(mine) < MIN_PROBE_OPS:
            continue
        # Features that are zero on every row (no MACs) are dropped; the first len(mine) - 1
        # of the rest stay.
        names = [n for n in features_of(kernel) if any(r.features[n] != 0 for r in mine)]
        names = names[:len(mine) - 1]
        x = np.array([[r.features[n] for n in names] for r in mine], dtype=np.float64)
        y = np.array([r.measured for r in mine], dtype=np.float64)
        coef = nnls_relative(x, y)
        ratios = (x @ coef) / y
        kernels[kernel] = {
            "features": names,
            "coefficients": {n: round(float(c), 4) for n, c in zip(names, coef, strict=True)},
            "probe_ops": len(mine),
            "ratio_range": [round(float(ratios.min()), 3), round(float(ratios.max()), 3)],
        }
    return kernels


# -- provenance ----------------------------------------------------------------------------------


def library_identity() -> dict[str, str]:
    from common import board_sources, cross_build

    ini = configparser.ConfigParser()
    ini.read(cross_build.PLATFORMIO_INI)
    pin = " ".join(ini.get("env:nano33ble", "lib_deps", fallback="").split())
    return {"pin": pin, "version": board_sources.library_version(board_sources.require_library()),
            "compiler": cross_build.compiler_identity()}


def qemu_version() -> str:
    from common.emulated_image import QEMU

    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    return out.splitlines()[0].strip() if out else "?"


def result_json(rows: Sequence[Row], kernels: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    from convert.cost import predict

    probes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        fitted = kernels.get(r.kernel)
        est = predict(fitted["coefficients"], r.features) if fitted else None
        probes.setdefault(r.probe, []).append({
            "index": r.index, "op": r.op, "kernel": r.kernel,
            "features": {n: int(v) for n, v in r.features.items() if n != "const" and v},
            "measured": r.measured, "estimated": round(est) if est is not None else None,
            "ratio": round(est / r.measured, 3) if est is not None else None})
    return {
        "format": 1,
        "unit": "instructions",
        "fitted": time.strftime("%Y-%m-%d", time.gmtime()),
        "library": library_identity(),
        "emulator": f"{qemu_version()}: -M mps2-an386 -icount shift=0, per-op ticks of one PROFILE "
                    "(40-instruction resolution) of an all-zero input",
        "method": "per kernel path, coefficients >= 0 minimising the sum of squared relative errors "
                  "(python -m bench.cost_fit)",
        "fit_seconds": round(seconds),
        "kernels": kernels,
        "probes": [{"name": p.name, "what": p.what, "ops": probes.get(p.name, [])} for p in PROBES
                   if p.name in probes],
    }


def readable_json(value: Any, depth: int = 0, key: str = "") -> str:
    """JSON with one line per kernel's coefficients and per probe op: containers three levels
    down stay on one line, except the probes' lists of ops."""
    if not isinstance(value, dict | list) or not value or depth > 3 or (depth == 3 and key != "ops"):
        return json.dumps(value)
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {readable_json(v, depth + 1, k)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [inner + readable_json(v, depth + 1) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def main(argv: Sequence[str] | None = None) -> int:
    from convert.cost import MODEL_PATH

    parser = argparse.ArgumentParser(prog="python -m bench.cost_fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where the model goes "
                        "(default: %(default)s)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="generated files of the probes "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows: list[Row] = []
    for probe in PROBES:
        t = time.monotonic()
        got = measure(probe, args.work)
        rows += got
        print(f"{probe.name:<24} {len(got)} ops, {sum(r.measured for r in got):>9,} instructions "
              f"({time.monotonic() - t:.0f} s)", flush=True)
    kernels = fit(rows)
    result = result_json(rows, kernels, time.monotonic() - started)
    write_text(args.out, readable_json(result) + "\n")
    for kernel, k in kernels.items():
        terms = " + ".join(f"{v:g}*{n}" if n != "const" else f"{v:g}" for n, v in k["coefficients"].items())
        print(f"{kernel:<24} {terms}   ({k['probe_ops']} ops, est/meas {k['ratio_range'][0]}-"
              f"{k['ratio_range'][1]})")
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:12]
    print(f"wrote {args.out} ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
