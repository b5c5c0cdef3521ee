"""``compare``: Keras float, LiteRT int8, TFLM on the host and the device, side by side.

Each step between neighbouring columns has one meaning: float -> LiteRT int8 is the
quantization error, LiteRT -> TFLM is kernel rounding, TFLM (host) -> device is a firmware,
input or link fault (it must be zero with reference kernels).
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
from common.errors import DataError
from host_tools import report_plots
from host_tools.report_doc import Block, Heading, Image, Para, Table, to_html, to_markdown

EVALUATE_CMD = "python -m host_tools evaluate"
# Thumbnails per step: enough to see a pattern, few enough for a readable page.
MAX_THUMBNAILS = 40


@dataclass(frozen=True)
class Column:
    key: str  # file-name friendly
    title: str
    preds: np.ndarray  # (n,) over the compared samples
    outputs: np.ndarray | None  # (n, C) int8, None for the float column


@dataclass(frozen=True)
class Step:
    a: Column
    b: Column
    meaning: str


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a valid .npz file: {str(exc).strip().splitlines()[0]}") from None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON: {str(exc).strip().splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def _device_samples(
    device: dict[str, Any], n_test: int, n_classes: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    samples = device.get("samples")
    if not isinstance(samples, list) or not samples:
        raise DataError(f"{path} holds no samples: run `{EVALUATE_CMD}` again")
    try:
        index = np.array([int(s["index"]) for s in samples])
        outputs = np.array([s["output"] for s in samples], dtype=np.int16)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path} is malformed: run `{EVALUATE_CMD} --restart`") from None
    if (
        outputs.ndim != 2
        or outputs.shape[1] != n_classes
        or index.min() < 0
        or index.max() >= n_test
        or len(set(index.tolist())) != len(index)
    ):
        raise DataError(
            f"{path} does not match this run's test split and model: run `{EVALUATE_CMD} --restart`"
        )
    return index, outputs.astype(np.int8)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _agreement(step: Step) -> dict[str, Any]:
    top1 = step.a.preds == step.b.preds
    out: dict[str, Any] = {"top1": float(top1.mean()), "top1_differ": np.flatnonzero(~top1)}
    if step.a.outputs is not None and step.b.outputs is not None:
        diff = np.abs(step.a.outputs.astype(np.int16) - step.b.outputs.astype(np.int16)).max(axis=1)
        out["exact"] = float((diff == 0).mean())
        out["max_lsb"] = int(diff.max()) if diff.size else 0
        out["exact_differ"] = np.flatnonzero(diff > 0)
    return out


def _latency_rows(device: dict[str, Any] | None, report: dict[str, Any]) -> list[list[str]]:
    rows = []
    if device is not None:
        stats = device.get("summary", {}).get("invoke_us")
        if stats:
            rows.append(
                [
                    "device Invoke() (measured)",
                    *(f"{stats[k]:,.0f} us" for k in ("mean", "p50", "p90", "p99")),
                ]
            )
        cycles = device.get("summary", {}).get("cycles")
        if cycles:
            rows.append(
                ["device Invoke() cycles", *(f"{cycles[k]:,.0f}" for k in ("mean", "p50", "p90", "p99"))]
            )
    estimate = report.get("latency_estimate") or {}
    for key, name in (("cmsis_nn_us", "estimate, CMSIS-NN"), ("reference_us", "estimate, reference kernels")):
        if key in estimate:
            rows.append(
                [
                    f"{name} ({estimate.get('clock_hz', 0) / 1e6:g} MHz)",
                    f"{estimate[key]:,.0f} us",
                    "",
                    "",
                    "",
                ]
            )
    return rows


def compare(run: Path) -> list[Path]:
    """Write report.md, report.html and the figures; return the report paths."""
    # Matplotlib warns on the console (e.g. tight_layout with very long class names); the
    # figures are still written and readable, so the warnings are noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _compare(run)


def _compare(run: Path) -> list[Path]:
    from common.saved_split import read_split
    from common.metrics import classification_summary

    test = read_split(runfolder.require(run, runfolder.TEST_SET_NPZ, "python -m train"))
    desktop = _load_npz(runfolder.require(run, runfolder.DESKTOP_OUTPUTS_NPZ, "python -m convert"))
    report = _load_json(runfolder.require(run, runfolder.CONVERT_REPORT_JSON, "python -m convert"))
    n_test, n_classes = len(test.y), len(test.labels)
    for key in ("litert_int8", "tflm_int8"):
        if key not in desktop or desktop[key].shape != (n_test, n_classes):
            raise DataError(
                f"{run / runfolder.DESKTOP_OUTPUTS_NPZ} lacks {key} for {n_test} samples: "
                "re-run `python -m convert`"
            )
    device_path = run / runfolder.DEVICE_EVAL_JSON
    device = _load_json(device_path) if device_path.is_file() else None
    if device is not None:
        index, dev_out = _device_samples(device, n_test, n_classes, device_path)
    else:
        index, dev_out = np.arange(n_test), None

    y = test.y[index]
    columns: list[Column] = []
    if "float_probs" in desktop:
        probs = desktop["float_probs"][index]
        columns.append(Column("float", "Keras float", probs.argmax(axis=1), None))
    for key, title in (("litert_int8", "LiteRT int8"), ("tflm_int8", "TFLM (host)")):
        out = desktop[key][index]
        columns.append(Column(key, title, out.argmax(axis=1), out))
    if dev_out is not None:
        virtual = bool((device or {}).get("header", {}).get("virtual"))
        columns.append(
            Column(
                "device",
                "device (virtual board)" if virtual else "device (board)",
                dev_out.argmax(axis=1),
                dev_out,
            )
        )

    meanings = {
        ("float", "litert_int8"): "quantization error",
        ("litert_int8", "tflm_int8"): "kernel rounding",
        ("tflm_int8", "device"): "firmware, input or link fault (must be 0 with reference kernels)",
    }
    steps = [Step(a, b, meanings.get((a.key, b.key), "")) for a, b in itertools.pairwise(columns)]

    summaries = {c.key: classification_summary(y, c.preds, test.labels) for c in columns}
    figures = run
    for stale in figures.glob("compare_diff_*.png"):
        stale.unlink()  # a step that agrees now must not keep last run's picture
    acc_png = figures / "compare_accuracy.png"
    report_plots.plot_accuracy(
        [c.title for c in columns], [summaries[c.key]["accuracy"] for c in columns], acc_png
    )
    confusion_pngs = {}
    from common.plots import plot_confusion

    for c in columns:
        confusion_pngs[c.key] = figures / f"compare_confusion_{c.key}.png"
        plot_confusion(
            summaries[c.key]["confusion_matrix"],
            test.labels,
            confusion_pngs[c.key],
            title=f"{c.title}: accuracy {_pct(summaries[c.key]['accuracy'])}",
        )

    blocks: list[Block] = [Heading(f"Model report: {run.name or run}", 1)]
    subset = "" if len(index) == n_test else f" ({len(index)} of {n_test}: the device evaluated only these)"
    blocks.append(Para(f"Test split: {len(index)} samples{subset}; model {report.get('model_hash', '?')}."))
    if device is None:
        blocks.append(Para(f"Device: not evaluated yet (run `{EVALUATE_CMD}`); three columns shown."))
    else:
        header = device.get("header", {})
        dev = header.get("device", {})
        blocks.append(
            Para(
                f"Device: {'virtual board' if header.get('virtual') else 'real board'} "
                f"'{dev.get('board', '?')}', firmware {dev.get('firmware', '?')}, "
                f"port {header.get('port', '?')}."
            )
        )
    blocks += [
        Heading("Accuracy"),
        Table(
            ["column", *[c.title for c in columns]],
            [
                ["accuracy", *[_pct(summaries[c.key]["accuracy"]) for c in columns]],
                ["macro F1", *[f"{summaries[c.key]['macro_avg']['f1']:.4f}" for c in columns]],
            ],
        ),
        Image(acc_png, "accuracy per column"),
    ]

    blocks.append(Heading("Agreement between neighbouring columns"))
    rows = []
    thumbs: list[tuple[Step, Path | None, str]] = []
    for step in steps:
        ag = _agreement(step)
        exact = _pct(ag["exact"]) if "exact" in ag else "n/a (float)"
        max_lsb = str(ag["max_lsb"]) if "max_lsb" in ag else "n/a"
        rows.append(
            [
                f"{step.a.title} -> {step.b.title}",
                step.meaning,
                _pct(ag["top1"]),
                str(len(ag["top1_differ"])),
                exact,
                max_lsb,
            ]
        )
        shown = ag["top1_differ"] if len(ag["top1_differ"]) else ag.get("exact_differ", np.array([], int))
        what = "top-1 differs" if len(ag["top1_differ"]) else "outputs differ, same top-1"
        png = None
        if len(shown):
            png = figures / f"compare_diff_{step.a.key}_vs_{step.b.key}.png"
            pick = shown[:MAX_THUMBNAILS]
            report_plots.plot_thumbnails(
                test.x[index[pick]],
                index[pick],
                y[pick],
                step.a.preds[pick],
                step.b.preds[pick],
                test.labels,
                (step.a.title, step.b.title),
                png,
                f"{step.a.title} vs {step.b.title}: {what} "
                f"({len(shown)} samples{', first ' + str(len(pick)) if len(shown) > len(pick) else ''})",
            )
        thumbs.append((step, png, what))
    blocks.append(
        Table(["step", "meaning", "top-1 agreement", "top-1 differ", "exact output", "max diff (LSB)"], rows)
    )
    for step, png, what in thumbs:
        if png is None:
            blocks.append(Para(f"{step.a.title} -> {step.b.title}: no sample differs."))
        else:
            blocks.append(Image(png, f"{step.a.title} vs {step.b.title}: {what}"))

    blocks.append(Heading("Confusion matrices"))
    blocks += [Image(confusion_pngs[c.key], f"confusion matrix, {c.title}") for c in columns]

    blocks.append(Heading("Per-class precision / recall / F1"))
    per_class_rows = []
    for i, name in enumerate(test.labels):
        row = [name]
        for c in columns:
            pc = summaries[c.key]["per_class"][i]
            row.append(f"{pc['precision']:.3f} / {pc['recall']:.3f} / {pc['f1']:.3f}")
        row.append(str(summaries[columns[0].key]["per_class"][i]["support"]))
        per_class_rows.append(row)
    blocks.append(Table(["class", *[c.title for c in columns], "support"], per_class_rows))

    blocks.append(Heading("Latency"))
    latency = _latency_rows(device, report)
    if latency:
        blocks.append(Table(["what", "mean", "p50", "p90", "p99"], latency))
    if device is not None and device.get("header", {}).get("virtual"):
        blocks.append(
            Para("The virtual board times the TFLM Python runtime on this computer, not the board.")
        )
    summary = (device or {}).get("summary", {})
    if summary:
        blocks.append(
            Para(
                f"Evaluation: {summary.get('samples_per_s', '?')} samples/s over the link, "
                f"{summary.get('retransmissions', 0)} retransmissions, {summary.get('nacks', 0)} NACKs, "
                f"{summary.get('handshakes', 0)} handshakes, {summary.get('bytes_sent', 0):,} bytes sent, "
                f"{summary.get('bytes_received', 0):,} received."
            )
        )

    blocks.append(Heading("Memory"))
    budget = report.get("budget", {})
    mem_rows = [
        [
            "model (flash)",
            f"{report.get('model_bytes', 0):,} B",
            f"{budget.get('flash_for_model', 0):,} B" if budget else "?",
        ],
        [
            "tensor arena (RAM, compiled in)",
            f"{report.get('arena_bytes', 0):,} B",
            f"{budget.get('ram_for_arena', 0):,} B" if budget else "?",
        ],
        ["arena measured on the host (x86-64)", f"{report.get('arena_measured_bytes', 0):,} B", ""],
    ]
    if device is not None:
        used = device.get("header", {}).get("device", {}).get("arena_used")
        if used is not None:
            mem_rows.append(["arena used, reported by the device", f"{used:,} B", ""])
    blocks.append(Table(["what", "bytes", f"budget ({budget.get('board', 'board')})"], mem_rows))

    history = run / runfolder.HISTORY_PNG
    if history.is_file():
        blocks += [Heading("Training curves"), Image(history, "training curves")]

    md_path, html_path = run / runfolder.REPORT_MD, run / runfolder.REPORT_HTML
    write_text(md_path, to_markdown(blocks, run))
    write_text(html_path, to_html(blocks, f"Model report: {run.name}"))
    return [html_path, md_path]
