"""`python -m train`: train a float Keras model and write the run folder's first files."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common import runfolder
from common.atomic import atomic_path, write_json, write_text
from common.errors import UsageError
from common.saved_split import write_split
from common import metrics, plots
from train.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_HIDDEN,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MODEL,
    DEFAULT_PATIENCE,
    MODEL_NAMES,
    FitConfig,
)
from train.datasets import BUILTIN_DATASETS, Dataset, load_dataset
from train.splits import (
    CALIBRATION_MAX,
    TEST_FRACTION,
    VALIDATION_FRACTION,
    Splits,
    calibration_indices,
    limit_dataset,
    make_splits,
)

if TYPE_CHECKING:  # importing these at run time would load TensorFlow for `--help`
    import keras

    from train.fit import FitResult

DESCRIPTION = f"""\
Train a small image classifier (float Keras model) and save it with its test split.

Splits (stratified, seeded by --seed): mnist5k and .npz files are split
{1 - TEST_FRACTION - VALIDATION_FRACTION:.0%} train / {VALIDATION_FRACTION:.0%} validation / \
{TEST_FRACTION:.0%} test (mnist5k: 3500 / 500 / 1000);
mnist and fashion_mnist keep their official test set and take {VALIDATION_FRACTION:.0%} of the official
training set for validation. The test split is saved once as {runfolder.TEST_SET_NPZ} and
{runfolder.CALIBRATION_SET_NPZ} holds at most {CALIBRATION_MAX} training images for int8 calibration.

