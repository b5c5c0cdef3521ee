"""Read the test split and calibration set that `train` saved in the run folder."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError


@dataclass(frozen=True)
class TestSet:
    x: np.ndarray  # float32 (N, H, W, C), exactly what the model takes
    y: np.ndarray  # int64 (N,)
    labels: list[str]


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                has = ", ".join(npz.files) or "nothing"
                raise DataError(f"{path} lacks {', '.join(missing)} (has {has})")
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read {path}: {first}") from None


def load_test_set(path: Path) -> TestSet:
    arrays = _load(path, ("x", "y", "labels"))
    x, y = np.asarray(arrays["x"], dtype=np.float32), np.asarray(arrays["y"]).astype(np.int64)
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise DataError(f"{path}: x {x.shape} and y {y.shape} do not describe the same non-empty set")
    labels = [str(label) for label in np.asarray(arrays["labels"]).reshape(-1)]
    if y.min() < 0 or y.max() >= len(labels):
        raise DataError(f"{path}: class ids run {y.min()}..{y.max()} but there are {len(labels)} labels")
    return TestSet(x=x, y=y, labels=labels)


def load_calibration(path: Path) -> np.ndarray:
    x = np.asarray(_load(path, ("x",))["x"], dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{path}: x has shape {x.shape}; expected a non-empty (N, ...) array")
    return x
