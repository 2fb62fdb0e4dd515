"""What TFMA's confidence intervals cost: one run, three evaluations (none, jackknife, Poisson bootstrap).

    .venv/bin/python -m benchmarks.intervals [--rows 100000 6200]

Trains one model pair on the synthetic set (a `trainer.task` run, 2 epochs)
unless `benchmarks/results/intervals-run/` exists, then times
`evaluation.run_evaluation` with each `intervals` setting on its test split,
in this process, and writes `benchmarks/results/intervals.json`. The ratio
to the run without intervals is the result; absolute seconds depend on the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from trainer.layout import DATA_DIR, RUN_JSON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "results", "intervals-run")
RESULT = os.path.join(ROOT, "benchmarks", "results", "intervals.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=(100_000, 6_200), metavar=("NEG", "POS"))
    parser.add_argument("--methods", default="none,jackknife,bootstrap", help="comma-separated `intervals` settings")
    args = parser.parse_args(argv)
    from evaluation import EvaluationOptions, run_evaluation
    from trainer.config import RunConfig
    from trainer.data.split import load_counts
    from trainer.pipeline import train_and_export

    if not os.path.exists(os.path.join(RUN, RUN_JSON)):
        config = RunConfig(data="synthetic", synthetic_rows=tuple(args.rows), output_dir=RUN, epochs=2, verbose=0,
                           selection="validation")
        train_and_export(config)
        train_and_export(config, weighted=False)
    results = {}
    for intervals in args.methods.split(","):
        started = time.time()
        summary = run_evaluation(RUN, EvaluationOptions(intervals=intervals))
        results[intervals] = {"tfma_seconds": summary.tfma_seconds,
                              "run_evaluation_seconds": round(time.time() - started, 1),
                              "pr_auc_interval": summary.intervals["candidate"].get("pr_auc")}
        print(intervals, results[intervals], flush=True)
    base = results.get("none", next(iter(results.values())))["tfma_seconds"]
    for value in results.values():
        value["tfma_ratio_to_none"] = round(value["tfma_seconds"] / base, 2)
    test = load_counts(os.path.join(RUN, DATA_DIR))["test"]
    payload = {"rows": list(args.rows), "test_examples": sum(test), "cpus": os.cpu_count(), "results": results}
    with open(RESULT, "w") as handle:
        json.dump(payload, handle, indent=1)
    print(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
