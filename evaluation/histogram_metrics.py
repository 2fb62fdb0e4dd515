"""TFMA metrics read from the calibration histogram TFMA already builds.

TFMA computes every metric with its own per-example combiner, and in this
package's layout per-example Python is where TFMA's time goes
(docs/benchmarks.md "Evaluation"). The AUCs, the operating points and the
plots of one output already share one 10,000-bucket calibration histogram,
whose buckets hold exact sums of labels, predictions and examples. The
metrics here are derived from that same histogram, so they cost no
per-example work at all:

* `HistogramMeans`: `mean_label`, `mean_prediction` and `calibration`
  (mean prediction / mean label), the same names and values as TFMA's
  `MeanLabel`, `MeanPrediction` and `Calibration`, which each run their own
  per-example combiner.
* `MajorityAUCs`: the majority class's ROC-AUC and PR-AUC, under the sub key
  `classId:0`, from the minority score's histogram turned around (class 0's
  score is 1 - p). TFMA's binarized spec would run one more histogram per
  example, model and slice for it.

Both are registered TFMA metrics (`tfma.metrics.Metric` subclasses): a
MetricConfig names them with `module="evaluation.histogram_metrics"`, and
they work with TFMA's confidence intervals and model diffs like any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow_model_analysis.metrics import (
    binary_confusion_matrices,
    calibration_histogram,
    confusion_matrix_metrics,
    metric_types,
    metric_util,
)

MODULE = __name__
MEAN_LABEL, MEAN_PREDICTION, CALIBRATION = "mean_label", "mean_prediction", "calibration"
MAJORITY_SUB_KEY = metric_types.SubKey(class_id=0)


def _histogram(eval_config, model_name, output_name, sub_key, aggregation_type, class_weights, example_weighted):
    """The default histogram computation: the same key as the AUCs' and the plots', so TFMA runs it once."""
    computations = calibration_histogram.calibration_histogram(
        eval_config=eval_config, model_name=model_name, output_name=output_name, sub_key=sub_key,
        aggregation_type=aggregation_type, class_weights=class_weights, example_weighted=example_weighted)
    return computations, computations[-1].keys[-1]


class HistogramMeans(metric_types.Metric):
    """`mean_label`, `mean_prediction` and `calibration`, from the shared histogram."""

    def __init__(self, name: str = "histogram_means"):
        super().__init__(metric_util.merge_per_key_computations(_means), name=name)


def _means(name: str = "histogram_means", eval_config=None, model_name: str = "", output_name: str = "",
           sub_key=None, aggregation_type=None, class_weights=None,
           example_weighted: bool = False) -> metric_types.MetricComputations:
    del name  # the three metrics keep TFMA's own names
    computations, histogram_key = _histogram(eval_config, model_name, output_name, sub_key, aggregation_type,
                                             class_weights, example_weighted)
    keys = {metric: metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name,
                                           sub_key=sub_key, example_weighted=example_weighted)
            for metric in (MEAN_LABEL, MEAN_PREDICTION, CALIBRATION)}

    def result(metrics: dict[metric_types.MetricKey, Any]) -> dict[metric_types.MetricKey, float]:
        buckets = metrics[histogram_key]
        examples = sum(b.weighted_examples for b in buckets)
        labels = sum(b.weighted_labels for b in buckets)
        predictions = sum(b.weighted_predictions for b in buckets)
        return {keys[MEAN_LABEL]: _ratio(labels, examples), keys[MEAN_PREDICTION]: _ratio(predictions, examples),
                keys[CALIBRATION]: _ratio(predictions, labels)}

    computations.append(metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result))
    return computations


class MajorityAUCs(metric_types.Metric):
    """Class 0's ROC-AUC (`auc`) and PR-AUC (`pr_auc`) under sub key `classId:0`.

    Computed from the minority score's histogram with the buckets reversed and
    labels complemented (class 0 is "positive" where the label is 0; its score
    1 - p ranks the buckets the other way round), then TFMA's own
    histogram-to-matrices step and interpolated AUC over `num_thresholds`
    thresholds, as `AUC` and `AUCPrecisionRecall` do for a binarized class.
    """

    def __init__(self, num_thresholds: int = binary_confusion_matrices.DEFAULT_NUM_THRESHOLDS,
                 name: str = "majority_aucs"):
        super().__init__(metric_util.merge_per_key_computations(_majority_aucs), num_thresholds=num_thresholds,
                         name=name)


def _majority_aucs(num_thresholds: int = binary_confusion_matrices.DEFAULT_NUM_THRESHOLDS,
                   name: str = "majority_aucs", eval_config=None, model_name: str = "", output_name: str = "",
                   sub_key=None, aggregation_type=None, class_weights=None,
                   example_weighted: bool = False) -> metric_types.MetricComputations:
    del name
    # TFMA's own histogram -> matrices step for `num_thresholds`, whose input is
    # the shared histogram; its result function is fed the turned-around one.
    to_matrices = binary_confusion_matrices.binary_confusion_matrices(
        num_thresholds=num_thresholds, eval_config=eval_config, model_name=model_name, output_name=output_name,
        sub_key=sub_key, aggregation_type=aggregation_type, class_weights=class_weights,
        example_weighted=example_weighted)
    *computations, matrices_step = to_matrices
    histogram_key = computations[-1].keys[-1]
    keys = {curve: metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name,
                                          sub_key=MAJORITY_SUB_KEY, example_weighted=example_weighted)
            for curve, metric in (("ROC", "auc"), ("PR", "pr_auc"))}

    def result(metrics: dict[metric_types.MetricKey, Any]) -> dict[metric_types.MetricKey, float]:
        flipped = majority_histogram(metrics[histogram_key])
        (matrices,) = matrices_step.result({histogram_key: flipped}).values()
        auc = confusion_matrix_metrics.AUC()
        return {key: float(auc._metric_value(curve, "interpolation", key, matrices))  # noqa: SLF001
                for curve, key in keys.items()}

    computations.append(metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result))
    return computations


def majority_histogram(buckets: list[calibration_histogram.Bucket],
                       num_buckets: int = calibration_histogram.DEFAULT_NUM_BUCKETS
                       ) -> list[calibration_histogram.Bucket]:
    """The histogram of class 0's score 1 - p, with class-0 labels, from the minority histogram.

    Bucket ids run 0 (p < 0), 1..num_buckets ([k/n, (k+1)/n)), num_buckets + 1
    (p >= 1). The bucket of p in 1..n holds 1 - p in bucket n + 1 - id (up to
    which side of an edge an exact edge value falls on); p >= 1 is 1 - p <= 0,
    the first regular bucket, and p < 0 is 1 - p > 1, the overflow bucket.
    """
    flipped: dict[int, calibration_histogram.Bucket] = {}
    for b in buckets:
        if b.bucket_id == 0:
            bucket_id = num_buckets + 1
        elif b.bucket_id >= num_buckets + 1:
            bucket_id = 1
        else:
            bucket_id = num_buckets + 1 - b.bucket_id
        bucket = flipped.setdefault(bucket_id, calibration_histogram.Bucket(bucket_id, 0.0, 0.0, 0.0))
        bucket.weighted_labels += b.weighted_examples - b.weighted_labels
        bucket.weighted_predictions += b.weighted_examples - b.weighted_predictions
        bucket.weighted_examples += b.weighted_examples
    return [flipped[i] for i in sorted(flipped)]


def _ratio(numerator: float, denominator: float) -> float:
    return float("nan") if np.isclose(denominator, 0.0) else float(numerator / denominator)


metric_types.register_metric(HistogramMeans)
metric_types.register_metric(MajorityAUCs)
