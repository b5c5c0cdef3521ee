"""Classification metrics (scikit-learn) shared by `train` and the host-side comparison (`compare`).

Light on purpose: no TensorFlow import, so reporting tools can use it on saved outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from common.errors import DataError


def _checked(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
             labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if len(t) != len(p):
        raise DataError(f"{len(t)} true labels but {len(p)} predictions")
    if len(t) == 0:
        raise DataError("no samples to score")
    for name, arr in (("true label", t), ("prediction", p)):
        if arr.min() < 0 or arr.max() >= len(labels):
            raise DataError(f"{name} out of range: classes are 0..{len(labels) - 1}, "
                            f"found {arr.min()}..{arr.max()}")
    return t, p


def report_text(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                labels: Sequence[str], digits: int = 2) -> str:
    """scikit-learn's classification report as text, one row per class name in ``labels``."""
    t, p = _checked(y_true, y_pred, labels)
    return str(classification_report(t, p, labels=list(range(len(labels))), target_names=list(labels),
                                      digits=digits, zero_division=0))


def report_dict(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                labels: Sequence[str]) -> dict[str, Any]:
    """scikit-learn's classification report as a dict (``output_dict=True``), JSON-ready."""
    t, p = _checked(y_true, y_pred, labels)
    report = classification_report(t, p, labels=list(range(len(labels))), target_names=list(labels),
                                   output_dict=True, zero_division=0)
    plain: dict[str, Any] = _plain(report)
    return plain


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
              labels: Sequence[str]) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    t, p = _checked(y_true, y_pred, labels)
    return np.asarray(confusion_matrix(t, p, labels=list(range(len(labels)))))


def classification_summary(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 / support, averages and the confusion matrix.

    ``per_class`` is a list in class-index order (class names may repeat digits or contain any
    text, so they are values, not keys).
    """
    t, p = _checked(y_true, y_pred, labels)
    report = report_dict(t, p, labels)
    per_class = [{"label": name, "precision": report[name]["precision"], "recall": report[name]["recall"],
                  "f1": report[name]["f1-score"], "support": int(report[name]["support"])}
                 for name in labels]
    averages = {key.replace(" avg", ""): {"precision": report[key]["precision"],
                                          "recall": report[key]["recall"], "f1": report[key]["f1-score"]}
                for key in ("macro avg", "weighted avg")}
    return {
        "num_samples": len(t),
        "accuracy": float(np.mean(t == p)),
        "labels": list(labels),
        "per_class": per_class,
        "macro_avg": averages["macro"],
        "weighted_avg": averages["weighted"],
        "confusion_matrix": confusion(t, p, labels).tolist(),
    }


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so the result can go straight to json."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def output_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How far ``other`` is from ``reference`` (both (N, outputs), in the same real units): the
    figures ST's model validation reports for outputs that are not class scores.

    rmse and mae over every value; cosine similarity of the flattened arrays (1 = same direction;
    1 as well when both are all zero); relative L2 error = ||reference - other|| / ||reference||
    (inf when the reference is all zero and the other is not).
    """
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(other, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"cannot compare {a.size} values with {b.size}")
    if a.size == 0:
        raise DataError("no values to compare")
    d = a - b
    na, nb, nd = float(np.linalg.norm(a)), float(np.linalg.norm(b)), float(np.linalg.norm(d))
    if na == 0.0 and nb == 0.0:
        cosine = 1.0
    elif na == 0.0 or nb == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a, b) / (na * nb))
    rel_l2 = nd / na if na > 0 else (0.0 if nd == 0.0 else float("inf"))
    return {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d))),
            "cosine": cosine, "rel_l2": rel_l2}
