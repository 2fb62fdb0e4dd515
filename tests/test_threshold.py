"""Threshold selection against brute force with scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from trainer.config import ConfigError
from trainer.threshold import ThresholdWarning, choose_threshold, operating_points, parse_objective


@pytest.fixture
def scored(rng):
    labels = (rng.random(600) < 0.1).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.35 * labels, 0.15), 0, 1).round(3)  # rounding makes ties
    return labels, scores


def _brute_force(labels, scores):
    rows = []
    for t in np.unique(scores):
        predicted = (scores >= t).astype(int)
        rows.append((t, precision_score(labels, predicted, zero_division=0), recall_score(labels, predicted),
                     f1_score(labels, predicted)))
    return rows


def test_operating_points_match_sklearn(scored):
    labels, scores = scored
    thresholds, precision, recall = operating_points(labels, scores)
    reference = {round(t, 6): (p, r) for t, p, r, _ in _brute_force(labels, scores)}
    for t, p, r in zip(thresholds, precision, recall, strict=True):
        assert (p, r) == pytest.approx(reference[round(t, 6)])


def test_recall_at_precision_is_best_feasible(scored):
    labels, scores = scored
    choice = choose_threshold(labels, scores, "recall_at_precision:0.6")
    feasible = [(r, t) for t, p, r, _ in _brute_force(labels, scores) if p >= 0.6]
    assert choice.recall == pytest.approx(max(feasible)[0])
    predicted = scores >= choice.threshold
    assert precision_score(labels, predicted) >= 0.6
    assert not choice.fallback


def test_f1_and_fbeta(scored):
    labels, scores = scored
    best_f1 = max(f for *_, f in _brute_force(labels, scores))
    choice = choose_threshold(labels, scores, "f1")
    assert f1_score(labels, scores >= choice.threshold) == pytest.approx(best_f1)
    assert choose_threshold(labels, scores, "fbeta:1").threshold == choice.threshold


def test_precision_at_recall(scored):
    labels, scores = scored
    choice = choose_threshold(labels, scores, "precision_at_recall:0.9")
    assert recall_score(labels, scores >= choice.threshold) >= 0.9
    feasible = [p for t, p, r, _ in _brute_force(labels, scores) if r >= 0.9]
    assert choice.precision == pytest.approx(max(feasible))


def test_unreachable_floor_falls_back_to_f1_with_warning(rng):
    labels = (rng.random(300) < 0.1).astype(int)
    scores = rng.random(300)  # uninformative: precision 0.99 is out of reach
    with pytest.warns(ThresholdWarning, match="unreachable"):
        choice = choose_threshold(labels, scores, "recall_at_precision:0.99")
    assert choice.fallback
    assert f1_score(labels, scores >= choice.threshold) == pytest.approx(
        max(f for *_, f in _brute_force(labels, scores)))


@pytest.mark.parametrize("spec,message", [
    ("recall", "unknown threshold objective 'recall': use recall_at_precision:P"),
    ("recall_at_precision", "unknown threshold objective 'recall_at_precision':"),  # P missing
    ("recall_at_precision:1.5", r"1\.5 must be in \(0, 1\]"),
    ("fbeta:-1", "unknown threshold objective 'fbeta:-1':"),  # beta must be > 0
    ("f2", "unknown threshold objective 'f2':"),  # spelled fbeta:2
])
def test_bad_objective_is_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_objective(spec)


@pytest.mark.parametrize("cost_fn,cost_fp", [(10.0, 1.0), (1.0, 1.0), (3.0, 7.0)])
def test_cost_objective_minimizes_expected_cost_like_a_brute_force_search(cost_fn, cost_fp):
    rng = np.random.default_rng(5)
    labels = (rng.random(400) < 0.1).astype(int)
    scores = np.round(rng.random(400) * 0.6 + 0.4 * labels, 2)  # ties on purpose
    choice = choose_threshold(labels, scores, f"cost:{cost_fn:g}:{cost_fp:g}")
    candidates = np.unique(scores)[::-1]  # highest first: ties in cost go to the highest threshold
    costs = [cost_fn * np.sum((scores < t) & (labels == 1)) + cost_fp * np.sum((scores >= t) & (labels == 0))
             for t in candidates]
    assert choice.threshold == candidates[int(np.argmin(costs))]
    assert not choice.fallback


@pytest.mark.parametrize("spec", ["cost", "cost:1", "cost:0:1", "cost:a:b", "cost:1:2:3"])
def test_bad_cost_objectives_are_refused(spec):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="cost:FN:FP"):
        parse_objective(spec)


def test_cost_flags_become_the_cost_objective():
    from trainer.task import parse_args

    assert parse_args(["--cost-fn", "25"])[0].threshold_objective == "cost:25:1"
    assert parse_args(["--cost-fn", "5", "--cost-fp", "2"])[0].threshold_objective == "cost:5:2"
    assert parse_args([])[0].threshold_objective == "recall_at_precision:0.5"
