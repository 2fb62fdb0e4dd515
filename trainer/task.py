"""Train one class-weighted model and export it.

    python -m trainer.task --data my.csv --label is_fraud --output-dir runs/a \
        [--positive-label yes] [--epochs 20] [--loss weighted_ce] \
        [--weight-scheme balanced|other_class_share|effective_number|none] [--weight-ratio 16.1] \
        [--hparams best.json]

Without --data it trains on the embedded `sylva` dataset.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TypeVar

from trainer.config import (
    CALIBRATIONS,
    DISTRIBUTE,
    EARLY_STOPPING,
    LOSSES,
    RENAMED_WEIGHT_SCHEMES,
    SELECTIONS,
    WEIGHT_SCHEMES,
    ConfigError,
    RunConfig,
)
from trainer.startup import start_tensorflow

# Every default is RunConfig's: declared once, there.
DEFAULTS = RunConfig()


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every entry point that reads data (defaults: `RunConfig`'s)."""
    parser.add_argument("--data", default=DEFAULTS.data, help="CSV/Parquet/TFRecord path or glob, or 'sylva'/'synthetic'")
    parser.add_argument("--label", default=None, help="label column (required for your own data)")
    parser.add_argument("--positive-label", default=None, help="label value of the positive (minority) class")
    parser.add_argument("--output-dir", default=DEFAULTS.output_dir, help="the run directory")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--patience", type=int, default=DEFAULTS.patience, help="early-stopping patience (epochs)")
    parser.add_argument("--early-stopping", choices=EARLY_STOPPING, default=DEFAULTS.early_stopping,
                        help="validation metric early stopping watches")
    parser.add_argument("--threshold-objective", default=DEFAULTS.threshold_objective,
                        help="recall_at_precision:P | precision_at_recall:R | f1 | fbeta:B | cost:FN:FP")
    parser.add_argument("--cost-fn", type=float, default=None,
                        help="cost of a missed positive: with --cost-fp, the threshold minimizes the expected cost "
                             "on held-out data (the same as --threshold-objective cost:FN:FP; default 1 each)")
    parser.add_argument("--cost-fp", type=float, default=None, help="cost of a false alarm (see --cost-fn)")
    parser.add_argument("--calibration", choices=CALIBRATIONS, default=DEFAULTS.calibration)
    parser.add_argument("--synthetic-rows", type=int, nargs=2, default=DEFAULTS.synthetic_rows,
                        metavar=("NEGATIVES", "POSITIVES"))
    parser.add_argument("--beam-pipeline-args", default=" ".join(DEFAULTS.beam_pipeline_args),
                        help="options for Apache Beam, one string")
    parser.add_argument("--verbose", type=int, default=DEFAULTS.verbose, choices=(0, 1, 2),
                        help="Keras verbosity (0 silent, 2 one line per epoch)")
    parser.add_argument("--tensorflow-logs", action="store_true",
                        help="show TensorFlow's native start-up lines (oneDNN, CUDA probing), hidden by default")
    parser.add_argument("--distribute", choices=DISTRIBUTE, default=DEFAULTS.distribute,
                        help="tf.distribute strategy for training (mirrored: all local devices; multi_worker: "
                             "one process per worker, cluster from TF_CONFIG, docs/scaling.md)")
    parser.add_argument("--selection", choices=SELECTIONS, default=DEFAULTS.selection,
                        help="score and choose models on the validation split, or by k-fold cross-validation over "
                             "train + validation (auto: cross-validation below 50 validation positives)")
    parser.add_argument("--cv-folds", type=int, default=DEFAULTS.cv_folds, help="k for cross-validation")


def common_values(args: argparse.Namespace) -> dict:
    return {
        "data": args.data, "label": args.label, "positive_label": args.positive_label,
        "output_dir": args.output_dir, "seed": args.seed, "epochs": args.epochs, "patience": args.patience,
        "early_stopping": args.early_stopping,
        "threshold_objective": threshold_objective(args), "calibration": args.calibration,
        "synthetic_rows": tuple(args.synthetic_rows),
        "beam_pipeline_args": tuple(shlex.split(args.beam_pipeline_args)), "verbose": args.verbose,
        "distribute": args.distribute, "selection": args.selection, "cv_folds": args.cv_folds,
    }


def threshold_objective(args: argparse.Namespace) -> str:
    """`--threshold-objective`, or `cost:FN:FP` when either cost flag is given."""
    if args.cost_fn is None and args.cost_fp is None:
        return args.threshold_objective
    return f"cost:{1.0 if args.cost_fn is None else args.cost_fn:g}:{1.0 if args.cost_fp is None else args.cost_fp:g}"


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--loss", choices=LOSSES, default=None)
    parser.add_argument("--weight-scheme", choices=WEIGHT_SCHEMES + tuple(RENAMED_WEIGHT_SCHEMES), default=None,
                        metavar="{" + ",".join(WEIGHT_SCHEMES) + "}")
    parser.add_argument("--weight-ratio", type=float, default=None, help="explicit w1/w0")
    parser.add_argument("--hparams", default=None, help="best_hyperparameters.json from tuning")
    args = parser.parse_args(argv)
    if args.weight_scheme in RENAMED_WEIGHT_SCHEMES:
        new = RENAMED_WEIGHT_SCHEMES[args.weight_scheme]
        print(f"warning: --weight-scheme {args.weight_scheme} is deprecated; use --weight-scheme {new}",
              file=sys.stderr)
    return RunConfig.from_dict({
        **common_values(args), "loss": args.loss, "weight_scheme": args.weight_scheme,
        "weight_ratio": args.weight_ratio, "hparams": args.hparams,
    })


def main(argv: list[str] | None = None) -> int:
    config = reporting_user_errors(lambda: parse_args(argv))
    if config is None:
        return 2
    start_tensorflow(show_native_logs=tensorflow_logs_requested(argv))
    from trainer.pipeline import describe_model, headline, train_and_export

    summary = reporting_user_errors(lambda: train_and_export(config))
    if summary is None:
        return 2
    print(f"exported {summary['version_dir']}")
    print(f"weighted model ({describe_model(summary)}): {headline(summary)}")
    return 0


T = TypeVar("T")


def tensorflow_logs_requested(argv: list[str] | None) -> bool:
    """`--tensorflow-logs` among `argv` (the flag is declared with the data arguments, for `--help`)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tensorflow-logs", action="store_true")
    return parser.parse_known_args(argv)[0].tensorflow_logs


def reporting_user_errors(work: Callable[[], T]) -> T | None:
    """Runs `work`; an error the user can act on becomes one `error:` line on stderr and None.

    Anything else is a bug and keeps its traceback (see `user_error_message`).
    """
    try:
        return work()
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return None


def user_error_message(error: BaseException, expected: tuple[type, ...] = ()) -> str | None:
    """The one line an entry point prints for an error the user can act on.

    Bad configuration or data, OS errors, TensorFlow's file-system errors
    (e.g. TensorBoard's writer or keras-tuner's checkpoints on a full or
    read-only disk) and `expected` give a message; anything else is a bug
    (None), which the caller re-raises.
    """
    from trainer.ingest import DataError

    if isinstance(error, (ConfigError, DataError, OSError, *expected)):
        return str(error)
    storage = storage_error_or_none(error)
    return None if storage is None else str(storage)


def storage_error_or_none(error: Exception) -> OSError | None:
    """TensorFlow's file-system errors as one-line OSErrors (None for anything else)."""
    if "tensorflow" not in sys.modules:  # only TensorFlow's own file system needs translating
        return None
    from trainer.export import storage_error

    return storage_error(error)


if __name__ == "__main__":
    sys.exit(main())
