"""Calibration metrics against scikit-learn / NumPy, the corrections, and their choice and export."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from trainer.calibration import (
    CROSS_FIT_FOLDS,
    Calibration,
    brier_score,
    cross_fitted_log_loss,
    expected_calibration_error,
    fit_calibration,
    log_loss,
    served_probability,
    sigmoid,
)


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
    calibration = fit_calibration("platt", distorted, y, shift=None)
    assert calibration.kind == "platt"
    assert calibration.scale == pytest.approx(2.0, rel=0.05)
    assert calibration.offset == pytest.approx(0.5, abs=0.05)


def test_none_and_impossible_prior_shift():
    assert fit_calibration("none", np.zeros(3), np.array([0, 1, 0]), shift=1.0) == Calibration("none")
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_calibration("beta", np.zeros(3), np.array([0, 1, 0]), shift=None)
    with pytest.raises(ValueError, match="no closed-form"):
        fit_calibration("prior_shift", np.zeros(3), np.array([0, 1, 0]), shift=None)


def test_platt_is_the_maximum_likelihood_logistic_fit(rng):
    """Platt's (a, b) against SciPy minimizing the same log-loss directly."""
    from scipy.optimize import minimize

    margin = rng.normal(-1, 2, size=4000)
    y = (rng.random(margin.size) < sigmoid(0.6 * margin - 0.8)).astype(int)
    fitted = fit_calibration("platt", margin, y, shift=None)
    reference = minimize(lambda ab: log_loss(y, sigmoid(ab[0] * margin + ab[1])), x0=[1.0, 0.0], method="BFGS").x
    assert fitted.scale == pytest.approx(reference[0], abs=2e-3)
    assert fitted.offset == pytest.approx(reference[1], abs=2e-3)


def test_isotonic_matches_scikit_learn_inside_and_outside_the_fitted_range(rng):
    from sklearn.isotonic import IsotonicRegression

    margin = rng.normal(0, 2, size=3000)
    y = (rng.random(margin.size) < sigmoid(margin) ** 3).astype(int)  # monotone, not logistic
    fitted = fit_calibration("isotonic", margin, y, shift=None)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(margin, y)
    new = np.concatenate([rng.normal(0, 3, size=2000), [-40.0, 40.0, margin.min(), margin.max()]])
    np.testing.assert_allclose(fitted.apply(new), reference.predict(new), atol=1e-12)
    # The exported float32 graph computes the same map.
    np.testing.assert_allclose(served_probability(fitted, new), reference.predict(new), atol=2e-6)
    assert Calibration.from_json(fitted.to_json()) == fitted


def test_cross_fitted_log_loss_matches_scikit_learn_cross_val_predict(rng):
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss as sklearn_log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    margin = rng.normal(-2, 1.5, size=2000)
    y = (rng.random(margin.size) < sigmoid(margin + 0.7)).astype(int)
    losses = cross_fitted_log_loss(["none", "prior_shift", "platt", "isotonic"], margin, y, shift=0.5, seed=3)
    folds = StratifiedKFold(CROSS_FIT_FOLDS, shuffle=True, random_state=3)
    platt = cross_val_predict(LogisticRegression(C=1e6, max_iter=1000), margin[:, None], y, cv=folds,
                              method="predict_proba")[:, 1]
    iso = cross_val_predict(IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1), margin, y, cv=folds)
    assert losses["platt"] == pytest.approx(sklearn_log_loss(y, platt), rel=1e-6)
    assert losses["isotonic"] == pytest.approx(sklearn_log_loss(y, np.clip(iso, 1e-12, 1 - 1e-12)), rel=1e-6)
    assert losses["none"] == pytest.approx(sklearn_log_loss(y, sigmoid(margin)), rel=1e-9)
    assert losses["prior_shift"] == pytest.approx(sklearn_log_loss(y, sigmoid(margin - 0.5)), rel=1e-9)


def _draw(rng, size, case):
    """(margin the model outputs, labels): the true probability is sigmoid(t) of a latent t."""
    t = rng.normal(-3, 1.8, size=size)
    y = (rng.random(size) < sigmoid(t)).astype(int)
    margin = {"calibrated": t, "weighted": t + np.log(8.0), "overconfident": 2.5 * t + 1.0,
              "monotone": np.cbrt(t) * 3.0}[case]
    return margin, y


@pytest.mark.parametrize("case", ["calibrated", "weighted", "overconfident", "monotone"])
def test_auto_calibration_is_never_worse_than_none_on_held_out_data(rng, case):
    """Chosen on 3,000 held-out examples; judged on 200,000 fresh ones from the same distribution.

    An already calibrated model (a blend of unweighted members, issue 23's case) keeps its
    probabilities up to noise; a weighted, overconfident or non-logistic one is improved.
    """
    margin, y = _draw(rng, 3000, case)
    chosen = fit_calibration("auto", margin, y, shift=np.log(8.0), seed=0)
    assert set(chosen.held_out_log_loss) == {"none", "prior_shift", "platt"}
    assert chosen.held_out_log_loss[chosen.kind] <= chosen.held_out_log_loss["none"]
    fresh_margin, fresh_y = _draw(rng, 200_000, case)
    after, before = chosen.apply(fresh_margin), sigmoid(fresh_margin)
    assert log_loss(fresh_y, after) <= log_loss(fresh_y, before) + 1e-3
    assert brier_score(fresh_y, after) <= brier_score(fresh_y, before) + 1e-4
    if case != "calibrated":
        assert chosen.kind != "none" and log_loss(fresh_y, after) < log_loss(fresh_y, before) - 0.01


