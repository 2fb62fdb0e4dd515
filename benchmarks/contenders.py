"""The models compared: this package (weighted and unweighted) and the
scikit-learn-ecosystem alternatives a user would pick instead.

Each contender is trained on the train split, picks its decision threshold on
the validation split with `trainer.threshold.choose_threshold` (the package's
own rule, `recall_at_precision:0.5`), and is scored on the test split. All
splits come from `trainer.data.split.assign_splits(labels, split, seed)` on the
same row order.

Returns of every contender: {"labels": test labels, "scores": test minority
probabilities, "threshold": float, "train_seconds": float, ...}.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from benchmarks.datasets import Dataset
from benchmarks.metrics import validation_threshold

TRAIN, VALIDATION, TEST = 0, 1, 2
SKLEARN_CONTENDERS = ("logreg_balanced", "lightgbm_spw", "smote_logreg", "balanced_rf")
PACKAGE_CONTENDERS = ("package_weighted", "package_unweighted")
PACKAGE_TUNED = "package_tuned"
TUNED_TREE_CONTENDERS = ("lightgbm_tuned", "ydf_gbt_tuned")
ALL = (*PACKAGE_CONTENDERS, PACKAGE_TUNED, "logreg_balanced", "smote_logreg", "balanced_rf", "lightgbm_spw",
       *TUNED_TREE_CONTENDERS)
TUNED = (PACKAGE_TUNED, *TUNED_TREE_CONTENDERS)
LABELS = {
    "package_weighted": "this package, weighted (defaults)",
    "package_unweighted": "same architecture, unweighted + own threshold",
    "package_tuned": "this package, tuned: `tuning.pipeline.run_tuning` (keras-tuner Bayesian), weighted model",
    "logreg_balanced": "LogisticRegression(class_weight=balanced)",
    "lightgbm_spw": "LightGBM scale_pos_weight",
    "smote_logreg": "SMOTE + LogisticRegression",
    "balanced_rf": "BalancedRandomForest",
    "lightgbm_tuned": "LightGBM, tuned with Optuna TPE (class weight among the parameters)",
    "ydf_gbt_tuned": "YDF GradientBoostedTrees, tuned with Optuna TPE (class weight among the parameters)",
}
# How each contender chooses its hyperparameters (the budget in trials is recorded per row: `trials`).
TUNING = {
    "package_weighted": "none (package defaults, ratio N0/N1)",
    "package_unweighted": "none (package defaults)",
    "package_tuned": "keras-tuner Bayesian over the package's search space, the package's own trial scoring",
    "logreg_balanced": "none",
    "lightgbm_spw": "none (trees by early stopping on validation)",
    "smote_logreg": "none",
    "balanced_rf": "none",
    "lightgbm_tuned": "Optuna TPE, the package's selection rule (`benchmarks/selection.py`)",
    "ydf_gbt_tuned": "Optuna TPE, the package's selection rule (`benchmarks/selection.py`)",
}


# ----------------------------------------------------------------------------- scikit-learn side

def _columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    return numeric, [c for c in features.columns if c not in numeric]


def _preprocessor(features: pd.DataFrame, one_hot: bool):
    """Impute (mean + missing indicators / constant), scale numerics; one-hot or ordinal categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numeric, categorical = _columns(features)
    parts = [("numeric", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True,
                                                     keep_empty_features=True), StandardScaler()), numeric)]
    if categorical:
        encoder = (OneHotEncoder(handle_unknown="ignore") if one_hot else
                   OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))
        parts.append(("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="<missing>"), encoder), categorical))
    return ColumnTransformer(parts, sparse_threshold=0.3 if one_hot else 0.0)


def _categorical_as_strings(features: pd.DataFrame) -> pd.DataFrame:
    _, categorical = _columns(features)
    if not categorical:
        return features
    frame = features.copy()
    for column in categorical:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), "<missing>")
    return frame


def make_sklearn(name: str, features: pd.DataFrame, counts: tuple[int, int], seed: int):
    """An unfitted estimator for contender `name`."""
    from sklearn.linear_model import LogisticRegression

    if name == "logreg_balanced":
        from sklearn.pipeline import Pipeline

        return Pipeline([("pre", _preprocessor(features, one_hot=True)),
                         ("model", LogisticRegression(class_weight="balanced", max_iter=2000))])
    if name == "smote_logreg":
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import Pipeline

        return Pipeline([("pre", _preprocessor(features, one_hot=True)),
                         ("smote", SMOTE(random_state=seed, k_neighbors=min(5, counts[1] - 1))),
                         ("model", LogisticRegression(max_iter=2000))])
    if name == "balanced_rf":
        from imblearn.ensemble import BalancedRandomForestClassifier
        from sklearn.pipeline import Pipeline

        return Pipeline([("pre", _preprocessor(features, one_hot=False)),
                         ("model", BalancedRandomForestClassifier(
                             n_estimators=200, sampling_strategy="all", replacement=True, bootstrap=False,
                             n_jobs=2, random_state=seed))])
    raise KeyError(name)


