"""Selection noise on small data: which rule picks the tree configuration that tests best? (issue 20)

    .venv/bin/python -m benchmarks.selection_noise [--datasets yeast4,pc1] [--seeds N] [--random 10]
    .venv/bin/python -m benchmarks.selection_noise --summary-only   # re-summarize the results file

A tree-family proxy of the package's search, on the DEVELOPMENT sets only
(`benchmarks.registry.DEVELOPMENT`; never a confirmation set). Per dataset and
seed: the protocol's stratified 70/15/15 split (`assign_splits`, 5 seeds below
100 positives, else 3: `registry.seed_count`), and as candidates the
portfolio's tree entries (`tuning.portfolio`) plus `--random` configurations
drawn from the package's own search space (`trainer.hparams.declare_all`:
the tree hyperparameters and the weight ratio). Each candidate is trained as
`trainer.candidates._trees` trains it (`trainer.trees.fit_trees_cross_validated`
/ `fit_trees`: LightGBM on class-weighted log-loss, rounds by early stopping on
held-out data, then grown again on train + validation for that round count)
and scored three ways: one stratified 5-fold CV of train + validation (the
package's small-data rule, `benchmarks.selection.selection_folds`), 3 x 5
repeated stratified k-fold (`RepeatedStratifiedKFold`), and the validation
split after training on train. Each scorer's refit is scored on the test split
(minority average precision). The selection rules (`RULES`) are then computed
from these records, so a rule costs nothing to add.

One process, LightGBM on one thread (the machine is shared). Writes
`benchmarks/results/selection_noise.json` after every split (partial results
survive) and prints the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import numpy as np

from benchmarks import registry
from benchmarks.paired import compare
from benchmarks.quality import SPLIT
from benchmarks.selection import TRAIN, VALIDATION, selection_folds, selection_mode, trainval_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(ROOT, "benchmarks", "results", "selection_noise.json")
# The small development sets and sylva; the synthetic sets (132k and 531k rows) are too big for this budget.
DATASETS = tuple(name for name in registry.DEVELOPMENT if not name.startswith("synthetic"))
RANDOM_CONFIGS = 6  # sized to the shared machine (a 3 x 5 CV of a slow configuration takes tens of seconds)
SEARCH_SIZES = (3, RANDOM_CONFIGS)  # random configurations beyond the portfolio: 3 = the package's 10 trials less its 7 entries
LARGEST = f"search{SEARCH_SIZES[-1]}"
REPEATS = 3
SCORERS = ("cv5", "cv3x5", "validation")
DEFAULT_ENTRY = "lightgbm_defaults"
BUCKETS = (("< 50", 0, 50), ("50-150", 50, 151), ("> 150", 151, 10**9))  # train + validation positives
TREE_NAMES = ("tree_learning_rate", "num_leaves", "min_child_samples", "feature_fraction", "bagging_fraction",
              "tree_l2", "extra_trees", "weight_ratio")  # what a tree trial draws (declare_tree_hparams + ratio)


@contextlib.contextmanager
def one_thread():
    """`trainer.trees`' LightGBM settings with num_threads = 1 (they use every core; two CPUs are shared here)."""
    from trainer import trees

    original = trees._settings
    trees._settings = lambda params, seed: {**original(params, seed), "num_threads": 1}
    try:
        yield
    finally:
        trees._settings = original


def candidate_values(counts: tuple[int, int], seed: int, random: int) -> list[tuple[str, dict]]:
    """(name, hyperparameter values): the portfolio's tree entries in trial order, then `random` draws."""
    from trainer.hparams import declare_all
    from tuning.portfolio import PORTFOLIO, portfolio_values

    space = declare_all(counts)
    defaults = dict(space.values)
    pool = [(entry.name, values) for entry, values in zip(PORTFOLIO, portfolio_values(defaults, counts), strict=True)
            if values["model_family"] == "trees"]
    by_name = {hp.name: hp for hp in space.space}
    rng = np.random.default_rng([seed, 20])
    for index in range(random):
        drawn = {name: by_name[name].random_sample(int(rng.integers(2**31))) for name in TREE_NAMES}
        pool.append((f"random_{index}", {**defaults, "model_family": "trees", **drawn}))
    return pool


