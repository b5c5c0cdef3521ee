"""``evaluate``: stream the run's test split through the device, journal and summarise results."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import convert_report, runfolder
from common.commit import StagedCommit
from common.errors import DataError
from common.provenance import EVALUATE, split_digest
from common.quant import model_hash, read_io_spec
from host_tools.journal import JournalState, JournalWriter, read_journal, sample_line
from host_tools.link import SerialLink
from host_tools.messages import Info
from host_tools.session import ExpectedModel, ProfileNotSupported, Session

CONVERT_CMD = "python -m convert"
TRAIN_CMD = "python -m train"


def _invoke_estimate_s(run: Path) -> float:
    """convert's Invoke() estimate (instructions at one cycle each: the board's wait states make
    it slower, which the reply timeout's factor covers), 0 when unknown."""
    try:
        report = convert_report.read(run / runfolder.CONVERT_REPORT_JSON)
        return float(report["latency_estimate"]["lower_bound_us"]) / 1e6
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def load_expected(run: Path) -> ExpectedModel:
    path = runfolder.require(run, runfolder.MODEL_TFLITE, CONVERT_CMD)
    data = path.read_bytes()
    return ExpectedModel(path=path, model_hash=model_hash(data), io=read_io_spec(data),
                         invoke_estimate_s=_invoke_estimate_s(run))


@dataclass(frozen=True)
class TestInputs:
    labels: np.ndarray  # (N,) int64; -1 where the test split has no class labels
    inputs: np.ndarray  # (N, input bytes) int8, quantized with the model's input spec
    class_names: tuple[str, ...] | None
    digest: str  # identifies the test split a journal belongs to


def load_inputs(run: Path, expected: ExpectedModel) -> TestInputs:
    from common.saved_split import read_split, require_test_set

    path = require_test_set(run)
    split = read_split(path)
    spec = expected.io.input
    if tuple(split.x.shape[1:]) != tuple(spec.shape[1:]):
        raise DataError(
            f"{path} holds inputs of shape {list(split.x.shape[1:])} but {expected.path.name} "
            f"takes {list(spec.shape[1:])}: the run folder mixes two models"
        )
    # Quantize everything up front, vectorised: the streaming loop only slices bytes.
    q = spec.quantize(split.x).reshape(len(split.x), -1)
    y = split.y if split.y is not None else np.full(len(split.x), -1, dtype=np.int64)
    digest = split_digest(split.x, split.y)
    return TestInputs(labels=y, inputs=np.ascontiguousarray(q), class_names=split.labels, digest=digest)


def device_record(info: Info) -> dict[str, Any]:
    return {
        "board": info.board,
        "firmware": info.firmware,
        "protocol": info.protocol_version,
        "window": info.window,
        "clock_hz": info.clock_hz,
        "arena_size": info.arena_size,
        "arena_used": info.arena_used,
        "model_bytes": info.model_bytes,
        "max_payload": info.max_payload,
    }


