"""Times the default `make tune` job on sylva, end to end, from a cold process.

Runs exactly what `make tune` runs after its install step
(`python -m tuning.task --data sylva --output-dir DIR --time-budget 120`:
split, the portfolio and Bayesian trials of 8 epochs (10 at most, none started
after 120 s), retrain of the ensemble's members for the candidate and its
unweighted twin, TFMA evaluation, report) in a fresh interpreter, and writes
`benchmarks/results/make_tune.json`.

    make bench-tune      (.venv/bin/python -m benchmarks.make_tune --time-budget $(TIME_BUDGET))
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from trainer.layout import execution_dir, execution_ids
from trainer.summary import read_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(ROOT, "benchmarks", "results", "make_tune.json")


def measure(time_budget: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run = os.path.join(scratch, "run")
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "tuning.task", "--data", "sylva", "--output-dir", run,
                               "--time-budget", time_budget, "--verbose", "0"], cwd=ROOT, check=False, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode not in (0, 1):  # 1: the candidate was NOT_BLESSED, which is a result too
            raise RuntimeError(f"make tune failed with exit status {done.returncode}")
        total = time.time() - started
        summary = read_run(execution_dir(run, execution_ids(run)[0]))
    tuning = summary.tuning
    return {
        "dataset": "sylva", "trials": tuning["trials"], "tuning_epochs": summary.config["tuning_epochs"],
        "search_seconds": tuning["search_seconds"], "seconds_per_trial": tuning["search_seconds"] / tuning["trials"],
        "total_seconds": round(total, 1), "tfma_seconds": summary.evaluation.tfma_seconds if summary.evaluation else None,
        "weighted_test_pr_auc": summary.weighted.test.pr_auc,
        "baseline_test_pr_auc": summary.baseline.test.pr_auc,
        "verdict": summary.evaluation.verdict if summary.evaluation else None, "pushed": (summary.push or {}).get("pushed"),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", required=True, help="make tune's TIME_BUDGET (the Makefile passes it)")
    result = measure(parser.parse_args(argv).time_budget)
    with open(RESULT, "w") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result, indent=1))
    from benchmarks.run import render_doc

    render_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
