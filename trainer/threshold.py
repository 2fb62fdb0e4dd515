"""Decision threshold chosen on the validation split for an operating objective.

A threshold t predicts the minority class when score >= t. Candidates are the
distinct validation scores, so every reachable operating point is considered.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np


class ThresholdWarning(UserWarning):
    """The requested operating point is unreachable; a fallback was used."""


@dataclasses.dataclass(frozen=True)
class Objective:
    kind: str  # recall_at_precision | precision_at_recall | fbeta | cost
    value: float  # the floor (precision or recall), beta for fbeta, or cost_fn / cost_fp for cost


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    objective: str
    fallback: bool


def parse_objective(spec: str) -> Objective:
    """Parses `recall_at_precision:P`, `precision_at_recall:R`, `f1`, `fbeta:B` or `cost:FN:FP`.

    `cost:FN:FP` minimizes the expected cost FN x (missed positives) + FP x
    (false alarms); only the ratio FN / FP matters.
    """
    from trainer.config import ConfigError, parse_fraction

    name, _, value = spec.partition(":")
    if name == "f1" and not value:
        return Objective("fbeta", 1.0)
    if name in ("recall_at_precision", "precision_at_recall") and value:
        return Objective(name, parse_fraction(spec, value))
    if name == "cost":
        costs = _positive_numbers(value.split(":"))
        if len(costs) == 2:
            return Objective("cost", costs[0] / costs[1])
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if name == "fbeta" and number > 0:
        return Objective("fbeta", number)
    raise ConfigError(
        f"unknown threshold objective {spec!r}: use recall_at_precision:P, "
        "precision_at_recall:R, f1, fbeta:B or cost:FN:FP"
    )


def operating_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision and recall at every distinct score used as threshold.

    Returns:
      (thresholds, precision, recall), each [K], thresholds descending.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()  # [N]
    scores = np.asarray(scores, dtype=np.float64).ravel()  # [N]
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # The last index of each run of equal scores: all ties go in together.
    last_of_run = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_run]  # [K]
    predicted_pos = last_of_run + 1  # [K]
    precision = true_pos / predicted_pos
    recall = true_pos / max(int(labels.sum()), 1)
    return sorted_scores[last_of_run], precision, recall


def choose_threshold(labels: np.ndarray, scores: np.ndarray, spec: str) -> ThresholdChoice:
    """Chooses the threshold that best meets the objective on (labels, scores).

    Falls back to the max-F1 threshold, with a `ThresholdWarning`, when a
    precision or recall floor cannot be reached.
    """
    objective = parse_objective(spec)
    thresholds, precision, recall = operating_points(labels, scores)
    if objective.kind == "fbeta":
        index = _best_fbeta(precision, recall, objective.value)
        return _choice(thresholds, precision, recall, index, spec, fallback=False)
    if objective.kind == "cost":
        positives = float(np.sum(labels))
        true_pos = recall * positives  # [K]
        # Examples flagged at each threshold (score >= t): a count precision cannot give when it is 0.
        flagged = np.searchsorted(np.sort(-np.asarray(scores, dtype=np.float64).ravel()), -thresholds, side="right")
        cost = objective.value * (positives - true_pos) + (flagged - true_pos)  # in units of one false alarm
        # The lowest expected cost; among ties the highest threshold (argmin takes the first).
        index = int(np.argmin(cost))
        return _choice(thresholds, precision, recall, index, spec, fallback=False)
    if objective.kind == "recall_at_precision":
        feasible, target = precision >= objective.value, recall
    else:
        feasible, target = recall >= objective.value, precision
    if not feasible.any():
        warnings.warn(
            f"{spec}: the floor is unreachable on validation; falling back to max F1",
            ThresholdWarning,
            stacklevel=2,
        )
        index = _best_fbeta(precision, recall, 1.0)
        return _choice(thresholds, precision, recall, index, spec, fallback=True)
    candidates = np.nonzero(feasible)[0]
    # Best target; among ties the highest threshold (fewest false alarms).
    index = candidates[np.argmax(target[candidates])]
    return _choice(thresholds, precision, recall, index, spec, fallback=False)


def _positive_numbers(parts: list[str]) -> list[float]:
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return []
    return numbers if all(n > 0 for n in numbers) else []


def _best_fbeta(precision: np.ndarray, recall: np.ndarray, beta: float) -> int:
    b2 = beta * beta
    denominator = b2 * precision + recall
    fbeta = np.where(denominator > 0, (1 + b2) * precision * recall / np.maximum(denominator, 1e-12), 0.0)
    return int(np.argmax(fbeta))


def _choice(thresholds, precision, recall, index, spec, fallback) -> ThresholdChoice:
    return ThresholdChoice(
        threshold=float(thresholds[index]),
        precision=float(precision[index]),
        recall=float(recall[index]),
        objective=spec,
        fallback=fallback,
    )
