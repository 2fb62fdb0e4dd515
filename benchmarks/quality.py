"""Model quality: every contender on identical stratified splits, several seeds.

Writes `benchmarks/results/quality[-quick].json`: one record per (dataset,
seed, contender) and the per-dataset mean / standard deviation over seeds.
The file is rewritten after each dataset, so an interrupted run keeps what it
finished.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback

import numpy as np

from benchmarks import contenders as contenders_lib
from benchmarks.datasets import quality_datasets
from benchmarks.metrics import HIGHER_IS_BETTER, METRICS, test_metrics
from trainer.split import assign_splits

SPLIT = (0.7, 0.15, 0.15)


def evaluate_seed(dataset, seed: int, workdir: str, epochs: int, log, failures: list) -> list[dict]:
    """All contenders on one split of one dataset; one record each (failures appended to `failures`)."""
    assignment = assign_splits(dataset.labels, SPLIT, seed)
    records = []

    def record(name, result, extra=None):
        metrics = test_metrics(result["labels"], result["scores"], result["threshold"])
        row = {"dataset": dataset.name, "seed": seed, "contender": name, **metrics,
               "train_seconds": round(float(result["train_seconds"]), 2),
               "test_examples": int(len(result["labels"])), "test_positives": int(np.sum(result["labels"]))}
        row.update({k: v for k, v in result.items() if k not in ("labels", "scores", "threshold", "train_seconds")})
        row.update(extra or {})
        records.append(row)
        log(f"  {dataset.name} seed {seed} {name:20s} PR-AUC {metrics['pr_auc']:.3f}  ROC-AUC {metrics['roc_auc']:.3f}"
            f"  R@P50 {metrics['recall_at_p50']:.3f}  F1 {metrics['f1_at_threshold']:.3f}  Brier {metrics['brier']:.4f}"
            f"  ({result['train_seconds']:.1f} s)")

    package = contenders_lib.run_package(dataset, assignment, seed, os.path.join(workdir, dataset.name), epochs)
    for name in contenders_lib.PACKAGE_CONTENDERS:
        record(name, package[name], {"split_verified": True})
    test_counts = package["split_check"]["counts"]["test"]
    for name in contenders_lib.SKLEARN_CONTENDERS:
        try:
            result = contenders_lib.run_sklearn(name, dataset, assignment, seed)
        except Exception as error:  # one failing contender does not lose the others' results
            failures.append({"dataset": dataset.name, "seed": seed, "contender": name, "error": repr(error),
                             "traceback": traceback.format_exc(limit=5)})
            log(f"  FAILED {dataset.name} seed {seed} {name}: {error!r}")
            continue
        if [int(len(result["labels"]) - result["labels"].sum()), int(result["labels"].sum())] != test_counts:
            raise contenders_lib.SplitMismatch(f"{name}: test counts differ from the package's {test_counts}")
        record(name, result)
    return records


def aggregate(records: list[dict]) -> dict:
    """{dataset: {contender: {metric: {"mean", "std", "n"}}}} over seeds."""
    table: dict = {}
    for row in records:
        cell = table.setdefault(row["dataset"], {}).setdefault(row["contender"], {})
        for metric in (*METRICS, "train_seconds"):
            cell.setdefault(metric, []).append(row[metric])
    for contenders in table.values():
        for name, cell in contenders.items():
            contenders[name] = {metric: {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                         "n": len(values)} for metric, values in cell.items()}
    return table


def ranks(table: dict) -> dict:
    """Per metric: each contender's mean rank over datasets (1 = best) and its wins (ties shared)."""
    summary: dict = {}
    for metric in METRICS:
        sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
        per_contender: dict = {}
        for contenders in table.values():
            names = sorted(contenders)
            values = np.array([sign * contenders[n][metric]["mean"] for n in names])
            order = _average_ranks(values)
            best = values.min()
            for name, rank, value in zip(names, order, values, strict=True):
                entry = per_contender.setdefault(name, {"ranks": [], "wins": 0.0})
                entry["ranks"].append(float(rank))
                if value == best:
                    entry["wins"] += 1.0 / float((values == best).sum())
        summary[metric] = {name: {"mean_rank": float(np.mean(e["ranks"])), "wins": e["wins"],
                                  "datasets": len(e["ranks"])} for name, e in per_contender.items()}
    return summary


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ascending values, ties get their average rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def run(full: bool, seeds: int, path: str, epochs: int = 30, synthetic_rows=None, only=None, log=print) -> dict:
    """Runs the quality benchmark and writes `path`; returns its payload."""
    payload = {"mode": "full" if full else "quick", "seeds": list(range(seeds)), "split": list(SPLIT),
               "threshold_objective": "recall_at_precision:0.5 (chosen on validation)",
               "package_epochs": epochs, "contenders": contenders_lib.LABELS, "datasets": [], "records": [],
               "failures": []}
    if only and os.path.exists(path):  # a partial rerun keeps the other datasets' results
        with open(path) as handle:
            previous = json.load(handle)
        if previous.get("mode") == payload["mode"] and previous.get("seeds") == payload["seeds"]:
            payload["datasets"] = [d for d in previous["datasets"] if d["name"] not in only]
            payload["records"] = [r for r in previous["records"] if r["dataset"] not in only]
            payload["failures"] = [f for f in previous["failures"] if f["dataset"] not in only]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as workdir:
        for name, loader in quality_datasets(full, synthetic_rows):
            if only and name not in only:
                continue
            dataset = loader()
            payload["datasets"].append(dataset.describe())
            log(f"[quality] {dataset.name}: {dataset.labels.size} rows, {dataset.positives} positives "
                f"({100 * dataset.rate:.2f}%)")
            for seed in payload["seeds"]:
                try:
                    payload["records"].extend(evaluate_seed(dataset, seed, workdir, epochs, log, payload["failures"]))
                except contenders_lib.SplitMismatch:
                    raise
                except Exception as error:  # the package failed: record it, go on with the next seed
                    payload["failures"].append({"dataset": name, "seed": seed, "error": repr(error),
                                                "traceback": traceback.format_exc(limit=5)})
                    log(f"  FAILED {name} seed {seed}: {error!r}")
            payload["table"] = aggregate(payload["records"])
            payload["ranks"] = ranks(payload["table"])
            payload["seconds"] = round(time.time() - started, 1)
            _write(payload, path)
    return payload


def _write(payload: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=1, default=float)
    os.replace(temporary, path)
