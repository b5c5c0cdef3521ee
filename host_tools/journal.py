"""The evaluation journal (device_eval.jsonl): appended as results arrive, read back to resume.

Line 1 is a header (model hash, test-set hash, device, port); every later line is one
sample, or a ``resume`` record when another session continued the evaluation. A process
killed mid-write leaves at most a torn last line, which the reader drops and the writer
truncates away, so no sample is ever counted twice. Any other malformed line (garbled, a
record missing a key or with a value of the wrong type) is skipped and counted; its sample
is simply evaluated again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from common.errors import DataError
from host_tools import timing

SAMPLE_KEYS = ("index", "label", "output", "pred", "invoke_us", "cycles")


@dataclass
class JournalState:
    header: dict[str, Any] | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, dict[str, Any]] = field(default_factory=dict)
    good_bytes: int = 0  # length of the prefix made of complete lines (a torn tail is cut)
    skipped: int = 0  # complete lines that were malformed and left out


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_sample(record: dict[str, Any]) -> bool:
    """A sample line with every key and the right types (outputs are int8 values)."""
    output = record.get("output")
    return (
        all(k in record for k in SAMPLE_KEYS)
        and _int(record["index"]) and record["index"] >= 0
        and _int(record["label"]) and _int(record["pred"])
        and _int(record["invoke_us"]) and record["invoke_us"] >= 0
        and (record["cycles"] is None or _int(record["cycles"]))
        and isinstance(output, list) and len(output) > 0
        and all(_int(v) and -128 <= v <= 127 for v in output)
    )


def read_journal(path: Path) -> JournalState:
    """Every valid line of the journal; a torn tail and malformed lines are left out."""
    state = JournalState()
    if not path.exists():
        return state
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise DataError(f"{path} is a directory where the journal belongs: remove or rename it") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    offset = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn last line: the writer died mid-line
        offset += len(line)
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if state.header is None:
            if not isinstance(record, dict) or record.get("kind") != "header":
                raise DataError(f"{path} does not start with a journal header: delete it or pass --restart")
            state.header = record
        elif isinstance(record, dict) and record.get("kind") == "resume":
            state.sessions.append(record)
        elif isinstance(record, dict) and valid_sample(record):
            # The first result recorded for an index wins, as on the wire.
            state.samples.setdefault(record["index"], record)
        else:
            state.skipped += 1
    state.good_bytes = offset
    return state


def sample_line(index: int, label: int, output: bytes, pred: int, invoke_us: int, cycles: int | None) -> str:
    """One sample as a JSON line (formatted by hand: json.dumps per sample costs more than TFLM)."""
    values = ",".join(str(b - 256 if b > 127 else b) for b in output)
    cyc = "null" if cycles is None else str(cycles)
    return (
        f'{{"index":{index},"label":{label},"output":[{values}],"pred":{pred},'
        f'"invoke_us":{invoke_us},"cycles":{cyc}}}\n'
    )


class JournalWriter:
    """Appends lines, flushing every few hundred samples or half a second."""

    def __init__(self, path: Path, good_bytes: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = good_bytes is None
        self._fh: BinaryIO = open(path, "wb" if fresh else "r+b")  # noqa: SIM115
        if good_bytes is not None:
            # Cut a torn tail so the next line starts on a line boundary.
            self._fh.seek(good_bytes)
            self._fh.truncate()
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def write_record(self, record: dict[str, Any]) -> None:
        self._pending.append(json.dumps(record, separators=(",", ":")) + "\n")
        self.flush()

    def write_line(self, line: str) -> None:
        self._pending.append(line)
        if (
            len(self._pending) >= timing.JOURNAL_FLUSH_SAMPLES
            or time.monotonic() - self._last_flush >= timing.JOURNAL_FLUSH_S
        ):
            self.flush()

    def flush_pending(self) -> None:
        """Write buffered lines now (called before the host waits on a silent device)."""
        if self._pending:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._fh.write("".join(self._pending).encode("utf-8"))
            self._pending.clear()
        self._fh.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
