"""Ensemble selection over trials, the portfolio, the time budget and the search space's ranges."""

import itertools

import keras_tuner as kt
import numpy as np
import pytest

from trainer.hparams import declare_all
from tuning import search
from tuning.ensemble import HeldOut, load_held_out, save_held_out, select_ensemble
from tuning.portfolio import PORTFOLIO, portfolio_name, portfolio_values

COUNTS = (900, 100)


def numpy_average_precision(labels, scores):
    """Average precision for untied scores: the mean over positives of the precision at their rank."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits == 1].sum() / hits.sum())


def reference_selection(probabilities, labels, rounds):
    """Caruana's forward selection with replacement, written plainly (the reference)."""
    names = sorted(probabilities, key=lambda n: (-numpy_average_precision(labels, probabilities[n]), n))
    chosen, path = [], []
    for _ in range(rounds):
        scored = [(numpy_average_precision(labels, np.mean([probabilities[c] for c in chosen + [n]], axis=0)), n)
                  for n in names]
        best = max(score for score, _ in scored)
        name = next(n for score, n in scored if score == best)
        chosen.append(name)
        path.append(best)
    size = path.index(max(path)) + 1
    return {n: chosen[:size].count(n) / size for n in set(chosen[:size])}, max(path)


@pytest.fixture
def held_out(rng):
    labels = (rng.random(300) < 0.15).astype(np.int64)
    # Three noisy views of the label with independent noise (a mean ranks better than any one) and a useless one.
    margins = {str(i): labels * 1.2 + rng.normal(size=300) for i in range(3)}
    margins["3"] = rng.normal(size=300)
    return HeldOut(labels, None, margins)


def test_selection_matches_a_plain_numpy_reference(held_out):
    selection = select_ensemble(held_out, "pr_auc", rounds=12, max_members=4)
    probabilities = {n: 1 / (1 + np.exp(-m)) for n, m in held_out.margins.items()}
    weights, score = reference_selection(probabilities, held_out.labels, rounds=12)
    assert selection.weights == pytest.approx(weights)
    assert selection.score == pytest.approx(score)
    assert "3" not in selection.weights  # the useless trial adds nothing
    assert len(selection.weights) >= 2 and selection.score > max(selection.single_scores.values())


def test_selection_is_never_worse_than_the_best_single_trial_nor_better_than_exhaustive_search(held_out):
    selection = select_ensemble(held_out, "pr_auc", rounds=4, max_members=4)
    probabilities = {n: 1 / (1 + np.exp(-m)) for n, m in held_out.margins.items()}
    exhaustive = max(numpy_average_precision(held_out.labels, np.mean([probabilities[n] for n in bag], axis=0))
                     for size in range(1, 5) for bag in itertools.combinations_with_replacement(sorted(probabilities),
                                                                                                size))
    assert max(selection.single_scores.values()) <= selection.score <= exhaustive + 1e-12
    assert sum(selection.weights.values()) == pytest.approx(1.0)


def test_selection_caps_the_number_of_distinct_members(held_out):
    selection = select_ensemble(held_out, "pr_auc", rounds=25, max_members=1)
    best = max(held_out.margins, key=lambda n: numpy_average_precision(held_out.labels, held_out.margins[n]))
    assert selection.weights == {best: 1.0}


def test_held_out_predictions_round_trip_with_their_folds(tmp_path, rng):
    labels = (rng.random(40) < 0.3).astype(np.int64)
    folds = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    save_held_out(str(tmp_path), "00", rng.normal(size=40), labels, folds)
    save_held_out(str(tmp_path), "01", rng.normal(size=40), labels, folds)
    loaded = load_held_out(str(tmp_path), ["00", "01", "02"])  # 02 failed: no file
    assert sorted(loaded.margins) == ["00", "01"]
    np.testing.assert_array_equal(loaded.labels, labels)
    assert [f.tolist() for f in loaded.folds] == [f.tolist() for f in folds]


def _oracle(tmp_path, kind="random", max_trials=20):
    space = declare_all(COUNTS)
    objective = kt.Objective("val_pr_auc", "max")
    if kind == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(objective=objective, max_trials=max_trials,
                                                       hyperparameters=space, num_initial_points=1, seed=0)
    else:
        oracle = kt.oracles.RandomSearchOracle(objective=objective, max_trials=max_trials, hyperparameters=space,
                                               seed=0)
    oracle._set_project_dir(str(tmp_path), "search")
    return oracle


def _run(oracle, trials):
    """Asks the oracle for trials and ends each with a score; returns the trials it started."""
    started = []
    for index in range(trials):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        oracle.update_trial(trial.trial_id, {"val_pr_auc": 0.1 + 0.01 * index})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        started.append(trial)
    return started


