"""Which validation metric should early stopping watch: minority PR-AUC or log-loss?

    .venv/bin/python -m benchmarks.early_stopping [--datasets yeast4,pc1,...] [--seeds 3]

For each dataset and seed, trains the package's default neural model
(`train_and_export` with `model_family=neural`, the same split for both
monitors: the split depends on the seed only) once per monitor and records
the test PR-AUC the package measures on its own test split, the epochs run
and the held-out selection mode. Writes
`benchmarks/results/early_stopping.json`; the comparison is paired (same
dataset, seed and split), so the per-pair difference is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from benchmarks.contenders import write_parquet
from benchmarks.datasets import load_common, load_sylva
from trainer.atomic import write_json_atomically

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(ROOT, "benchmarks", "results", "early_stopping.json")
DEFAULT_DATASETS = "yeast4,pc1,abalone9_18,satimage,page_blocks0,sylva"
MONITORS = ("pr_auc", "log_loss")


def run_one(dataset, seed: int, monitor: str, workdir: str) -> dict:
    from trainer.config import RunConfig
    from trainer.pipeline import train_and_export

    output_dir = os.path.join(workdir, f"{dataset.name}-{seed}-{monitor}")
    shutil.rmtree(output_dir, ignore_errors=True)
    config = RunConfig(data=write_parquet(dataset, workdir), label="target", output_dir=output_dir, seed=seed,
                       verbose=0, early_stopping=monitor)
    summary = train_and_export(config, values={"model_family": "neural"})
    shutil.rmtree(output_dir, ignore_errors=True)
    return {"dataset": dataset.name, "seed": seed, "monitor": monitor, "test_pr_auc": summary.test.pr_auc,
            "epochs_run": summary.epochs_run, "selection": summary.selection, "train_seconds": summary.train_seconds}


def summarize(rows: list[dict]) -> dict:
    pairs = {}
    for row in rows:
        pairs.setdefault((row["dataset"], row["seed"]), {})[row["monitor"]] = row["test_pr_auc"]
    differences = [p["log_loss"] - p["pr_auc"] for p in pairs.values() if len(p) == 2]
    if not differences:
        return {"pairs": 0}
    wins = sum(d > 0 for d in differences)
    return {"pairs": len(differences), "mean_difference_log_loss_minus_pr_auc": sum(differences) / len(differences),
            "log_loss_better": wins, "pr_auc_better": sum(d < 0 for d in differences)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.datasets.split(","):
            dataset = load_sylva() if name == "sylva" else load_common(name)
            for seed in range(args.seeds):
                for monitor in MONITORS:
                    rows.append(run_one(dataset, seed, monitor, workdir))
                    print(json.dumps(rows[-1]), flush=True)
                    write_json_atomically(RESULT, {"rows": rows, "summary": summarize(rows)})  # partial results survive
    print(json.dumps(summarize(rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
