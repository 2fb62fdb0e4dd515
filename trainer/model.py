"""The Keras 3 model: preprocessing from the schema, then a body with logits.

The model's inputs are the numeric features as one [N, F] matrix
(`NUMERIC_INPUT`, schema order) and one [N] string tensor per categorical
feature: the training datasets yield that structure, and `model_inputs`
packs raw per-feature tensors into it (the exported signatures, the fold
ensemble and the blend), so a wide table costs one input tensor, not one
per column (docs/design.md §4).

Preprocessing lives inside the model (imputation, missing indicators, a
numeric encoding from `trainer.encodings`, vocabulary lookup, embeddings), so
the exported SavedModel takes raw feature values and training and serving
cannot drift apart. Bodies are in `trainer.bodies` (an MLP, or a TabM
ensemble whose members' probabilities are averaged at inference).
"""

from __future__ import annotations

import math

import keras
import keras_tuner as kt
from keras import layers, ops

from trainer import bodies
from trainer.data.dataset import NUMERIC_INPUT, pack_features
from trainer.data.schema import Schema
from trainer.encodings import encode_numeric
from trainer.hparams import declare_model_hparams


def feature_inputs(schema: Schema) -> dict:
    """The model's `keras.Input`s: the numeric matrix [N, F] (if any numeric feature), one [N] per categorical."""
    if any(f.name == NUMERIC_INPUT for f in schema.features):
        raise ValueError(f"a feature may not be named {NUMERIC_INPUT!r}: the numeric features' model input is")
    inputs = {}
    if schema.numeric:
        inputs[NUMERIC_INPUT] = keras.Input(shape=(len(schema.numeric),), dtype="float32", name=NUMERIC_INPUT)
    inputs.update({f.name: keras.Input(shape=(), dtype="string", name=f.name) for f in schema.categorical})
    return inputs


def model_inputs(model: keras.Model, features):
    """Raw `features` ({name: [N]}) as the plain dict `model` is called with.

    A `build_model` model gets its inputs packed (`pack_features`: the
    numeric features stacked in its schema order, `numeric_features`);
    features already packed pass as they are. The exported signatures
    (`trainer.export`) and the wrappers (`trainer.crossval.FoldEnsemble`,
    `trainer.candidates.Blend`) call their model through this. When `tf.saved_model.save` traces
    Keras' default signature of a wrapper, the features arrive as Keras'
    `TrackedDict`, which Keras' structure check (optree, in
    `Functional._maybe_warn_inputs_struct_mismatch`) takes for another node
    type than the dict of `feature_inputs`: it warned once per functional
    part, listing every feature name twice. A plain dict in the part's own
    input order (the schema's) matches; a subclassed part (the trees, a
    fold ensemble) reads features by name and gets a plain dict as given.
    """
    if not isinstance(features, dict):
        return features
    declared = getattr(model, "_inputs_struct", None)  # a functional model's dict of `keras.Input`s
    if not isinstance(declared, dict):
        return dict(features)
    if takes_packed_features(model):
        features = pack_features(features, getattr(model, "numeric_features", ()))  # a view (ids) has none
    return {name: features[name] for name in declared}


def takes_packed_features(model: keras.Model) -> bool:
    """Whether `model` takes the numeric features as one matrix (a `build_model` model), not by name
    (the trees, the wrappers: they read raw per-feature tensors)."""
    declared = getattr(model, "_inputs_struct", None)
    return isinstance(declared, dict) and NUMERIC_INPUT in declared


