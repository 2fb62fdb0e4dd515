"""Stratified, deterministic split; the Beam pipeline writes every row once."""

import numpy as np
import pytest

from trainer.data.dataset import read_labels, read_serialized
from trainer.data.ingest import DataError, validate
from trainer.data.schema import infer_schema
from trainer.data.split import assign_splits, class_counts, write_splits


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
def test_beam_pipeline_writes_every_row_once(tmp_path, tiny_frame):
    frame = validate(tiny_frame, "target", None)
    assignment = assign_splits(frame.labels, (0.7, 0.15, 0.15), seed=0)
    patterns = write_splits(frame.features, frame.labels, frame.label_name, assignment, str(tmp_path))
    schema = infer_schema(frame.features, frame.label_name)
    for index, name in enumerate(("train", "validation", "test")):
        labels = read_labels(patterns[name], schema)
        assert len(labels) == int((assignment == index).sum())
        assert int(labels.sum()) == int(frame.labels[assignment == index].sum())
    # Missing values are absent features, not zeros.
    import tensorflow as tf

    examples = [tf.train.Example.FromString(s) for s in read_serialized(patterns["train"])]
    missing = sum("x0" not in e.features.feature for e in examples)
    expected = int(frame.features["x0"][assignment == 0].isna().sum())
    assert missing == expected > 0
