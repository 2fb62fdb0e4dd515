"""What a search leaves behind: `trials.csv` and `best_hyperparameters.json`."""

from __future__ import annotations

import csv
import io

import keras_tuner as kt

from trainer.atomic import write_json_atomically, write_text_atomically

BEST_FILE = "best_hyperparameters.json"


def write_trials_csv(tuner: kt.Tuner, path: str) -> int:
    """One row per trial: id, status, objective, every hyperparameter.

    Returns:
      The number of rows written.
    """
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    names = sorted({name for t in trials for name in t.hyperparameters.values})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial_id", "status", "objective", *names])
    for trial in trials:
        values = trial.hyperparameters.values
        writer.writerow([trial.trial_id, trial.status, "" if trial.score is None else trial.score,
                         *[values.get(name, "") for name in names]])
    write_text_atomically(path, buffer.getvalue())
    return len(trials)


def write_best_hyperparameters(tuner: kt.Tuner, path: str) -> kt.HyperParameters:
    """Saves the best trial's `HyperParameters.get_config()` (loadable with
    `HyperParameters.from_config`, and usable as `trainer.task --hparams`)."""
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise RuntimeError("the search finished without a successful trial; see the trial logs in RUN/tuning")
    write_json_atomically(path, best[0].get_config())
    return best[0]
