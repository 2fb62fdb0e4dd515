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

from trainer.candidates import Splits, train_candidate
from trainer.config import RunConfig, parse_tuning_objective
from trainer.data.prepare import PreparedData
from trainer.distribute import check_supported, make_strategy
from trainer.hparams import declare_family, declare_fit_hparams, declare_tree_hparams
from trainer.layout import TUNING_DIR
from trainer.model import build_model, class_priors
from trainer.train import fit_settings
from tuning import atomic_state, tensorboard_hparams
from tuning.acquisition import BatchedBayesianOracle
from tuning.ensemble import save_held_out
from tuning.portfolio import portfolio_values

ZERO_SEED = 10_001  # the oracle's seed for a run's seed 0 (`tuner_seed`)
PROJECT = "search"


class ImbalanceHyperModel(kt.HyperModel):
    """Searches architecture, loss family and class-weight ratio together."""

    def __init__(self, data: PreparedData, config: RunConfig):
        super().__init__(name="imbalance")
        self.data = data
        self.trial_id = None  # the running trial's id, set by the tuner (`_Progress.run_trial`)
        self.deadline = None  # the time budget's end (`time.monotonic()`): a running neural trial stops there
        self.stopped_by_deadline: list[str] = []  # ids of the trials the deadline cut short
        # The tuner searches the weighting itself: explicit overrides would pin it.
        self.config = config.replace(loss=None, weight_scheme=None, weight_ratio=None)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        declare_family(hp)  # the whole space is declared in every trial
        declare_tree_hparams(hp)
        keras.utils.set_random_seed(self.config.seed)  # each trial starts alike: hp alone differs
        model = build_model(hp, self.data.schema, priors=class_priors(self.data.train_counts))
        # Declared here too (after the model's, the order `fit` would add them in), so that the
        # space keras-tuner builds before the first trial holds them: the first trial's
        # TensorBoard hyperparameters then include the weight ratio, loss and batch size.
        declare_fit_hparams(hp, self.data.train_counts)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        """Trains the trial's candidate; its score is the held-out objective (scikit-learn's).

        Both families and both selection modes are scored by the same function
        on the same examples. In cross-validation (and for trees) the tuner's
        per-epoch callbacks are not attached: they would mix the folds' epochs.
        """
        settings = fit_settings(hp, self.data.train_counts, self.config)
        callbacks = list(kwargs.pop("callbacks", []))
        epochs = kwargs.pop("epochs", self.config.tuning_epochs)
        kwargs.setdefault("verbose", 0)  # the rest reaches compile_and_fit, which drops x, y and the like
        candidate = train_candidate(hp, settings, self.data, self.config, epochs, self.splits,
                                    callbacks=callbacks, model=model, deadline=self.deadline, **kwargs)
        if candidate.info.get("stopped_by_deadline") and self.trial_id is not None:
            self.stopped_by_deadline.append(self.trial_id)
        if self.trial_id is not None:  # for the ensemble selection after the search (tuning.ensemble)
            save_held_out(os.path.join(self.config.output_dir, TUNING_DIR), self.trial_id, candidate.margins,
                          candidate.labels, candidate.folds)
        logs = {objective_metric(self.config): candidate.score}
        if self.splits.cross_validation or declare_family(hp) == "trees":
            # The tuner's callbacks saw no epoch: report the score once, so its
            # checkpoint and the trial's TensorBoard hyperparameters exist.
            tensorboard_hparams.report_without_fit(callbacks, model, logs)
        tensorboard_hparams.record_objective(callbacks, objective_metric(self.config), candidate.score)
        return logs

    @functools.cached_property
    def splits(self) -> Splits:
        """The data in memory, loaded once for every trial."""
        return Splits(self.data, self.config)


def objective_metric(config: RunConfig) -> str:
    """The Keras metric name of the tuning objective on held-out data."""
    name, _ = parse_tuning_objective(config.objective)
    return "val_pr_auc" if name == "pr_auc" else "val_recall_at_precision"


def tuner_objective(config: RunConfig) -> kt.Objective:
    """The held-out metric the tuner maximizes (never recall at 0.5)."""
    return kt.Objective(objective_metric(config), direction="max")


class _Progress:
    """Reports trial n of N and the current best after each trial (`trainer.progress`), and
    tells the hypermodel which trial it is fitting."""

    advance = None  # set by the caller around `search`: the step's advance function

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.trial_id = trial.trial_id  # its held-out predictions are saved under this id
        try:
            return super().run_trial(trial, *args, **kwargs)
        finally:
            self.hypermodel.trial_id = None

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # A distributed worker's oracle is a client without the trial table:
        # it reports its own trials only.
        trials = getattr(self.oracle, "trials", None)
        self._own = getattr(self, "_own", 0) + 1
        done = self._own if trials is None else sum(t.status == "COMPLETED" for t in trials.values())
        best = self.oracle.get_best_trials(1)
        best_score = f"{best[0].score:.4f}" if best and best[0].score is not None else "n/a"
        trial = self.oracle.get_trial(trial.trial_id)  # the oracle's copy holds the score
        score = f"{trial.score:.4f}" if trial.score is not None else "failed"
        cut = " (stopped at the time budget)" if trial.trial_id in self.hypermodel.stopped_by_deadline else ""
        if self.advance is not None:
            self.advance(completed=done, note=f"{self.tuner_id}: val objective {score}{cut}, best so far {best_score}")


