"""What a batch-scoring job is asked to do and what it did (`python -m serving.batch`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from serving.batch_write import FORMATS, PARQUET, PREDICTION_LOG
from trainer import cli

TF_EXAMPLE = "tf_example"


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """A batch-scoring job.

    Attributes:
      model_base_path: TF Serving's base path: `<version>/saved_model.pb` directories.
      model_version: The version to score with; None for the latest.
      data: A file or glob: CSV, Parquet or TFRecord of tf.Example.
      output: The directory to create (absent or empty).
      id_column: An input column copied to the output, or None.
      output_format: `parquet` or `prediction_log`.
      data_format: TFRecord records are `tf_example`s or `prediction_log`s
        (a request log, re-scored).
      model_name: Written into PredictionLogs' model_spec.
      beam_pipeline_args: Options for Beam (runner, workers).
    """

    model_base_path: str
    data: str
    output: str
    model_version: int | None = None
    id_column: str | None = None
    output_format: str = PARQUET
    data_format: str = TF_EXAMPLE
    model_name: str = "imbalance"
    beam_pipeline_args: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What a job did: rows in = scored + errors (a file cut short by corruption counts as one error)."""

    scored: int
    errors: int
    model_version: int
    output: str

    def summary(self) -> str:
        """The last line the command prints."""
        return f"scored {self.scored} rows, {self.errors} errors"


def parse_args(argv: Sequence[str] | None = None) -> BatchConfig:
    """The command line as a BatchConfig (argparse exits 2 on a malformed one)."""
    parser = argparse.ArgumentParser(prog="python -m serving.batch",
                                     description="Score a file of rows with a served model, on Apache Beam.")
    parser.add_argument("--model_base_path", required=True,
                        help="Directory holding <version>/ SavedModels (a run's serving_model/).")
    parser.add_argument("--model_version", type=int, default=None, help="Version to use (default: the latest).")
    parser.add_argument("--model_name", default=BatchConfig.model_name,
                        help="Model name written into PredictionLogs.")
    parser.add_argument("--data", required=True, help="CSV, Parquet or TFRecord (tf.Example) file or glob.")
    parser.add_argument("--output", required=True, help="Output directory (must be absent or empty).")
    parser.add_argument("--id-column", "--id_column", dest="id_column", default=None,
                        help="Input column copied to every output row.")
    parser.add_argument("--format", dest="output_format", choices=FORMATS, default=PARQUET,
                        help="parquet (default) or prediction_log (TFRecord of tensorflow.serving.PredictionLog).")
    parser.add_argument("--data-format", "--data_format", dest="data_format", choices=(TF_EXAMPLE, PREDICTION_LOG),
                        default=TF_EXAMPLE, help="TFRecord input: tf.Examples (default) or PredictionLogs (a request "
                                                 "log of the server, re-scored).")
    cli.add_beam_flag(parser, "--beam_pipeline_args")
    args = parser.parse_args(argv)
    return BatchConfig(model_base_path=args.model_base_path, data=args.data, output=args.output,
                       model_version=args.model_version, id_column=args.id_column,
                       output_format=args.output_format, data_format=args.data_format,
                       model_name=args.model_name,
                       beam_pipeline_args=cli.beam_args(args))
