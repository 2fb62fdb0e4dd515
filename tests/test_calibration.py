"""Calibration metrics against scikit-learn / NumPy, and the corrections."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from trainer.calibration import Calibration, brier_score, expected_calibration_error, fit_calibration, sigmoid


def test_brier_matches_sklearn(rng):
    y = (rng.random(500) < 0.1).astype(int)
    p = rng.random(500)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))


def test_ece_matches_a_direct_computation(rng):
    y = (rng.random(1000) < 0.3).astype(int)
    p = rng.random(1000)
    edges = np.linspace(0, 1, 16)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        member = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if member.any():
            expected += member.mean() * abs(y[member].mean() - p[member].mean())
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_perfectly_calibrated_scores_have_small_ece(rng):
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01


def test_prior_shift_removes_the_weighting_bias(rng):
    true_margin = rng.normal(-3, 2, size=100_000)
    y = (rng.random(true_margin.size) < sigmoid(true_margin)).astype(int)
    ratio = 10.0
    weighted_margin = true_margin + np.log(ratio)  # what a weighted model learns
    calibration = fit_calibration("auto", weighted_margin, y, shift=np.log(ratio))
    assert calibration.kind == "prior_shift"
    np.testing.assert_allclose(calibration.apply(weighted_margin), sigmoid(true_margin), rtol=1e-9)
    assert brier_score(y, calibration.apply(weighted_margin)) < brier_score(y, sigmoid(weighted_margin))


def test_platt_recovers_an_affine_distortion(rng):
    true_margin = rng.normal(-2, 1.5, size=200_000)
    y = (rng.random(true_margin.size) < sigmoid(true_margin)).astype(int)
    distorted = (true_margin - 0.5) / 2.0  # scale 2, offset 0.5 to undo
    calibration = fit_calibration("auto", distorted, y, shift=None)
    assert calibration.kind == "platt"
    assert calibration.scale == pytest.approx(2.0, rel=0.05)
    assert calibration.offset == pytest.approx(0.5, abs=0.05)


def test_none_and_impossible_prior_shift():
    assert fit_calibration("none", np.zeros(3), np.array([0, 1, 0]), shift=1.0) == Calibration("none")
    with pytest.raises(ValueError, match="no closed-form"):
        fit_calibration("prior_shift", np.zeros(3), np.array([0, 1, 0]), shift=None)
