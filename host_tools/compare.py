"""``compare``: Keras float, LiteRT int8, TFLM on the host and the device, side by side.

Each step between neighbouring columns has one meaning: float -> LiteRT int8 is the
quantization error, LiteRT -> TFLM is kernel rounding, TFLM (host) -> device is a firmware,
input or link fault (it must be zero with reference kernels).

Works for any model the board runs: class scores get accuracy, top-1 agreement and confusion
matrices (when the test split has class labels); every output gets the value-level agreement
(max |LSB|, RMSE, MAE, cosine similarity, relative L2 error). The steps are load, columns,
figures and document.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import runfolder
from common.atomic import write_text
from common.convert_report import ConvertReport, as_report
from common.errors import DataError
from common.metrics import classification_summary, output_agreement
from common.saved_split import SavedSplit, read_split
from host_tools import report_plots
from host_tools.emulator import BOARD_NAME as EMULATED_BOARD
from host_tools.report_doc import Block, Heading, Image, Para, Row, Table, to_html, to_markdown

EVALUATE_CMD = "python -m host_tools evaluate"
CONVERT_CMD = "python -m convert"
# Samples drawn per step: enough to see a pattern, few enough for a readable page.
MAX_THUMBNAILS = 40
MAX_SIGNALS = 10
MEANINGS = {
    ("float", "litert_int8"): "quantization error",
    ("litert_int8", "tflm_int8"): "kernel rounding",
    ("float", "tflm_int8"): "quantization error and kernel rounding (no LiteRT column)",
    ("tflm_int8", "device"): "firmware, input or link fault (0 with the board's kernels on the host)",
}


@dataclass(frozen=True)
class Column:
    key: str  # file-name friendly
    title: str
    values: np.ndarray  # (n, outputs) float: the float model's outputs or dequantized int8
    q: np.ndarray | None  # (n, outputs) int8, None for the float column

    @property
    def preds(self) -> np.ndarray:
        return np.asarray((self.q if self.q is not None else self.values).argmax(axis=1))


@dataclass(frozen=True)
class Loaded:
    run: Path
    test: SavedSplit
    desktop: dict[str, np.ndarray]
    report: ConvertReport
    device: dict[str, Any] | None
    index: np.ndarray  # test samples compared (all, or those the device evaluated)
    device_out: np.ndarray | None
    classifier: bool

    @property
    def labelled(self) -> bool:
        """Accuracy and confusion matrices need class scores and class labels."""
        return self.classifier and self.test.y is not None

    @property
    def outputs(self) -> int:
        return int(np.prod(self.report["io"]["output"]["shape"][1:]))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a valid .npz file: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def _device_samples(device: dict[str, Any], n_test: int, n_out: int, model_hash: str,
                    path: Path) -> tuple[np.ndarray, np.ndarray]:
    header = device.get("header", {})
    if isinstance(header, dict) and header.get("model_hash") not in (None, model_hash):
        raise DataError(f"{path} holds results of model {header.get('model_hash')}, the run folder has "
                        f"{model_hash}: run `{EVALUATE_CMD} --restart`")
    samples = device.get("samples")
    if not isinstance(samples, list) or not samples:
        raise DataError(f"{path} holds no samples: run `{EVALUATE_CMD}` again")
    try:
        index = np.array([int(s["index"]) for s in samples])
        outputs = np.array([s["output"] for s in samples], dtype=np.int16)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path} is malformed: run `{EVALUATE_CMD} --restart`") from None
    if (outputs.ndim != 2 or outputs.shape[1] != n_out or index.min() < 0 or index.max() >= n_test
            or len(set(index.tolist())) != len(index)):
        raise DataError(f"{path} does not match this run's test split and model: "
                        f"run `{EVALUATE_CMD} --restart`")
    return index, outputs.astype(np.int8)


def load(run: Path) -> Loaded:
    test = read_split(runfolder.require(run, runfolder.TEST_SET_NPZ, "python -m train"))
    report = as_report(_load_json(runfolder.require(run, runfolder.CONVERT_REPORT_JSON, CONVERT_CMD)))
    desktop = _load_npz(runfolder.require(run, runfolder.DESKTOP_OUTPUTS_NPZ, CONVERT_CMD))
    try:
        out_shape = [int(d) for d in report["io"]["output"]["shape"]]
        float(report["io"]["output"]["scale"]), int(report["io"]["output"]["zero_point"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{run / runfolder.CONVERT_REPORT_JSON} lacks the output tensor: "
                        f"re-run `{CONVERT_CMD}`") from None
    n_test, n_out = len(test.x), int(np.prod(out_shape[1:]))
    for key in ("litert_int8", "tflm_int8", "float_probs"):
        if key in desktop:
            desktop[key] = desktop[key].reshape(len(desktop[key]), -1)
            if desktop[key].shape != (n_test, n_out):
                raise DataError(f"{run / runfolder.DESKTOP_OUTPUTS_NPZ} holds {key} of shape "
                                f"{desktop[key].shape}, not ({n_test}, {n_out}): re-run `{CONVERT_CMD}`")
        elif key == "tflm_int8" or (key == "litert_int8" and not report.get("litert_unavailable")):
            raise DataError(f"{run / runfolder.DESKTOP_OUTPUTS_NPZ} lacks {key}: re-run `{CONVERT_CMD}`")
    device_path = run / runfolder.DEVICE_EVAL_JSON
    device = _load_json(device_path) if device_path.is_file() else None
    if device is not None:
        index, dev_out = _device_samples(device, n_test, n_out, str(report.get("model_hash")), device_path)
    else:
        index, dev_out = np.arange(n_test), None
    classifier = bool(report.get("classifier", test.y is not None)) and n_out >= 2
    return Loaded(run, test, desktop, report, device, index, dev_out, classifier)


def columns(data: Loaded) -> list[Column]:
    out = data.report["io"]["output"]
    scale, zero_point = np.float32(out["scale"]), int(out["zero_point"])

    def column(key: str, title: str, q: np.ndarray) -> Column:
        return Column(key, title, (q.astype(np.float32) - zero_point) * scale, q)

    cols: list[Column] = []
    if "float_probs" in data.desktop:
        cols.append(Column("float", "Keras float", data.desktop["float_probs"][data.index].astype(np.float32),
                           None))
    if "litert_int8" in data.desktop:  # absent when LiteRT cannot run the model (convert said why)
        cols.append(column("litert_int8", "LiteRT int8", data.desktop["litert_int8"][data.index]))
    cols.append(column("tflm_int8", "TFLM (host)", data.desktop["tflm_int8"][data.index]))
    if data.device_out is not None:
        header = (data.device or {}).get("header", {})
        virtual = bool(header.get("virtual"))
        title = "device (virtual board)" if virtual else "device (board)"
        if _emulated(header):
            title = EMULATED_BOARD
        cols.append(column("device", title,
                           data.device_out))
    return cols


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _num(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{x:.4g}"


def step_agreement(a: Column, b: Column, classifier: bool) -> dict[str, Any]:
    """Agreement of column ``b`` with column ``a`` (the reference), per sample and overall."""
    out: dict[str, Any] = dict(output_agreement(a.values, b.values))
    err = np.abs(a.values - b.values).max(axis=1)  # per sample, real units
    if a.q is not None and b.q is not None:
        lsb = np.abs(a.q.astype(np.int16) - b.q.astype(np.int16)).max(axis=1)
        out.update(exact=float((lsb == 0).mean()), max_lsb=int(lsb.max()), per_sample=lsb.astype(np.float64),
                   differ=np.flatnonzero(lsb > 0))
    else:
        out.update(per_sample=err, differ=np.flatnonzero(err > 0))
    if classifier:
        top1 = a.preds == b.preds
        out.update(top1=float(top1.mean()), top1_differ=np.flatnonzero(~top1))
    return out


def _differing_figure(data: Loaded, a: Column, b: Column, ag: dict[str, Any]) -> tuple[Path | None, str]:
    """A picture of the samples where ``b`` departs from ``a``: worst first, captioned."""
    classes = data.test.class_names(data.outputs)
    if data.classifier and len(ag["top1_differ"]):
        shown, what = ag["top1_differ"], "top-1 differs"
    else:
        shown = ag["differ"]
        what = "outputs differ" + (", same top-1" if data.classifier else "")
    if not len(shown):
        return None, what
    shown = shown[np.argsort(-ag["per_sample"][shown], kind="stable")]
    limit = MAX_THUMBNAILS if report_plots.is_image(data.test.x.shape[1:]) else MAX_SIGNALS
    pick = shown[:limit]
    unit = "LSB" if "max_lsb" in ag else ""
    captions = []
    for k in pick:
        i = int(data.index[k])
        if data.classifier:
            truth = f" y={classes[int(data.test.y[i])]}" if data.test.y is not None else ""
            captions.append(f"#{i}{truth}\n{a.title.split()[0]}={classes[int(a.preds[k])]} "
                            f"{b.title.split()[0]}={classes[int(b.preds[k])]}")
        else:
            captions.append(f"#{i} max |diff| {ag['per_sample'][k]:.3g} {unit}".rstrip())
    png = data.run / f"compare_diff_{a.key}_vs_{b.key}.png"
    more = f", worst {len(pick)} shown" if len(shown) > len(pick) else ""
    report_plots.plot_samples(data.test.x[data.index[pick]], captions, png,
                              f"{a.title} vs {b.title}: {what} ({len(shown)} samples{more})")
    return png, what


def _agreement_blocks(data: Loaded, cols: list[Column]) -> list[Block]:
    blocks: list[Block] = [Heading("Agreement between neighbouring columns")]
    if not data.classifier:
        blocks.append(Para("The output is not class scores: columns are compared value by value "
                           "(dequantized to real units; the float model is the reference of its step)."))
    rows: list[Row] = []
    pictures: list[Block] = []
    for a, b in itertools.pairwise(cols):
        ag = step_agreement(a, b, data.classifier)
        name = f"{a.title} -> {b.title}"
        top1 = [_pct(ag["top1"]), str(len(ag["top1_differ"]))] if data.classifier else []
        rows.append([name, MEANINGS.get((a.key, b.key), ""), *top1,
                     _pct(ag["exact"]) if "exact" in ag else "n/a (float)",
                     str(ag["max_lsb"]) if "max_lsb" in ag else "n/a",
                     _num(ag["rmse"]), _num(ag["mae"]), f"{ag['cosine']:.6f}", _num(ag["rel_l2"])])
        png, what = _differing_figure(data, a, b, ag)
        pictures.append(Para(f"{name}: no sample differs.") if png is None
                        else Image(png, f"{a.title} vs {b.title}: {what}"))
    headers = ["step", "meaning", *(["top-1 agreement", "top-1 differ"] if data.classifier else []),
               "exact output", "max diff (LSB)", "RMSE", "MAE", "cosine", "relative L2"]
    return [*blocks, Table(headers, rows), *pictures]


def _accuracy_blocks(data: Loaded, cols: list[Column]) -> list[Block]:
    assert data.test.y is not None
    y = data.test.y[data.index]
    names = data.test.class_names(data.outputs)
    summaries = {c.key: classification_summary(y, c.preds, names) for c in cols}
    acc_png, cm_png = data.run / "compare_accuracy.png", data.run / "compare_confusion.png"
    report_plots.plot_accuracy([c.title for c in cols], [summaries[c.key]["accuracy"] for c in cols], acc_png)
    report_plots.plot_confusions([np.asarray(summaries[c.key]["confusion_matrix"]) for c in cols],
                                 [f"{c.title}: {_pct(summaries[c.key]['accuracy'])}" for c in cols],
                                 names, cm_png)
    per_class: list[Row] = []
    for i, name in enumerate(names):
        row = [name]
        for c in cols:
            pc = summaries[c.key]["per_class"][i]
            row.append(f"{pc['precision']:.3f} / {pc['recall']:.3f} / {pc['f1']:.3f}")
        per_class.append([*row, str(summaries[cols[0].key]["per_class"][i]["support"])])
    return [
        Heading("Accuracy"),
        Table(["column", *[c.title for c in cols]],
              [["accuracy", *[_pct(summaries[c.key]["accuracy"]) for c in cols]],
               ["macro F1", *[f"{summaries[c.key]['macro_avg']['f1']:.4f}" for c in cols]]]),
        Image(acc_png, "accuracy per column"),
        Heading("Confusion matrices"),
        Image(cm_png, "confusion matrices, one per column"),
        Heading("Per-class precision / recall / F1"),
        Table(["class", *[c.title for c in cols], "support"], per_class),
    ]


def _layer_estimate(layer: dict[str, Any]) -> float:
    """convert's estimate for one layer in instructions (older reports: cycles with CMSIS-NN)."""
    return float(layer.get("est_instructions", layer.get("est_cycles_cmsis_nn", 0)) or 0)


