"""tf.distribute for training: the strategy a run trains under.

`mirrored` replicates the model on every local device (GPUs, or logical CPUs)
and all-reduces gradients, via `tf.distribute.MirroredStrategy`.
`multi_worker` does the same across processes, one per worker, via
`tf.distribute.MultiWorkerMirroredStrategy`: TensorFlow's own cluster resolver
reads the cluster and this process's task from the `TF_CONFIG` environment
variable (docs/scaling.md, "Multi-worker training"); nothing in this package
reads it. Keras 3 on the TensorFlow backend creates variables and steps within
the strategy when the model is built and compiled inside its scope; the batch
size is the global batch, split across replicas.

Categorical features: Keras 3.15's TensorFlow trainer averages a first data
batch across replicas to build the model (`_maybe_symbolic_build`), which
fails on string tensors (and, under `MultiWorkerMirroredStrategy`, on any
dict of features). Under a multi-replica strategy the model is therefore
trained on vocabulary ids: the model's own `StringLookup` layers run in the
input pipeline (`vocabulary_ids`) and the fit is on a view of the same layers
that starts at the ids (`trainer.model.with_vocabulary_ids`); and Keras builds
the training state from the batches' spec instead of an averaged batch
(`build_from_spec`). The exported model is the original one, raw strings in.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile

import tensorflow as tf

from trainer.config import DISTRIBUTE as STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The strategy for `name`, or None for plain single-device training.

    `multi_worker` must be created before TensorFlow runs any op in this
    process (it configures the collective ops), and only once: it is cached.
    """
    if name == "none":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return _multi_worker()
    raise ValueError(f"unknown distribution strategy {name!r}; use one of {', '.join(STRATEGIES)}")


@functools.cache
def _multi_worker() -> tf.distribute.Strategy:
    # TFConfigClusterResolver (TensorFlow's default) reads TF_CONFIG.
    return tf.distribute.MultiWorkerMirroredStrategy()


def check_supported(strategy: tf.distribute.Strategy | None, has_string_features: bool = False) -> None:
    """Refuses a multi-worker strategy without a cluster, before any training.

    Without `TF_CONFIG`, `MultiWorkerMirroredStrategy` silently trains alone;
    asking for `multi_worker` then is a mistake worth one clear line.
    Categorical (string) features are supported under every strategy (see the
    module docstring), hence `has_string_features` no longer refuses anything.
    """
    from trainer.config import ConfigError

    del has_string_features  # kept for callers: strings train through vocabulary ids
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and worker_count(strategy) < 2:
        raise ConfigError("--distribute multi_worker needs TF_CONFIG naming a cluster of at least two tasks "
                          "and this process's task (docs/scaling.md)")


def worker_count(strategy: tf.distribute.Strategy | None) -> int:
    """The number of processes training together (1 without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(sum(len(tasks) for name, tasks in spec.items() if name in ("chief", "worker")), 1)


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """True for the process that writes the run's outputs: the `chief` task, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def output_dir_of(strategy: tf.distribute.Strategy | None, run_dir: str):
    """Where this process writes: `run_dir` for the chief, else a temporary directory.

    Every worker must run the same steps as the chief, exporting included
    (saving reads synchronized variables with collective ops), so the others
    write to a scratch directory that is removed afterwards (Keras'
    multi-worker guide).
    """
    if is_chief(strategy):
        yield run_dir
        return
    scratch = tempfile.mkdtemp(prefix=f"imbalance-worker-{strategy.cluster_resolver.task_id}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def replicated() -> bool:
    """True inside the scope of a strategy with more than one replica."""
    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1


def vocabulary_ids(dataset: tf.data.Dataset, lookups: dict) -> tf.data.Dataset:
    """Replaces each categorical feature's strings [B] by its vocabulary ids [B] int64.

    Args:
      dataset: Batches of ({name: [B]}, [B] labels).
      lookups: {feature name: the model's `StringLookup` layer}.
    """
    def to_ids(features, labels):
        return {name: lookups[name](values) if name in lookups else values
                for name, values in features.items()}, labels

    return dataset.map(to_ids, num_parallel_calls=tf.data.AUTOTUNE)


def build_from_spec(model, element_spec) -> None:
    """Makes Keras build `model`'s training state from the batches' spec, not from a batch.

    Keras 3.15's TensorFlow trainer builds under a strategy by first averaging
    a real batch across replicas (`_maybe_symbolic_build`, which only needs
    shapes and dtypes): that fails on strings, and under
    `MultiWorkerMirroredStrategy` on any dict of features (its `reduce` takes
    no nested structures). The spec of the batches gives the same shapes and
    dtypes without touching the data. Private Keras API: recheck on upgrades
    (tests/test_distribute.py and tests/test_multi_worker.py fail if it breaks).

    Args:
      model: The model about to be fitted, inside its strategy's scope.
      element_spec: The training dataset's `element_spec`, ({name: spec}, label spec).
    """
    def build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    model._maybe_symbolic_build = build
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _vector_logs(model)


def _vector_logs(model) -> None:
    """Step logs as [1] vectors, which Keras' multi-worker reduction can average.

    Keras 3.15 reduces each step's logs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar
    metric values (tensorflow/tensorflow#72388); a [1] vector per replica
    averages to the same scalar.
    """
    def vectors(step):
        def wrapped(data):
            return {name: tf.reshape(value, [1]) for name, value in step(data).items()}  # each [1]
        return wrapped

    model.train_step, model.test_step = vectors(model.train_step), vectors(model.test_step)


def strategy_scope(strategy: tf.distribute.Strategy | None):
    """The strategy's scope, or a no-op context without one."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
