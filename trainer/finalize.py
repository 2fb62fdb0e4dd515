"""After fitting: calibrate, choose the threshold, measure on test, export.

The threshold is chosen on held-out scores computed with the exported
function's float32 arithmetic (sigmoid(a * s + b)); serving compares its own
scores with it, so `class_ids == (scores >= threshold)` holds exactly.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from trainer.calibration import (
    Calibration,
    brier_score,
    expected_calibration_error,
    fit_calibration,
    served_probability,
    sigmoid,
)
from trainer.config import RunConfig
from trainer.data.dataset import read_labels, read_serialized
from trainer.data.prepare import PreparedData
from trainer.export import ServingModule, export_version
from trainer.summary import ModelSummary, TestMetrics, ThresholdRecord
from trainer.threshold import ThresholdWarning, choose_threshold
from trainer.train import EVAL_BATCH, FitSettings


def run_signature(function, serialized: list[bytes], batch: int = EVAL_BATCH) -> dict[str, np.ndarray]:
    """Calls a serialized-tf.Example function in batches; concatenates outputs."""
    import tensorflow as tf

    parts: dict[str, list] = {}
    for start in range(0, len(serialized), batch):
        outputs = function(tf.constant(serialized[start:start + batch]))
        for key, value in outputs.items():
            parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


def finalize(model, settings: FitSettings, data: PreparedData, config: RunConfig, export_base: str,
             held_out: tuple[np.ndarray, np.ndarray], shift: float | None) -> tuple[ModelSummary, tuple]:
    """Calibrates, thresholds, evaluates on test and exports a new version.

    Args:
      model: The trained Keras model (or fold ensemble).
      settings: The loss settings it was trained with.
      data: The prepared splits.
      config: The run configuration.
      export_base: The version directory's parent.
      held_out: (single logits s [N], labels [N]) the model did not train on,
        for calibration and threshold: the validation split's, or the
        out-of-fold predictions in cross-validation.
      shift: The closed-form logit shift of the weighting (None: there is
        none, Platt scaling in `auto` mode).

    Returns:
      The model's `ModelSummary` so far (version path, loss, calibration,
      threshold, test metrics; `trainer.pipeline` adds the rest), and the
      test split's (raw logits s [N], labels [N]) before calibration
      (`trainer.weighting_study` keeps them).
    """
    module = ServingModule(model, data.schema, Calibration("none"), threshold=0.5)
    val_margin, val_y = held_out
    calibration = fit_calibration(config.calibration, val_margin, val_y, shift, seed=config.seed)
    module.set_calibration(calibration)
    # The exported function's own float32 arithmetic, so validation and serving agree.
    val_scores = served_probability(calibration, val_margin)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThresholdWarning)
        choice = choose_threshold(val_y, val_scores, config.threshold_objective)
    for warning in caught:
        print(f"warning: {warning.message}")
    module.threshold.assign(choice.threshold)

    test, test_y = _test_outputs(module, data)
    version_dir = export_version(module, export_base)
    summary = ModelSummary(
        version_dir=version_dir,
        loss=settings.family,
        weights=list(settings.weights),
        weight_ratio=settings.ratio,
        weight_source=settings.source,
        calibration=calibration.to_json(),
        threshold=ThresholdRecord(
            value=choice.threshold, objective=choice.objective, fallback=choice.fallback,
            validation_precision=choice.precision, validation_recall=choice.recall,
            held_out_examples=int(len(val_y)),
            # The precision's sample size on held-out data: the push gate's precision
            # floor adds its uncertainty to the test split's (evaluation/gate.py).
            held_out_flagged=int((val_scores >= choice.threshold).sum())),
        test=test_metrics(test_y, test, choice.threshold),
    )
    return summary, (test["logits"], test_y)


def raw_test_predictions(model, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """A model's raw logits s [N] on the test split and the labels [N], through the exported function's graph
    (without calibration), for a model that is not exported (the weighting study's third variant)."""
    test, test_y = _test_outputs(ServingModule(model, data.schema, Calibration("none"), threshold=0.5), data)
    return test["logits"], test_y


def _test_outputs(module: ServingModule, data: PreparedData) -> tuple[dict, np.ndarray]:
    test_x, test_y = read_serialized(data.pattern("test")), read_labels(data.pattern("test"), data.schema)
    return run_signature(module.serve_examples, test_x), test_y


def test_metrics(labels: np.ndarray, outputs: dict, threshold: float) -> TestMetrics:
    """Minority-class metrics on the test split, before and after calibration."""
    scores, predicted = outputs["scores"], outputs["class_ids"]
    raw = sigmoid(outputs["logits"])  # the weighted model's own, uncorrected probability
    true_pos = int(((predicted == 1) & (labels == 1)).sum())
    return TestMetrics(
        examples=int(labels.size),
        positives=int(labels.sum()),
        pr_auc=float(average_precision_score(labels, scores)),
        roc_auc=float(roc_auc_score(labels, scores)),
        threshold=float(threshold),
        precision=true_pos / max(int(predicted.sum()), 1),
        recall=true_pos / max(int(labels.sum()), 1),
        brier_before=brier_score(labels, raw),
        brier=brier_score(labels, scores),
        ece_before=expected_calibration_error(labels, raw),
        ece=expected_calibration_error(labels, scores),
    )
