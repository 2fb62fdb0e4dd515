"""Class weights and imbalance-aware losses over two logits.

Notation (docs/design.md §3): classes 0 = majority, 1 = minority; N_c
training examples of class c; logits z [N, 2]; single logit s = z1 - z0.
Every loss returns the per-example value [N]; Keras averages it over the
batch, which is the original design's "averaged over the batch". For an ensemble's
per-member logits [N, k, 2] it returns [N * k]: each member is trained on its
own loss, and the mean runs over members too.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from trainer.bodies import member_view

DEFAULT_BETA = 0.999


def class_weights(counts: tuple[int, int], scheme: str = "balanced", ratio: float | None = None,
                  beta: float = DEFAULT_BETA) -> np.ndarray:
    """Per-class weights [w0, w1] from the training split's class counts.

    Args:
      counts: (N_0, N_1).
      scheme: `other_class_share` ([N1/N, N0/N]: each class weighted by
        the other class's share, the original design's formula), `balanced` (N / (2 N_c)),
        `effective_number` ((1 - beta) / (1 - beta^N_c), Cui et al. 2019,
        scaled so the mean example weight is 1) or `none`.
      ratio: An explicit r = w1 / w0, overriding `scheme`; scaled so the mean
        example weight is 1, which keeps the loss scale comparable across r.
      beta: The effective-number hyperparameter.
    """
    n0, n1 = (float(c) for c in counts)
    total = n0 + n1
    if ratio is not None:
        w0 = total / (n0 + ratio * n1)
        return np.array([w0, ratio * w0])
    if scheme == "other_class_share":
        minority_share = n1 / total
        return np.array([minority_share, 1.0 - minority_share])
    if scheme == "balanced":
        return np.array([total / (2 * n0), total / (2 * n1)])
    if scheme == "effective_number":
        raw = np.array([(1 - beta) / (1 - beta**n0), (1 - beta) / (1 - beta**n1)])
        return raw * total / (raw[0] * n0 + raw[1] * n1)
    if scheme == "none":
        return np.array([1.0, 1.0])
    raise ValueError(f"unknown weight scheme {scheme!r}")


def _one_hot(y_true, dtype) -> keras.KerasTensor:
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")  # [N]
    return ops.one_hot(labels, 2, dtype=dtype)  # [N, 2]


class WeightedCrossEntropy(keras.losses.Loss):
    """`w[y] * (-z[y] + log(sum_j exp z[j]))` per example (the original design's loss)."""

    def __init__(self, weights=(1.0, 1.0), name="weighted_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in weights]

    def call(self, y_true, y_pred):
        y_true, y_pred = member_view(y_true, y_pred)  # ensemble members: one loss each
        onehot = _one_hot(y_true, y_pred.dtype)  # [N, 2]
        log_probs = ops.log_softmax(y_pred, axis=-1)  # [N, 2]
        weight = ops.sum(onehot * ops.convert_to_tensor(self.class_weights, y_pred.dtype), axis=-1)  # [N]
        return -weight * ops.sum(onehot * log_probs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "weights": self.class_weights}


class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017): `-w[y] (1 - p_y)^gamma log p_y`."""

    def __init__(self, weights=(1.0, 1.0), gamma=2.0, name="focal", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in weights]
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        y_true, y_pred = member_view(y_true, y_pred)  # ensemble members: one loss each
        onehot = _one_hot(y_true, y_pred.dtype)  # [N, 2]
        log_p = ops.sum(onehot * ops.log_softmax(y_pred, axis=-1), axis=-1)  # [N]
        modulator = ops.power(1.0 - ops.exp(log_p), self.gamma)  # [N]
        weight = ops.sum(onehot * ops.convert_to_tensor(self.class_weights, y_pred.dtype), axis=-1)
        return -weight * modulator * log_p

    def get_config(self):
        return {**super().get_config(), "weights": self.class_weights, "gamma": self.gamma}


class LogitAdjustedLoss(keras.losses.Loss):
    """Logit-adjusted cross entropy (Menon et al. 2021).

    Cross entropy of `z + tau * log(prior)`, optionally class-weighted; at
    inference the unadjusted logits z are used.
    """

    def __init__(self, priors=(0.5, 0.5), tau=1.0, weights=(1.0, 1.0), name="logit_adjusted", **kwargs):
        super().__init__(name=name, **kwargs)
        self.priors = [float(p) for p in priors]
        self.tau = float(tau)
        self.class_weights = [float(w) for w in weights]

    def call(self, y_true, y_pred):
        y_true, y_pred = member_view(y_true, y_pred)
        adjustment = self.tau * ops.log(ops.convert_to_tensor(self.priors, y_pred.dtype))  # [2]
        adjusted = y_pred + adjustment  # [N, 2]
        onehot = _one_hot(y_true, y_pred.dtype)
        weight = ops.sum(onehot * ops.convert_to_tensor(self.class_weights, y_pred.dtype), axis=-1)
        return -weight * ops.sum(onehot * ops.log_softmax(adjusted, axis=-1), axis=-1)

    def get_config(self):
        return {**super().get_config(), "priors": self.priors, "tau": self.tau, "weights": self.class_weights}


def make_loss(family: str, weights, priors, gamma: float = 2.0, tau: float = 1.0) -> keras.losses.Loss:
    """The loss for a family name, configured with weights and priors."""
    if family == "weighted_ce":
        return WeightedCrossEntropy(weights)
    if family == "focal":
        return FocalLoss(weights, gamma=gamma)
    if family == "logit_adjusted":
        return LogitAdjustedLoss(priors, tau=tau, weights=weights)
    raise ValueError(f"unknown loss family {family!r}")


def prior_shift(family: str, weights, priors, tau: float = 1.0) -> float | None:
    """The closed-form shift of the single logit s = z1 - z0, if one exists.

    At the population optimum of a class-weighted (and logit-adjusted) cross
    entropy, softmax(z + tau log pi) is proportional to w_y p(y | x), so
    s = logit p(1 | x) + log(w1 / w0) - tau log(pi1 / pi0). Subtracting this
    shift gives calibrated probabilities. Focal loss has no such closed form.
    """
    weight_shift = math.log(weights[1] / weights[0])
    if family == "weighted_ce":
        return weight_shift
    if family == "logit_adjusted":
        return weight_shift - tau * math.log(priors[1] / priors[0])
    return None
