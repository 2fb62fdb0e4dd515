"""The TFMA EvalConfig: both models, lean metrics, slices and thresholds.

Layout of the metrics specs, and why:

* `scores` output (the calibrated minority probability, one column), both
  models: ExampleCount, ROC-AUC, PR-AUC, RecallAtPrecision,
  PrecisionAtRecall, MeanLabel/MeanPrediction/Calibration, and the two plots
  the report draws (PR/ROC points from ConfusionMatrixPlot, reliability from
  CalibrationPlot). The PR-AUC value threshold and the change threshold
  against the baseline live here: these metrics are threshold-free, so both
  models share one spec.
* `scores` output, one spec per model (`model_names=[name]`): Precision,
  Recall, F1, Specificity, NegativePredictiveValue and
  ConfusionMatrixAtThresholds at *that model's* decision threshold. TFMA's
  thresholds belong to a metric, not to a model, and the two models were
  thresholded separately on validation, so a shared spec would judge one of
  them at the other's operating point. Both specs use the same metric names,
  so TFMA still pairs them into candidate-vs-baseline `*_diff` values (each
  model at its own operating point). Specificity and NPV are the majority
  class's recall and precision at the same decision.
* `probabilities` output (two columns), both models, binarized into
  `class_ids [1, 0]` (minority first): per-class ROC-AUC and PR-AUC. A
  binarized spec yields only `classId:N` sub keys (docs/benchmarks.md), hence the
  separate overall specs above.

Cost (measured, docs/benchmarks.md "Evaluation"): TFMA runs every distinct
computation (a histogram, an explicit-threshold matrix, each binarized class)
as per-example Python, once per model and per slice an example falls in. All
`num_thresholds` metrics of one output share a single 10,000-bucket histogram,
so `num_thresholds` and the plots cost almost nothing; each binarized class
and each explicit threshold costs as much as the whole overall spec. Hence:
per-class metrics are limited to the threshold-free AUCs, at-threshold
metrics for class 0 come from the same matrix as class 1's, and numeric
slices are opt-in.

Value thresholds are attached to the overall slice only (`per_slice_thresholds`
with an empty SlicingSpec), as TFX pipelines usually do: a recall floor means
nothing on the `label = 0` slice, which has no positives.
"""

from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2 as tfma_config

from evaluation.options import EvaluationOptions
from evaluation.run_files import BASELINE, EvaluatedModel
from evaluation.slicing import SlicePlan

SIGNATURE = "serving_default"
SCORES, PROBABILITIES = "scores", "probabilities"  # outputs of the serving signature
MINORITY, MAJORITY = 1, 0


def metric(class_name: str, threshold: tfma_config.MetricThreshold | None = None, **config) -> tfma_config.MetricConfig:
    """A MetricConfig; `threshold` applies to the overall slice only."""
    proto = tfma_config.MetricConfig(class_name=class_name, config=json.dumps(config) if config else "")
    if threshold is not None:
        proto.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()], threshold=threshold)
    return proto


def lower_bound(value: float) -> tfma_config.MetricThreshold:
    return tfma_config.MetricThreshold(value_threshold=tfma_config.GenericValueThreshold(lower_bound={"value": value}))


def build_eval_config(models: list[EvaluatedModel], label: str, plan: SlicePlan,
                      options: EvaluationOptions) -> tfma_config.EvalConfig:
    """The EvalConfig for `models` (one of which may be named `baseline`).

    Args:
      models: Candidate first; a model named `baseline` gets `is_baseline`.
      label: The label key (int64 0/1, 1 = minority).
      plan: Slicing features.
      options: Thresholds and histogram sizes.
    """
    model_specs = [tfma_config.ModelSpec(name=m.name, signature_name=SIGNATURE, label_key=label,
                                  is_baseline=m.name == BASELINE) for m in models]
    has_baseline = any(m.name == BASELINE for m in models)
    slicing_specs = [tfma_config.SlicingSpec()] + [tfma_config.SlicingSpec(feature_keys=[key]) for key in plan.feature_keys]
    return tfma_config.EvalConfig(
        model_specs=model_specs,
        slicing_specs=slicing_specs,
        metrics_specs=[_overall_spec(models, options, has_baseline)]
        + [_at_threshold_spec(m, options) for m in models]
        + [_per_class_spec(models, options)],
        # The default metrics (loss, etc. of a Keras model) do not exist for a
        # generic signature; everything computed is listed here.
        options=tfma_config.Options(include_default_metrics={"value": False}),
    )


def _overall_spec(models: list[EvaluatedModel], options: EvaluationOptions, has_baseline: bool) -> tfma_config.MetricsSpec:
    n = options.num_thresholds
    pr_auc = metric("AUCPrecisionRecall", name="pr_auc", num_thresholds=n)
    if options.min_pr_auc is not None:
        pr_auc.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()], threshold=lower_bound(options.min_pr_auc))
    if has_baseline:
        # "Not worse than the baseline beyond a small tolerance": diff >= -tolerance.
        change = tfma_config.MetricThreshold(change_threshold=tfma_config.GenericChangeThreshold(
            direction=tfma_config.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -options.pr_auc_tolerance}))
        pr_auc.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()], threshold=change)
    return tfma_config.MetricsSpec(
        model_names=[m.name for m in models],
        output_names=[SCORES],
        metrics=[
            metric("ExampleCount"),
            metric("AUC", name="auc", num_thresholds=n),
            pr_auc,
            metric("RecallAtPrecision", precision=options.precision_floor, num_thresholds=n),
            metric("PrecisionAtRecall", recall=options.recall_floor, num_thresholds=n),
            metric("MeanLabel"),
            metric("MeanPrediction"),
            metric("Calibration"),
            metric("CalibrationPlot", num_buckets=10),
            metric("ConfusionMatrixPlot", num_thresholds=n),
        ],
    )


def _at_threshold_spec(model: EvaluatedModel, options: EvaluationOptions) -> tfma_config.MetricsSpec:
    t = [model.threshold]
    recall_floor = lower_bound(options.min_recall) if model.name != BASELINE else None
    return tfma_config.MetricsSpec(
        model_names=[model.name],
        output_names=[SCORES],
        metrics=[
            metric("Precision", thresholds=t),
            metric("Recall", recall_floor, thresholds=t),
            metric("F1Score", thresholds=t),
            metric("Specificity", thresholds=t),  # = class-0 recall
            metric("NegativePredictiveValue", thresholds=t),  # = class-0 precision
            metric("ConfusionMatrixAtThresholds", thresholds=t),
        ],
    )


def _per_class_spec(models: list[EvaluatedModel], options: EvaluationOptions) -> tfma_config.MetricsSpec:
    n = options.num_thresholds
    return tfma_config.MetricsSpec(
        model_names=[m.name for m in models],
        output_names=[PROBABILITIES],
        binarize=tfma_config.BinarizationOptions(class_ids={"values": [MINORITY, MAJORITY]}),
        metrics=[metric("AUC", name="auc", num_thresholds=n), metric("AUCPrecisionRecall", name="pr_auc", num_thresholds=n)],
    )
