"""How far apart two samples of one distribution are, by the drift comparators: the defaults' evidence.

    python -m benchmarks.drift_noise [--pairs 200] [--seed 0]

For each sample size, `--pairs` pairs of independent samples are drawn from
one distribution (a standard normal and a log-normal numeric feature, a
categorical feature of 5 and of 200 equally likely values), their statistics
computed as `evaluation.drift` computes them (`trainer.data.statistics`) and
compared with its comparators (`evaluation.comparators`): Jensen-Shannon
divergence over the equal-width (TFDV's default source) and the quantiles
histograms, L-infinity for the categorical ones. Any distance here is noise;
the defaults of `evaluation.skew` (thresholds, `MIN_ROWS`) are chosen above
its 99th percentile. Writes `benchmarks/results/drift_noise.json`.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from evaluation import comparators
from trainer.data import statistics

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "drift_noise.json")
SIZES = (100, 200, 500, 1000, 2000, 5000)
STANDARD, QUANTILES = statistics_pb2.Histogram.STANDARD, statistics_pb2.Histogram.QUANTILES


def _features(rng: np.random.Generator, n: int) -> dict:
    columns = statistics.Columns(n, {"normal": rng.normal(size=n), "lognormal": np.exp(rng.normal(size=n))},
                                 {"values_5": rng.choice(5, n).astype(str).astype(object),
                                  "values_200": rng.choice(200, n).astype(str).astype(object)})
    proto = statistics.to_proto(statistics.DataStatistics().add(columns))
    return {feature.path.step[0]: feature for feature in proto.datasets[0].features}


def distances(first: dict, second: dict) -> dict[str, float]:
    """Every comparator's distance between two samples' statistics."""
    result = {}
    for name in ("normal", "lognormal"):
        result[f"jsd_standard_{name}"] = comparators.jensen_shannon(first[name], second[name], STANDARD)
        result[f"jsd_quantiles_{name}"] = comparators.jensen_shannon(first[name], second[name], QUANTILES)
    for name in ("values_5", "values_200"):
        result[f"l_infinity_{name}"] = comparators.l_infinity(comparators.string_counts(first[name]),
                                                              comparators.string_counts(second[name]))[1]
    return result


def measure(pairs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    table = {}
    for n in SIZES:
        runs = [distances(_features(rng, n), _features(rng, n)) for _ in range(pairs)]
        table[str(n)] = {key: {"median": float(np.median([r[key] for r in runs])),
                               "p99": float(np.quantile([r[key] for r in runs], 0.99)),
                               "max": float(max(r[key] for r in runs))} for key in runs[0]}
    return {"pairs": pairs, "seed": seed, "sizes": table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_noise", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = measure(args.pairs, args.seed)
    with open(RESULTS, "w") as handle:
        json.dump(results, handle, indent=1)
    for n, row in results["sizes"].items():
        print(n, "  ".join(f"{key} {value['median']:.3f}/{value['p99']:.3f}" for key, value in row.items()))


if __name__ == "__main__":
    main()
