"""The shape of ``convert_report.json``: written by ``convert``, read by ``host_tools`` (evaluate,
compare) and by ``common.provenance``.

The report is JSON on disk, so a reader gets whatever the file holds; these types state what
``convert`` writes, so each reader names keys the writer really produces and a type checker
catches a renamed or misspelt one on either side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast


class TensorReport(TypedDict):
    name: str
    shape: list[int]
    dtype: str  # numpy dtype name, "int8"
    scale: float
    zero_point: int


class IoReport(TypedDict):
    input: TensorReport
    output: TensorReport


class LatencyEstimate(TypedDict):
    kind: str  # "estimate"
    clock_hz: int
    instructions: int  # convert.cost's fitted estimate, summed over the ops
    lower_bound_us: float  # instructions at one cycle each at clock_hz
    fallback_ops: list[str]  # op types the fit had no data for (their estimate is a fallback)
    basis: str


class ConvertReport(TypedDict):
    model_hash: str
    source: str  # "keras" or "tflite"
    source_file: str
    source_sha256: str
    model_bytes: int
    arena_bytes: int
    arena_measured_bytes: int
    arena_rule: str
    ops: list[str]
    op_counts: dict[str, int]
    operator_count: int
    layers: list[dict[str, Any]]
    total_params: int
    total_macs: int
    latency_estimate: LatencyEstimate
    accuracy: dict[str, float | None]  # float, litert_int8, tflm; None without labels
    accuracy_note: str | None
    verified_samples: int
    tflm_engine: str
    tflm_crosscheck: dict[str, Any]
    agreement_tflm_vs_litert: dict[str, float | int] | None  # None: LiteRT cannot run the model
    litert_kernels: str
    agreement_tflm_vs_litert_builtin: dict[str, float | int] | None
    # Why the LiteRT column is left out (LiteRT refused a model the board's TFLM runs); None or
    # absent when LiteRT ran it.
    litert_unavailable: NotRequired[str | None]
    io: IoReport
    labels: list[str]
    budget: dict[str, Any]
    calibration: dict[str, Any] | None
    generated_dir: str
    generated_files: list[str]
    classifier: bool
    warnings: list[str]
    quantize_time_s: float | None
    # With --measure: per layer the estimate next to the emulated Cortex-M4's instructions.
    measured: NotRequired[dict[str, Any]]
    wall_time_s: NotRequired[float]  # added last, once everything else is done


def parse(text: str | bytes) -> ConvertReport:
    """The report in ``text``; ``ValueError`` when it is not a JSON object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("convert_report.json does not hold a JSON object")
    return as_report(value)


def as_report(value: dict[str, Any]) -> ConvertReport:
    """A JSON object read from convert_report.json, typed as what convert writes."""
    return cast(ConvertReport, value)


def read(path: Path) -> ConvertReport:
    """The report at ``path``; ``OSError`` or ``ValueError`` when it cannot be read."""
    return parse(Path(path).read_text(encoding="utf-8"))
