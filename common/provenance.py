"""What each stage's files were made from, and the checks a later stage runs before it trusts them.

- train's record (``train_record.json``) holds the hash of every file train wrote and the
  identity of its test split;
- convert's record (``convert_record.json``) holds its files' hashes, the model hash of the
  ``.tflite`` and what it was made from (``model.keras``'s hash, the test split's identity);
- evaluate's ``device_eval.json`` header holds the model hash and the test split's identity.

A later stage refuses, with one line naming the stage to re-run, a folder whose files do not
match these records: an interrupted stage, a file copied in from another run, or results of
another model never pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from common import convert_report, runfolder
from common.commit import read_record, sha256_file, verify_files
from common.errors import DataError

TRAIN = "train"
CONVERT = "convert"
EVALUATE = "evaluate"
TRAIN_CMD = "python -m train"
CONVERT_CMD = "python -m convert"
EVALUATE_CMD = "python -m host_tools evaluate --restart"
TRAIN_FILES = (runfolder.MODEL_KERAS, runfolder.TEST_SET_NPZ, runfolder.CALIBRATION_SET_NPZ)


def split_digest(x: np.ndarray, y: np.ndarray | None) -> str:
    """Identity of a test split: its inputs and labels (-1 for each sample without one)."""
    labels = y if y is not None else np.full(len(x), -1, dtype=np.int64)
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()
                          + np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def test_split_digest(run: Path) -> str | None:
    """Identity of the run folder's test split, None when there is none."""
    from common.saved_split import read_split

    path = Path(run) / runfolder.TEST_SET_NPZ
    if not path.exists():
        return None
    split = read_split(path)
    return split_digest(split.x, split.y)


def check_train(run: Path) -> dict[str, Any]:
    """train's record, with model.keras and both splits exactly as train wrote them."""
    record = read_record(run, TRAIN, TRAIN_CMD)
    verify_files(run, record, TRAIN_FILES, TRAIN_CMD)
    return record


def adopt_train_outputs(run: Path) -> None:
    """Write train's record for a model.keras and splits saved by other means (e.g. a notebook),
    so convert accepts them: from now on they are checked like train's own."""
    import time

    from common.atomic import write_json
    from common.saved_split import read_split

    run = Path(run)
    test = read_split(run / runfolder.TEST_SET_NPZ)
    write_json(run / runfolder.TRAIN_RECORD, {
        "format": 1, "stage": TRAIN, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "made_from": {"adopted": True}, "test_set": split_digest(test.x, test.y),
        "files": {name: sha256_file(run / name) for name in TRAIN_FILES}})


def convert_record(run: Path, files: dict[Path, bytes]) -> dict[str, Any]:
    """What convert records beside its files' hashes (called with the files about to be committed)."""
    from common.quant import model_hash

    run = Path(run)
    report = convert_report.parse(files[run / runfolder.CONVERT_REPORT_JSON])
    made_from: dict[str, Any] = {}
    if report.get("source") == "keras":
        for name in (runfolder.MODEL_KERAS, runfolder.CALIBRATION_SET_NPZ):
            made_from[name] = sha256_file(run / name)
    return {"model_hash": model_hash(files[run / runfolder.MODEL_TFLITE]),
            "source": report.get("source"), "made_from": made_from,
            "test_set": test_split_digest(run)}


def check_convert(run: Path, test_digest: str | None = None) -> dict[str, Any]:
    """convert's record, its files as written, made from the run folder's current model.keras
    and test split (``test_digest`` when the caller already computed it)."""
    run = Path(run)
    record = read_record(run, CONVERT, CONVERT_CMD)
    # Every file convert wrote into the run folder; the generated C++ in a subfolder too when it
    # is there (a copy of a run folder may leave it out; the virtual board then names it missing).
    names = {runfolder.MODEL_TFLITE, runfolder.CONVERT_REPORT_JSON,
             *(n for n in record["files"] if "/" not in n or (run / n).exists())}
    verify_files(run, record, tuple(sorted(names)), CONVERT_CMD)
    for name, want in (record.get("made_from") or {}).items():
        try:
            have = sha256_file(run / name)
        except OSError:
            have = None
        if have != want:
            raise DataError(f"{run / runfolder.MODEL_TFLITE} was made from another {name} than the one in "
                            f"{run}: run `{CONVERT_CMD}`")
    if test_digest is None:
        test_digest = test_split_digest(run)
    if record.get("test_set") != test_digest:
        raise DataError(f"{run / runfolder.TEST_SET_NPZ} is not the test split `convert` used: "
                        f"run `{CONVERT_CMD}`")
    return record


def check_device_results(run: Path, device: dict[str, Any], model_hash: str, test_digest: str | None) -> None:
    """device_eval.json belongs to the run folder's model and test split, or a one-line error."""
    path = Path(run) / runfolder.DEVICE_EVAL_JSON
    header = device.get("header")
    if not isinstance(header, dict):
        raise DataError(f"{path} has no header: regenerate it with `{EVALUATE_CMD}`")
    if header.get("model_hash") != model_hash:
        raise DataError(f"{path} holds results of model {header.get('model_hash')}, the run folder has "
                        f"{model_hash}: regenerate it with `{EVALUATE_CMD}`")
    if header.get("test_set") != test_digest:
        raise DataError(f"{path} holds results for another test split: regenerate it with `{EVALUATE_CMD}`")
