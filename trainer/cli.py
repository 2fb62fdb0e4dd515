"""What every entry point does alike: its shared flags, a quiet start, and one line for a user's error.

The entry points (`trainer.task`, `tuning.task`, `evaluation.task`,
`evaluation.drift`, `serving.batch`, `serving.server`) parse their own flags
and call one function; this module holds what they share, once:

- `add_run_flags` / `config_from_args`: `RunConfig`'s flags of some groups
  (declared on its fields, `trainer.flags`) plus `--cost-fn/--cost-fp`;
- `add_tensorflow_logs_flag`, `add_beam_flag`: the two flags every
  TensorFlow or Beam entry point offers, declared here only;
- `start`: TensorFlow imported with its native start-up lines held back, and
  the progress display;
- `run_entry_point`: an error the user can act on (bad configuration or
  data, any `OSError` such as a full or read-only disk, TensorFlow's
  file-system errors, and the entry point's own `expected` types) becomes one
  `error:` line on stderr and exit status 2; anything else is a bug and keeps
  its traceback.

Importing this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable
from typing import TypeVar

from trainer.config import ConfigError, RunConfig
from trainer.flags import add_flags, values_from_args

USAGE_ERROR = 2  # exit status of a bad argument, bad input or a storage error
TITLES = {"data": "data", "training": "training and the decision threshold", "weighting": "class weighting",
          "tuning": "the search"}
T = TypeVar("T")


def add_run_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """RunConfig's flags of `groups`, plus `--cost-fn/--cost-fp` and `--tensorflow-logs`."""
    added = add_flags(parser, RunConfig, groups, TITLES)
    training = added.get("training", parser)
    training.add_argument("--cost-fn", type=float, default=None,
                          help="cost of a missed positive: with --cost-fp, the threshold minimizes the expected "
                               "cost on held-out data (the same as --threshold-objective cost:FN:FP; default 1 each)")
    training.add_argument("--cost-fp", type=float, default=None, help="cost of a false alarm (see --cost-fn)")
    add_tensorflow_logs_flag(parser)


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


def add_tensorflow_logs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensorflow-logs", action="store_true",
                        help="show TensorFlow's native start-up lines (oneDNN, CUDA probing), hidden by default")


def add_beam_flag(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """`--beam-pipeline-args` (and `aliases`), with RunConfig's help text; `beam_args` reads it back."""
    spec = {f.name: f for f in dataclasses.fields(RunConfig)}["beam_pipeline_args"].metadata["flag"]
    parser.add_argument("--beam-pipeline-args", *aliases, dest="beam_pipeline_args", default="",
                        help=spec["help"] + ", e.g. '--direct_num_workers=2 --direct_running_mode=multi_processing' "
                                            "or '--runner=DataflowRunner ...'")


def beam_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The parsed `--beam-pipeline-args`, split as a shell splits words (as RunConfig's field is)."""
    return tuple(shlex.split(args.beam_pipeline_args))


def start(show_native_logs: bool, progress_display: bool = True) -> None:
    """Imports TensorFlow quietly (`trainer.startup`) and shows progress on the terminal."""
    from trainer import progress
    from trainer.startup import start_tensorflow

    start_tensorflow(show_native_logs=show_native_logs)
    if progress_display:
        progress.use_display(progress.terminal_display())


def run_entry_point(work: Callable[[], int], expected: tuple[type, ...] = ()) -> int:
    """Runs an entry point's body; returns its exit status, or `USAGE_ERROR` after one `error:` line."""
    status = reporting_user_errors(work, expected)
    return USAGE_ERROR if status is None else status


def reporting_user_errors(work: Callable[[], T], expected: tuple[type, ...] = ()) -> T | None:
    """Runs `work`; an error the user can act on becomes one `error:` line on stderr and None.

    Anything else is a bug and keeps its traceback (see `user_error_message`).
    """
    try:
        return work()
    except Exception as error:
        message = user_error_message(error, expected)
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
        return str(error) or type(error).__name__
    storage = storage_error_or_none(error)
    return None if storage is None else str(storage)


def storage_error_or_none(error: Exception) -> OSError | None:
    """TensorFlow's file-system errors as one-line OSErrors (None for anything else)."""
    if "tensorflow" not in sys.modules:  # only TensorFlow's own file system needs translating
        return None
    from trainer.export import storage_error

    return storage_error(error)
