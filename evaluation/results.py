"""TFMA's written output, flattened into plain values for blessing and the report.

`tfma.load_eval_result` gives nested dicts per slice:
`{output_name: {sub_key: {metric_name: {"doubleValue": v} | message}}}`, in
proto3 JSON form (zero-valued fields are omitted). This module turns them
into `{metric: float}` per model and slice, plus the overall slice's curve
and calibration plots.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow_model_analysis as tfma

from evaluation.eval_config import MAJORITY, SCORES
from evaluation.intervals import bounded_intervals

OVERALL = "overall"
# A slice with fewer positives than this has minority metrics too noisy to
# rank (one positive more or less moves its PR-AUC by a lot): it is shown,
# marked, and listed after the ranked slices.
MIN_RANKED_POSITIVES = 10
CLASS_KEYS = {f"classId:{MAJORITY}": "class0"}
CLASS1_FROM_OVERALL = ("auc", "pr_auc", "auc_diff", "pr_auc_diff")


@dataclasses.dataclass
class ModelResult:
    """One model's TFMA results.

    Attributes:
      slices: slice name -> {metric -> value}. Overall-output metrics keep
        their TFMA names (`pr_auc`, `recall`, ...); per-class ones are
        `class1/auc`, `class0/pr_auc`, ...; the confusion matrix at the model's
        threshold is `tp`, `fp`, `tn`, `fn`, `threshold`.
      slice_keys: slice name -> TFMA slice key (tuple of (feature, value)).
      curve: Overall slice's ConfusionMatrixPlot: lists `threshold`,
        `precision`, `recall`, `fpr`.
      calibration: Overall slice's CalibrationPlot buckets: lists `mean_prediction`,
        `mean_label`, `count` (non-empty buckets only).
      intervals: slice name -> {metric -> [lower, upper]}: 95% confidence
        intervals where TFMA computed them, rebuilt inside each metric's
        range (`evaluation.intervals`; same metric names).
      interval_methods: slice name -> {metric -> method}: how each interval
        was made (a key of `evaluation.intervals.METHODS`).
      tfma_intervals: slice name -> {metric -> [lower, upper]}: TFMA's own
        normal-approximation intervals, which may leave [0, 1].
    """

    slices: dict[str, dict[str, float]]
    slice_keys: dict[str, tuple]
    curve: dict[str, list[float]]
    calibration: dict[str, list[float]]
    intervals: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    interval_methods: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    tfma_intervals: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)

    @property
    def overall(self) -> dict[str, float]:
        return self.slices[OVERALL]

    @property
    def overall_intervals(self) -> dict[str, list[float]]:
        return self.intervals.get(OVERALL, {})

    @property
    def overall_interval_methods(self) -> dict[str, str]:
        return self.interval_methods.get(OVERALL, {})


def slice_name(slice_key: tuple) -> str:
    """`()` -> `overall`; `(("region", "north"),)` -> `region = north`."""
    if not slice_key:
        return OVERALL
    return ", ".join(f"{feature} = {value}" for feature, value in slice_key)


def load_model_result(eval_dir: str, model_name: str) -> ModelResult:
    """Reads one model's metrics and overall plots from TFMA's output directory."""
    result = tfma.load_eval_result(eval_dir, model_name=model_name)
    slices, keys, intervals, methods, raw = {}, {}, {}, {}, {}
    for slice_key, metrics in result.slicing_metrics:
        name = slice_name(slice_key)
        slices[name], keys[name] = flatten_metrics(metrics), slice_key
        raw[name] = flatten_intervals(metrics)
        bounded = bounded_intervals(slices[name], raw[name])
        intervals[name] = {metric: [i.lower, i.upper] for metric, i in bounded.items()}
        methods[name] = {metric: i.method for metric, i in bounded.items()}
    curve, calibration = {}, {}
    for slice_key, plots in result.plots:
        if not slice_key:
            overall = plots.get(SCORES, {}).get("", {})
            curve = _curve(overall.get("confusionMatrixAtThresholds", {}))
            calibration = _calibration(overall.get("calibrationHistogramBuckets", {}))
    return ModelResult(slices=slices, slice_keys=keys, curve=curve, calibration=calibration, intervals=intervals,
                       interval_methods=methods, tfma_intervals=raw)


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """`{output: {sub_key: {name: value}}}` -> `{name: float}` (diffs skipped).

    Per-class names: class 0's AUCs come from the `classId:0` sub key
    (`evaluation.histogram_metrics.MajorityAUCs`); class 1's are the overall
    `auc` and `pr_auc`, because the minority score *is* class 1's probability.
    """
    flat = {}
    for sub_key, values in metrics.get(SCORES, {}).items():
        prefix = _prefix(sub_key)
        if prefix is None:
            continue
        for name, value in values.items():
            if name.endswith("_diff"):
                continue
            if name == "confusion_matrix_at_thresholds":
                flat.update(_matrix(value))
            elif _has_number(value):
                flat[prefix + name] = _value(value)
    return _with_class1(flat)


def flatten_intervals(metrics: dict) -> dict[str, list[float]]:
    """`{name: [lower, upper]}` of the metrics TFMA gave a confidence interval (diffs included)."""
    intervals = {}
    for sub_key, values in metrics.get(SCORES, {}).items():
        prefix = _prefix(sub_key)
        if prefix is None:
            continue
        for name, value in values.items():
            bounded = value.get("boundedValue") if isinstance(value, dict) else None
            if bounded and "lowerBound" in bounded:
                intervals[prefix + name] = [_number(bounded["lowerBound"]), _number(bounded["upperBound"])]
    return _with_class1(intervals)


def _prefix(sub_key: str) -> str | None:
    """"" for the overall output, `class0/` for class 0's sub key, None for anything else."""
    if not sub_key:
        return ""
    return f"{CLASS_KEYS[sub_key]}/" if sub_key in CLASS_KEYS else None


