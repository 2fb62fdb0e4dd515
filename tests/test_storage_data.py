"""The Beam data step's file reading (trainer/data/beam_files.py) on gs:// and s3:// (tests/object_storage.py).

The reference is pandas (CSV, Parquet) and TensorFlow's TFRecord reader on
the local originals of the uploaded files.
"""

from __future__ import annotations

import gzip
import os
import tempfile

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


def _data_files(directory: str) -> dict[str, bytes]:
    """relative path -> bytes of every file under a local or remote data directory."""
    found = {}
    for name in storage.list_files(directory):
        with storage.open_file(storage.join(directory, name), "rb") as handle:
            found[name] = handle.read()
    return found


def _remote_data_step(run: str, data: str, beam_pipeline_args: tuple[str, ...], monkeypatch):
    """The data step of execution 1 of a run on object storage, through the working copy (`run_storage.on_run`).

    Returns (the local copy's data files, as the step left them; the names the final upload wrote).
    """
    from trainer import run_storage
    from trainer.config import RunConfig
    from trainer.data.prepare import prepare_data
    from trainer.run_copy import NEW_EXECUTION

    uploaded, put = [], run_storage._put
    monkeypatch.setattr(run_storage, "_put", lambda copy, name: (uploaded.append(name), put(copy, name)))

    def work(local_run: str) -> dict[str, bytes]:
        execution = os.path.join(local_run, "executions", "1")
        config = RunConfig(data=data, label="target", output_dir=execution, beam_pipeline_args=beam_pipeline_args)
        return _data_files(prepare_data(config).directory)

    local, _ = run_storage.on_run(run, work, NEW_EXECUTION, beam_pipeline_args)
    return local, uploaded


def test_a_remote_runs_data_step_writes_its_data_directory_on_the_store(bucket, tmp_path, monkeypatch):
    """A run on gs:// / s3://: Beam's workers write the shards under the remote run, the driver its records and
    the marker (source.json) last; the working copy gets the same bytes; the final upload does not write them
    again; a crashed data step's unmarked leftovers are neither copied nor kept."""
    frame = make_synthetic(negatives=400, positives=40, seed=12)
    frame.to_csv(tmp_path / "in.csv", index=False)
    data = storage.join(bucket, "in", "in.csv")
    storage.copy_file(str(tmp_path / "in.csv"), data)
    run = storage.join(bucket, "runs", "r")
    stale = storage.join(run, "executions", "1", "data", "train", "data-r09999.tfrecord.gz")
    storage.write_text(stale, "a crashed data step's shard, no marker")

    local, uploaded = _remote_data_step(run, data, (), monkeypatch)

    remote = _data_files(storage.join(run, "executions", "1", "data"))
    assert remote == local  # the same files, byte for byte
    assert "train/data-r09999.tfrecord.gz" not in remote  # the crashed step's shard is not trusted, nor kept
    assert "source.json" in remote and "train_statistics.pb" in remote
    assert {n.split("/")[0] for n in remote if n.endswith(".tfrecord.gz")} == {"train", "validation", "test"}
    assert not [name for name in uploaded if name.startswith("executions/1/data/")]
    assert storage.list_files(storage.join(run, "executions")) == sorted(f"1/data/{n}" for n in remote)


def test_the_data_step_on_multi_process_workers_writes_the_same_files(gcs, tmp_path, monkeypatch):
    """Beam's workers in other processes, with no access to the driver's working copy (as on a cluster), write
    the remote run's data directory: the same examples in the same files as the in-process runner's."""
    frame = make_synthetic(negatives=400, positives=40, seed=12)
    frame.to_csv(tmp_path / "in.csv", index=False)
    data = storage.join(gcs, "in", "in.csv")
    storage.copy_file(str(tmp_path / "in.csv"), data)
    workers = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")

    in_process, _ = _remote_data_step(storage.join(gcs, "runs", "one"), data, (), monkeypatch)
    spread, uploaded = _remote_data_step(storage.join(gcs, "runs", "two"), data, workers, monkeypatch)

    assert spread == _data_files(storage.join(gcs, "runs", "two", "executions", "1", "data"))
    assert spread.keys() == in_process.keys()
    for name, content in spread.items():  # the same examples in the same order (a map's serialized order
        assert _examples(name, content) == _examples(name, in_process[name])  # may differ between processes)
    assert not [name for name in uploaded if name.startswith("executions/1/data/")]


def _examples(name: str, content: bytes):
    """A shard's records as tf.train.Examples; any other file's bytes."""
    import tensorflow as tf

    if not name.endswith(".tfrecord.gz"):
        return content
    with tempfile.TemporaryDirectory() as directory:
        path = storage.join(directory, "shard.tfrecord.gz")
        with open(path, "wb") as handle:
            handle.write(content)
        return [tf.train.Example.FromString(record) for record in tfrecord_records(path)]
