"""Did weighting help? The selected model at w1/w0 = 1, at the tuned ratio and at N0/N1, side by side.

Every tuning execution trains the selected configuration (the ensemble's
members with their own hyperparameters) three times: unweighted (the twin),
at the ratios the search chose (the candidate), and at the textbook ratio
N0/N1 (`other_class_share`: each class weighted by the other's share). Each
variant's raw predictions (before calibration and threshold, which would hide
what weighting does) on held-out data and on test are kept under
`RUN/weighting_study/<variant>.npz`, and the study compares them there:

- PR-AUC (average precision): does weighting change the ranking?
- recall at the operating precision (the threshold objective's P, the
  threshold chosen on the same split): the ranking at the point users serve;
- recall at threshold 0.5: what weighting moves most, and what a tuned
  threshold already moves for an unweighted model;
- Brier score of the raw probability: what weighting costs in calibration.

Each difference to the unweighted variant comes with a paired, stratified
percentile-bootstrap interval (the same resampled rows for every variant;
positives and negatives resampled apart so every resample has both), and one
sentence answers the question from the test numbers.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from trainer.atomic import write_arrays_atomically
from trainer.calibration import brier_score, sigmoid
from trainer.layout import WEIGHTING_STUDY_DIR

UNWEIGHTED, TUNED, FORMULA = "unweighted", "tuned", "formula"
VARIANTS = (UNWEIGHTED, TUNED, FORMULA)
METRICS = ("pr_auc", "recall_at_precision", "recall_at_0_5", "brier")
SPLITS = ("validation", "test")  # run.json's names: held-out data (validation or out-of-fold), then test
RESAMPLES = 200  # enough for a 95% percentile interval's ends to move by less than their own noise
LEVEL = 0.95
DEFAULT_OPERATING_PRECISION = 0.5  # when the threshold objective names no precision (f1, fbeta, cost)
METHOD = f"paired stratified percentile bootstrap, {RESAMPLES} resamples, {LEVEL:.0%}"


@dataclasses.dataclass(frozen=True)
class Predictions:
    """One variant's raw margins (logits of the minority class) and labels, per split, and its weights.

    Attributes:
      margins, labels: split name (`SPLITS`) -> float [N] / int [N].
      ratios: w1/w0 of each member, in the ensemble's order.
      weights: [w0, w1] of each member.
    """

    margins: dict
    labels: dict
    ratios: tuple
    weights: tuple


def save_predictions(run_dir: str, variant: str, held_out: tuple, test: tuple, ratios, weights) -> str:
    """Writes `RUN/weighting_study/<variant>.npz`; returns its path."""
    directory = os.path.join(run_dir, WEIGHTING_STUDY_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{variant}.npz")
    write_arrays_atomically(path, validation_margins=held_out[0], validation_labels=held_out[1],
                            test_margins=test[0], test_labels=test[1], ratios=np.asarray(ratios, np.float64),
                            weights=np.asarray(weights, np.float64))
    return path


def load_predictions(run_dir: str, variant: str) -> Predictions:
    """Reads what `save_predictions` wrote."""
    with np.load(os.path.join(run_dir, WEIGHTING_STUDY_DIR, f"{variant}.npz")) as saved:
        return Predictions({s: saved[f"{s}_margins"].astype(np.float64) for s in SPLITS},
                           {s: saved[f"{s}_labels"].astype(np.int64) for s in SPLITS},
                           tuple(float(r) for r in saved["ratios"]),
                           tuple(tuple(float(w) for w in pair) for pair in saved["weights"]))


def precision_recall(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score taken as the threshold (`score >= t`), highest first:
    scikit-learn's `precision_recall_curve` without its checks, since the bootstrap calls it thousands of times."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last row of each distinct score
    true_positives = np.cumsum(hits)[last]
    return true_positives / (last + 1), true_positives / max(int(labels.sum()), 1)


def metrics(labels: np.ndarray, margins: np.ndarray, precision: float) -> dict[str, float]:
    """The study's four numbers for one variant on one split.

    PR-AUC is average precision as scikit-learn defines it (the sum of
    precision times the recall step), recall at the operating precision the
    highest recall at any threshold whose precision reaches it (0 if none).
    """
    probability = sigmoid(margins)
    precisions, recalls = precision_recall(labels, probability)
    reached = recalls[precisions >= precision]
    positives = max(int(labels.sum()), 1)
    return {"pr_auc": float(np.sum(np.diff(recalls, prepend=0.0) * precisions)),
            "recall_at_precision": float(reached.max()) if reached.size else 0.0,
            "recall_at_0_5": float(((probability >= 0.5) & (labels == 1)).sum() / positives),
            "brier": brier_score(labels, probability)}


def paired_intervals(labels: np.ndarray, margins: dict[str, np.ndarray], precision: float,
                     seed: int = 0) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile intervals of each variant's difference to the unweighted one, per metric.

    The same resampled rows serve every variant (paired); positives and
    negatives are resampled apart, so each resample keeps the split's counts.
    """
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    differences = {v: {m: [] for m in METRICS} for v in margins if v != UNWEIGHTED}
    for _ in range(RESAMPLES):
        rows = np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)])
        base = metrics(labels[rows], margins[UNWEIGHTED][rows], precision)
        for variant in differences:
            values = metrics(labels[rows], margins[variant][rows], precision)
            for name in METRICS:
                differences[variant][name].append(values[name] - base[name])
    tail = (1 - LEVEL) / 2 * 100
    return {variant: {name: tuple(float(q) for q in np.percentile(values, [tail, 100 - tail]))
                      for name, values in by_metric.items()} for variant, by_metric in differences.items()}


