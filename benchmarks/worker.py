"""One measured job in its own process, so its peak RSS is its own.

  python -m benchmarks.worker {train,evaluate,infer,tune} RUN_DIR RESULT_JSON [--epochs E] [--trials T]

`train`: `train_and_export` the weighted model and the unweighted baseline
(E epochs each, no early stop) on the run's prepared data. `evaluate`:
`evaluation.run_evaluation(RUN_DIR)` (TFMA on both models, blessing,
report). `infer`: the plain alternative to TFMA -- batch inference of both
SavedModels' `serving_default` over the same test TFRecords plus the same
kinds of metrics with scikit-learn / NumPy, overall and per slice. `tune`: a
small Bayesian `run_tuning` (T trials x 2 epochs, then the retrain of the best
and the baseline for E epochs) on a copy of the prepared data.

Writes its timings and its own peak RSS (`VmHWM` of /proc/self/status) as
JSON to RESULT_JSON. `getrusage(RUSAGE_CHILDREN).ru_maxrss` (or `os.wait4`'s)
is not used as the figure: Linux carries the forking parent's high-water mark
over into the child at exec, so it reports at least the benchmark runner's own
RSS; the parent records it anyway, for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from trainer.config import SYNTHETIC_ROWS
from trainer.layout import DATA_DIR


def train(run_dir: str, epochs: int) -> dict:
    from trainer.config import RunConfig
    from trainer.data.prepare import SOURCE_FILE, prepare_data
    from trainer.pipeline import train_and_export

    with open(os.path.join(run_dir, DATA_DIR, SOURCE_FILE)) as handle:
        source = json.load(handle)
    config = RunConfig(data=source["data"], seed=source["seed"], output_dir=run_dir, epochs=epochs,
                       patience=epochs + 1, verbose=0,
                       synthetic_rows=tuple(source.get("synthetic_rows", SYNTHETIC_ROWS)))
    data = prepare_data(config)  # reuses RUN/data
    started = time.time()
    weighted = train_and_export(config, data)
    middle = time.time()
    baseline = train_and_export(config, data, weighted=False)
    return {"weighted_seconds": middle - started, "baseline_seconds": time.time() - middle,
            "train_examples": sum(data.counts["train"]), "epochs": epochs,
            "weighted_test_pr_auc": weighted.test.pr_auc, "baseline_test_pr_auc": baseline.test.pr_auc}


def evaluate(run_dir: str, intervals: str, beam_args: str) -> dict:
    import shlex

    from evaluation import EvaluationOptions, run_evaluation

    options = EvaluationOptions(intervals=intervals, beam_pipeline_args=tuple(shlex.split(beam_args)))
    started = time.time()
    summary = run_evaluation(run_dir, options)
    return {"run_evaluation_seconds": time.time() - started, "tfma_seconds": summary.tfma_seconds,
            "blessed": summary.blessed, "intervals": summary.gate.intervals, "beam_args": beam_args}


def infer(run_dir: str) -> dict:
    """Both models over the test split + metrics overall, by label and by each default slice feature."""
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

    from evaluation.evaluate import informative_numeric
    from evaluation.options import EvaluationOptions
    from evaluation.run_files import run_models, run_schema, split_pattern
    from evaluation.slicing import bucket_name, plan_slices
    from trainer.data.dataset import read_labels, read_serialized

    started = time.time()
    schema = run_schema(run_dir)
    pattern = split_pattern(run_dir)
    serialized = read_serialized(pattern)
    labels = read_labels(pattern, schema)
    # The same slices as TFMA's default plan: small categoricals and quartiles of the informative numerics.
    plan = plan_slices(schema, None, EvaluationOptions().max_slice_vocabulary, informative_numeric(run_dir, schema))
    spec = {name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in plan.categorical}
    spec.update({name: tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")) for name in plan.numeric})
    slice_values = {name: [] for name in spec}
    for start in range(0, len(serialized), 4096):
        parsed = tf.io.parse_example(tf.constant(serialized[start:start + 4096]), spec) if spec else {}
        for name in spec:
            slice_values[name].append(parsed[name].numpy())
    slice_values = {name: np.concatenate(parts) for name, parts in slice_values.items()}
    for name, edges in plan.numeric.items():
        slice_values[name] = np.array([bucket_name(float(v), edges).encode() for v in slice_values[name]])
    slices = [("overall", np.ones(labels.size, bool))] + [(f"label={v}", labels == v) for v in (0, 1)]
    for name, values in slice_values.items():
        slices += [(f"{name}={v.decode()}", values == v) for v in np.unique(values)]
    metrics = {}
    for model in run_models(run_dir):
        serve = tf.saved_model.load(model.path).signatures["serving_default"]
        scores = np.concatenate([serve(examples=tf.constant(serialized[s:s + 4096]))["scores"].numpy()
                                 for s in range(0, len(serialized), 4096)]).astype(np.float64)
        for slice_name, mask in slices:
            y, p = labels[mask], scores[mask]
            predicted = (p >= model.threshold).astype(int)
            both = 0 < y.sum() < y.size
            metrics[f"{model.name}/{slice_name}"] = {
                "examples": int(y.size),
                "pr_auc": float(average_precision_score(y, p)) if both else None,
                "roc_auc": float(roc_auc_score(y, p)) if both else None,
                "confusion": confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
                "brier": float(brier_score_loss(y, p, labels=[0, 1])),
                "calibration": np.histogram(p, bins=10, range=(0, 1), weights=y)[0].tolist(),
            }
    return {"infer_seconds": time.time() - started, "examples": int(labels.size), "slices": len(slices),
            "models": 2, "overall": {k: v for k, v in metrics.items() if k.endswith("/overall")}}


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tune(run_dir: str, trials: int, tuning_epochs: int, epochs: int) -> dict:
    """A small Bayesian `run_tuning` on a copy of the run's prepared data."""
    import shutil

    from trainer.config import RunConfig
    from trainer.data.prepare import SOURCE_FILE
    from trainer.data.split import load_counts
    from trainer.layout import execution_dir
    from tuning.pipeline import run_tuning

    with open(os.path.join(run_dir, DATA_DIR, SOURCE_FILE)) as handle:
        source = json.load(handle)
    tune_dir = run_dir + "-tune"
    shutil.rmtree(tune_dir, ignore_errors=True)
    execution = execution_dir(tune_dir, "0001")  # the first execution finds its data prepared
    shutil.copytree(os.path.join(run_dir, DATA_DIR), os.path.join(execution, DATA_DIR))
    config = RunConfig(data=source["data"], synthetic_rows=tuple(source["synthetic_rows"]), seed=source["seed"],
                       output_dir=tune_dir, max_trials=trials, tuning_epochs=tuning_epochs, epochs=epochs,
                       patience=epochs + 1, verbose=0)
    started = time.time()
    summary = run_tuning(config)
    total = time.time() - started
    search, done = summary.tuning["search_seconds"], summary.tuning["trials"]
    train_examples = sum(load_counts(os.path.join(execution, DATA_DIR))["train"])
    shutil.rmtree(tune_dir, ignore_errors=True)
    return {"trials": done, "tuning_epochs": tuning_epochs, "retrain_epochs": epochs, "search_seconds": search,
            "seconds_per_trial": search / max(done, 1),
            "seconds_per_trial_epoch": search / max(done * tuning_epochs, 1), "run_tuning_seconds": total,
            "train_examples": train_examples, "tuner": config.tuner}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=("train", "evaluate", "infer", "tune"))
    parser.add_argument("run_dir")
    parser.add_argument("result")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--tuning-epochs", type=int, default=2)
    parser.add_argument("--intervals", default="auto", help="evaluate: EvaluationOptions.intervals")
    parser.add_argument("--beam-args", default="", help="evaluate: Beam pipeline args")
    args = parser.parse_args(argv)
    jobs = {"train": lambda: train(args.run_dir, args.epochs), "evaluate": lambda: evaluate(args.run_dir, args.intervals, args.beam_args),
            "infer": lambda: infer(args.run_dir),
            "tune": lambda: tune(args.run_dir, args.trials, args.tuning_epochs, args.epochs)}
    result = jobs[args.job]()
    result["peak_rss_mib"] = peak_rss_mib()
    with open(args.result, "w") as handle:
        json.dump(result, handle, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
