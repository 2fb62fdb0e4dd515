"""How a tuned contender scores a trial: the package tuner's selection rule, in one place.

With few validation positives, average precision on the validation split is
too noisy to choose between trials, so a trial is scored by stratified k-fold
cross-validation on the train + validation rows instead:

- validation positives < CV_MAX_VALIDATION_POSITIVES: the trial's score is the
  mean minority-class average precision over CV_FOLDS stratified folds of the
  train + validation rows (`selection_folds`), taken in dataset row order
  (`trainval_rows`);
- otherwise: average precision on the validation split after training on the
  train split.

Every tuned contender of the benchmark (`benchmarks/tuned.py` and, through its
`max_trials`, the package's own tuner in `package_tuned`) gets the same
TUNING_TRIALS trials. `selection_folds` is kept free of anything but NumPy and
scikit-learn so it can be compared row for row with the package's own folds.
"""

from __future__ import annotations

import numpy as np

TUNING_TRIALS = 10  # trials per tuned contender, the package tuner's default budget (RunConfig.max_trials)
QUICK_TUNING_TRIALS = 3  # `benchmarks.run` without --full only (CI-sized); `--trials N` overrides it there
CV_MAX_VALIDATION_POSITIVES = 50  # below this many validation positives, trials are scored by CV
CV_FOLDS = 5
TRAIN, VALIDATION, TEST = 0, 1, 2  # values of `trainer.data.split.assign_splits`


def selection_mode(labels: np.ndarray, assignment: np.ndarray) -> str:
    """`"cv"` when the validation split holds fewer than CV_MAX_VALIDATION_POSITIVES positives, else `"validation"`."""
    positives = int(np.sum(np.asarray(labels)[np.asarray(assignment) == VALIDATION] == 1))
    return "cv" if positives < CV_MAX_VALIDATION_POSITIVES else "validation"


def trainval_rows(assignment: np.ndarray) -> np.ndarray:
    """Indices of the train + validation rows, in dataset row order."""
    return np.flatnonzero(np.asarray(assignment) != TEST)


def selection_folds(labels_trainval: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The CV folds as (fit, held-out) positions into the train + validation rows.

    Exactly `StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)`
    applied to `labels_trainval` (the labels of `trainval_rows(assignment)`, in
    that order); positions index that array, not the dataset.
    """
    from sklearn.model_selection import StratifiedKFold

    labels_trainval = np.asarray(labels_trainval)
    splitter = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    return [(fit, held_out) for fit, held_out in splitter.split(np.zeros((labels_trainval.size, 1)), labels_trainval)]
