"""Model selection that a handful of validation positives cannot fool.

With few minority examples in the validation split (fewer than
`CV_MAX_VALIDATION_POSITIVES`, docs/design.md §5), one
validation PR-AUC is mostly noise: a trial's score and the final model's
early stopping, calibration and threshold then come from stratified k-fold
cross-validation over train + validation instead. The final model is the
ensemble of the k fold models (their probabilities averaged), exported as one
SavedModel; its calibration and threshold are fit on out-of-fold predictions,
which every train + validation example has exactly once.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from trainer.bodies import ensemble_logits
from trainer.config import RunConfig, parse_tuning_objective
from trainer.data.dataset import pack_features
from trainer.data.prepare import PreparedData
from trainer.data.schema import Schema
from trainer.model import model_inputs, takes_packed_features

CV_MAX_VALIDATION_POSITIVES = 50
PARSE_BATCH = 4096


def uses_cross_validation(data: PreparedData, config: RunConfig) -> bool:
    """True when selection runs on k folds of train + validation."""
    if config.selection == "auto":
        return data.counts["validation"][1] < CV_MAX_VALIDATION_POSITIVES
    return config.selection == "cross_validation"


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Raw features ({name: [N]}) and labels [N] held in memory; `numeric` names the numeric ones in schema order."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    numeric: tuple[str, ...]

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays({k: v[index] for k, v in self.features.items()}, self.labels[index], self.numeric)

    def model_inputs(self) -> dict:
        """The features as a neural model takes them (`pack_features`: the numeric matrix [N, F])."""
        return pack_features(self.features, self.numeric)

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, packed: bool = True) -> tf.data.Dataset:
        """Batches of (`model_inputs`, labels), or of ({name: [B]}, labels) unless `packed` (the trees).

        Packed, a dataset element is one row of the numeric matrix, not one
        tensor per column: on hiva's 1,617 columns one tensor per column made
        a training epoch 30 times slower (docs/benchmarks.md, "Neural models
        on wide data").
        """
        data = tf.data.Dataset.from_tensor_slices((self.model_inputs() if packed else self.features, self.labels))
        if shuffle:
            data = data.shuffle(len(self.labels), seed=seed, reshuffle_each_iteration=True)
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_arrays(patterns: list[str], schema: Schema) -> Arrays:
    """Parses every tf.Example of the shards matching `patterns`, in file order."""
    from trainer.data.dataset import list_files

    files = [path for pattern in patterns for path in list_files(pattern)]
    spec = schema.feature_spec(with_label=True)
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(PARSE_BATCH)
    parts: dict[str, list] = {}
    for batch in records.map(lambda s: tf.io.parse_example(s, spec)).as_numpy_iterator():
        for name, values in batch.items():
            parts.setdefault(name, []).append(values)
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    labels = columns.pop(schema.label)
    return Arrays(columns, labels, tuple(f.name for f in schema.numeric))


def selection_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (train indices, held-out indices), shuffled with `seed`."""
    from sklearn.model_selection import StratifiedKFold

    if int(np.sum(labels == 1)) < folds:
        raise ValueError(f"cross-validation needs at least {folds} minority examples in train + validation")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def objective_value(labels: np.ndarray, scores: np.ndarray, objective: str) -> float:
    """The tuning objective on held-out predictions (sklearn's definitions)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    name, floor = parse_tuning_objective(objective)
    if name == "pr_auc":
        return float(average_precision_score(labels, scores))
    precision, recall, _ = precision_recall_curve(labels, scores)
    reachable = recall[precision >= floor]
    return float(reachable.max()) if reachable.size else 0.0


def predict_margin(model: keras.Model, arrays: Arrays) -> np.ndarray:
    """Single logits s = z1 - z0 [N] of the (member-averaged) prediction."""
    batches = arrays.dataset(PARSE_BATCH, packed=takes_packed_features(model))  # strings need tf.data, not NumPy
    outputs = model.predict(batches, verbose=0)
    logits = np.asarray(ensemble_logits(ops.convert_to_tensor(outputs)))
    return logits[:, 1].astype(np.float64) - logits[:, 0]


class FoldEnsemble(keras.Model):
    """The fold models as one model: raw features -> all members' logits [N, M, 2].

    An MLP contributes one member, a TabM model its k members; the exported
    probability is the mean over all of them (`ensemble_logits`).

    Not Keras-serializable (no `get_config`, not registered), as
    `trainer.candidates.Blend`: it is exported only as a SavedModel.
    """

    def __init__(self, models: list, **kwargs):
        super().__init__(**kwargs)
        self.folds = list(models)

    def call(self, inputs, training=False):
        members = []
        for model in self.folds:
            outputs = model(model_inputs(model, inputs), training=training)
            members.append(ops.expand_dims(outputs, 1) if len(outputs.shape) == 2 else outputs)  # [N, k, 2]
        return ops.concatenate(members, axis=1)  # [N, M, 2]


def fold_ensemble(models: list, schema: Schema) -> keras.Model:
    """The fold models' ensemble, built on the schema's raw feature inputs."""
    ensemble = FoldEnsemble(models, name="fold_ensemble")
    ensemble({name: tensor for name, tensor in _example_inputs(schema).items()})  # builds it
    return ensemble


def _example_inputs(schema: Schema) -> dict:
    return {f.name: tf.constant([0.0] if f.kind == "numeric" else [""]) for f in schema.features}
