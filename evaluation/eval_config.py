"""The TFMA EvalConfig: the models, lean metrics, slices and the push gate.

Models: the candidate (the weighted model), its unweighted twin (`baseline`)
and, when a model is being served, that model (`served`). The gate's
reference (`is_baseline`, against which TFMA computes `*_diff` values) is the
served model, or the twin when nothing is served yet (docs/design.md §9).

Layout of the metrics specs, and why:

* `scores` output (the calibrated minority probability, one column), all
  models: ExampleCount, ROC-AUC, mean label / mean prediction / calibration
  and class 0's ROC- and PR-AUC (`evaluation.histogram_metrics`, derived from
  the shared histogram), the operating point the gate does not use
  (PrecisionAtRecall or RecallAtPrecision), and the two plots the report
  draws (PR/ROC points from ConfusionMatrixPlot, reliability from
  CalibrationPlot).
* `scores` output, PR-AUC and the objective's operating point (e.g.
  RecallAtPrecision at the objective's P), one spec per model: TFMA
  validates every non-baseline model of a spec, and only the candidate is
  gated. The same metric names in each spec still pair them into `*_diff`.
* `scores` output, one spec per model (`model_names=[name]`): Precision,
  Recall, F1, Specificity, NegativePredictiveValue and
  ConfusionMatrixAtThresholds at *that model's* decision threshold. TFMA's
  thresholds belong to a metric, not to a model, and the models were
  thresholded separately on validation, so a shared spec would judge one of
  them at another's operating point. The specs use the same metric names,
  so TFMA still pairs them into candidate-vs-reference `*_diff` values (each
  model at its own operating point). Specificity and NPV are the majority
  class's recall and precision at the same decision.
* No binarized `probabilities` spec: class 1's probability is `scores`, so
  its per-class AUCs are the overall ones, and class 0's are derived from
  the same histogram turned around. A binarized spec would run one more
  per-example histogram per class, model and slice (docs/benchmarks.md).

Confidence intervals are TFMA's (jackknife over 20 buckets for small test sets, or
Poisson bootstrap; both draw at random without a seed, so the bounds, not the
values, differ a little between runs); TFMA validates point values, so the gate's change
tolerances and value floors carry the test set's uncertainty (and, for the
precision floor, the held-out data's) before TFMA runs (`evaluation.gate`).

Cost (measured, docs/benchmarks.md "Evaluation"): TFMA runs every distinct
computation (a histogram, an explicit-threshold matrix, each binarized class)
as per-example Python, once per model and per slice an example falls in. All
`num_thresholds` metrics of one output share a single 10,000-bucket histogram,
so `num_thresholds`, the plots and the metrics derived from the histogram
cost almost nothing; each other per-example combiner (an explicit-threshold
matrix, a binarized class, TFMA's MeanLabel) costs about as much as the
histogram. Hence: per-class metrics are limited to the threshold-free AUCs,
at-threshold metrics for class 0 come from the same matrix as class 1's,
and means come from the histogram.

Thresholds are attached to the overall slice only (`per_slice_thresholds`
with an empty SlicingSpec), as TFX pipelines usually do: a recall floor means
nothing on the `label = 0` slice, which has no positives.
"""

from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2 as tfma_config

from evaluation import histogram_metrics
from evaluation.gate import Gate
from evaluation.run_files import CANDIDATE, EvaluatedModel
from evaluation.slicing import SlicePlan

SIGNATURE = "serving_default"
SCORES = "scores"  # the serving signature's minority probability output
MAJORITY = 0
INTERVAL_METHODS = {"jackknife": tfma_config.ConfidenceIntervalOptions.JACKKNIFE,
                    "bootstrap": tfma_config.ConfidenceIntervalOptions.POISSON_BOOTSTRAP}


def metric(class_name: str, threshold: tfma_config.MetricThreshold | None = None, module: str = "",
           **config) -> tfma_config.MetricConfig:
    """A MetricConfig; `threshold` applies to the overall slice only; `module` names a custom metric's module."""
    proto = tfma_config.MetricConfig(class_name=class_name, module=module, config=json.dumps(config) if config else "")
    if threshold is not None:
        proto.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()], threshold=threshold)
    return proto


def lower_bound(value: float) -> tfma_config.MetricThreshold:
    return tfma_config.MetricThreshold(value_threshold=tfma_config.GenericValueThreshold(lower_bound={"value": value}))


def change_threshold(tolerance: float) -> tfma_config.MetricThreshold:
    """"Not worse than the reference beyond `tolerance`": diff >= -tolerance."""
    return tfma_config.MetricThreshold(change_threshold=tfma_config.GenericChangeThreshold(
        direction=tfma_config.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -tolerance}))