def run_lightgbm(dataset: Dataset, assignment: np.ndarray, seed: int) -> dict:
    """LightGBM with scale_pos_weight = N0/N1, early-stopped on validation average precision."""
    import lightgbm

    features = dataset.features.copy()
    _, categorical = _columns(features)
    for column in categorical:  # native categorical handling; NaN stays missing
        features[column] = pd.Categorical(features[column])
    labels = dataset.labels
    train, val, test = (assignment == TRAIN), (assignment == VALIDATION), (assignment == TEST)
    counts = (int((labels[train] == 0).sum()), int((labels[train] == 1).sum()))
    model = lightgbm.LGBMClassifier(
        n_estimators=2000, learning_rate=0.1, num_leaves=31, scale_pos_weight=counts[0] / counts[1],
        metric="average_precision", n_jobs=2, random_state=seed, verbose=-1)
    started = time.time()
    model.fit(features[train], labels[train], eval_set=[(features[val], labels[val])],
              callbacks=[lightgbm.early_stopping(50, verbose=False)])
    seconds = time.time() - started
    threshold = validation_threshold(labels[val], model.predict_proba(features[val])[:, 1])
    return {"labels": labels[test], "scores": model.predict_proba(features[test])[:, 1], "threshold": threshold,
            "train_seconds": seconds, "trees": int(model.best_iteration_ or model.n_estimators)}


def run_sklearn(name: str, dataset: Dataset, assignment: np.ndarray, seed: int) -> dict:
    """Fits contender `name` on train, thresholds on validation, scores test."""
    if name == "lightgbm_spw":
        return run_lightgbm(dataset, assignment, seed)
    features, labels = _categorical_as_strings(dataset.features), dataset.labels
    train, val, test = (assignment == TRAIN), (assignment == VALIDATION), (assignment == TEST)
    counts = (int((labels[train] == 0).sum()), int((labels[train] == 1).sum()))
    model = make_sklearn(name, features, counts, seed)
    started = time.time()
    model.fit(features[train], labels[train])
    seconds = time.time() - started
    threshold = validation_threshold(labels[val], model.predict_proba(features[val])[:, 1])
    return {"labels": labels[test], "scores": model.predict_proba(features[test])[:, 1], "threshold": threshold,
            "train_seconds": seconds}


# ----------------------------------------------------------------------------- this package

class SplitMismatch(AssertionError):
    """The package's split differs from `assign_splits` on the benchmark's row order."""


def verify_split(data, dataset: Dataset, assignment: np.ndarray) -> dict:
    """Checks that `prepare_data` split the rows exactly as `assignment` does.

    Compares per-split class counts, and a checksum of the test split's
    TFRecords against the same rows of the DataFrame: the sum of the first
    numeric feature, or, for data with categorical features only, how often
    the first column's most common value occurs.
    """
    from trainer.data.split import class_counts

    expected = class_counts(dataset.labels, assignment)
    if {k: list(v) for k, v in data.counts.items()} != expected:
        raise SplitMismatch(f"{dataset.name}: package split counts {data.counts} != benchmark's {expected}")
    numeric, categorical = _columns(dataset.features)
    test = assignment == TEST
    if numeric:
        column = numeric[0]
        total = _test_records_total(data, column, lambda values: values, "float")
        frame_total = float(np.nansum(dataset.features[column].to_numpy()[test]))
    else:  # e.g. car, nursery, chess: strings only
        column = categorical[0]
        value = str(dataset.features[column].mode().iloc[0])
        total = _test_records_total(data, column, lambda values: values == value.encode(), "string")
        frame_total = float((dataset.features[column][test].astype(str) == value).sum())
    if not np.isclose(total, frame_total, rtol=1e-4, atol=1e-3 * max(1.0, float(np.sum(test)))):
        raise SplitMismatch(f"{dataset.name}: test-split checksum of {column}: TFRecords {total} != DataFrame "
                            f"{frame_total}")
    return {"counts": expected, "checksum_feature": column, "checksum": round(frame_total, 4)}


def _test_records_total(data, column: str, transform, kind: str) -> float:
    """Sum over the test TFRecords of `transform(column's values)` (a missing value: 0.0 or "")."""
    import tensorflow as tf

    from trainer.data.dataset import list_files

    spec = {column: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) if kind == "float" else
            tf.io.FixedLenFeature([], tf.string, default_value="")}
    records = tf.data.TFRecordDataset(list_files(data.pattern("test")), compression_type="GZIP").batch(8192)
    return float(sum(np.sum(transform(tf.io.parse_example(batch, spec)[column].numpy())) for batch in records))


