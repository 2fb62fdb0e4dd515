"""What an exported model is and how it did, in words (the command line, the report's model card).

Plain Python on a `trainer.summary.ModelSummary`: readers import it without TensorFlow.
"""

from __future__ import annotations

from trainer.summary import ModelSummary


def describe_model(summary: ModelSummary) -> str:
    """What was exported, in a few words: each member's family and weight, the loss and weighting."""
    def one(values: dict) -> str:
        if values.get("model_family") == "trees":
            return "boosted trees"
        if values.get("body") == "linear":
            return f"logistic regression on {values.get('numeric_encoding', 'standard')} inputs"
        return f"{values.get('body', 'mlp')} on {values.get('numeric_encoding', 'standard')} inputs"

    if summary.members:
        return " + ".join(f"{m.weight:.2g} x {one(m.hyperparameters)} (w1/w0 = {m.weight_ratio:.3g})"
                          for m in summary.members)
    values = summary.hyperparameters or {}
    text = f"{one(values)}, {summary.loss}" if values.get("model_family") != "trees" else one(values)
    return f"{text}, w1/w0 = {summary.weight_ratio:.3g}"


def headline(summary: ModelSummary) -> str:
    """One line of the minority-class test metrics."""
    test = summary.test
    return (f"test PR-AUC {test.pr_auc:.4f}  ROC-AUC {test.roc_auc:.4f}  "
            f"recall {test.recall:.3f} / precision {test.precision:.3f} at threshold "
            f"{test.threshold:.4f}  Brier {test.brier:.4f} (before calibration {test.brier_before:.4f})")
