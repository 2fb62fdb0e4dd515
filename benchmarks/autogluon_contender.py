"""AutoGluon `medium_quality` as a confirmation contender (`autogluon_medium`), run in its own venv.

AutoGluon is a benchmark contender only, never a dependency of the package:
`make bench-autogluon-env` installs `autogluon.tabular[lightgbm,catboost,xgboost]`
into `.venv-autogluon/` (Python 3.11, no torch). This driver, in the package's
venv, writes the protocol's split to Parquet (train = every non-test row, as
the untuned defaults get them, `defaults.fit_rows`; test = the test rows,
without their labels), runs `benchmarks/autogluon_fit.py` with that venv's
python in a subprocess with every HTTP proxy pointed at a closed loopback port
(nothing can phone home), and returns the test scores as a contender result;
`quality.make_record` then scores them with `metrics.test_metrics` like every
other contender's.

Budget ("the same wall-clock budget"): the package's own recorded wall time
(`wall_seconds` of `package_tuned`, the whole `make tune` job) on that dataset
and seed, else DEFAULT_BUDGET_SECONDS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.contenders import PACKAGE_TUNED
from benchmarks.datasets import Dataset
from benchmarks.defaults import fit_rows
from benchmarks.selection import TEST

AUTOGLUON = "autogluon_medium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTOGLUON_PYTHON = os.path.join(ROOT, ".venv-autogluon", "bin", "python")
FIT_SCRIPT = os.path.join(ROOT, "benchmarks", "autogluon_fit.py")
CONFIRMATION_RESULTS = os.path.join(ROOT, "benchmarks", "results", "confirmation.json")
LABEL = "target"
# Where the package has no recorded run on a split: about the median of its recorded seed-0 wall times
# (510 s over 12 confirmation sets, 228-1,294 s), rounded up.
DEFAULT_BUDGET_SECONDS = 600.0
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


def installed(python: str = AUTOGLUON_PYTHON) -> bool:
    """Whether the AutoGluon venv exists (`make bench-autogluon-env`)."""
    return os.path.exists(python)


def package_budget(dataset: str, seed: int, earlier: list[dict] = (), path: str = CONFIRMATION_RESULTS
                   ) -> tuple[float, str]:
    """(seconds, where from): the package's wall time on (dataset, seed), from this run's records or the file."""
    rows = [r for r in earlier if r["contender"] == PACKAGE_TUNED and r["dataset"] == dataset and r["seed"] == seed]
    if not rows and os.path.exists(path):
        with open(path) as handle:
            rows = [r for r in json.load(handle).get("records", []) if r["contender"] == PACKAGE_TUNED
                    and r["dataset"] == dataset and r["seed"] == seed]
    if rows:
        return float(rows[-1].get("wall_seconds", rows[-1]["train_seconds"])), f"{PACKAGE_TUNED} wall_seconds"
    return DEFAULT_BUDGET_SECONDS, "default (no package run recorded on this split)"


def write_split(dataset: Dataset, assignment: np.ndarray, workdir: str) -> tuple[str, str]:
    """`workdir/train.parquet` (every non-test row, label column LABEL) and `workdir/test.parquet` (no label)."""
    os.makedirs(workdir, exist_ok=True)
    frame = dataset.frame(LABEL)
    train, test = os.path.join(workdir, "train.parquet"), os.path.join(workdir, "test.parquet")
    frame.iloc[fit_rows(assignment)].to_parquet(train, index=False)
    frame.loc[np.asarray(assignment) == TEST, dataset.features.columns].to_parquet(test, index=False)
    return train, test


def offline_env() -> dict:
    """The subprocess' environment: any HTTP(S) client goes through a closed loopback port; hubs offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NO_PROXY", "no_proxy")}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env[key] = CLOSED_PORT
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"})
    return env


def read_predictions(path: str, labels: np.ndarray) -> dict:
    """A contender result from the script's JSON and the test labels (scored later by `make_record`)."""
    with open(path) as handle:
        output = json.load(handle)
    scores = np.asarray(output.pop("scores"), dtype=np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"{path}: {scores.size} scores for {labels.size} test rows")
    return {"labels": labels, "scores": scores, "threshold": output.pop("decision_threshold"), **output}


def run_autogluon(dataset: Dataset, assignment: np.ndarray, seed: int, workdir: str, earlier: list[dict] = (),
                  budget: float | None = None, python: str = AUTOGLUON_PYTHON, script: str = FIT_SCRIPT) -> dict:
    """AutoGluon `medium_quality` on the protocol's split (a contender result).

    Args:
      earlier: This run's records so far (the package's record of this split, if it ran first).
      budget: Seconds for `fit(time_limit=)`; default: `package_budget`.
      python, script: The interpreter and script to run (tests substitute a stand-in for AutoGluon).

    Returns:
      labels, scores, threshold (the predictor's `decision_threshold`), train_seconds (the
      subprocess' wall time: import, fit, predict), budget_seconds, budget_source, fit_seconds, models, ...
    """
    if not installed(python):
        raise FileNotFoundError(f"{python} is missing: run `make bench-autogluon-env`")
    source = "given"
    if budget is None:
        budget, source = package_budget(dataset.name, seed, earlier)
    directory = os.path.join(workdir, f"autogluon-{seed}")
    train, test = write_split(dataset, assignment, directory)
    output = os.path.join(directory, "predictions.json")
    command = [python, script, "--train", train, "--test", test, "--label", LABEL, "--time-limit", f"{budget:.1f}",
               "--model-dir", os.path.join(directory, "models"), "--output", output]
    load_before, started = os.getloadavg(), time.time()
    # AutoGluon stops starting models at the limit; the margin covers imports, prediction, a model it must finish
    done = subprocess.run(command, env=offline_env(), cwd=directory, capture_output=True, text=True,
                          timeout=2 * budget + 600)
    seconds = time.time() - started
    if done.returncode != 0:
        raise RuntimeError(f"autogluon_fit exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    labels = dataset.labels[np.asarray(assignment) == TEST]
    result = read_predictions(output, labels)
    return {**result, "train_seconds": seconds, "budget_seconds": round(budget, 2), "budget_source": source,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "driver_python": sys.version.split()[0]}