def write_parquet(dataset: Dataset, workdir: str) -> str:
    """The dataset as `workdir/<name>.parquet` (same row order, label column `target`), written once."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"{dataset.name}.parquet")
    if not os.path.exists(path):
        dataset.frame().to_parquet(path, index=False)
    return path


def run_package(dataset: Dataset, assignment: np.ndarray, seed: int, workdir: str, epochs: int = 30,
                verbose: int = 0) -> dict:
    """Trains the package's weighted model and its unweighted baseline via `train_and_export`.

    The dataset is written as Parquet (same row order) and read through the
    package's own ingest / Beam split / schema, exactly as a user's file would.

    Returns:
      {"package_weighted": result, "package_unweighted": result, "split_check": ...}.
    """
    from evaluation.predictions import predict_test
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from trainer.pipeline import train_and_export

    path = write_parquet(dataset, workdir)
    config = RunConfig(data=path, label="target", output_dir=os.path.join(workdir, f"run-{seed}"), seed=seed,
                       epochs=epochs, verbose=verbose)
    started = time.time()
    data = prepare_data(config)
    prepare_seconds = time.time() - started
    check = verify_split(data, dataset, assignment)
    results = {"split_check": check, "prepare_seconds": prepare_seconds}
    for name, weighted in (("package_weighted", True), ("package_unweighted", False)):
        summary = train_and_export(config, data, weighted=weighted)
        predicted = predict_test(summary.version_dir, data.pattern("test"), data.schema)
        results[name] = {"labels": predicted["labels"], "scores": predicted["scores"],
                         "threshold": summary.threshold.value, "train_seconds": summary.train_seconds,
                         "epochs_run": summary.epochs_run, "weight_ratio": summary.weight_ratio,
                         "calibration": summary.calibration["kind"], "package_test_pr_auc": summary.test.pr_auc}
    return results


def run_package_tuned(dataset: Dataset, assignment: np.ndarray, seed: int, workdir: str, trials: int,
                      epochs: int = 30, verbose: int = 0, make_tune: bool = False) -> dict:
    """The package's tuned model: `tuning.pipeline.run_tuning(config, evaluate=None)` on a fresh run directory.

    The tuner gets `trials` trials (`max_trials`) and scores them its own way;
    the exported weighted model (`summary.weighted.version_dir`) is
    scored on the test TFRecords like `run_package`'s, at the threshold the
    package chose (`summary.weighted.threshold.value`). "train
    seconds" = the search plus the retraining of the best weighted model.

    `make_tune=True` runs `make tune`'s own command instead (`tuning.task.main`,
    TFMA and the push gate included; `benchmarks.package_cli`), scores what the
    first execution pushed (or its candidate, `served: false`), and ignores
    `epochs` and `verbose`: the command's defaults apply.
    """
    if make_tune:
        from benchmarks.package_cli import run_package_cli

        return run_package_cli(dataset, assignment, seed, workdir, trials)
    import shutil

    from evaluation.predictions import predict_test
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from tuning.pipeline import run_tuning

    path = write_parquet(dataset, workdir)
    output_dir = os.path.join(workdir, f"tuned-{seed}")
    shutil.rmtree(output_dir, ignore_errors=True)  # never resume or refuse a previous run: always fresh
    config = RunConfig(data=path, label="target", output_dir=output_dir, seed=seed, max_trials=trials,
                       epochs=epochs, verbose=verbose)
    started = time.time()
    summary = run_tuning(config, evaluate=None)
    run_seconds = time.time() - started
    data = prepare_data(config.replace(output_dir=summary.execution["path"]))  # the execution's data, reused
    check = verify_split(data, dataset, assignment)
    weighted = summary.weighted
    predicted = predict_test(weighted.version_dir, data.pattern("test"), data.schema)
    tuning = {k: v for k, v in summary.tuning.items()
              if k not in ("best", "best_file") and isinstance(v, (str, int, float, bool, type(None)))}
    return {"labels": predicted["labels"], "scores": predicted["scores"],
            "threshold": weighted.threshold.value,
            "train_seconds": float(summary.tuning["search_seconds"]) + float(weighted.train_seconds),
            "run_tuning_seconds": round(run_seconds, 1), "trials": trials, "package_tuning": tuning,
            "hyperparameters": weighted.hyperparameters, "epochs_run": weighted.epochs_run,
            "weight_ratio": weighted.weight_ratio, "calibration": weighted.calibration["kind"],
            "package_test_pr_auc": weighted.test.pr_auc, "split_check": check,
            "model_family": weighted.model_family, "selection": weighted.selection,
            "held_out_score": weighted.held_out_score}
