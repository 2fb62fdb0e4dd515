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

from evaluation.eval_config import MAJORITY, MINORITY, PROBABILITIES, SCORES

OVERALL = "overall"
CLASS_KEYS = {f"classId:{MINORITY}": "class1", f"classId:{MAJORITY}": "class0"}


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
    """

    slices: dict[str, dict[str, float]]
    slice_keys: dict[str, tuple]
    curve: dict[str, list[float]]
    calibration: dict[str, list[float]]

    @property
    def overall(self) -> dict[str, float]:
        return self.slices[OVERALL]


def slice_name(slice_key: tuple) -> str:
    """`()` -> `overall`; `(("region", "north"),)` -> `region = north`."""
    if not slice_key:
        return OVERALL
    return ", ".join(f"{feature} = {value}" for feature, value in slice_key)


def load_model_result(eval_dir: str, model_name: str) -> ModelResult:
    """Reads one model's metrics and overall plots from TFMA's output directory."""
    result = tfma.load_eval_result(eval_dir, model_name=model_name)
    slices, keys = {}, {}
    for slice_key, metrics in result.slicing_metrics:
        name = slice_name(slice_key)
        slices[name], keys[name] = flatten_metrics(metrics), slice_key
    curve, calibration = {}, {}
    for slice_key, plots in result.plots:
        if not slice_key:
            overall = plots.get(SCORES, {}).get("", {})
            curve = _curve(overall.get("confusionMatrixAtThresholds", {}))
            calibration = _calibration(overall.get("calibrationHistogramBuckets", {}))
    return ModelResult(slices=slices, slice_keys=keys, curve=curve, calibration=calibration)


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """`{output: {sub_key: {name: value}}}` -> `{name: float}` (diffs skipped)."""
    flat = {}
    for sub_key, values in metrics.get(SCORES, {}).items():
        if sub_key:
            continue
        for name, value in values.items():
            if name.endswith("_diff"):
                continue
            if name == "confusion_matrix_at_thresholds":
                flat.update(_matrix(value))
            elif "doubleValue" in value:
                flat[name] = _number(value["doubleValue"])
    for sub_key, values in metrics.get(PROBABILITIES, {}).items():
        prefix = CLASS_KEYS.get(sub_key)
        if prefix is None:
            continue
        for name, value in values.items():
            if not name.endswith("_diff") and "doubleValue" in value:
                flat[f"{prefix}/{name}"] = _number(value["doubleValue"])
    return flat


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
    curve = {"threshold": [], "precision": [], "recall": [], "fpr": []}
    for matrix in plot.get("matrices", []):
        tp, fp = float(matrix.get("truePositives", 0.0)), float(matrix.get("falsePositives", 0.0))
        fn, tn = float(matrix.get("falseNegatives", 0.0)), float(matrix.get("trueNegatives", 0.0))
        curve["threshold"].append(float(matrix.get("threshold", 0.0)))
        # No predicted positives: precision is undefined; 1.0 is the usual
        # convention for the curve's end point (scikit-learn's too).
        curve["precision"].append(tp / (tp + fp) if tp + fp > 0 else 1.0)
        curve["recall"].append(tp / (tp + fn) if tp + fn > 0 else math.nan)
        curve["fpr"].append(fp / (fp + tn) if fp + tn > 0 else math.nan)
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
    (TFMA reports 0 or NaN for them).
    """
    names = [name for name in candidate.slices if name != OVERALL]

    def key(name: str) -> tuple:
        metrics = candidate.slices[name]
        value = metrics.get(metric, math.nan)
        undefined = not has_positives(metrics) or math.isnan(value)
        return (undefined, math.inf if undefined else value, name)
    return [OVERALL, *sorted(names, key=key)]


def has_positives(metrics: dict[str, float]) -> bool:
    """Whether a slice's TFMA metrics saw any minority example."""
    return metrics.get("mean_label", 0.0) * metrics.get("example_count", 0.0) > 0.5
