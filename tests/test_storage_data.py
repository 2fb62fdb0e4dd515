"""The Beam data step's file reading (trainer/data/beam_files.py) on gs:// and s3:// (tests/object_storage.py).

The reference is pandas (CSV, Parquet) and TensorFlow's TFRecord reader on
the local originals of the uploaded files.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from trainer import storage
from trainer.data.beam_files import plan_ranges, read_range, tfrecord_records
from trainer.data.ingest import DataError
from trainer.data.synthetic import make_synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(params=["gs", "s3"])
def bucket(request) -> str:
    return request.getfixturevalue({"gs": "gcs", "s3": "s3"}[request.param])


def _read_all(pattern: str, range_bytes: int) -> tuple[pd.DataFrame, int]:
    ranges = plan_ranges(pattern, range_bytes=range_bytes)
    frames = [batch.to_pandas() for part in ranges for _, batch in read_range(part)]
    return pd.concat(frames, ignore_index=True), len(ranges)


def test_csv_ranges_gzip_and_parquet_match_pandas(bucket, tmp_path):
    frame = make_synthetic(negatives=300, positives=30, seed=4)
    csv_path, gz_path, parquet_path = tmp_path / "a.csv", tmp_path / "b.csv.gz", tmp_path / "c.parquet"
    frame.to_csv(csv_path, index=False)
    with gzip.open(gz_path, "wt") as handle:
        frame.to_csv(handle, index=False)
    frame.to_parquet(parquet_path, row_group_size=100)
    for local in (csv_path, gz_path, parquet_path):
        storage.copy_file(str(local), storage.join(bucket, "in", local.name))
    expected = pd.read_csv(csv_path, dtype=str, keep_default_na=False).replace("", None)

    read, count = _read_all(storage.join(bucket, "in", "a.csv"), range_bytes=8000)
    assert count > 3  # cut into byte ranges, lines cut at range edges belong to one range
    pd.testing.assert_frame_equal(read.astype(object).where(read.notna(), None), expected, check_dtype=False)
    read, _ = _read_all(storage.join(bucket, "in", "b.csv.gz"), range_bytes=2000)
    pd.testing.assert_frame_equal(read.astype(object).where(read.notna(), None), expected, check_dtype=False)

    read, count = _read_all(storage.join(bucket, "in", "*.parquet"), range_bytes=2000)
    assert count == 4  # row groups
    pd.testing.assert_frame_equal(read, pd.read_parquet(parquet_path), check_dtype=False)


def test_tfrecords_match_tensorflow(bucket, tmp_path):
    import tensorflow as tf

    records = [np.random.default_rng(i).bytes(50 + i) for i in range(40)]
    local = str(tmp_path / "data-00000-of-00001.tfrecord.gz")
    with tf.io.TFRecordWriter(local, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    remote = storage.join(bucket, "in", "data-00000-of-00001.tfrecord.gz")
    storage.copy_file(local, remote)
    expected = [r.numpy() for r in tf.data.TFRecordDataset(local, compression_type="GZIP")]
    assert list(tfrecord_records(remote)) == expected == records


def test_missing_input_is_one_data_error(bucket):
    with pytest.raises(DataError, match="no input file matches"):
        plan_ranges(storage.join(bucket, "nothing", "*.csv"))
    other = bucket.split("://")[0] + "://no-such-bucket-imbalance/*.csv"
    with pytest.raises(DataError, match="no-such-bucket-imbalance does not exist"):
        plan_ranges(other)


def test_data_step_reads_remote_data_into_a_local_run(bucket, tmp_path):
    """`--data gs://...` / `s3://...`: the same split, schema and counts as the local copy gives."""
    import tensorflow as tf

    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data

    frame = make_synthetic(negatives=400, positives=40, seed=12)
    local = tmp_path / "in.csv"
    frame.to_csv(local, index=False)
    storage.copy_file(str(local), storage.join(bucket, "in", "in.csv"))
    remote = prepare_data(RunConfig(data=storage.join(bucket, "in", "*.csv"), label="target",
                                    output_dir=str(tmp_path / "remote_run")))
    reference = prepare_data(RunConfig(data=str(local), label="target", output_dir=str(tmp_path / "local_run")))
    assert remote.counts == reference.counts and remote.schema == reference.schema
    for split in ("train", "validation", "test"):
        names = storage.list_files(str(tmp_path / "remote_run" / "data" / split))
        assert names == storage.list_files(str(tmp_path / "local_run" / "data" / split))
        for name in names:  # the same examples in the same order (a map's serialized order may differ)
            remote_examples = [tf.train.Example.FromString(r)
                               for r in tfrecord_records(str(tmp_path / "remote_run" / "data" / split / name))]
            local_examples = [tf.train.Example.FromString(r)
                              for r in tfrecord_records(str(tmp_path / "local_run" / "data" / split / name))]
            assert len(remote_examples) > 0 and remote_examples == local_examples
