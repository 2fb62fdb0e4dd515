"""The push gate: which thresholds bless a candidate, resolved for one test split.

The defaults follow the run's operating objective and the test set's size
(docs/design.md §9):

* value thresholds, always, each judged with the test split's noise (below):
  PR-AUC at least `min_pr_auc_lift` times the test positive rate (a model
  that ranks at random, or predicts the prior for everyone, has PR-AUC equal
  to that rate); minority recall at the model's
  threshold at least `min_recall` unless within noise; and, for
  `recall_at_precision:P`, precision at the threshold not significantly
  below P.
* change thresholds against the reference (the served model, or the
  unweighted twin when nothing is served): PR-AUC, and the operating point
  of the objective (recall at precision P for `recall_at_precision:P`,
  precision at recall R for `precision_at_recall:R`, recall at precision
  `precision_floor` otherwise), not worse beyond a tolerance. The operating
  point is measured on the test curve, not at each model's own threshold,
  so two models are compared at the same precision (or recall).

TFMA's validator compares point values. "Unless within noise",
"significantly" and "beyond a tolerance" therefore become numbers before TFMA
runs:

* recall: the smallest k/n (n test positives) whose one-sided 95% Wilson
  upper bound reaches `min_recall` (`evaluation.bounds`): 0 of 5 positives
  passes a floor of 0.1, 0 of 100 does not.
* precision: P - 1.645 sqrt(se_test² + se_held²). The threshold was chosen
  on held-out data and moves on test, so both splits' noise counts: se_test
  is the standard error of the test precision read off its Wilson bound
  (`evaluation.bounds.wilson_standard_error`: unlike a bootstrap's it is not
  0 when none or all of the few flagged test examples are positives), se_held
  the binomial one of the held-out precision over the examples the threshold
  flagged there (run.json's `held_out_flagged`; without it, se_test alone).
  With nothing flagged on test the precision is undefined and not judged.
* PR-AUC: the floor (`--min-pr-auc`, or the lift times the positive rate)
  less 1.645 paired-bootstrap standard errors of the model's test PR-AUC: on
  7 test positives PR-AUC moves by several hundredths between resamples.
* change tolerances: the larger of the flag's value and a one-sided 95%
  margin (1.645 standard errors) of a paired bootstrap of the difference
  over the same test predictions TFMA sees.

TFMA's own confidence intervals, reported next to each metric, estimate the
same standard errors (a test checks that they agree).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from evaluation.bounds import (
    ONE_SIDED_95,
    binomial_standard_error,
    min_successes,
    wilson_standard_error,
    wilson_upper,
)
from evaluation.options import AUTO_INTERVALS_MAX_EXAMPLES, EvaluationOptions
from evaluation.run_files import BASELINE, CANDIDATE, HeldOutPoint
from trainer.threshold import Objective, parse_objective

BOOTSTRAP_SAMPLES = 200


@dataclasses.dataclass(frozen=True)
class ValueFloors:
    """One model's value thresholds for this test split, and what it measured there.

    Attributes:
      model: TFMA model name.
      min_pr_auc: Lower bound on PR-AUC (None: off).
      min_recall: The requested recall floor (`--min-recall`).
      min_true_positives: k: fewer than k of `positives` found at the
        threshold is evidence (Wilson, one-sided 95%) of recall below
        `min_recall`.
      recall_threshold: k / n, the lower bound TFMA checks recall against.
      min_precision: Lower bound on precision at the threshold (None: off).
      precision_target: P of `recall_at_precision:P` when `min_precision` was
        derived from it (None: the user's `--min-precision`, or no floor).
      precision_se_test: Wilson standard error of precision at the threshold
        on test (None when not derived, or nothing was flagged on test).
      precision_se_held: Binomial standard error of the held-out precision at
        the threshold (None: unknown, so test noise only).
      held_out_flagged: Held-out examples the threshold flagged (None: unknown).
      positives: Test positives (n).
      true_positives: Test positives scored above the threshold.
      pr_auc: Measured on test (scikit-learn's average precision; TFMA's
        interpolated value differs slightly).
      precision, recall: Measured on test at the threshold, as TFMA counts
        (score > threshold); precision is NaN when nothing is flagged.
      recall_upper: One-sided 95% Wilson upper bound of `recall`.
      pr_auc_target: The PR-AUC floor asked for (`--min-pr-auc`, or the lift
        times the positive rate); `min_pr_auc` is it less 1.645 bootstrap
        standard errors of the model's test PR-AUC (`pr_auc_se`).
    """

    model: str
    min_pr_auc: float | None
    min_recall: float
    min_true_positives: int
    recall_threshold: float
    min_precision: float | None
    precision_target: float | None
    precision_se_test: float | None
    precision_se_held: float | None
    held_out_flagged: int | None
    positives: int
    true_positives: int
    pr_auc: float
    precision: float
    recall: float
    recall_upper: float
    pr_auc_target: float | None = None
    pr_auc_se: float | None = None

    def in_words(self) -> list[str]:
        """The value checks with their measured values, for the report and the command line."""
        who = self.model
        fails = (f"fewer than {self.min_true_positives} found" if self.min_true_positives > 0 else
                 "it cannot fail: even 0 found has an upper bound above the floor")
        checks = [f"{who} minority recall at its own threshold ≥ {self.min_recall:.3g} unless within the test "
                  f"split's noise (it fails only if its one-sided 95% Wilson upper bound, with {self.positives} "
                  f"test positives, is below that: {fails}); measured "
                  f"{self.recall:.3f} ({self.true_positives} of {self.positives}, upper bound {self.recall_upper:.3f})"]
        if self.min_precision is not None:
            checks.append(f"{who} precision at its own threshold ≥ {self.min_precision:.3g}"
                          + self._precision_origin() + f"; measured on test {self.precision:.3f}")
        elif self.precision_target is not None:
            checks.append(f"{who} precision at its own threshold: not judged, nothing flagged on test "
                          f"(precision is undefined there; the recall check judges such a model)")
        if self.min_pr_auc is not None:
            origin = (f" = {self.pr_auc_target:.3g} less 1.645 × its test standard error ({self.pr_auc_se:.3f}): it "
                      f"fails only if the floor is above its one-sided 95% upper bound"
                      if self.pr_auc_se is not None else "")
            checks.append(f"{who} PR-AUC ≥ {self.min_pr_auc:.3g}{origin}; measured {self.pr_auc:.3f}")
        return checks

    def _precision_origin(self) -> str:
        if self.precision_target is None:
            return ""
        if self.precision_se_held is None:
            return (f" = P {self.precision_target:g} less 1.645 × its test standard error "
                    f"({self.precision_se_test:.3f}): the test split's uncertainty only, run.json has no held-out "
                    f"count")
        return (f" = P {self.precision_target:g} less 1.645 × the combined standard error of its test "
                f"({self.precision_se_test:.3f}) and held-out ({self.precision_se_held:.3f}, "
                f"{self.held_out_flagged} flagged) precision: both splits' uncertainty, since the threshold was "
                f"chosen on held-out data")


@dataclasses.dataclass(frozen=True)
class Gate:
    """Thresholds for one evaluation (the EvalConfig is built from these).

    Attributes:
      reference: TFMA name of the model the candidate is compared with
        (`served` or `baseline`), or None for value thresholds only.
      candidate: The candidate's value thresholds (TFMA checks them).
      twin: The unweighted twin's, on a first execution (reference
        `baseline`) only: checked in Python by `evaluation.decision`, which
        may serve the twin instead of the candidate. None otherwise.
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
    candidate: ValueFloors
    pr_auc_tolerance: float
    operating_tolerance: float
    twin: ValueFloors | None = None
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
        checks = self.candidate.in_words()
        if self.reference is not None:
            checks.append(f"candidate PR-AUC ≥ {self.reference} PR-AUC − {self.pr_auc_tolerance:.3g}")
            checks.append(f"candidate {self.operating_text} ≥ {self.reference}'s − {self.operating_tolerance:.3g}")
        if self.twin is not None:
            # Not TFMA thresholds: the first execution's choice between the two (evaluation.decision).
            checks += [f"(first execution, to serve the twin instead) {check}" for check in self.twin.in_words()]
        return checks