def test_the_first_trials_are_the_portfolio_in_order(tmp_path):
    oracle = _oracle(tmp_path)
    search.start_with_portfolio(oracle, COUNTS)
    trials = _run(oracle, len(PORTFOLIO) + 2)
    defaults = declare_all(COUNTS).values
    for trial, values, entry in zip(trials, portfolio_values(defaults, COUNTS), PORTFOLIO, strict=False):
        assert trial.hyperparameters.values == values
        assert portfolio_name(trial.hyperparameters.values, COUNTS, defaults) == entry.name
    balanced = COUNTS[0] / COUNTS[1]
    ratios = {e.name: v["weight_ratio"] for e, v in zip(PORTFOLIO, portfolio_values(defaults, COUNTS), strict=True)}
    assert ratios["lightgbm_defaults"] == balanced and ratios["trees_unweighted"] == 1.0
    assert ratios["tabm_ple"] == pytest.approx(balanced ** 0.5)
    # Cheapest first: a budget's prefix holds every tree and linear entry before the neural default.
    names = [entry.name for entry in PORTFOLIO]
    assert names[0] == "lightgbm_defaults" and names[-1] == "tabm_ple"
    assert len(trials) == len(PORTFOLIO) + 2  # the search goes on after the portfolio


def test_the_time_budget_stops_scheduling_trials(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(search.time, "monotonic", lambda: clock[0])
    oracle = _oracle(tmp_path)
    search.start_with_portfolio(oracle, COUNTS, deadline=clock[0] + 60.0)
    assert len(_run(oracle, 2)) == 2
    clock[0] += 59.0
    assert len(_run(oracle, 1)) == 1  # within the budget: one more starts
    clock[0] += 1.0
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert len(oracle.trials) == 3


def test_keras_tuner_can_leave_the_range_and_the_search_cannot(tmp_path):
    space = declare_all(COUNTS)
    numeric = [hp for hp in space.space if isinstance(hp, kt.engine.hyperparameters.Int | kt.engine.hyperparameters.Float)]
    # keras-tuner's own mapping of the optimizer's upper edge (probability 1.0) leaves an Int's range.
    leaves = next(hp for hp in numeric if hp.name == "num_leaves")
    assert leaves.prob_to_value(1.0) == leaves.max_value + 1
    for edge in (0.0, 1.0):
        values = {hp.name: hp.prob_to_value(edge) for hp in numeric}
        bounded = search.within_ranges(space, values)
        for hp in numeric:
            assert hp.min_value <= bounded[hp.name] <= hp.max_value, hp.name
    # And through a real Bayesian oracle driven to its upper edges.
    oracle = _oracle(tmp_path, "bayesian")
    original = oracle.populate_space
    oracle.populate_space = lambda trial_id: {"status": "RUNNING", "values": {
        **original(trial_id)["values"], **{hp.name: hp.prob_to_value(1.0) for hp in numeric}}}
    search.start_with_portfolio(oracle, COUNTS, portfolio=False)
    for trial in _run(oracle, 3):
        for hp in numeric:
            assert hp.min_value <= trial.hyperparameters.values[hp.name] <= hp.max_value, hp.name


def test_an_execution_without_saved_held_out_predictions_exports_its_best_trial(tmp_path):
    """A search resumed from a version that kept no held-out predictions: the best trial alone, not a crash."""
    from types import SimpleNamespace

    from trainer.config import RunConfig
    from tuning.pipeline import select_members

    def trial(trial_id, score, family):
        values = {**declare_all(COUNTS).values, "model_family": family}
        return SimpleNamespace(trial_id=trial_id, status="COMPLETED", score=score,
                               hyperparameters=SimpleNamespace(values=values))

    tuner = SimpleNamespace(oracle=SimpleNamespace(trials={"0": trial("0", 0.4, "neural"), "1": trial("1", 0.6, "trees")}))
    data = SimpleNamespace(train_counts=COUNTS)
    selection, members = select_members(tuner, data, RunConfig(output_dir=str(tmp_path)))
    assert selection.weights == {"1": 1.0} and [(m.trial, m.weight, m.name) for m in members] == [("1", 1.0, "trees")]


@pytest.mark.parametrize("selection", ["validation", "cross_validation"])
def test_a_neural_trial_running_at_the_deadline_stops_after_its_epoch(tiny_run, monkeypatch, selection):
    """The time budget reaches into the running trial: it ends after the epoch the deadline passed in
    (each later fold trains one epoch) with a restored epoch from before it, and says so."""
    import types

    from trainer import train as train_lib
    from trainer.candidates import Splits, train_candidate
    from trainer.data.prepare import prepare_data
    from trainer.hparams import with_values

    config, _, _ = tiny_run
    # Patience beyond the epochs: early stopping cannot end these fits first; 3 folds keep the test short.
    config = config.replace(selection=selection, patience=30, cv_folds=3)
    data = prepare_data(config)  # the shared run's prepared data, reused read-only
    hp = with_values(data.train_counts, {"body": "mlp", "width": 32, "depth": 1})
    settings = train_lib.fit_settings(hp, data.train_counts, config)
    splits = Splits(data, config)
    assert splits.cross_validation == (selection == "cross_validation")
    ticks = iter(range(10, 10_000, 10))  # each epoch's end reads the clock once: 10 s, 20 s, 30 s, ...
    monkeypatch.setattr(train_lib, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))
    cut = train_candidate(hp, settings, data, config, 6, splits, deadline=25.0)  # 6 epochs allowed
    epochs = cut.info["cross_validation"]["epochs_run"] if splits.cross_validation else [cut.info["epochs_run"]]
    assert epochs == ([3, 1, 1] if splits.cross_validation else [3])
    assert cut.info["stopped_by_deadline"]
    assert max(cut.info["best_epochs"]) <= 3  # the restored epoch is one that ran before the deadline
