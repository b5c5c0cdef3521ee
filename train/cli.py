"""`python -m train`: train a float Keras model and write the run folder's first files."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common import metrics, plots, runfolder, runlock
from common.commit import StagedCommit, sha256_file
from common.errors import DataError, UsageError
from common.limits import check_keras_file, check_npz_file
from common.provenance import TRAIN, split_digest
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
from train.datasets import (
    BUILTIN_DATASETS,
    INPUT_KINDS,
    MAX_RANGE_SPREAD,
    Dataset,
    load_dataset,
    range_spread,
)
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
Train a small classifier (float Keras model) on images, tabular features or time series and
save it with its test split.

Splits (stratified, seeded by --seed): mnist5k and .npz files are split
{1 - TEST_FRACTION - VALIDATION_FRACTION:.0%} train / {VALIDATION_FRACTION:.0%} validation / \
{TEST_FRACTION:.0%} test (mnist5k: 3500 / 500 / 1000);
mnist and fashion_mnist keep their official test set and take {VALIDATION_FRACTION:.0%} of the official
training set for validation. The test split is saved once as {runfolder.TEST_SET_NPZ} and
{runfolder.CALIBRATION_SET_NPZ} holds at most {CALIBRATION_MAX} training images for int8 calibration.

A .npz dataset holds x (N, ...), y (N integer labels 0..C-1) and optionally labels (C class
names). Images (N,H,W or N,H,W,C): integers are divided by 255, floats with a maximum above 1
are divided by 255, floats within [0, 1] are kept. Signals (features N,F or sequences N,T or
N,T,C) are kept as they are and standardised inside the model with training-split statistics.
--model FILE.keras trains a model of your own architecture (it must take the data's sample
shape and end in a softmax over the classes); with --epochs 0 it is kept as given.
"""


# Upper bounds for options whose larger values can only fail, and fail late (after the fit or
# in TensorFlow's allocator):
# a dnn wider than this cannot fit the board: 784 inputs x 4096 = 3.2 MB of int8 weights, the
# nano33ble has 1 MB of flash;
MAX_HIDDEN = 4096
# no dataset here has more samples than this, and larger values overflow TensorFlow's int32 sizes;
MAX_BATCH_SIZE = 1 << 20
MAX_EPOCHS = 100_000


def _positive(text: str, most: int | None = None) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if most is not None and value > most:
        raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
    return value


