"""The run directory's layout: one home for every name in it (docs/design.md §10).

A `trainer.task` run is one directory. A `tuning.task` run (`make tune`) is a
sequence of executions under one directory, as TFX pipeline runs are:

    RUN/
      serving_model/<version>/    what is served: only pushed (blessed) candidates
      history.json, history.html  every execution: date, data, verdict, push
      executions/<id>/            one `make tune`: a complete trainer-style run
        data/ tuning/ candidate_model/ baseline_model/ evaluation/ report/ run.json
        tuning/tensorboard/<trial>/execution0/   one TensorBoard HParams run per trial
        wandb/                    the optional Weights & Biases run (`--wandb`)

Execution ids are zero-padded counters (`0001`, `0002`, ...), so they sort
by age as text and as numbers.
"""

from __future__ import annotations

import json
import os

RUN_JSON = "run.json"
SERVING_DIR = "serving_model"
CANDIDATE_DIR = "candidate_model"  # an execution's weighted candidate, before the push gate
EXECUTIONS_DIR = "executions"
MODEL_DIRS = {"weighted": SERVING_DIR, "baseline": "baseline_model"}  # a trainer.task run's exports
COMPLETE = "complete"
TUNING_DIR = "tuning"  # an execution's keras-tuner project, trials.csv, best_hyperparameters.json
# keras-tuner writes one TensorBoard run per trial under it (<trial id>/execution0/), with the
# trial's hyperparameters for the HParams dashboard: `tensorboard --logdir` this directory.
TUNING_TENSORBOARD_DIR = os.path.join(TUNING_DIR, "tensorboard")
WANDB_DIR = "wandb"  # `wandb.init(dir=execution)` keeps its run files in execution/wandb/
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos


def parse_version(name: str) -> int | None:
    """A version directory name (or URL segment) as TF Serving reads it, or None.

    Plain ASCII digits within int64 only: `"007"` is 7, while `"٣"` (an
    Arabic-Indic digit, which `str.isdigit` accepts), `"-1"`, `"1.0"` and
    hidden staging names are not versions.
    """
    if not (name.isascii() and name.isdigit()) or int(name) > MAX_VERSION:
        return None
    return int(name)


def execution_ids(run_dir: str) -> list[str]:
    """The run's execution ids, oldest first ([] for a trainer.task run)."""
    root = os.path.join(run_dir, EXECUTIONS_DIR)
    names = os.listdir(root) if os.path.isdir(root) else []
    return sorted((name for name in names if parse_version(name) is not None), key=int)


def execution_dir(run_dir: str, execution_id: str) -> str:
    return os.path.join(run_dir, EXECUTIONS_DIR, execution_id)


def read_run_json(directory: str) -> dict:
    """`directory/run.json`, or {} when there is none yet."""
    path = os.path.join(directory, RUN_JSON)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def is_complete(directory: str) -> bool:
    return read_run_json(directory).get("status") == COMPLETE


def resolve_run(run_dir: str) -> str:
    """The directory that holds a run's models: its latest execution, or itself.

    `evaluation.task --run RUN` accepts the run directory of either entry
    point; for a tuning run it evaluates the latest execution.
    """
    ids = execution_ids(run_dir)
    return execution_dir(run_dir, ids[-1]) if ids else run_dir
