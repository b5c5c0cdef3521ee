"""Stratified, seeded splits: the same seed always gives the same samples in each split.

* Datasets without an official test set (``mnist5k``, ``.npz`` files): 70% train, 10% validation,
  20% test, each with the class proportions of the whole (mnist5k: 3,500 / 500 / 1,000).
* ``mnist`` / ``fashion_mnist``: the official test set is the test split; validation is a
  stratified 10% of the official training set, the remaining 90% is the train split.
* The calibration set for int8 conversion is a stratified sample of at most 2,000 images of
  the *train* split, so quantization never sees a validation or test image.

Functions return index arrays so callers (and tests) can check that splits are disjoint. The
indices come in shuffled order (mnist5k is stored sorted by class): any prefix of a saved split,
such as the first 100 calibration images, is itself a mix of all classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from common.errors import DataError, first_line
from train.datasets import MIN_SAMPLES_PER_CLASS, Dataset

TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
CALIBRATION_MAX = 2000


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def parts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(x, y) of each split by name: train, validation, test."""
        return {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}

    def sizes(self) -> dict[str, int]:
        return {name: len(y) for name, (_, y) in self.parts().items()}


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` samples drawn with the class proportions of ``y``, shuffled."""
    if n >= len(y):
        return np.random.default_rng(seed).permutation(len(y))
    num_classes = len(np.unique(y))
    if n < num_classes:
        raise DataError(f"cannot draw {n} samples covering all {num_classes} classes")
    picked, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.asarray(picked)


def three_way_indices(y: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION,
                      val_fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, ...]:
    """(train, validation, test) index arrays, stratified on ``y``, disjoint, covering all of ``y``."""
    rest, test = _split(np.arange(len(y)), y, test_fraction, seed)
    # The validation share is taken from what remains, so rescale it to stay a share of the whole.
    train, val = _split(rest, y[rest], val_fraction / (1.0 - test_fraction), seed)
    return train, val, test


def two_way_indices(y: np.ndarray, seed: int,
                    val_fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) index arrays for a dataset whose test set is given separately."""
    return _split(np.arange(len(y)), y, val_fraction, seed)


def _split(idx: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        keep, held_out = train_test_split(idx, test_size=fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot split stratified: {first_line(exc)}") from None
    return keep, held_out


def limit_dataset(data: Dataset, limit: int, seed: int) -> Dataset:
    """Keep ``limit`` samples in all (stratified); an official test set shrinks in proportion."""
    if limit <= 0:
        raise DataError(f"--limit must be positive, got {limit}")
    needed = MIN_SAMPLES_PER_CLASS * data.num_classes
    if data.x_test is None and limit < needed:
        raise DataError(f"--limit {limit} is too small: the stratified splits need at least "
                        f"{MIN_SAMPLES_PER_CLASS} samples per class ({needed} in all)")
    if data.x_test is None or data.y_test is None:
        idx = stratified_subset(data.y, limit, seed)
        return Dataset(data.name, data.x[idx], data.y[idx], data.labels, kind=data.kind)
    total = len(data.y) + len(data.y_test)
    n_train = max(1, round(limit * len(data.y) / total))
    tr = stratified_subset(data.y, n_train, seed)
    te = stratified_subset(data.y_test, max(1, limit - n_train), seed)
    return Dataset(data.name, data.x[tr], data.y[tr], data.labels, data.x_test[te], data.y_test[te],
                   kind=data.kind)


def make_splits(data: Dataset, seed: int) -> Splits:
    """The train / validation / test splits described in the module docstring."""
    if data.x_test is not None and data.y_test is not None:
        train, val = two_way_indices(data.y, seed)
        return Splits(data.x[train], data.y[train], data.x[val], data.y[val], data.x_test, data.y_test)
    train, val, test = three_way_indices(data.y, seed)
    return Splits(data.x[train], data.y[train], data.x[val], data.y[val], data.x[test], data.y[test])


def calibration_indices(y_train: np.ndarray, seed: int, limit: int = CALIBRATION_MAX) -> np.ndarray:
    """Indices into the train split of the calibration sample (at most ``limit``, stratified)."""
    return stratified_subset(y_train, min(limit, len(y_train)), seed)
