"""The convert stage end to end: quantize (or take a user's .tflite), check, verify, size, generate.

Nothing is written until every check has passed; then the run-folder files and the generated
firmware files are written together, all or nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import runfolder
from common.convert_report import ConvertReport, TensorReport
from common.errors import DataError, ModelError
from common.quant import TensorSpec, model_hash
from common.saved_split import SavedSplit, read_split
from convert import arena as arena_mod
from convert import board_compat, codegen, cost, quantize, tflite_model, tflm_engines, verify
from convert import measure as emulated_measure
from convert.boards import Board
from convert.generated import measured_arena
from convert.staged_write import write_all

# Quantization should cost little accuracy; larger drops are reported as warnings.
MAX_INT8_DROP = 0.005
MIN_TOP1_AGREEMENT = 0.995


@dataclass(frozen=True)
class ConvertOptions:
    run: Path
    firmware_dir: Path
    board: Board
    from_tflite: Path | None = None
    calibration_size: int = 500
    seed: int = 0
    arena_margin_percent: float = arena_mod.DEFAULT_MARGIN_PERCENT
    # Profile the generated model on the emulated Cortex-M4 and put its per-layer instructions
    # next to the estimate (convert.measure).
    measure: bool = False


@dataclass
class ConvertResult:
    report: ConvertReport
    written: list[Path] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # stale files of an earlier model


@dataclass(frozen=True)
class ModelSource:
    data: bytes  # the int8 .tflite
    name: str  # for messages
    keras_model: object | None  # None for --from-tflite
    quantize_s: float | None  # seconds the int8 conversion itself took
    calibration: dict[str, Any] | None  # the calibration draw actually used (convert_report.json)


def _model_bytes(opts: ConvertOptions) -> ModelSource:
    if opts.from_tflite is not None:
        path = opts.from_tflite
        if not path.is_file():
            raise ModelError(f"{path} not found")
        return ModelSource(path.read_bytes(), path.name, None, None, None)
    keras_path = runfolder.require(opts.run, runfolder.MODEL_KERAS, "python -m train")
    calib_path = runfolder.require(opts.run, runfolder.CALIBRATION_SET_NPZ, "python -m train")
    keras_model = quantize.load_keras(keras_path)
    available = read_split(calib_path).x
    calibration = quantize.calibration_sample(available, opts.calibration_size, opts.seed)
    started = time.perf_counter()
    data = quantize.quantize_int8(keras_model, calibration)
    # "size" is what calibration used: fewer than requested when the saved set is smaller.
    drawn = {"size": len(calibration), "requested": opts.calibration_size, "available": len(available),
             "seed": opts.seed}
    return ModelSource(data, runfolder.MODEL_KERAS, keras_model, time.perf_counter() - started, drawn)


def _io_dict(spec: TensorSpec) -> TensorReport:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype, "scale": spec.scale,
            "zero_point": spec.zero_point}


def check_budget(model_bytes: int, arena_bytes: int, board: Board) -> dict[str, Any]:
    if model_bytes > board.flash_for_model:
        raise ModelError(f"model needs {model_bytes} bytes of flash but {board.name} has "
                         f"{board.flash_for_model} left for it ({board.flash_bytes} minus "
                         f"{board.flash_reserve_bytes} reserved for Mbed OS, USB and TFLM)")
    if arena_bytes > board.ram_for_arena:
        raise ModelError(f"model needs a {arena_bytes}-byte tensor arena but {board.name} has "
                         f"{board.ram_for_arena} bytes of RAM left for it ({board.ram_bytes} minus "
                         f"{board.ram_reserve_bytes} reserved for Mbed OS, stacks and USB)")
    return {"board": board.name, "flash_bytes": board.flash_bytes,
            "flash_reserve_bytes": board.flash_reserve_bytes, "flash_for_model": board.flash_for_model,
            "model_bytes": model_bytes, "flash_left": board.flash_for_model - model_bytes,
            "ram_bytes": board.ram_bytes, "ram_reserve_bytes": board.ram_reserve_bytes,
            "ram_for_arena": board.ram_for_arena, "arena_bytes": arena_bytes,
            "ram_left": board.ram_for_arena - arena_bytes}


def _check_test_set(test: SavedSplit, model: tflite_model.TfliteModel) -> None:
    want_in = tuple(model.io.input.shape[1:])
    if tuple(test.x.shape[1:]) != want_in:
        raise DataError(f"test_set.npz images have shape {tuple(test.x.shape[1:])}, "
                        f"the model takes {want_in}")
    if test.labels is not None and len(test.labels) != model.io.output.size:
        raise DataError(f"test_set.npz has {len(test.labels)} labels, the model has "
                        f"{model.io.output.size} outputs")
    if test.y is not None and int(test.y.max()) >= model.io.output.size:
        raise DataError(f"test_set.npz has class {int(test.y.max())}, the model has "
                        f"{model.io.output.size} outputs")


def _shown_dir(folder: Path, run: Path) -> str:
    """The generated folder relative to the run folder when it is inside it (the usual case)."""
    try:
        return folder.resolve().relative_to(run.resolve()).as_posix()
    except ValueError:
        return str(folder.resolve())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    named: dict[str, Any] = dict(arrays)  # numpy's stub reads a keyword array as allow_pickle
    np.savez_compressed(buf, **named)
    return buf.getvalue()


@dataclass(frozen=True)
class Verification:
    inputs: np.ndarray
    accuracy: dict[str, float | None]
    agreement: verify.Agreement | None  # None when LiteRT cannot run the model
    agreement_builtin: verify.Agreement | None
    tflm: tflm_engines.TflmRun
    outputs: dict[str, np.ndarray]  # desktop_outputs.npz content; empty without a test split
    litert_error: str | None = None  # why the LiteRT column is left out


def _sized_arena(data: bytes, opts: ConvertOptions) -> tuple[codegen.ArenaInfo, dict[str, Any]]:
    """Arena measured, margin added, budget checked, chosen size proven to work; plus the budget."""
    # Flash is known before TFLM runs; check it first so an oversize model fails fast.
    check_budget(len(data), 0, opts.board)
    try:
        arena = measured_arena(data, opts.arena_margin_percent)
    except arena_mod.ArenaTooLarge as exc:
        raise ModelError(f"{exc}, but {opts.board.name} has {opts.board.ram_for_arena} bytes of RAM left "
                         f"for it ({opts.board.ram_bytes} minus {opts.board.ram_reserve_bytes} reserved "
                         "for Mbed OS, stacks and USB)") from None
    budget = check_budget(len(data), arena.bytes, opts.board)
    tflm_engines.verify_arena(data, arena.bytes)
    return arena, budget


def _verify(data: bytes, model: tflite_model.TfliteModel, arena_bytes: int, test: SavedSplit | None,
            keras_model: object | None, seed: int) -> Verification:
    spec = model.io.input
    inputs = spec.quantize(test.x) if test is not None else verify.random_inputs(spec.shape, seed)
    litert, builtin, litert_error = _run_litert(data, inputs)
    tflm_run = tflm_engines.run_tflm(data, inputs, arena_bytes)  # a TFLM failure still refuses
    tflm = tflm_run.outputs
    accuracy: dict[str, float | None] = {"float": None, "litert_int8": None, "tflm": None}
    outputs: dict[str, np.ndarray] = {}
    if test is not None:
        if keras_model is not None:
            float_probs = quantize.float_predict(keras_model, test.x)
            outputs["float_probs"] = float_probs
            if test.y is not None:
                accuracy["float"] = verify.accuracy(float_probs, test.y)
        if test.y is not None:
            accuracy["litert_int8"] = verify.accuracy(litert, test.y) if litert is not None else None
            accuracy["tflm"] = verify.accuracy(tflm, test.y)
        outputs["tflm_int8"] = tflm
        if litert is not None:
            outputs["litert_int8"] = litert
    return Verification(inputs=inputs, accuracy=accuracy,
                        agreement=verify.agreement(tflm, litert) if litert is not None else None,
                        agreement_builtin=verify.agreement(tflm, builtin) if builtin is not None else None,
                        tflm=tflm_run, outputs=outputs, litert_error=litert_error)


def _run_litert(data: bytes, inputs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """The LiteRT column (XNNPACK, then builtin kernels), or why LiteRT cannot run the model. LiteRT
    is a desktop reference, not what the board runs: its stricter reading of the file (it refuses a
    per-channel tensor whose quantized_dimension is outside the tensor's rank, which TFLM's kernels
    never read, as in TFLM's person_detect) leaves the column out instead of refusing the model."""
    try:
        return (verify.run_litert(data, inputs), verify.run_litert(data, inputs, default_delegates=False),
                None)
    except ModelError as exc:
        return None, None, str(exc)


def _warnings(checked: Verification, classifier: bool, board: list[str]) -> list[str]:
    # First: the board's library and the second TFLM disagree, or the board's library is absent;
    # then why, when the library is known to compute this model differently.
    warnings = list(checked.tflm.warnings) + board
    if checked.litert_error is not None:
        warnings.append(f"{checked.litert_error}; the LiteRT column is left out (the board's TFLM runs it)")
    acc = checked.accuracy
    if acc["float"] is not None and acc["litert_int8"] is not None \
            and acc["float"] - acc["litert_int8"] > MAX_INT8_DROP:
        warnings.append(f"int8 accuracy is {100 * (acc['float'] - acc['litert_int8']):.2f} pp below float")
    # Top-1 of a regression or reconstruction output means nothing.
    if classifier and checked.agreement is not None and checked.agreement.top1_agreement < MIN_TOP1_AGREEMENT:
        warnings.append(f"TFLM and LiteRT agree on top-1 for only "
                        f"{100 * checked.agreement.top1_agreement:.2f}% of samples")
    return warnings


def convert(opts: ConvertOptions) -> ConvertResult:
    started = time.perf_counter()
    src = _model_bytes(opts)
    data, source, keras_model, quantize_s = src.data, src.name, src.keras_model, src.quantize_s
    model = tflite_model.load(data, source)
    # Ops first: a model with an op the board cannot run (an NPU's custom op) is refused for that
    # op, not for the unusual tensor types that come with it.
    tflite_model.check_tflm_ops(model)
    tflite_model.check_int8(model, source)
    board_compat.check_board_computes(model, source)

    test_path = opts.run / runfolder.TEST_SET_NPZ
    if keras_model is not None:
        runfolder.require(opts.run, runfolder.TEST_SET_NPZ, "python -m train")
    test = read_split(test_path) if test_path.is_file() else None
    if test is not None:
        _check_test_set(test, model)
    labels = list(test.class_names(model.io.output.size)) if test is not None \
        else [str(i) for i in range(model.io.output.size)]

    classifier = model.class_scores or (test is not None and test.y is not None)
    arena, budget = _sized_arena(data, opts)
    checked = _verify(data, model, arena.bytes, test, keras_model, opts.seed)
    rows = cost.layer_costs(model)
    generated = codegen.render(model, labels, arena, source_name=source, model_source=runfolder.MODEL_TFLITE)

    report: ConvertReport = {
        "model_hash": model_hash(data),
        "source": "keras" if keras_model is not None else "tflite",
        "source_file": source,
        # Which model file this run converted: train's history.json names the model.keras it
        # trained, so the report shows curves only when they are this model's.
        "source_sha256": hashlib.sha256((opts.from_tflite or opts.run / runfolder.MODEL_KERAS)
                                        .read_bytes()).hexdigest(),
        "model_bytes": len(data),
        "arena_bytes": arena.bytes,
        "arena_measured_bytes": arena.measured,
        "arena_rule": arena.rule,
        "ops": model.op_names,
        "op_counts": model.op_counts,
        "operator_count": len(model.ops),
        "layers": cost.rows_as_dicts(rows),
        "total_params": sum(r.params for r in rows),
        "total_macs": sum(r.macs for r in rows),
        "latency_estimate": cost.latency_estimate(rows, opts.board),
        "accuracy": checked.accuracy,
        "accuracy_note": None if test is not None else
        f"not measured: no {runfolder.TEST_SET_NPZ} in the run folder; agreement is on "
        f"{len(checked.inputs)} seeded random inputs",
        "verified_samples": len(checked.inputs),
        # The TFLM column: the board's own library built for the host when it is on this machine.
        "tflm_engine": checked.tflm.engine,
        "tflm_crosscheck": checked.tflm.crosscheck,
        "agreement_tflm_vs_litert": checked.agreement.as_dict() if checked.agreement else None,
        "litert_kernels": "default (XNNPACK delegate)",
        "litert_unavailable": checked.litert_error,
        # The same comparison with LiteRT's builtin kernels (no delegate): tells kernel rounding
        # in XNNPACK apart from a TFLM problem.
        "agreement_tflm_vs_litert_builtin": checked.agreement_builtin.as_dict() if checked.agreement_builtin
        else None,
        "io": {"input": _io_dict(model.io.input), "output": _io_dict(model.io.output)},
        "labels": labels,
        "budget": budget,
        "calibration": src.calibration,
        "generated_dir": _shown_dir(opts.firmware_dir, opts.run),
        "generated_files": list(codegen.GENERATED_FILES),
        "classifier": classifier,
        "warnings": _warnings(checked, classifier, board_compat.board_warnings(model)),
        # The PTQ conversion alone; wall_time_s adds TensorFlow start-up, verification and TFLM runs.
        "quantize_time_s": round(quantize_s, 3) if quantize_s is not None else None,
    }
    if opts.measure:
        report["measured"] = emulated_measure.measure(generated, rows)
    files: dict[Path, bytes] = {opts.run / runfolder.MODEL_TFLITE: data}
    if checked.outputs:
        files[opts.run / runfolder.DESKTOP_OUTPUTS_NPZ] = _npz_bytes(checked.outputs)
    for name, text in generated.items():
        files[opts.firmware_dir / name] = text.encode("utf-8")
    report["wall_time_s"] = round(time.perf_counter() - started, 3)
    files[opts.run / runfolder.CONVERT_REPORT_JSON] = (json.dumps(report, indent=2) + "\n").encode("utf-8")
    # Device results and reports of an earlier model would be mistaken for this one's.
    removed = runfolder.remove_stale(opts.run, runfolder.DOWNSTREAM_OF_CONVERT)
    if not checked.outputs:
        removed += runfolder.remove_stale(opts.run, (runfolder.DESKTOP_OUTPUTS_NPZ,))
    write_all(files)
    return ConvertResult(report=report, written=list(files), removed=removed)