def build_eval_config(models: list[EvaluatedModel], label: str, plan: SlicePlan,
                      gate: Gate) -> tfma_config.EvalConfig:
    """The EvalConfig for `models` (candidate first) and the push gate.

    Args:
      models: Candidate first; the model named `gate.reference` (if any) gets
        `is_baseline`, so TFMA computes the candidate's `*_diff` against it.
      label: The label key (int64 0/1, 1 = minority).
      plan: Slicing features.
      gate: The thresholds, resolved for this test split (`evaluation.gate`).
    """
    model_specs = [tfma_config.ModelSpec(name=m.name, signature_name=SIGNATURE, label_key=label,
                                         is_baseline=m.name == gate.reference) for m in models]
    slicing_specs = [tfma_config.SlicingSpec()] + [tfma_config.SlicingSpec(feature_keys=[key])
                                                   for key in plan.feature_keys]
    options = tfma_config.Options(include_default_metrics={"value": False})
    # The default metrics (loss, etc. of a Keras model) do not exist for a
    # generic signature; everything computed is listed here.
    if gate.intervals != "none":
        options.compute_confidence_intervals.value = True
        options.confidence_intervals.method = INTERVAL_METHODS[gate.intervals]
    return tfma_config.EvalConfig(
        model_specs=model_specs,
        slicing_specs=slicing_specs,
        metrics_specs=[_overall_spec(models, gate)]
        + [_at_threshold_spec(m, gate) for m in models]
        + [_gated_spec(m, gate) for m in models],
        options=options,
    )


def _overall_spec(models: list[EvaluatedModel], gate: Gate) -> tfma_config.MetricsSpec:
    n = gate.num_thresholds
    return tfma_config.MetricsSpec(
        model_names=[m.name for m in models],
        output_names=[SCORES],
        metrics=[
            metric("ExampleCount"),
            metric("AUC", name="auc", num_thresholds=n),
            _operating_metric(_other(gate.operating_metric), gate),  # reported, not gated
            # mean_label, mean_prediction, calibration and class 0's AUCs, derived
            # from the same histogram as the AUCs at no per-example cost.
            metric("HistogramMeans", module=histogram_metrics.MODULE),
            metric("MajorityAUCs", module=histogram_metrics.MODULE, num_thresholds=n),
            metric("CalibrationPlot", num_buckets=10),
            metric("ConfusionMatrixPlot", num_thresholds=n),
        ],
    )


def _gated_spec(model: EvaluatedModel, gate: Gate) -> tfma_config.MetricsSpec:
    """PR-AUC and the objective's operating point, with the gate's thresholds on the candidate's only.

    One spec per model, because TFMA validates every non-baseline model of a
    spec: the unweighted twin must not be gated against the served model.
    The same metric names in each spec still pair them into `*_diff` values.
    """
    pr_auc = metric("AUCPrecisionRecall", name="pr_auc", num_thresholds=gate.num_thresholds)
    operating = _operating_metric(gate.operating_metric, gate)
    overall = [tfma_config.SlicingSpec()]
    if model.name == CANDIDATE:
        if gate.candidate.min_pr_auc is not None:
            pr_auc.per_slice_thresholds.add(slicing_specs=overall, threshold=lower_bound(gate.candidate.min_pr_auc))
        if gate.reference is not None:
            pr_auc.per_slice_thresholds.add(slicing_specs=overall, threshold=change_threshold(gate.pr_auc_tolerance))
            operating.per_slice_thresholds.add(slicing_specs=overall,
                                               threshold=change_threshold(gate.operating_tolerance))
    return tfma_config.MetricsSpec(model_names=[model.name], output_names=[SCORES], metrics=[pr_auc, operating])


def _operating_metric(name: str, gate: Gate) -> tfma_config.MetricConfig:
    if name == "recall_at_precision":
        return metric("RecallAtPrecision", precision=gate.precision_floor, num_thresholds=gate.num_thresholds)
    return metric("PrecisionAtRecall", recall=gate.recall_floor, num_thresholds=gate.num_thresholds)


def _other(name: str) -> str:
    return "precision_at_recall" if name == "recall_at_precision" else "recall_at_precision"


def _at_threshold_spec(model: EvaluatedModel, gate: Gate) -> tfma_config.MetricsSpec:
    t = [model.threshold]
    precision, recall = metric("Precision", thresholds=t), metric("Recall", thresholds=t)
    if model.name == CANDIDATE:
        values = gate.candidate
        if values.min_precision is not None:
            precision.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()],
                                               threshold=lower_bound(values.min_precision))
        # Not min_recall itself: the lowest recall that is not evidence of a true recall below it.
        recall.per_slice_thresholds.add(slicing_specs=[tfma_config.SlicingSpec()],
                                        threshold=lower_bound(values.recall_threshold))
    return tfma_config.MetricsSpec(
        model_names=[model.name],
        output_names=[SCORES],
        metrics=[
            precision,
            recall,
            metric("F1Score", thresholds=t),
            metric("Specificity", thresholds=t),  # = class-0 recall
            metric("NegativePredictiveValue", thresholds=t),  # = class-0 precision
            metric("ConfusionMatrixAtThresholds", thresholds=t),
        ],
    )
