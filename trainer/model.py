"""The Keras 3 model: preprocessing from the schema, then an MLP with two logits.

Preprocessing lives inside the model (imputation, missing indicators,
normalization, vocabulary lookup, embeddings), so the exported SavedModel takes
raw feature values and training and serving cannot drift apart.
"""

from __future__ import annotations

import math

import keras
import keras_tuner as kt
import numpy as np
from keras import layers, ops

from trainer.hparams import declare_model_hparams
from trainer.schema import Schema


@keras.saving.register_keras_serializable(package="imbalance")
class NumericPreprocessor(layers.Layer):
    """Imputes missing (NaN) numerics with the training mean, then standardizes.

    Appends a 0/1 missing indicator for each feature that had missing values in
    training, so the model can learn from missingness itself.
    """

    def __init__(self, means, stds, indicator_mask, **kwargs):
        super().__init__(**kwargs)
        self.means = [float(v) for v in means]
        self.stds = [float(v) for v in stds]
        self.indicator_mask = [bool(v) for v in indicator_mask]
        self._indicator_index = [i for i, flag in enumerate(self.indicator_mask) if flag]

    def call(self, x):  # x: [N, F] float32, NaN = missing
        missing = ops.isnan(x)  # [N, F]
        means = ops.convert_to_tensor(self.means, dtype=x.dtype)  # [F]
        filled = ops.where(missing, means, x)
        scaled = (filled - means) / ops.convert_to_tensor(self.stds, dtype=x.dtype)  # [N, F]
        if not self._indicator_index:
            return scaled
        indicators = ops.take(ops.cast(missing, x.dtype), self._indicator_index, axis=1)  # [N, M]
        return ops.concatenate([scaled, indicators], axis=1)  # [N, F + M]

    def get_config(self):
        return {**super().get_config(), "means": self.means, "stds": self.stds,
                "indicator_mask": self.indicator_mask}


def feature_inputs(schema: Schema) -> dict:
    """One scalar `keras.Input` per raw feature, named as in the tf.Examples."""
    return {
        f.name: keras.Input(shape=(), dtype="float32" if f.kind == "numeric" else "string", name=f.name)
        for f in schema.features
    }


def encode_features(inputs: dict, schema: Schema, embedding_dim: int):
    """Raw feature tensors -> one dense [N, D] float tensor."""
    parts = []
    numeric = schema.numeric
    if numeric:
        stacked = ops.stack([inputs[f.name] for f in numeric], axis=1)  # [N, F]
        parts.append(NumericPreprocessor(
            [f.mean for f in numeric], [f.std for f in numeric],
            [f.missing_fraction > 0 for f in numeric], name="numeric_preprocessing",
        )(stacked))
    for feature in schema.categorical:
        # Unseen values and missing ("") share the single out-of-vocabulary index 0.
        lookup = layers.StringLookup(vocabulary=list(feature.vocabulary) or ["<none>"], num_oov_indices=1,
                                     name=f"{feature.name}_lookup")
        ids = lookup(inputs[feature.name])  # [N] int64
        size = lookup.vocabulary_size()
        width = min(embedding_dim, max(2, size))
        parts.append(layers.Embedding(size, width, name=f"{feature.name}_embedding")(ids))  # [N, width]
    return parts[0] if len(parts) == 1 else layers.Concatenate(name="features")(parts)


def build_model(hp: kt.HyperParameters, schema: Schema, priors: tuple[float, float] = (0.5, 0.5)) -> keras.Model:
    """Builds the (uncompiled) model from hyperparameters and the schema.

    Args:
      hp: Hyperparameters; a fresh `HyperParameters()` gives the defaults.
      schema: The training split's schema.
      priors: Class priors (pi_0, pi_1); the output bias starts at their log,
        so the first steps are not spent learning the base rate.

    Returns:
      A Keras model from a dict of raw features ([N] each) to logits [N, 2].
    """
    params = declare_model_hparams(hp)
    inputs = feature_inputs(schema)
    x = encode_features(inputs, schema, params["embedding_dim"])
    for index in range(params["depth"]):
        x = layers.Dense(params["width"], activation="relu", name=f"dense_{index}")(x)
        if params["dropout"] > 0:
            x = layers.Dropout(params["dropout"], name=f"dropout_{index}")(x)
    bias = keras.initializers.Constant([math.log(p) for p in priors])
    logits = layers.Dense(2, bias_initializer=bias, name="logits")(x)  # [N, 2]
    return keras.Model(inputs=inputs, outputs=logits, name="imbalance_mlp")


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityAUC(keras.metrics.AUC):
    """AUC of the minority-class probability softmax(logits)[:, 1]."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), ops.softmax(y_pred, axis=-1)[:, 1], sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityRecall(keras.metrics.Recall):
    """Recall of the minority class at argmax of the logits (threshold 0.5)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), ops.softmax(y_pred, axis=-1)[:, 1], sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityRecallAtPrecision(keras.metrics.RecallAtPrecision):
    """Best minority recall with precision >= the floor."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), ops.softmax(y_pred, axis=-1)[:, 1], sample_weight)


def training_metrics(recall_precision_floor: float | None = None) -> list:
    """Metrics logged each epoch: PR-AUC (the early-stopping monitor), ROC-AUC,
    accuracy and minority recall (the seed's curves)."""
    metrics = [
        MinorityAUC(curve="PR", num_thresholds=500, name="pr_auc"),
        MinorityAUC(curve="ROC", num_thresholds=500, name="roc_auc"),
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        MinorityRecall(name="minority_recall"),
    ]
    if recall_precision_floor is not None:
        metrics.append(MinorityRecallAtPrecision(recall_precision_floor, num_thresholds=500,
                                                 name="recall_at_precision"))
    return metrics


def class_priors(counts: tuple[int, int]) -> tuple[float, float]:
    total = float(sum(counts))
    return counts[0] / total, counts[1] / total


def logit_margin(logits: np.ndarray) -> np.ndarray:
    """Single logit s = z1 - z0 from two logits [N, 2] -> [N]."""
    return logits[:, 1] - logits[:, 0]
