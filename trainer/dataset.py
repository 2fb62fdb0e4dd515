"""tf.data input from the split's TFRecord shards."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.schema import Schema

SHUFFLE_BUFFER = 50_000


def list_files(pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    return files


def make_dataset(pattern: str, schema: Schema, batch_size: int, shuffle: bool = False,
                 seed: int = 0, examples: int | None = None) -> tf.data.Dataset:
    """Batches of (raw features dict, label) from gzipped tf.Example shards.

    Serialized records are cached in memory after the first pass, so later
    epochs skip file reads and decompression; parsing is vectorized per batch.

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
    spec = schema.feature_spec(with_label=True)
    label = schema.label

    def parse(serialized):  # serialized: [B] string
        parsed = tf.io.parse_example(serialized, spec)
        return parsed, parsed.pop(label)

    records = tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP").cache()
    if examples is not None:
        records = records.apply(tf.data.experimental.assert_cardinality(examples))
    if shuffle:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    return records.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_serialized(pattern: str) -> list[bytes]:
    """All serialized tf.Examples of the shards, in file order."""
    return list(tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP").as_numpy_iterator())


def read_labels(pattern: str, schema: Schema) -> np.ndarray:
    """The int64 labels [N] of the shards, in file order."""
    spec = {schema.label: tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(list_files(pattern), compression_type="GZIP").batch(4096)
    parsed = dataset.map(lambda s: tf.io.parse_example(s, spec)[schema.label])
    return np.concatenate(list(parsed.as_numpy_iterator())) if parsed else np.zeros(0, np.int64)
