"""Runs inside the AutoGluon venv (`make bench-autogluon-env`), never in the package's: one AutoGluon fit.

  .venv-autogluon/bin/python benchmarks/autogluon_fit.py --train train.parquet --test test.parquet \
      --label target --time-limit 600 --model-dir DIR --output predictions.json

`TabularPredictor(label, problem_type="binary", eval_metric="average_precision")
.fit(train, presets="medium_quality", time_limit=...)` on the train rows, then the
positive class's probability for every test row, in the test file's row order.
The test file holds no label: the driver (`benchmarks/autogluon_contender.py`)
keeps the labels and scores the predictions with the protocol's metrics.

Imports only AutoGluon and pandas (not the `benchmarks` package, which needs
the package's TensorFlow stack). Writes `--output` as JSON: "scores", the
predictor's "decision_threshold", "fit_seconds", "best_model", "models".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="Parquet: feature columns plus the label column")
    parser.add_argument("--test", required=True, help="Parquet: the same feature columns, no label")
    parser.add_argument("--label", required=True)
    parser.add_argument("--time-limit", type=float, required=True, help="seconds, AutoGluon's fit(time_limit=)")
    parser.add_argument("--model-dir", required=True, help="where AutoGluon saves its models")
    parser.add_argument("--output", required=True, help="JSON file for the predictions")
    parser.add_argument("--presets", default="medium_quality")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import autogluon.tabular
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    train, test = pd.read_parquet(args.train), pd.read_parquet(args.test)
    if args.label in test.columns:  # the labels stay with the driver
        print(f"autogluon_fit: the test file must not hold the label column {args.label!r}", file=sys.stderr)
        return 2
    started = time.time()
    predictor = TabularPredictor(label=args.label, problem_type="binary", eval_metric="average_precision",
                                 path=args.model_dir, verbosity=1)
    predictor.fit(train, presets=args.presets, time_limit=args.time_limit)
    fit_seconds = time.time() - started
    if predictor.positive_class != 1:  # labels are 0/1 with 1 the minority; anything else is a bug upstream
        print(f"autogluon_fit: positive class {predictor.positive_class!r}, expected 1", file=sys.stderr)
        return 2
    started = time.time()
    scores = predictor.predict_proba(test, as_multiclass=False)
    predict_seconds = time.time() - started
    leaderboard = predictor.leaderboard(silent=True)
    result = {"scores": [float(s) for s in scores.to_numpy()], "decision_threshold": float(predictor.decision_threshold),
              "fit_seconds": round(fit_seconds, 2), "predict_seconds": round(predict_seconds, 2),
              "best_model": str(predictor.model_best), "models": [str(m) for m in leaderboard["model"]],
              "presets": args.presets, "time_limit": args.time_limit,
              "autogluon_version": autogluon.tabular.__version__, "cpus": os.cpu_count()}
    temporary = args.output + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(result, handle)
    os.replace(temporary, args.output)  # a partial file never looks like a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
