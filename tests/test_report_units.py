"""Fast tests of what the report shows: bounded intervals, readable slices, non-empty training curves.

No TFMA pipeline and no model training here (tests/test_evaluation.py renders whole reports).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from evaluation import plots
from evaluation.intervals import CLIPPED, LOG, LOGIT, WILSON, bounded_intervals, transformed, wilson_interval
from evaluation.slicing import readable_feature, readable_slice


def figure_points(path: str) -> dict[str, int]:
    """The `Data points` text chunk `evaluation.plots` writes into each PNG: {axis title: points}."""
    with Image.open(path) as image:
        return json.loads(image.text[plots.POINTS_KEY])


@pytest.mark.parametrize("k,n", [(0, 7), (3, 7), (7, 7), (30, 31), (500, 31_000)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    reference = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_the_issue_s_intervals_come_back_inside_zero_one():
    """PR-AUC 0.9819 [0.958, 1.006] and recall [0.974, 1.009] (issue 23) rebuilt inside [0, 1]."""
    metrics = {"pr_auc": 0.9819, "recall": 0.9915, "auc": 1.0, "calibration": 1.02, "tp": 117.0, "fn": 1.0,
               "fp": 3.0, "tn": 5000.0}
    raw = {"pr_auc": [0.958, 1.006], "recall": [0.974, 1.009], "auc": [0.99, 1.01], "calibration": [0.95, 1.09],
           "pr_auc_diff": [-0.2, 1.3]}
    intervals = bounded_intervals(metrics, raw)
    for name, interval in intervals.items():
        low, high = (-1.0, 1.0) if name.endswith("_diff") else (0.0, np.inf if name == "calibration" else 1.0)
        assert low <= interval.lower <= interval.upper <= high, name
        if name in metrics:
            assert interval.lower <= metrics[name] <= interval.upper, name
    assert intervals["recall"].method == WILSON
    assert (intervals["recall"].lower, intervals["recall"].upper) == pytest.approx(wilson_interval(117, 118))
    assert intervals["pr_auc"].method == LOGIT and intervals["pr_auc"].upper < 1.0
    assert intervals["auc"].method == CLIPPED and intervals["auc"].upper == 1.0  # logit(1) does not exist
    assert intervals["calibration"].method == LOG and intervals["pr_auc_diff"].upper == 1.0


def test_the_logit_interval_is_the_delta_method_on_tfma_s_standard_error():
    """Half-width h on the probability scale -> h / (p (1 - p)) on the logit scale, about the point."""
    from scipy.special import expit, logit

    p, h = 0.3, 0.05
    interval = transformed(p, p - h, p + h)
    spread = h / (p * (1 - p))
    assert (interval.lower, interval.upper) == pytest.approx((expit(logit(p) - spread), expit(logit(p) + spread)))
    # Away from the bounds it is close to TFMA's symmetric interval.
    assert interval.lower == pytest.approx(p - h, abs=0.01) and interval.upper == pytest.approx(p + h, abs=0.01)


def test_a_metric_without_a_tfma_interval_gets_none():
    assert bounded_intervals({"recall": 0.5, "tp": 1.0, "fn": 1.0, "fp": 0.0, "tn": 3.0}, {}) == {}


def test_slice_names_are_readable():
    key = (("numerical_grid__imputer__54_bucket", "< 470"),)
    assert readable_slice(key) == "feature 54 < 470"
    assert readable_slice((("x0_bucket", "-1.5..2"),)) == "-1.5 ≤ x0 < 2"
    assert readable_slice((("x0_bucket", ">= 2"),)) == "x0 ≥ 2"
    assert readable_slice((("x0_bucket", "missing"),)) == "x0 missing"
    assert readable_slice((("label", 1),), label="label") == "label = 1 (minority)"
    assert readable_slice((("region", b"north"),)) == "region = north" and readable_slice(()) == "overall"
    assert readable_feature("numerical_grid__imputer__height") == "height"


NEURAL = {"loss": [0.7, 0.5, 0.4], "val_loss": [0.72, 0.6, 0.58], "pr_auc": [0.3, 0.5, 0.6],
          "val_pr_auc": [0.28, 0.45, 0.5], "minority_recall": [0.1, 0.4, 0.6], "val_minority_recall": [0.1, 0.3, 0.5]}
TREES = {"rounds": [3], "round_val_pr_auc": [0.4, 0.55, 0.6, 0.58, 0.57]}


@pytest.mark.parametrize("histories,panels", [
    ({"weighted": NEURAL, "baseline": NEURAL}, 3),
    ({"weighted": TREES, "baseline": TREES}, 1),
    ({"weighted": {**NEURAL, **TREES}, "baseline": NEURAL}, 4),
])
def test_training_curves_draw_only_panels_with_data(tmp_path, histories, panels):
    path = plots.training_curves(histories, str(tmp_path / "training.png"))
    points = figure_points(path)
    assert len(points) == panels and all(count > 0 for count in points.values())
    if "round_val_pr_auc" in histories["weighted"]:
        # Both models' validation curves per round, and the dots at the kept round.
        expected = 2 * (5 + 1) if panels == 1 else 5 + 1  # the blend's baseline is neural only
        assert points["trees: validation PR-AUC per boosting round"] == expected


def test_no_curve_means_no_figure(tmp_path):
    assert plots.training_curves({"weighted": {"rounds": [12]}}, str(tmp_path / "training.png")) is None
    assert not (tmp_path / "training.png").exists()


def test_tree_training_curves_are_the_held_out_average_precision_per_round(rng):
    """The per-round curve the report draws for trees equals scikit-learn's AP of the booster at that round."""
    from sklearn.metrics import average_precision_score

    from trainer.trees import EARLY_STOPPING_ROUNDS, fit_trees, fit_trees_cross_validated

    x = rng.normal(size=(900, 3))
    y = (x[:, 0] + rng.normal(size=900) > 1.5).astype(int)
    params = {"tree_learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 10, "feature_fraction": 1.0,
              "bagging_fraction": 1.0, "tree_l2": 0.0}
    curve: list[float] = []
    booster, rounds = fit_trees(x[:600], y[:600], (1.0, 3.0), params, 0, valid=(x[600:], y[600:]), curve=curve)
    assert len(curve) == rounds + EARLY_STOPPING_ROUNDS  # grown until the patience ran out; the kept round is best
    assert curve[rounds - 1] == max(curve)
    for round_ in (1, rounds // 2 + 1, rounds):
        scores = booster.predict(x[600:], raw_score=True, num_iteration=round_)
        assert curve[round_ - 1] == pytest.approx(average_precision_score(y[600:], scores), abs=1e-9)
    folds = [(np.arange(900)[np.arange(900) % 3 != k], np.arange(900)[np.arange(900) % 3 == k]) for k in range(3)]
    curve = []
    boosters, rounds = fit_trees_cross_validated(x, y, (1.0, 3.0), params, 0, folds, curve=curve)
    last = len(curve)
    expected = np.mean([average_precision_score(y[held], b.predict(x[held], raw_score=True, num_iteration=last))
                        for b, (_, held) in zip(boosters, folds, strict=True)])
    assert curve[-1] == pytest.approx(expected, abs=1e-9) and rounds <= last
