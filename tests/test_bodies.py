"""TabM ensemble against separate MLPs; member-averaged logits and per-member losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import bodies
from trainer.losses import FocalLoss, LogitAdjustedLoss, WeightedCrossEntropy


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def tabm_model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input(shape=(6,))
    outputs = bodies.tabm(inputs, depth=2, width=7, dropout=0.0, output_bias=[-0.1, -2.0], members=4)
    model = keras.Model(inputs, outputs)
    # Move adapters and biases away from their initial values so every one matters.
    generator = np.random.default_rng(0)
    for weight in model.weights:
        if weight.name in ("r", "bias") or weight.path.endswith("ensemble_dense_1/s"):
            weight.assign(generator.normal(size=weight.shape).astype(np.float32))
    return model


def test_tabm_members_equal_separate_mlps_with_the_same_weights(tabm_model):
    x = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
    out = tabm_model(x).numpy()  # [N, k, 2]
    layer0, layer1 = tabm_model.get_layer("ensemble_dense_0"), tabm_model.get_layer("ensemble_dense_1")
    head = tabm_model.get_layer("logits")
    assert layer0.r is None and set(np.unique(layer0.s.numpy())) <= {-1.0, 1.0}  # random-sign first adapter
    for member in range(4):
        hidden = x
        for layer in (layer0, layer1):
            w, s, b = (v.numpy() for v in (layer.kernel, layer.s, layer.bias))
            r = layer.r.numpy() if layer.r is not None else np.ones((4, w.shape[0]), np.float32)
            # Member i is an ordinary dense layer with kernel diag(r_i) W diag(s_i) and bias b_i.
            kernel = r[member][:, None] * w * s[member][None, :]
            hidden = np.maximum(hidden @ kernel + b[member], 0.0)
        logits = hidden @ head.kernel.numpy()[member] + head.bias.numpy()[member]
        np.testing.assert_allclose(out[:, member], logits, rtol=1e-4, atol=1e-5)


def test_ensemble_logits_average_the_members_probabilities():
    z = np.random.default_rng(2).normal(scale=5.0, size=(9, 3, 2)).astype(np.float32)
    combined = bodies.ensemble_logits(tf.constant(z)).numpy()
    np.testing.assert_allclose(_softmax(combined), _softmax(z).mean(axis=1), rtol=1e-5, atol=1e-6)
    flat = z[:, 0]
    np.testing.assert_array_equal(bodies.ensemble_logits(tf.constant(flat)).numpy(), flat)


@pytest.mark.parametrize("loss", [WeightedCrossEntropy((0.6, 3.0)), FocalLoss((0.6, 3.0)),
                                  LogitAdjustedLoss((0.9, 0.1), weights=(0.6, 3.0))])
def test_each_member_is_trained_on_its_own_loss(loss):
    generator = np.random.default_rng(3)
    z = generator.normal(size=(10, 4, 2)).astype(np.float32)
    y = generator.integers(0, 2, size=10)
    member_losses = [float(loss(tf.constant(y), tf.constant(z[:, m]))) for m in range(4)]
    assert float(loss(tf.constant(y), tf.constant(z))) == pytest.approx(np.mean(member_losses), rel=1e-5)


def test_mlp_body_keeps_two_logits_and_the_prior_bias():
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, bodies.mlp(inputs, depth=1, width=4, dropout=0.0, output_bias=[-0.05, -3.0]))
    assert model.output.shape == (None, 2)
    np.testing.assert_allclose(model.get_layer("logits").bias.numpy(), [-0.05, -3.0])
