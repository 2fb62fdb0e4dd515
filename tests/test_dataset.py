"""The training input pipeline, cached and streamed: every example once per epoch, reshuffled, seeded;
evaluation in file order; sharded by batch under tf.distribute; batches in the model's input structure
(the numeric features as one matrix in schema order)."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.data import dataset as dataset_lib
from trainer.data.dataset import NUMERIC_INPUT, caches, make_dataset, parsed_bytes
from trainer.data.schema import Feature, Schema

SCHEMA = Schema((Feature("row", "numeric"), Feature("colour", "categorical", vocabulary=("red", "blue"))), "target")
ROWS = 1_000  # over 3 shards; 1,000 is no multiple of the batch sizes below (a short last batch)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """Gzipped tf.Example shards of rows 0..999 in file order (row r: colour, label r % 7 == 0); one lacks colour."""
    directory = tmp_path_factory.mktemp("shards")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard, rows in enumerate(np.array_split(np.arange(ROWS), 3)):
        with tf.io.TFRecordWriter(str(directory / f"data-{shard:05d}-of-00003.tfrecord.gz"), options) as writer:
            for row in rows:
                feature = {"row": tf.train.Feature(float_list=tf.train.FloatList(value=[float(row)])),
                           "target": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row % 7 == 0)]))}
                if row != 5:
                    colour = b"red" if row % 2 else b"blue"
                    feature["colour"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[colour]))
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(directory / "data-*.tfrecord.gz")


def epochs(dataset: tf.data.Dataset, count: int) -> list[list[dict]]:
    """`count` passes over `dataset` (as Keras makes them), each a list of NumPy batches."""
    return [[{"row": f[NUMERIC_INPUT][:, 0], "colour": f["colour"], "label": y}
             for f, y in dataset.as_numpy_iterator()] for _ in range(count)]


def rows_of(batches: list[dict]) -> np.ndarray:
    return np.concatenate([b["row"] for b in batches]).astype(np.int64)


PATHS = pytest.mark.parametrize("cache", [True, False], ids=["cached", "streamed"])


@PATHS
def test_every_epoch_holds_each_example_once_with_its_own_values(shards, cache):
    dataset = make_dataset(shards, SCHEMA, batch_size=64, shuffle=True, seed=3, examples=ROWS, cache=cache)
    assert dataset.cardinality().numpy() == 16  # ceil(1000 / 64)
    for batches in epochs(dataset, 3):
        assert [len(b["row"]) for b in batches] == [64] * 15 + [40]
        np.testing.assert_array_equal(np.sort(rows_of(batches)), np.arange(ROWS))
        for batch in batches:  # features and label stay together through the shuffle
            rows = batch["row"].astype(np.int64)
            np.testing.assert_array_equal(batch["label"], (rows % 7 == 0).astype(np.int64))
            expected = np.where(rows % 2 == 1, b"red", b"blue").astype(object)
            expected[rows == 5] = b""  # absent -> the parse default
            np.testing.assert_array_equal(batch["colour"], expected)


@PATHS
def test_epochs_are_reshuffled_and_the_sequence_is_fixed_by_the_seed(shards, cache):
    first = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3, cache=cache), 3)]
    again = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3, cache=cache), 3)]
    other = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=4, cache=cache), 1)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert not np.array_equal(first[0], other[0])
    # Not a window of the file order: the first batch draws from every third of the data (cached:
    # a uniform permutation; streamed: the shards are interleaved before the shuffle buffer).
    assert len({int(r) // 334 for r in first[0][:100]}) == 3


def test_both_paths_give_the_same_examples_every_epoch(shards):
    cached = epochs(make_dataset(shards, SCHEMA, 128, shuffle=True, seed=5, examples=ROWS, cache=True), 2)
    streamed = epochs(make_dataset(shards, SCHEMA, 128, shuffle=True, seed=5, examples=ROWS, cache=False), 2)

    def multiset(batches):  # every (row, colour, label), sorted
        rows = [(int(r), c, int(y)) for b in batches for r, c, y in zip(b["row"], b["colour"], b["label"], strict=True)]
        return sorted(rows)

    for a, b in zip(cached, streamed, strict=True):
        assert multiset(a) == multiset(b)
        assert len(multiset(a)) == ROWS


def test_the_split_is_streamed_above_the_cache_budget(shards, monkeypatch):
    per_example = 4 + dataset_lib.STRING_BYTES + 8  # row (numeric), colour (string), the label
    assert parsed_bytes(SCHEMA, ROWS) == ROWS * per_example
    assert caches(SCHEMA, ROWS, budget=ROWS * per_example) and not caches(SCHEMA, ROWS, budget=ROWS * per_example - 1)
    assert caches(SCHEMA, None, budget=0)  # an unknown count caches
    assert caches(SCHEMA, 2_000_000)  # 88 MB: under the default budget (256 MiB)
    assert not caches(SCHEMA, 10_000_000)
    monkeypatch.setattr(dataset_lib, "CACHE_BUDGET_BYTES", ROWS * per_example - 1)
    default = make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3, examples=ROWS)
    streamed = make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3, examples=ROWS, cache=False)
    cached = make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3, examples=ROWS, cache=True)
    order = rows_of(epochs(default, 1)[0])
    np.testing.assert_array_equal(order, rows_of(epochs(streamed, 1)[0]))
    assert not np.array_equal(order, rows_of(epochs(cached, 1)[0]))


def test_the_streamed_shuffle_buffer_is_bounded():
    assert 1 <= dataset_lib.shuffle_records(SCHEMA) <= dataset_lib.SHUFFLE_RECORDS
    wide = Schema(tuple(Feature(f"feature_{i:04d}", "numeric") for i in range(5_000)), "target")
    assert dataset_lib.shuffle_records(wide) * 5_000 * 28 <= dataset_lib.SHUFFLE_BUFFER_BYTES


@PATHS
def test_workers_sharding_by_batch_share_out_every_example_once(shards, cache):
    """tf.distribute's DATA auto-sharding (the rewrite each worker applies): two workers split each epoch."""
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    workers = [_AutoShardDataset(make_dataset(shards, SCHEMA, 50, shuffle=True, seed=3, examples=ROWS, cache=cache),
                                 num_workers=2, index=index) for index in range(2)]
    shares = [[rows_of(e) for e in epochs(worker, 2)] for worker in workers]
    for epoch in range(2):
        first, second = shares[0][epoch], shares[1][epoch]
        assert len(first) == len(second) == ROWS // 2  # 20 batches of 50: 10 each
        np.testing.assert_array_equal(np.sort(np.r_[first, second]), np.arange(ROWS))
    assert not np.array_equal(shares[0][0], shares[0][1])


