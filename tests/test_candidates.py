"""Combining candidates: the weighted mean of their probabilities, and the served mixture."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.candidates import Blend, Candidate, combine, held_out_score
from trainer.config import RunConfig
from trainer.crossval import objective_value


class Constant(keras.Model):
    """Logits [N, 2] = [0, s] for a fixed per-row single logit s (a stand-in model)."""

    def __init__(self, margins, **kwargs):
        super().__init__(**kwargs)
        self.margins = tf.constant(margins, tf.float32)

    def call(self, inputs, training=False):
        s = tf.gather(self.margins, tf.cast(inputs["row"], tf.int32))
        return tf.stack([tf.zeros_like(s), s], axis=1)


def _candidate(margins, labels, folds=None):
    return Candidate(Constant(margins), margins, labels, held_out_score(labels, margins, folds, "pr_auc"), {}, {},
                     folds)


def test_combine_mixes_the_members_probabilities_with_their_weights_and_serves_the_mixture(rng):
    labels = (rng.random(400) < 0.1).astype(np.int64)
    # Two noisy views of the label with independent noise.
    first = labels * 1.5 + rng.normal(size=400)
    second = labels * 1.5 + rng.normal(size=400)
    folds = np.array_split(rng.permutation(400), 4)
    chosen = combine([_candidate(first, labels, folds), _candidate(second, labels, folds)], [0.75, 0.25],
                     RunConfig())
    p = 0.75 / (1 + np.exp(-first)) + 0.25 / (1 + np.exp(-second))  # the NumPy reference
    expected = np.log(p) - np.log1p(-p)
    assert isinstance(chosen.model, Blend)
    np.testing.assert_allclose(chosen.margins, expected, rtol=1e-9)
    assert chosen.score == pytest.approx(np.mean([objective_value(labels[f], expected[f], "pr_auc") for f in folds]))
    served = tf.nn.softmax(chosen.model({"row": tf.range(400)})).numpy()[:, 1]
    np.testing.assert_allclose(served, p, rtol=1e-4, atol=1e-6)


def test_combine_returns_a_single_member_as_it_is(rng):
    labels = (rng.random(50) < 0.2).astype(np.int64)
    only = _candidate(rng.normal(size=50), labels)
    assert combine([only], [1.0], RunConfig()) is only


def test_combine_refuses_candidates_scored_on_different_examples(rng):
    labels = (rng.random(50) < 0.2).astype(np.int64)
    with pytest.raises(ValueError, match="share their held-out examples"):
        combine([_candidate(rng.normal(size=50), labels), _candidate(rng.normal(size=50), 1 - labels)], [0.5, 0.5],
                RunConfig())


def test_a_saved_blend_feeds_a_functional_part_its_own_key_order_without_warning(tmp_path, rng):
    # The inputs are declared out of sorted order, as a schema's features may be; the SavedModel
    # trace hands the blend a Keras TrackedDict, and Keras warned until the blend passed a plain dict on.
    names = ["zeta", "alpha", "mid"]
    inputs = {name: keras.Input(shape=(), name=name) for name in names}
    stacked = keras.ops.stack([inputs[name] for name in names], axis=1)  # [N, 3]
    functional = keras.Model(inputs, keras.layers.Dense(2)(stacked))
    features = {name: tf.constant(rng.normal(size=8), tf.float32) for name in sorted(names)}
    model = Blend([functional, functional], [0.25, 0.75])
    expected = model(features).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serve = tf.function(lambda features: {"logits": model(features)})
        specs = {name: tf.TensorSpec([None], tf.float32, name=name) for name in names}
        tf.saved_model.save(model, str(tmp_path / "blend"), signatures=serve.get_concrete_function(specs))
    served = tf.saved_model.load(str(tmp_path / "blend")).signatures["serving_default"](**features)
    np.testing.assert_allclose(served["logits"].numpy(), expected, rtol=1e-6)
