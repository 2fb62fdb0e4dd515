"""Stratified, deterministic split; the Beam data step writes every row once, in its split.

References: NumPy counts of the labels, and the tiny frame itself."""

import numpy as np
import pytest

from tests.conftest import tiny_config
from trainer.data.dataset import read_labels, read_serialized
from trainer.data.ingest import DataError
from trainer.data.prepare import prepare_data
from trainer.data.split import assign_splits, class_counts


def test_split_is_stratified_and_exact(rng):
    labels = (rng.random(10_000) < 0.062).astype(np.int64)
    assignment = assign_splits(labels, (0.7, 0.15, 0.15), seed=3)
    counts = class_counts(labels, assignment)
    for cls in (0, 1):
        total = int((labels == cls).sum())
        assert counts["validation"][cls] == round(total * 0.15)
        assert counts["test"][cls] == round(total * 0.15)
        assert sum(counts[s][cls] for s in counts) == total


def test_split_is_deterministic_and_seeded(rng):
    labels = (rng.random(2000) < 0.1).astype(np.int64)
    first = assign_splits(labels, (0.7, 0.15, 0.15), seed=1)
    np.testing.assert_array_equal(first, assign_splits(labels, (0.7, 0.15, 0.15), seed=1))
    assert (first != assign_splits(labels, (0.7, 0.15, 0.15), seed=2)).any()


def test_class_too_small_for_the_split():
    labels = np.array([0] * 100 + [1] * 3)
    with pytest.raises(DataError, match="class 1 has only 3 examples"):
        assign_splits(labels, (0.7, 0.15, 0.15), seed=0)


@pytest.mark.slow  # a Beam pipeline
def test_beam_pipeline_writes_every_row_once(tmp_path, tiny_frame, tiny_csv):
    data = prepare_data(tiny_config(str(tmp_path / "run"), tiny_csv, seed=0))
    labels = tiny_frame["target"].to_numpy()
    assignment = assign_splits(labels, (0.7, 0.15, 0.15), seed=0)
    for index, name in enumerate(("train", "validation", "test")):
        written = read_labels(data.pattern(name), data.schema)
        assert len(written) == int((assignment == index).sum())
        assert int(written.sum()) == int(labels[assignment == index].sum())
    # Missing values are features without a value, not zeros.
    import tensorflow as tf

    examples = [tf.train.Example.FromString(s) for s in read_serialized(data.pattern("train"))]
    missing = sum(not e.features.feature["x0"].float_list.value for e in examples)
    expected = int(tiny_frame["x0"][assignment == 0].isna().sum())
    assert missing == expected > 0
