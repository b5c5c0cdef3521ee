"""Write a group of files all or nothing: stage every file first, then rename them into place.

A failure while staging (disk full, permission) leaves every target untouched. The renames
happen only after all content is on disk; each rename is atomic, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """rw for everyone the umask allows, as open() would give; mkstemp's 0600 would hide
    generated sources from other users of a shared checkout."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_all(files: dict[Path, bytes]) -> None:
    mode = _default_mode()
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((Path(tmp_name), target))
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
