"""Calibrated probabilities for a class-weighted model.

Weighting by r = w1 / w0 shifts the model's single logit s = z1 - z0 by about
log r. The correction is an affine map of s, `a * s + b`: the closed-form
prior shift (a = 1, b = -shift) where the loss has one, else Platt scaling fit
on the validation split.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Calibration:
    kind: str  # "prior_shift" | "platt" | "none"
    scale: float = 1.0
    offset: float = 0.0

    def apply(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated minority probability [N] from single logits s [N]."""
        return sigmoid(self.scale * np.asarray(margin, np.float64) + self.offset)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def fit_calibration(kind: str, margin: np.ndarray, labels: np.ndarray, shift: float | None) -> Calibration:
    """Chooses and fits the correction.

    Args:
      kind: `auto`, `prior_shift`, `platt` or `none`.
      margin: Validation single logits s [N].
      labels: Validation labels [N].
      shift: The loss's closed-form shift, or None when it has none.
    """
    if kind == "none":
        return Calibration("none")
    if kind in ("auto", "prior_shift") and shift is not None:
        return Calibration("prior_shift", 1.0, -float(shift))
    if kind == "prior_shift":
        raise ValueError("this loss has no closed-form prior shift; use calibration 'platt' or 'auto'")
    return platt(margin, labels)


def platt(margin: np.ndarray, labels: np.ndarray) -> Calibration:
    """Platt scaling: logistic regression of the labels on s (nearly unregularised)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(margin, np.float64).reshape(-1, 1), np.asarray(labels))
    return Calibration("platt", float(model.coef_[0, 0]), float(model.intercept_[0]))


def brier_score(labels: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared error of the minority probability."""
    return float(np.mean((np.asarray(probability, np.float64) - np.asarray(labels, np.float64)) ** 2))


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width probability bins: sum_b |B|/N * |mean(y) - mean(p)|."""
    probability = np.asarray(probability, np.float64)
    labels = np.asarray(labels, np.float64)
    index = np.minimum((probability * bins).astype(int), bins - 1)  # [N] bin of each example
    total = 0.0
    for b in range(bins):
        member = index == b
        if member.any():
            total += member.mean() * abs(labels[member].mean() - probability[member].mean())
    return float(total)
