"""Dataset loading, validation and the stratified splits of `train` (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import DataError
from common.saved_split import read_split, write_split
from train.datasets import MIN_SAMPLES_PER_CLASS, Dataset, load_dataset, load_npz
from train.splits import (
    CALIBRATION_MAX,
    calibration_indices,
    limit_dataset,
    make_splits,
    stratified_subset,
    three_way_indices,
    two_way_indices,
)


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def _labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def _npz(tmp_path: Path, **arrays: object) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- loading valid files

def test_npz_rank3_uint8_gets_channel_axis_and_is_scaled(tmp_path: Path) -> None:
    x = _images(60)
    data = load_npz(_npz(tmp_path, x=x, y=_labels(60, 3)))
    assert data.x.shape == (60, 8, 8, 1)
    assert data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[..., 0], x / 255.0, rtol=1e-6)
    assert data.y.dtype == np.int64
    assert data.labels == ("0", "1", "2")
    assert data.input_shape == (8, 8, 1)
    assert not data.has_official_test


def test_npz_float_pixels_above_one_are_scaled_and_unit_range_kept(tmp_path: Path) -> None:
    x255 = _images(40).astype(np.float64)
    scaled = load_npz(_npz(tmp_path, x=x255, y=_labels(40, 2)))
    np.testing.assert_allclose(scaled.x[..., 0], x255 / 255.0, rtol=1e-6)
    unit = x255 / 255.0
    kept = load_npz(_npz(tmp_path, x=unit[..., np.newaxis], y=_labels(40, 2)))
    np.testing.assert_allclose(kept.x, unit[..., np.newaxis], rtol=1e-6)


def test_npz_class_names_and_integral_float_labels(tmp_path: Path) -> None:
    data = load_npz(_npz(tmp_path, x=_images(40), y=_labels(40, 2).astype(np.float32),
                         labels=np.array(["cat", "dog"])))
    assert data.labels == ("cat", "dog")
    assert data.num_classes == 2
    assert data.y.tolist()[:4] == [0, 1, 0, 1]


def test_bytes_class_names_are_decoded_as_utf8(tmp_path: Path) -> None:
    names = np.array(["caf\u00e9".encode(), b"dog"])  # dtype S: what h5py and numpy.char give
    data = load_npz(_npz(tmp_path, x=_images(40), y=_labels(40, 2), labels=names))
    assert data.labels == ("caf\u00e9", "dog")


def test_class_names_at_the_length_limit_and_with_dollars_are_kept(tmp_path: Path) -> None:
    names = np.array(["$\\foo$", "d" * 64])
    assert load_npz(_npz(tmp_path, x=_images(40), y=_labels(40, 2), labels=names)).labels == tuple(names)


def test_confusion_plot_draws_mathtext_like_names_as_typed(tmp_path: Path) -> None:
    """"$\\foo$" is an invalid mathtext command: parsed as math, drawing would raise."""
    from common.plots import plot_confusion

    path = tmp_path / "cm.png"
    plot_confusion(np.eye(3, dtype=int), ["$\\foo$", "a$b", "$x^2$"], path, title="$\\bar$")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tabular_and_sequences_are_signals_kept_raw(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = _labels(40, 2)
    # (N, F) features with negative values and (N, T, C) accelerometer-like windows: no pixel
    # rule, values exactly as given (standardisation happens inside the model).
    for x in (rng.normal(size=(40, 6)) * 100, rng.normal(size=(40, 64, 3)) + 500,
              rng.normal(size=(40, 30, 1, 40))):
        data = load_npz(_npz(tmp_path, x=x, y=y))
        assert data.kind == "signal" and data.unit == "samples"
        assert data.input_shape == x.shape[1:]
        np.testing.assert_array_equal(data.x, x.astype(np.float32))


def test_auto_tells_images_from_signals_and_input_kind_overrides(tmp_path: Path) -> None:
    y = _labels(40, 2)
    assert load_npz(_npz(tmp_path, x=_images(40), y=y)).kind == "image"
    # 128 x 3 is a three-channel sequence, even with values in the pixel range.
    assert load_npz(_npz(tmp_path, x=np.ones((40, 128, 3)), y=y)).kind == "signal"
    # Values above 255 are not pixels...
    wide = _images(40).astype(np.int32) * 2
    assert load_npz(_npz(tmp_path, x=wide, y=y)).kind == "signal"
    # ...unless the user says they are images, and then the pixel rule speaks of pixels.
    with pytest.raises(DataError, match=r"pixel values must lie in \[0, 255\]"):
        load_npz(_npz(tmp_path, x=wide, y=y), "image")
    forced = load_npz(_npz(tmp_path, x=_images(40), y=y), "signal")
    assert forced.kind == "signal" and forced.input_shape == (8, 8) and forced.x.max() > 1
    with pytest.raises(DataError, match="40 samples but y has 30 labels"):
        load_npz(_npz(tmp_path, x=np.ones((40, 5)), y=y[:30]))


# ---------------------------------------------------------------- rejecting bad files

def _bad_cases() -> dict[str, tuple[dict[str, object], str]]:
    x, y = _images(40), _labels(40, 2)
    nan_x = x.astype(np.float32)
    nan_x[3, 2, 2] = np.nan
    few = np.array([0] * 35 + [1] * (MIN_SAMPLES_PER_CLASS - 5))
    return {
        "missing y": ({"x": x}, "missing key(s) y"),
        "missing x": ({"y": y}, "missing key(s) x"),
        "rank 1": ({"x": x[:, 0, 0], "y": y}, "must have shape (N, features...)"),
        "N mismatch": ({"x": x, "y": y[:30]}, "40 images but y has 30 labels"),
        "y not 1-D": ({"x": x, "y": y.reshape(40, 1)}, "1-D array of class indices"),
        "fractional labels": ({"x": x, "y": y + 0.5}, "non-integer"),
        "string labels": ({"x": x, "y": y.astype(str)}, "integer class labels"),
        "negative label": ({"x": x, "y": y - 1}, "negative labels"),
        "label beyond names": ({"x": x, "y": _labels(40, 3), "labels": np.array(["a", "b"])},
                               "label 2 out of range"),
        "too many names": ({"x": x, "y": y, "labels": np.array(["a", "b", "c"])},
                           "labels has 3 names but y uses classes 0..1"),
        "duplicate names": ({"x": x, "y": y, "labels": np.array(["a", "a"])}, "duplicate"),
        "one class": ({"x": x, "y": np.zeros(40, dtype=int)}, "only one class"),
        "NaN pixels": ({"x": nan_x, "y": y}, "NaN or infinite"),
        "too few in a class": ({"x": x, "y": few}, f"class 1 has {MIN_SAMPLES_PER_CLASS - 5} samples"),
        "empty class": ({"x": x, "y": y * 2}, "class 1 has 0 samples"),
        "huge label": ({"x": x, "y": y * 10**10}, "at most 10000 classes"),
        "uint64 label that wraps in int64": ({"x": x, "y": y.astype(np.uint64) * np.uint64(2**63)},
                                             "at most 10000 classes"),
        "float label beyond the class bound": ({"x": x, "y": y * 1e300}, "at most 10000 classes"),
        **{f"reserved name {name!r}": ({"x": x, "y": y, "labels": np.array(["cat", name])}, "reserved")
           for name in ("accuracy", "macro avg", "weighted avg", "micro avg")},
        "empty name": ({"x": x, "y": y, "labels": np.array(["cat", ""])}, "class name 1 is empty"),
        "blank name": ({"x": x, "y": y, "labels": np.array([" ", "dog"])}, "class name 0 is empty"),
        "newline in a name": ({"x": x, "y": y, "labels": np.array(["c\nat", "dog"])}, "control characters"),
        "ANSI escape in a name": ({"x": x, "y": y, "labels": np.array(["\x1b[31mred", "dog"])},
                                  "control characters"),
        "name too long": ({"x": x, "y": y, "labels": np.array(["cat", "d" * 65])}, "65 characters"),
        "lone surrogate": ({"x": x, "y": y, "labels": np.array(["cat", "\udcff"])}, "not valid Unicode"),
        "bytes names not UTF-8": ({"x": x, "y": y, "labels": np.array([b"cat", b"\xff"])}, "not UTF-8"),
        "duplicate bytes names": ({"x": x, "y": y, "labels": np.array([b"cat", b"cat"])}, "duplicate"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_npz_gives_one_line_data_error(tmp_path: Path, case: str) -> None:
    arrays, fragment = _bad_cases()[case]
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError) as err:
        load_npz(path)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message
    assert str(path) in message


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(str(tmp_path / "missing.npz"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_npz(garbage)
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, x=_images(40), y=_labels(40, 2))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match=r"not a valid \.npz"):
        load_npz(truncated)


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    names = np.array(["cat", None], dtype=object)
    path = _npz(tmp_path, x=_images(40), y=_labels(40, 2), labels=names)
    with pytest.raises(DataError, match="holds Python objects"):
        load_npz(path)


def test_unknown_dataset_name() -> None:
    with pytest.raises(DataError, match="unknown dataset 'emnist'"):
        load_dataset("emnist")


def test_keras_download_failure_is_one_actionable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras  # pinned in pyproject.toml: its absence is a broken install, not a skip

    def offline() -> None:
        raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None -- no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    assert str(err.value).startswith("could not download mnist: URL fetch failure")
    assert "--dataset mnist5k" in str(err.value)


def test_keras_dataset_keeps_its_official_test_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras  # pinned in pyproject.toml: its absence is a broken install, not a skip
    x_train, y_train = _images(200, size=28, seed=1), _labels(200, 10).astype(np.uint8)
    x_test, y_test = _images(50, size=28, seed=2), _labels(50, 10).astype(np.uint8)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data",
                        lambda: ((x_train, y_train), (x_test, y_test)))
    data = load_dataset("fashion_mnist")
    assert data.has_official_test and data.labels[0] == "T-shirt/top" and data.num_classes == 10
    splits = make_splits(data, seed=0)
    np.testing.assert_allclose(splits.x_test[..., 0], x_test / 255.0, rtol=1e-6)
    assert splits.y_test.tolist() == y_test.tolist()
    assert splits.sizes() == {"train": 180, "validation": 20, "test": 50}
    assert np.bincount(splits.y_val).tolist() == [2] * 10


# ---------------------------------------------------------------- mnist5k and the splits

@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


def test_mnist5k_shape_range_and_balance(mnist5k: Dataset) -> None:
    assert mnist5k.x.shape == (5000, 28, 28, 1)
    assert mnist5k.x.dtype == np.float32
    assert mnist5k.x.min() >= 0.0 and mnist5k.x.max() == pytest.approx(1.0)
    assert np.bincount(mnist5k.y).tolist() == [500] * 10


def _assert_partition(parts: tuple[np.ndarray, ...], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert len(np.unique(joined)) == n, "a sample index appears in two splits"


def test_three_way_split_is_disjoint_stratified_and_seeded(mnist5k: Dataset) -> None:
    y = mnist5k.y  # sorted by class, the case that breaks an unshuffled split
    train, val, test = three_way_indices(y, seed=0)
    _assert_partition((train, val, test), len(y))
    assert (len(train), len(val), len(test)) == (3500, 500, 1000)
    for idx, share in ((train, 0.7), (val, 0.1), (test, 0.2)):
        assert np.bincount(y[idx], minlength=10).tolist() == [round(500 * share)] * 10
    again = three_way_indices(y, seed=0)
    other = three_way_indices(y, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(np.sort(test), np.sort(other[2]))
    # Shuffled order: even the first 50 test images mix the classes.
    assert len(np.unique(y[test[:50]])) >= 5


def test_make_splits_on_mnist5k(mnist5k: Dataset) -> None:
    splits = make_splits(mnist5k, seed=0)
    assert splits.sizes() == {"train": 3500, "validation": 500, "test": 1000}
    assert splits.x_test.shape == (1000, 28, 28, 1)
    # The images follow their labels: every test image is one of the dataset's images of that class.
    first = splits.x_test[0]
    matches = np.flatnonzero((mnist5k.x == first).all(axis=(1, 2, 3)))
    assert splits.y_test[0] in mnist5k.y[matches]


def test_two_way_split_for_official_test_sets() -> None:
    y = np.repeat(np.arange(4), 250)
    train, val = two_way_indices(y, seed=3)
    _assert_partition((train, val), len(y))
    assert len(val) == 100
    assert np.bincount(y[val]).tolist() == [25] * 4


def test_limit_is_stratified_and_shrinks_official_test_in_proportion() -> None:
    y, y_test = np.repeat(np.arange(5), 120), np.repeat(np.arange(5), 40)
    data = Dataset("synthetic", np.zeros((600, 4, 4, 1), np.float32), y, tuple("abcde"),
                   np.zeros((200, 4, 4, 1), np.float32), y_test)
    small = limit_dataset(data, 400, seed=0)
    assert len(small.y) == 300 and small.y_test is not None and len(small.y_test) == 100
    assert np.bincount(small.y).tolist() == [60] * 5
    assert np.bincount(small.y_test).tolist() == [20] * 5
    with pytest.raises(DataError, match="--limit must be positive"):
        limit_dataset(data, 0, seed=0)
    no_test = Dataset("synthetic", data.x, data.y, data.labels)
    with pytest.raises(DataError, match="--limit 49 is too small"):
        limit_dataset(no_test, 49, seed=0)
    assert len(limit_dataset(no_test, 50, seed=0).y) == 50


def test_stratified_subset_keeps_proportions_and_rejects_too_small() -> None:
    y = np.array([0] * 300 + [1] * 100)
    idx = stratified_subset(y, 40, seed=0)
    assert len(np.unique(idx)) == 40
    assert np.bincount(y[idx]).tolist() == [30, 10]
    with pytest.raises(DataError, match="cannot draw 1 samples"):
        stratified_subset(y, 1, seed=0)


def test_calibration_sample_is_a_capped_stratified_part_of_train() -> None:
    y_train = np.repeat(np.arange(10), 350)
    idx = calibration_indices(y_train, seed=0)
    assert len(idx) == CALIBRATION_MAX
    assert len(np.unique(idx)) == CALIBRATION_MAX and idx.max() < len(y_train)
    assert np.bincount(y_train[idx]).tolist() == [200] * 10
    assert len(calibration_indices(y_train[:500], seed=0)) == 500


# ---------------------------------------------------------------- saved splits

def test_saved_split_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((12, 8, 8, 1), dtype=np.float32)
    y = np.arange(12) % 3
    write_split(tmp_path / "s.npz", x, y, ["a", "b", "c"])
    with np.load(tmp_path / "s.npz") as raw:
        assert raw["x"].dtype == np.float32 and raw["y"].dtype == np.int64
        assert raw["labels"].dtype.kind == "U"
    back = read_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.x, x)
    np.testing.assert_array_equal(back.y, y)
    assert back.labels == ("a", "b", "c")
    assert not list(tmp_path.glob(".s.npz*")), "temporary file left behind"


def test_saved_split_of_any_rank_with_optional_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for shape in ((5, 16), (5, 30, 3), (5, 30, 1, 40)):
        x = rng.normal(size=shape).astype(np.float32)
        write_split(tmp_path / "s.npz", x)
        back = read_split(tmp_path / "s.npz")
        np.testing.assert_array_equal(back.x, x)
        assert back.y is None and back.labels is None
        assert back.class_names(3) == ("0", "1", "2")
    write_split(tmp_path / "s.npz", np.zeros((3, 4), np.float32), np.array([0, 2, 1]))
    back = read_split(tmp_path / "s.npz")
    assert back.y is not None and back.y.tolist() == [0, 2, 1] and back.labels is None


def test_read_split_rejects_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.npz not found"):
        read_split(tmp_path / "absent.npz")
    np.savez(tmp_path / "nox.npz", y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="missing key x"):
        read_split(tmp_path / "nox.npz")
    np.savez(tmp_path / "rank1.npz", x=np.zeros(2, np.float32))
    with pytest.raises(DataError, match=r"shape \(N, \.\.\.\)"):
        read_split(tmp_path / "rank1.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 4, 4, 1), np.float32), y=np.zeros(0, np.int64),
             labels=np.array(["a", "b"]))
    with pytest.raises(DataError, match="holds no samples"):
        read_split(tmp_path / "empty.npz")
    np.savez(tmp_path / "range.npz", x=np.zeros((2, 4, 4, 1), np.float32), y=np.array([0, 5]),
             labels=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        read_split(tmp_path / "range.npz")


def test_range_spread_compares_feature_ranges() -> None:
    from train.datasets import range_spread

    x = np.array([[0.0, 0.0, 5.0], [1000.0, 2.0, 5.0]])  # ranges 1000 and 2; the constant is ignored
    assert range_spread(x) == 500.0
    seq = np.zeros((4, 10, 2))
    seq[:, :, 0] = np.arange(10)  # range 9
    seq[:, :, 1] = np.arange(10) * 3  # range 27
    assert range_spread(seq) == 3.0
    assert range_spread(np.ones((3, 4))) == 1.0