class BayesianTuner(_Progress, kt.Tuner):
    """keras-tuner's `BayesianOptimization`, with the oracle whose acquisition is minimized in batches
    (`tuning.acquisition`): the same process, bound and random start, in a fraction of the time."""

    def __init__(self, max_trials: int, num_initial_points: int, objective, seed: int, **kwargs):
        oracle = BatchedBayesianOracle(objective=objective, max_trials=max_trials,
                                       num_initial_points=num_initial_points, seed=seed)
        super().__init__(oracle=oracle, **kwargs)


class RandomTuner(_Progress, kt.RandomSearch):
    pass


class HyperbandTuner(_Progress, kt.Hyperband):
    pass


def start_with_portfolio(oracle, counts: tuple[int, int], deadline: float | None = None,
                         portfolio: bool = True) -> None:
    """Makes the search's first trials the portfolio (`tuning.portfolio`), keeps every
    trial's values inside their declared ranges, and stops scheduling trials once
    `time.monotonic()` reaches `deadline` (the time budget; AutoGluon's `time_limit`).

    No trial starts after the deadline; a neural trial running then stops at
    the end of its epoch (`ImbalanceHyperModel.deadline`). As Optuna's
    `enqueue_trial` is used, the portfolio's trials come first
    (`portfolio=False` for Hyperband, whose brackets choose their own).
    """
    original = getattr(oracle, "populate_space", None)
    if original is None:  # a distributed worker's OracleClient: the chief's oracle decides
        return
    first = portfolio_values(oracle.hyperparameters.values, counts) if portfolio else []

    def populate_space(trial_id):
        if deadline is not None and time.monotonic() >= deadline:
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        if len(oracle.trials) < len(first):
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(first[len(oracle.trials)])}
        response = original(trial_id)
        if response.get("values"):
            response["values"] = within_ranges(oracle.hyperparameters, response["values"])
        return response

    oracle.populate_space = populate_space


def within_ranges(space: kt.HyperParameters, values: dict) -> dict:
    """`values` with every Int and Float moved inside its declared [min, max].

    keras-tuner's Bayesian oracle maps the optimizer's point back to a value
    with `prob_to_value`, which assumes a probability below 1; the optimizer
    can return exactly 1 and so `max + 1` for an Int (seen: num_leaves 129 with
    max 128, min_child_samples 101 with max 100).
    """
    bounded = dict(values)
    for hp in space.space:
        if isinstance(hp, (kt.engine.hyperparameters.Int, kt.engine.hyperparameters.Float)) and hp.name in bounded:
            value = min(max(bounded[hp.name], hp.min_value), hp.max_value)
            bounded[hp.name] = int(value) if isinstance(hp, kt.engine.hyperparameters.Int) else float(value)
    return bounded


def tuner_seed(seed: int) -> int:
    """The oracle's seed for the run's `seed`: keras-tuner reads 0 as none (`seed or random.randint(1, 10000)`),
    so a search with `--seed 0` would not repeat; 0 becomes `ZERO_SEED`, outside that range."""
    return seed if seed else ZERO_SEED


def make_tuner(data: PreparedData, config: RunConfig) -> kt.Tuner:
    """The configured tuner over `RUN/tuning/search`, resuming what is there.

    `overwrite=False` reloads a previous search: completed trials are kept and
    an interrupted one is retried. In keras-tuner's distributed mode the same
    call makes a chief or a worker (it reads KERASTUNER_* itself).
    """
    atomic_state.install()
    strategy = make_strategy(config.distribute)
    check_supported(strategy, bool(data.schema.categorical))
    hypermodel = ImbalanceHyperModel(data, config)
    # The budget starts here, just before the search; trials and scheduling share one deadline.
    hypermodel.deadline = None if config.time_budget is None else time.monotonic() + config.time_budget
    common = {
        "hypermodel": hypermodel,
        "objective": tuner_objective(config),
        "directory": os.path.join(config.output_dir, TUNING_DIR),
        "project_name": PROJECT,
        "overwrite": False,
        "seed": tuner_seed(config.seed),
        # keras-tuner builds and fits each trial's model inside this strategy's scope.
        "distribution_strategy": strategy,
    }
    if config.tuner in ("bayesian", "random"):
        if config.tuner == "bayesian":
            tuner = BayesianTuner(max_trials=config.max_trials, num_initial_points=min(3, config.max_trials), **common)
        else:
            tuner = RandomTuner(max_trials=config.max_trials, **common)
        start_with_portfolio(tuner.oracle, data.train_counts, hypermodel.deadline)
        return tuner
    tuner = HyperbandTuner(max_epochs=config.tuning_epochs, factor=3, hyperband_iterations=1, **common)
    start_with_portfolio(tuner.oracle, data.train_counts, hypermodel.deadline, portfolio=False)
    return tuner
