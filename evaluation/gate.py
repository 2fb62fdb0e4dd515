"""The push gate: which thresholds bless a candidate, resolved for one test split.

The defaults follow the run's operating objective and the test set's size
(docs/design.md §9):

* value thresholds, always: PR-AUC at least `min_pr_auc_lift` times the test
  positive rate (a model that ranks at random, or predicts the prior for
  everyone, has PR-AUC equal to that rate); minority recall at the model's
  threshold at least `min_recall`; and, for `recall_at_precision:P`,
  precision at the threshold not significantly below P.
* change thresholds against the reference (the served model, or the
  unweighted twin when nothing is served): PR-AUC, and the operating point
  of the objective (recall at precision P for `recall_at_precision:P`,
  precision at recall R for `precision_at_recall:R`, recall at precision
  `precision_floor` otherwise), not worse beyond a tolerance. The operating
  point is measured on the test curve, not at each model's own threshold,
  so two models are compared at the same precision (or recall).

TFMA's validator compares point values. "Significantly" and "beyond a
tolerance" therefore become numbers before TFMA runs: each is the larger of
the flag's value and a one-sided 95% margin (1.645 standard errors) of a
paired bootstrap over the same test predictions TFMA sees. TFMA's own
confidence intervals, reported next to each metric, estimate the same
standard errors (a test checks that they agree).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from evaluation.options import AUTO_INTERVALS_MAX_EXAMPLES, EvaluationOptions
from trainer.threshold import parse_objective

ONE_SIDED_95 = 1.645
BOOTSTRAP_SAMPLES = 200


@dataclasses.dataclass(frozen=True)
class Gate:
    """Thresholds for one evaluation (the EvalConfig is built from these).

    Attributes:
      reference: TFMA name of the model the candidate is compared with
        (`served` or `baseline`), or None for value thresholds only.
      min_pr_auc: Lower bound on the candidate's PR-AUC (None: off).
      min_precision: Lower bound on precision at the candidate's threshold.
      min_recall: Lower bound on recall at the candidate's threshold.
      pr_auc_tolerance: Allowed PR-AUC drop below the reference.
      operating_tolerance: Allowed drop of the operating point's metric.
      operating_metric: `recall_at_precision` or `precision_at_recall`: the
        objective's operating point, compared with the reference's.
      precision_floor, recall_floor: RecallAtPrecision's precision and
        PrecisionAtRecall's recall.
      num_thresholds: TFMA's curve resolution.
      intervals: `jackknife`, `bootstrap` or `none` (TFMA's intervals).
    """

    reference: str | None
    min_pr_auc: float | None
    min_precision: float | None
    min_recall: float
    pr_auc_tolerance: float
    operating_tolerance: float
    operating_metric: str = "recall_at_precision"
    precision_floor: float = 0.5
    recall_floor: float = 0.5
    num_thresholds: int = 1000
    intervals: str = "jackknife"

    @property
    def operating_text(self) -> str:
        if self.operating_metric == "recall_at_precision":
            return f"recall at precision {self.precision_floor:g}"
        return f"precision at recall {self.recall_floor:g}"

    def in_words(self) -> list[str]:
        """The checks, for the report and the command line."""
        checks = [f"candidate minority recall at its own threshold ≥ {self.min_recall:.3g}"]
        if self.min_precision is not None:
            checks.append(f"candidate precision at its own threshold ≥ {self.min_precision:.3g}")
        if self.min_pr_auc is not None:
            checks.append(f"candidate PR-AUC ≥ {self.min_pr_auc:.3g}")
        if self.reference is not None:
            checks.append(f"candidate PR-AUC ≥ {self.reference} PR-AUC − {self.pr_auc_tolerance:.3g}")
            checks.append(f"candidate {self.operating_text} ≥ {self.reference}'s − {self.operating_tolerance:.3g}")
        return checks


def resolve_gate(options: EvaluationOptions, threshold_objective: str, reference: str | None,
                 predictions: dict[str, dict], thresholds: dict[str, float]) -> Gate:
    """The gate for this test split.

    Args:
      options: The user's thresholds (floors for the size-aware margins).
      threshold_objective: The run's `threshold_objective`.
      reference: The reference model's name, or None.
      predictions: Model name -> `predict_test` output (`labels`, `scores`).
      thresholds: Model name -> decision threshold.
    """
    candidate = predictions["candidate"]
    labels, scores, t = candidate["labels"], candidate["scores"], thresholds["candidate"]
    indices = _Resamples(labels.size, options.bootstrap_seed)
    objective = parse_objective(threshold_objective)
    min_precision = options.min_precision
    if min_precision is None and objective.kind == "recall_at_precision":
        se = _standard_error(indices, lambda i: _precision(labels[i], scores[i] > t))
        min_precision = max(objective.value - ONE_SIDED_95 * se, 0.0)
    min_pr_auc = options.min_pr_auc
    if min_pr_auc is None and options.min_pr_auc_lift > 0:
        min_pr_auc = min(options.min_pr_auc_lift * float(labels.mean()), 1.0)
    precision_floor, recall_floor = options.precision_floor, options.recall_floor
    operating_metric = "precision_at_recall" if objective.kind == "precision_at_recall" else "recall_at_precision"
    if objective.kind == "recall_at_precision":
        precision_floor = objective.value
    elif objective.kind == "precision_at_recall":
        recall_floor = objective.value
    pr_auc_tolerance, operating_tolerance = options.pr_auc_tolerance, options.operating_tolerance
    if reference is not None:
        other = predictions[reference]["scores"]
        floor = precision_floor if operating_metric == "recall_at_precision" else recall_floor

        def operating(i, s):
            return _operating_point(labels[i], s[i], operating_metric, floor)

        pr_auc_se = _standard_error(indices, lambda i: _pr_auc(labels[i], scores[i]) - _pr_auc(labels[i], other[i]))
        operating_se = _standard_error(indices, lambda i: operating(i, scores) - operating(i, other))
        pr_auc_tolerance = max(pr_auc_tolerance, ONE_SIDED_95 * pr_auc_se)
        operating_tolerance = max(operating_tolerance, ONE_SIDED_95 * operating_se)
    return Gate(reference=reference, min_pr_auc=min_pr_auc, min_precision=min_precision,
                min_recall=options.min_recall, pr_auc_tolerance=pr_auc_tolerance,
                operating_tolerance=operating_tolerance, operating_metric=operating_metric,
                precision_floor=precision_floor, recall_floor=recall_floor,
                num_thresholds=options.num_thresholds, intervals=resolve_intervals(options.intervals, labels.size))


def resolve_intervals(setting: str, examples: int) -> str:
    """`auto` -> `jackknife` for test sets up to AUTO_INTERVALS_MAX_EXAMPLES, else `none`."""
    if setting != "auto":
        return setting
    return "jackknife" if examples <= AUTO_INTERVALS_MAX_EXAMPLES else "none"


class _Resamples:
    """The same BOOTSTRAP_SAMPLES resamples of N indices on every iteration (paired statistics).

    Drawn again from the seed each time rather than kept: 200 index arrays of
    a large test split would hold 200 x N int64 in memory.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        for _ in range(BOOTSTRAP_SAMPLES):
            yield rng.integers(0, self.size, self.size)


def _standard_error(indices: _Resamples, statistic) -> float:
    values = np.array([statistic(i) for i in indices])
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def _pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(labels, scores)) if labels.any() else float("nan")


def _operating_point(labels: np.ndarray, scores: np.ndarray, metric: str, floor: float) -> float:
    """Recall at precision >= floor, or precision at recall >= floor (best over thresholds)."""
    if not labels.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(labels, scores)
    if metric == "recall_at_precision":
        reachable = recall[precision >= floor]
    else:
        reachable = precision[recall >= floor]
    return float(reachable.max()) if reachable.size else 0.0


def _precision(labels: np.ndarray, decided: np.ndarray) -> float:
    return float(labels[decided].mean()) if decided.any() else float("nan")


