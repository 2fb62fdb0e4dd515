"""The tuned tree contenders' trial scoring (benchmarks/selection.py, benchmarks/tuned.py) on tiny data."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from benchmarks import selection, tuned
from benchmarks.datasets import Dataset
from trainer.data.split import assign_splits

SPLIT = (0.7, 0.15, 0.15)


def tiny(rows: int = 400, rate: float = 0.1, seed: int = 7) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < rate).astype(np.int64)
    features = pd.DataFrame({"a": rng.normal(size=rows) + 1.5 * labels, "b": rng.normal(size=rows),
                             "c": rng.normal(size=rows) - 0.5 * labels})
    features.loc[rng.random(rows) < 0.05, "b"] = np.nan
    return Dataset("tiny", features, labels, "test")


def test_selection_folds_are_stratified_kfold_over_trainval_rows_in_order():
    data = tiny()
    assignment = assign_splits(data.labels, SPLIT, 3)
    rows = selection.trainval_rows(assignment)
    assert np.array_equal(rows, np.flatnonzero(assignment != 2)) and np.all(np.diff(rows) > 0)
    labels = data.labels[rows]
    folds = selection.selection_folds(labels, 3)
    reference = StratifiedKFold(n_splits=5, shuffle=True, random_state=3).split(np.zeros(labels.size), labels)
    assert len(folds) == selection.CV_FOLDS == 5
    for (fit, held_out), (ref_fit, ref_held_out) in zip(folds, reference, strict=True):
        assert np.array_equal(fit, ref_fit) and np.array_equal(held_out, ref_held_out)
    held = np.concatenate([h for _, h in folds])
    assert np.array_equal(np.sort(held), np.arange(labels.size))  # every row held out exactly once
    positives = [int(labels[h].sum()) for _, h in folds]
    assert max(positives) - min(positives) <= 1  # stratified
    assert all(np.intersect1d(f, h).size == 0 for f, h in folds)
    other_seed = selection.selection_folds(labels, 4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other_seed, strict=True))


def test_selection_mode_threshold_is_fifty_validation_positives():
    assignment = np.array([1] * 120 + [0] * 10 + [2] * 10)
    labels = np.zeros(140, dtype=np.int64)
    labels[:49] = 1
    assert selection.selection_mode(labels, assignment) == "cv"
    labels[49] = 1
    assert selection.selection_mode(labels, assignment) == "validation"
    labels[120:] = 1  # train and test positives do not count
    labels[49] = 0
    assert selection.selection_mode(labels, assignment) == "cv"


def _cv_reference(data, assignment, seed, fit_predict):
    rows = np.flatnonzero(assignment != 2)
    x, y = data.features.iloc[rows], data.labels[rows]
    scores = []
    for fit, held in StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(np.zeros(y.size), y):
        predicted = fit_predict(x.iloc[fit], y[fit], x.iloc[held], y[held])
        scores.append(average_precision_score(y[held], predicted))
    return float(np.mean(scores)), scores


@pytest.mark.slow  # trains LightGBM / YDF
def test_lightgbm_objective_in_cv_mode_is_the_mean_fold_average_precision():
    import lightgbm
    import optuna

    data, seed = tiny(), 1
    assignment = assign_splits(data.labels, SPLIT, seed)
    params = {"num_leaves": 4, "learning_rate": 0.2, "min_child_samples": 5, "feature_fraction": 1.0,
              "bagging_fraction": 0.8, "lambda_l2": 1.0, "scale_pos_weight": 3.0}
    family = tuned.LightGBMFamily(max_trees=6, threads=1)
    objective = tuned.Objective(family, family.prepare(data.features), data.labels, assignment, seed)
    assert objective.mode == "cv"
    score = objective(optuna.trial.FixedTrial(params))

    def fit_predict(x, y, x_held, y_held):
        model = lightgbm.LGBMClassifier(
            n_estimators=6, num_leaves=4, learning_rate=0.2, min_child_samples=5, colsample_bytree=1.0,
            subsample=0.8, subsample_freq=1, reg_lambda=1.0, scale_pos_weight=3.0, metric="average_precision",
            random_state=seed, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
        model.fit(x, y, eval_X=x_held, eval_y=y_held, callbacks=[lightgbm.early_stopping(50, verbose=False)])
        return model.predict_proba(x_held)[:, 1]

    expected, folds = _cv_reference(data, assignment, seed, fit_predict)
    assert score == pytest.approx(expected, abs=1e-12)
    assert objective.trials[0]["fold_scores"] == pytest.approx(folds, abs=1e-12)


@pytest.mark.slow  # trains LightGBM / YDF
def test_ydf_objective_in_cv_mode_is_the_mean_fold_average_precision():
    import optuna
    import ydf

    data, seed = tiny(), 2
    assignment = assign_splits(data.labels, SPLIT, seed)
    params = {"num_trees": 5, "shrinkage": 0.1, "max_depth": 3, "min_examples": 5, "subsample": 1.0,
              "l2_regularization": 0.01, "positive_weight": 4.0}
    family = tuned.YDFFamily(max_trees=5, threads=1)
    objective = tuned.Objective(family, family.prepare(data.features), data.labels, assignment, seed)
    score = objective(optuna.trial.FixedTrial(params))

    def fit_predict(x, y, x_held, y_held):
        ydf.verbose(0)
        frame = x.copy()
        frame["target"] = y
        model = ydf.GradientBoostedTreesLearner(
            label="target", task=ydf.Task.CLASSIFICATION, num_trees=5, shrinkage=0.1, max_depth=3, min_examples=5,
            subsample=1.0, l2_regularization=0.01, class_weights={"0": 1.0, "1": 4.0}, early_stopping="NONE",
            validation_ratio=0.0, random_seed=seed, num_threads=1).train(frame, verbose=0)
        return model.predict(x_held)

    expected, _ = _cv_reference(data, assignment, seed, fit_predict)
    assert score == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow  # trains LightGBM / YDF
def test_validation_mode_scores_validation_and_keeps_the_model():
    import optuna

    data = tiny(rows=4000, rate=0.12)  # ~72 validation positives
    assignment = assign_splits(data.labels, SPLIT, 0)
    family = tuned.LightGBMFamily(max_trees=4, threads=1)
    objective = tuned.Objective(family, family.prepare(data.features), data.labels, assignment, 0)
    assert objective.mode == "validation"
    params = {"num_leaves": 4, "learning_rate": 0.2, "min_child_samples": 5, "feature_fraction": 1.0,
              "bagging_fraction": 1.0, "lambda_l2": 1.0, "scale_pos_weight": 2.0}
    score = objective(optuna.trial.FixedTrial(params))
    kept = objective.trials[0]
    val = assignment == 1
    assert score == pytest.approx(average_precision_score(data.labels[val], kept["validation_scores"]))
    assert np.allclose(family.predict(kept["model"], data.features[val]), kept["validation_scores"])


@pytest.mark.slow  # trains LightGBM / YDF
def test_tune_is_deterministic_and_thresholds_on_out_of_fold_predictions():
    from benchmarks.metrics import validation_threshold

    data = tiny()
    assignment = assign_splits(data.labels, SPLIT, 0)
    family = tuned.LightGBMFamily(max_trees=5, threads=1)
    first = tuned.tune(family, data, assignment, 0, trials=2)
    second = tuned.tune(family, data, assignment, 0, trials=2)
    assert first["selection"] == "cv5" and first["trials"] == 2 and len(first["fold_scores"]) == 5
    assert first["hyperparameters"] == second["hyperparameters"]
    assert np.array_equal(first["scores"], second["scores"]) and first["threshold"] == second["threshold"]
    assert np.array_equal(first["labels"], data.labels[assignment == 2])
    assert 1 <= first["trees"] <= 5
    assert first["selection_score"] == pytest.approx(np.mean(first["fold_scores"]), abs=1e-4)
    # the threshold is the package's rule on the best trial's out-of-fold predictions
    objective = tuned.Objective(family, family.prepare(data.features), data.labels, assignment, 0)
    import optuna

    objective(optuna.trial.FixedTrial(first["hyperparameters"]))
    rows = selection.trainval_rows(assignment)
    assert first["threshold"] == validation_threshold(data.labels[rows], objective.trials[0]["oof"])
