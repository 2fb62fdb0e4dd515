"""Does a model built from the Beam data step's statistics match one built in memory?

    .venv/bin/python -m benchmarks.statistics_quality [--datasets sylva,synthetic_53k] [--seeds 3]

The two engines of `prepare_data` write the same split (record for record up
to 1M rows) and the same means, standard deviations, missing fractions and
vocabularies; they differ in the quantiles behind the piecewise-linear (PLE)
bins: exact in memory, from a mergeable sketch in Beam above 4,096 training
values a feature (trainer/data/beam_stats.py). For each dataset and seed, the
same Parquet file is prepared by each engine, and the default neural model
(TabM on PLE inputs, `model_family=neural`: the trees do not use the
quantiles) is trained on each with the same seed. Records test PR-AUC, the
largest quantile difference between the two schemas (in units of the
feature's standard deviation), and writes
`benchmarks/results/statistics_quality.json`. The comparison is paired: the
per-pair difference against the seed-to-seed spread is the result.
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
ENGINES = ("in_memory", "beam")
DATASETS = {"sylva": load_sylva, "synthetic_53k": lambda: load_synthetic((50_000, 3_100))}


def run_one(path: str, name: str, seed: int, engine: str, workdir: str) -> tuple[dict, object]:
    from trainer.config import RunConfig
    from trainer.data.schema import load_schema
    from trainer.pipeline import train_and_export

    output_dir = os.path.join(workdir, f"{name}-{seed}-{engine}")
    shutil.rmtree(output_dir, ignore_errors=True)
    config = RunConfig(data=path, label="target", output_dir=output_dir, seed=seed, data_engine=engine)
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
        differences = [p["beam"] - p["in_memory"] for p in pairs]
        memory = [p["in_memory"] for p in pairs]
        out[name] = {"pairs": len(pairs), "mean_difference_beam_minus_in_memory": statistics.fmean(differences),
                     "max_abs_difference": max(abs(d) for d in differences),
                     "seed_spread_in_memory": statistics.pstdev(memory) if len(memory) > 1 else None}
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
                for engine in ENGINES:
                    row, schemas[engine] = run_one(path, name, seed, engine, workdir)
                    rows.append(row)
                rows[-1]["quantile_gap_in_std"] = quantile_gap(schemas["in_memory"], schemas["beam"])
                print(json.dumps(rows[-2:]), flush=True)
                write_json_atomically(RESULT, {"rows": rows, "summary": summarize(rows)})  # partial results survive
    print(json.dumps(summarize(rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
