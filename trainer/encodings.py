"""Numeric feature encodings, built from the training split's statistics.

Every layer takes imputed numeric features [N, F] (no NaN) and holds what it
learned from the training split (means, standard deviations, quantiles, bin
edges) as constants in its config, so the exported SavedModel needs no Python
at serving time and training and serving cannot drift.

- `standard`: (x - mean) / std.
- `quantile_normal`: the empirical CDF of the training split, then the normal
  quantile function, as scikit-learn's `QuantileTransformer(output_distribution
  ="normal")` computes it (docs/design.md §4).
- `ple`: piecewise-linear encoding over equal-frequency bins (Gorishniy et al.
  2022, "On Embeddings for Numerical Features in Tabular Deep Learning").
- `periodic`: trainable periodic embeddings of the standardized value
  followed by a per-feature linear layer and ReLU ("PLR", same paper).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

NUMERIC_ENCODINGS = ("standard", "quantile_normal", "ple", "periodic")
QUANTILE_CLIP = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: keeps the normal quantile finite
PERIODIC_FREQUENCIES = 16
PERIODIC_EMBEDDING = 8


@keras.saving.register_keras_serializable(package="imbalance")
class ImputeMissing(layers.Layer):
    """NaN -> the training mean; optionally appends 0/1 missing indicators.

    Returns (filled [N, F], indicators [N, M]) where M counts the features
    that had missing values in training (M may be 0).
    """

    def __init__(self, means, indicator_mask, **kwargs):
        super().__init__(**kwargs)
        self.means = [float(v) for v in means]
        self.indicator_mask = [bool(v) for v in indicator_mask]
        self._indicator_index = [i for i, flag in enumerate(self.indicator_mask) if flag]

    def call(self, x):  # x: [N, F] float32, NaN = missing
        missing = ops.isnan(x)  # [N, F]
        filled = ops.where(missing, ops.convert_to_tensor(self.means, dtype=x.dtype), x)
        if not self._indicator_index:
            return filled, ops.zeros((ops.shape(x)[0], 0), dtype=x.dtype)
        return filled, ops.take(ops.cast(missing, x.dtype), self._indicator_index, axis=1)  # [N, M]

    def get_config(self):
        return {**super().get_config(), "means": self.means, "indicator_mask": self.indicator_mask}


@keras.saving.register_keras_serializable(package="imbalance")
class Standardize(layers.Layer):
    """(x - mean) / std per feature: [N, F] -> [N, F]."""

    def __init__(self, means, stds, **kwargs):
        super().__init__(**kwargs)
        self.means = [float(v) for v in means]
        self.stds = [float(v) for v in stds]

    def call(self, x):
        means = ops.convert_to_tensor(self.means, dtype=x.dtype)  # [F]
        return (x - means) / ops.convert_to_tensor(self.stds, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "means": self.means, "stds": self.stds}


def quantile_knots(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct quantile values with the CDF levels they span.

    For quantiles q_0..q_{L-1} at levels l_i = i / (L - 1), a value repeated
    over levels l_a..l_b is one knot with left level l_a and right level l_b.
    Between two knots the CDF runs linearly from the right level of the lower
    to the left level of the upper; at a knot it is the middle of its span
    (scikit-learn's average of the forward and backward interpolation).

    Returns:
      (knots [K], left [K], right [K]) in float32, float64, float64.
    """
    values = np.asarray(quantiles, dtype=np.float32)
    levels = np.linspace(0.0, 1.0, values.size)
    knots, first, counts = np.unique(values, return_index=True, return_counts=True)
    return knots, levels[first], levels[first + counts - 1]


