"""What imbalanced data moves first: the served model's scores, its positive rate, the label rate.

The served SavedModel scores the reference rows and the current rows through
its `predict_features` signature (loaded once, only when a run is given).
Up to three comparisons join the per-feature ones:

- `served_model.score`: Jensen-Shannon divergence of the two score
  distributions' quantiles histograms (as numeric features are compared).
- `served_model.predicted_positive_rate`: the share of rows at or above the
  served threshold.
- `label_rate.<label>`: the share of positives, from the two statistics,
  when both sides have labels (with or without a model).

A rate's measurement is TFDV's L-infinity over its two classes (|p - q|),
and its threshold is `RATE_TOLERANCE` times the reference rate (of the
rarer class): a minority rate of 2% that becomes 3.1% breaches, whatever
the majority does. Below `MIN_EXPECTED_POSITIVES` expected rare-class rows
on the smaller side the rate is "too few rows to judge" (with 50, the
count's own noise is 14% of it, 3.5 times below the tolerance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from evaluation.drift_data import Reading, ranges_of, read_columns
from evaluation.skew import MIN_ROWS, TOO_FEW, Comparison, Measurement, compare_feature, default_comparator
from trainer.data.statistics import Columns, DataStatistics, to_proto

RATE_TOLERANCE = 0.5
MIN_EXPECTED_POSITIVES = 50
BATCH = 4096
SCORE_PATH = ("served_model", "score")
POSITIVE_RATE_PATH = ("served_model", "predicted_positive_rate")


class ServedScorer:
    """The served SavedModel's `predict_features`, loaded once."""

    def __init__(self, version_dir: str):
        import tensorflow as tf

        self._predict = tf.saved_model.load(version_dir).signatures["predict_features"]

    def score(self, patterns: Sequence[str], reading: Reading) -> np.ndarray:
        """The calibrated scores [N] of every row of the files matching `patterns`, read as `reading` says."""
        import tensorflow as tf

        scores = []
        for pattern in patterns:
            for part in ranges_of(pattern):
                for columns in read_columns(part, reading):
                    for start in range(0, columns.rows, BATCH):
                        inputs = {name: tf.constant(_model_input(columns, name, start)) for name in reading.kinds}
                        scores.append(self._predict(**inputs)["scores"].numpy().astype(np.float64))
        return np.concatenate(scores) if scores else np.empty(0)


def _model_input(columns: Columns, name: str, start: int) -> np.ndarray:
    """A feature's batch as `predict_features` takes it: float32 with NaN, or strings with "" when missing."""
    if name in columns.numeric:
        return columns.numeric[name][start:start + BATCH].astype(np.float32)
    values = columns.categorical[name][start:start + BATCH]
    return np.array(["" if v is None else v for v in values], dtype=object).astype(bytes)


Summary = tuple  # (the scores' FeatureNameStatistics, (predicted positive rate, rows))


def score_statistics(scores: np.ndarray) -> statistics_pb2.FeatureNameStatistics:
    """The scores' statistics as a numeric feature at `SCORE_PATH`."""
    stats = DataStatistics().add(Columns(scores.size, {"score": scores}, {}))
    return _at_score_path(to_proto(stats).datasets[0].features[0])


def _at_score_path(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.FeatureNameStatistics:
    feature.path.ClearField("step")
    feature.path.step.extend(SCORE_PATH)
    return feature


def summarize(scores: np.ndarray, threshold: float) -> Summary:
    """The scores' statistics and the share of them at or above `threshold`."""
    rate = float((scores >= threshold).mean()) if scores.size else 0.0
    return score_statistics(scores), (rate, int(scores.size))


def logged_summary(dataset: statistics_pb2.DatasetFeatureStatistics, score: str, flagged: str) -> Summary:
    """The summary of scores logged with the rows: the statistics' `score` and 0/1 `flagged` features."""
    by_name = {".".join(f.path.step): f for f in dataset.features}
    scores, flags = statistics_pb2.FeatureNameStatistics(), by_name[flagged].num_stats
    scores.CopyFrom(by_name[score])
    return _at_score_path(scores), (flags.mean, int(flags.common_stats.num_non_missing))


def rate_comparison(path: tuple[str, ...], reference: tuple[float, int], current: tuple[float, int],
                    tolerance: float = RATE_TOLERANCE) -> Comparison:
    """Compares two rates given as (rate, rows): a breach when they differ by more than `tolerance` x the rarer."""
    (p, n_ref), (q, n_cur) = reference, current
    if not n_cur:
        return Comparison(path, Measurement.L_INFTY, None, 0.0, n_ref, 0,
                          f"no values in the data (the reference has {n_ref})")
    rare = min(p, 1.0 - p)
    threshold, value = tolerance * rare, abs(q - p)
    if min(n_ref, n_cur) * rare < MIN_EXPECTED_POSITIVES:
        status = TOO_FEW
    else:
        status = "breach" if value > threshold else "ok"
    return Comparison(path, Measurement.L_INFTY, value, threshold, n_ref, n_cur, status, f"rate {p:.4g} -> {q:.4g}")


def label_rate(reference: statistics_pb2.DatasetFeatureStatistics, current: statistics_pb2.DatasetFeatureStatistics,
               label: str, tolerance: float = RATE_TOLERANCE) -> Comparison | None:
    """The label's positive rate compared, when both statistics have the (0/1) label; else None."""
    def rate(dataset) -> tuple[float, int] | None:
        feature = next((f for f in dataset.features if tuple(f.path.step) == (label,)), None)
        if feature is None or not feature.num_stats.common_stats.num_non_missing:
            return None
        return feature.num_stats.mean, feature.num_stats.common_stats.num_non_missing

    pair = rate(reference), rate(current)
    return rate_comparison(("label_rate", label), *pair, tolerance) if None not in pair else None


def compare_scores(reference: Summary, current: Summary, min_rows: int = MIN_ROWS,
                   tolerance: float = RATE_TOLERANCE) -> list[Comparison]:
    """The score distributions and the predicted positive rates of two summaries (`summarize`)."""
    results = compare_feature(reference[0], current[0], default_comparator(reference[0]), min_rows)
    results.append(rate_comparison(POSITIVE_RATE_PATH, reference[1], current[1], tolerance))
    return results