def encode_features(inputs: dict, schema: Schema, params: dict):
    """The model's inputs -> one dense [N, D] float tensor.

    Args:
      inputs: `feature_inputs`: the numeric matrix [N, F], one [N] per categorical feature.
      schema: Statistics of the training split.
      params: The model hyperparameters (`numeric_encoding`, `bins`, `sigma`,
        `embedding_dim`).
    """
    parts = []
    numeric = schema.numeric
    if numeric:
        parts.append(encode_numeric(inputs[NUMERIC_INPUT], numeric, params["numeric_encoding"], params["bins"],
                                    params["sigma"]))
    embedding_dim = params["embedding_dim"]
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
      A Keras model from `feature_inputs` (raw values: the numeric matrix
      [N, F], categorical [N]; `model_inputs` packs per-feature tensors) to
      logits: [N, 2] for the MLP, [N, k, 2] (one pair per member) for TabM;
      `ensemble_logits` turns either into the [N, 2] logits of the predicted
      probability. Its `numeric_features` names the matrix's columns.
    """
    params = declare_model_hparams(hp)
    inputs = feature_inputs(schema)
    x = encode_features(inputs, schema, params)
    bias = [math.log(p) for p in priors]
    shape = (params["depth"], params["width"], params["dropout"], bias)
    if params["body"] == "tabm":
        logits = bodies.tabm(x, *shape, members=params["ensemble_size"])  # [N, k, 2]
    elif params["body"] == "linear":
        logits = bodies.mlp(x, 0, *shape[1:])  # [N, 2]: no hidden layer, so depth and width do not apply
    else:
        logits = bodies.mlp(x, *shape)  # [N, 2]
    model = keras.Model(inputs=inputs, outputs=logits, name=f"imbalance_{params['body']}")
    model.numeric_features = tuple(f.name for f in schema.numeric)  # the columns of its numeric input, in order
    return model


def lookup_layers(model: keras.Model, schema: Schema) -> dict:
    """{categorical feature: the model's `StringLookup` layer} of a `build_model` model."""
    return {f.name: model.get_layer(f"{f.name}_lookup") for f in schema.categorical}


def with_vocabulary_ids(model: keras.Model, schema: Schema) -> keras.Model:
    """The same layers and weights, fed vocabulary ids instead of strings.

    A view of a `build_model` model that starts after its `StringLookup`
    layers: the numeric matrix as before, each categorical feature as its [N]
    int64 ids (`lookup_layers` computes them). Training the view trains the
    model; multi-replica training needs it (trainer/distribute.py).
    """
    inputs = {NUMERIC_INPUT: model.get_layer(NUMERIC_INPUT).output} if schema.numeric else {}
    inputs.update({f.name: model.get_layer(f"{f.name}_lookup").output for f in schema.categorical})
    return keras.Model(inputs=inputs, outputs=model.output, name=f"{model.name}_on_ids")


def minority_probability(y_pred):
    """Predicted minority probability [N] from logits [N, 2] or members [N, k, 2]."""
    return ops.softmax(bodies.ensemble_logits(y_pred), axis=-1)[:, 1]


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityAUC(keras.metrics.AUC):
    """AUC of the minority-class probability softmax(logits)[:, 1]."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), minority_probability(y_pred), sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityLogLoss(keras.metrics.BinaryCrossentropy):
    """Unweighted log-loss of the minority-class probability (an early-stopping monitor)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.reshape(y_true, (-1, 1)), "float32")  # [N, 1]
        probability = ops.reshape(minority_probability(y_pred), (-1, 1))  # [N, 1]
        return super().update_state(labels, probability, sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityRecall(keras.metrics.Recall):
    """Recall of the minority class at argmax of the logits (threshold 0.5)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), minority_probability(y_pred), sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityRecallAtPrecision(keras.metrics.RecallAtPrecision):
    """Best minority recall with precision >= the floor."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), minority_probability(y_pred), sample_weight)


@keras.saving.register_keras_serializable(package="imbalance")
class MinorityAccuracy(keras.metrics.BinaryAccuracy):
    """Accuracy of the argmax class (minority probability >= 0.5)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(ops.reshape(y_true, (-1,)), minority_probability(y_pred), sample_weight)


def training_metrics(recall_precision_floor: float | None = None) -> list:
    """Metrics logged each epoch: PR-AUC and log-loss (early-stopping monitors), ROC-AUC,
    accuracy and minority recall (the report's weighted-vs-unweighted curves)."""
    metrics = [
        MinorityAUC(curve="PR", num_thresholds=500, name="pr_auc"),
        MinorityLogLoss(name="log_loss"),
        MinorityAUC(curve="ROC", num_thresholds=500, name="roc_auc"),
        MinorityAccuracy(name="accuracy"),
        MinorityRecall(name="minority_recall"),
    ]
    if recall_precision_floor is not None:
        metrics.append(MinorityRecallAtPrecision(recall_precision_floor, num_thresholds=500,
                                                 name="recall_at_precision"))
    return metrics


def class_priors(counts: tuple[int, int]) -> tuple[float, float]:
    total = float(sum(counts))
    return counts[0] / total, counts[1] / total
