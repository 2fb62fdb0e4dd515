"""Model bodies: encoded features [N, D] -> logits.

- `mlp`: Dense-ReLU-Dropout blocks, two logits [N, 2].
- `linear`: logistic regression on the encoded features (an `mlp` without
  hidden layers), so it exports, calibrates and serves like the others.
- `tabm`: a parameter-efficient ensemble of k MLPs (TabM, Gorishniy et al.
  2024, "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
  Ensembling"): every linear layer is shared by the k members and each member
  has its own BatchEnsemble adapters (input scaling r, output scaling s,
  bias), plus its own output head. Depth 0 is not offered: with no hidden
  layer the members would be k linear models of one input. Logits [N, k, 2]: each member is trained on
  its own loss (see `trainer.losses`), and at inference the members'
  probabilities are averaged (`ensemble_logits`).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

BODIES = ("mlp", "tabm", "linear")


@keras.saving.register_keras_serializable(package="imbalance")
class EnsembleDense(layers.Layer):
    """BatchEnsemble linear layer: [N, k, D] (or shared [N, D]) -> [N, k, U].

    y_i = ((x_i * r_i) W) * s_i + b_i for member i, with W [D, U] shared. On
    a shared input [N, D] (the first layer) there is no r: y_i = (x W) * s_i
    + b_i, so the widest product x W is computed once, not k times (see
    `tabm`). `random_signs` initializes the first adapter with random +-1,
    which is what makes the members differ from the start; others start at 1.
    """

    def __init__(self, units: int, members: int, random_signs: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.members, self.random_signs, self.seed = int(units), int(members), bool(random_signs), seed

    def build(self, input_shape):
        width, self.shared_input = int(input_shape[-1]), len(input_shape) == 2
        signs = keras.initializers.RandomUniform(-1.0, 1.0, seed=self.seed) if self.random_signs else "ones"
        self.kernel = self.add_weight(name="kernel", shape=(width, self.units), initializer="glorot_uniform")
        self.r = None if self.shared_input else self.add_weight(name="r", shape=(self.members, width),
                                                                 initializer=signs)
        self.s = self.add_weight(name="s", shape=(self.members, self.units),
                                 initializer=signs if self.shared_input else "ones")
        self.bias = self.add_weight(name="bias", shape=(self.members, self.units), initializer="zeros")
        if self.random_signs:  # uniform(-1, 1) -> its sign: +-1
            adapter = self.s if self.shared_input else self.r
            adapter.assign(ops.where(adapter >= 0, 1.0, -1.0))

    def call(self, x):
        if self.shared_input:  # x: [N, D]
            return ops.expand_dims(ops.matmul(x, self.kernel), 1) * self.s + self.bias  # [N, k, U]
        return ops.einsum("nkd,du->nku", x * self.r, self.kernel) * self.s + self.bias  # x: [N, k, D]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "members": self.members,
                "random_signs": self.random_signs, "seed": self.seed}


@keras.saving.register_keras_serializable(package="imbalance")
class EnsembleHead(layers.Layer):
    """One linear head per member: [N, k, D] -> [N, k, C], C = 2 logits."""

    def __init__(self, members: int, classes: int = 2, bias_values=(0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.members, self.classes = int(members), int(classes)
        self.bias_values = [float(v) for v in bias_values]

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.members, width, self.classes),
                                      initializer="glorot_uniform")
        bias = keras.initializers.Constant([self.bias_values] * self.members)
        self.bias = self.add_weight(name="bias", shape=(self.members, self.classes), initializer=bias)

    def call(self, x):  # x: [N, k, D]
        return ops.einsum("nkd,kdc->nkc", x, self.kernel) + self.bias  # [N, k, C]

    def get_config(self):
        return {**super().get_config(), "members": self.members, "classes": self.classes,
                "bias_values": self.bias_values}


def mlp(x, depth: int, width: int, dropout: float, output_bias):
    """[N, D] -> logits [N, 2]."""
    for index in range(depth):
        x = layers.Dense(width, activation="relu", name=f"dense_{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout_{index}")(x)
    return layers.Dense(2, bias_initializer=keras.initializers.Constant(output_bias), name="logits")(x)


def tabm(x, depth: int, width: int, dropout: float, output_bias, members: int, seed: int | None = None):
    """[N, D] -> per-member logits [N, k, 2].

    The first layer's member adapter sits on its output (s, random signs)
    rather than its input (TabM's r): the same family of k sub-networks, but
    the product with the widest input (D up to features x bins) is shared, so
    on a CPU the ensemble costs about one MLP plus k small hidden layers.
    """
    for index in range(depth):
        x = EnsembleDense(width, members, random_signs=index == 0, seed=seed, name=f"ensemble_dense_{index}")(x)
        x = layers.ReLU(name=f"relu_{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout_{index}")(x)
    return EnsembleHead(members, bias_values=output_bias, name="logits")(x)


def ensemble_logits(outputs):
    """Model outputs -> logits [N, 2] of the averaged probability.

    [N, 2] passes through; members [N, k, 2] become log(mean_k softmax(z_k)),
    whose softmax is the members' mean probability.
    """
    if len(outputs.shape) == 2:
        return outputs
    members = outputs.shape[1]
    # log mean_k p_k = logsumexp_k(log p_k) - log k, stable where p_k underflows.
    return ops.logsumexp(ops.log_softmax(outputs, axis=-1), axis=1) - math.log(members)  # [N, 2]


def member_view(y_true, y_pred):
    """For a per-member loss: ([N], [N, k, 2]) -> ([N * k], [N * k, 2]); [N, 2] unchanged."""
    if len(y_pred.shape) == 2:
        return y_true, y_pred
    members = y_pred.shape[1]
    labels = ops.repeat(ops.reshape(y_true, (-1, 1)), members, axis=1)  # [N, k]
    return ops.reshape(labels, (-1,)), ops.reshape(y_pred, (-1, y_pred.shape[2]))
