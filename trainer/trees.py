"""Gradient-boosted trees (LightGBM) as a model family, served by plain TensorFlow ops.

LightGBM trains the trees; `GradientBoostedTrees` re-implements LightGBM's
prediction (numerical splits with its missing-value rules) with TensorFlow
gathers, so the exported SavedModel needs no custom op: stock TF Serving,
this package's server and TFMA load it like any other version (docs/design.md,
"Tree family"). Categorical features enter as their vocabulary index (0 =
unseen or missing), the same StringLookup the neural models use.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from trainer.data.schema import Schema

NONE, ZERO, NAN = 0, 1, 2  # LightGBM's missing types
ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold
EARLY_STOPPING_ROUNDS = 50
MAX_ROUNDS = 2000


def import_lightgbm():
    """LightGBM, its OpenMP threads set to sleep rather than spin while they wait for each other.

    libgomp's default lets a waiting thread spin first. When another process
    holds one of the cores (the other pytest worker, a neighbour's job), a
    spinning thread burns the time slice its partner needs: beside two busy
    loops on 2 cores, 2 threads took 1.8 times one thread's time with the
    default and 0.6 times passive (8 times with spinning only, under heavier
    load); idle, passive costs 0.80 against the default's 0.55
    (docs/benchmarks.md, "LightGBM's threads on a shared machine"). libgomp
    reads the policy once, when it is loaded, so it is set before the first
    import; a policy the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import lightgbm

    return lightgbm


def feature_matrix(features: dict, schema: Schema) -> np.ndarray:
    """Raw features ({name: [N]}) -> [N, F] float64: numerics (NaN = missing), category indices."""
    columns = []
    for feature in schema.features:
        values = features[feature.name]
        if feature.kind == "numeric":
            columns.append(np.asarray(values, np.float64))
        else:
            index = {value: i + 1 for i, value in enumerate(feature.vocabulary)}
            columns.append(np.array([index.get(_text(v), 0) for v in values], np.float64))
    return np.stack(columns, axis=1)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class FlatTrees:
    """All trees' nodes in flat arrays; a leaf points to itself with an infinite threshold."""

    feature: np.ndarray  # [M] int32
    threshold: np.ndarray  # [M] float64
    left: np.ndarray  # [M] int32
    right: np.ndarray  # [M] int32
    default_left: np.ndarray  # [M] bool
    missing_type: np.ndarray  # [M] int32
    value: np.ndarray  # [M] float64 (leaf values; 0 for splits)
    roots: np.ndarray  # [T] int32
    depth: int


def flatten(dump: dict) -> FlatTrees:
    """`Booster.dump_model()` -> `FlatTrees`. Only numerical ("<=") splits occur here."""
    nodes: list[list] = []  # [feature, threshold, left, right, default_left, missing_type, value]
    missing_types = {"None": NONE, "Zero": ZERO, "NaN": NAN}

    def add(node: dict, level: int) -> tuple[int, int]:
        index = len(nodes)
        nodes.append([0, np.inf, index, index, True, NONE, 0.0])
        if "leaf_value" in node:
            nodes[index][6] = float(node["leaf_value"])
            return index, level
        if node["decision_type"] != "<=":
            raise ValueError(f"unsupported LightGBM split {node['decision_type']!r}")
        left, left_depth = add(node["left_child"], level + 1)
        right, right_depth = add(node["right_child"], level + 1)
        nodes[index][:6] = [node["split_feature"], float(node["threshold"]), left, right,
                            bool(node["default_left"]), missing_types[node["missing_type"]]]
        return index, max(left_depth, right_depth)

    roots, depth = [], 0
    for tree in dump["tree_info"]:
        root, tree_depth = add(tree["tree_structure"], 0)
        roots.append(root)
        depth = max(depth, tree_depth)
    table = list(zip(*nodes, strict=True))
    return FlatTrees(np.array(table[0], np.int32), np.array(table[1], np.float64), np.array(table[2], np.int32),
                     np.array(table[3], np.int32), np.array(table[4], bool), np.array(table[5], np.int32),
                     np.array(table[6], np.float64), np.array(roots, np.int32), depth)


NODE_ARRAYS = ("feature", "threshold", "left", "right", "default_left", "missing_type", "value", "roots")


class GradientBoostedTrees(keras.Model):
    """Raw features -> logits [N, 2] = [0, LightGBM raw score], in TensorFlow ops.

    Each of `FlatTrees`' node arrays is one non-trainable variable, created
    here: a SavedModel keeps it once, in `variables/`. (Constants gathered
    inside the depth loop were copied into `saved_model.pb` for every level
    and every traced signature, which at 128 leaves x 2,000 rounds heads for
    protobuf's 2 GB limit; tests/test_trees.py bounds the size.)

    Not Keras-serializable (no `get_config`, not registered): it is built
    from a booster and exported only as a SavedModel (trainer/export.py);
    nothing saves or loads it in Keras' format.
    """

    def __init__(self, schema: Schema, trees: FlatTrees, **kwargs):
        super().__init__(**kwargs)
        self.schema, self.depth = schema, trees.depth
        self.lookups = {f.name: layers.StringLookup(vocabulary=list(f.vocabulary) or ["<none>"], num_oov_indices=1)
                        for f in schema.categorical}
        self.nodes = [self.add_weight(shape=getattr(trees, name).shape, dtype=getattr(trees, name).dtype.name,
                                      initializer=_constant(getattr(trees, name)), trainable=False, name=name)
                      for name in NODE_ARRAYS]

    def call(self, features, training=False):
        columns = []
        for feature in self.schema.features:
            value = features[feature.name]
            if feature.kind == "categorical":
                value = tf.cast(self.lookups[feature.name](value), tf.float64)  # 0 = unseen / missing
            columns.append(tf.cast(value, tf.float64))
        x = tf.stack(columns, axis=1)  # [N, F]
        return tf.cast(self.raw_score(x), tf.float32)

    def raw_score(self, x):  # x: [N, F] float64 -> [N, 2]
        # Each variable is read once per call, and the levels are one tf.while_loop rather than a Python loop,
        # so a traced graph's size depends on neither the node count nor the depth (up to 127 at 128 leaves).
        feature, threshold, left, right, default_left, missing_type, leaf, roots = (
            tf.convert_to_tensor(v) for v in self.nodes)

        def descend(node):  # node: [N, T] -> each tree's child on x's path (a leaf stays itself)
            value = tf.gather(x, tf.gather(feature, node), batch_dims=1)  # [N, T]
            kind = tf.gather(missing_type, node)
            is_nan = tf.math.is_nan(value)
            value = tf.where(is_nan & (kind != NAN), tf.zeros_like(value), value)  # NaN -> 0 unless NaN-aware
            missing = ((kind == ZERO) & (tf.abs(value) <= ZERO_THRESHOLD)) | ((kind == NAN) & is_nan)
            go_left = tf.where(missing, tf.gather(default_left, node), value <= tf.gather(threshold, node))
            return (tf.where(go_left, tf.gather(left, node), tf.gather(right, node)),)

        node = tf.tile(roots[None, :], [tf.shape(x)[0], 1])  # [N, T]
        (node,) = tf.while_loop(lambda node: True, descend, (node,), maximum_iterations=self.depth)
        score = tf.reduce_sum(tf.gather(leaf, node), axis=1)  # [N]
        return tf.stack([tf.zeros_like(score), score], axis=1)


def _constant(array: np.ndarray):
    """A Keras initializer returning `array` (shape and dtype already match)."""
    return lambda shape, dtype=None: tf.constant(array)


def fit_trees(train_x: np.ndarray, train_y: np.ndarray, weights: tuple[float, float], params: dict, seed: int,
              valid: tuple[np.ndarray, np.ndarray] | None = None, rounds: int | None = None,
              curve: list | None = None):
    """Trains LightGBM on class-weighted binary log-loss.

    Args:
      train_x, train_y: `feature_matrix` rows and 0/1 labels.
      weights: (w0, w1) per-class example weights (the weighted loss's).
      params: Tree hyperparameters (`trainer.hparams.declare_tree_hparams`).
      seed: LightGBM's seed (deterministic mode).
      valid: Held-out rows for early stopping on average precision.
      rounds: Fixed number of rounds (no early stopping) when `valid` is None.
      curve: When given (with `valid`), receives the held-out average
        precision of every round grown (the report's training curve).

    Returns:
      (booster, rounds used).
    """
    lightgbm = import_lightgbm()

    settings = _settings(params, seed)
    sample_weight = np.where(train_y == 1, weights[1], weights[0])
    dataset = lightgbm.Dataset(train_x, train_y, weight=sample_weight, free_raw_data=False)
    if valid is None:
        booster = lightgbm.train(settings, dataset, num_boost_round=rounds or MAX_ROUNDS)
        return booster, booster.current_iteration()
    held = lightgbm.Dataset(valid[0], valid[1], reference=dataset)
    recorded: dict = {}
    booster = lightgbm.train(settings, dataset, num_boost_round=MAX_ROUNDS, valid_sets=[held], valid_names=["held_out"],
                             callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False),
                                        lightgbm.record_evaluation(recorded)])
    if curve is not None:
        curve.extend(float(v) for v in recorded["held_out"]["average_precision"])
    best = booster.best_iteration or booster.current_iteration()
    return booster, best


