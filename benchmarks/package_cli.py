"""`package_tuned` the way a user gets it: `make tune`'s entry point, push gate included.

`tuning.task.main` runs in this process with the command line a user would
type (`--data PATH --label target --output-dir DIR --seed S --max-trials N`)
on a fresh run directory, so the search, the retraining, TFMA's evaluation,
the gate and the push all happen as in `make tune`. Afterwards only the
first execution's `run.json` is read (`DIR/executions/<first>/run.json`,
through `trainer.summary.read_run`: its `push`, `weighted` and `execution`):

- pushed: the served copy (`push.path`, else `DIR/serving_model/<version>`) is
  scored on the test split, `served: true`;
- not pushed: the execution's candidate (`weighted.version_dir`) is scored,
  `served: false`, with the gate's reason.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from benchmarks.contenders import verify_split, write_parquet
from benchmarks.datasets import Dataset
from trainer.layout import (
    EXECUTIONS_DIR,
    SERVING_DIR,
    execution_dir,
    execution_ids,
    read_push_record,  # a pushed copy's own record of its threshold
)
from trainer.summary import ModelSummary, RunSummary, read_run


def tune_argv(data_path: str, run_dir: str, seed: int, trials: int) -> list[str]:
    """The command line of `python -m tuning.task` for one benchmark run."""
    return ["--data", data_path, "--label", "target", "--output-dir", run_dir, "--seed", str(seed),
            "--max-trials", str(trials)]


def first_execution(run_dir: str) -> tuple[str, RunSummary]:
    """The first execution's directory and its run.json (empty if it wrote none)."""
    ids = execution_ids(run_dir)
    if not ids:
        raise RuntimeError(f"tuning.task left no execution under {os.path.join(run_dir, EXECUTIONS_DIR)}")
    path = execution_dir(run_dir, ids[0])
    return path, read_run(path)


def served_dir(run_dir: str, push: dict) -> str | None:
    """The pushed copy's directory, from `push.path` or `push.version`, if it exists."""
    candidates = [push.get("path")]
    if push.get("version") is not None:
        candidates.append(os.path.join(run_dir, SERVING_DIR, str(push["version"])))
    return next((c for c in candidates if c and os.path.isdir(c)), None)


def decision_threshold(weighted: ModelSummary | None, model_dir: str, pushed: bool) -> float | None:
    """The threshold of the scored model: a pushed copy's own record (the candidate's, or the unweighted
    twin's when the first execution served the twin), else run.json's `weighted.threshold(.value)`."""
    record = read_push_record(model_dir)
    if pushed and "threshold" in record:
        return float(record["threshold"])
    if weighted is not None:
        return float(weighted.threshold.value)
    return float(record["threshold"]) if "threshold" in record else None


def gate_outcome(run_dir: str, run: RunSummary) -> dict:
    """What the first execution's gate did, and which model directory to score."""
    push, weighted = run.push or {}, run.weighted
    pushed = bool(push.get("pushed"))
    candidate = weighted.version_dir if weighted is not None else None
    model_dir = served_dir(run_dir, push) if pushed else candidate
    if not model_dir or not os.path.isdir(model_dir):
        raise RuntimeError(f"no model to score: pushed={pushed}, push={push}, weighted.version_dir={candidate!r}")
    return {"served": pushed, "push_reason": push.get("reason"), "verdict": run.evaluation.verdict if run.evaluation else None,
            "pushed_model": push.get("model"),
            "model_dir": model_dir, "threshold": decision_threshold(weighted, model_dir, pushed),
            "execution": run.execution or {}, "weighted": weighted}


def run_package_cli(dataset: Dataset, assignment: np.ndarray, seed: int, workdir: str, trials: int) -> dict:
    """One first run of `make tune` on a fresh directory, scored on the benchmark's test split."""
    from evaluation.predictions import predict_test
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from tuning import task

    path = write_parquet(dataset, workdir)
    run_dir = os.path.join(workdir, f"make-tune-{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)  # a first run: nothing served yet, nothing to resume
    started = time.time()
    code = task.main(tune_argv(path, run_dir, seed, trials))
    seconds = time.time() - started
    if code not in (0, 1):  # 1 = ran to the end but the gate did not push
        raise RuntimeError(f"tuning.task exited with status {code}")
    execution_dir, run = first_execution(run_dir)
    outcome = gate_outcome(run_dir, run)
    # The execution's prepared data, reused (same data settings as the command line's defaults).
    data = prepare_data(RunConfig(data=path, label="target", output_dir=execution_dir, seed=seed))
    check = verify_split(data, dataset, assignment)
    predicted = predict_test(outcome["model_dir"], data.pattern("test"), data.schema)
    weighted = outcome["weighted"]
    threshold = outcome["threshold"] if outcome["threshold"] is not None else 0.5
    tuning = run.tuning or {}
    return {"labels": predicted["labels"], "scores": predicted["scores"], "threshold": threshold,
            "train_seconds": seconds, "make_tune_seconds": round(seconds, 1), "exit_status": code,
            "trials": trials, "served": outcome["served"], "push_reason": outcome["push_reason"],
            "verdict": outcome["verdict"], "pushed_model": outcome["pushed_model"], "scored_model": os.path.relpath(outcome["model_dir"], run_dir),
            "search_seconds": tuning.get("search_seconds"), "hyperparameters": weighted.hyperparameters,
            "model_family": weighted.model_family, "selection": weighted.selection,
            "package_test_pr_auc": weighted.test.pr_auc, "split_check": check,
            "execution_id": outcome["execution"].get("id"),
            "members": [{"name": m.name, "family": m.model_family, "weight": m.weight,
                         "weight_ratio": m.weight_ratio} for m in weighted.members or ()]}
