"""`make tune`: split -> search -> retrain best -> baseline -> evaluate -> report.

Rerunning into an unfinished run resumes it (prepared data and completed
trials are kept). A finished run is never silently redone: it is refused with
a message.
"""

from __future__ import annotations

import json
import os
import time

from keras_tuner.src.distribute import utils as distribute

from trainer.config import RunConfig
from trainer.ingest import DataError
from trainer.pipeline import train_and_export, update_run_json
from trainer.prepare import prepare_data
from tuning.results import (
    BEST_FILE,
    TRIALS_FILE,
    best_of_other_family,
    write_best_hyperparameters,
    write_trials_csv,
)
from tuning.search import make_tuner


class RunFinishedError(ValueError):
    """The output directory holds a finished run."""


def check_not_finished(config: RunConfig) -> None:
    path = os.path.join(config.output_dir, "run.json")
    if os.path.exists(path):
        with open(path) as handle:
            if json.load(handle).get("status") == "complete":
                raise RunFinishedError(
                    f"{config.output_dir} holds a finished run; choose a new --output-dir "
                    "(or delete that directory to redo it)"
                )


def run_tuning(config: RunConfig, evaluate=None) -> dict:
    """Runs the whole tuning pipeline for `config`.

    Args:
      config: The run configuration.
      evaluate: Called as `evaluate(config)` after both models are exported
        (TFMA evaluation and report); returns a JSON-able summary. None skips.

    Returns:
      A summary: trials, best hyperparameters, weighted and baseline results
      (and the evaluation's summary). A keras-tuner worker returns
      {"role": "worker"} once the chief's search is over.
    """
    check_not_finished(config)
    data = prepare_data(config)
    started = time.time()
    tuner = make_tuner(data, config)
    tuner.search(verbose=0)
    if distribute.has_chief_oracle() and not distribute.is_chief_oracle():
        return {"role": "worker"}
    tuning_dir = os.path.join(config.output_dir, "tuning")
    trial_count = write_trials_csv(tuner, os.path.join(tuning_dir, TRIALS_FILE))
    best = write_best_hyperparameters(tuner, os.path.join(tuning_dir, BEST_FILE))
    search_seconds = round(time.time() - started, 1)
    print(f"[tuning] search done: {trial_count} trials in {search_seconds} s; retraining the best", flush=True)
    partner = best_of_other_family(tuner, best)
    weighted = train_and_export(config, data, values=best.values, blend_values=partner)
    baseline = train_and_export(config, data, values=best.values, weighted=False, blend_values=partner)
    summary = {
        "tuning": {"trials": trial_count, "search_seconds": search_seconds, "best": dict(best.values),
                   "best_file": os.path.join(tuning_dir, BEST_FILE), "objective": config.objective,
                   "tuner": config.tuner},
        "weighted": weighted,
        "baseline": baseline,
    }
    if evaluate is not None:
        summary["evaluation"] = evaluate(config)
    update_run_json(config, {"tuning": summary["tuning"], "status": "complete",
                             **({"evaluation": summary["evaluation"]} if "evaluation" in summary else {})})
    return summary


__all__ = ["DataError", "RunFinishedError", "check_not_finished", "run_tuning"]