def _with_class1(values: dict) -> dict:
    for name in CLASS1_FROM_OVERALL:
        if name in values:
            values[f"class1/{name}"] = values[name]
    return values


def _has_number(value: dict) -> bool:
    return "doubleValue" in value or "value" in value.get("boundedValue", {})


def _value(value: dict) -> float:
    """The point value; with confidence intervals TFMA writes it as `boundedValue.value`."""
    if "doubleValue" in value:
        return _number(value["doubleValue"])
    return _number(value["boundedValue"]["value"])


def _number(value) -> float:
    return float(value)  # TFMA writes NaN / Infinity as strings; float() parses both


def _matrix(value: dict) -> dict[str, float]:
    matrices = value.get("confusionMatrixAtThresholds", {}).get("matrices", [])
    if not matrices:
        return {}
    matrix = matrices[0]  # one threshold: the model's own
    return {"threshold": float(matrix.get("threshold", 0.0)),
            "tp": float(matrix.get("truePositives", 0.0)), "fp": float(matrix.get("falsePositives", 0.0)),
            "tn": float(matrix.get("trueNegatives", 0.0)), "fn": float(matrix.get("falseNegatives", 0.0))}


def _curve(plot: dict) -> dict[str, list[float]]:
    curve = {"threshold": [], "precision": [], "recall": [], "fpr": [], "tp": [], "fp": [], "fn": []}
    for matrix in plot.get("matrices", []):
        tp, fp = float(matrix.get("truePositives", 0.0)), float(matrix.get("falsePositives", 0.0))
        fn, tn = float(matrix.get("falseNegatives", 0.0)), float(matrix.get("trueNegatives", 0.0))
        curve["threshold"].append(float(matrix.get("threshold", 0.0)))
        # No predicted positives: precision is undefined; 1.0 is the usual
        # convention for the curve's end point (scikit-learn's too).
        curve["precision"].append(tp / (tp + fp) if tp + fp > 0 else 1.0)
        curve["recall"].append(tp / (tp + fn) if tp + fn > 0 else math.nan)
        curve["fpr"].append(fp / (fp + tn) if fp + tn > 0 else math.nan)
        curve["tp"].append(tp)
        curve["fp"].append(fp)
        curve["fn"].append(fn)
    return curve


def _calibration(plot: dict) -> dict[str, list[float]]:
    calibration = {"mean_prediction": [], "mean_label": [], "count": []}
    for bucket in plot.get("buckets", []):
        count = float(bucket.get("numWeightedExamples", 0.0))
        if count > 0:
            calibration["mean_prediction"].append(float(bucket.get("totalWeightedRefinedPrediction", 0.0)) / count)
            calibration["mean_label"].append(float(bucket.get("totalWeightedLabel", 0.0)) / count)
            calibration["count"].append(count)
    return calibration


def worst_first(candidate: ModelResult, metric: str = "class1/pr_auc") -> list[str]:
    """Slice names, overall first, then by the candidate's `metric` ascending.

    Slices without positives go last: their minority metrics are undefined
    (TFMA reports 0 or NaN for them). So do slices with fewer than
    `MIN_RANKED_POSITIVES` positives, which cannot be ranked meaningfully.
    """
    names = [name for name in candidate.slices if name != OVERALL]

    def key(name: str) -> tuple:
        metrics = candidate.slices[name]
        value = metrics.get(metric, math.nan)
        undefined = not has_positives(metrics, MIN_RANKED_POSITIVES) or math.isnan(value)
        return (undefined, math.inf if undefined else value, name)
    return [OVERALL, *sorted(names, key=key)]


def has_positives(metrics: dict[str, float], at_least: int = 1) -> bool:
    """Whether a slice's TFMA metrics saw at least `at_least` minority examples."""
    return metrics.get("mean_label", 0.0) * metrics.get("example_count", 0.0) > at_least - 0.5