def fit_trees_cross_validated(x: np.ndarray, y: np.ndarray, weights: tuple[float, float], params: dict, seed: int,
                              folds: list[tuple[np.ndarray, np.ndarray]], curve: list | None = None):
    """One booster per fold, grown in lockstep and stopped at one shared round count.

    Each fold alone would early-stop on its own held-out rows; with a handful
    of positives per fold that stops after 9-30 rounds (seen on small sets),
    where a plain 300-tree LightGBM does better. Here the round count is the
    one that maximizes the folds' mean held-out average precision (as
    `lightgbm.cv` chooses it, but with unweighted held-out metrics, as
    `fit_trees` uses), with the same patience.

    `curve`, when given, receives the folds' mean held-out average precision
    of every round grown (the report's training curve).

    Returns:
      (boosters, rounds): one booster per fold, and the shared best round count.
    """
    lightgbm = import_lightgbm()

    settings = _settings(params, seed)
    boosters = []
    for train_index, held_index in folds:
        train = lightgbm.Dataset(x[train_index], y[train_index], free_raw_data=False,
                                 weight=np.where(y[train_index] == 1, weights[1], weights[0]))
        booster = lightgbm.Booster(settings, train)
        booster.add_valid(lightgbm.Dataset(x[held_index], y[held_index], reference=train), "held_out")
        boosters.append(booster)
    best_score, best_round = -np.inf, 0
    for round_ in range(1, MAX_ROUNDS + 1):
        scores = []
        for booster in boosters:
            booster.update()
            scores.append(booster.eval_valid()[0][2])  # (name, metric, value, higher is better)
        if curve is not None:
            curve.append(float(np.mean(scores)))
        if np.mean(scores) > best_score:
            best_score, best_round = float(np.mean(scores)), round_
        elif round_ - best_round >= EARLY_STOPPING_ROUNDS:
            break
    return boosters, best_round


