"""Tuned tree contenders: LightGBM and YDF gradient boosted trees, tuned with Optuna.

Each gets the package tuner's budget (`selection.TUNING_TRIALS` trials) and
its selection rule (`benchmarks.selection`): a trial is scored by mean
minority-class average precision over stratified 5-fold CV of the train +
validation rows when validation holds fewer than 50 positives, else by average
precision on validation after training on train. Optuna's TPE sampler is
seeded with the run seed; its first trial is the library's own default
configuration (`DEFAULTS`, enqueued: tuning starts from what a user would try
first, so it can only move away from the defaults if a trial scores better),
then random trials up to min(3, trials) in all, like the package's Bayesian
tuner (`num_initial_points=3`), then TPE.

The final model:
- CV mode: the best trial's parameters refit on all train + validation rows
  (LightGBM: with the mean of the folds' early-stopped iteration counts);
  threshold chosen on that trial's out-of-fold predictions;
- validation mode: the best trial's model itself (trained on train),
  threshold chosen on validation.
Thresholds come from `benchmarks.metrics.validation_threshold`, the package's
own rule. Class weighting (`scale_pos_weight` / YDF `class_weights`) is a
tuned parameter, from 1 to N0/N1 of the train split on a log scale.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from benchmarks.datasets import Dataset
from benchmarks.metrics import validation_threshold
from benchmarks.selection import (
    CV_FOLDS,
    TEST,
    TRAIN,
    TUNING_TRIALS,
    VALIDATION,
    selection_folds,
    selection_mode,
    trainval_rows,
)

# One thread each: the machine's 2 cores are shared with other jobs, and under that load a LightGBM fit on
# abalone19 took 3.2 s with 2 threads vs 1.1 s with 1 (YDF 4.5 s vs 3.4 s). YDF's trees depend on the thread
# count, so it is fixed here for reproducibility.
THREADS = 1
LABEL = "target"

# Each library's defaults in the search's parameter names: the first trial. Where a default lies outside the
# (log-scaled) range, the range's floor stands for it: LightGBM's lambda_l2 and YDF's l2_regularization are 0
# by default, and neither library weights classes by default (weight 1). LightGBM's 100 default trees are
# replaced by early stopping here, like every trial's.
DEFAULTS = {
    "lightgbm_tuned": {"num_leaves": 31, "learning_rate": 0.1, "min_child_samples": 20, "feature_fraction": 1.0,
                       "bagging_fraction": 1.0, "lambda_l2": 1e-3, "scale_pos_weight": 1.0},
    "ydf_gbt_tuned": {"num_trees": 300, "shrinkage": 0.1, "max_depth": 6, "min_examples": 5, "subsample": 1.0,
                      "l2_regularization": 1e-4, "positive_weight": 1.0},
}


# ----------------------------------------------------------------------------- model families

class LightGBMFamily:
    """LGBMClassifier; trees by early stopping (patience 50) on the held-out part's average precision."""

    name = "lightgbm_tuned"

    def __init__(self, max_trees: int = 1000, patience: int = 50, threads: int = THREADS):
        self.max_trees, self.patience, self.threads = max_trees, patience, threads

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        frame = features.copy()
        for column in frame.columns:  # native categorical handling; NaN stays missing
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = pd.Categorical(frame[column])
        return frame

    def suggest(self, trial, ratio_max: float) -> dict:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 2, 100, log=True),
            "colsample_bytree": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "subsample": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
            "scale_pos_weight": trial.suggest_float("scale_pos_weight", 1.0, ratio_max, log=True),
        }

    def _model(self, params: dict, seed: int, trees: int):
        import lightgbm

        return lightgbm.LGBMClassifier(
            n_estimators=trees, subsample_freq=1, metric="average_precision", n_jobs=self.threads,
            random_state=seed, deterministic=True, force_row_wise=True, verbose=-1, **params)

    def fit(self, params: dict, x, y, seed: int, stop=None, trees: int | None = None):
        """Fits; with `stop=(x, y)` early-stops on it. Returns (model, trees used)."""
        import lightgbm

        model = self._model(params, seed, trees or self.max_trees)
        if stop is None:
            model.fit(x, y)
            return model, model.n_estimators
        model.fit(x, y, eval_X=stop[0], eval_y=stop[1], callbacks=[lightgbm.early_stopping(self.patience, verbose=False)])
        return model, int(model.best_iteration_ or model.n_estimators)

    def predict(self, model, x) -> np.ndarray:
        return model.predict_proba(x)[:, 1]

    def refit_trees(self, fold_trees: list[int]) -> int:
        return max(1, int(round(float(np.mean(fold_trees)))))


