"""Model quality: every contender on identical stratified splits, several seeds.

Writes `benchmarks/results/quality[-quick].json`: one record per (dataset,
seed, contender) and the per-dataset mean / standard deviation over seeds.
Results are merged into the existing file by (dataset, seed, contender): a
run of some contenders (`contenders=`) or datasets (`only=`) replaces just
those records and keeps every other one. The file is rewritten after each
seed, so an interrupted run keeps what it finished.
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
from benchmarks.selection import TUNING_TRIALS
from trainer.data.split import assign_splits, class_counts

SPLIT = (0.7, 0.15, 0.15)


def make_record(dataset: str, seed: int, name: str, result: dict, test_counts: list[int], extra=None) -> dict:
    """One (dataset, seed, contender) row: test metrics plus what the contender reported.

    Raises:
      SplitMismatch: the contender's test labels do not have `assign_splits`' class counts.
    """
    if [int(len(result["labels"]) - np.sum(result["labels"])), int(np.sum(result["labels"]))] != test_counts:
        raise contenders_lib.SplitMismatch(f"{name}: test counts differ from assign_splits' {test_counts}")
    metrics = test_metrics(result["labels"], result["scores"], result["threshold"])
    row = {"dataset": dataset, "seed": seed, "contender": name, **metrics,
           "train_seconds": round(float(result["train_seconds"]), 2),
           "test_examples": int(len(result["labels"])), "test_positives": int(np.sum(result["labels"]))}
    row.update({k: v for k, v in result.items() if k not in ("labels", "scores", "threshold", "train_seconds")})
    row.update(extra or {})
    return row


def record_line(row: dict) -> str:
    """A record's log line."""
    return (f"  {row['dataset']} seed {row['seed']} {row['contender']:20s} PR-AUC {row['pr_auc']:.3f}"
            f"  ROC-AUC {row['roc_auc']:.3f}  R@P50 {row['recall_at_p50']:.3f}  F1 {row['f1_at_threshold']:.3f}"
            f"  R/P@thr {row['recall_at_threshold']:.3f}/{row['precision_at_threshold']:.3f}"
            f"  Brier {row['brier']:.4f}  ({row['train_seconds']:.1f} s)")


def evaluate_seed(dataset, seed: int, workdir: str, epochs: int, log, failures: list,
                  contenders=contenders_lib.ALL, trials: int = TUNING_TRIALS) -> list[dict]:
    """The selected contenders on one split of one dataset; one record each (failures appended to `failures`)."""
    assignment = assign_splits(dataset.labels, SPLIT, seed)
    test_counts = class_counts(dataset.labels, assignment)["test"]
    records = []

    def record(name, result, extra=None):
        row = make_record(dataset.name, seed, name, result, test_counts, extra)
        records.append(row)
        log(record_line(row))

    def attempt(names, run):
        """`run()`, or failure entries for `names` (one failing contender does not lose the others)."""
        try:
            return run()
        except contenders_lib.SplitMismatch:
            raise
        except Exception as error:
            for name in names:
                failures.append({"dataset": dataset.name, "seed": seed, "contender": name, "error": repr(error),
                                 "traceback": traceback.format_exc(limit=5)})
            log(f"  FAILED {dataset.name} seed {seed} {'+'.join(names)}: {error!r}")
            return None

    workdir = os.path.join(workdir, dataset.name)
    package_names = [n for n in contenders_lib.PACKAGE_CONTENDERS if n in contenders]
    if package_names:
        package = attempt(package_names, lambda: contenders_lib.run_package(dataset, assignment, seed, workdir, epochs))
        for name in package_names if package else ():
            record(name, package[name], {"split_verified": True})
    if contenders_lib.PACKAGE_TUNED in contenders:
        result = attempt([contenders_lib.PACKAGE_TUNED], lambda: contenders_lib.run_package_tuned(
            dataset, assignment, seed, workdir, trials, epochs))
        if result:
            record(contenders_lib.PACKAGE_TUNED, result, {"split_verified": True})
    for name in [n for n in (*contenders_lib.SKLEARN_CONTENDERS, *contenders_lib.TUNED_TREE_CONTENDERS)
                 if n in contenders]:
        if name in contenders_lib.TUNED_TREE_CONTENDERS:
            from benchmarks.tuned import run_tuned

            result = attempt([name], lambda name=name: run_tuned(name, dataset, assignment, seed, trials))
        else:
            result = attempt([name], lambda name=name: contenders_lib.run_sklearn(name, dataset, assignment, seed))
        if result:
            record(name, result)
    return records


def aggregate(records: list[dict], datasets: list[str] | None = None) -> dict:
    """{dataset: {contender: {metric: {"mean", "std", "n"}}}} over seeds (population sd).

    Metrics a record lacks (added after it was written) are left out of its cell.
    Datasets come in the order of `datasets` (then any others, as met).
    """
    table: dict = {name: {} for name in datasets or ()}
    for row in records:
        cell = table.setdefault(row["dataset"], {}).setdefault(row["contender"], {})
        for metric in (*METRICS, "train_seconds"):
            if row.get(metric) is not None:
                cell.setdefault(metric, []).append(row[metric])
    for contenders in table.values():
        for name, cell in contenders.items():
            contenders[name] = {metric: {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                         "n": len(values)} for metric, values in cell.items()}
    return {name: contenders for name, contenders in table.items() if contenders}


def common_datasets(table: dict, contenders: list[str]) -> list[str]:
    """The datasets on which every one of `contenders` has a PR-AUC."""
    return [d for d, cells in table.items() if all("pr_auc" in cells.get(c, {}) for c in contenders)]


