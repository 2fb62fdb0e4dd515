"""The keras-tuner search: a HyperModel over the trainer's own code.

`build(hp)` is the trainer's `build_model(hp, ...)`; `fit(hp, model, ...)`
resolves the tuned loss family and weight ratio with the trainer's
`fit_settings` and trains with the trainer's `compile_and_fit`, forwarding the
tuner's keyword arguments (callbacks, epochs, Hyperband's initial_epoch).
"""

from __future__ import annotations

import functools
import os
import time

import keras
import keras_tuner as kt

from trainer.config import RunConfig, parse_tuning_objective
from trainer.crossval import cross_validate, load_arrays, uses_cross_validation
from trainer.distribute import check_supported, make_strategy
from trainer.model import build_model, class_priors
from trainer.prepare import PreparedData
from trainer.train import compile_and_fit, fit_settings
from tuning import atomic_state

PROJECT = "search"


class ImbalanceHyperModel(kt.HyperModel):
    """Searches architecture, loss family and class-weight ratio together."""

    def __init__(self, data: PreparedData, config: RunConfig):
        super().__init__(name="imbalance")
        self.data = data
        # The tuner searches the weighting itself: explicit overrides would pin it.
        self.config = config.replace(loss=None, weight_scheme=None, weight_ratio=None)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.utils.set_random_seed(self.config.seed)  # each trial starts alike: hp alone differs
        return build_model(hp, self.data.schema, priors=class_priors(self.data.train_counts))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        settings = fit_settings(hp, self.data.train_counts, self.config)
        callbacks = list(kwargs.pop("callbacks", []))
        kwargs.setdefault("epochs", self.config.tuning_epochs)
        kwargs.setdefault("verbose", 0)
        if self.cross_validation:
            # The trial's score is the mean objective over held-out folds; the
            # tuner's per-epoch callbacks would mix the folds' epochs, so they
            # are not attached (the oracle gets the final value only).
            folds = cross_validate(hp, settings, self.data, self.config, epochs=kwargs["epochs"],
                                   arrays=self.arrays)
            return {objective_metric(self.config): folds.score}
        return compile_and_fit(model, settings, self.data, self.config, callbacks=callbacks, **kwargs)

    @functools.cached_property
    def cross_validation(self) -> bool:
        return uses_cross_validation(self.data, self.config)

    @functools.cached_property
    def arrays(self):
        """Train + validation in memory, loaded once for every trial's folds."""
        return load_arrays([self.data.pattern("train"), self.data.pattern("validation")], self.data.schema)


def objective_metric(config: RunConfig) -> str:
    """The Keras metric name of the tuning objective on held-out data."""
    name, _ = parse_tuning_objective(config.objective)
    return "val_pr_auc" if name == "pr_auc" else "val_recall_at_precision"


def tuner_objective(config: RunConfig) -> kt.Objective:
    """The held-out metric the tuner maximizes (never recall at 0.5)."""
    return kt.Objective(objective_metric(config), direction="max")


class _Progress:
    """Prints trial n of N, the current best and an ETA after each trial."""

    def on_trial_begin(self, trial):
        self._trial_started = time.time()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self._durations = getattr(self, "_durations", []) + [time.time() - self._trial_started]
        # A distributed worker's oracle is a client without the trial table:
        # it reports its own trials only.
        trials = getattr(self.oracle, "trials", None)
        done = len(self._durations) if trials is None else sum(t.status == "COMPLETED" for t in trials.values())
        budget = getattr(self.oracle, "max_trials", None)  # None for Hyperband: set by its brackets
        mean = sum(self._durations) / len(self._durations)
        best = self.oracle.get_best_trials(1)
        best_score = f"{best[0].score:.4f}" if best and best[0].score is not None else "n/a"
        trial = self.oracle.get_trial(trial.trial_id)  # the oracle's copy holds the score
        score = f"{trial.score:.4f}" if trial.score is not None else "failed"
        progress = f"trial {done} of {budget}" if budget else f"trial {done}"
        eta = f", ETA {max(budget - done, 0) * mean:.0f} s" if budget else ""
        print(f"[tuning] {self.tuner_id}: {progress}: val objective {score}, best so far {best_score}{eta}",
              flush=True)


class BayesianTuner(_Progress, kt.BayesianOptimization):
    pass


class RandomTuner(_Progress, kt.RandomSearch):
    pass


class HyperbandTuner(_Progress, kt.Hyperband):
    pass


def start_with_defaults(oracle) -> None:
    """Makes the search's first trial the default hyperparameters.

    The defaults are a measured, strong configuration (README, "What the
    tuner searches"); random initial points alone could miss it entirely
    with a budget of a few trials (as Optuna's `enqueue_trial` is used).
    """
    original = oracle.populate_space

    def populate_space(trial_id):
        if not oracle.trials:  # the first trial of a fresh search
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(oracle.hyperparameters.values)}
        return original(trial_id)

    oracle.populate_space = populate_space


def make_tuner(data: PreparedData, config: RunConfig) -> kt.Tuner:
    """The configured tuner over `RUN/tuning/search`, resuming what is there.

    `overwrite=False` reloads a previous search: completed trials are kept and
    an interrupted one is retried. In keras-tuner's distributed mode the same
    call makes a chief or a worker (it reads KERASTUNER_* itself).
    """
    atomic_state.install()
    strategy = make_strategy(config.distribute)
    check_supported(strategy, bool(data.schema.categorical))
    common = {
        "hypermodel": ImbalanceHyperModel(data, config),
        "objective": tuner_objective(config),
        "directory": os.path.join(config.output_dir, "tuning"),
        "project_name": PROJECT,
        "overwrite": False,
        "seed": config.seed,
        # keras-tuner builds and fits each trial's model inside this strategy's scope.
        "distribution_strategy": strategy,
    }
    if config.tuner in ("bayesian", "random"):
        if config.tuner == "bayesian":
            tuner = BayesianTuner(max_trials=config.max_trials, num_initial_points=min(3, config.max_trials), **common)
        else:
            tuner = RandomTuner(max_trials=config.max_trials, **common)
        start_with_defaults(tuner.oracle)
        return tuner
    return HyperbandTuner(max_epochs=config.tuning_epochs, factor=3, hyperband_iterations=1, **common)