def resolve_gate(options: EvaluationOptions, threshold_objective: str, reference: str | None,
                 predictions: dict[str, dict], thresholds: dict[str, float],
                 held_out: dict[str, HeldOutPoint | None] | None = None) -> Gate:
    """The gate for this test split.

    Args:
      options: The user's thresholds (floors for the size-aware margins).
      threshold_objective: The run's `threshold_objective`.
      reference: The reference model's name, or None.
      predictions: Model name -> `predict_test` output (`labels`, `scores`).
      thresholds: Model name -> decision threshold.
      held_out: Model name -> where its threshold was chosen; a missing or
        None entry leaves the precision floor with the test split's noise only.
    """
    labels = predictions[CANDIDATE]["labels"]
    indices = _Resamples(labels.size, options.bootstrap_seed)
    objective = parse_objective(threshold_objective)
    min_pr_auc = options.min_pr_auc
    if min_pr_auc is None and options.min_pr_auc_lift > 0:
        min_pr_auc = min(options.min_pr_auc_lift * float(labels.mean()), 1.0)
    held_out = held_out or {}

    def floors(name: str) -> ValueFloors:
        return _value_floors(name, options, objective, min_pr_auc, labels, predictions[name]["scores"],
                             thresholds[name], held_out.get(name), indices)

    operating_metric, precision_floor, recall_floor = _operating_point_of(objective, options)
    pr_auc_tolerance, operating_tolerance = options.pr_auc_tolerance, options.operating_tolerance
    if reference is not None:
        floor = precision_floor if operating_metric == "recall_at_precision" else recall_floor
        pr_auc_margin, operating_margin = _change_margins(labels, predictions[CANDIDATE]["scores"],
                                                          predictions[reference]["scores"], operating_metric,
                                                          floor, indices)
        pr_auc_tolerance = max(pr_auc_tolerance, pr_auc_margin)
        operating_tolerance = max(operating_tolerance, operating_margin)
    return Gate(reference=reference, candidate=floors(CANDIDATE),
                twin=floors(BASELINE) if reference == BASELINE else None,
                pr_auc_tolerance=pr_auc_tolerance, operating_tolerance=operating_tolerance,
                operating_metric=operating_metric, precision_floor=precision_floor, recall_floor=recall_floor,
                num_thresholds=options.num_thresholds, intervals=resolve_intervals(options.intervals, labels.size))


