"""Live evaluation on late labels: the served model's logged predictions, joined by id with labels that came later.

    python -m evaluation.live --run RUN --predictions 'scored/predictions-*.parquet' --labels labels.csv \\
        --id-column id --output DIR
    python -m evaluation.task --run RUN --logs 'logs/requests-*' --labels labels.csv --id-column id --output DIR

Predictions come from `serving.batch`'s Parquet output (`--predictions`: the
id column and `probability`) or from request logs (`--logs`: PredictionLog
files; the id is a feature of each logged request, the score its response).
Labels are a CSV or Parquet file with the id column and the run's label
column (`--label` for another name), read as the data step reads labels (the
run's positive value is class 1). Rows join by id (text): predictions without
a label yet and labels without a prediction are counted, not evaluated; an id
seen twice keeps its last prediction.

The joined rows are evaluated by TFMA over materialized predictions (no
model call for them): PR-AUC, and precision and recall at the served
threshold, with TFMA's jackknife 95% intervals. The pushed execution's test
figures are TFMA's on its test split in the same pass (the served model
scores it), so both sides use one estimator: `run.json`'s test PR-AUC is
scikit-learn's average precision, which differs from TFMA's interpolated
PR-AUC by about 0.02 on 330 rows, enough to raise false alerts. An alert (exit 1) needs all of: at least
`MIN_POSITIVES` labelled positives, and the *upper* bound of the live
interval below the pushed figure by more than `--tolerance` (PR-AUC or
recall at the operating point): a shortfall the live sample cannot explain
by chance. Writes `DIR/live.json` and TFMA's output under `DIR/tfma/`, and a
record under the run (`RUN/monitoring/live-<time>.json`), after which the
run's monitoring page is drawn again (`evaluation.monitoring`). RUN may be
on object storage: the command runs on a local copy of the served version
and its execution, and uploads the record and the page
(`trainer.run_storage.on_run`).
Exit 0 otherwise, 2 on bad input (one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys

import numpy as np

from trainer import cli
from trainer.atomic import write_json_atomically
from trainer.data.ingest import DataError
from trainer.layout import read_push_record
from trainer.run_copy import SERVED
from trainer.run_storage import on_run

MIN_POSITIVES = 20
EXPECTED = (KeyError,)  # the user's errors besides bad input: a column the joined files lack, named in its message
TOLERANCE = 0.02
COMPARED = ("pr_auc", "recall")  # live metric names = the pushed test figures' names in run.json


@dataclasses.dataclass(frozen=True)
class LiveOptions:
    run: str
    labels: str
    id_column: str
    output: str
    predictions: str | None = None
    logs: str | None = None
    label: str | None = None
    tolerance: float = TOLERANCE
    min_positives: int = MIN_POSITIVES
    beam_pipeline_args: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Joined:
    labels: np.ndarray  # int64 0/1
    scores: np.ndarray  # float64
    unmatched_predictions: int
    unmatched_labels: int
    duplicate_predictions: int


def _files(pattern: str, what: str) -> list[str]:
    paths = sorted(p for p in glob.glob(pattern if any(c in pattern for c in "*?[") else pattern + "*")
                   if not os.path.basename(p).startswith("."))
    if not paths:
        raise DataError(f"{what} {pattern}: no file matches")
    return paths


def _table(path: str):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.endswith(".parquet"):
            return pq.read_table(path)
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except Exception as error:  # pyarrow's own errors: one line
        raise DataError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def _ids(column) -> list[str | None]:
    """Ids as text, as the batch scorer writes them (`7`, not `7.0`)."""
    values = column.to_pylist()
    return [None if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
            for v in values]


def read_predictions(pattern: str, id_column: str) -> tuple[dict[str, float], int]:
    """(id -> probability, ids seen more than once) from `serving.batch`'s Parquet (or CSV) output."""
    scores, duplicates = {}, 0
    for path in _files(pattern, "--predictions"):
        table = _table(path)
        for name in (id_column, "probability"):
            if name not in table.column_names:
                raise DataError(f"{path} has no column {name!r}; columns are: {', '.join(table.column_names)}")
        for key, score in zip(_ids(table[id_column]), table["probability"].to_pylist(), strict=True):
            if key is not None and score is not None:
                duplicates += key in scores
                scores[key] = float(score)
    return scores, duplicates


def read_logged_predictions(pattern: str, id_column: str) -> tuple[dict[str, float], int]:
    """(id -> logged score, ids seen more than once) from PredictionLog files; the id is a request feature."""
    from evaluation.drift_logs import log_files, log_rows
    from trainer.data.beam_files import tfrecord_records

    scores, duplicates = {}, 0
    for path in log_files(pattern):
        for record in tfrecord_records(path):
            for row, score in log_rows(record):
                key = row.get(id_column)
                if key is not None and not np.isnan(score):
                    key = str(int(key)) if isinstance(key, float) and key.is_integer() else str(key)
                    duplicates += key in scores
                    scores[key] = score
    return scores, duplicates


