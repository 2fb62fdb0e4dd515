"""Train one class-weighted model and export it.

    python -m trainer.task --data my.csv --label is_fraud --output-dir runs/a \
        [--positive-label yes] [--epochs 20] [--loss weighted_ce] \
        [--weight-scheme balanced|other_class_share|effective_number|none] [--weight-ratio 16.1] \
        [--hparams best.json]

Without --data it trains on the embedded `sylva` dataset.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from trainer import progress
from trainer.config import ConfigError, RunConfig
from trainer.flags import add_flags, values_from_args
from trainer.startup import start_tensorflow

# Training flags: fields of RunConfig (help, default and choices are declared there, once).
TRAINING_GROUPS = ("data", "training", "weighting")
TITLES = {"data": "data", "training": "training and the decision threshold", "weighting": "class weighting",
          "tuning": "the search"}


def add_run_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """RunConfig's flags of `groups`, plus the entry points' own (`--cost-fn/--cost-fp`, `--tensorflow-logs`)."""
    added = add_flags(parser, RunConfig, groups, TITLES)
    training = added.get("training", parser)
    training.add_argument("--cost-fn", type=float, default=None,
                          help="cost of a missed positive: with --cost-fp, the threshold minimizes the expected "
                               "cost on held-out data (the same as --threshold-objective cost:FN:FP; default 1 each)")
    training.add_argument("--cost-fp", type=float, default=None, help="cost of a false alarm (see --cost-fn)")
    parser.add_argument("--tensorflow-logs", action="store_true",
                        help="show TensorFlow's native start-up lines (oneDNN, CUDA probing), hidden by default")


def config_from_args(args: argparse.Namespace, groups: tuple[str, ...]) -> RunConfig:
    """The RunConfig of the parsed flags of `groups` (other fields keep their defaults)."""
    values = values_from_args(args, RunConfig, groups)
    values["threshold_objective"] = threshold_objective(args)
    return RunConfig.from_dict(values)


def threshold_objective(args: argparse.Namespace) -> str:
    """`--threshold-objective`, or `cost:FN:FP` when either cost flag is given."""
    if args.cost_fn is None and args.cost_fp is None:
        return args.threshold_objective
    return f"cost:{1.0 if args.cost_fn is None else args.cost_fn:g}:{1.0 if args.cost_fp is None else args.cost_fp:g}"


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0])
    add_run_flags(parser, TRAINING_GROUPS)
    return config_from_args(parser.parse_args(argv), TRAINING_GROUPS)


def main(argv: list[str] | None = None) -> int:
    config = reporting_user_errors(lambda: parse_args(argv))
    if config is None:
        return 2
    start_tensorflow(show_native_logs=tensorflow_logs_requested(argv))
    progress.use_display(progress.terminal_display())
    from trainer.description import describe_model, headline
    from trainer.pipeline import train_and_export

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
    from trainer.data.ingest import DataError

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
