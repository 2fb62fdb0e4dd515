"""Gradient-boosted trees in TensorFlow ops against LightGBM's own prediction."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.data.schema import Feature, Schema
from trainer.trees import GradientBoostedTrees, feature_matrix, fit_trees, flatten, to_keras

PARAMS = {"tree_learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 5, "feature_fraction": 0.9,
          "bagging_fraction": 0.9, "tree_l2": 0.1}


@pytest.fixture(scope="module")
def problem():
    generator = np.random.default_rng(4)
    n = 3000
    x0 = generator.normal(size=n)
    x1 = np.where(generator.random(n) < 0.15, np.nan, generator.normal(size=n))  # missing in training
    x2 = np.round(generator.normal(size=n), 1)  # many exact zeros and ties
    region = generator.choice(["north", "south", "east", ""], size=n, p=[0.5, 0.3, 0.15, 0.05])
    logit = 1.5 * x0 - np.nan_to_num(x1, nan=1.0) + (region == "east") * 2 - 3
    labels = (generator.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    schema = Schema(features=(Feature("x0", "numeric"), Feature("x1", "numeric", missing_fraction=0.15),
                              Feature("x2", "numeric"),
                              Feature("region", "categorical", vocabulary=("north", "south", "east"))),
                    label="target")
    features = {"x0": x0, "x1": x1, "x2": x2, "region": region.astype(object)}
    return schema, features, labels


@pytest.mark.slow  # trains LightGBM
def test_tensorflow_prediction_equals_lightgbm(problem):
    schema, features, labels = problem
    matrix = feature_matrix(features, schema)
    booster, rounds = fit_trees(matrix[:2000], labels[:2000], (0.6, 3.0), PARAMS, seed=0,
                                valid=(matrix[2000:], labels[2000:]))
    model = to_keras(booster, schema, rounds)
    # Unseen rows, with a category never seen and NaN where training had none (x0, x2).
    test = {k: v[2000:].copy() for k, v in features.items()}
    test["region"][:5] = "west"
    test["x0"][5:10] = np.nan
    test["x2"][10:15] = 0.0
    inputs = {k: tf.constant(v.astype(np.float32)) if k != "region" else tf.constant(v.astype(str))
              for k, v in test.items()}
    logits = model(inputs).numpy()
    expected = booster.predict(feature_matrix({k: (v.astype(np.float32).astype(np.float64) if k != "region" else v)
                                               for k, v in test.items()}, schema),
                               raw_score=True, num_iteration=rounds)
    np.testing.assert_allclose(logits[:, 1], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(logits[:, 0], 0.0)


def test_flatten_turns_leaves_into_fixed_points():
    dump = {"tree_info": [{"tree_structure": {"leaf_value": 0.25}},
                          {"tree_structure": {"decision_type": "<=", "split_feature": 1, "threshold": 0.5,
                                              "default_left": False, "missing_type": "NaN",
                                              "left_child": {"leaf_value": -1.0}, "right_child": {"leaf_value": 2.0}}}]}
    trees = flatten(dump)
    assert trees.roots.tolist() == [0, 1] and trees.depth == 1
    model = GradientBoostedTrees(Schema((Feature("a", "numeric"), Feature("b", "numeric")), "y"), trees)
    x = tf.constant([[0.0, 0.1], [0.0, 0.9], [0.0, np.nan]], tf.float64)
    # 0.25 + (-1 if b <= 0.5 else 2); NaN goes right (default_left false).
    np.testing.assert_allclose(model.raw_score(x).numpy()[:, 1], [-0.75, 2.25, 2.25])


@pytest.mark.slow  # trains LightGBM
def test_cross_validated_trees_stop_all_folds_at_the_round_of_best_mean_held_out_precision(problem):
    """Lockstep boosters against LightGBM trained fold by fold with its own per-round held-out metric."""
    import lightgbm
    from sklearn.model_selection import StratifiedKFold

    from trainer.trees import EARLY_STOPPING_ROUNDS, _settings, fit_trees_cross_validated

    schema, features, labels = problem
    matrix = feature_matrix(features, schema)[:1200]
    labels = labels[:1200]
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(matrix, labels))
    weights = (0.6, 3.0)
    boosters, rounds = fit_trees_cross_validated(matrix, labels, weights, PARAMS, 0, folds)
    curves = []
    for train_index, held_index in folds:
        history = {}
        train = lightgbm.Dataset(matrix[train_index], labels[train_index],
                                 weight=np.where(labels[train_index] == 1, weights[1], weights[0]))
        held = lightgbm.Dataset(matrix[held_index], labels[held_index], reference=train)
        lightgbm.train(_settings(PARAMS, 0), train, num_boost_round=400, valid_sets=[held],
                       callbacks=[lightgbm.record_evaluation(history)])
        curves.append(history["valid_0"]["average_precision"])
    mean = np.mean(curves, axis=0)  # [rounds]
    expected = int(np.argmax(mean)) + 1  # the first round of the best mean
    assert rounds == expected and len(boosters) == 3
    assert all(mean[expected - 1] >= mean[r] for r in range(min(expected + EARLY_STOPPING_ROUNDS, 400)))
    for booster in boosters:
        assert booster.current_iteration() >= rounds  # each fold grew at least the shared count


@pytest.mark.slow  # trains LightGBM for 2,000 rounds
def test_trees_at_the_search_edge_export_small_and_predict_as_lightgbm(tmp_path):
    """128 leaves x MAX_ROUNDS trees: saved_model.pb stays small, the served margins are LightGBM's.

    Node arrays kept as constants inside the depth loop made the graph grow
    with depth x nodes x traced signatures (about 1 GB here).
    """
    import os

    import lightgbm

    from trainer.calibration import Calibration
    from trainer.export import ServingModule, export_version
    from trainer.hparams import declare_tree_hparams, with_values
    from trainer.trees import MAX_ROUNDS, _settings

    space = with_values((100, 10), {}).space  # the search space: the largest num_leaves
    leaves = next(p.max_value for p in space if p.name == "num_leaves")
    params = {**declare_tree_hparams(with_values((100, 10), {})), "num_leaves": leaves, "tree_learning_rate": 0.01,
              "min_child_samples": 2, "feature_fraction": 1.0, "bagging_fraction": 1.0}
    generator = np.random.default_rng(0)
    x = generator.normal(size=(600, 4))
    x[generator.random(x.shape) < 0.1] = np.nan
    labels = (generator.random(600) < 1 / (1 + np.exp(-(np.nan_to_num(x[:, 0]) - 2)))).astype(np.int64)
    settings = {**_settings(params, 0), "num_threads": 1}  # one thread: far faster on a busy 2-core machine
    booster = lightgbm.train(settings, lightgbm.Dataset(x, labels), num_boost_round=MAX_ROUNDS)
    trees = flatten(booster.dump_model())
    assert len(trees.roots) == MAX_ROUNDS and len(trees.feature) > 200_000 and trees.depth > 20

    schema = Schema(tuple(Feature(f"x{i}", "numeric") for i in range(4)), "y")
    module = ServingModule(to_keras(booster, schema), schema, Calibration("platt", 1.0, 0.0), threshold=0.5)
    path = export_version(module, str(tmp_path))
    assert os.path.getsize(os.path.join(path, "saved_model.pb")) < 1_000_000

    rows = np.concatenate([x[:200], generator.normal(size=(50, 4))])
    served = tf.saved_model.load(path).signatures["predict_features"](
        **{f"x{i}": tf.constant(rows[:, i], tf.float32) for i in range(4)})["logits"].numpy()
    expected = booster.predict(rows.astype(np.float32).astype(np.float64), raw_score=True)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
