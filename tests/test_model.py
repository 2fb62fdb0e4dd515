"""Preprocessing inside the model: eager vs tf.data, missing values, unseen categories."""

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from trainer.data.dataset import make_dataset
from trainer.data.ingest import validate
from trainer.data.prepare import prepare_data
from trainer.data.split import assign_splits
from trainer.hparams import declare_all, with_values
from trainer.model import build_model, model_inputs


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_frame, tiny_csv):
    data = prepare_data(tiny_config(str(tmp_path_factory.mktemp("split") / "run"), tiny_csv, seed=0))
    frame = validate(tiny_frame, "target", None)
    return frame, data.schema, {name: data.pattern(name) for name in ("train", "validation", "test")}


def _eager_inputs(frame, schema, rows):
    inputs = {}
    for feature in schema.features:
        column = frame.features[feature.name].iloc[rows]
        if feature.kind == "numeric":
            inputs[feature.name] = tf.constant(column.to_numpy(np.float32))
        else:
            inputs[feature.name] = tf.constant(column.fillna("").astype(str).to_numpy())
    return inputs


@pytest.mark.slow  # `written` runs the Beam split
def test_eager_and_tf_data_paths_agree(written):
    frame, schema, patterns = written
    tf.keras.utils.set_random_seed(0)
    model = build_model(kt.HyperParameters(), schema)
    features, labels = next(iter(make_dataset(patterns["test"], schema, batch_size=10_000)))
    from_files = model(features, training=False).numpy()
    # The same rows, straight from the DataFrame: the test split in file order is
    # the test rows in their original order (a small file's split keeps file order).
    assignment = assign_splits(frame.labels, (0.7, 0.15, 0.15), seed=0)
    rows = np.nonzero(assignment == 2)[0]
    np.testing.assert_array_equal(labels.numpy(), frame.labels[rows])
    eager = model(model_inputs(model, _eager_inputs(frame, schema, rows)), training=False).numpy()
    np.testing.assert_allclose(from_files, eager, rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # `written` runs the Beam split
def test_missing_numeric_is_imputed_with_the_training_mean(written):
    _, schema, _ = written
    model = build_model(with_values((1000, 100), {"numeric_encoding": "standard"}), schema)
    numeric = [f for f in schema.numeric if f.name == "x1"][0]
    base = {f.name: tf.constant([f.mean] * 2, tf.float32) for f in schema.numeric}
    stacked = tf.stack([base[f.name] for f in schema.numeric], axis=1).numpy()
    index = [f.name for f in schema.numeric].index("x1")
    stacked[1, index] = np.nan
    filled, indicators = model.get_layer("impute_missing")(tf.constant(stacked))
    scaled = model.get_layer("standardize")(filled).numpy()
    np.testing.assert_allclose(scaled[0], scaled[1], atol=1e-6)  # NaN -> mean -> 0 after scaling
    assert indicators.numpy()[0].sum() == 0 and indicators.numpy()[1].sum() == 1  # one indicator set
    assert numeric.missing_fraction > 0


@pytest.mark.slow  # `written` runs the Beam split
def test_unseen_category_goes_to_the_oov_bucket(written):
    _, schema, _ = written
    model = build_model(kt.HyperParameters(), schema)
    lookup = model.get_layer("region_lookup")
    ids = lookup(tf.constant(["never-seen", "", schema.categorical[0].vocabulary[0]])).numpy()
    assert ids[0] == ids[1] == 0 and ids[2] == 1


@pytest.mark.slow  # `written` runs the Beam split
def test_hparams_change_the_architecture(written):
    _, schema, _ = written
    hp = with_values((1000, 100), {"depth": 3, "width": 32, "body": "mlp"})
    model = build_model(hp, schema)
    assert [layer.units for layer in model.layers if layer.name.startswith("dense_")] == [32, 32, 32]
    assert set(declare_all((1000, 100)).values) >= {"depth", "width", "loss", "weight_ratio", "batch_size"}


@pytest.mark.parametrize("shape", [(64, 2), (64, 4, 2)])
def test_minority_log_loss_metric_follows_scikit_learn(shape):
    """The early-stopping log-loss, for single and ensemble (mean-probability) logits."""
    from sklearn.metrics import log_loss

    from trainer.model import MinorityLogLoss

    rng = np.random.default_rng(3)
    logits = rng.normal(size=shape).astype(np.float32)
    labels = (rng.random(shape[0]) < 0.2).astype(np.int64)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # An ensemble predicts its members' mean probability.
    minority = probabilities[..., 1] if len(shape) == 2 else probabilities[..., 1].mean(axis=1)
    metric = MinorityLogLoss()
    metric.update_state(tf.constant(labels), tf.constant(logits))
    assert float(metric.result()) == pytest.approx(log_loss(labels, minority, labels=[0, 1]), rel=1e-4)


def test_the_model_takes_the_numeric_features_as_one_matrix_in_schema_order():
    """Per-feature tensors in any key order are packed into the model's numeric matrix in schema order
    (`model_inputs`); the logits equal a NumPy logistic regression on the standardized columns, the
    missing indicator and the embedding, each read from its own feature."""
    from trainer.data.dataset import NUMERIC_INPUT
    from trainer.data.schema import Feature, Schema

    schema = Schema((Feature("a", "numeric", mean=1.0, std=2.0),
                     Feature("colour", "categorical", vocabulary=("red", "blue")),
                     Feature("b", "numeric", mean=-3.0, std=0.5, missing_fraction=0.1),
                     Feature("c", "numeric", mean=10.0, std=4.0)), "target")
    tf.keras.utils.set_random_seed(4)
    model = build_model(with_values((900, 100), {"body": "linear", "numeric_encoding": "standard",
                                                 "embedding_dim": 4}), schema)
    assert model.numeric_features == ("a", "b", "c") and set(model.input) == {NUMERIC_INPUT, "colour"}
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.random.default_rng(5).normal(size=kernel.shape), bias + 0.25])
    rng = np.random.default_rng(6)
    a, b, c = (rng.normal(size=7).astype(np.float32) * 5 for _ in range(3))
    b[[1, 4]] = np.nan
    colour = np.array(["red", "blue", "green", "", "red", "blue", "red"])
    features = {"c": tf.constant(c), "colour": tf.constant(colour), "b": tf.constant(b), "a": tf.constant(a)}
    logits = model(model_inputs(model, features), training=False).numpy()

    table = model.get_layer("colour_embedding").get_weights()[0]  # ids: 0 out of vocabulary, 1 red, 2 blue
    ids = np.array([{"red": 1, "blue": 2}.get(v, 0) for v in colour])
    filled_b = np.where(np.isnan(b), -3.0, b)
    encoded = np.column_stack([(a - 1.0) / 2.0, (filled_b + 3.0) / 0.5, (c - 10.0) / 4.0, np.isnan(b), table[ids]])
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, encoded @ kernel + bias, rtol=1e-5, atol=1e-5)
    packed = {NUMERIC_INPUT: tf.constant(np.column_stack([a, b, c])), "colour": tf.constant(colour)}
    np.testing.assert_array_equal(model(model_inputs(model, packed), training=False).numpy(), logits)
