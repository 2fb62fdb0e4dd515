"""tf.data input from the split's TFRecord shards: cached in memory when small, streamed when large.

Which path runs is decided from the schema and the example count alone
(`caches`): the parsed split's estimated size (`parsed_bytes`: 4 bytes per
numeric value, 32 per string, 8 per label) against `CACHE_BUDGET_BYTES`
(256 MiB, about 1.8M examples of the synthetic set's 15 features). A constant,
not a share of this machine's memory, because the two paths give the
examples in different orders: the same run must train on the same sequence
on any machine, and every multi-worker worker must take the same path.

Cached (docs/benchmarks.md, "Training input pipeline"): the first pass
reads, decompresses and parses every record once, in parallel chunks, and
caches the parsed columns in memory ([N] per feature); each epoch then draws
one permutation of 0..N-1 and gathers batches from those columns. A warm
epoch therefore costs a few vectorized gathers per batch, instead of a
per-record shuffle buffer and a tf.Example parse of every record again.

Streamed (above the budget; memory does not grow with N): every epoch reads
the shards in a seeded order, `READ_CYCLE` of them interleaved in parallel,
through a shuffle buffer of at most `SHUFFLE_BUFFER_BYTES` of serialized
records (`SHUFFLE_RECORDS` at most), then batches, parses per batch and
prefetches. Every example once per epoch, reshuffled every epoch,
deterministic given the seed; the order is a windowed shuffle, not a uniform
permutation (a split whose shards are each sorted by label or time mixes
only within `READ_CYCLE` shards and the buffer). Evaluation batches (no
shuffle) are likewise cached parsed below the budget and re-read in file
order above it.

Every path yields the model's input structure (`pack_features`): the
numeric features as one [B, F] matrix under `NUMERIC_INPUT`, in schema
order, and each categorical feature as its own [B] strings. One tensor per
numeric feature cost every step, trace and prediction a thousand tiny
tensors on wide data (docs/benchmarks.md, "Neural models on wide data").

Both paths are sharded by batch under `tf.distribute` (`_sharded_by_batch`):
every worker reads the whole split in the same seeded order and keeps its
share of each global batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.data.schema import NUMERIC_INPUT, Schema

PARSE_CHUNK = 8192  # records per parse_example call of the first pass
MAX_CHUNKS = 2**16  # chunks joined into one permutable element: 537M examples (beyond, each block is permuted)
CACHE_BUDGET_BYTES = 256 * 2**20  # estimated parsed bytes of a split up to which it is cached in memory
STRING_BYTES = 32  # a parsed tf.string value: its 24-byte tstring plus a short payload
# Streamed: the shuffle buffer holds at most SHUFFLE_BUFFER_BYTES (estimated) of serialized records, at most
# SHUFFLE_RECORDS of them. Every epoch's iterator allocates a fresh buffer record by record, and glibc keeps
# freed memory in per-thread arenas: with 131,072 records the training process's peak grew by ~1 buffer per
# epoch for the first few epochs (531k rows: 1,026 MiB after 1 epoch, 1,160-1,200 after 4-8), with 32,768
# by 38 MiB over 8 epochs (docs/scaling.md, "Training input").
SHUFFLE_BUFFER_BYTES = 16 * 2**20
SHUFFLE_RECORDS = 32_768
READ_CYCLE = 16  # streamed: shards read at once (interleaved, in parallel)


def pack_features(features: dict, numeric: list[str] | tuple[str, ...]) -> dict:
    """Raw features {name: [N]} -> the model's inputs: {NUMERIC_INPUT: [N, F], categorical name: [N]}.

    `numeric` names the numeric features in schema order (the matrix's
    columns); without numeric features there is no matrix. Features already
    packed are returned as they are.
    """
    if not numeric or NUMERIC_INPUT in features:
        return dict(features)
    columns = set(numeric)
    packed = {NUMERIC_INPUT: tf.stack([features[name] for name in numeric], axis=1)}  # [N, F]
    packed.update({name: values for name, values in features.items() if name not in columns})
    return packed


def list_files(pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    return files


def parsed_bytes(schema: Schema, examples: int) -> int:
    """Estimated memory of `examples` parsed examples held as columns (the cache)."""
    per_example = sum(4 if f.kind == "numeric" else STRING_BYTES for f in schema.features) + 8
    return examples * per_example


def caches(schema: Schema, examples: int | None, budget: int | None = None) -> bool:
    """Whether `make_dataset` caches the parsed split in memory (True) or streams it.

    `budget` defaults to `CACHE_BUDGET_BYTES` (read at call time). An unknown
    count caches (the behaviour before streaming): the training and
    validation inputs of `trainer.train` always pass the split's count.
    """
    budget = CACHE_BUDGET_BYTES if budget is None else budget
    return examples is None or parsed_bytes(schema, examples) <= budget


def make_dataset(pattern: str, schema: Schema, batch_size: int, shuffle: bool = False,
                 seed: int = 0, examples: int | None = None, cache: bool | None = None) -> tf.data.Dataset:
    """Batches of (raw features dict, label) from gzipped tf.Example shards.

    Cached (`caches(schema, examples)`, or `cache=True`): parsed examples
    are kept in memory after the first pass, so later epochs skip file
    reads, decompression and parsing; with `shuffle`, every epoch is a fresh
    uniform permutation of all examples. Streamed (above the budget, or
    `cache=False`): every epoch reads, shuffles through a bounded buffer and
    parses again, in constant memory. Either way the sequence of epochs is
    deterministic given `seed` (the same in every process, so workers that
    shard the batches agree on them); without `shuffle`, batches come in
    file order.

    Args:
      pattern: Glob of `*.tfrecord.gz` shards.
      schema: Gives the parse spec (absent features become NaN / "").
      batch_size: Examples per batch.
      shuffle: Reshuffle every epoch (training).
      seed: Shuffle seed.
      examples: The number of examples, when known (the split's counts): it
        gives the dataset a cardinality, so Keras knows an epoch's length
        (progress bars, and no "ran out of data" warning after epoch 1), and
        decides between caching and streaming.
      cache: Force the cached (True) or streamed (False) path; None decides
        by `caches(schema, examples)`.

    Returns:
      A dataset of (the model's inputs, `pack_features`: {NUMERIC_INPUT:
      [B, F], categorical name: [B]}; [B] int64 label).
    """
    files = list_files(pattern)
    cached = caches(schema, examples) if cache is None else cache
    if shuffle and not cached:
        return _sharded_by_batch(_streamed_batches(files, schema, batch_size, seed, examples))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if examples is not None:
        records = records.apply(tf.data.experimental.assert_cardinality(examples))
    if not shuffle:
        batches = records.batch(batch_size).map(_parser(schema), num_parallel_calls=tf.data.AUTOTUNE)
        return _sharded_by_batch((batches.cache() if cached else batches).prefetch(tf.data.AUTOTUNE))
    columns = _parsed_columns(records, schema)
    epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)  # one key per epoch
    has_numeric = bool(schema.numeric)
    batches = tf.data.Dataset.zip(columns, epochs).flat_map(
        lambda parsed, key: _permuted_batches(*parsed, key, batch_size, has_numeric))
    if examples is not None:
        batches = batches.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
    return _sharded_by_batch(batches.prefetch(tf.data.AUTOTUNE))


def shuffle_records(schema: Schema) -> int:
    """Records in the streamed path's shuffle buffer: `SHUFFLE_BUFFER_BYTES` of them, at most `SHUFFLE_RECORDS`.

    A serialized tf.Example repeats every feature's name; ~16 bytes of framing
    and value per feature on top (strings: their text) is the estimate.
    """
    record = sum(len(f.name) + 16 for f in schema.features) + len(schema.label) + 16
    return max(1, min(SHUFFLE_RECORDS, SHUFFLE_BUFFER_BYTES // record))


def _streamed_batches(files: list[str], schema: Schema, batch_size: int, seed: int,
                      examples: int | None) -> tf.data.Dataset:
    """Every epoch: the shards in a seeded order, interleaved, shuffled in a bounded buffer, batched, parsed."""
    order = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = order.interleave(lambda name: tf.data.TFRecordDataset(name, compression_type="GZIP"),
                               cycle_length=min(len(files), READ_CYCLE), block_length=1,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if examples is not None:
        records = records.apply(tf.data.experimental.assert_cardinality(examples))
    records = records.shuffle(shuffle_records(schema), seed=seed + 1, reshuffle_each_iteration=True)
    batches = records.batch(batch_size).map(_parser(schema), num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def _sharded_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker training splits every global batch among the workers (DATA auto-sharding).

    Sharding by file (tf.distribute's first choice) would let each worker
    permute its own files: different step counts per worker (a hang at the end
    of an epoch) and no longer one seeded permutation per epoch.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _parser(schema: Schema, packed: bool = True):
    """Serialized tf.Examples [B] -> (the model's inputs, `pack_features`; or {name: [B]} unpacked, [B] labels)."""
    spec, label = schema.feature_spec(with_label=True), schema.label
    numeric = [f.name for f in schema.numeric] if packed else []

    def parse(serialized):  # serialized: [B] string
        parsed = tf.io.parse_example(serialized, spec)
        labels = parsed.pop(label)
        return pack_features(parsed, numeric), labels  # features, [B]

    return parse


def _parsed_columns(records: tf.data.Dataset, schema: Schema) -> tf.data.Dataset:
    """One cached element: every example parsed, as (numeric [N, F] float32, {text name: [N]}, [N] labels).

    The numeric columns are stacked into one matrix so that a batch is one
    gather of rows (`_permuted_batches`), not a gather per column: on sylva's
    216 features that took a warm epoch's input from 0.33 s to 0.14-0.20 s
    (docs/benchmarks.md, "Training input pipeline"); the batch keeps the
    matrix, which is the model's numeric input.
    """
    chunks = records.batch(PARSE_CHUNK).map(_parser(schema, packed=False), num_parallel_calls=tf.data.AUTOTUNE)
    numeric = [f.name for f in schema.numeric]

    def join(features, labels):  # ragged_batch stacks the chunks as [C, None]; flat_values joins them to [N]
        columns = {name: values.flat_values for name, values in features.items()}
        matrix = (tf.stack([columns.pop(name) for name in numeric], axis=1) if numeric
                  else tf.zeros([tf.shape(labels.flat_values)[0], 0], tf.float32))  # [N, F]
        return matrix, columns, labels.flat_values

    return chunks.ragged_batch(MAX_CHUNKS).map(join).cache()


def _permuted_batches(numeric: tf.Tensor, text: dict, labels: tf.Tensor, key: tf.Tensor, batch_size: int,
                      has_numeric: bool) -> tf.data.Dataset:
    """The examples in one random order ([N] permutation drawn from `key`), as batches of the model's inputs."""
    count = tf.shape(labels, out_type=tf.int64)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([key, 0]))  # [N]

    def gather(index):  # index: scalar batch number
        rows = order[index * batch_size:(index + 1) * batch_size]  # [B]
        features = {NUMERIC_INPUT: tf.gather(numeric, rows)} if has_numeric else {}  # [B, F]
        features.update({name: tf.gather(values, rows) for name, values in text.items()})
        return features, tf.gather(labels, rows)

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
