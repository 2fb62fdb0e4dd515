"""Evaluation: TFMA EvalConfig, Beam pipeline, blessing and the static report.

Call `run_evaluation(run_dir, EvaluationOptions(...))` after training; see
`evaluation.evaluate.run_evaluation`. Importing this package stays cheap: TFMA
and Beam load only when an evaluation runs.
"""

from __future__ import annotations

from evaluation.options import EvaluationOptions


def run_evaluation(run_dir: str, options: EvaluationOptions | None = None) -> dict:
    """See `evaluation.evaluate.run_evaluation`."""
    from evaluation.evaluate import run_evaluation as evaluate

    return evaluate(run_dir, options)


__all__ = ["EvaluationOptions", "run_evaluation"]
