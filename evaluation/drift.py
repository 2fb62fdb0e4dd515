"""`python -m evaluation.drift`: has what is served moved away from what the model learned from?

    python -m evaluation.drift --run RUN --data 'scored/*.csv' --output DIR
    python -m evaluation.drift --reference 'week1/*.parquet' --data 'week2/*.parquet' --output DIR
    python -m evaluation.drift --run RUN --logs 'logs/requests-*' --output DIR

With `--run` alone the reference is the served version's training
statistics (`RUN/data/train_statistics.pb`, kept by the data step; computed
from its training split for a run made before) and the comparison is TFDV's
*skew* (training vs serving); with `--reference` (data files, or a
DatasetFeatureStatisticsList `.pb`/`.pbtxt`) it is TFDV's *drift* (previous
vs current). With a run the served model also scores both sides (the
reference side is the served execution's validation and test splits when the
reference is its training statistics) and its score distribution, its
predicted positive rate and the label rate are compared too
(`evaluation.score_drift`). `--logs` reads request logs (PredictionLog
TFRecords: the server's request logger, `serving.batch`'s PredictionLog
output) instead of data files: the rows are the logged requests and the
current scores the logged responses (`evaluation.drift_logs`).

Writes into DIR: `statistics.pb` (and `.pbtxt`) of the data,
`reference_statistics.pb` (and `.pbtxt`), `anomalies.pb` and
`anomalies.pbtxt` (a tensorflow_metadata Anomalies with `drift_skew_info`
for every comparison), `schema.pbtxt` (the comparators used: edit and pass
back with `--schema`) and `drift.json` (per feature, every measurement with n
and status). With `--run`, also a record under the run
(`RUN/monitoring/drift-<time>.json`), and the run's monitoring page is drawn
again (`evaluation.monitoring`). RUN may be on object storage: the command
runs on a local copy of the served version and its execution, and uploads
the record and the page (`trainer.run_storage.on_run`).

Exit status: 1 when a threshold is breached (one line per breach), 0
otherwise; 2 on bad input (one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from evaluation import skew
from evaluation.drift_data import Reading, compute_statistics, infer_kinds, statistics_of
from evaluation.monitoring_records import feature_measurements
from evaluation.score_drift import label_rate
from trainer import cli
from trainer.atomic import write_json_atomically, write_text_atomically
from trainer.data.ingest import DataError, sanitize_name
from trainer.data.split import SPLITS
from trainer.data.statistics import load_statistics, save_statistics, to_proto
from trainer.layout import DATA_DIR, TRAIN_STATISTICS, execution_dir, read_push_record, resolve_run, split_pattern
from trainer.run_copy import SERVED
from trainer.run_storage import on_run

STATISTICS_SUFFIXES = (".pb", ".pbtxt")
TRAIN, VALIDATION, TEST = SPLITS


@dataclasses.dataclass(frozen=True)
class DriftOptions:
    """What `evaluation.drift` compares (see the module docstring)."""

    data: str | None
    output: str
    run: str | None = None
    reference: str | None = None
    schema: str | None = None
    label: str | None = None
    min_rows: int = skew.MIN_ROWS
    score: bool = True
    logs: str | None = None  # request logs (PredictionLog TFRecords) instead of `data`
    beam_pipeline_args: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DriftResult:
    mode: str  # skew.SKEW or skew.DRIFT
    comparisons: tuple[skew.Comparison, ...]
    version: int | None  # the served version that scored the rows (None: no model compared)
    scores: tuple | None = None  # (reference, current) score summaries (`score_drift.summarize`), when scored

    @property
    def breaches(self) -> tuple[skew.Comparison, ...]:
        return tuple(c for c in self.comparisons if c.breached)


@dataclasses.dataclass(frozen=True)
class _Served:
    version: int
    path: str
    threshold: float
    data_dir: str  # the served execution's prepared data


def _served(run: str) -> _Served:
    from trainer.data.prepare import SOURCE_FILE
    from tuning.push import served_model

    if not os.path.isdir(run):
        raise DataError(f"--run {run}: no such run directory")
    model = served_model(run)
    if model is None:
        raise DataError(f"--run {run}: nothing is served (no version under serving_model/)")
    recorded = read_push_record(model.path).get("execution")
    execution = execution_dir(run, str(recorded)) if recorded else resolve_run(run)
    data_dir = os.path.join(execution, DATA_DIR)
    if not os.path.exists(os.path.join(data_dir, SOURCE_FILE)):
        raise DataError(f"--run {run}: the served version's data directory {data_dir} is missing")
    return _Served(model.version, model.path, model.threshold, data_dir)


def _run_reading(data_dir: str) -> tuple[Reading, str]:
    """(how to read raw files for this run, the label's raw positive text)."""
    from trainer.data.prepare import SOURCE_FILE
    from trainer.data.schema import load_schema

    schema = load_schema(data_dir)
    with open(os.path.join(data_dir, SOURCE_FILE)) as handle:
        source = json.load(handle)
    kinds = {feature.name: feature.kind for feature in schema.features}
    return Reading(kinds, schema.label, str(source.get("positive_value", "1"))), schema.label


def _is_statistics(path: str) -> bool:
    """A statistics file (`.pb`, `.pbtxt`), not data files."""
    return path.endswith(STATISTICS_SUFFIXES)


def _statistics(pattern: str, reading: Reading, options: DriftOptions) -> statistics_pb2.DatasetFeatureStatisticsList:
    if _is_statistics(pattern):
        if not os.path.isfile(pattern):
            raise DataError(f"{pattern}: no such statistics file")
        return load_statistics(pattern)
    stats = compute_statistics(pattern, reading, options.beam_pipeline_args)
    order = list(reading.kinds) + ([reading.label] if reading.label in stats.kinds else [])
    return to_proto(stats, os.path.basename(pattern), order)


def _training_statistics(served: _Served, reading: Reading, options: DriftOptions
                         ) -> statistics_pb2.DatasetFeatureStatisticsList:
    path = os.path.join(served.data_dir, TRAIN_STATISTICS)
    if os.path.exists(path):
        return load_statistics(path)
    print(f"note: {path} is missing (a run made before it was kept); computing it from the training split",
          file=sys.stderr)
    tfrecords = dataclasses.replace(reading, positive_value="1")
    proto = _statistics(split_pattern(os.path.dirname(served.data_dir), TRAIN), tfrecords, options)
    proto.datasets[0].name = "train"
    return proto


def _load_schema(path: str | None) -> schema_pb2.Schema | None:
    if path is None:
        return None
    try:
        with open(path) as handle:
            return text_format.Parse(handle.read(), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as error:
        raise DataError(f"--schema {path}: {error}") from None


def run_drift(options: DriftOptions) -> DriftResult:
    """Computes the statistics, compares them, writes the outputs into `options.output`.

    Raises:
      DataError: bad input (missing files or run, unreadable data or statistics).
    """
    served = _served(options.run) if options.run else None
    if served is not None:
        reading, label = _run_reading(served.data_dir)
    else:
        label = sanitize_name(options.label) if options.label else None
        kinds_from = options.data if _is_statistics(options.reference) or options.logs else options.reference
        reading = Reading(infer_kinds(kinds_from, label), label, "1")
    mode = skew.DRIFT if options.reference else skew.SKEW
    try:
        reference = (_statistics(options.reference, reading, options) if options.reference
                     else _training_statistics(served, reading, options))
        current = (_log_statistics(options.logs, reading, served.threshold, options) if options.logs
                   else _statistics(options.data, reading, options))
    except ValueError as error:
        raise DataError(str(error)) from None
    schema = skew.comparators_schema(reference.datasets[0], _load_schema(options.schema), mode,
                                     skip=(label,) if label else ())
    comparisons = skew.compare(reference.datasets[0], current.datasets[0], schema, mode, options.min_rows)
    if label is not None:
        rate = label_rate(reference.datasets[0], current.datasets[0], label)
        comparisons += [rate] if rate is not None else []
    summaries = None
    if served is not None and options.score:
        scored, summaries = _score_comparisons(served, reading, options, current.datasets[0])
        comparisons += scored
    result = DriftResult(mode, tuple(comparisons), served.version if served and options.score else None, summaries)
    _write(options.output, reference, current, schema, result)
    if served is not None:
        _record(options, served, result)
    return result


def _record(options: DriftOptions, served: _Served, result: DriftResult) -> None:
    """The run's record of this comparison, and its monitoring page drawn again (`evaluation.monitoring`)."""
    from evaluation.monitoring import record_and_redraw
    from evaluation.monitoring_records import feature_measurements, score_histogram
    from trainer.layout import DRIFT_RECORD

    payload = {"mode": result.mode, "served_version": served.version, "threshold": served.threshold,
               "data": options.logs or options.data, "output": os.path.abspath(options.output),
               "reference": options.reference or f"training statistics of version {served.version}",
               "features": feature_measurements(result.comparisons)}
    if result.scores is not None:  # the scores' reference: as `_score_comparisons` chose it
        held_out = "the served execution's validation and test rows"
        payload["scores"] = {"reference": score_histogram(result.scores[0]),
                             "current": score_histogram(result.scores[1]),
                             "reference_rows": options.reference if options.reference and not _is_statistics(
                                 options.reference) else held_out}
    record_and_redraw(options.run, DRIFT_RECORD, payload)


def _score_comparisons(served: _Served, reading: Reading, options: DriftOptions,
                       current: statistics_pb2.DatasetFeatureStatistics) -> tuple[list[skew.Comparison], tuple]:
    """The score comparisons, and the (reference, current) summaries they compared."""
    from evaluation.drift_logs import FLAGGED, SCORE
    from evaluation.score_drift import ServedScorer, compare_scores, logged_summary, summarize

    scorer = ServedScorer(served.path)
    if options.reference and not _is_statistics(options.reference):
        reference = scorer.score([options.reference], reading)
    else:  # the served execution's held-out rows: TFRecords whose label is 0/1
        held_out = [split_pattern(os.path.dirname(served.data_dir), split) for split in (VALIDATION, TEST)]
        reference = scorer.score(held_out, dataclasses.replace(reading, positive_value="1"))
    if options.logs:  # the scores the server logged with each request
        now = logged_summary(current, SCORE, FLAGGED)
    else:
        now = summarize(scorer.score([options.data], reading), served.threshold)
    before = summarize(reference, served.threshold)
    return compare_scores(before, now, options.min_rows), (before, now)


def _log_statistics(pattern: str, reading: Reading, threshold: float, options: DriftOptions
                    ) -> statistics_pb2.DatasetFeatureStatisticsList:
    from evaluation.drift_logs import FLAGGED, SCORE, log_files, read_log_columns

    stats = statistics_of(log_files(pattern), functools.partial(read_log_columns, reading=reading,
                                                                threshold=threshold), pattern,
                          options.beam_pipeline_args)
    for name, kind in reading.kinds.items():
        stats.kinds.setdefault(name, kind)
    return to_proto(stats, os.path.basename(pattern), [*reading.kinds, SCORE, FLAGGED])


def _write(output: str, reference, current, schema: schema_pb2.Schema, result: DriftResult) -> None:
    os.makedirs(output, exist_ok=True)
    save_statistics(current, os.path.join(output, "statistics.pb"))
    save_statistics(reference, os.path.join(output, "reference_statistics.pb"))
    anomalies = skew.to_anomalies(list(result.comparisons), result.mode)
    with open(os.path.join(output, "anomalies.pb.staging"), "wb") as handle:
        handle.write(anomalies.SerializeToString())
    os.replace(os.path.join(output, "anomalies.pb.staging"), os.path.join(output, "anomalies.pb"))
    write_text_atomically(os.path.join(output, "anomalies.pbtxt"), text_format.MessageToString(anomalies))
    write_text_atomically(os.path.join(output, "schema.pbtxt"), text_format.MessageToString(schema))
    write_json_atomically(os.path.join(output, "drift.json"), {
        "mode": result.mode, "served_version": result.version, "features": feature_measurements(result.comparisons)})


def line(comparison: skew.Comparison) -> str:
    """The one line of a breached (or unjudged) comparison."""
    metric = skew.Measurement.Type.Name(comparison.type)
    if comparison.value is None:
        return f"{comparison.name}: {comparison.status}"
    detail = f"; {comparison.detail}" if comparison.detail else ""
    return (f"{comparison.name}: {metric} {comparison.value:.4g} > {comparison.threshold:.4g} "
            f"(n {comparison.reference_n} vs {comparison.current_n}{detail})")


def parse_args(argv: list[str] | None) -> DriftOptions:
    parser = argparse.ArgumentParser(prog="python -m evaluation.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trainer.task or tuning.task run directory: its served version")
    parser.add_argument("--reference", help="data FILE|GLOB, or statistics .pb/.pbtxt (default: the run's "
                                            "training statistics)")
    parser.add_argument("--data", help="the data to judge: FILE|GLOB (CSV, Parquet, TFRecord)")
    parser.add_argument("--logs", help="request logs instead of --data: PREFIX* of PredictionLog TFRecord files "
                                       "(the server's request logger, serving.batch's PredictionLog output); "
                                       "needs --run")
    parser.add_argument("--output", required=True, help="directory for statistics, anomalies and drift.json")
    parser.add_argument("--schema", help="a tensorflow_metadata Schema (text) with skew/drift comparators")
    parser.add_argument("--label", help="the label column, without --run")
    parser.add_argument("--min-rows", type=int, default=skew.MIN_ROWS,
                        help=f"values on each side below which a distance is not judged (default {skew.MIN_ROWS})")
    parser.add_argument("--no-score", action="store_true", help="do not load the served model")
    cli.add_beam_flag(parser)
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.logs):
        parser.exit(2, "error: one of --data or --logs is required\n")
    if args.logs and not args.run:
        parser.exit(2, "error: --logs needs --run (the served model's features and threshold)\n")
    if not (args.run or args.reference):
        parser.exit(2, "error: one of --run or --reference is required\n")
    return DriftOptions(args.data, args.output, args.run, args.reference, args.schema, args.label, args.min_rows,
                        not args.no_score, args.logs, cli.beam_args(args))


def main(argv: list[str] | None = None) -> int:
    return cli.run_entry_point(lambda: _drift(argv))


def _drift(argv: list[str] | None) -> int:
    options = parse_args(argv)
    if options.run and options.score:  # the served model will be loaded: TensorFlow's start-up lines held back
        cli.start(show_native_logs=False, progress_display=False)
    if options.run:  # on object storage: on a local copy of the served version and its data, record uploaded
        result, _ = on_run(options.run, lambda run: run_drift(dataclasses.replace(options, run=run)), SERVED,
                           options.beam_pipeline_args)
    else:
        result = run_drift(options)
    for comparison in result.breaches:
        print(line(comparison))
    unjudged = sum(c.status == skew.TOO_FEW for c in result.comparisons)
    print(f"{result.mode}: {len(result.comparisons)} comparisons, {len(result.breaches)} breached, "
          f"{unjudged} {skew.TOO_FEW}; {options.output}", file=sys.stderr)
    return 1 if result.breaches else 0


if __name__ == "__main__":
    sys.exit(main())