def _settings(params: dict, seed: int) -> dict:
    """LightGBM's parameters for the tree hyperparameters; all cores, deterministic."""
    return {"objective": "binary", "learning_rate": params["tree_learning_rate"], "num_leaves": params["num_leaves"],
            "min_data_in_leaf": params["min_child_samples"], "feature_fraction": params["feature_fraction"],
            "bagging_fraction": params["bagging_fraction"], "bagging_freq": 1, "lambda_l2": params["tree_l2"],
            "extra_trees": bool(params.get("extra_trees", False)), "seed": seed, "deterministic": True,
            "num_threads": os.cpu_count() or 1, "verbose": -1, "metric": "average_precision"}


def to_keras(booster, schema: Schema, rounds: int | None = None) -> GradientBoostedTrees:
    """The booster's first `rounds` trees as a TensorFlow model.

    The model keeps the booster's text (`booster_text`): the export writes it
    beside the SavedModel (`trainer.layout.TREES_FILE`), so the evaluation's
    TreeSHAP (LightGBM's `pred_contrib`, evaluation/attributions.py) runs on
    the very trees that are served.
    """
    model = GradientBoostedTrees(schema, flatten(booster.dump_model(num_iteration=rounds)), name="gradient_boosted_trees")
    model.booster_text = booster.model_to_string(num_iteration=rounds)
    return model