@PATHS
def test_evaluation_batches_come_in_file_order_on_every_pass(shards, cache):
    dataset = make_dataset(shards, SCHEMA, batch_size=300, examples=ROWS, cache=cache)
    assert dataset.cardinality().numpy() == 4
    for batches in epochs(dataset, 2):
        assert [len(b["row"]) for b in batches] == [300, 300, 300, 100]
        np.testing.assert_array_equal(rows_of(batches), np.arange(ROWS))


@pytest.mark.parametrize("path", [dict(shuffle=True, cache=True), dict(shuffle=True, cache=False),
                                  dict(shuffle=False, cache=True)], ids=["cached", "streamed", "evaluation"])
@pytest.mark.parametrize("numeric", [("row", "negated", "gappy"), ()], ids=["three numeric", "text only"])
def test_batches_keep_every_column_of_a_row_together(tmp_path, numeric, path):
    """Every path yields the numeric columns as one matrix, in schema order: each column must hold its own
    feature's values, row by row, beside the text column (and with no numeric column, no matrix)."""
    names = {"row": lambda r: float(r), "negated": lambda r: -float(r), "gappy": lambda r: float(r) * 10}
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(tmp_path / "data-00000-of-00001.tfrecord.gz"), options) as writer:
        for row in range(300):
            feature = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[names[name](row)]))
                       for name in numeric if not (name == "gappy" and row % 3 == 0)}  # absent: NaN
            feature["id"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(row).encode()]))
            feature["target"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row % 2]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    schema = Schema((*(Feature(name, "numeric") for name in numeric), Feature("id", "categorical")), "target")
    seen = []
    for features, labels in make_dataset(str(tmp_path / "*.tfrecord.gz"), schema, 64, seed=1, examples=300,
                                         **path).as_numpy_iterator():
        rows = np.array([int(i) for i in features["id"]])
        assert set(features) == ({NUMERIC_INPUT, "id"} if numeric else {"id"})
        np.testing.assert_array_equal(labels, rows % 2)
        if numeric:
            expected = {"row": rows.astype(np.float32), "negated": -rows.astype(np.float32),
                        "gappy": np.where(rows % 3 == 0, np.nan, rows * 10.0).astype(np.float32)}
            np.testing.assert_array_equal(features[NUMERIC_INPUT], np.stack([expected[n] for n in numeric], axis=1))
        seen.extend(rows)
    assert sorted(seen) == list(range(300)) and (seen != sorted(seen)) == path["shuffle"]
