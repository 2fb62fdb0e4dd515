"""Does a model built from the Beam data step's sketched quantiles match one built from exact quantiles?

    .venv/bin/python -m benchmarks.statistics_quality [--datasets sylva,synthetic_53k] [--seeds 3]

The Beam data step computes the quantiles behind the piecewise-linear (PLE)
bins from a mergeable sketch above 4,096 training values a feature
(trainer/data/beam_stats.py); everything else in the schema is exact. For
each dataset and seed, the same Parquet file is prepared by the data step
twice: arm `beam` keeps its schema, arm `exact` replaces every numeric
feature's quantiles by NumPy's over the written training split (what the
retired in-memory engine computed). The default neural model (TabM on PLE
inputs, `model_family=neural`: the trees do not use the quantiles) is
trained on each with the same seed. Records test PR-AUC, the largest
quantile difference between the two schemas (in units of the feature's
standard deviation), and writes `benchmarks/results/statistics_quality.json`
(records before the engine's removal name the exact arm `in_memory`). The
comparison is paired: the per-pair difference against the seed-to-seed
spread is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile

import numpy as np

from benchmarks.contenders import write_parquet
from benchmarks.datasets import load_sylva, load_synthetic
from trainer.atomic import write_json_atomically
from trainer.layout import DATA_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(ROOT, "benchmarks", "results", "statistics_quality.json")
ARMS = ("exact", "beam")
DATASETS = {"sylva": load_sylva, "synthetic_53k": lambda: load_synthetic((50_000, 3_100))}


def exact_quantiles(data) -> None:
    """Replaces the prepared schema's numeric quantiles by NumPy's over the written training split."""
    import dataclasses

    import tensorflow as tf

    from trainer.data.dataset import read_serialized
    from trainer.data.schema import quantiles, save_schema

    parsed = tf.io.parse_example(read_serialized(data.pattern("train")), data.schema.feature_spec())
    features = []
    for feature in data.schema.features:
        if feature.kind == "numeric":
            values = parsed[feature.name].numpy().astype(np.float64)
            feature = dataclasses.replace(feature, quantiles=quantiles(values[~np.isnan(values)]))
        features.append(feature)
    save_schema(dataclasses.replace(data.schema, features=tuple(features)), data.directory)


def run_one(path: str, name: str, seed: int, engine: str, workdir: str) -> tuple[dict, object]:
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from trainer.data.schema import load_schema
    from trainer.pipeline import train_and_export

    output_dir = os.path.join(workdir, f"{name}-{seed}-{engine}")
    shutil.rmtree(output_dir, ignore_errors=True)
    config = RunConfig(data=path, label="target", output_dir=output_dir, seed=seed)
    if engine == "exact":
        exact_quantiles(prepare_data(config))  # train_and_export then reuses the prepared data
    summary = train_and_export(config, values={"model_family": "neural"})
    schema = load_schema(os.path.join(output_dir, DATA_DIR))
    shutil.rmtree(output_dir, ignore_errors=True)
    row = {"dataset": name, "seed": seed, "engine": engine, "test_pr_auc": summary.test.pr_auc,
           "train_seconds": summary.train_seconds}
    return row, schema


def quantile_gap(first, second) -> float:
    """The largest |quantile difference| / std over the numeric features of two schemas."""
    gaps = [np.max(np.abs(np.subtract(a.quantiles, b.quantiles))) / (a.std or 1.0)
            for a, b in zip(first.numeric, second.numeric, strict=True)]
    return float(max(gaps, default=0.0))


def summarize(rows: list[dict]) -> dict:
    out = {}
    for name in sorted({row["dataset"] for row in rows}):
        by_seed = {}
        for row in rows:
            if row["dataset"] == name:
                by_seed.setdefault(row["seed"], {})[row["engine"]] = row["test_pr_auc"]
        pairs = [v for v in by_seed.values() if len(v) == 2]
        if not pairs:
            continue
        differences = [p["beam"] - p["exact"] for p in pairs]
        exact = [p["exact"] for p in pairs]
        out[name] = {"pairs": len(pairs), "mean_difference_beam_minus_exact": statistics.fmean(differences),
                     "max_abs_difference": max(abs(d) for d in differences),
                     "seed_spread_exact": statistics.pstdev(exact) if len(exact) > 1 else None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.datasets.split(","):
            path = write_parquet(DATASETS[name](), workdir)
            for seed in range(args.seeds):
                schemas = {}
                for arm in ARMS:
                    row, schemas[arm] = run_one(path, name, seed, arm, workdir)
                    rows.append(row)
                rows[-1]["quantile_gap_in_std"] = quantile_gap(schemas["exact"], schemas["beam"])
                print(json.dumps(rows[-2:]), flush=True)
                write_json_atomically(RESULT, {"rows": rows, "summary": summarize(rows)})  # partial results survive
    print(json.dumps(summarize(rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