@keras.saving.register_keras_serializable(package="imbalance")
class QuantileNormal(layers.Layer):
    """Empirical CDF of the training split, then the standard normal quantile.

    [N, F] -> [N, F]. Values at or beyond the training extremes map to the
    clipped tails (about +-5.2), as in scikit-learn.
    """

    def __init__(self, quantiles, **kwargs):
        super().__init__(**kwargs)
        self.quantiles = [[float(v) for v in row] for row in quantiles]  # [F][L]
        knots, lefts, rights = zip(*(quantile_knots(np.asarray(row)) for row in self.quantiles), strict=True)
        width = max(k.size for k in knots)
        # Pad every feature to the same number of knots with +inf (never reached).
        self._knots = np.stack([np.pad(k, (0, width - k.size), constant_values=np.inf) for k in knots])  # [F, K]
        self._left = np.stack([np.pad(v, (0, width - v.size), constant_values=1.0) for v in lefts]).astype(np.float32)
        self._right = np.stack([np.pad(v, (0, width - v.size), constant_values=1.0) for v in rights]).astype(np.float32)

    def call(self, x):  # x: [N, F]
        knots = tf.constant(self._knots)  # [F, K]
        values = tf.transpose(x)  # [F, N]
        index = tf.searchsorted(knots, values, side="right") - 1  # [F, N]: knots[index] <= x < knots[index + 1]
        below = index < 0
        lower = tf.maximum(index, 0)
        upper = tf.minimum(lower + 1, knots.shape[1] - 1)
        k_lo, k_hi = tf.gather(knots, lower, batch_dims=1), tf.gather(knots, upper, batch_dims=1)
        left, right = tf.constant(self._left), tf.constant(self._right)
        r_lo, l_hi = tf.gather(right, lower, batch_dims=1), tf.gather(left, upper, batch_dims=1)
        at_knot = (tf.gather(left, lower, batch_dims=1) + r_lo) / 2.0
        finite_gap = tf.math.is_finite(k_hi) & (upper > lower)
        step = tf.where(finite_gap, (values - k_lo) / tf.where(finite_gap, k_hi - k_lo, 1.0), 0.0)
        between = r_lo + step * (l_hi - r_lo)  # above the last knot: r_lo = 1
        cdf = tf.where(below, 0.0, tf.where(values == k_lo, at_knot, between))  # [F, N]
        # float64: 1 - 1e-7 is not representable in float32 (the upper tail would be 5.17, not 5.20).
        cdf = tf.clip_by_value(tf.cast(cdf, tf.float64), QUANTILE_CLIP, 1.0 - QUANTILE_CLIP)
        return tf.cast(tf.transpose(tf.math.ndtri(cdf)), x.dtype)  # [N, F]

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles}


