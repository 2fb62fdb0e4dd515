"""What a search leaves behind: `trials.csv` and `best_hyperparameters.json`."""

from __future__ import annotations

import csv
import json
import os

import keras_tuner as kt

BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.csv"


def write_trials_csv(tuner: kt.Tuner, path: str) -> int:
    """One row per trial: id, status, objective, every hyperparameter.

    Returns:
      The number of rows written.
    """
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    names = sorted({name for t in trials for name in t.hyperparameters.values})
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial_id", "status", "objective", *names])
        for trial in trials:
            values = trial.hyperparameters.values
            writer.writerow([trial.trial_id, trial.status, "" if trial.score is None else trial.score,
                             *[values.get(name, "") for name in names]])
    os.replace(temporary, path)
    return len(trials)


def write_best_hyperparameters(tuner: kt.Tuner, path: str) -> kt.HyperParameters:
    """Saves the best trial's `HyperParameters.get_config()` (loadable with
    `HyperParameters.from_config`, and usable as `trainer.task --hparams`)."""
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise RuntimeError("the search finished without a successful trial; see the trial logs in RUN/tuning")
    with open(path, "w") as handle:
        json.dump(best[0].get_config(), handle, indent=1)
    return best[0]


def load_best_hyperparameters(path: str) -> kt.HyperParameters:
    with open(path) as handle:
        return kt.HyperParameters.from_config(json.load(handle))


def best_of_other_family(tuner: kt.Tuner, best: kt.HyperParameters) -> dict | None:
    """Values of the best completed trial whose `model_family` differs from `best`'s, if any.

    The final model may blend the two families (`trainer.pipeline.train_and_export`).
    """
    family = best.values.get("model_family")
    others = [t for t in tuner.oracle.trials.values()
              if t.status == "COMPLETED" and t.score is not None
              and t.hyperparameters.values.get("model_family") not in (None, family)]
    if not others:
        return None
    return dict(max(others, key=lambda t: t.score).hyperparameters.values)