def read_labels(path: str, id_column: str, label: str, positive_value: str) -> dict[str, int]:
    """id -> 0/1 from a CSV or Parquet file; rows without a label are left out."""
    from trainer.data import beam_values

    table = _table(path)
    for name in (id_column, label):
        if name not in table.column_names:
            raise DataError(f"{path} has no column {name!r}; columns are: {', '.join(table.column_names)}")
    codes, texts = beam_values.label_codes(table[label])
    classes = np.array([int(text == positive_value) for text in texts] + [-1])[codes]
    return {key: int(value) for key, value in zip(_ids(table[id_column]), classes, strict=True)
            if key is not None and value >= 0}


def join(predictions: dict[str, float], labels: dict[str, int], duplicates: int = 0) -> Joined:
    """The rows with both a prediction and a label, and what is unmatched on either side."""
    matched = sorted(set(predictions) & set(labels))
    return Joined(np.array([labels[k] for k in matched], np.int64), np.array([predictions[k] for k in matched]),
                  len(predictions) - len(matched), len(labels) - len(matched), duplicates)


def _served(run: str):
    """(the served version, its pushed model's test figures in run.json, its execution's data source)."""
    from evaluation.drift import _served as served_of
    from evaluation.run_files import RUN_KEYS
    from trainer.data.prepare import SOURCE_FILE
    from trainer.summary import read_run

    served = served_of(run)
    model = read_push_record(served.path).get("model", "candidate")
    section = read_run(os.path.dirname(served.data_dir)).model(RUN_KEYS.get(model, "weighted"))
    figures = section.test.to_json() if section is not None and section.test is not None else {}
    with open(os.path.join(served.data_dir, SOURCE_FILE)) as handle:
        source = json.load(handle)
    return served, figures, source


LIVE, PUSHED_TEST = "live", "pushed_test"  # the two groups TFMA evaluates, as slices of one pass


def _eval_config(threshold: float):
    from tensorflow_model_analysis.proto import config_pb2

    spec = config_pb2.MetricsSpec()
    spec.metrics.add(class_name="ExampleCount")
    spec.metrics.add(class_name="AUCPrecisionRecall", config=json.dumps({"name": "pr_auc", "num_thresholds": 10000}))
    for name in ("Precision", "Recall"):
        spec.metrics.add(class_name=name, config=json.dumps({"thresholds": [threshold]}))
    config = config_pb2.EvalConfig(model_specs=[config_pb2.ModelSpec(label_key="label", prediction_key="prediction")],
                                   metrics_specs=[spec], slicing_specs=[config_pb2.SlicingSpec(feature_keys=["group"])])
    config.options.compute_confidence_intervals.value = True
    config.options.confidence_intervals.method = config_pb2.ConfidenceIntervalOptions.JACKKNIFE
    return config


def tfma_metrics(groups: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, output: str,
                 beam_pipeline_args=()) -> dict[str, dict[str, dict]]:
    """TFMA over materialized predictions, one slice per group of (labels, scores).

    Returns {group: {metric: {"value", "lower", "upper"}}} (95% jackknife
    intervals). As `tfma.analyze_raw_data` runs it, on the package's
    in-process runner.
    """
    import apache_beam as beam
    import pandas as pd
    import pyarrow as pa
    import tensorflow_model_analysis as tfma
    from tfx_bsl.arrow import table_util

    from trainer.beam_runner import make_pipeline

    frame = pd.concat([pd.DataFrame({"label": labels, "prediction": scores, "group": name})
                       for name, (labels, scores) in groups.items()], ignore_index=True)
    batch = table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(frame))
    with make_pipeline(beam_pipeline_args) as pipeline:
        _ = (pipeline | "Rows" >> beam.Create([batch])
             | "TFMA" >> tfma.ExtractEvaluateAndWriteResults(eval_config=_eval_config(threshold), output_path=output))
    result = {}
    for slice_key, metrics in tfma.load_eval_result(output).slicing_metrics:
        group = dict(slice_key).get("group")
        group = group.decode() if isinstance(group, bytes) else group
        result[group] = {name: _value(value) for name, value in metrics[""][""].items()}
    return result


def _value(value: dict) -> dict:
    bounded = value.get("boundedValue")
    if bounded is None:
        return {"value": value.get("doubleValue", 0.0)}
    return {"value": bounded.get("value", 0.0), "lower": bounded.get("lowerBound", 0.0),
            "upper": bounded.get("upperBound", 0.0)}


