"""Test-split metrics, computed the same way for every contender."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from trainer.threshold import choose_threshold, operating_points

THRESHOLD_OBJECTIVE = "recall_at_precision:0.5"  # the package's default, used for every contender
PRECISION_FLOOR = 0.5
METRICS = ("pr_auc", "roc_auc", "recall_at_p50", "f1_at_threshold", "recall_at_threshold",
           "precision_at_threshold", "brier")
HIGHER_IS_BETTER = {"pr_auc": True, "roc_auc": True, "recall_at_p50": True, "f1_at_threshold": True,
                    "recall_at_threshold": True, "precision_at_threshold": True, "brier": False}


def validation_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The decision threshold chosen on validation (falls back to max F1 when the floor is unreachable)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return choose_threshold(labels, scores, THRESHOLD_OBJECTIVE).threshold


def recall_at_precision(labels: np.ndarray, scores: np.ndarray, floor: float = PRECISION_FLOOR) -> float:
    """The best minority recall over thresholds with precision >= floor on these labels (0 if none)."""
    _, precision, recall = operating_points(labels, scores)
    feasible = precision >= floor
    return float(recall[feasible].max()) if feasible.any() else 0.0


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    true_pos = float((predicted & (labels == 1)).sum())
    denominator = float(predicted.sum() + labels.sum())
    return 2.0 * true_pos / denominator if denominator else 0.0


def recall_precision_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Minority recall and precision of `scores >= threshold` (precision 0 when nothing is predicted positive)."""
    predicted = scores >= threshold
    true_pos = float((predicted & (labels == 1)).sum())
    positives, flagged = float((labels == 1).sum()), float(predicted.sum())
    return (true_pos / positives if positives else 0.0), (true_pos / flagged if flagged else 0.0)


def test_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """PR-AUC, ROC-AUC, recall at precision >= 0.5 (best on test), F1 / recall / precision at the chosen
    threshold, Brier.

    Args:
      labels: int [N] test labels.
      scores: float [N] predicted minority probabilities.
      threshold: The contender's own threshold, chosen on validation.
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    recall, precision = recall_precision_at(labels, scores, threshold)
    return {
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "recall_at_p50": recall_at_precision(labels, scores),
        "f1_at_threshold": f1_at(labels, scores, threshold),
        "recall_at_threshold": recall,
        "precision_at_threshold": precision,
        "brier": float(brier_score_loss(labels, scores)),
        "threshold": float(threshold),
    }
