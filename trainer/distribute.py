"""tf.distribute for training: the strategy a run trains under.

`mirrored` replicates the model on every local device (GPUs, or logical CPUs)
and all-reduces gradients, via `tf.distribute.MirroredStrategy`. Keras 3 on
the TensorFlow backend creates variables and steps within the strategy when
the model is built and compiled inside its scope; the batch size is the global
batch, split across replicas.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from trainer.config import DISTRIBUTE as STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The strategy for `name`, or None for plain single-device training."""
    if name == "none":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}; use one of {', '.join(STRATEGIES)}")


def check_supported(strategy: tf.distribute.Strategy | None, has_string_features: bool) -> None:
    """Refuses what Keras cannot train across replicas, before any training.

    Keras 3.15's TensorFlow trainer averages a first data batch across
    replicas to build the model (`_maybe_symbolic_build`), which fails on
    string tensors; so categorical features cannot be trained under a
    multi-replica strategy yet.
    """
    from trainer.config import ConfigError

    if strategy is not None and strategy.num_replicas_in_sync > 1 and has_string_features:
        raise ConfigError(
            "--distribute mirrored with several devices supports numeric features only "
            "(Keras 3 cannot average string batches across replicas); train without --distribute"
        )


def strategy_scope(strategy: tf.distribute.Strategy | None):
    """The strategy's scope, or a no-op context without one."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
