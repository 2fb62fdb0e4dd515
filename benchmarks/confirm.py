"""The confirmation protocol (docs/benchmarks.md, "Protocol"): the package against a user's first tries and tuned peers,
on datasets no default was chosen on (entry point of `make bench-confirm` / `make bench-confirm-quick`).

  .venv/bin/python -m benchmarks.confirm              # all confirmation sets, 5 or 3 seeds, every contender
  .venv/bin/python -m benchmarks.confirm --quick      # CI-sized: 2 small sets, 1 seed, 3 trials
  # the cheap contenders only, two sets:
  .venv/bin/python -m benchmarks.confirm --contenders lightgbm_default,logreg_balanced --datasets cm1,kc1

Every contender sees the same stratified 70/15/15 split per seed
(`assign_splits(labels, split, seed)`): 5 seeds for sets with fewer than 100
positives, 3 otherwise (`registry.seed_count`). Records go to
`benchmarks/results/confirmation.json` (`confirmation-quick.json` with
`--quick`), merged by (dataset, seed, contender) under a file lock, so runs of
different contenders or datasets, even at the same time, add to one file.
Then docs/benchmarks.md is regenerated (`benchmarks.run.render_doc`).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import os
import sys
import tempfile
import time
import traceback
import warnings

from benchmarks import registry
from benchmarks.autogluon_contender import AUTOGLUON, DEFAULT_BUDGET_SECONDS
from benchmarks.contenders import PACKAGE_TUNED, SplitMismatch
from benchmarks.defaults import DEFAULT_CONTENDERS
from benchmarks.quality import SPLIT, load_previous, make_record, merge, record_line
from benchmarks.selection import QUICK_TUNING_TRIALS, TUNING_TRIALS

CONTENDERS = (PACKAGE_TUNED, "lightgbm_default", "lightgbm_300_spw", "logreg_balanced", "lightgbm_tuned",
              "ydf_gbt_default", "ydf_gbt_tuned", AUTOGLUON)
CHEAP = tuple(name for name in CONTENDERS if name not in (PACKAGE_TUNED, AUTOGLUON))
YDF_CONTENDERS = ("ydf_gbt_default", "ydf_gbt_tuned")
LABELS = {
    PACKAGE_TUNED: "this package: `tuning.task.main` (= `make tune`: search, retrain, TFMA, push gate) on a "
                   "fresh run directory; scores what the first execution pushed, else its candidate",
    "lightgbm_default": "LightGBM `LGBMClassifier()` at the library's defaults, all non-test rows, threshold 0.5",
    "lightgbm_300_spw": "LightGBM, 300 trees, learning rate 0.05, scale_pos_weight = N0/N1, otherwise defaults; "
                        "all non-test rows, threshold 0.5",
    "logreg_balanced": "LogisticRegression(class_weight=balanced) after mean imputation, scaling, one-hot; train "
                       "split, threshold on validation",
    "lightgbm_tuned": "LightGBM tuned with Optuna TPE, first trial = LightGBM's defaults; the package's budget "
                      "and selection rule",
    "ydf_gbt_default": "YDF GradientBoostedTrees at the library's defaults, all non-test rows, threshold 0.5",
    "ydf_gbt_tuned": "YDF GradientBoostedTrees tuned with Optuna TPE, first trial = YDF's defaults; the "
                     "package's budget and selection rule",
    AUTOGLUON: "AutoGluon 1.6.3 `TabularPredictor(eval_metric='average_precision').fit(presets='medium_quality', "
               "time_limit=the package's recorded wall time on the split, else "
               f"{DEFAULT_BUDGET_SECONDS:.0f} s)` in its own venv (`make bench-autogluon-env`); all non-test "
               "rows, its own decision threshold",
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
LOCK = os.path.join(tempfile.gettempdir(), "imbalance-benchmarks-confirmation.lock")


def result_path(quick: bool) -> str:
    return os.path.join(RESULTS, "confirmation-quick.json" if quick else "confirmation.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized: 2 small sets, 1 seed, 3 trials")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset of "
                        + ",".join(CONTENDERS) + " (default: all)")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of the confirmation sets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per set (default: 5 below 100 positives, "
                        "else 3; 1 with --quick)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--trials", type=int, default=None,
                        help=f"trials per tuned contender, --quick only (default {QUICK_TUNING_TRIALS}; the full "
                        f"protocol always uses {TUNING_TRIALS})")
    parser.add_argument("--resume", action="store_true", help="skip (dataset, seed, contender) already recorded")
    parser.add_argument("--fresh", action="store_true", help="start the results file over")
    parser.add_argument("--render-only", action="store_true", help="only regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.contenders.split(",")) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contenders {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    foreign = sorted(set(args.datasets.split(",")) - set(registry.CONFIRMATION)) if args.datasets else []
    if foreign:  # a development set here would mix the two roles in one file
        parser.error(f"not confirmation sets: {', '.join(foreign)}")
    if args.trials is not None and (not args.quick or args.trials < 1):
        parser.error("--trials is for --quick runs only (the full protocol uses the package tuner's budget), >= 1")
    return args


def run_contender(name: str, dataset, assignment, seed: int, workdir: str, trials: int, earlier=()) -> dict:
    """One contender on one split (a contender result: test labels, scores, threshold, train seconds).

    `earlier`: the split's records so far (AutoGluon's budget is the package's wall time on the split).
    """
    if name == PACKAGE_TUNED:
        from benchmarks.contenders import run_package_tuned

        return run_package_tuned(dataset, assignment, seed, workdir, trials, make_tune=True)
    if name in DEFAULT_CONTENDERS:
        from benchmarks.defaults import run_default

        return run_default(name, dataset, assignment, seed)
    if name in ("lightgbm_tuned", "ydf_gbt_tuned"):
        from benchmarks.tuned import run_tuned

        return run_tuned(name, dataset, assignment, seed, trials)
    if name == "logreg_balanced":
        from benchmarks.contenders import run_sklearn

        return run_sklearn(name, dataset, assignment, seed)
    if name == AUTOGLUON:
        from benchmarks.autogluon_contender import run_autogluon

        return run_autogluon(dataset, assignment, seed, workdir, earlier)
    raise KeyError(name)


def available(contenders: list[str], log) -> list[str]:
    """The contenders whose library is installed (YDF: the `bench` extra; AutoGluon: its own venv)."""
    from benchmarks.autogluon_contender import installed

    if importlib.util.find_spec("ydf") is None:
        log("[confirm] ydf is not installed: skipping " + ", ".join(c for c in contenders if c in YDF_CONTENDERS))
        contenders = [c for c in contenders if c not in YDF_CONTENDERS]
    if AUTOGLUON in contenders and not installed():
        log(f"[confirm] no AutoGluon venv (make bench-autogluon-env): skipping {AUTOGLUON}")
        contenders = [c for c in contenders if c != AUTOGLUON]
    return contenders


def evaluate_split(dataset, seed: int, contenders: list[str], workdir: str, trials: int, log):
    """The contenders on one split; returns (records, failures). A failure is recorded, not raised."""
    from trainer.data.split import assign_splits, class_counts

    assignment = assign_splits(dataset.labels, SPLIT, seed)
    test_counts = class_counts(dataset.labels, assignment)["test"]
    records, failures = [], []
    for name in contenders:
        started = time.time()
        try:
            result = run_contender(name, dataset, assignment, seed, os.path.join(workdir, dataset.name), trials,
                                   records)
            row = make_record(dataset.name, seed, name, result, test_counts,
                              {"wall_seconds": round(time.time() - started, 2)})
        except SplitMismatch:
            raise
        except Exception as error:  # one failing contender does not lose the others
            failures.append({"dataset": dataset.name, "seed": seed, "contender": name, "error": repr(error),
                             "traceback": traceback.format_exc(limit=5)})
            log(f"  FAILED {dataset.name} seed {seed} {name}: {error!r}")
            continue
        records.append(row)
        log(record_line(row) + f"  wall {row['wall_seconds']:.1f} s")
    return records, failures


def save_split(path: str, mode: str, info: dict, seed: int, contenders, records, failures, meta: dict) -> None:
    """Merges one split's records into `path` under an exclusive lock (runs may share the file)."""
    from benchmarks.quality import _write

    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        payload = load_previous(path, mode) or {"mode": mode, "datasets": [], "records": [], "failures": []}
        payload.update(meta)
        known = {d["name"]: d for d in payload["datasets"]}
        seeds = set(known.get(info["name"], {}).get("seeds", [])) | set(info["seeds"])  # runs may add seeds
        known[info["name"]] = {**info, "seeds": sorted(seeds)}
        payload["datasets"] = [known[n] for n in registry.CONFIRMATION if n in known]
        merge(payload, info["name"], seed, contenders, records, failures)
        order = {n: i for i, n in enumerate(registry.CONFIRMATION)}
        rank = {n: i for i, n in enumerate(CONTENDERS)}
        payload["records"].sort(key=lambda r: (order.get(r["dataset"], 99), r["seed"], rank.get(r["contender"], 99)))
        _write(payload, path)


