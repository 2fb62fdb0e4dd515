"""tf.data input from the split's TFRecord shards.

Training input (docs/benchmarks.md, "Training input pipeline"): the first
pass reads, decompresses and parses every record once, in parallel chunks,
and caches the parsed columns in memory ([N] per feature); each epoch then
draws one permutation of 0..N-1 and gathers batches from those columns. A
warm epoch therefore costs a few vectorized gathers per batch, instead of a
per-record shuffle buffer and a tf.Example parse of every record again.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.schema import Schema

PARSE_CHUNK = 8192  # records per parse_example call of the first pass
MAX_CHUNKS = 2**16  # chunks joined into one permutable element: 537M examples (beyond, each block is permuted)


def list_files(pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    return files


def make_dataset(pattern: str, schema: Schema, batch_size: int, shuffle: bool = False,
                 seed: int = 0, examples: int | None = None) -> tf.data.Dataset:
    """Batches of (raw features dict, label) from gzipped tf.Example shards.

    Parsed examples are cached in memory after the first pass, so later
    epochs skip file reads, decompression and parsing. With `shuffle`, every
    epoch is a fresh uniform permutation of all examples (deterministic given
    `seed`: the same sequence of permutations in every process, so workers
    that shard the batches agree on them); without, batches come in file
    order.

    Args:
      pattern: Glob of `*.tfrecord.gz` shards.
      schema: Gives the parse spec (absent features become NaN / "").
      batch_size: Examples per batch.
      shuffle: Reshuffle every epoch (training).
      seed: Shuffle seed.
      examples: The number of examples, when known (the split's counts): it
        gives the dataset a cardinality, so Keras knows an epoch's length
        (progress bars, and no "ran out of data" warning after epoch 1).

    Returns:
      A dataset of ({name: [B] tensor}, [B] int64 label).
    """
    records = tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP")
    if examples is not None:
        records = records.apply(tf.data.experimental.assert_cardinality(examples))
    if not shuffle:
        batches = records.batch(batch_size).map(_parser(schema), num_parallel_calls=tf.data.AUTOTUNE).cache()
        return _sharded_by_batch(batches.prefetch(tf.data.AUTOTUNE))
    columns = _parsed_columns(records, schema)
    epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)  # one key per epoch
    batches = tf.data.Dataset.zip(columns, epochs).flat_map(
        lambda parsed, key: _permuted_batches(*parsed, key, batch_size))
    if examples is not None:
        batches = batches.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
    return _sharded_by_batch(batches.prefetch(tf.data.AUTOTUNE))


def _sharded_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker training splits every global batch among the workers (DATA auto-sharding).

    Sharding by file (tf.distribute's first choice) would let each worker
    permute its own files: different step counts per worker (a hang at the end
    of an epoch) and no longer one seeded permutation per epoch.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _parser(schema: Schema):
    spec, label = schema.feature_spec(with_label=True), schema.label

    def parse(serialized):  # serialized: [B] string
        parsed = tf.io.parse_example(serialized, spec)
        return parsed, parsed.pop(label)  # {name: [B]}, [B]

    return parse


def _parsed_columns(records: tf.data.Dataset, schema: Schema) -> tf.data.Dataset:
    """One cached element: every example parsed, ({name: [N]}, [N] labels)."""
    chunks = records.batch(PARSE_CHUNK).map(_parser(schema), num_parallel_calls=tf.data.AUTOTUNE)
    # ragged_batch stacks the chunks (the last one is shorter) as [C, None]; flat_values joins them to [N].
    joined = chunks.ragged_batch(MAX_CHUNKS).map(lambda features, labels: (
        {name: values.flat_values for name, values in features.items()}, labels.flat_values))
    return joined.cache()


def _permuted_batches(features: dict, labels: tf.Tensor, key: tf.Tensor, batch_size: int) -> tf.data.Dataset:
    """The examples in one random order ([N] permutation drawn from `key`), as batches."""
    count = tf.shape(labels, out_type=tf.int64)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([key, 0]))  # [N]

    def gather(index):  # index: scalar batch number
        rows = order[index * batch_size:(index + 1) * batch_size]  # [B]
        return {name: tf.gather(values, rows) for name, values in features.items()}, tf.gather(labels, rows)

    steps = (count + batch_size - 1) // batch_size
    return tf.data.Dataset.range(steps).map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def read_serialized(pattern: str) -> list[bytes]:
    """All serialized tf.Examples of the shards, in file order."""
    return list(tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP").as_numpy_iterator())


def read_labels(pattern: str, schema: Schema) -> np.ndarray:
    """The int64 labels [N] of the shards, in file order."""
    spec = {schema.label: tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP").batch(4096)
    parsed = dataset.map(lambda s: tf.io.parse_example(s, spec)[schema.label])
    return np.concatenate(list(parsed.as_numpy_iterator())) if parsed else np.zeros(0, np.int64)