def feature_matrix(dataset) -> np.ndarray:
    """The package's tree input (`trainer.trees.feature_matrix`) for an all-numeric dataset."""
    from trainer.data.schema import Feature, Schema
    from trainer.trees import feature_matrix as package_matrix

    frame = dataset.features
    if any(frame[c].dtype == object for c in frame.columns):
        raise ValueError(f"{dataset.name}: categorical features need the package's vocabularies; not supported here")
    schema = Schema(tuple(Feature(c, "numeric") for c in frame.columns), "target")
    return package_matrix({c: frame[c].to_numpy() for c in frame.columns}, schema)


def _ap(labels, margins) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, margins))


def _cross_validated(x, y, weights, params, seed, folds) -> tuple[float, int]:
    """(mean held-out AP over the folds at the shared round count, that round count): `_trees`' CV score."""
    from trainer.trees import fit_trees_cross_validated

    boosters, rounds = fit_trees_cross_validated(x, y, weights, params, seed, folds)
    scores = [_ap(y[held], booster.predict(x[held], raw_score=True, num_iteration=rounds))
              for booster, (_, held) in zip(boosters, folds, strict=True)]
    return float(np.mean(scores)), rounds


def score_candidate(x, y, assignment, values: dict, counts: tuple[int, int], seed: int) -> dict:
    """One candidate under each scorer: {scorer: {score (held-out AP), rounds, test (AP of the refit)}}."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    from trainer.hparams import declare_tree_hparams, with_values
    from trainer.losses import class_weights
    from trainer.trees import fit_trees

    params = declare_tree_hparams(with_values(counts, values))
    weights = tuple(float(w) for w in class_weights(counts, ratio=values["weight_ratio"]))  # as fit_settings does
    rows = trainval_rows(assignment)
    x_tv, y_tv = x[rows], y[rows]
    repeated = RepeatedStratifiedKFold(n_splits=5, n_repeats=REPEATS, random_state=seed)
    result = {"cv5": _cross_validated(x_tv, y_tv, weights, params, seed, selection_folds(y_tv, seed)),
              "cv3x5": _cross_validated(x_tv, y_tv, weights, params, seed,
                                        list(repeated.split(np.zeros((y_tv.size, 1)), y_tv)))}
    train, held = assignment == TRAIN, assignment == VALIDATION
    booster, rounds = fit_trees(x[train], y[train], weights, params, seed, valid=(x[held], y[held]))
    result["validation"] = (_ap(y[held], booster.predict(x[held], raw_score=True, num_iteration=rounds)), rounds)
    # One refit grown to the longest round count serves all three: boosting is sequential and seeded, so its
    # first r trees are the r-round refit's trees (tests/test_selection_noise.py checks it).
    refit, _ = fit_trees(x_tv, y_tv, weights, params, seed, rounds=max(r for _, r in result.values()))
    test = assignment == 2
    return {scorer: {"score": score, "rounds": rounds,
                     "test": _ap(y[test], refit.predict(x[test], raw_score=True, num_iteration=rounds))}
            for scorer, (score, rounds) in result.items()}


def run_split(dataset, x: np.ndarray, seed: int, random: int) -> dict:
    """Every candidate of one dataset and seed, scored every way (one record of the results file)."""
    from trainer.data.split import assign_splits

    started = time.monotonic()
    y = dataset.labels
    assignment = assign_splits(y, SPLIT, seed)
    counts = (int(np.sum(y[assignment == TRAIN] == 0)), int(np.sum(y[assignment == TRAIN] == 1)))
    candidates = []
    for name, values in candidate_values(counts, seed, random):
        scored = score_candidate(x, y, assignment, values, counts, seed)
        candidates.append({"name": name, "values": {k: values[k] for k in TREE_NAMES}, **scored})
    return {"dataset": dataset.name, "seed": seed, "trainval_positives": int(y[trainval_rows(assignment)].sum()),
            "validation_positives": int(y[assignment == VALIDATION].sum()), "test_positives": int(y[assignment == 2].sum()),
            "package_selection": selection_mode(y, assignment), "candidates": candidates,
            "seconds": round(time.monotonic() - started, 1)}


# Rule name -> (candidate pool, scorer). Pools: the LightGBM-defaults entry alone, the portfolio's tree
# entries, or those plus the first K random draws. The letters are issue 20's brief's (a)-(e).
RULES = {
    "a default": ("default", "cv5"),
    "b portfolio cv5": ("portfolio", "cv5"),
    "portfolio cv3x5": ("portfolio", "cv3x5"),
    "portfolio validation": ("portfolio", "validation"),
    **{f"{letter}search{k} {scorer}": (f"search{k}", scorer) for k in SEARCH_SIZES
       for letter, scorer in zip(("c ", "d ", "e "), SCORERS, strict=True)},
}
COMPARISONS = (("b portfolio cv5", "a default"), ("c search3 cv5", "b portfolio cv5"),
               (f"c {LARGEST} cv5", "b portfolio cv5"), (f"d {LARGEST} cv3x5", f"c {LARGEST} cv5"),
               ("portfolio cv3x5", "b portfolio cv5"), (f"d {LARGEST} cv3x5", "portfolio cv3x5"),
               (f"d {LARGEST} cv3x5", "b portfolio cv5"), (f"e {LARGEST} validation", f"c {LARGEST} cv5"),
               ("portfolio validation", "b portfolio cv5"))


def choose(record: dict, rule: str) -> tuple[float, float]:
    """(test AP, held-out score) of the candidate `rule` picks in one split (first of equal scores, in trial order)."""
    pool, scorer = RULES[rule]
    candidates = record["candidates"]
    portfolio = [c for c in candidates if not c["name"].startswith("random_")]
    if pool == "default":
        chosen = [c for c in candidates if c["name"] == DEFAULT_ENTRY]
    elif pool == "portfolio":
        chosen = portfolio
    else:
        chosen = candidates[:len(portfolio) + int(pool.removeprefix("search"))]
    best = max(chosen, key=lambda c: c[scorer]["score"])
    return best[scorer]["test"], best[scorer]["score"]


def bucket(positives: int) -> str:
    return next(name for name, low, high in BUCKETS if low <= positives < high)


def summarize(records: list[dict]) -> dict:
    """Mean test AP and optimism per rule and bucket, per-dataset means, and the paired tests.

    Tests: within a bucket over its (dataset, seed) pairs (splits of one dataset are not independent, so these
    p-values flatter) and over its per-dataset means; over all datasets on the per-dataset means (the
    benchmark's usual unit).
    """
    outcome = {(r["dataset"], r["seed"]): {rule: choose(r, rule) for rule in RULES} for r in records}
    for r in records:
        outcome[(r["dataset"], r["seed"])]["oracle"] = (max(c["cv5"]["test"] for c in r["candidates"]), np.nan)
    rules = [*RULES, "oracle"]
    datasets = sorted({r["dataset"] for r in records},
                      key=lambda d: next(r["trainval_positives"] for r in records if r["dataset"] == d))
    per_dataset = {d: {"trainval_positives": next(r["trainval_positives"] for r in records if r["dataset"] == d),
                       "seeds": sum(r["dataset"] == d for r in records),
                       **{rule: float(np.mean([outcome[(r["dataset"], r["seed"])][rule][0] for r in records
                                               if r["dataset"] == d])) for rule in rules}} for d in datasets}
    buckets = {}
    for name, _, _ in BUCKETS:
        keys = [(r["dataset"], r["seed"]) for r in records if bucket(r["trainval_positives"]) == name]
        if not keys:
            continue
        names = [d for d in datasets if bucket(per_dataset[d]["trainval_positives"]) == name]
        buckets[name] = {
            "datasets": names, "pairs": len(keys),
            "mean_test": {rule: float(np.mean([per_dataset[d][rule] for d in names])) for rule in rules},
            "optimism": {rule: float(np.mean([outcome[k][rule][1] - outcome[k][rule][0] for k in keys]))
                         for rule in RULES},
            "paired_over_pairs": {f"{a} - {b}": compare([outcome[k][a][0] for k in keys],
                                                        [outcome[k][b][0] for k in keys]) for a, b in COMPARISONS},
            "paired_over_datasets": {f"{a} - {b}": compare([per_dataset[d][a] for d in names],
                                                           [per_dataset[d][b] for d in names]) for a, b in COMPARISONS}}
    over_datasets = {f"{a} - {b}": compare([per_dataset[d][a] for d in datasets], [per_dataset[d][b] for d in datasets])
                     for a, b in COMPARISONS}
    everywhere = {rule: float(np.mean([per_dataset[d][rule] for d in datasets])) for rule in rules}
    return {"per_dataset": per_dataset, "buckets": buckets, "mean_test_over_datasets": everywhere,
            "paired_over_datasets": over_datasets}


def markdown(summary: dict) -> str:
    """docs/benchmarks.md's tables: mean test AP (optimism) per rule and bucket, paired tests, per dataset."""
    buckets = summary["buckets"]
    head = " | ".join(f"{b} ({len(v['datasets'])} sets, {v['pairs']} splits)" for b, v in buckets.items())
    lines = [f"| rule | {head} | all sets |", "|---" + "|---:" * (len(buckets) + 1) + "|"]
    for rule in summary["mean_test_over_datasets"]:
        cells = [f"{v['mean_test'][rule]:.3f}" + (f" ({v['optimism'][rule]:+.3f})" if rule in v["optimism"] else "")
                 for v in buckets.values()]
        lines.append(f"| {rule} | {' | '.join(cells)} | {summary['mean_test_over_datasets'][rule]:.3f} |")
    lines += ["", "| comparison | " + " | ".join(buckets) + " | all sets (per-dataset means) |",
              "|---" + "|---" * (len(buckets) + 1) + "|"]
    for name, overall in summary["paired_over_datasets"].items():
        cells = [_test(v["paired_over_pairs"][name]) for v in buckets.values()]
        lines.append(f"| {name} | {' | '.join(cells)} | {_test(overall)} |")
    rules = ["a default", "b portfolio cv5", "c search3 cv5", f"c {LARGEST} cv5", f"d {LARGEST} cv3x5",
             f"e {LARGEST} validation", "oracle"]
    lines += ["", "| dataset | train+validation positives | splits | " + " | ".join(rules) + " |",
              "|---|---:|---:" + "|---:" * len(rules) + "|"]
    for name, row in summary["per_dataset"].items():
        values = " | ".join(f"{row[rule]:.3f}" for rule in rules)
        lines.append(f"| {name} | {row['trainval_positives']} | {row['seeds']} | {values} |")
    return "\n".join(lines)


def _test(result: dict) -> str:
    p = "—" if result["wilcoxon_p"] is None else f"{result['wilcoxon_p']:.2g}"
    return f"{result['mean_difference']:+.3f}, {result['wins']}/{result['ties']}/{result['losses']}, p {p}"


def load(path: str = RESULT) -> dict:
    if not os.path.exists(path):
        return {"records": []}
    with open(path) as handle:
        return json.load(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated development sets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per set (default: registry.seed_count)")
    parser.add_argument("--random", type=int, default=RANDOM_CONFIGS, help="random configurations beyond the portfolio")
    parser.add_argument("--resume", action="store_true", help="keep the file's splits and skip them")
    parser.add_argument("--summary-only", action="store_true", help="re-summarize the results file")
    parser.add_argument("--markdown", action="store_true", help="print the summary as docs/benchmarks.md's tables")
    args = parser.parse_args(argv)
    names = args.datasets.split(",")
    foreign = sorted(set(names) - set(registry.DEVELOPMENT))
    if foreign:  # defaults may only be chosen on development sets
        parser.error(f"not development sets: {', '.join(foreign)}")
    from trainer.atomic import write_json_atomically

    records = load()["records"] if (args.resume or args.summary_only) else []
    if not args.summary_only:
        from benchmarks.datasets import load_common, load_sylva

        done = {(r["dataset"], r["seed"]) for r in records}
        config = {"random": args.random, "repeats": REPEATS, "split": SPLIT, "search_sizes": SEARCH_SIZES}
        with one_thread():
            for name in names:
                dataset = load_sylva() if name == "sylva" else load_common(name)
                x = feature_matrix(dataset)
                for seed in range(args.seeds or registry.seed_count(dataset.positives)):
                    if (name, seed) in done:
                        continue
                    records.append(run_split(dataset, x, seed, args.random))
                    print(json.dumps({k: v for k, v in records[-1].items() if k != "candidates"}), flush=True)
                    write_json_atomically(RESULT, {"config": config, "records": records})
    payload = {**load(), "records": records, "summary": summarize(records)}
    write_json_atomically(RESULT, payload)
    print(markdown(payload["summary"]) if args.markdown else json.dumps(payload["summary"]["buckets"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