def _layer_blocks(report: ConvertReport) -> list[Block]:
    layers = report.get("layers") or []
    estimate = report.get("latency_estimate") or {}
    clock = float(estimate.get("clock_hz") or 0)
    if not layers or clock <= 0:
        return []
    if "est_instructions" not in layers[0]:
        return _old_layer_blocks(report, clock)
    # convert --measure: the emulated Cortex-M4's instructions per layer.
    measured = {int(m["index"]): int(m["measured_instructions"])
                for m in (report.get("measured") or {}).get("layers", [])}
    rows: list[Row] = []
    for r in layers:
        est, meas = _layer_estimate(r), measured.get(int(r.get("index", -1)))
        basis = str(r.get("estimate_basis", ""))
        rows.append([str(r.get("index", "")), str(r.get("op", "")), str(r.get("layer", ""))[:40],
                     "x".join(str(d) for d in r.get("output_shape", [])), f"{int(r.get('params', 0)):,}",
                     f"{int(r.get('macs', 0)):,}", f"{est:,.0f}" + (" (fallback)" if basis != "fit" else ""),
                     f"{est / clock * 1e6:,.1f}",
                     *([f"{meas:,}", f"{est / meas:.2f}" if meas else "-"] if measured else [])])
    total = sum(_layer_estimate(r) for r in layers)
    total_meas = sum(measured.values())
    compared = [f"{total_meas:,}", f"{total / total_meas:.2f}" if total_meas else "-"] if measured else []
    rows.append(["", "total", "", "", f"{sum(int(r.get('params', 0)) for r in layers):,}",
                 f"{sum(int(r.get('macs', 0)) for r in layers):,}", f"{total:,.0f}",
                 f"{total / clock * 1e6:,.1f}", *compared])
    header = ["#", "op", "layer", "output", "params", "MACs", "est. instructions",
              f"est. us at {clock / 1e6:g} MHz"]
    note = (f"From convert: one row per operator; estimated instructions and their time at "
            f"{clock / 1e6:g} MHz ({estimate.get('basis', '')}).")
    if measured:
        header += ["measured (emulated Cortex-M4)", "est/meas"]
        note += " Measured: `python -m convert --measure`, one inference on the emulated Cortex-M4."
    return [Heading("Layers"), Para(note), Table(header, rows)]


