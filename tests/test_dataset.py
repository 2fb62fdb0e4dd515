"""The training input pipeline: every example once per epoch, reshuffled, seeded; evaluation in file order."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.dataset import make_dataset
from trainer.schema import Feature, Schema

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
    return [[{"row": f["row"], "colour": f["colour"], "label": y} for f, y in dataset.as_numpy_iterator()]
            for _ in range(count)]


def rows_of(batches: list[dict]) -> np.ndarray:
    return np.concatenate([b["row"] for b in batches]).astype(np.int64)


def test_every_epoch_holds_each_example_once_with_its_own_values(shards):
    dataset = make_dataset(shards, SCHEMA, batch_size=64, shuffle=True, seed=3, examples=ROWS)
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


def test_epochs_are_reshuffled_and_the_sequence_is_fixed_by_the_seed(shards):
    first = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3), 3)]
    again = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=3), 3)]
    other = [rows_of(e) for e in epochs(make_dataset(shards, SCHEMA, 100, shuffle=True, seed=4), 1)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert not np.array_equal(first[0], other[0])
    # A uniform permutation over all shards, not a window of the file order: the first
    # batch draws from every third of the data.
    assert len({int(r) // 334 for r in first[0][:100]}) == 3


def test_evaluation_batches_come_in_file_order_on_every_pass(shards):
    dataset = make_dataset(shards, SCHEMA, batch_size=300, examples=ROWS)
    assert dataset.cardinality().numpy() == 4
    for batches in epochs(dataset, 2):
        assert [len(b["row"]) for b in batches] == [300, 300, 300, 100]
        np.testing.assert_array_equal(rows_of(batches), np.arange(ROWS))