def recorded(path: str, mode: str) -> set:
    previous = load_previous(path, mode) or {}
    return {(r["dataset"], r["seed"], r["contender"]) for r in previous.get("records", [])}


def meta(quick: bool, trials: int) -> dict:
    return {"split": list(SPLIT), "contenders": LABELS, "tie_band": 0.01, "trials": trials,
            "seeds_rule": f"{registry.SEEDS_FEW_POSITIVES} seeds below {registry.FEW_POSITIVES} positives, else "
                          f"{registry.SEEDS}" if not quick else "1 seed (quick)",
            "threshold_objective": "recall_at_precision:0.5 on validation / out-of-fold (tuned, logreg, package); "
                                   "0.5 for the untuned defaults"}


def run(args: argparse.Namespace, log=print) -> str:
    """Runs the protocol as `args` says; returns the results path."""
    from benchmarks.confirmation_data import load_confirmation

    registry.check_disjoint()
    mode, path = ("quick" if args.quick else "full"), result_path(args.quick)
    trials = (args.trials or QUICK_TUNING_TRIALS) if args.quick else TUNING_TRIALS
    if args.fresh and os.path.exists(path):
        os.remove(path)
    contenders = available(args.contenders.split(","), log)
    names = args.datasets.split(",") if args.datasets else registry.confirmation_names(args.quick)
    done = recorded(path, mode) if args.resume else set()
    with tempfile.TemporaryDirectory(prefix="bench-confirm-") as workdir:
        for name in [n for n in registry.CONFIRMATION if n in names]:
            dataset = load_confirmation(name)
            count = args.seeds or (1 if args.quick else registry.seed_count(dataset.positives))
            seeds = list(range(args.first_seed, args.first_seed + count))
            info = {**dataset.describe(), "role": registry.role(name), "seeds": seeds}
            log(f"[confirm] {name}: {dataset.labels.size} rows, {dataset.positives} positives, seeds {seeds}")
            for seed in seeds:
                todo = [c for c in contenders if (name, seed, c) not in done]
                if todo:
                    records, failures = evaluate_split(dataset, seed, todo, workdir, trials, log)
                    save_split(path, mode, info, seed, todo, records, failures, meta(args.quick, trials))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    if not args.render_only:
        started = time.time()
        path = run(args, log=lambda m: print(m, flush=True))
        print(f"[confirm] wrote {path} in {time.time() - started:.0f} s", flush=True)
    from benchmarks.run import render_doc

    render_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