def _old_layer_blocks(report: ConvertReport, clock: float) -> list[Block]:
    """The table of a report written before the fitted cost model (cycles per MAC by hand)."""
    layers = report.get("layers") or []
    rows: list[Row] = []
    for r in layers:
        rows.append([str(r.get("index", "")), str(r.get("op", "")), str(r.get("layer", ""))[:40],
                     "x".join(str(d) for d in r.get("output_shape", [])), f"{int(r.get('params', 0)):,}",
                     f"{int(r.get('macs', 0)):,}", f"{r.get('est_cycles_cmsis_nn', 0) / clock * 1e6:,.1f}",
                     f"{r.get('est_cycles_reference', 0) / clock * 1e6:,.1f}"])
    total_c = sum(r.get("est_cycles_cmsis_nn", 0) for r in layers) / clock * 1e6
    total_r = sum(r.get("est_cycles_reference", 0) for r in layers) / clock * 1e6
    rows.append(["", "total", "", "", f"{sum(int(r.get('params', 0)) for r in layers):,}",
                 f"{sum(int(r.get('macs', 0)) for r in layers):,}", f"{total_c:,.1f}", f"{total_r:,.1f}"])
    return [Heading("Layers"),
            Para(f"From convert: one row per operator; estimated time on the board at {clock / 1e6:g} MHz "
                 f"({(report.get('latency_estimate') or {}).get('basis', '')})."),
            Table(["#", "op", "layer", "output", "params", "MACs", "est. us CMSIS-NN", "est. us reference"],
                  rows)]