def ranks(table: dict, contenders: list[str] | None = None, datasets: list[str] | None = None) -> dict:
    """Per metric: each contender's mean rank over datasets (1 = best) and its wins (ties shared).

    Ranks are taken among `contenders` (default: all in the table) on
    `datasets` (default: those where all of them have results), so every
    mean rank is over the same datasets and the same field. A metric some of
    them lack on some of those datasets is left out.
    """
    if contenders is None:
        contenders = sorted({c for cells in table.values() for c in cells})
    datasets = common_datasets(table, contenders) if datasets is None else datasets
    summary: dict = {}
    for metric in METRICS:
        if not datasets or not all(metric in table[d][c] for d in datasets for c in contenders):
            continue
        sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
        per_contender: dict = {}
        for dataset in datasets:
            names = sorted(contenders)
            values = np.array([sign * table[dataset][n][metric]["mean"] for n in names])
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


def overview(table: dict, contenders: list[str], datasets: list[str]) -> dict:
    """Per contender over `datasets`: mean of the per-dataset means of each metric, and the spread.

    The spread is the seed-to-seed standard deviation of PR-AUC on a dataset,
    averaged over the datasets that have more than one seed (None when none
    has); `spread_datasets` counts them. A metric missing on any of the
    datasets is None.
    """
    result = {}
    for name in contenders:
        cells = [table[d][name] for d in datasets]
        entry = {m: (float(np.mean([c[m]["mean"] for c in cells])) if cells and all(m in c for c in cells) else None)
                 for m in (*METRICS, "train_seconds")}
        multi = [c for c in cells if c["pr_auc"]["n"] > 1]
        entry["pr_auc_spread"] = float(np.mean([c["pr_auc"]["std"] for c in multi])) if multi else None
        entry["spread_datasets"] = len(multi)
        entry["datasets"] = len(cells)
        result[name] = entry
    return result


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ascending values, ties get their average rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def merge(payload: dict, dataset: str, seed: int, contenders, records: list[dict], failures: list[dict]) -> None:
    """Replaces the records and failures of (dataset, seed, each of `contenders`) in `payload`, in place."""
    def replaced(row):
        return row["dataset"] == dataset and row["seed"] == seed and row.get("contender") in contenders

    payload["records"] = [r for r in payload["records"] if not replaced(r)] + records
    payload["failures"] = [f for f in payload["failures"] if not replaced(f)] + failures


def load_previous(path: str, mode: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        previous = json.load(handle)
    return previous if previous.get("mode") == mode else None


def finish(payload: dict, order: list[str]) -> None:
    """Recomputes seeds, dataset order, the per-dataset table and the ranks from the records."""
    known = {d["name"]: d for d in payload["datasets"]}
    names = [n for n in order if n in known] + [n for n in known if n not in order]
    payload["datasets"] = [known[n] for n in names]
    payload["seeds"] = sorted({int(r["seed"]) for r in payload["records"]} | set(payload["seeds"]))
    payload["table"] = aggregate(payload["records"], names)
    payload["ranks"] = ranks(payload["table"])


def run(full: bool, seeds: int, path: str, epochs: int = 30, synthetic_rows=None, only=None, log=print,
        contenders=None, trials: int = TUNING_TRIALS, fresh: bool = False, first_seed: int = 0) -> dict:
    """Runs the quality benchmark, merges it into `path` and returns the payload.

    Args:
      contenders: Names to run (default: all of `contenders.ALL`).
      only: Dataset names to run (default: all of the mode's datasets).
      trials: Trials per tuned contender (`TUNING_TRIALS` in a full run).
      fresh: Start a new file instead of merging into the existing one.
      first_seed: Seeds run are first_seed .. first_seed + seeds - 1.
    """
    contenders = tuple(contenders or contenders_lib.ALL)
    mode = "full" if full else "quick"
    payload = {"mode": mode, "seeds": [], "split": list(SPLIT), "datasets": [], "records": [], "failures": []}
    previous = None if fresh else load_previous(path, mode)
    if previous:
        payload.update({k: previous[k] for k in ("seeds", "datasets", "records", "failures") if k in previous})
    payload.update({"threshold_objective": "recall_at_precision:0.5 (chosen on validation)",
                    "package_epochs": epochs, "contenders": contenders_lib.LABELS,
                    "tuning": contenders_lib.TUNING})
    loaders = quality_datasets(full, synthetic_rows)
    order = [name for name, _ in loaders]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as workdir:
        for name, loader in loaders:
            if only and name not in only:
                continue
            dataset = loader()
            payload["datasets"] = [d for d in payload["datasets"] if d["name"] != name] + [dataset.describe()]
            log(f"[quality] {dataset.name}: {dataset.labels.size} rows, {dataset.positives} positives "
                f"({100 * dataset.rate:.2f}%); contenders {', '.join(contenders)}")
            for seed in range(first_seed, first_seed + seeds):
                failures: list = []
                records = evaluate_seed(dataset, seed, workdir, epochs, log, failures, contenders, trials)
                merge(payload, name, seed, contenders, records, failures)
                payload["seeds"] = sorted(set(payload["seeds"]) | {seed})
                finish(payload, order)
                payload["seconds_last_run"] = round(time.time() - started, 1)
                _write(payload, path)
    finish(payload, order)
    _write(payload, path)
    return payload


def _write(payload: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=1, default=float)
    os.replace(temporary, path)