def study(run_dir: str, precision: float, formula_ratio: float) -> dict:
    """The `weighting_study` section of run.json, from the saved predictions of the three variants.

    Args:
      run_dir: The execution's directory.
      precision: The operating precision (the threshold objective's P).
      formula_ratio: N0/N1 of the training split.
    """
    variants = {v: load_predictions(run_dir, v) for v in VARIANTS}
    section = {"method": METHOD, "operating_precision": precision, "formula_ratio": formula_ratio}
    for split in SPLITS:
        labels = variants[UNWEIGHTED].labels[split]
        if any(not np.array_equal(labels, p.labels[split]) for p in variants.values()):
            raise ValueError(f"the weighting study's variants were scored on different {split} rows")
        margins = {v: p.margins[split] for v, p in variants.items()}
        intervals = paired_intervals(labels, margins, precision)
        base = metrics(labels, margins[UNWEIGHTED], precision)
        rows = []
        for variant, predictions in variants.items():
            values = metrics(labels, margins[variant], precision)
            row = {"weight_ratio": _ratio(predictions.ratios), "source": variant,
                   "member_ratios": list(predictions.ratios), "weights": [list(w) for w in predictions.weights],
                   **values}
            if variant != UNWEIGHTED:
                row["vs_unweighted"] = {m: {"difference": values[m] - base[m], "interval": list(intervals[variant][m])}
                                        for m in METRICS}
            rows.append(row)
        section[split] = rows
    section["answer"] = answer(section["test"], formula_ratio)
    return section


def _ratio(ratios: tuple) -> float:
    """The variant's w1/w0: its members' one ratio, or their geometric mean when they differ."""
    return float(np.exp(np.mean(np.log(ratios))))


def answer(rows: list[dict], formula_ratio: float) -> str:
    """One sentence (or three) that answers "did weighting help?" from the test rows."""
    by_source = {row["source"]: row for row in rows}
    tuned, formula, unweighted = by_source[TUNED], by_source[FORMULA], by_source[UNWEIGHTED]
    chose = ("The search chose no weighting (w1/w0 = 1)" if max(tuned["member_ratios"]) == 1.0
             else f"The search chose w1/w0 = {_ratios_in_words(tuned['member_ratios'])}")
    sentences = [f"{chose}; on test, against the same model unweighted, {_ranking(tuned)}."]
    moved = tuned["vs_unweighted"]["recall_at_0_5"]
    if _excludes_zero(moved["interval"]):
        sentences.append(f"At the 0.5 threshold it moved recall from {unweighted['recall_at_0_5']:.3f} to "
                         f"{tuned['recall_at_0_5']:.3f}; the threshold tuned on held-out data makes that move "
                         f"for any model, so this alone is no reason to weight.")
    sentences.append(f"At the textbook ratio N0/N1 = {formula_ratio:.3g}: {_ranking(formula)}.")
    return " ".join(sentences)


def _ranking(row: dict) -> str:
    pr_auc = row["vs_unweighted"]["pr_auc"]
    low, high = pr_auc["interval"]
    shown = f"PR-AUC {row['pr_auc']:.3f}, {pr_auc['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
    if low > 0:
        return f"weighting improved ranking ({shown})"
    if high < 0:
        return f"weighting hurt ranking ({shown})"
    return f"weighting did not change ranking beyond noise ({shown})"


def _excludes_zero(interval: list[float]) -> bool:
    return interval[0] > 0 or interval[1] < 0


def _ratios_in_words(ratios: list[float]) -> str:
    distinct = sorted(set(round(r, 3) for r in ratios))
    return f"{distinct[0]:.3g}" if len(distinct) == 1 else "/".join(f"{r:.3g}" for r in distinct) + " (members)"
