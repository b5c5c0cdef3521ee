"""Write a group of files all or nothing: stage every file first, then commit them together.

A failure while staging (disk full, permission) leaves every target untouched. With a run
folder the commit goes through ``common.commit``: convert's record is removed before the
first rename and written after the last, so a folder left between the two is refused by
every later stage; the record names what the files were made from.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.commit import StagedCommit
from common.errors import DataError


def write_all(files: dict[Path, bytes], run: Path | None = None, stage: str = "convert") -> None:
    """Stage and commit ``files``; the run folder (default: the folder of the convert_report.json
    among them) gets convert's record."""
    from common import provenance, runfolder

    if run is None:
        run = next((p.parent for p in files if p.name == runfolder.CONVERT_REPORT_JSON), None)
    folder = run if run is not None else Path(os.path.commonpath([str(p.parent) for p in files]))
    try:
        with StagedCommit(folder, stage) as staged:
            for target, data in files.items():
                staged.write(target, data)
            record = provenance.convert_record(run, files) if run is not None else None
            if run is None:
                # No record without a run folder: rename only (the files still all land together).
                staged.commit_plain()
            else:
                staged.commit(record)
    except OSError as exc:
        where = exc.filename or folder
        raise DataError(f"cannot write {where}: {exc.strerror or exc}") from None