def test_auto_keeps_none_when_nothing_beats_it():
    """Ties go to `none`: a constant held-out set where every map scores the same."""
    margin = np.zeros(40)
    y = np.array([0, 1] * 20)
    chosen = fit_calibration("auto", margin, y, shift=None)
    assert chosen.kind == "none" and chosen.held_out_log_loss["none"] == pytest.approx(np.log(2))


def test_too_few_positives_to_cross_fit_keeps_the_parameter_free_maps():
    chosen = fit_calibration("auto", np.array([-2.0, -1.0, 0.5, 3.0]), np.array([0, 0, 0, 1]), shift=0.3)
    assert chosen.kind in ("none", "prior_shift")
    assert chosen.held_out_log_loss["platt"] == np.inf


@pytest.mark.parametrize("case", ["calibrated", "weighted", "overconfident", "monotone"])
def test_auto_calibration_keeps_the_order_of_the_scores(rng, case):
    """The served ranking is the model's own: scikit-learn's AP and ROC-AUC of fresh data are unchanged
    and no two distinct scores become one, while isotonic regression, fit on the same data, ties them."""
    margin, y = _draw(rng, 3000, case)
    fresh_margin, fresh_y = _draw(rng, 50_000, case)
    chosen = fit_calibration("auto", margin, y, shift=np.log(8.0), seed=0)
    after = chosen.apply(fresh_margin)
    assert average_precision_score(fresh_y, after) == pytest.approx(average_precision_score(fresh_y, fresh_margin),
                                                                     abs=1e-12)
    assert roc_auc_score(fresh_y, after) == pytest.approx(roc_auc_score(fresh_y, fresh_margin), abs=1e-12)
    assert np.unique(after).size == np.unique(fresh_margin).size
    tied = fit_calibration("isotonic", margin, y, shift=None).apply(fresh_margin)
    assert average_precision_score(fresh_y, tied) < average_precision_score(fresh_y, fresh_margin) - 0.005


def test_auto_refuses_the_isotonic_map_that_wins_the_log_loss_by_tying_scores(rng):
    """The sylva case: a nearly separable held-out set, where isotonic regression has the lowest
    cross-fitted log-loss with a handful of levels; `auto` keeps the order-keeping map instead."""
    y = (rng.random(3000) < 0.06).astype(int)
    margin = np.where(y == 1, rng.normal(4.0, 1.0, y.size), rng.normal(-4.0, 1.0, y.size)) + 3.0  # overconfident
    losses = cross_fitted_log_loss(["none", "platt", "isotonic"], margin, y, shift=None, seed=0)
    assert losses["isotonic"] < losses["platt"] < losses["none"]  # the log-loss alone would choose isotonic
    chosen = fit_calibration("auto", margin, y, shift=None, seed=0)
    assert chosen.kind == "platt" and chosen.scale > 0
    assert np.unique(chosen.apply(margin)).size == np.unique(margin).size


def test_auto_never_exports_a_reversing_platt_slope(rng):
    """Scores that rank the classes backwards: Platt's best fit has a negative slope, which would
    reverse the served ranking; `auto` keeps an order-keeping map (here `none`)."""
    t = rng.normal(-2, 1.5, size=3000)
    y = (rng.random(t.size) < sigmoid(t)).astype(int)
    reversed_margin = -t
    assert fit_calibration("platt", reversed_margin, y, shift=None).scale < 0
    chosen = fit_calibration("auto", reversed_margin, y, shift=None, seed=0)
    assert chosen.kind == "none" and chosen.held_out_log_loss["platt"] < chosen.held_out_log_loss["none"]


@pytest.mark.parametrize("kind", ["platt", "isotonic", "prior_shift"])
def test_exported_calibration_survives_save_load_predict_exactly(tmp_path, rng, kind):
    """The map lives in the SavedModel: loaded, it gives the module's own scores bit for bit."""
    import keras
    import tensorflow as tf

    from tests.conftest import serialized_example
    from trainer.data.schema import Feature, Schema
    from trainer.export import ServingModule, export_version

    class Linear(keras.Model):
        def call(self, features, training=False):
            x = tf.where(tf.math.is_nan(features["x0"]), 0.0, features["x0"])
            return tf.stack([tf.zeros_like(x), 2.0 * x - 3.0], axis=1)  # single logit 2 x - 3

    schema = Schema(features=(Feature("x0", "numeric"),), label="target")
    x = rng.normal(0, 1.5, size=2000).astype(np.float32)
    y = (rng.random(x.size) < sigmoid(np.cbrt(2 * x - 3))).astype(int)
    calibration = fit_calibration(kind, 2 * x.astype(np.float64) - 3, y, shift=1.2)
    module = ServingModule(Linear(), schema, Calibration("none"), threshold=0.3)
    module.set_calibration(calibration)
    examples = [serialized_example({"x0": float(v)}) for v in rng.normal(0, 2, size=500)]
    before = module.serve_examples(tf.constant(examples))
    loaded = tf.saved_model.load(export_version(module, str(tmp_path / "model")))
    after = loaded.signatures["serving_default"](examples=tf.constant(examples))
    np.testing.assert_array_equal(after["scores"].numpy(), before["scores"].numpy())
    np.testing.assert_array_equal(after["class_ids"].numpy(), (after["scores"].numpy() >= np.float32(0.3)))
    np.testing.assert_array_equal(after["scores"].numpy(), served_probability(calibration, after["logits"].numpy()))
    np.testing.assert_allclose(after["scores"].numpy(), calibration.apply(after["logits"].numpy()), atol=2e-6)
