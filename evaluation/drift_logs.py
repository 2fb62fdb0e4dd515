"""Request logs as rows: `tensorflow.serving.PredictionLog` TFRecord files, one example per record.

What the server's request logger writes (serving/prediction_log.py) and what
TFX's BulkInferrer writes: each record's request gives the row's features
and its response the score the served model gave, so the current side's
score distribution needs no model call.

- Predict on `serving_default` (`examples`: serialized tf.Examples) or on
  `predict_features` (one tensor per feature); the score is the `scores`
  output (else column 1 of `probabilities`).
- Classify, and MultiInference's classification result: the request's
  examples; the score is class "1"'s.
- Regress and session-run logs carry no class score: their rows count, their
  score is missing.

Every record's rows become `Columns` of the features of the `Reading`, plus
`SCORE` (the score, NaN when none) and `FLAGGED` (1.0 when the score is at
or above the served threshold), two names no sanitized column can have.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator

import numpy as np

from evaluation.drift_data import Reading
from trainer.data.beam_files import tfrecord_records
from trainer.data.ingest import DataError
from trainer.data.statistics import NUMERIC, Columns

SCORE, FLAGGED = "served_model/score", "served_model/flagged"
BATCH_ROWS = 4096


def log_files(pattern: str) -> list[str]:
    """The log files matching `pattern` (a prefix with `*`, or a glob).

    Raises:
      DataError: none matches.
    """
    paths = sorted(path for path in glob.glob(pattern if "*" in pattern else pattern + "*")
                   if not path.rsplit("/", 1)[-1].startswith("."))
    if not paths:
        raise DataError(f"--logs {pattern}: no log file matches")
    return paths


def _example_row(example) -> dict:
    row = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = getattr(feature, kind).value if kind else ()
        if values:
            value = values[0]
            row[name] = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else float(value)
    return row


def _tensor_values(proto) -> list:
    for field in ("float_val", "double_val", "int64_val", "int_val", "bool_val"):
        if getattr(proto, field):
            return [float(v) for v in getattr(proto, field)]
    return [v.decode("utf-8", errors="replace") for v in proto.string_val]


def _class_one(classifications) -> float:
    return next((c.score for c in classifications.classes if c.label == "1"), float("nan"))


def log_rows(record: bytes) -> list[tuple[dict, float]]:
    """A PredictionLog's (feature row, score) pairs (score NaN when the log has none)."""
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog.FromString(record)
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request, response = log.predict_log.request, log.predict_log.response
        if "examples" in request.inputs:
            rows = [_example_row(example_pb2.Example.FromString(data))
                    for data in request.inputs["examples"].string_val]
        else:
            columns = {name: _tensor_values(proto) for name, proto in request.inputs.items()}
            rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        if "scores" in response.outputs:
            scores = _tensor_values(response.outputs["scores"])
        else:
            scores = _tensor_values(response.outputs["probabilities"])[1::2] if "probabilities" in \
                response.outputs else []
        return list(zip(rows, scores + [float("nan")] * (len(rows) - len(scores)), strict=True))
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        logged = getattr(log, kind)
        rows = [_example_row(example) for example in logged.request.input.example_list.examples]
        if kind == "classify_log":
            scores = [_class_one(c) for c in logged.response.result.classifications]
        elif kind == "multi_inference_log" and logged.response.results and \
                logged.response.results[0].WhichOneof("result") == "classification_result":
            scores = [_class_one(c) for c in logged.response.results[0].classification_result.classifications]
        else:
            scores = []
        return list(zip(rows, scores + [float("nan")] * (len(rows) - len(scores)), strict=True))
    return []


def _columns(pairs: list[tuple[dict, float]], reading: Reading, threshold: float) -> Columns:
    numeric, categorical = {}, {}
    for name, kind in reading.kinds.items():
        values = [row.get(name) for row, _ in pairs]
        if kind == NUMERIC:
            numeric[name] = np.array([_number(v) for v in values], np.float64)
        else:
            categorical[name] = np.array([_text(v) for v in values], dtype=object)
    scores = np.array([score for _, score in pairs], np.float64)
    numeric[SCORE] = scores
    numeric[FLAGGED] = np.where(np.isnan(scores), np.nan, (scores >= threshold).astype(np.float64))
    return Columns(len(pairs), numeric, categorical)


def _number(value) -> float:
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else np.nan
        except ValueError:
            return np.nan
    return np.nan if value is None else float(value)


def _text(value) -> str | None:
    if value is None or value == "":  # predict_features sends "" for a missing string
        return None
    if isinstance(value, float):
        return None if np.isnan(value) else (str(int(value)) if value.is_integer() else str(value))
    return value


def read_log_columns(path: str, reading: Reading, threshold: float) -> Iterator[Columns]:
    """The rows of one log file as `Columns`, `BATCH_ROWS` at a time."""
    pairs: list[tuple[dict, float]] = []
    for record in tfrecord_records(path):
        pairs.extend(log_rows(record))
        if len(pairs) >= BATCH_ROWS:
            yield _columns(pairs, reading, threshold)
            pairs = []
    if pairs:
        yield _columns(pairs, reading, threshold)
