"""Evaluation: TFMA EvalConfig, Beam pipeline, blessing and the static report.

Call `run_evaluation(run_dir, EvaluationOptions(...))` after training; see
`evaluation.evaluate.run_evaluation`. Importing this package stays cheap: TFMA
and Beam load only when an evaluation runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evaluation.options import EvaluationOptions

if TYPE_CHECKING:  # evaluation.evaluate loads TFMA's readers: only when an evaluation runs
    from evaluation.evaluate import EvaluationSummary


def run_evaluation(run_dir: str, options: EvaluationOptions | None = None) -> EvaluationSummary:
    """See `evaluation.evaluate.run_evaluation`."""
    from evaluation.evaluate import run_evaluation as evaluate

    return evaluate(run_dir, options)


__all__ = ["EvaluationOptions", "run_evaluation"]
