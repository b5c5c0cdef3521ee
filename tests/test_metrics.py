"""common.metrics against the course's worked classification-report example (dogs and cats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataError
from common.metrics import classification_summary, confusion, report_dict, report_text

# Course example: 1 = cat, 0 = dog; target_names follow the class index.
ACTUAL = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
PREDICTION = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1]
NAMES = ["Dogs", "Cats"]
# What the course shows, to two decimals.
EXPECTED = {"Dogs": (0.60, 0.75, 0.67), "Cats": (0.86, 0.75, 0.80)}


def _row(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.strip().startswith(name))


def test_report_text_matches_course_example() -> None:
    text = report_text(ACTUAL, PREDICTION, NAMES)
    for name, (precision, recall, f1) in EXPECTED.items():
        row = _row(text, name)
        assert [float(v) for v in row[1:4]] == [precision, recall, f1]
    assert float(_row(text, "accuracy")[1]) == 0.75
    assert int(_row(text, "Dogs")[4]) == 4 and int(_row(text, "Cats")[4]) == 8


def test_report_dict_and_summary_match_course_example() -> None:
    report = report_dict(ACTUAL, PREDICTION, NAMES)
    json.dumps(report)  # plain Python numbers only
    for name, (precision, recall, f1) in EXPECTED.items():
        got = report[name]
        assert (round(got["precision"], 2), round(got["recall"], 2), round(got["f1-score"], 2)) == \
            (precision, recall, f1)
    assert report["accuracy"] == pytest.approx(0.75)

    summary = classification_summary(ACTUAL, PREDICTION, NAMES)
    json.dumps(summary)
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["num_samples"] == 12
    assert [row["label"] for row in summary["per_class"]] == NAMES
    assert [round(row["precision"], 2) for row in summary["per_class"]] == [0.60, 0.86]
    assert [row["support"] for row in summary["per_class"]] == [4, 8]
    # Rows are true classes: 3 dogs right, 1 dog called a cat; 2 cats called dogs, 6 right.
    assert summary["confusion_matrix"] == [[3, 1], [2, 6]]


def test_confusion_counts_every_class_even_unpredicted_ones() -> None:
    cm = confusion(np.array([0, 1, 2, 2]), np.array([0, 0, 0, 2]), ["a", "b", "c"])
    assert cm.tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    report = report_dict([0, 1, 2, 2], [0, 0, 0, 2], ["a", "b", "c"])
    assert report["b"]["precision"] == 0.0  # never predicted: 0, not a warning


@pytest.mark.parametrize(("y_true", "y_pred", "fragment"), [
    ([0, 1, 1], [0, 1], "3 true labels but 2 predictions"),
    ([], [], "no samples"),
    ([0, 2], [0, 1], "true label out of range"),
    ([0, 1], [0, -1], "prediction out of range"),
])
def test_bad_inputs_are_data_errors(y_true: list[int], y_pred: list[int], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        classification_summary(y_true, y_pred, ["a", "b"])


def test_compare_with_very_long_class_names_prints_no_warnings(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """tight_layout cannot fit 200-character tick labels and warns; the report must stay quiet."""
    import warnings

    from common import runfolder
    from common.saved_split import write_split
    from host_tools import report_plots
    from host_tools.compare import compare

    draw_accuracy = report_plots.plot_accuracy

    def warning_plot(*args: object) -> None:  # what matplotlib does when labels cannot fit
        warnings.warn("Tight layout not applied.", UserWarning, stacklevel=2)
        draw_accuracy(*args)

    monkeypatch.setattr(report_plots, "plot_accuracy", warning_plot)

    rng = np.random.default_rng(0)
    labels = [f"class {i} " + "with a very long descriptive name " * 6 for i in range(3)]
    y = np.repeat(np.arange(3), 10)
    write_split(tmp_path / runfolder.TEST_SET_NPZ, rng.random((30, 8, 8, 1), dtype=np.float32), y, labels)
    outputs = rng.integers(-128, 128, size=(30, 3), dtype=np.int8)
    np.savez(tmp_path / runfolder.DESKTOP_OUTPUTS_NPZ, litert_int8=outputs, tflm_int8=outputs)
    io = {"input": {"shape": [1, 8, 8, 1]}, "output": {"shape": [1, 3], "scale": 1 / 256, "zero_point": -128}}
    (tmp_path / runfolder.CONVERT_REPORT_JSON).write_text(json.dumps({"io": io}) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = compare(tmp_path)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""
    assert all(path.is_file() for path in written)


def test_confusion_plot_with_very_long_class_names_prints_no_warnings(tmp_path: Path) -> None:
    import warnings

    from common.plots import plot_confusion

    labels = [f"class {i} " + "with a very long descriptive name " * 6 for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion(np.eye(3, dtype=int), labels, tmp_path / "cm.png")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "cm.png").is_file()
