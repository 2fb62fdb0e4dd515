"""Each loss and weight scheme against an independent NumPy formula."""

import math

import numpy as np
import pytest

from trainer.losses import FocalLoss, LogitAdjustedLoss, WeightedCrossEntropy, class_weights, make_loss, prior_shift


def _np_log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@pytest.fixture
def batch(rng):
    logits = rng.normal(scale=3.0, size=(64, 2)).astype(np.float32)
    labels = (rng.random(64) < 0.2).astype(np.int64)
    return logits, labels


def test_weighted_ce_matches_seed_formula(batch):
    logits, labels = batch
    weights = (0.0615, 0.9385)
    # The original design's formula: w[y] * (-z[y] + log(sum_j exp z[j])), averaged over the batch.
    z = logits.astype(np.float64)
    expected = np.mean([weights[y] * (-z[i, y] + np.log(np.exp(z[i]).sum())) for i, y in enumerate(labels)])
    got = float(WeightedCrossEntropy(weights)(labels, logits))
    assert got == pytest.approx(expected, rel=1e-5)


def test_weighted_ce_accepts_column_labels(batch):
    logits, labels = batch
    loss = WeightedCrossEntropy((1.0, 5.0))
    assert float(loss(labels.reshape(-1, 1), logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)


def test_focal_matches_numpy(batch):
    logits, labels = batch
    weights, gamma = (0.25, 0.75), 2.0
    p = np.exp(_np_log_softmax(logits.astype(np.float64)))[np.arange(len(labels)), labels]
    expected = np.mean(-np.asarray(weights)[labels] * (1 - p) ** gamma * np.log(p))
    assert float(FocalLoss(weights, gamma)(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_focal_with_gamma_zero_is_weighted_ce(batch):
    logits, labels = batch
    weights = (1.0, 4.0)
    focal = float(FocalLoss(weights, gamma=0.0)(labels, logits))
    assert focal == pytest.approx(float(WeightedCrossEntropy(weights)(labels, logits)), rel=1e-6)


def test_logit_adjusted_matches_numpy(batch):
    logits, labels = batch
    priors, tau = (0.94, 0.06), 1.0
    adjusted = logits.astype(np.float64) + tau * np.log(priors)
    expected = np.mean(-_np_log_softmax(adjusted)[np.arange(len(labels)), labels])
    assert float(LogitAdjustedLoss(priors, tau)(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_class_weight_schemes_follow_their_formulas():
    n0, n1 = 12281, 805
    n = n0 + n1
    np.testing.assert_allclose(class_weights((n0, n1), "other_class_share"), [n1 / n, 1 - n1 / n])
    np.testing.assert_allclose(class_weights((n0, n1), "balanced"), [n / (2 * n0), n / (2 * n1)])
    np.testing.assert_allclose(class_weights((n0, n1), "none"), [1.0, 1.0])
    beta = 0.999
    effective = class_weights((n0, n1), "effective_number", beta=beta)
    raw = np.array([(1 - beta) / (1 - beta**n0), (1 - beta) / (1 - beta**n1)])
    assert effective[1] / effective[0] == pytest.approx(raw[1] / raw[0])
    assert (effective[0] * n0 + effective[1] * n1) / n == pytest.approx(1.0)


@pytest.mark.parametrize("ratio", [1.0, 3.5, 15.26, 40.0])
def test_explicit_ratio_keeps_mean_weight_one(ratio):
    n0, n1 = 9000, 600
    w = class_weights((n0, n1), ratio=ratio)
    assert w[1] / w[0] == pytest.approx(ratio)
    assert (w[0] * n0 + w[1] * n1) / (n0 + n1) == pytest.approx(1.0)


def test_balanced_equals_ratio_n0_over_n1():
    np.testing.assert_allclose(class_weights((900, 100), "balanced"), class_weights((900, 100), ratio=9.0))


def test_prior_shift_matches_weighted_logistic_regression(rng):
    """Weighting by r shifts the optimal logit by log r (checked with scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    x = rng.normal(size=(40_000, 1))
    true_logit = 1.5 * x[:, 0] - 3.0
    y = (rng.random(40_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    ratio = 8.0
    fitted = LogisticRegression(C=1e6, class_weight={0: 1.0, 1: ratio}).fit(x, y)
    shift = prior_shift("weighted_ce", class_weights((1, 1), ratio=ratio), (0.5, 0.5))
    assert shift == pytest.approx(math.log(ratio))
    assert fitted.intercept_[0] - shift == pytest.approx(-3.0, abs=0.15)


def test_prior_shift_logit_adjusted_and_focal():
    priors = (0.9, 0.1)
    shift = prior_shift("logit_adjusted", (1.0, 1.0), priors, tau=1.0)
    assert shift == pytest.approx(-math.log(0.1 / 0.9))
    assert prior_shift("focal", (1.0, 2.0), priors) is None


def test_make_loss_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown loss family"):
        make_loss("hinge", (1, 1), (0.5, 0.5))
