"""One trained candidate per hyperparameter set, scored on held-out data.

A candidate is a model of either family (`neural`: `build_model`; `trees`:
LightGBM served as TensorFlow ops) trained with the selection rule of
`trainer.crossval` (the validation split, or k folds of train + validation
whose models form the final ensemble). Every candidate carries its held-out
single logits, so tuning trials of both families are scored by the same
scikit-learn objective on the same examples, and candidates can be blended.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
import numpy as np
from keras import ops

from trainer.bodies import ensemble_logits
from trainer.calibration import sigmoid
from trainer.config import RunConfig
from trainer.crossval import (
    Arrays,
    fold_ensemble,
    load_arrays,
    objective_value,
    predict_margin,
    selection_folds,
    uses_cross_validation,
)
from trainer.data.prepare import PreparedData
from trainer.hparams import declare_family, declare_tree_hparams
from trainer.model import build_model, class_priors, model_inputs
from trainer.trees import feature_matrix, fit_trees, fit_trees_cross_validated, to_keras

# The history key of a tree candidate's held-out average precision per boosting round
# (a neural candidate's per-epoch Keras metrics use Keras' names: `val_pr_auc`, ...).
TREE_CURVE = "round_val_pr_auc"


def merge_histories(histories: list[dict]) -> dict:
    """One history for a blend: each curve from the first member that has it (a tree's and a neural one's)."""
    merged: dict = {}
    for history in histories:
        for key, values in history.items():
            merged.setdefault(key, values)
    return merged


@dataclasses.dataclass
class Candidate:
    model: keras.Model | None  # raw features -> logits [N, 2] or members [N, M, 2]; None for a trial's trees
    margins: np.ndarray  # held-out single logits [N]
    labels: np.ndarray  # held-out labels [N]
    score: float  # the objective on held-out data (mean over folds in cross-validation)
    history: dict  # per-epoch metrics (neural) or rounds (trees), for the report
    info: dict  # JSON-able facts for run.json
    folds: list | None = None  # held-out indices per fold (cross-validation), into `labels`


def held_out_score(labels: np.ndarray, margins: np.ndarray, folds: list | None, objective: str) -> float:
    """The objective on held-out predictions: per fold, then averaged, as a trial is scored."""
    if folds is None:
        return objective_value(labels, margins, objective)
    return float(np.mean([objective_value(labels[index], margins[index], objective) for index in folds]))


class Splits:
    """The splits a candidate trains and is scored on, loaded into memory once, when first needed.

    A neural model in validation mode streams the train split from its
    TFRecords; only the trees (and cross-validation) hold training rows in memory.
    """

    def __init__(self, data: PreparedData, config: RunConfig):
        self.data, self.cross_validation = data, uses_cross_validation(data, config)

    @functools.cached_property
    def train_and_validation(self) -> Arrays:
        return load_arrays([self.data.pattern("train"), self.data.pattern("validation")], self.data.schema)

    @functools.cached_property
    def train(self) -> Arrays:
        return load_arrays([self.data.pattern("train")], self.data.schema)

    @functools.cached_property
    def validation(self) -> Arrays:
        return load_arrays([self.data.pattern("validation")], self.data.schema)


def train_candidate(hp, settings, data: PreparedData, config: RunConfig, epochs: int, splits: Splits,
                    callbacks=(), model: keras.Model | None = None, refit: bool = False,
                    deadline: float | None = None, **fit_kwargs) -> Candidate:
    """Trains the family `hp` names with the run's selection rule.

    Args:
      hp: Hyperparameters (family, architecture or trees, loss).
      settings: `trainer.train.FitSettings` for the loss and weights.
      data: The prepared splits.
      config: The run configuration.
      epochs: Maximum epochs of a neural model (early stopping on held-out data).
      splits: The data in memory (shared by the trials of a search).
      callbacks: Extra Keras callbacks of a neural model on the validation split.
      model: An already built neural model to train (the tuner's), else one is built.
      refit: For the model that is exported: trees are grown again on every
        train + validation row for the round count held-out data chose
        (AutoGluon's refit); the held-out margins still come from models that
        did not see those rows (calibration and threshold are fit on them).
        Without it (a tuning trial) a tree candidate has no model: only its
        held-out margins are used.
      deadline: A `time.monotonic()` value after which a neural model stops
        training at the end of its current epoch (each remaining fold then
        trains one epoch; the candidate's `info["stopped_by_deadline"]` is
        then True): the search's time budget (`trainer.train.StopAt`). Trees
        are not cut: a trial's boosting runs to its end.
      **fit_kwargs: Forwarded to a neural model's `fit` in validation mode
        (Hyperband's `initial_epoch`, verbosity).
    """
    family = declare_family(hp)
    if family == "trees":
        return _trees(hp, settings, data, config, splits, refit)
    from trainer.train import EVAL_BATCH, StopAt, compile_and_fit

    stop = [] if deadline is None else [StopAt(deadline)]  # one callback, reused by every fold's fit
    if splits.cross_validation:
        candidate = _cross_validated(hp, settings, data, config, epochs, splits.train_and_validation, stop)
    else:
        validation = splits.validation
        model = model or built(hp, data, config.seed)
        history = compile_and_fit(model, settings, data, config, callbacks=[*callbacks, *stop],
                                  validation=validation.dataset(EVAL_BATCH), epochs=epochs, **fit_kwargs)
        info = {"epochs_run": len(history.epoch), "best_epochs": [best_epoch(_as_dict(history), config)]}
        candidate = _candidate(model, predict_margin(model, validation), validation.labels, config,
                               _as_dict(history), info)
    if stop and stop[0].stopped_after is not None:
        candidate.info["stopped_by_deadline"] = True
    return candidate


def best_epoch(history: dict, config: RunConfig) -> int:
    """The epoch (1-based) early stopping restored: the best of the monitored validation metric."""
    values = history.get(f"val_{config.early_stopping}") or [0.0]
    pick = np.argmin if config.early_stopping == "log_loss" else np.argmax
    return int(pick(values)) + 1


def _cross_validated(hp, settings, data, config, epochs, arrays: Arrays, callbacks: list) -> Candidate:
    from trainer.train import EVAL_BATCH, compile_and_fit

    margins = np.zeros(len(arrays.labels), np.float64)
    models, scores, runs, best, history = [], [], [], [], {}
    folds = selection_folds(arrays.labels, config.cv_folds, config.seed)
    for fold, (train_index, held_index) in enumerate(folds):
        train, held = arrays.take(train_index), arrays.take(held_index)
        model = built(hp, data, config.seed + fold)
        fitted = compile_and_fit(model, settings, data, config, epochs=epochs, callbacks=callbacks,
                                 train=train.dataset(settings.batch_size, shuffle=True, seed=config.seed + fold),
                                 validation=held.dataset(EVAL_BATCH))
        margins[held_index] = predict_margin(model, held)
        runs.append(len(fitted.epoch))
        best.append(best_epoch(_as_dict(fitted), config))
        history = history or _as_dict(fitted)  # the first fold's curves, for the report
        scores.append(objective_value(held.labels, margins[held_index], config.objective))
        models.append(model)
    info = {"folds": config.cv_folds, "fold_scores": scores, "mean": float(np.mean(scores)), "epochs_run": runs}
    held_out = [held for _, held in folds]
    return Candidate(fold_ensemble(models, data.schema), margins, arrays.labels, float(np.mean(scores)),
                     history, {"cross_validation": info, "best_epochs": best}, held_out)


def _trees(hp, settings, data, config, splits: Splits, refit: bool) -> Candidate:
    """A tree candidate: held-out margins from the validation split or the folds; refit on request."""
    params = declare_tree_hparams(hp)
    curve: list[float] = []  # held-out average precision per boosting round
    if splits.cross_validation:
        arrays = splits.train_and_validation
        x = feature_matrix(arrays.features, data.schema)
        folds = selection_folds(arrays.labels, config.cv_folds, config.seed)
        boosters, rounds = fit_trees_cross_validated(x, arrays.labels, settings.weights, params, config.seed, folds,
                                                     curve=curve)
        margins = np.zeros(len(arrays.labels), np.float64)
        for booster, (_, held_index) in zip(boosters, folds, strict=True):
            margins[held_index] = booster.predict(x[held_index], raw_score=True, num_iteration=rounds)
        labels, held_out = arrays.labels, [held for _, held in folds]
        scores = [objective_value(labels[i], margins[i], config.objective) for i in held_out]
        score = float(np.mean(scores))  # held_out_score's value, from the fold scores already computed
        info = {"cross_validation": {"folds": config.cv_folds, "fold_scores": scores, "mean": score,
                                     "rounds": [rounds] * len(folds)}, "rounds": rounds}
    else:
        train, validation = splits.train, splits.validation
        held_x = feature_matrix(validation.features, data.schema)
        booster, rounds = fit_trees(feature_matrix(train.features, data.schema), train.labels, settings.weights,
                                    params, config.seed, valid=(held_x, validation.labels), curve=curve)
        margins = np.asarray(booster.predict(held_x, raw_score=True, num_iteration=rounds), np.float64)
        labels, held_out, info = validation.labels, None, {"rounds": rounds}
        score = objective_value(labels, margins, config.objective)
        x = None
    model = None  # a trial's trees are judged by their held-out margins alone: no TensorFlow model to build
    if refit:
        model = _refit_trees(params, settings, data, config, splits, rounds, x)
        info["refit_rows"] = int(len(splits.train_and_validation.labels))
    return Candidate(model, margins, labels, score, {"rounds": [rounds], TREE_CURVE: curve}, info, held_out)


def _refit_trees(params, settings, data, config, splits: Splits, rounds: int, x: np.ndarray | None = None):
    """The trees grown again for `rounds` rounds on every train + validation row, as a TensorFlow model.

    `x`: those rows' feature matrix when the caller already built it (cross-validation).
    """
    arrays = splits.train_and_validation
    x = feature_matrix(arrays.features, data.schema) if x is None else x
    booster, _ = fit_trees(x, arrays.labels, settings.weights, params, config.seed, rounds=rounds)
    return to_keras(booster, data.schema, rounds)


def built(hp, data: PreparedData, seed: int) -> keras.Model:
    """`build_model(hp)` for the data's schema and priors, with every random draw seeded."""
    keras.utils.set_random_seed(seed)
    return build_model(hp, data.schema, priors=class_priors(data.train_counts))


def _candidate(model, margins, labels, config, history, info) -> Candidate:
    return Candidate(model, margins, labels, objective_value(labels, margins, config.objective), history, info)


def _as_dict(history) -> dict:
    return {name: [float(v) for v in values] for name, values in history.history.items()}


class Blend(keras.Model):
    """A weighted mean of models' probabilities: raw features -> logits [N, 2].

    log(sum_i w_i p_i), computed as a logsumexp of log w_i + log p_i so that
    no probability underflows to log(0).

    Not Keras-serializable (no `get_config`, not registered), like
    `trainer.crossval.FoldEnsemble` and `trainer.trees.GradientBoostedTrees`:
    it holds trained models, and is exported only as a SavedModel
    (trainer/export.py); nothing saves or loads it in Keras' format.
    """

    def __init__(self, models: list, weights: list[float], **kwargs):
        super().__init__(**kwargs)
        self.parts, self.blend_weights = list(models), [float(w) for w in weights]

    def call(self, inputs, training=False):
        terms = [ops.log_softmax(ensemble_logits(model(model_inputs(model, inputs), training=training)), axis=-1)
                 + math.log(weight) for model, weight in zip(self.parts, self.blend_weights, strict=True)]  # each [N, 2]
        return ops.logsumexp(ops.stack(terms, axis=0), axis=0)  # [N, 2]


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of the exported ensemble: its hyperparameters and its weight in the mean.

    Attributes:
      values: Hyperparameter values (the rest stay at the defaults).
      weight: Its share of the averaged probability (the members' sum to 1).
      trial: The tuning trial it comes from, if any.
      name: Its portfolio entry's name, if it is one (`tuning.portfolio`).
    """

    values: dict
    weight: float = 1.0
    trial: str | None = None
    name: str | None = None


def combine(candidates: list[Candidate], weights: list[float], config: RunConfig) -> Candidate:
    """The weighted mean of the candidates' probabilities, as one candidate (a `Blend`).

    The weights come from ensemble selection on the trials' held-out
    predictions (`tuning.ensemble`); the candidates must be scored on the
    same held-out examples. One candidate is returned as it is.
    """
    if len(candidates) == 1:
        return candidates[0]
    first = candidates[0]
    if any(not np.array_equal(first.labels, c.labels) for c in candidates[1:]):
        raise ValueError("combined candidates must share their held-out examples")
    mixed = sum(w * sigmoid(c.margins) for c, w in zip(candidates, weights, strict=True))
    p = np.clip(mixed, 1e-12, 1 - 1e-12)
    margins = np.log(p) - np.log1p(-p)
    model = Blend([c.model for c in candidates], list(weights), name="blend")
    history = merge_histories([c.history for c in candidates])
    score = held_out_score(first.labels, margins, first.folds, config.objective)
    return Candidate(model, margins, first.labels, score, history, {"members": [c.info for c in candidates]},
                     first.folds)
