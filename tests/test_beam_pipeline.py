"""The Beam data step end to end (two Beam pipelines each, so `slow`).

References: the input frame itself, each row placed by `split.assign_splits`
(checked against NumPy counts in tests/test_split.py), pandas and NumPy
statistics of the rows that landed in each split, a `collections.Counter`
vocabulary, and `beam_split.reference_assignment`.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_numeric_statistics, tiny_config
from trainer.data import beam_values
from trainer.data.beam_files import plan_ranges
from trainer.data.beam_ingest import Settings, run_data_step
from trainer.data.beam_split import reference_assignment
from trainer.data.prepare import prepare_data
from trainer.data.split import SPLITS, assign_splits

pytestmark = pytest.mark.slow
SPLIT = (0.7, 0.15, 0.15)


def split_frame(directory: str, schema) -> pd.DataFrame:
    """Every written example of `directory/{split}/`, as a frame with a `split` column."""
    import tensorflow as tf

    from trainer.data.dataset import read_serialized

    frames = []
    for index, name in enumerate(SPLITS):
        serialized = read_serialized(os.path.join(directory, name, "data-*.tfrecord.gz"))
        parsed = tf.io.parse_example(serialized, schema.feature_spec())
        frame = pd.DataFrame({k: v.numpy() for k, v in parsed.items()})
        frames.append(frame.assign(split=index))
    frame = pd.concat(frames, ignore_index=True)
    for feature in schema.categorical:
        frame[feature.name] = frame[feature.name].str.decode("utf-8")
    return frame


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def expected_split_frame(raw: pd.DataFrame, fractions, seed: int) -> pd.DataFrame:
    """What `split_frame` should read back: every input row once, in the split `assign_splits` gives it,
    numbers as float32, missing text as "" (an absent bytes feature parses to its default)."""
    frame = raw.copy()
    for name in frame.columns:
        if name == "target":
            continue
        if pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = frame[name].astype(np.float32)
        else:
            frame[name] = frame[name].fillna("").astype(str)
    return frame.assign(split=assign_splits(raw["target"].to_numpy(), tuple(fractions), seed).astype(np.int64))


def reference_vocabulary(values, size: int = 1000, min_count: int = 1) -> tuple:
    """The vocabulary rule from a Counter: count >= min_count, most frequent first, ties by value, top size."""
    counts = collections.Counter(v for v in values if v not in ("", None))
    kept = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
    return tuple(kept[:size])


def assert_prepared_as_reference(data, raw: pd.DataFrame, config) -> None:
    """The prepared data of `raw` against pandas / NumPy / Counter references: rows, counts and schema."""
    expected = expected_split_frame(raw, config.split, config.seed)
    written = split_frame(data.directory, data.schema)
    pd.testing.assert_frame_equal(_sorted(written[list(expected.columns)]), _sorted(expected))
    labels = expected["target"].to_numpy()
    assert data.counts == {name: [int(((expected["split"] == i) & (labels == c)).sum()) for c in (0, 1)]
                           for i, name in enumerate(SPLITS)}
    train = raw[expected["split"].to_numpy() == 0]
    numeric = [name for name in raw.columns if name != "target" and pd.api.types.is_numeric_dtype(raw[name])]
    assert {f.name for f in data.schema.numeric} == set(numeric)
    assert_numeric_statistics(data.schema, train, numeric)
    for feature in data.schema.categorical:
        assert feature.vocabulary == reference_vocabulary(train[feature.name].dropna(), config.vocabulary_size,
                                                          config.vocabulary_min_count)
        assert np.isclose(feature.missing_fraction, train[feature.name].isna().mean())


def test_beam_prepares_every_row_once_in_its_split_with_the_training_rows_statistics(tmp_path, tiny_csv, tiny_frame):
    config = tiny_config(str(tmp_path / "beam"), tiny_csv)
    data = prepare_data(config)
    assert data.source["split_order"] == "assign_splits"
    assert_prepared_as_reference(data, tiny_frame, config)
    assert not [n for n in os.listdir(tmp_path / "beam") if n.startswith(".")]  # no staging, no hand-back file


@pytest.fixture(scope="module")
def parquet_glob(tmp_path_factory, tiny_frame):
    """The tiny frame with a unique `id`, as three Parquet files of several row groups."""
    frame = tiny_frame.assign(id=np.arange(len(tiny_frame), dtype=np.float64))
    root = tmp_path_factory.mktemp("parquet")
    for index, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[part], preserve_index=False),
                       root / f"part-{index}.parquet", row_group_size=250)
    return frame, str(root / "part-*.parquet")


def _hash_split(tmp_path, pattern, args=()):
    out = str(tmp_path / "out")
    plan, schema, counts = run_data_step(Settings(pattern, "target", None, SPLIT, 3, exact_order_rows=0), out, args)
    return plan, schema, counts, out


def _expected_assignment(frame: pd.DataFrame, pattern: str) -> np.ndarray:
    """Each row's split from its record id (row group range, ordinal), computed directly."""
    hashes = []
    for part in plan_ranges(pattern):
        rows = pq.ParquetFile(part.path).metadata.row_group(part.start).num_rows
        hashes.append(beam_values.record_hashes(part.index, 0, rows, 3))
    return reference_assignment(frame["target"].to_numpy(), np.concatenate(hashes), SPLIT)


