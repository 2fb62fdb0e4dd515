"""Blending two candidates: the held-out-best weight, and the served mixture."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.candidates import BLEND_WEIGHTS, Blend, Candidate, blend, held_out_score
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


def test_blend_picks_the_held_out_best_weight_and_serves_the_mixture(rng):
    labels = (rng.random(400) < 0.1).astype(np.int64)
    # Two noisy views of the label with independent noise: their mix ranks better than either.
    first = labels * 1.5 + rng.normal(size=400)
    second = labels * 1.5 + rng.normal(size=400)
    folds = np.array_split(rng.permutation(400), 4)
    chosen, weight = blend(_candidate(first, labels, folds), _candidate(second, labels, folds), RunConfig())

    def mixed(w):
        p = w / (1 + np.exp(-first)) + (1 - w) / (1 + np.exp(-second))
        return np.log(p) - np.log1p(-p)

    expected = max(BLEND_WEIGHTS, key=lambda w: (np.mean([objective_value(labels[f], mixed(w)[f], "pr_auc")
                                                          for f in folds]), -abs(w - 0.5)))
    assert weight == expected and 0 < weight < 1
    assert isinstance(chosen.model, Blend)
    np.testing.assert_allclose(chosen.margins, mixed(weight), rtol=1e-9)
    served = tf.nn.softmax(chosen.model({"row": tf.range(400)})).numpy()[:, 1]
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-mixed(weight))), rtol=1e-4, atol=1e-6)


def test_blend_keeps_one_family_when_the_other_only_adds_noise(rng):
    labels = (rng.random(300) < 0.1).astype(np.int64)
    strong = labels * 4.0 + rng.normal(size=300) * 0.1  # separates perfectly
    noise = rng.normal(size=300)
    chosen, weight = blend(_candidate(noise, labels), _candidate(strong, labels), RunConfig())
    # Weight on `noise`: 0 or 0.25 both keep the perfect ranking; the tie goes to the more even mix.
    assert weight == 0.25 and chosen.score == pytest.approx(1.0)


def test_blend_refuses_candidates_scored_on_different_examples(rng):
    labels = (rng.random(50) < 0.2).astype(np.int64)
    with pytest.raises(ValueError, match="share their held-out examples"):
        blend(_candidate(rng.normal(size=50), labels), _candidate(rng.normal(size=50), 1 - labels), RunConfig())


def test_a_saved_blend_feeds_a_functional_part_its_own_key_order_without_warning(tmp_path, rng):
    # The inputs are declared out of sorted order, as a schema's features are; the
    # SavedModel trace hands the blend sorted keys, and Keras warned until the blend reordered them.
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