class YDFFamily:
    """ydf.GradientBoostedTreesLearner; the number of trees is a tuned parameter (no early stopping).

    YDF's own early stopping watches the (class-weighted) validation log loss,
    which stopped weighted models after a few dozen trees at a clearly worse
    average precision in a trial run; tuning num_trees with the shrinkage
    avoids that and needs no refit rule.
    """

    name = "ydf_gbt_tuned"

    def __init__(self, max_trees: int = 500, threads: int = THREADS):
        self.max_trees, self.threads = max_trees, threads

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        return features

    def suggest(self, trial, ratio_max: float) -> dict:
        return {
            "num_trees": trial.suggest_int("num_trees", min(20, self.max_trees), self.max_trees, log=True),
            "shrinkage": trial.suggest_float("shrinkage", 0.02, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "min_examples": trial.suggest_int("min_examples", 2, 50, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
            "positive_weight": trial.suggest_float("positive_weight", 1.0, ratio_max, log=True),
        }

    def fit(self, params: dict, x, y, seed: int, stop=None, trees: int | None = None):
        import ydf

        ydf.verbose(0)
        params = dict(params)
        weight = params.pop("positive_weight")
        learner = ydf.GradientBoostedTreesLearner(
            label=LABEL, task=ydf.Task.CLASSIFICATION, class_weights={"0": 1.0, "1": float(weight)},
            early_stopping="NONE", validation_ratio=0.0, random_seed=seed, num_threads=self.threads, **params)
        frame = x.copy()
        frame[LABEL] = np.asarray(y, dtype=np.int64)
        model = learner.train(frame, verbose=0)
        if list(model.label_classes()) != ["0", "1"]:
            raise AssertionError(f"unexpected YDF label classes {model.label_classes()}")
        return model, int(model.num_trees())

    def predict(self, model, x) -> np.ndarray:
        return np.asarray(model.predict(x), dtype=np.float64)  # P(label_classes()[1]) = P(1)

    def refit_trees(self, fold_trees: list[int]) -> int | None:
        return None  # num_trees is a parameter: the refit uses it as is


FAMILIES = {"lightgbm_tuned": LightGBMFamily, "ydf_gbt_tuned": YDFFamily}


# ----------------------------------------------------------------------------- the trial score

class Objective:
    """`objective(trial) -> score` for Optuna; keeps what the final model needs of each trial.

    Args:
      family: A model family (above).
      features: The family's prepared features, all rows in dataset order.
      labels: int [N] 0/1.
      assignment: `assign_splits` output (0 train, 1 validation, 2 test).
      seed: Seed of the folds and the models.
    """

    def __init__(self, family, features: pd.DataFrame, labels: np.ndarray, assignment: np.ndarray, seed: int):
        self.family, self.features, self.labels, self.seed = family, features, np.asarray(labels), seed
        self.assignment = np.asarray(assignment)
        self.mode = selection_mode(self.labels, self.assignment)
        train = self.labels[self.assignment == TRAIN]
        self.ratio_max = max(1.0, float((train == 0).sum()) / float(max(1, (train == 1).sum())))
        self.trainval = trainval_rows(self.assignment)
        self.folds = selection_folds(self.labels[self.trainval], seed) if self.mode == "cv" else None
        self.trials: dict[int, dict] = {}  # trial number -> {"params", "fold_scores", "oof" | "model", ...}
        self.best_number: int | None = None

    def __call__(self, trial) -> float:
        params = self.family.suggest(trial, self.ratio_max)
        if self.mode == "cv":
            record = self._cross_validate(params)
        else:
            record = self._validate(params)
        self.trials[trial.number] = record
        if self.best_number is None or record["score"] > self.trials[self.best_number]["score"]:
            if self.best_number is not None:
                self.trials[self.best_number].pop("model", None)  # keep one fitted model only
            self.best_number = trial.number
        else:
            record.pop("model", None)
        return record["score"]

    def _cross_validate(self, params: dict) -> dict:
        rows, labels = self.trainval, self.labels[self.trainval]
        oof = np.zeros(rows.size)
        scores, trees = [], []
        for fit, held_out in self.folds:
            x_fit, x_out = self.features.iloc[rows[fit]], self.features.iloc[rows[held_out]]
            model, used = self.family.fit(params, x_fit, labels[fit], self.seed, stop=(x_out, labels[held_out]))
            oof[held_out] = self.family.predict(model, x_out)
            scores.append(float(average_precision_score(labels[held_out], oof[held_out])))
            trees.append(used)
        return {"params": params, "score": float(np.mean(scores)), "fold_scores": scores, "fold_trees": trees,
                "oof": oof}

    def _validate(self, params: dict) -> dict:
        train, val = self.assignment == TRAIN, self.assignment == VALIDATION
        x_val, y_val = self.features[val], self.labels[val]
        model, used = self.family.fit(params, self.features[train], self.labels[train], self.seed,
                                      stop=(x_val, y_val))
        scores = self.family.predict(model, x_val)
        return {"params": params, "score": float(average_precision_score(y_val, scores)), "trees": used,
                "model": model, "validation_scores": scores}


def tune(family, dataset: Dataset, assignment: np.ndarray, seed: int, trials: int = TUNING_TRIALS) -> dict:
    """Tunes `family` on one split and scores its final model on test (a contender result)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    features = family.prepare(dataset.features)
    labels, assignment = dataset.labels, np.asarray(assignment)
    objective = Objective(family, features, labels, assignment, seed)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(3, trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(DEFAULTS[family.name])  # the enqueued trial counts as the first start-up trial
    started = time.time()
    study.optimize(objective, n_trials=trials)
    tuning_seconds = time.time() - started
    best = objective.trials[objective.best_number]
    started = time.time()
    if objective.mode == "cv":
        rows = objective.trainval
        trees = family.refit_trees(best["fold_trees"])
        model, used = family.fit(best["params"], features.iloc[rows], labels[rows], seed, trees=trees)
        threshold = validation_threshold(labels[rows], best["oof"])
    else:
        model, used = best["model"], best["trees"]
        threshold = validation_threshold(labels[assignment == VALIDATION], best["validation_scores"])
    refit_seconds = time.time() - started
    test = assignment == TEST
    result = {"labels": labels[test], "scores": family.predict(model, features[test]), "threshold": threshold,
              "train_seconds": tuning_seconds + refit_seconds, "tuning_seconds": round(tuning_seconds, 2),
              "refit_seconds": round(refit_seconds, 2), "trials": trials,
              "selection": f"cv{CV_FOLDS}" if objective.mode == "cv" else "validation",
              "selection_score": best["score"], "threads": family.threads, "first_trial": "library defaults",
              "defaults_score": objective.trials[0]["score"],
              "hyperparameters": study.trials[objective.best_number].params, "trees": int(used)}
    if objective.mode == "cv":
        result["fold_scores"] = [round(s, 4) for s in best["fold_scores"]]
    return result


def run_tuned(name: str, dataset: Dataset, assignment: np.ndarray, seed: int, trials: int = TUNING_TRIALS) -> dict:
    return tune(FAMILIES[name](), dataset, assignment, seed, trials)
