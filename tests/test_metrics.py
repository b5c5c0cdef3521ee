"""train.metrics against the course's worked classification-report example (dogs and cats)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import DataError
from train.metrics import classification_summary, confusion, report_dict, report_text

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
