"""Numeric encodings against independent references (NumPy formulas, scikit-learn)."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.preprocessing import QuantileTransformer

from trainer.data.schema import QUANTILE_LEVELS, quantiles
from trainer.encodings import ImputeMissing, Periodic, PiecewiseLinear, QuantileNormal, bin_edges


@pytest.fixture(scope="module")
def columns():
    """Training and unseen values of three continuous features on different scales."""
    generator = np.random.default_rng(3)
    train = np.stack([generator.normal(0, 1, 3000), generator.lognormal(2, 1, 3000),
                      generator.uniform(-50, 50, 3000)], axis=1)
    unseen = np.stack([generator.normal(0, 1.5, 500), generator.lognormal(2, 1.2, 500),
                       generator.uniform(-70, 70, 500)], axis=1)
    return train.astype(np.float32), unseen.astype(np.float32)


def test_quantile_normal_matches_scikit_learn(columns):
    train, unseen = columns
    table = [quantiles(train[:, j].astype(np.float64)) for j in range(train.shape[1])]
    reference = QuantileTransformer(n_quantiles=QUANTILE_LEVELS, output_distribution="normal", subsample=None)
    reference.fit(train.astype(np.float64))
    layer = QuantileNormal(table)
    for values in (train[:500], unseen):
        expected = reference.transform(values.astype(np.float64))
        np.testing.assert_allclose(layer(tf.constant(values)).numpy(), expected, atol=2e-3)
    # Beyond the training range: the clipped tails, as scikit-learn clips them.
    extremes = np.array([[-1e6, -1e6, -1e6], [1e6, 1e6, 1e6]], np.float32)
    np.testing.assert_allclose(layer(tf.constant(extremes)).numpy(), reference.transform(extremes), atol=1e-3)


def test_quantile_normal_ties_take_the_middle_of_their_levels():
    # A point mass: half the training values are exactly 0.
    values = np.concatenate([np.zeros(500), np.linspace(1, 2, 500)])
    table = [quantiles(values)]
    layer = QuantileNormal(table)
    reference = QuantileTransformer(n_quantiles=QUANTILE_LEVELS, output_distribution="normal", subsample=None)
    reference.fit(values.reshape(-1, 1))
    inside = np.array([[0.5], [1.5], [1.999]], np.float32)  # between knots: scikit-learn's value
    np.testing.assert_allclose(layer(tf.constant(inside)).numpy(), reference.transform(inside), atol=2e-3)
    # At the tied minimum this layer uses the middle of the tie (the median level
    # of the point mass, about 0.25) where scikit-learn clips to -5.2: a
    # deliberate difference (docs/design.md), so the mass is not an outlier.
    tied = layer(tf.constant([[0.0]], tf.float32)).numpy()[0, 0]
    expected_level = np.linspace(0, 1, QUANTILE_LEVELS)[np.asarray(table[0]) == 0].mean()
    from scipy.stats import norm

    assert tied == pytest.approx(norm.ppf(expected_level), abs=1e-4)


def _ple_reference(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Gorishniy et al. 2022, eq. 3, one feature: [N] -> [N, T]."""
    bins = edges.size - 1
    out = np.zeros((x.size, bins))
    for t in range(bins):
        lo, hi = edges[t], edges[t + 1]
        for n, value in enumerate(x):
            if value < lo and t > 0:
                out[n, t] = 0.0
            elif value >= hi and t < bins - 1:
                out[n, t] = 1.0
            else:
                out[n, t] = (value - lo) / (hi - lo)
    return out


@pytest.mark.parametrize("bins", [4, 16])
def test_piecewise_linear_matches_the_paper_formula(columns, bins):
    train, unseen = columns
    edges = [bin_edges(np.asarray(quantiles(train[:, j].astype(np.float64))), bins) for j in range(3)]
    # A constant feature gets one bin and a feature with few distinct values fewer bins.
    edges.append(bin_edges(np.asarray(quantiles(np.full(100, 7.0))), bins))
    values = np.concatenate([unseen, np.full((500, 1), 7.5, np.float32)], axis=1)
    values[0, 3] = 6.0
    out = PiecewiseLinear([e.tolist() for e in edges])(tf.constant(values)).numpy()
    width = max(e.size - 1 for e in edges)
    assert out.shape == (500, 4 * width)
    for j, feature_edges in enumerate(edges):
        expected = _ple_reference(values[:, j].astype(np.float64), feature_edges)
        block = out[:, j * width:(j + 1) * width]
        np.testing.assert_allclose(block[:, :expected.shape[1]], expected, rtol=1e-5, atol=1e-5)
        assert not block[:, expected.shape[1]:].any()  # padding stays zero
    assert edges[0].size - 1 == bins and edges[3].tolist() == [7.0, 8.0]


def test_periodic_matches_numpy():
    generator = np.random.default_rng(0)
    x = generator.normal(size=(64, 3)).astype(np.float32)
    layer = Periodic(sigma=0.5, frequencies=4, embedding=5)
    out = layer(tf.constant(x)).numpy()
    c, w, b = (v.numpy() for v in (layer.coefficients, layer.kernel, layer.bias))
    angle = 2 * np.pi * c[None] * x[:, :, None]  # [N, F, k]
    v = np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)
    expected = np.maximum(np.einsum("nfk,fkd->nfd", v, w) + b, 0).reshape(64, -1)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_impute_missing_fills_means_and_flags_only_features_with_missing_training_values():
    x = tf.constant([[np.nan, 1.0, 2.0], [3.0, np.nan, np.nan]], tf.float32)
    filled, indicators = ImputeMissing([10.0, 20.0, 30.0], [True, False, True])(x)
    np.testing.assert_array_equal(filled.numpy(), [[10, 1, 2], [3, 20, 30]])
    np.testing.assert_array_equal(indicators.numpy(), [[1, 0], [0, 1]])
