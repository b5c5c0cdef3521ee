"""Saved splits (test and calibration sets): the one format every later stage reads.

An ``.npz`` with ``x`` float32 (N,H,W,C) exactly as the model takes it, ``y`` int64 (N,) and
``labels`` a unicode array (C,) of class names. No TensorFlow import: host tools read these too.
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
    y: np.ndarray
    labels: tuple[str, ...]


def write_split(path: Path, x: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> None:
    write_npz(path, x=np.asarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64),
              labels=np.asarray(list(labels), dtype=np.str_))


def read_split(path: Path) -> SavedSplit:
    """A split written by ``write_split``, checked so a damaged file gives a one-line error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y", "labels") if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; re-run `python -m train`")
            x, y, labels = npz["x"], npz["y"], npz["labels"]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} not found: run `python -m train` first (or pass --run DIR)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a valid .npz file: {str(exc).strip().splitlines()[0]}") from None
    if x.ndim != 4 or x.dtype != np.float32 or y.shape != (len(x),) or y.dtype.kind not in "ui":
        raise DataError(f"{path}: expected x float32 (N,H,W,C) and y integer (N,), "
                        f"got x {x.dtype} {x.shape}, y {y.dtype} {y.shape}")
    names = tuple(str(n) for n in labels.tolist())
    if len(y) == 0:
        raise DataError(f"{path} holds no samples; re-run `python -m train`")
    if y.min() < 0 or y.max() >= len(names):
        raise DataError(f"{path}: labels outside 0..{len(names) - 1}")
    return SavedSplit(x=x, y=y.astype(np.int64), labels=names)
