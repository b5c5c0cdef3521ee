"""Commit a stage's files to the run folder: the one place where stage outputs become visible.

A stage first stages every output as a temporary sibling (``.NAME.tmp-PID-XXXX``), then
commits: stale downstream files go, the stage's record (``<stage>_record.json``) is removed,
the staged files are renamed into place, and a new record is written last. The record lists
the SHA-256 of every file the stage wrote and what the stage was made from (model hash,
split identity), so a later stage checks content, not only that files exist:

- killed while staging: the previous complete state is untouched (only temporary files are
  left, and the next stage that takes the run folder's lock removes them);
- killed between the record's removal and the new record: no record, and every later stage
  refuses the folder with one line naming the stage to re-run.

``TINYML_FAULT_AT=<stage>:<n>[:<signal>]`` (tests only) sends the signal (``KILL`` by
default, ``INT``) to this process just before the n-th write of that stage, or with ``PAUSE``
waits at every write until ``TINYML_FAULT_DIR/go-<n>`` exists, so a test can look at the
folder between any two writes without relying on timing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import DataError, first_line

FAULT_ENV = "TINYML_FAULT_AT"
FAULT_DIR_ENV = "TINYML_FAULT_DIR"
# A paused writer gives up after this long, so a test that dies never leaves a process waiting.
FAULT_PAUSE_TIMEOUT_S = 120.0
# How often a paused writer looks for its go-ahead file.
FAULT_POLL_S = 0.01
RECORD_FORMAT = 1

# Temporary names carry the writer's pid, so a cleanup can tell a dead writer's files from
# those of a live one (e.g. two convert runs sharing one firmware folder).
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+(\.[^.]*)?$")


def record_name(stage: str) -> str:
    return f"{stage}_record.json"


def temp_path(target: Path, suffix: str | None = None) -> Path:
    """A fresh temporary sibling of ``target``; ``suffix`` keeps extensions writers insist on."""
    ext = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{ext}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_temps(folder: Path) -> list[str]:
    """Delete temporary files left by writers that no longer run; the names removed."""
    removed: list[str] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _TEMP_RE.match(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fault_plan() -> tuple[str, str, str] | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    parts = spec.split(":")
    return parts[0], parts[1] if len(parts) > 1 else "1", (parts[2] if len(parts) > 2 else "KILL").upper()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StagedCommit:
    """Stage files, then commit them with a record. Use as a context manager: on any exit
    without ``commit()`` (error, Ctrl-C) the staged files are removed and nothing changes."""

    def __init__(self, run: Path, stage: str) -> None:
        self.run = Path(run)
        self.stage = stage
        self._staged: dict[Path, Path] = {}  # target -> temporary file
        self._writes = 0
        self._plan = _fault_plan()

    def __enter__(self) -> StagedCommit:
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- the fault hook: every write of a stage passes here ---------------------------------

    def _write_point(self) -> None:
        self._writes += 1
        if self._plan is None or self._plan[0] != self.stage:
            return
        _, at, action = self._plan
        if action == "PAUSE":
            folder = Path(os.environ[FAULT_DIR_ENV])
            (folder / "step").write_text(str(self._writes))
            deadline = time.monotonic() + FAULT_PAUSE_TIMEOUT_S
            while not (folder / f"go-{self._writes}").exists() and time.monotonic() < deadline:
                time.sleep(FAULT_POLL_S)
        elif at == str(self._writes):
            sig = getattr(signal, f"SIG{action}")
            if sig == signal.SIGINT:
                # What Ctrl-C in a terminal meets: a process started in the background inherits
                # an ignored SIGINT, which would turn the simulated interrupt into nothing.
                signal.signal(signal.SIGINT, signal.default_int_handler)
            os.kill(os.getpid(), sig)

    # -- staging ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def path(self, target: Path, suffix: str | None = None) -> Iterator[Path]:
        """A temporary path for writers that need one (Keras, matplotlib); staged on success."""
        self._write_point()
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(target, suffix)
        self._staged[target] = tmp  # registered first: a failing writer's partial file goes too
        yield tmp
        if not tmp.is_file():
            raise DataError(f"writing {target} produced no file")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())

    def write(self, target: Path, data: bytes) -> None:
        with self.path(target) as tmp, open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    # -- commit -----------------------------------------------------------------------------

    def commit_plain(self) -> None:
        """Rename every staged file into place, without a record (files outside a run folder)."""
        self.commit(recorded=False)

    def commit(self, record: dict[str, Any] | None = None, stale: tuple[str, ...] = (),
               recorded: bool = True) -> list[str]:
        """Remove ``stale`` files, then the old record, rename every staged file into place and
        write the new record (with every committed run-folder file's hash); the stale names removed."""
        from common.runfolder import remove_stale

        removed: list[str] = []
        for name in stale:
            self._write_point()
            removed += remove_stale(self.run, (name,))
        record_path = self.run / record_name(self.stage)
        if recorded:
            self._write_point()
            with contextlib.suppress(FileNotFoundError):
                record_path.unlink()
        mode = 0o666 & ~_umask()
        hashes = {}
        for target, tmp in list(self._staged.items()):
            self._write_point()
            os.chmod(tmp, mode)
            relative = _inside(target, self.run)
            if relative is not None:  # files outside the run folder (a firmware folder) are not recorded
                hashes[relative] = sha256_file(tmp)
            os.replace(tmp, target)
            del self._staged[target]
        _fsync_dir(self.run)
        if not recorded:
            return removed
        body = {"format": RECORD_FORMAT, "stage": self.stage,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(record or {}), "files": hashes}
        tmp = temp_path(record_path)
        self._staged[record_path] = tmp
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        self._write_point()
        os.chmod(tmp, mode)
        os.replace(tmp, record_path)
        del self._staged[record_path]
        _fsync_dir(self.run)
        return removed


def _inside(path: Path, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (posix), or None when it lies outside."""
    try:
        return path.parent.resolve().joinpath(path.name).relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_record(run: Path, stage: str, rerun: str) -> dict[str, Any]:
    """The record of ``stage``, or a one-line ``DataError`` telling the user to run ``rerun``."""
    path = Path(run) / record_name(stage)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} not found: `{stage}` did not finish in {run} (interrupted, or never run); "
                        f"run `{rerun}`") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({first_line(exc)}): run `{rerun}`") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict) \
            or record.get("stage") != stage:
        raise DataError(f"{path} is not a {stage} record: run `{rerun}`")
    return record


def verify_files(run: Path, record: dict[str, Any], names: tuple[str, ...], rerun: str) -> None:
    """Each of ``names`` is in the record and on disk with the recorded content, or a one-line error."""
    stage = record.get("stage", "?")
    for name in names:
        path = Path(run) / name
        want = record["files"].get(name)
        if want is None:
            raise DataError(f"{path} was not written by the last `{stage}` run: run `{rerun}`")
        try:
            have = sha256_file(path)
        except FileNotFoundError:
            raise DataError(f"{path} not found although `{stage}` recorded it: run `{rerun}`") from None
        except IsADirectoryError:
            raise DataError(f"{path} is a directory, not a file: remove it and run `{rerun}`") from None
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        if have != want:
            raise DataError(f"{path} is not the file `{stage}` wrote (interrupted or changed since): "
                            f"run `{rerun}`")
