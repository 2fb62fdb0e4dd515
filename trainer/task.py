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

from trainer import cli
from trainer.config import RunConfig

TRAINING_GROUPS = ("data", "training", "weighting")  # RunConfig's flag groups this entry point offers


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0])
    cli.add_run_flags(parser, TRAINING_GROUPS)
    args = parser.parse_args(argv)
    return cli.config_from_args(args, TRAINING_GROUPS), args


def main(argv: list[str] | None = None) -> int:
    return cli.run_entry_point(lambda: _train(argv))


def _train(argv: list[str] | None) -> int:
    config, args = parse_args(argv)
    cli.start(show_native_logs=args.tensorflow_logs)
    from trainer.run_storage import run_on

    printed, where = run_on(config, _train_and_describe)  # gs://, s3://: on a local copy, then uploaded
    print(where(printed), end="")
    return 0


def _train_and_describe(config: RunConfig) -> str:
    """Trains and exports on a local run directory; returns the lines to print."""
    from trainer.description import describe_model, headline
    from trainer.pipeline import train_and_export

    summary = train_and_export(config)
    return f"exported {summary.version_dir}\nweighted model ({describe_model(summary)}): {headline(summary)}\n"


if __name__ == "__main__":
    sys.exit(main())
