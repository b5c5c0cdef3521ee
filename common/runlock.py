"""One writer per run folder: an advisory ``flock`` on ``<run>/run.lock``.

The kernel drops a ``flock`` when its holder exits, however it exits (SIGKILL included), so a
lock never outlives its process and no stale-lock cleanup is needed. The holder writes its
pid and command line into the file, so a refused second writer can say who has the folder.
The file itself is left in place: removing it while another process waits on it would let
two processes lock two different files of the same name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common.commit import remove_dead_temps
from common.errors import DataError, first_line

LOCK_FILE = "run.lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return first_line(text, default="another process")


@contextlib.contextmanager
def hold(run: Path, command: str, create: bool = False) -> Iterator[None]:
    """Hold the run folder's lock for the body, or raise a one-line ``DataError`` (exit 3) naming
    the holder. Also refuses a folder it cannot write to, before any long work, and removes
    temporary files that killed writers left behind."""
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise DataError(f"run folder {run} is a file, not a folder")
    if create:
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create run folder {run}: {exc.strerror or exc}") from None
    elif not run.is_dir():
        raise DataError(f"run folder {run} not found (pass --run DIR)")
    path = run / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a lock file: remove it") from None
    except OSError as exc:
        raise DataError(f"cannot write to run folder {run}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataError(f"cannot lock {path}: {exc.strerror or exc}") from None
            raise DataError(f"run folder {run} is in use by {_holder(fd)}: wait for it to finish "
                            "or stop it") from None
        os.ftruncate(fd, 0)
        command = " ".join([command, *sys.argv[1:]])
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.write(fd, f"pid {os.getpid()} ({command}), since {started}\n".encode("utf-8", "replace"))
        _probe_writable(run)
        remove_dead_temps(run)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _probe_writable(folder: Path) -> None:
    """Create and remove a file: catches read-only mounts and permissions (even for root)."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def check_writable(folder: Path) -> None:
    """Refuse a folder this process cannot write (or, when it does not exist yet, create in),
    with one line (exit 3); nothing is created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"cannot create {folder}: {existing} is not a folder")
    _probe_writable(existing)
    if existing == folder:
        remove_dead_temps(folder)