def bin_edges(quantiles: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bin edges from the stored quantiles: at most `bins` bins.

    Every ((L - 1) / bins)-th quantile, duplicates removed; a constant feature
    gets the single bin [v, v + 1].
    """
    values = np.asarray(quantiles, dtype=np.float64)
    stride = max((values.size - 1) // bins, 1)
    edges = np.unique(values[::stride].tolist() + [values[-1]])
    return edges if edges.size >= 2 else np.array([edges[0], edges[0] + 1.0])


@keras.saving.register_keras_serializable(package="imbalance")
class PiecewiseLinear(layers.Layer):
    """Piecewise-linear encoding: [N, F] -> [N, F * T].

    For feature edges b_0 < ... < b_T and bin t (1-based), the component is
    0 if x < b_{t-1} (t > 1), 1 if x >= b_t (t < T), else
    (x - b_{t-1}) / (b_t - b_{t-1}); so the first bin extends below b_0 and the
    last above b_T (Gorishniy et al. 2022, eq. 3). Features with fewer bins
    than T are padded with zeros.
    """

    def __init__(self, edges, **kwargs):
        super().__init__(**kwargs)
        self.edges = [[float(v) for v in row] for row in edges]  # [F][T_f + 1]
        bins = max(len(row) - 1 for row in self.edges)
        lo, hi = np.zeros((len(self.edges), bins), np.float32), np.ones((len(self.edges), bins), np.float32)
        valid, not_first, not_last = (np.zeros((len(self.edges), bins), bool) for _ in range(3))
        for f, row in enumerate(self.edges):
            count = len(row) - 1
            lo[f, :count], hi[f, :count] = row[:-1], row[1:]
            valid[f, :count] = True
            not_first[f, 1:count] = True
            not_last[f, :count - 1] = True
        self._lo, self._width = lo, hi - lo
        self._valid, self._not_first, self._not_last = valid, not_first, not_last

    def call(self, x):  # x: [N, F]
        ratio = (x[:, :, None] - self._lo) / self._width  # [N, F, T]
        ratio = ops.where(self._not_first, ops.maximum(ratio, 0.0), ratio)
        ratio = ops.where(self._not_last, ops.minimum(ratio, 1.0), ratio)
        ratio = ops.where(self._valid, ratio, 0.0)
        return ops.reshape(ratio, (-1, ratio.shape[1] * ratio.shape[2]))  # [N, F * T]

    def get_config(self):
        return {**super().get_config(), "edges": self.edges}


@keras.saving.register_keras_serializable(package="imbalance")
class Periodic(layers.Layer):
    """Periodic embeddings + per-feature linear + ReLU ("PLR"): [N, F] -> [N, F * d].

    v = [sin(2 pi c x), cos(2 pi c x)] with trainable frequencies c [F, k]
    initialized from N(0, sigma^2); then ReLU(v W_f + b_f) per feature.
    """

    def __init__(self, sigma=1.0, frequencies=PERIODIC_FREQUENCIES, embedding=PERIODIC_EMBEDDING, **kwargs):
        super().__init__(**kwargs)
        self.sigma, self.frequencies, self.embedding = float(sigma), int(frequencies), int(embedding)

    def build(self, input_shape):
        features = int(input_shape[-1])
        self.coefficients = self.add_weight(
            name="coefficients", shape=(features, self.frequencies),
            initializer=keras.initializers.RandomNormal(stddev=self.sigma))
        self.kernel = self.add_weight(name="kernel", shape=(features, 2 * self.frequencies, self.embedding),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(features, self.embedding), initializer="zeros")

    def call(self, x):  # x: [N, F]
        angle = 2.0 * math.pi * self.coefficients[None] * x[:, :, None]  # [N, F, k]
        periodic = ops.concatenate([ops.sin(angle), ops.cos(angle)], axis=-1)  # [N, F, 2k]
        embedded = ops.relu(ops.einsum("nfk,fkd->nfd", periodic, self.kernel) + self.bias)  # [N, F, d]
        return ops.reshape(embedded, (-1, embedded.shape[1] * embedded.shape[2]))  # [N, F * d]

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "frequencies": self.frequencies,
                "embedding": self.embedding}


def encode_numeric(stacked, numeric, encoding: str, bins: int = 16, sigma: float = 1.0):
    """Raw numeric features [N, F] (NaN = missing) -> encoded [N, D].

    Args:
      stacked: The raw numeric inputs, one column per schema feature.
      numeric: The schema's numeric `Feature`s (means, stds, quantiles).
      encoding: One of `NUMERIC_ENCODINGS`.
      bins: Maximum bins per feature for `ple`.
      sigma: Initial frequency scale for `periodic`.
    """
    if encoding not in NUMERIC_ENCODINGS:
        raise ValueError(f"unknown numeric encoding {encoding!r}; choose from {', '.join(NUMERIC_ENCODINGS)}")
    if encoding in ("quantile_normal", "ple") and any(not f.quantiles for f in numeric):
        raise ValueError(f"the {encoding} encoding needs quantiles in the schema: prepare the data again")
    filled, indicators = ImputeMissing([f.mean for f in numeric], [f.missing_fraction > 0 for f in numeric],
                                       name="impute_missing")(stacked)
    if encoding == "quantile_normal":
        encoded = QuantileNormal([f.quantiles for f in numeric], name="quantile_normal")(filled)
    elif encoding == "ple":
        edges = [bin_edges(np.asarray(f.quantiles), bins).tolist() for f in numeric]
        encoded = PiecewiseLinear(edges, name="piecewise_linear")(filled)
    else:
        encoded = Standardize([f.mean for f in numeric], [f.std for f in numeric], name="standardize")(filled)
        if encoding == "periodic":
            encoded = Periodic(sigma, name="periodic")(encoded)
    return layers.Concatenate(name="numeric_encoded")([encoded, indicators])
