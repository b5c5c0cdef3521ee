"""The run folder: one place that names every file a stage reads or writes.

Every stage takes ``--run DIR`` (default ``artifacts/``); later stages read what earlier
stages decided instead of deriving it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.errors import DataError

DEFAULT_RUN = Path("artifacts")

# train
MODEL_KERAS = "model.keras"
HISTORY_JSON = "history.json"
HISTORY_PNG = "history.png"
TRAIN_METRICS_JSON = "train_metrics.json"
TEST_SET_NPZ = "test_set.npz"
TRAIN_CONFUSION_PNG = "float_confusion.png"
TRAIN_REPORT_TXT = "float_classification_report.txt"
TRAIN_REPORT_JSON = "float_classification_report.json"
# A seeded sample of the training split (at most 2,000 images): `convert` draws its
# representative dataset from it, so calibration never sees validation or test images.
CALIBRATION_SET_NPZ = "calibration_set.npz"
# convert
MODEL_TFLITE = "model_int8.tflite"
CONVERT_REPORT_JSON = "convert_report.json"
# Per-sample desktop outputs on the test split: float probabilities, LiteRT int8, TFLM int8.
DESKTOP_OUTPUTS_NPZ = "desktop_outputs.npz"
# host tools
DEVICE_EVAL_JSON = "device_eval.json"
DEVICE_EVAL_JOURNAL = "device_eval.jsonl"
# The C++ files convert generates for this run's model (model data, settings, op resolver). The
# virtual board, the emulated board and the cross builds read them here; `python -m convert.install`
# copies them to FIRMWARE_MODEL_DIR, where PlatformIO builds the board's firmware from them.
GENERATED_DIR = "generated"
FIRMWARE_MODEL_DIR = Path("firmware/lib/model")  # relative to the repository root
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# `python -m host_tools compare` writes its figures as compare_<what>.png.
COMPARE_PNG_PATTERN = "compare_*.png"

# Each stage's record: the hash of every file it wrote and what it was made from
# (common/commit.py, common/provenance.py). Written last, so no record = the stage did not finish.
TRAIN_RECORD = "train_record.json"
CONVERT_RECORD = "convert_record.json"
# One writer per run folder (common/runlock.py); holds the holder's pid and command.
LOCK_FILE = "run.lock"

TRAIN_OUTPUTS = (MODEL_KERAS, TEST_SET_NPZ, CALIBRATION_SET_NPZ, HISTORY_JSON, HISTORY_PNG,
                 TRAIN_METRICS_JSON, TRAIN_CONFUSION_PNG, TRAIN_REPORT_TXT, TRAIN_REPORT_JSON, TRAIN_RECORD)
CONVERT_OUTPUTS = (MODEL_TFLITE, CONVERT_REPORT_JSON, DESKTOP_OUTPUTS_NPZ, CONVERT_RECORD)
EVALUATE_OUTPUTS = (DEVICE_EVAL_JSON, DEVICE_EVAL_JOURNAL)
COMPARE_OUTPUTS = (REPORT_MD, REPORT_HTML)

# Files derived from an earlier stage's output. A stage that writes a new model removes them,
# so a later stage can never score old outputs against the new model's labels.
DOWNSTREAM_OF_CONVERT = (DEVICE_EVAL_JSON, DEVICE_EVAL_JOURNAL, REPORT_MD, REPORT_HTML, COMPARE_PNG_PATTERN)
DOWNSTREAM_OF_TRAIN = (CONVERT_RECORD, MODEL_TFLITE, CONVERT_REPORT_JSON, DESKTOP_OUTPUTS_NPZ,
                       *DOWNSTREAM_OF_CONVERT)


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, metavar="DIR",
                        help="run folder to read from and write to (default: %(default)s)")


def remove_stale(run: Path, names: tuple[str, ...]) -> list[str]:
    """Delete the files (or glob patterns) in ``names`` from ``run``; the names actually removed."""
    removed = []
    for name in names:
        for path in sorted(Path(run).glob(name)):
            if path.is_file() or path.is_symlink():
                try:
                    path.unlink()
                except FileNotFoundError:  # another process removed it first
                    continue
                except OSError as exc:
                    raise DataError(f"cannot remove stale {path}: {exc.strerror or exc}") from None
                removed.append(path.name)
    return removed


def require(run: Path, name: str, produced_by: str) -> Path:
    """Path of a file an earlier stage must have written, or a one-line error naming that stage."""
    path = Path(run) / name
    if not path.is_file():
        raise DataError(f"{path} not found: run `{produced_by}` first (or pass --run DIR)")
    return path


def refuse_directories(run: Path, names: tuple[str, ...]) -> None:
    """A directory where a stage must write a file fails only at the final rename; refuse it first."""
    for name in names:
        path = Path(run) / name
        if path.is_dir() and not path.is_symlink():
            raise DataError(f"{path} is a directory where a file belongs: remove or rename it")
