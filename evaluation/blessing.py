"""The verdict, as TFX's Evaluator gives it: `BLESSED` or `NOT_BLESSED`.

TFMA's validator already checked the value and change thresholds of the
EvalConfig and wrote a ValidationResult next to the metrics; this module reads
it back with `tfma.load_validation_result` (so the verdict is exactly what
TFMA decided) and writes the marker file TFX consumers look for. The marker
holds the failed checks, one per line, for humans; its name is the contract.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_model_analysis as tfma

from trainer.atomic import write_text_atomically

BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """TFMA's validation of the candidate.

    Attributes:
      blessed: TFMA's `validation_ok`.
      failures: The failed checks in words, one per check.
      failed_values: TFMA names of the metrics that failed a value threshold
        (`pr_auc`, `recall`, `precision`).
      failed_changes: TFMA names of the metrics that failed a change
        threshold against the reference (`pr_auc`, `recall_at_precision`, ...).
    """

    blessed: bool
    failures: tuple[str, ...]
    failed_values: tuple[str, ...] = ()
    failed_changes: tuple[str, ...] = ()

    @property
    def marker(self) -> str:
        return BLESSED if self.blessed else NOT_BLESSED


def read_verdict(eval_dir: str) -> Verdict:
    """The verdict in TFMA's validation result under `eval_dir`."""
    result = tfma.load_validation_result(eval_dir)
    failures, values, changes = [], [], []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_text(per_slice.slice_key)
        for failure in per_slice.failures:
            failures.append(_failure_text(failure, where))
            kind = changes if failure.metric_threshold.HasField("change_threshold") else values
            kind.append(failure.metric_key.name)
    if not result.validation_ok and not failures:
        failures.append("TFMA validation failed: " + " ".join(str(result).split())[:300])
    return Verdict(blessed=bool(result.validation_ok), failures=tuple(failures), failed_values=tuple(values),
                   failed_changes=tuple(changes))


def _slice_text(slice_key) -> str:
    parts = []
    for column in slice_key.single_slice_keys:
        value = column.bytes_value.decode() if column.HasField("bytes_value") else (
            column.int64_value if column.HasField("int64_value") else column.float_value)
        parts.append(f"{column.column} = {value}")
    return ", ".join(parts) or "overall"


def _failure_text(failure, where: str) -> str:
    key = failure.metric_key
    threshold = failure.metric_threshold
    value = failure.metric_value.double_value.value if failure.HasField("metric_value") else float("nan")
    name = f"{key.model_name} {key.name}" + (" change vs the reference model" if key.is_diff else "")
    if threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        limit = f">= {bounds.lower_bound.value:g}" if bounds.HasField("lower_bound") else (
            f"<= {bounds.upper_bound.value:g}")
    else:
        change = threshold.change_threshold
        limit = f">= {change.absolute.value:+g}" if change.HasField("absolute") else f"ratio {change.relative.value:g}"
    detail = f" ({failure.message.strip()})" if failure.message.strip() else ""
    return f"{where}: {name} = {value:.4f}, required {limit}{detail}"


def write_marker(eval_dir: str, verdict: Verdict) -> str:
    """Writes `BLESSED` or `NOT_BLESSED` into `eval_dir`, then removes the other.

    The new marker is in place before the stale one goes, so a reader never
    finds neither.

    Returns:
      The marker's path.
    """
    path = os.path.join(eval_dir, verdict.marker)
    write_text_atomically(path, "".join(line + "\n" for line in verdict.failures))
    stale = os.path.join(eval_dir, NOT_BLESSED if verdict.blessed else BLESSED)
    if os.path.exists(stale):
        os.remove(stale)
    return path