def test_hash_split_of_a_parquet_glob_is_exact_complete_and_its_schema_is_the_train_rows(tmp_path, parquet_glob):
    frame, pattern = parquet_glob
    plan, schema, counts, out = _hash_split(tmp_path, pattern)
    assert plan.split.by_rank is None and len(plan.ranges) > 6
    written = split_frame(out, schema)
    assert len(written) == len(frame) and written["id"].is_unique  # every row once
    expected = _expected_assignment(frame, pattern)
    np.testing.assert_array_equal(written.sort_values("id")["split"].to_numpy(), expected)
    labels = frame["target"].to_numpy()
    assert counts == {name: [int(((expected == i) & (labels == c)).sum()) for c in (0, 1)]
                      for i, name in enumerate(SPLITS)}
    for cls in (0, 1):  # exact: round(N_c * fraction), as assign_splits
        n = int((labels == cls).sum())
        assert [counts["validation"][cls], counts["test"][cls]] == [round(n * 0.15), round(n * 0.15)]
    train = frame[expected == 0]
    assert_numeric_statistics(schema, train, ("x0", "x4", "id"))
    by_name = {f.name: f for f in schema.features}
    counts_region = train["region"].value_counts()
    assert set(by_name["region"].vocabulary) == set(counts_region.index)
    assert by_name["region"].vocabulary[0] == counts_region.idxmax()


def _examples(path: str) -> list:
    import tensorflow as tf

    from trainer.data.beam_files import tfrecord_records

    return [tf.train.Example.FromString(record) for record in tfrecord_records(path)]


def test_two_worker_processes_write_the_same_files(tmp_path, parquet_glob):
    _, pattern = parquet_glob
    _, schema_one, counts_one, one = _hash_split(tmp_path / "one", pattern)
    args = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
    _, schema_two, counts_two, two = _hash_split(tmp_path / "two", pattern, args)
    assert counts_one == counts_two
    for name in SPLITS:
        files = sorted(os.listdir(os.path.join(one, name)))
        assert files == sorted(os.listdir(os.path.join(two, name)))
        for file in files:  # the same examples in the same order (a map's byte order may differ by process)
            assert _examples(os.path.join(one, name, file)) == _examples(os.path.join(two, name, file))
    for ours, theirs in zip(schema_one.features, schema_two.features, strict=True):
        assert ours.vocabulary == theirs.vocabulary
        np.testing.assert_allclose([ours.mean, ours.std, *ours.quantiles], [theirs.mean, theirs.std, *theirs.quantiles])
