"""Saved splits (test and calibration sets): the one format every later stage reads.

An ``.npz`` with ``x`` float32 of any rank ``(N, ...)`` exactly as the model takes it, and,
optionally, ``y`` int64 (N,) class indices and ``labels`` a unicode array (C,) of class names.
Without ``y`` a split still serves calibration and device-versus-desktop agreement; without
``labels`` the classes are named by their index. No TensorFlow import: host tools read these too.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import write_npz
from common.errors import DataError


@dataclass(frozen=True)
class SavedSplit:
    x: np.ndarray
    y: np.ndarray | None  # class indices, None when the split has no labels
    labels: tuple[str, ...] | None  # class names, None when the file names none

    def class_names(self, num_outputs: int) -> tuple[str, ...]:
        """The class names, or the class index as text for a model with ``num_outputs`` outputs."""
        return self.labels if self.labels is not None else tuple(str(i) for i in range(num_outputs))


def write_split(path: Path, x: np.ndarray, y: np.ndarray | None = None,
                labels: Sequence[str] | None = None) -> None:
    arrays = {"x": np.asarray(x, dtype=np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y, dtype=np.int64)
    if labels is not None:
        arrays["labels"] = np.asarray(list(labels), dtype=np.str_)
    write_npz(path, **arrays)


def read_split(path: Path) -> SavedSplit:
    """A split written by ``write_split`` (or by hand), checked so a damaged file gives a one-line error."""
    from common.limits import npz_declarations

    npz_declarations(path)  # oversized arrays are refused from their headers, before loading
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files:
                raise DataError(f"{path}: missing key x (the inputs as the model takes them, (N, ...))")
            x = npz["x"]
            y = npz["y"] if "y" in npz.files else None
            labels = npz["labels"] if "labels" in npz.files else None
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} not found: run `python -m train` first (or pass --run DIR)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} is not a valid .npz file: {first}") from None
    if x.ndim < 2 or x.dtype != np.float32:
        raise DataError(f"{path}: expected x float32 of shape (N, ...) with at least one feature axis, "
                        f"got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise DataError(f"{path} holds no samples")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: x contains NaN or infinite values")
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind != "U"):
        raise DataError(f"{path}: labels must be a 1-D array of class names, "
                        f"got {labels.dtype} {labels.shape}")
    names = tuple(str(n) for n in labels.tolist()) if labels is not None else None
    if y is None:
        return SavedSplit(x=x, y=None, labels=names)
    if y.shape != (len(x),) or y.dtype.kind not in "ui":
        raise DataError(f"{path}: y must hold one integer class index per sample ({len(x)},), "
                        f"got {y.dtype} {y.shape}")
    if y.min() < 0 or (names is not None and y.max() >= len(names)):
        top = f"0..{len(names) - 1}" if names is not None else "0 or more"
        raise DataError(f"{path}: labels outside {top}")
    return SavedSplit(x=x, y=y.astype(np.int64), labels=names)


def require_test_set(run: Path) -> Path:
    """The run folder's test split, or a one-line error whose hint fits how the run was made:
    a model converted ``--from-tflite`` has no train stage to produce one."""
    import json

    from common import runfolder

    path = Path(run) / runfolder.TEST_SET_NPZ
    if path.is_file():
        return path
    try:
        source = json.loads((Path(run) / runfolder.CONVERT_REPORT_JSON).read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError, TypeError):
        source = None
    if source == "tflite":
        raise DataError(f"{path} not found: the model came from --from-tflite, so provide the test set: "
                        "numpy.savez(path, x=inputs as the model takes them, optional y=class indices, "
                        "labels=class names), then run `python -m convert --from-tflite` again")
    return runfolder.require(run, runfolder.TEST_SET_NPZ, "python -m train")