def pushed_test(served, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of the served execution's test split, scored by the served model."""
    from evaluation.drift import _run_reading
    from evaluation.drift_data import ranges_of, read_columns
    from evaluation.score_drift import ServedScorer
    from trainer.data.split import SPLITS
    from trainer.layout import split_pattern

    reading = dataclasses.replace(_run_reading(data_dir)[0], positive_value="1")  # the split's 0/1 label
    pattern = split_pattern(os.path.dirname(data_dir), SPLITS[-1])
    labels = [columns.numeric[reading.label] for part in ranges_of(pattern) for columns in read_columns(part, reading)]
    return np.concatenate(labels).astype(np.int64), ServedScorer(served.path).score([pattern], reading)


def alerts(metrics: dict[str, dict], pushed: dict, positives: int, tolerance: float,
           min_positives: int = MIN_POSITIVES) -> list[str]:
    """One line per compared metric whose live upper bound is below the pushed figure less the tolerance."""
    if positives < min_positives:
        return []
    lines = []
    for name in COMPARED:
        live, figure = metrics.get(name), pushed.get(name)
        if live is None or figure is None or "upper" not in live:
            continue
        if live["upper"] < figure - tolerance:
            lines.append(f"{name}: live {live['value']:.4f} (95% interval {live['lower']:.4f}-{live['upper']:.4f}, "
                         f"{positives} positives) below the pushed {figure:.4f} less {tolerance}")
    return lines


def run_live(options: LiveOptions) -> dict:
    """Joins, evaluates the live rows and the pushed test split in one TFMA pass, compares; writes `live.json`."""
    served, recorded, source = _served(options.run)
    label = options.label or source["label"]
    if options.logs:
        predictions, duplicates = read_logged_predictions(options.logs, options.id_column)
    else:
        predictions, duplicates = read_predictions(options.predictions, options.id_column)
    labels = read_labels(options.labels, options.id_column, label, str(source.get("positive_value", "1")))
    joined = join(predictions, labels, duplicates)
    positives = int(joined.labels.sum())
    if joined.labels.size == 0 or positives in (0, joined.labels.size):
        raise DataError(f"{joined.labels.size} predictions have a label, {positives} of them positive: "
                        "both classes are needed to evaluate")
    groups = {LIVE: (joined.labels, joined.scores), PUSHED_TEST: pushed_test(served, served.data_dir)}
    metrics = tfma_metrics(groups, served.threshold, os.path.join(options.output, "tfma"), options.beam_pipeline_args)
    pushed = {name: metrics[PUSHED_TEST][name]["value"] for name in COMPARED}
    found = alerts(metrics[LIVE], pushed, positives, options.tolerance, options.min_positives)
    summary = {"version": served.version, "threshold": served.threshold, "matched": int(joined.labels.size),
               "positives": positives, "unmatched_predictions": joined.unmatched_predictions,
               "unmatched_labels": joined.unmatched_labels, "duplicate_predictions": joined.duplicate_predictions,
               "metrics": metrics[LIVE], "pushed_test": metrics[PUSHED_TEST], "run_json_test": recorded,
               "tolerance": options.tolerance, "enough_positives": positives >= options.min_positives,
               "alerts": found}
    write_json_atomically(os.path.join(options.output, "live.json"), summary)
    from evaluation.monitoring import record_and_redraw
    from trainer.layout import LIVE_RECORD

    record_and_redraw(options.run, LIVE_RECORD, {**summary, "predictions": options.logs or options.predictions,
                                                 "labels": options.labels, "output": os.path.abspath(options.output)})
    return summary


def parse_args(argv: list[str] | None) -> LiveOptions:
    parser = argparse.ArgumentParser(prog="python -m evaluation.live", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run whose served version made the predictions")
    parser.add_argument("--predictions", help="serving.batch's Parquet output: FILE|GLOB")
    parser.add_argument("--logs", help="request logs: PREFIX* of PredictionLog TFRecord files")
    parser.add_argument("--labels", required=True, help="CSV or Parquet with the id column and the label")
    parser.add_argument("--id-column", required=True)
    parser.add_argument("--label", help="the label column (default: the run's)")
    parser.add_argument("--output", required=True, help="directory for live.json and TFMA's output")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--min-positives", type=int, default=MIN_POSITIVES)
    cli.add_beam_flag(parser)
    args = parser.parse_args(argv)
    if bool(args.predictions) == bool(args.logs):
        parser.exit(2, "error: one of --predictions or --logs is required\n")
    return LiveOptions(args.run, args.labels, args.id_column, args.output, args.predictions, args.logs, args.label,
                       args.tolerance, args.min_positives, cli.beam_args(args))


def main(argv: list[str] | None = None) -> int:
    return cli.run_entry_point(lambda: _live(argv), expected=EXPECTED)


def _live(argv: list[str] | None) -> int:
    options = parse_args(argv)
    cli.start(show_native_logs=False, progress_display=False)
    # A run on object storage: on a local copy of the served version and its execution's data, record uploaded.
    summary, _ = on_run(options.run, lambda run: run_live(dataclasses.replace(options, run=run)), SERVED,
                        options.beam_pipeline_args, EXPECTED)
    for line in summary["alerts"]:
        print(line)
    metrics = summary["metrics"]
    print(f"live: {summary['matched']} labelled predictions ({summary['positives']} positive), "
          f"{summary['unmatched_predictions']} without a label, {summary['unmatched_labels']} labels without a "
          f"prediction; PR-AUC {metrics['pr_auc']['value']:.4f}, recall {metrics['recall']['value']:.4f} at "
          f"{summary['threshold']:.4g}; {options.output}", file=sys.stderr)
    return 1 if summary["alerts"] else 0


if __name__ == "__main__":
    sys.exit(main())