A .npz dataset holds x (N,H,W or N,H,W,C), y (N integer labels 0..C-1) and optionally
labels (C class names). Pixels: integers are divided by 255, floats with a maximum above 1
are divided by 255, floats within [0, 1] are kept.
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _learning_rate(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {value}")
    return value


def _silent(_line: str) -> None:
    pass


def _print_line(line: str) -> None:
    print(line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    runfolder.add_run_argument(parser)
    parser.add_argument("--dataset", default="mnist5k", metavar="NAME|FILE.npz",
                        help=f"{', '.join(BUILTIN_DATASETS)} or a path to a .npz (default: %(default)s)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL,
                        help="dnn: Flatten-Dense(hidden)-Dense; cnn: two conv+pool blocks "
                             "(default: %(default)s)")
    parser.add_argument("--hidden", type=_positive, default=DEFAULT_HIDDEN, metavar="N",
                        help="width of the dnn hidden layer (default: %(default)s)")
    parser.add_argument("--epochs", type=_positive, default=DEFAULT_EPOCHS,
                        help="maximum epochs; early stopping usually ends sooner (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE,
                        help="default: %(default)s")
    parser.add_argument("--learning-rate", type=_learning_rate, default=DEFAULT_LEARNING_RATE,
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--patience", type=_non_negative, default=DEFAULT_PATIENCE,
                        help="epochs without a lower validation loss before stopping (default: %(default)s)")
    parser.add_argument("--seed", type=_non_negative, default=0,
                        help="seeds the splits, the weights and the shuffling (default: %(default)s)")
    parser.add_argument("--limit", type=_positive, metavar="N",
                        help="use only N stratified samples of the dataset (quick tests)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    say: Callable[[str], None] = _silent if args.quiet else _print_line
    started = time.perf_counter()
    run: Path = args.run
    if run.exists() and not run.is_dir():
        raise UsageError(f"--run {run} is a file, not a folder")

    data = load_dataset(args.dataset)
    if args.limit is not None:
        data = limit_dataset(data, args.limit, args.seed)
    splits = make_splits(data, args.seed)
    calibration = calibration_indices(splits.y_train, args.seed)
    sizes = {**splits.sizes(), "calibration": len(calibration)}
    h, w, c = data.input_shape
    say(f"dataset {data.name}: {h}x{w}x{c}, {data.num_classes} classes; "
        f"train {sizes['train']} / validation {sizes['validation']} / test {sizes['test']}")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run folder {run}: {exc.strerror or exc}") from None

    # TensorFlow loads only now: argument and dataset errors above stay fast.
    from train.fit import fit, seed_everything
    from train.models import build_model

    seed_everything(args.seed)
    model = build_model(args.model, data.input_shape, data.num_classes, hidden=args.hidden)
    say(f"model {args.model}: {model.count_params():,} parameters")
    config = FitConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                       learning_rate=args.learning_rate)
    result = fit(model, splits, config, emit=say)
    say(f"best epoch {result.best_epoch} of {result.epochs_run} (lowest val_loss, weights restored)")

    scores, test_pred = _score(model, splits)
    # The completion marker goes first, so a rerun that fails halfway never leaves new files
    # next to an old marker; then the outputs of the previous model's later stages.
    runfolder.remove_stale(run, (runfolder.TRAIN_METRICS_JSON,))
    stale = runfolder.remove_stale(run, runfolder.DOWNSTREAM_OF_TRAIN)
    if stale:
        say(f"removed {', '.join(stale)} (made from the previous model; re-run convert)")
    written = _write_run(run, model, data, splits, calibration, result, test_pred)
    wall = time.perf_counter() - started
    record = _metrics_record(args, data, sizes, model, result, scores)
    write_json(run / runfolder.TRAIN_METRICS_JSON, {**record, "wall_time_s": round(wall, 2)})
    written.append(runfolder.TRAIN_METRICS_JSON)

    say(f"test accuracy {scores['test'][1]:.2%} ({int(np.sum(test_pred == splits.y_test))}/{sizes['test']}), "
        f"validation {scores['validation'][1]:.2%}, train {scores['train'][1]:.2%}; {wall:.1f} s")
    say(f"wrote {', '.join(written)}")
    say(f"  to {run}/")
    return 0


def _score(model: keras.Model, splits: Splits) -> tuple[dict[str, tuple[float, float]], np.ndarray]:
    """(loss, accuracy) per split, and the predicted classes of the test split.

    Accuracy is counted from the predicted classes (an exact share of samples); loss comes from Keras.
    """
    from train.fit import evaluate, predict_classes

    scores: dict[str, tuple[float, float]] = {}
    predictions: dict[str, np.ndarray] = {}
    for name, (x, y) in splits.parts().items():
        loss, _ = evaluate(model, x, y)
        _, predictions[name] = predict_classes(model, x)
        scores[name] = (loss, float(np.mean(predictions[name] == y)))
    return scores, predictions["test"]


def _metrics_record(args: argparse.Namespace, data: Dataset, sizes: dict[str, int], model: keras.Model,
                    result: FitResult, scores: dict[str, tuple[float, float]]) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "dataset": args.dataset,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "labels": list(data.labels),
        "split_sizes": sizes,
        "split_rule": _split_rule(data),
        "limit": args.limit,
        "model": args.model,
        "hidden": args.hidden if args.model == "dnn" else None,
        "params": int(model.count_params()),
        "seed": args.seed,
        "epochs_max": args.epochs,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "patience": args.patience,
        "accuracy": {name: acc for name, (_, acc) in scores.items()},
        "loss": {name: loss for name, (loss, _) in scores.items()},
        "fit_time_s": round(result.wall_time_s, 2),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def _split_rule(data: Dataset) -> str:
    if data.has_official_test:
        return f"official test set; validation = stratified {VALIDATION_FRACTION:.0%} of the training set"
    train = 1 - TEST_FRACTION - VALIDATION_FRACTION
    return f"stratified {train:.0%} train / {VALIDATION_FRACTION:.0%} validation / {TEST_FRACTION:.0%} test"


def _write_run(run: Path, model: keras.Model, data: Dataset, splits: Splits, calibration: np.ndarray,
               result: FitResult, test_pred: np.ndarray) -> list[str]:
    """Every file except train_metrics.json (written last, so its presence means a complete run)."""
    with atomic_path(run / runfolder.MODEL_KERAS, suffix=".keras") as tmp:
        model.save(tmp)
    write_split(run / runfolder.TEST_SET_NPZ, splits.x_test, splits.y_test, data.labels)
    write_split(run / runfolder.CALIBRATION_SET_NPZ, splits.x_train[calibration],
                splits.y_train[calibration], data.labels)
    write_json(run / runfolder.HISTORY_JSON, {**result.history, "best_epoch": result.best_epoch,
                                             "epochs_run": result.epochs_run})
    plots.plot_history(result.history, run / runfolder.HISTORY_PNG, best_epoch=result.best_epoch,
                       title=f"{model.name} on {data.name}")
    write_text(run / runfolder.TRAIN_REPORT_TXT, metrics.report_text(splits.y_test, test_pred, data.labels))
    write_json(run / runfolder.TRAIN_REPORT_JSON, metrics.report_dict(splits.y_test, test_pred, data.labels))
    summary = metrics.classification_summary(splits.y_test, test_pred, data.labels)
    plots.plot_confusion(summary["confusion_matrix"], data.labels, run / runfolder.TRAIN_CONFUSION_PNG,
                         title=f"Keras float - test accuracy {summary['accuracy']:.2%}")
    return [runfolder.MODEL_KERAS, runfolder.TEST_SET_NPZ, runfolder.CALIBRATION_SET_NPZ,
            runfolder.HISTORY_JSON, runfolder.HISTORY_PNG, runfolder.TRAIN_REPORT_TXT,
            runfolder.TRAIN_REPORT_JSON, runfolder.TRAIN_CONFUSION_PNG]
