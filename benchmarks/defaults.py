"""What a user would try first: tree libraries at their own defaults, no tuning, no early stopping.

Each is trained once on every non-test row (train + validation of
`assign_splits`: nothing is held out, since nothing is chosen) and scored on
the test split. The decision threshold is 0.5, what the library's `predict`
uses; PR-AUC and ROC-AUC do not depend on it.

- `lightgbm_default`: `LGBMClassifier()` as shipped (100 trees, learning rate
  0.1, 31 leaves, no class weighting);
- `lightgbm_300_spw`: the usual first tweak, 300 trees at learning rate 0.05
  and scale_pos_weight = N0/N1 of the rows it trains on, otherwise defaults;
- `ydf_gbt_default`: `ydf.GradientBoostedTreesLearner` as shipped (300 trees,
  its own early stopping on a 10% slice it carves out of the rows it is given).

One thread each (`tuned.THREADS`): the machine's cores are shared, and this
is not a speed benchmark.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.selection import TEST
from benchmarks.tuned import LABEL, THREADS, LightGBMFamily, YDFFamily

DEFAULT_THRESHOLD = 0.5
DEFAULT_CONTENDERS = ("lightgbm_default", "lightgbm_300_spw", "ydf_gbt_default")


def fit_rows(assignment: np.ndarray) -> np.ndarray:
    """Indices of the rows an untuned contender trains on: every non-test row, in dataset order."""
    return np.flatnonzero(np.asarray(assignment) != TEST)


def lightgbm_params(name: str, labels: np.ndarray) -> dict:
    """Constructor arguments beyond the library's defaults (`labels`: those of the training rows)."""
    if name == "lightgbm_default":
        return {}
    if name == "lightgbm_300_spw":
        negatives, positives = int((labels == 0).sum()), int((labels == 1).sum())
        return {"n_estimators": 300, "learning_rate": 0.05, "scale_pos_weight": negatives / max(1, positives)}
    raise KeyError(name)


def fit_lightgbm(name: str, features, labels: np.ndarray, seed: int):
    """The fitted LGBMClassifier of contender `name` on these rows."""
    import lightgbm

    params = lightgbm_params(name, labels)
    model = lightgbm.LGBMClassifier(n_jobs=THREADS, random_state=seed, verbose=-1, **params)
    return model.fit(features, labels), params


def fit_ydf(features, labels: np.ndarray):
    """The fitted YDF gradient boosted trees at their defaults (its own default seed too)."""
    import ydf

    ydf.verbose(0)
    frame = features.copy()
    frame[LABEL] = np.asarray(labels, dtype=np.int64)
    model = ydf.GradientBoostedTreesLearner(label=LABEL, task=ydf.Task.CLASSIFICATION,
                                            num_threads=THREADS).train(frame, verbose=0)
    if list(model.label_classes()) != ["0", "1"]:
        raise AssertionError(f"unexpected YDF label classes {model.label_classes()}")
    return model, {"trees": int(model.num_trees())}


def run_default(name: str, dataset: Dataset, assignment: np.ndarray, seed: int) -> dict:
    """Contender `name` trained on the non-test rows, scored on test (a contender result)."""
    rows, test = fit_rows(assignment), np.asarray(assignment) == TEST
    if name.startswith("lightgbm"):
        family = LightGBMFamily(threads=THREADS)
        features = family.prepare(dataset.features)  # categoricals as pandas categories, NaN stays missing
        started = time.time()
        model, params = fit_lightgbm(name, features.iloc[rows], dataset.labels[rows], seed)
    elif name == "ydf_gbt_default":
        family = YDFFamily(threads=THREADS)
        features = family.prepare(dataset.features)
        started = time.time()
        model, params = fit_ydf(features.iloc[rows], dataset.labels[rows])
    else:
        raise KeyError(name)
    seconds = time.time() - started
    return {"labels": dataset.labels[test], "scores": family.predict(model, features[test]),
            "threshold": DEFAULT_THRESHOLD, "train_seconds": seconds, "train_rows": int(rows.size),
            "train_positives": int(dataset.labels[rows].sum()), "hyperparameters": params,
            "threads": THREADS}