def _profile_blocks(data: Loaded) -> list[Block]:
    """Measured against estimated per layer, from the PROFILE evaluate recorded."""
    from host_tools import profiling

    record = (data.device or {}).get("profile")
    if not isinstance(record, dict):
        return []
    if "unavailable" in record:
        return [Heading("Per-layer cost: measured"), Para(f"No per-op profile: {record['unavailable']}")]
    try:
        profile = profiling.from_json(record)
    except (KeyError, TypeError, ValueError):
        return [Heading("Per-layer cost: measured"), Para("The profile in the device results is unreadable.")]
    unit = profiling.unit_label(profile)
    layers = [dict(layer) for layer in data.report.get("layers") or []]
    rows: list[Row] = []
    for r in profiling.layer_rows(profile, layers):
        rows.append([str(r["index"]), r["op"], r["layer"][:40], f"{r['measured']:,}", f"{r['share']:.1%}",
                     f"{r['estimate']:,.0f}" if r["estimate"] is not None else "-",
                     f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"])
    rows.append(["", "ops total", "", f"{profile.op_sum:,}", "", "", ""])
    rows.append(["", "Invoke() as timed", "", f"{profile.total:,}", "", "", ""])
    where = "the virtual board (this computer)" if profile.board == "virtual" else profile.board
    note = (f"One inference of test sample {record.get('sample', 0)} on {where}, each op timed "
            f"by the firmware (PROFILE): {unit}.")
    if profile.unit == profiling.UNIT_MICROSECONDS:
        note += " Estimates count Cortex-M4 instructions, so they are not set against these times."
    else:
        note += " Estimate: convert's per-layer cost model; ratio = estimate / measured."
    if profile.truncated:
        note += " More ops ran than the device could record: the table is cut."
    return [Heading("Per-layer cost: measured"), Para(note),
            Table(["#", "op", "layer", f"measured ({unit})", "share", "estimate", "est/meas"], rows)]


def _emulated(header: dict[str, Any]) -> bool:
    """Results of the emulated Cortex-M4: its cycles are instructions, its time is implied."""
    return (header.get("device") or {}).get("board") == EMULATED_BOARD


def _latency_blocks(data: Loaded) -> list[Block]:
    blocks: list[Block] = [Heading("Latency")]
    rows: list[Row] = []
    header = (data.device or {}).get("header", {})
    virtual = bool(header.get("virtual"))
    summary = (data.device or {}).get("summary", {})
    # The virtual board's Invoke() runs on this computer: it is never the board's time.
    what = ("virtual board: Invoke() on this computer (host time, not the board)" if virtual
            else "board: Invoke() measured on the device")
    cycles_what = f"{'virtual board' if virtual else 'board'}: Invoke() cycles"
    if _emulated(header):
        mhz = (header.get("device") or {}).get("clock_hz", 0) / 1e6
        what = f"{EMULATED_BOARD}: instructions per Invoke() as time at {mhz:g} MHz, one cycle each"
        cycles_what = f"{EMULATED_BOARD}: instructions per Invoke() (QEMU -icount)"
    stats = summary.get("invoke_us")
    if stats:
        rows.append([what, *(f"{stats[k]:,.0f} us" for k in ("mean", "p50", "p90", "p99"))])
    cycles = summary.get("cycles")
    if cycles:
        rows.append([cycles_what,
                     *(f"{cycles[k]:,.0f}" for k in ("mean", "p50", "p90", "p99"))])
    estimate = data.report.get("latency_estimate") or {}
    board = (data.report.get("budget") or {}).get("board", "board")
    mhz = estimate.get("clock_hz", 0) / 1e6
    if estimate.get("lower_bound_us") is not None:
        rows.append([f"{board}: estimate, {estimate.get('instructions', 0):,} instructions at 1 cycle each "
                     f"({mhz:g} MHz; a lower bound)", f"{estimate['lower_bound_us']:,.0f} us", "", "", ""])
    else:  # a report written before the fitted cost model
        older: dict[str, Any] = dict(estimate)
        for value, name in ((older.get("cmsis_nn_us"), "CMSIS-NN kernels"),
                            (older.get("reference_us"), "reference kernels")):
            if value is not None:
                rows.append([f"{board}: estimate, {name} ({mhz:g} MHz)", f"{value:,.0f} us", "", "", ""])
    if rows:
        blocks.append(Table(["what", "mean", "p50", "p90", "p99"], rows))
    times = [s.get("invoke_us") for s in (data.device or {}).get("samples", []) if isinstance(s, dict)]
    times = [t for t in times if isinstance(t, int | float)]
    if times:
        png = data.run / "compare_latency.png"
        report_plots.plot_histogram(np.asarray(times), "Invoke() time (us)", what, png)
        blocks.append(Image(png, f"histogram of per-sample Invoke() time, {what}"))
    if summary:
        blocks.append(Para(
            f"Evaluation: {summary.get('samples_per_s', '?')} samples/s over the link, "
            f"{summary.get('retransmissions', 0)} retransmissions, {summary.get('nacks', 0)} NACKs, "
            f"{summary.get('handshakes', 0)} handshakes, {summary.get('bytes_sent', 0):,} bytes sent, "
            f"{summary.get('bytes_received', 0):,} received."))
    return blocks


def _memory_blocks(data: Loaded) -> list[Block]:
    report, budget = data.report, data.report.get("budget", {})
    rows: list[Row] = [
        ["model (flash)", f"{report.get('model_bytes', 0):,} B",
         f"{budget.get('flash_for_model', 0):,} B" if budget else "?"],
        ["tensor arena (RAM, compiled in)", f"{report.get('arena_bytes', 0):,} B",
         f"{budget.get('ram_for_arena', 0):,} B" if budget else "?"],
        ["arena measured on the host (x86-64)", f"{report.get('arena_measured_bytes', 0):,} B", ""],
    ]
    used = (data.device or {}).get("header", {}).get("device", {}).get("arena_used")
    if used is not None:
        rows.append(["arena used, reported by the device", f"{used:,} B", ""])
    return [Heading("Memory"), Table(["what", "bytes", f"budget ({budget.get('board', 'board')})"], rows)]


def _history_blocks(data: Loaded) -> list[Block]:
    """Training curves only when they belong to the model this report is about."""
    png, history = data.run / runfolder.HISTORY_PNG, data.run / runfolder.HISTORY_JSON
    if not png.is_file():
        return []
    trained, epochs = None, None
    if history.is_file():
        try:
            record = json.loads(history.read_text(encoding="utf-8"))
            trained, epochs = record.get("model_sha256"), record.get("epochs_run")
        except (OSError, ValueError, AttributeError):
            trained = None
    converted = data.report.get("source_sha256")
    if data.report.get("source") == "keras" and trained is not None and trained == converted:
        if epochs == 0:
            return [Heading("Training curves"), Para("None: the model was kept as given (--epochs 0).")]
        return [Heading("Training curves"), Image(png, "training curves")]
    return [Heading("Training curves"),
            Para("Not shown: the run folder's training history belongs to another model than the one "
                 "converted.")]


def _intro_blocks(data: Loaded) -> list[Block]:
    report, n_test = data.report, len(data.test.x)
    io = report["io"]
    subset = "" if len(data.index) == n_test else \
        f" ({len(data.index)} of {n_test}: the device evaluated only these)"
    kind = "Keras, converted" if report.get("source") == "keras" else ".tflite as given"
    source = f"{report.get('source_file', '?')} ({kind})"
    blocks: list[Block] = [
        Heading(f"Model report: {data.run.name or data.run}", 1),
        Para(f"Model {source}, int8 hash {report.get('model_hash', '?')}; input {io['input']['shape']}, "
             f"output {io['output']['shape']} ({'class scores' if data.classifier else 'values'})."),
        Para(f"Test split: {len(data.index)} samples{subset}."),
        Para(_tflm_engine_text(report)),
    ]
    if "litert_int8" not in data.desktop:
        blocks.append(Para(f"LiteRT int8 column: not available ({report.get('litert_unavailable') or '?'}); "
                           "the board's TFLM runs the model."))
    if not data.labelled:
        why = "no class labels in the test split" if data.classifier else "the output is not class scores"
        blocks.append(Para(f"No accuracy ({why}): the report shows how far device and desktop agree."))
    if data.device is None:
        blocks.append(Para(f"Device: not evaluated yet (run `{EVALUATE_CMD}`); desktop columns only."))
    else:
        header = data.device.get("header", {})
        dev = header.get("device", {})
        kind = ("virtual board" if header.get("virtual") else
                "emulated board" if _emulated(header) else "real board")
        blocks.append(Para(f"Device: {kind} "
                           f"'{dev.get('board', '?')}', firmware {dev.get('firmware', '?')}, "
                           f"port {header.get('port', '?')}."))
    return blocks


def _tflm_engine_text(report: ConvertReport) -> str:
    """What the 'TFLM (host)' column ran on, and how far the second TFLM agreed with it."""
    engine = report.get("tflm_engine", "the tflite-micro Python runtime")
    check = report.get("tflm_crosscheck") or {}
    text = f"TFLM (host) column: {engine}."
    if check:
        text += (f" Cross-check, {check['engine']}: identical on {check['identical']:,} of "
                 f"{check['samples']:,} samples (max {check['max_abs_diff_lsb']} LSB apart).")
    return text


def compare(run: Path) -> list[Path]:
    """Write report.md, report.html and the figures; return the report paths."""
    # Matplotlib warns on the console (e.g. tight_layout with very long class names); the
    # figures are still written and readable, so the warnings are noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load(run)
        # Figures of an earlier comparison (a step that agrees now, another model) must not stay.
        runfolder.remove_stale(run, (runfolder.COMPARE_PNG_PATTERN,))
        cols = columns(data)
        blocks = _intro_blocks(data)
        if data.labelled:
            blocks += _accuracy_blocks(data, cols)
        blocks += _agreement_blocks(data, cols)
        blocks += _layer_blocks(data.report)
        blocks += _profile_blocks(data)
        blocks += _latency_blocks(data)
        blocks += _memory_blocks(data)
        blocks += _history_blocks(data)
    md_path, html_path = run / runfolder.REPORT_MD, run / runfolder.REPORT_HTML
    write_text(md_path, to_markdown(blocks, run))
    write_text(html_path, to_html(blocks, f"Model report: {run.name}"))
    return [html_path, md_path]