def _operating_point_of(objective: Objective, options: EvaluationOptions) -> tuple[str, float, float]:
    """The objective's operating metric, with its precision and recall floors (the objective's P or R)."""
    precision_floor, recall_floor = options.precision_floor, options.recall_floor
    if objective.kind == "recall_at_precision":
        precision_floor = objective.value
    elif objective.kind == "precision_at_recall":
        recall_floor = objective.value
        return "precision_at_recall", precision_floor, recall_floor
    return "recall_at_precision", precision_floor, recall_floor


def _value_floors(name: str, options: EvaluationOptions, objective: Objective, min_pr_auc: float | None,
                  labels: np.ndarray, scores: np.ndarray, threshold: float,
                  held_out: HeldOutPoint | None, indices: _Resamples) -> ValueFloors:
    """One model's value thresholds, from its test predictions and where its threshold was chosen."""
    flagged = scores > threshold  # TFMA's count at an explicit threshold
    positives, true_positives = int(labels.sum()), int((flagged & (labels == 1)).sum())
    k = min_successes(options.min_recall, positives)
    min_precision, target, se_test, se_held = options.min_precision, None, None, None
    if min_precision is None and objective.kind == "recall_at_precision":
        target = objective.value
        se_test = wilson_standard_error(int((flagged & (labels == 1)).sum()), int(flagged.sum()))
        se_held = binomial_standard_error(held_out.precision, held_out.flagged) if held_out else None
        # Nothing flagged on test: precision is undefined (TFMA's NaN would fail any floor), so it is not
        # judged; the recall floor judges such a model.
        min_precision = None if se_test is None else max(
            target - ONE_SIDED_95 * math.sqrt(se_test ** 2 + (se_held or 0.0) ** 2), 0.0)
    pr_auc_target, pr_auc_se = min_pr_auc, None
    if min_pr_auc is not None:  # judged with the test split's noise, as the other floors (few positives: wide)
        pr_auc_se = _standard_error(indices, lambda i: _pr_auc(labels[i], scores[i]))
        min_pr_auc = max(min_pr_auc - ONE_SIDED_95 * pr_auc_se, 0.0)
    return ValueFloors(
        pr_auc_target=pr_auc_target, pr_auc_se=pr_auc_se, model=name, min_pr_auc=min_pr_auc, min_recall=options.min_recall, min_true_positives=k,
        recall_threshold=k / positives if positives else 0.0, min_precision=min_precision,
        precision_target=target, precision_se_test=se_test, precision_se_held=se_held,
        held_out_flagged=held_out.flagged if held_out and se_held is not None else None,
        positives=positives, true_positives=true_positives, pr_auc=_pr_auc(labels, scores),
        precision=_precision(labels, flagged), recall=true_positives / positives if positives else float("nan"),
        recall_upper=float(wilson_upper(true_positives, positives)) if positives else 1.0)


def _change_margins(labels: np.ndarray, scores: np.ndarray, other: np.ndarray, operating_metric: str,
                    floor: float, indices: _Resamples) -> tuple[float, float]:
    """One-sided 95% margins of the paired differences in PR-AUC and in the operating point."""
    def operating(i, s):
        return _operating_point(labels[i], s[i], operating_metric, floor)

    pr_auc_se = _standard_error(indices, lambda i: _pr_auc(labels[i], scores[i]) - _pr_auc(labels[i], other[i]))
    operating_se = _standard_error(indices, lambda i: operating(i, scores) - operating(i, other))
    return ONE_SIDED_95 * pr_auc_se, ONE_SIDED_95 * operating_se


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


