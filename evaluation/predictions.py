"""A model's own predictions on the test split, for the "before" reliability curve.

TFMA has no "before calibration" view: the exported model's probabilities are
already corrected, and TFMA cannot apply a sigmoid to the raw logit output.
The report therefore calls the exported `serving_default` signature in
batches (a fraction of a second for the whole test split; docs/benchmarks.md) and
bins sigmoid(logits) the way TFMA's CalibrationPlot bins `scores`.
"""

from __future__ import annotations

import numpy as np

from trainer.calibration import sigmoid
from trainer.data.dataset import read_labels, read_serialized
from trainer.data.schema import Schema

BATCH = 4096


def predict_test(model, data_pattern: str, schema: Schema) -> dict[str, np.ndarray]:
    """Labels and outputs of one SavedModel on the shards of `data_pattern`.

    Args:
      model: The SavedModel's directory, or the SavedModel already loaded
        (`tf.saved_model.load`: an evaluation loads each model once).
      data_pattern: TFRecord shards of serialized examples.
      schema: The run's schema (the label).

    Returns:
      `labels` [N], `scores` [N] (calibrated), `raw` [N] (sigmoid of the logit,
      before the calibration correction), `class_ids` [N].
    """
    import tensorflow as tf

    from trainer.finalize import run_signature

    serve = (tf.saved_model.load(model) if isinstance(model, str) else model).signatures["serving_default"]
    joined = run_signature(lambda batch: serve(examples=batch), read_serialized(data_pattern), BATCH)
    return {"labels": read_labels(data_pattern, schema), "scores": joined["scores"].astype(np.float64),
            "raw": sigmoid(joined["logits"]), "class_ids": joined["class_ids"]}


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Equal-width reliability bins: mean predicted probability vs observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table = {"mean_prediction": [], "mean_label": [], "count": []}
    for b in range(bins):
        mask = index == b
        if mask.any():
            table["mean_prediction"].append(float(probabilities[mask].mean()))
            table["mean_label"].append(float(labels[mask].mean()))
            table["count"].append(float(mask.sum()))
    return table