def _stats(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


@dataclass
class EvalOutcome:
    path: Path
    samples: int
    evaluated_now: int
    accuracy: float | None
    wall_time_s: float
    summary: dict[str, Any]


class Progress:
    """A tqdm bar on stderr (only when stderr is a terminal and progress is wanted)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="img",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                desc="evaluate",
            )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def evaluate(
    run: Path,
    link: SerialLink,
    port_label: str,
    virtual: bool,
    *,
    window: int | None = None,
    limit: int | None = None,
    restart: bool = False,
    progress: bool = True,
    flash_hint: str | None = None,
    log: Callable[[str], None] = print,
) -> EvalOutcome:
    started = time.monotonic()
    expected = load_expected(run)
    data = load_inputs(run, expected)
    total = len(data.labels) if limit is None else min(limit, len(data.labels))
    journal_path = run / runfolder.DEVICE_EVAL_JOURNAL
    # With --restart the old journal is ignored, and deleted only once the device has passed
    # the handshake: a wrong board must not cost the results of the right one.
    state = JournalState() if restart else read_journal(journal_path)
    if state.header is not None:
        _check_journal(journal_path, state.header, expected, data)
        out_len = expected.io.output.size
        wrong = [i for i, rec in state.samples.items()
                 if len(rec["output"]) != out_len or i >= len(data.labels)]
        for i in wrong:
            del state.samples[i]
        state.skipped += len(wrong)
        if state.skipped:
            log(f"skipped {state.skipped} malformed line(s) of {journal_path.name}; their samples are "
                "evaluated again")
    session = Session(link, expected, flash_hint=flash_hint) if flash_hint else Session(link, expected)
    info = session.handshake()
    if restart and journal_path.exists():
        journal_path.unlink()
    virtual = virtual or info.board == "virtual"
    if state.header is not None:
        _check_same_device(journal_path, state.header, info.board, virtual)
    log(
        f"device: {info.board} firmware {info.firmware} on {port_label}"
        f"{' (virtual board)' if virtual else ''}, model {info.model_hash} matches {expected.path.name}"
    )
    session_record = {
        "port": port_label,
        "virtual": virtual,
        "device": device_record(info),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    writer = JournalWriter(journal_path, None if state.header is None else state.good_bytes)
    session.on_idle = writer.flush_pending  # nothing received is lost to a kill during a long wait
    if state.header is None:
        header = {
            "kind": "header",
            "model_hash": expected.model_hash,
            "model_file": expected.path.name,
            "test_set": data.digest,
            "test_samples": len(data.labels),
            **session_record,
        }
        writer.write_record(header)
        state.header = header
    else:
        writer.write_record({"kind": "resume", **session_record})
        state.sessions.append(session_record)
    done = state.samples
    todo = [i for i in range(total) if i not in done]
    resumed = total - len(todo)
    if resumed:
        log(f"resuming: {resumed} of {total} samples already in {journal_path.name}")
    bar = Progress(total, resumed, progress)
    # New results stay compact until the end: building a dict per sample costs more than TFLM.
    fresh: dict[int, tuple[int, np.ndarray, int, int, int | None]] = {}
    try:
        for index, result in session.stream(_requests(data.inputs, todo), window=window):
            out = np.frombuffer(result.output, dtype=np.int8)
            pred = int(out.argmax())
            label = int(data.labels[index])
            writer.write_line(sample_line(index, label, result.output, pred, result.invoke_us, result.cycles))
            fresh[index] = (label, out, pred, result.invoke_us, result.cycles)
            bar.update()
    finally:
        bar.close()
        writer.close()
    wall = time.monotonic() - started
    for index, (label, out, pred, invoke_us, cycles) in fresh.items():
        done[index] = {
            "index": index,
            "label": label,
            "output": out.tolist(),
            "pred": pred,
            "invoke_us": invoke_us,
            "cycles": cycles,
        }
    samples = [done[i] for i in range(total) if i in done]
    profile = _profile_record(session, data.inputs[0].tobytes() if total else None, log)
    summary = _summary(samples, session, link, wall, len(todo), resumed)
    out_path = run / runfolder.DEVICE_EVAL_JSON
    # Through the run folder's one commit point (and its test-only fault hook).
    with StagedCommit(run, EVALUATE) as staged:
        text = final_json(state.header, state.sessions, summary, samples, profile)
        staged.write(out_path, text.encode("utf-8"))
        staged.commit_plain()
    return EvalOutcome(out_path, len(samples), len(todo), summary["accuracy"], wall, summary)


def final_json(
    header: dict[str, Any],
    sessions: list[dict[str, Any]],
    summary: dict[str, Any],
    samples: list[dict[str, Any]],
    profile: dict[str, Any] | None = None,
) -> str:
    """device_eval.json: readable header, summary and per-op profile, then one compact line per sample."""
    lines = ",\n".join("    " + json.dumps(s, separators=(",", ":")) for s in samples)
    return (
        f'{{\n  "stage": "{EVALUATE}",\n  "header": {json.dumps(header)},\n'
        f'  "sessions": {json.dumps(sessions)},\n'
        f'  "summary": {json.dumps(summary, indent=2)},\n  "profile": {json.dumps(profile)},\n'
        f'  "samples": [\n{lines}\n  ]\n}}\n'
    )


def _profile_record(session: Session, tensor: bytes | None, log: Callable[[str], None]) -> dict[str, Any]:
    """The first test sample timed per op (PROFILE), or why there is no profile: a device that
    cannot profile, or a link that fails now, costs the evaluation nothing."""
    from common.errors import DeviceError
    from host_tools.profiling import profile_session

    if tensor is None:
        return {"unavailable": "no test sample was evaluated"}
    try:
        return {"sample": 0, **profile_session(session, tensor).as_json()}
    except ProfileNotSupported as exc:
        return {"unavailable": str(exc)}
    except DeviceError as exc:
        log(f"no per-op profile: {exc}")
        return {"unavailable": str(exc)}


def profile_run(run: Path, link: SerialLink, sample: int, flash_hint: str | None = None) -> list[str]:
    """``profile``: time test sample ``sample`` per op on the device; the table as lines."""
    from host_tools.profiling import profile_session, render_table

    expected = load_expected(run)
    data = load_inputs(run, expected)
    if sample >= len(data.inputs):
        raise DataError(f"--sample {sample} is out of range: the test split has {len(data.inputs)} samples")
    session = Session(link, expected, flash_hint=flash_hint) if flash_hint else Session(link, expected)
    session.handshake()
    profile = profile_session(session, data.inputs[sample].tobytes())
    layers = convert_report.read(run / runfolder.CONVERT_REPORT_JSON).get("layers") or []
    return render_table(profile, [dict(layer) for layer in layers])


def _requests(inputs: np.ndarray, todo: list[int]) -> Iterator[tuple[int, bytes]]:
    for i in todo:
        yield i, inputs[i].tobytes()


def _check_journal(path: Path, header: dict[str, Any], expected: ExpectedModel, data: TestInputs) -> None:
    if header.get("model_hash") != expected.model_hash:
        raise DataError(
            f"{path} holds results of model {header.get('model_hash')}, the run folder has "
            f"{expected.model_hash}: pass --restart to discard them"
        )
    if header.get("test_set") != data.digest:
        raise DataError(f"{path} holds results for another test split: pass --restart to discard them")


def _check_same_device(path: Path, header: dict[str, Any], board: str, virtual: bool) -> None:
    """One journal, one device: results of a board and of the virtual board are not one column."""
    was_board = header.get("device", {}).get("board")
    was_virtual = bool(header.get("virtual"))
    if was_board != board or was_virtual != virtual:
        kind = {True: "virtual board", False: "board"}
        raise DataError(
            f"{path} was started on {kind[was_virtual]} '{was_board}', this is {kind[virtual]} "
            f"'{board}': pass --restart to discard those results"
        )


def _summary(
    samples: list[dict[str, Any]], session: Session, link: SerialLink, wall: float, now: int, resumed: int
) -> dict[str, Any]:
    correct = sum(1 for s in samples if s["pred"] == s["label"])
    labelled = sum(1 for s in samples if s["label"] >= 0)
    cycles = [s["cycles"] for s in samples if s["cycles"] is not None]
    return {
        "samples": len(samples),
        # None without class labels: only agreement with the desktop can be measured then.
        "accuracy": correct / labelled if labelled else None,
        "invoke_us": _stats([s["invoke_us"] for s in samples]),
        "cycles": _stats(cycles),
        "evaluated_this_run": now,
        "resumed_from_journal": resumed,
        "wall_time_s": round(wall, 3),
        "samples_per_s": round(now / wall, 1) if wall > 0 else None,
        "bytes_sent": link.bytes_sent,
        "bytes_received": link.bytes_received,
        **session.stats.as_dict(),
    }