def _at_most(most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        return _positive(text, most)

    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _epochs(text: str) -> int:
    value = _non_negative(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_EPOCHS}, got {value}")
    return value


def _model_choice(text: str) -> str:
    if text in MODEL_NAMES or text.endswith(".keras"):
        return text
    raise argparse.ArgumentTypeError(f"choose from {', '.join(MODEL_NAMES)} or a path to a .keras file, "
                                     f"got '{text}'")


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
    parser.add_argument("--model", type=_model_choice, default=DEFAULT_MODEL, metavar="NAME|FILE.keras",
                        help="dnn: Flatten-Dense(hidden)-Dense (any input); cnn: two conv+pool blocks "
                             "(images); cnn1d: two Conv1D+pool blocks (sequences); or a .keras file of "
                             "your own architecture (default: %(default)s)")
    parser.add_argument("--input", choices=INPUT_KINDS, default="auto",
                        help="what x holds: image (pixels, scaled by the 255 rule), signal (features "
                             "or sequences, standardised inside the model) or auto (default: %(default)s)")
    parser.add_argument("--hidden", type=_at_most(MAX_HIDDEN), default=DEFAULT_HIDDEN, metavar="N",
                        help="width of the dnn hidden layer (default: %(default)s)")
    parser.add_argument("--epochs", type=_epochs, default=DEFAULT_EPOCHS,
                        help="maximum epochs; early stopping usually ends sooner; 0 keeps a --model "
                             "FILE.keras as given (default: %(default)s)")
    parser.add_argument("--batch-size", type=_at_most(MAX_BATCH_SIZE), default=DEFAULT_BATCH_SIZE,
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
    if args.dataset.endswith(".npz"):
        check_npz_file(Path(args.dataset), "dataset")
    if args.model.endswith(".keras"):
        check_keras_file(Path(args.model))  # a zip bomb is refused before Keras unpacks it

    if args.epochs == 0 and not args.model.endswith(".keras"):
        raise UsageError("--epochs 0 keeps a model as given: pass --model FILE.keras")
    data = load_dataset(args.dataset, args.input)
    if args.model == "cnn" and data.kind != "image":
        raise UsageError(f"--model cnn takes images; {args.dataset} holds signals of shape "
                         f"{data.input_shape} (use dnn, or cnn1d for sequences)")
    if args.limit is not None:
        data = limit_dataset(data, args.limit, args.seed)
    splits = make_splits(data, args.seed)
    calibration = calibration_indices(splits.y_train, args.seed)
    sizes = {**splits.sizes(), "calibration": len(calibration)}
    what = "images" if data.kind == "image" else "features" if len(data.input_shape) == 1 else "sequences"
    say(f"dataset {data.name}: {what} {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes; "
        f"train {sizes['train']} / validation {sizes['validation']} / test {sizes['test']}")
    spread = range_spread(data.x) if data.kind == "signal" else 1.0
    if spread > MAX_RANGE_SPREAD:
        say(f"warning: feature ranges differ by {spread:,.0f}x; the int8 input has one scale for all "
            "features, so the narrowest lose resolution: rescale them before saving")
    # One writer per run folder; a folder that cannot be written is refused before the fit.
    with runlock.hold(run, "python -m train", create=True):
        runfolder.refuse_directories(run, runfolder.TRAIN_OUTPUTS)
        return _train(args, run, data, splits, calibration, sizes, say, started)


def _train(args: argparse.Namespace, run: Path, data: Dataset, splits: Splits, calibration: np.ndarray,
           sizes: dict[str, int], say: Callable[[str], None], started: float) -> int:
    # TensorFlow loads only now: argument and dataset errors above stay fast.
    from train.fit import fit, kept_as_given, seed_everything
    from train.models import build_model, load_user_model

    seed_everything(args.seed)
    if args.model.endswith(".keras"):
        model = load_user_model(Path(args.model), data.input_shape, data.num_classes)
    else:
        # Signals are standardised inside the model, so test and calibration splits stay raw.
        model = build_model(args.model, data.input_shape, data.num_classes, hidden=args.hidden,
                            standardise=splits.x_train if data.kind == "signal" else None)
    say(f"model {model.name}: {model.count_params():,} parameters")
    config = FitConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                       learning_rate=args.learning_rate)
    if args.epochs == 0:
        result = kept_as_given(model, config)
        say("--epochs 0: the model is kept as given, not trained")
    else:
        result = fit(model, splits, config, emit=say)
        say(f"best epoch {result.best_epoch} of {result.epochs_run} (lowest val_loss, weights restored)")

    scores, test_pred = _score(model, splits)
    # Every file is staged first; the commit then removes the previous model's later-stage
    # outputs and train's record, renames the files into place and writes the record last.
    with StagedCommit(run, TRAIN) as staged:
        written, trained = _write_run(staged, run, model, data, splits, calibration, result, test_pred)
        wall = time.perf_counter() - started
        record = _metrics_record(args, data, sizes, model, result, scores)
        staged.write(run / runfolder.TRAIN_METRICS_JSON,
                     _json_bytes({**record, "model_sha256": trained, "wall_time_s": round(wall, 2)}))
        written.append(runfolder.TRAIN_METRICS_JSON)
        made_from = {"dataset": args.dataset, "seed": args.seed, "limit": args.limit}
        try:
            identity = {"made_from": made_from, "test_set": split_digest(splits.x_test, splits.y_test)}
            stale = staged.commit(identity, stale=runfolder.DOWNSTREAM_OF_TRAIN)
        except OSError as exc:
            raise DataError(f"cannot write {exc.filename or run}: {exc.strerror or exc}") from None
    if stale:
        say(f"removed {', '.join(stale)} (made from the previous model; re-run convert)")

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
        "input_kind": data.kind,
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


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def _split_bytes(x: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> bytes:
    """A saved split (common/saved_split.py's format) as .npz bytes."""
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.asarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64),
                        labels=np.asarray(list(labels), dtype=np.str_))
    return buf.getvalue()


def _write_run(staged: StagedCommit, run: Path, model: keras.Model, data: Dataset, splits: Splits,
               calibration: np.ndarray, result: FitResult, test_pred: np.ndarray) -> tuple[list[str], str]:
    """Stage every file except train_metrics.json (nothing is visible before the commit); the
    names, and the SHA-256 of the model."""
    with staged.path(run / runfolder.MODEL_KERAS, suffix=".keras") as tmp:
        model.save(tmp)
    # Names the model these curves and metrics belong to (convert records the same digest).
    model_sha256 = sha256_file(tmp)
    staged.write(run / runfolder.TEST_SET_NPZ, _split_bytes(splits.x_test, splits.y_test, data.labels))
    staged.write(run / runfolder.CALIBRATION_SET_NPZ,
                 _split_bytes(splits.x_train[calibration], splits.y_train[calibration], data.labels))
    staged.write(run / runfolder.HISTORY_JSON, _json_bytes({**result.history, "best_epoch": result.best_epoch,
                                                            "epochs_run": result.epochs_run,
                                                            "model_sha256": model_sha256}))
    with staged.path(run / runfolder.HISTORY_PNG) as tmp:
        plots.plot_history(result.history, tmp, best_epoch=result.best_epoch,
                           title=f"{model.name} on {data.name}")
    staged.write(run / runfolder.TRAIN_REPORT_TXT,
                 metrics.report_text(splits.y_test, test_pred, data.labels).encode("utf-8"))
    staged.write(run / runfolder.TRAIN_REPORT_JSON,
                 _json_bytes(metrics.report_dict(splits.y_test, test_pred, data.labels)))
    summary = metrics.classification_summary(splits.y_test, test_pred, data.labels)
    with staged.path(run / runfolder.TRAIN_CONFUSION_PNG) as tmp:
        plots.plot_confusion(summary["confusion_matrix"], data.labels, tmp,
                             title=f"Keras float - test accuracy {summary['accuracy']:.2%}")
    return [runfolder.MODEL_KERAS, runfolder.TEST_SET_NPZ, runfolder.CALIBRATION_SET_NPZ,
            runfolder.HISTORY_JSON, runfolder.HISTORY_PNG, runfolder.TRAIN_REPORT_TXT,
            runfolder.TRAIN_REPORT_JSON, runfolder.TRAIN_CONFUSION_PNG], model_sha256
