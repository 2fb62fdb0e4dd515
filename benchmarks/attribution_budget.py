"""Sampled Shapley's evaluation budget: time against the stability of the features it ranks first.

    python -m benchmarks.attribution_budget --run runs/sylva/executions/0001 [--budgets 200000 100000 50000]

For each budget (`AttributionOptions.max_evaluations`) and two seeds, the
candidate model of a finished tuning execution is explained on the rows and
background `evaluation.attributions.sample_sizes` picks, as `evaluation.task`
would. Reported per budget: the seconds per explanation, and how much the two
seeds agree on the features ranked first by weighted mean |attribution| over
the explained positives (top-10 and top-5 overlap, Spearman correlation of the
whole ranking). Disagreement between seeds is the sampling noise a reader of
the report would see. Writes `benchmarks/results/attribution_budget.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from evaluation.attributions import AttributionOptions, margin_function, sample_rows, sample_sizes, sampled_shapley
from evaluation.run_files import split_pattern
from trainer.atomic import write_json_atomically
from trainer.crossval import load_arrays
from trainer.data.schema import load_schema
from trainer.layout import CANDIDATE_DIR, DATA_DIR, list_versions

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "attribution_budget.json")


def _ranking(values: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Feature indices by weighted mean |attribution| over the explained positives, largest first."""
    positive = labels == 1
    return np.argsort(-np.average(np.abs(values[positive]), axis=0, weights=weights[positive]))


def load(run: str):
    """The run's schema, test and training arrays, and its candidate's margin function (read once)."""
    schema = load_schema(os.path.join(run, DATA_DIR))
    test, train = load_arrays([split_pattern(run)], schema), load_arrays([split_pattern(run, "train")], schema)
    versions = list_versions(os.path.join(run, CANDIDATE_DIR))
    return schema, test, train, margin_function(versions[max(versions)], schema)


def explain(loaded, budget: int, seed: int) -> dict:
    """One explanation of the run's candidate at `budget`: its sizes, seconds and feature ranking."""
    schema, test, train, f = loaded
    names = [feature.name for feature in schema.features]
    rows, background = sample_sizes(AttributionOptions(max_evaluations=budget), len(names), True)
    index, weights = sample_rows(test.labels, rows, seed)
    chosen = np.random.default_rng(seed).choice(len(train.labels), size=background, replace=False)
    started = time.perf_counter()
    explained = sampled_shapley(f, {n: test.features[n][index] for n in names},
                                {n: train.features[n][chosen] for n in names}, seed)
    seconds = time.perf_counter() - started
    return {"rows": rows, "background": background, "seconds": round(seconds, 1),
            "ranking": _ranking(explained.values, weights, test.labels[index]).tolist()}


def agreement(first: list[int], second: list[int]) -> dict:
    """Top-10 and top-5 overlap and the Spearman correlation of two rankings of the same features."""
    rank_a, rank_b = np.argsort(first), np.argsort(second)  # feature -> its place
    return {"top10_overlap": len(set(first[:10]) & set(second[:10])),
            "top5_overlap": len(set(first[:5]) & set(second[:5])), "spearman": round(float(np.corrcoef(rank_a, rank_b)[0, 1]), 3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished tuning execution's directory")
    parser.add_argument("--budgets", type=int, nargs="+", default=[200_000, 100_000, 50_000])
    args = parser.parse_args(argv)
    loaded, results = load(args.run), []
    for budget in args.budgets:
        runs = [explain(loaded, budget, seed) for seed in (0, 1)]
        results.append({"budget": budget, "rows": runs[0]["rows"], "background": runs[0]["background"],
                        "seconds": [r["seconds"] for r in runs], **agreement(runs[0]["ranking"], runs[1]["ranking"])})
        print(json.dumps(results[-1]), flush=True)
    write_json_atomically(RESULTS, {"run": args.run, "results": results})


if __name__ == "__main__":
    main()
