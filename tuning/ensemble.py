"""Ensemble selection over the search's trials (Caruana et al. 2004, as AutoGluon's WeightedEnsemble).

Every trial's held-out predictions are kept (`save_held_out`): the validation
split's, or in cross-validation the out-of-fold predictions of train +
validation, in the same example order for every trial. After the search,
forward selection with replacement builds the ensemble: start empty; each
round, add the trial (again, possibly) whose addition gives the best held-out
objective of the averaged probabilities; after `ROUNDS` rounds keep the
prefix that scored best. A member's weight is the share of rounds that chose
it. Ties go to the trial with the better score on its own, then to the
earlier trial, so the choice is deterministic.

A greedy mean of probabilities is hard to overfit in the way a single
argmax over trials is: it can only move the held-out objective by adding
whole models, and a trial that does best on a handful of held-out positives
by chance adds little to a mean that already ranks those positives well.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from trainer.atomic import write_arrays_atomically
from trainer.calibration import sigmoid
from trainer.candidates import held_out_score

HELD_OUT_DIR = "held_out"  # under RUN/tuning/
LABELS_FILE = "labels.npz"
ROUNDS = 25  # AutoGluon's ensemble_size of its first releases
MAX_MEMBERS = 4  # distinct members: each is retrained twice (weighted and its unweighted twin) for export


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The trials' shared held-out examples and each trial's single logits on them."""

    labels: np.ndarray  # [N] int64
    folds: list[np.ndarray] | None  # held-out indices per fold (cross-validation), else None
    margins: dict[str, np.ndarray]  # trial id -> [N] float64


@dataclasses.dataclass(frozen=True)
class Selection:
    """The selected ensemble.

    Attributes:
      weights: Trial id -> weight (summing to 1), heaviest first.
      score: The ensemble's held-out objective.
      single_scores: Trial id -> its own held-out objective.
      trajectory: The ensemble's held-out objective after each round.
    """

    weights: dict[str, float]
    score: float
    single_scores: dict[str, float]
    trajectory: list[float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def save_held_out(tuning_dir: str, trial_id: str, margins: np.ndarray, labels: np.ndarray,
                  folds: list[np.ndarray] | None) -> None:
    """Keeps one trial's held-out single logits (and, once, the labels and folds they belong to)."""
    directory = os.path.join(tuning_dir, HELD_OUT_DIR)
    os.makedirs(directory, exist_ok=True)
    labels_path = os.path.join(directory, LABELS_FILE)
    if not os.path.exists(labels_path):
        fold_of = np.full(len(labels), -1, np.int64)
        for index, held in enumerate(folds or []):
            fold_of[held] = index
        write_arrays_atomically(labels_path, labels=np.asarray(labels, np.int64), fold_of=fold_of)
    write_arrays_atomically(os.path.join(directory, f"trial_{trial_id}.npz"), margins=np.asarray(margins, np.float64))


def load_held_out(tuning_dir: str, trial_ids: list[str]) -> HeldOut:
    """The held-out predictions of `trial_ids` (those without a saved file are left out)."""
    directory = os.path.join(tuning_dir, HELD_OUT_DIR)
    if not os.path.exists(os.path.join(directory, LABELS_FILE)):
        return HeldOut(np.zeros(0, np.int64), None, {})
    with np.load(os.path.join(directory, LABELS_FILE)) as saved:
        labels, fold_of = saved["labels"], saved["fold_of"]
    folds = None if fold_of.max() < 0 else [np.flatnonzero(fold_of == f) for f in range(fold_of.max() + 1)]
    margins = {}
    for trial_id in trial_ids:
        path = os.path.join(directory, f"trial_{trial_id}.npz")
        if os.path.exists(path):
            with np.load(path) as saved:
                if len(saved["margins"]) == len(labels):
                    margins[trial_id] = saved["margins"]
    return HeldOut(labels, folds, margins)


def select_ensemble(held_out: HeldOut, objective: str, rounds: int = ROUNDS,
                    max_members: int = MAX_MEMBERS) -> Selection:
    """Caruana forward selection with replacement over the trials' held-out probabilities.

    Args:
      held_out: The trials' held-out predictions (at least one trial).
      objective: The tuning objective (`pr_auc` or `recall_at_precision:P`),
        scored per fold and averaged in cross-validation, as trials are.
      rounds: Selection rounds (the ensemble's size before deduplication).
      max_members: At most this many distinct trials.
    """
    if not held_out.margins:
        raise ValueError("no trial left held-out predictions to select an ensemble from")
    labels, folds = held_out.labels, held_out.folds
    probabilities = {t: sigmoid(m) for t, m in held_out.margins.items()}
    single = {t: held_out_score(labels, p, folds, objective) for t, p in probabilities.items()}
    order = sorted(probabilities, key=lambda t: (-single[t], t))  # tie-break: the better single model
    total, chosen, trajectory = np.zeros(len(labels)), [], []
    for _ in range(rounds):
        allowed = order if len(set(chosen)) < max_members else [t for t in order if t in chosen]
        scores = [held_out_score(labels, (total + probabilities[t]) / (len(chosen) + 1), folds, objective)
                  for t in allowed]
        best = allowed[int(np.argmax(scores))]  # the first of equal scores
        chosen.append(best)
        total += probabilities[best]
        trajectory.append(float(max(scores)))
    size = int(np.argmax(trajectory)) + 1  # the shortest prefix with the best score
    counts = {t: chosen[:size].count(t) for t in dict.fromkeys(chosen[:size])}
    weights = {t: n / size for t, n in sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0])))}
    return Selection(weights, trajectory[size - 1], single, trajectory)


