"""What an evaluation serves: the candidate, its unweighted twin, or nothing (docs/design.md §9).

With a model being served (the second and later executions), TFMA's verdict
decides alone: the candidate is served only when BLESSED, and a failed change
threshold against the served model blocks it.

On a first execution nothing is served yet and the reference is the
unweighted twin, trained next to the candidate with the same configuration.
Being worse than the twin must not by itself leave the user with nothing:
the better of the two that is fit to serve is served.

1. The candidate passes the value thresholds and no change threshold:
   the candidate (BLESSED).
2. The twin passes the value thresholds and either beat the candidate beyond
   noise (a change threshold failed) or the candidate fails a value
   threshold: the twin, with its own threshold.
3. The candidate passes the value thresholds and the twin does not: the
   candidate, even though the twin beat it.
4. Neither passes the value thresholds: nothing, and one line saying why in
   terms of the data.

The candidate's checks are TFMA's (its validation result, and the
BLESSED / NOT_BLESSED marker, stay the candidate's record). The twin's value
checks are the same floors (`Gate.twin`, resolved for the twin's own
threshold) compared in Python with the twin's metrics from the same TFMA run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from evaluation.bounds import wilson_upper
from evaluation.gate import Gate, ValueFloors
from evaluation.run_files import BASELINE, CANDIDATE

if TYPE_CHECKING:  # evaluation.blessing imports TFMA, which deciding does not need
    from evaluation.blessing import Verdict

# What a failed value check says about the data, for the one line of rule 4.
CONSEQUENCES = {"recall": "the data may not separate the classes",
                "pr_auc": "the data may not separate the classes",
                "precision": "the precision reached on held-out data does not hold on test"}


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to serve after one evaluation.

    Attributes:
      serve: `candidate`, `baseline` (the unweighted twin: first execution
        only) or None.
      reason: One line when TFMA's verdict alone does not explain the
        decision, else None. It starts with the served model ("the unweighted
        twin: it beat the candidate ...") or, with nothing served, says why
        neither model is fit to serve.
      first_execution: The reference was the twin (nothing was served yet).
    """

    serve: str | None
    reason: str | None
    first_execution: bool

    def in_words(self) -> str | None:
        """"serve the unweighted twin: ...", "serve nothing: neither ...", or None when the verdict says it all."""
        if self.reason is None:
            return None
        return f"serve {self.reason}" if self.serve is not None else f"serve nothing: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """One failed value check of one model.

    Attributes:
      check: TFMA's metric name: `recall`, `precision` or `pr_auc`.
      requirement: The check, e.g. "recall ≥ 0.1 at its threshold".
      quantity: What `value` is, e.g. "upper 95% bound".
      value: What the model reached, formatted.
      context: What the value rests on, the same for both models (e.g.
        "with 57 test positives"), or "".
    """

    check: str
    requirement: str
    quantity: str
    value: str
    context: str = ""

    def __str__(self) -> str:
        return f"{self.requirement} ({f'{self.quantity} {self.value}'.strip()}{self.tail})"

    @property
    def tail(self) -> str:
        """The context with its leading space, or ""."""
        return f" {self.context}" if self.context else ""


def decide(gate: Gate, verdict: Verdict, metrics: dict[str, dict[str, float]]) -> Decision:
    """Which model to serve (module docstring).

    Args:
      gate: The resolved gate; `gate.twin` is set on a first execution only.
      verdict: TFMA's validation of the candidate.
      metrics: Model name -> overall TFMA metrics (`pr_auc`, `precision`,
        `recall` at its own threshold, and the operating point).
    """
    if gate.twin is None:
        return Decision(serve=CANDIDATE if verdict.blessed else None, reason=None, first_execution=False)
    # A failure TFMA did not attribute to a threshold counts against the candidate's fitness.
    candidate_fit = not verdict.failed_values and (verdict.blessed or bool(verdict.failed_changes))
    candidate_close = not verdict.failed_changes
    if candidate_fit and candidate_close:
        return Decision(serve=CANDIDATE, reason=None, first_execution=True)
    candidate_short = [s for s in shortfalls(gate.candidate, metrics.get(CANDIDATE, {}))
                       if s.check in verdict.failed_values]
    twin_short = shortfalls(gate.twin, metrics.get(BASELINE, {}))
    if not twin_short:
        if not candidate_close:
            why = f"it beat the candidate beyond noise on test ({_comparison(gate, verdict, metrics)})"
        else:
            why = "the candidate misses " + (_listed(candidate_short) or f"a check: {verdict.failures[0]}")
        return Decision(serve=BASELINE, reason=f"the unweighted twin: {why}", first_execution=True)
    if candidate_fit:
        return Decision(serve=CANDIDATE, first_execution=True,
                        reason=f"the candidate: the twin beat it on test ({_comparison(gate, verdict, metrics)}) "
                               f"but misses {_listed(twin_short)}")
    return Decision(serve=None, reason=neither_line(candidate_short, twin_short), first_execution=True)


def shortfalls(floors: ValueFloors, measured: dict[str, float]) -> list[Shortfall]:
    """The value checks `floors` that a model's measured metrics fail (NaN fails, as in TFMA).

    `measured` holds TFMA's `pr_auc`, `precision` and `recall`; a metric
    missing there is taken from `floors` (the gate's own measurement).
    """
    pr_auc = measured.get("pr_auc", floors.pr_auc)
    precision = measured.get("precision", floors.precision)
    recall = measured.get("recall", floors.recall)
    found = []
    if not recall >= floors.recall_threshold:
        found_positives = round(recall * floors.positives) if math.isfinite(recall) else 0
        upper = float(wilson_upper(found_positives, floors.positives)) if floors.positives else float("nan")
        found.append(Shortfall("recall", f"recall ≥ {floors.min_recall:g} at its threshold", "upper 95% bound",
                               f"{upper:.2f}", f"with {floors.positives} test positives"))
    if floors.min_precision is not None and not precision >= floors.min_precision:
        origin = " (P less both splits' 95% margin)" if floors.precision_se_held is not None else ""
        requirement = f"precision ≥ {floors.min_precision:.3g}{origin} at its threshold"
        if math.isfinite(precision):
            found.append(Shortfall("precision", requirement, "measured on test", f"{precision:.3f}"))
        else:
            found.append(Shortfall("precision", requirement, "", "nothing flagged on test"))
    if floors.min_pr_auc is not None and not pr_auc >= floors.min_pr_auc:
        found.append(Shortfall("pr_auc", f"PR-AUC ≥ {floors.min_pr_auc:.3g}", "measured", f"{pr_auc:.3f}"))
    return found


def neither_line(candidate: list[Shortfall], twin: list[Shortfall]) -> str:
    """One line: why neither model is fit to serve, about the data where both fail alike."""
    twin_by_check = {s.check: s for s in twin}
    for mine in candidate:
        theirs = twin_by_check.get(mine.check)
        if theirs is not None:
            measured = f"{mine.quantity} {mine.value}".strip()
            return (f"neither model reaches {mine.requirement} ({measured} for the candidate, "
                    f"{theirs.value} for the twin{mine.tail}): {CONSEQUENCES[mine.check]}")
    mine = _listed(candidate) or "TFMA's checks"
    return f"neither model is fit to serve: the candidate misses {mine}; the unweighted twin misses {_listed(twin)}"


def _listed(found: list[Shortfall]) -> str:
    return "; ".join(str(s) for s in found)


def _comparison(gate: Gate, verdict: Verdict, metrics: dict[str, dict[str, float]]) -> str:
    """"PR-AUC 0.3970 vs 0.3860": the twin's value first, for each failed change check."""
    labels = {"pr_auc": "PR-AUC", gate.operating_metric: gate.operating_text}
    parts = []
    for name in dict.fromkeys(verdict.failed_changes):
        twin, candidate = metrics.get(BASELINE, {}).get(name), metrics.get(CANDIDATE, {}).get(name)
        parts.append(f"{labels.get(name, name)} {_number(twin)} vs {_number(candidate)}")
    return "; ".join(parts)


def _number(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4f}"
