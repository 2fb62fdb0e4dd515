"""trainer/storage.py against a GCS emulator and moto's S3 on loopback (tests/object_storage.py).

The references are independent of the code under test: bytes written are
compared with bytes read back through another client (the emulators' own
HTTP APIs are not used by trainer.storage's reads), and TensorFlow's own
readers check what TensorFlow wrote through the proxy.
"""

from __future__ import annotations

import gzip
import io
import os
import sys

import numpy as np
import pytest

from trainer import layout, storage


def test_scheme_rule():
    assert storage.scheme("/tmp/run") == storage.LOCAL
    assert storage.scheme("runs/x") == storage.LOCAL
    assert storage.scheme("gs://b/run") == storage.GCS
    assert storage.scheme("S3://b/run") == storage.S3
    assert storage.tensorflow_can_open("gs://b/x") and not storage.tensorflow_can_open("s3://b/x")
    assert storage.join("gs://b/run", "serving_model", "1") == "gs://b/run/serving_model/1"
    with pytest.raises(storage.StorageError, match="unsupported storage scheme hdfs://"):
        storage.scheme("hdfs://namenode/x")
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.scheme("gs:///x")


@pytest.fixture(params=["gs", "s3"])
def bucket(request) -> str:
    """A fresh gs:// or s3:// bucket, the environment pointing at its emulator."""
    return request.getfixturevalue({"gs": "gcs", "s3": "s3"}[request.param])


def _tree(directory: str) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                files[os.path.relpath(os.path.join(root, name), directory)] = handle.read()
    return files


@pytest.mark.slow
def test_files_round_trip(bucket, tmp_path):
    rng = np.random.default_rng(3)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.bin").write_bytes(rng.bytes(300_000))  # several HTTP chunks' worth
    (source / "sub" / "b.txt").write_text("é\n" * 10)
    (source / "empty").write_bytes(b"")
    (source / "c.csv.gz").write_bytes(gzip.compress(b"x,y\n1,2\n"))  # stored as is, never compressed again
    remote = storage.join(bucket, "run", "copy")

    assert storage.copy_tree(str(source), remote)[-1] in ("a.bin", "c.csv.gz", "empty", "sub/b.txt")
    assert storage.list_files(remote) == ["a.bin", "c.csv.gz", "empty", "sub/b.txt"]
    assert storage.listdir(remote) == ["a.bin", "c.csv.gz", "empty", "sub"]
    assert storage.glob(storage.join(remote, "*.gz")) == [storage.join(remote, "c.csv.gz")]
    assert storage.size(storage.join(remote, "a.bin")) == 300_000
    assert storage.listdir(storage.join(bucket, "run")) == ["copy"]
    assert storage.exists(storage.join(remote, "sub")) and not storage.exists(storage.join(remote, "nope"))
    assert storage.read_text(storage.join(remote, "sub", "b.txt")) == "é\n" * 10

    back = tmp_path / "back"
    storage.copy_tree(remote, str(back))
    assert _tree(str(back)) == _tree(str(source))

    storage.copy_tree(remote, storage.join(bucket, "other"))  # within the store: server-side copies
    assert storage.list_files(storage.join(bucket, "other")) == ["a.bin", "c.csv.gz", "empty", "sub/b.txt"]
    storage.remove_tree(remote)
    assert storage.list_files(remote) == [] and storage.listdir(remote) == []
    assert storage.list_files(storage.join(bucket, "other")) == ["a.bin", "c.csv.gz", "empty", "sub/b.txt"]


@pytest.mark.slow
def test_missing_bucket_is_one_line(bucket):
    missing = bucket.split("://")[0] + "://no-such-bucket-imbalance/x.txt"
    with pytest.raises(storage.StorageError) as caught:
        storage.write_text(missing, "x")
    assert "no-such-bucket-imbalance does not exist" in str(caught.value) and "\n" not in str(caught.value)


def _version_source(tmp_path, text: str) -> str:
    source = tmp_path / f"export-{text}"
    (source / "variables").mkdir(parents=True)
    (source / "variables" / "variables.index").write_text(f"index {text}")
    (source / layout.SAVED_MODEL_FILE).write_text(f"model {text}")
    return str(source)


@pytest.mark.slow
def test_publish_marker_last_and_only_marked_versions_listed(bucket, tmp_path):
    base = storage.join(bucket, "serving_model")
    order = []
    real_copy = storage.copy_file

    def recording_copy(source, target):
        order.append(target.rsplit("/1/", 1)[1])
        real_copy(source, target)

    storage.copy_file, saved = recording_copy, storage.copy_file
    try:
        path = storage.publish_tree(_version_source(tmp_path, "one"), base, 1, {"assets.extra/push.json": "{}"})
    finally:
        storage.copy_file = saved
    assert order == ["variables/variables.index", layout.SAVED_MODEL_FILE]  # the model file after its variables
    assert path == storage.join(base, "1") and layout.list_versions(base) == {1: path}
    assert storage.read_text(storage.join(path, "assets.extra", "push.json")) == "{}"

    # A version killed half-way: its files but no marker. Readers ignore it; its number stays taken.
    storage.copy_tree(_version_source(tmp_path, "two"), storage.join(base, "2"))
    assert layout.list_versions(base) == {1: path}
    assert layout.next_version(base) == 3
    with pytest.raises(storage.VersionTaken, match="another publisher took version 2"):
        storage.publish_tree(_version_source(tmp_path, "again"), base, 2)
    assert storage.read_text(storage.join(base, "2", layout.SAVED_MODEL_FILE)) == "model two"  # untouched


@pytest.mark.slow
def test_failed_publish_leaves_nothing(bucket, tmp_path, monkeypatch):
    base = storage.join(bucket, "serving_model")
    real_write = storage.write_text

    def failing_write(path, text):
        if path.endswith(storage.VERSION_MARKER):
            raise OSError("disk gone")
        real_write(path, text)

    monkeypatch.setattr(storage, "write_text", failing_write)
    with pytest.raises(OSError, match="disk gone"):
        storage.publish_tree(_version_source(tmp_path, "one"), base, 1)
    assert storage.list_files(base) == [] and layout.list_versions(base) == {}


@pytest.mark.slow
def test_tensorflow_files_on_gcs_through_the_proxy(gcs, tmp_path):
    import tensorflow as tf

    payload = np.random.default_rng(5).bytes(1_500_000)  # large enough for TF to upload in parts
    path = storage.join(gcs, "tf", "blob.bin")
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(payload)
    with storage.open_file(path) as handle:  # read back through Beam, not TensorFlow
        assert handle.read() == payload
    tf.io.gfile.makedirs(storage.join(gcs, "tf", "dir"))  # a zero-byte folder marker
    tf.io.gfile.rename(path, storage.join(gcs, "tf", "moved.bin"))
    assert sorted(tf.io.gfile.listdir(storage.join(gcs, "tf"))) == ["dir/", "moved.bin"]

    records = [f"record {i}".encode() for i in range(100)]
    shard = storage.join(gcs, "tf", "data.tfrecord.gz")
    with tf.io.TFRecordWriter(shard, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    read = [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(storage.join(gcs, "tf", "*.gz")),
                                                        compression_type="GZIP")]
    assert read == records

    module = tf.Module()
    module.scale = tf.Variable([2.0, -1.0])
    module.apply = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([2], tf.float32)])
    tf.saved_model.save(module, storage.join(gcs, "model", "1"))
    loaded = tf.saved_model.load(storage.join(gcs, "model", "1"))
    np.testing.assert_array_equal(loaded.apply(tf.constant([3.0, 4.0])).numpy(), [6.0, -4.0])


@pytest.mark.slow
@pytest.mark.parametrize("store", ["gs", "s3"])
def test_beam_text_and_tfrecords(store, request):
    import apache_beam as beam

    from trainer.beam_runner import make_pipeline

    root = request.getfixturevalue({"gs": "gcs", "s3": "s3"}[store])
    storage.configure()
    lines = [f"line {i}" for i in range(50)]
    with make_pipeline() as pipeline:
        created = pipeline | beam.Create(lines)
        _ = created | beam.io.WriteToText(storage.join(root, "text", "part"), num_shards=2)
        _ = created | beam.Map(str.encode) | beam.io.WriteToTFRecord(storage.join(root, "rec", "part"))
    assert len(storage.listdir(storage.join(root, "text"))) == 2
    text = "".join(storage.read_text(storage.join(root, "text", n)) for n in storage.listdir(storage.join(root, "text")))
    assert sorted(text.splitlines()) == sorted(lines)
    with make_pipeline() as pipeline:
        read = pipeline | beam.io.ReadFromTFRecord(storage.join(root, "rec", "part*")) | beam.Map(bytes.decode)
        _ = read | beam.io.WriteToText(storage.join(root, "back", "all"), shard_name_template="")
    assert sorted(storage.read_text(storage.join(root, "back", "all")).splitlines()) == sorted(lines)


@pytest.mark.slow
def test_publish_version_between_stores(gcs, tmp_path):
    from trainer.atomic import publish_version

    source = _version_source(tmp_path, "one")
    base = storage.join(gcs, "run", "serving_model")
    assert publish_version(source, base, {"assets.extra/push.json": '{"pushed": true}'}) == storage.join(base, "1")
    assert publish_version(source, base) == storage.join(base, "2")
    assert sorted(layout.list_versions(base)) == [1, 2]
    local_base = tmp_path / "local_model"
    local = publish_version(storage.join(base, "1"), str(local_base))  # from object storage to a local base
    assert local == str(local_base / "1")
    assert (local_base / "1" / "assets.extra" / "push.json").read_text() == '{"pushed": true}'
    assert _tree(local)[layout.SAVED_MODEL_FILE] == b"model one"
    with pytest.raises(FileNotFoundError, match="not an exported SavedModel version"):
        publish_version(storage.join(gcs, "nothing"), base)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["gs", "s3"])
def test_version_manager_loads_only_marked_versions(store, request, tmp_path):
    from serving.versions import VersionManager

    root = request.getfixturevalue({"gs": "gcs", "s3": "s3"}[store])
    base = storage.join(root, "serving_model")
    seen = {}

    def loader(version, path):  # records what a load finds on local disk
        seen[version] = (path, _tree(path))
        return f"servable {version}"

    manager = VersionManager("m", base, loader=loader)
    storage.publish_tree(_version_source(tmp_path, "one"), base, 1)
    manager.poll_once()
    assert manager.available_versions == [1] and not storage.is_remote(seen[1][0])
    assert seen[1][1] == {"variables/variables.index": b"index one", layout.SAVED_MODEL_FILE: b"model one",
                          storage.VERSION_MARKER: seen[1][1][storage.VERSION_MARKER]}
    storage.copy_tree(_version_source(tmp_path, "two"), storage.join(base, "2"))  # a publish under way
    manager.poll_once()
    assert manager.available_versions == [1] and 2 not in seen
    assert [s.version for s in manager.statuses("m").model_version_status] == [1]
    storage.write_text(storage.join(base, "2", storage.VERSION_MARKER), "done")  # the publish completes
    manager.poll_once()
    assert manager.available_versions == [2] and seen[2][1][layout.SAVED_MODEL_FILE] == b"model two"
    assert not os.path.exists(seen[1][0])  # version 1's local copy went with it


@pytest.mark.slow
def test_unreachable_store_keeps_serving(gcs, tmp_path, monkeypatch):
    from serving.versions import VersionManager

    base = storage.join(gcs, "serving_model")
    storage.publish_tree(_version_source(tmp_path, "one"), base, 1)
    manager = VersionManager("m", base, loader=lambda version, path: version)
    manager.poll_once()
    monkeypatch.setattr(storage, "list_files", lambda directory: (_ for _ in ()).throw(OSError("connection refused")))
    manager.poll_once()
    assert manager.available_versions == [1]  # not unloaded because one listing failed


@pytest.mark.slow
@pytest.mark.parametrize("store", ["gs", "s3"])
def test_export_version_to_object_storage_predicts_identically(store, request, tmp_path):
    """A version exported to gs:// or s3:// is staged locally, uploaded, and loads back bit for bit."""
    import keras
    import tensorflow as tf

    from tests.conftest import serialized_example
    from trainer.calibration import Calibration
    from trainer.data.schema import Feature, Schema
    from trainer.export import ServingModule, export_version

    class Linear(keras.Model):
        def call(self, features, training=False):
            x = tf.where(tf.math.is_nan(features["x0"]), 0.0, features["x0"])
            return tf.stack([tf.zeros_like(x), 2.0 * x - 3.0], axis=1)

    root = request.getfixturevalue({"gs": "gcs", "s3": "s3"}[store])
    module = ServingModule(Linear(), Schema(features=(Feature("x0", "numeric"),), label="target"),
                           Calibration("platt", 1.3, -0.2), threshold=0.3)
    examples = tf.constant([serialized_example({"x0": float(v)})
                            for v in np.random.default_rng(9).normal(0, 2, size=200)])
    base = storage.join(root, "run", "serving_model")
    assert export_version(module, base) == storage.join(base, "1")
    assert export_version(module, base) == storage.join(base, "2")
    assert sorted(layout.list_versions(base)) == [1, 2]
    local = str(tmp_path / "back")
    storage.copy_tree(storage.join(base, "2"), local)
    assert os.path.isfile(os.path.join(local, layout.WARMUP_FILE))
    loaded = tf.saved_model.load(local)
    np.testing.assert_array_equal(loaded.signatures["serving_default"](examples=examples)["scores"].numpy(),
                                  module.serve_examples(examples)["scores"].numpy())


def test_a_server_that_cannot_start_is_one_clear_error(tmp_path):
    """What the fixtures turn into a skip: the command, the port and the server's last words."""
    from tests.object_storage import free_port, start_server

    with pytest.raises(RuntimeError, match=r"did not start on port \d+: .*no-such-option"):
        start_server([sys.executable, "-c", "import sys; sys.exit('no-such-option')"], str(tmp_path / "log"),
                     free_port())


@pytest.mark.slow
def test_checkpoints_and_summaries_on_gcs_through_the_proxy(gcs):
    """What a run directory on gs:// needs from TensorFlow besides SavedModels: checkpoints and TensorBoard logs."""
    import tensorflow as tf

    weights = tf.Variable([1.5, -2.0, 0.25])
    checkpoint = tf.train.Checkpoint(weights=weights)
    prefix = checkpoint.save(storage.join(gcs, "run", "checkpoints", "ckpt"))
    assert tf.train.latest_checkpoint(storage.join(gcs, "run", "checkpoints")) == prefix
    weights.assign([0.0, 0.0, 0.0])
    checkpoint.restore(prefix).assert_consumed()
    np.testing.assert_array_equal(weights.numpy(), [1.5, -2.0, 0.25])

    logs = storage.join(gcs, "run", "logs", "weighted")
    writer = tf.summary.create_file_writer(logs)
    with writer.as_default():
        for step, value in enumerate([0.5, 0.25, 0.125]):
            tf.summary.scalar("loss", value, step=step)
    writer.close()
    events = storage.glob(storage.join(logs, "events.out.tfevents.*"))
    assert len(events) == 1
    read = [(e.step, float(tf.make_ndarray(v.tensor))) for e in tf.compat.v1.train.summary_iterator(events[0])
            for v in e.summary.value if v.tag == "loss"]
    assert read == [(0, 0.5), (1, 0.25), (2, 0.125)]


@pytest.mark.slow
def test_atomic_file_writes_on_object_storage(bucket):
    """trainer.atomic's file writers on gs:// and s3://: one object each, replaced whole, read back exactly."""
    from trainer.atomic import write_arrays_atomically, write_json_atomically, write_text_atomically

    path = storage.join(bucket, "run", "run.json")
    write_json_atomically(path, {"status": "running", "score": np.float32(0.5)})
    write_json_atomically(path, {"status": "complete"})
    assert storage.read_text(path) == '{\n "status": "complete"\n}'
    write_text_atomically(storage.join(bucket, "run", "notes.txt"), "é")
    assert storage.read_text(storage.join(bucket, "run", "notes.txt")) == "é"
    arrays = {"scores": np.linspace(0, 1, 7), "labels": np.arange(7) % 2}
    write_arrays_atomically(storage.join(bucket, "run", "study", "tuned.npz"), **arrays)
    with storage.open_file(storage.join(bucket, "run", "study", "tuned.npz")) as handle:
        loaded = np.load(io.BytesIO(handle.read()))
        assert set(loaded.files) == set(arrays)
        for name, values in arrays.items():
            np.testing.assert_array_equal(loaded[name], values)
    assert storage.list_files(storage.join(bucket, "run")) == ["notes.txt", "run.json", "study/tuned.npz"]


def test_a_started_server_dies_with_the_test_process_that_started_it(tmp_path):
    """A pytest worker killed with SIGKILL runs no fixture teardown: its emulators must not outlive it."""
    import signal
    import subprocess
    import time

    script = ("import sys, time\nfrom tests.object_storage import free_port, start_server\n"
              "port = free_port()\n"
              f"server = start_server([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1'], "
              f"{str(tmp_path / 'server.log')!r}, port)\n"
              "print(server.process.pid, flush=True)\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail(f"the server {child} outlived its killed parent")


@pytest.mark.slow
def test_an_input_on_object_storage_changes_the_data_fingerprint_when_it_changes(bucket, tmp_path):
    """`describe_data`'s fingerprint covers remote inputs as it does local ones: name, size, update time."""
    from trainer.config import RunConfig
    from tuning.executions import describe_data

    counts = {"train": [8, 2], "validation": [2, 1], "test": [2, 1]}
    data = storage.join(bucket, "in", "rows.csv")
    storage.write_text(data, "x,target\n1,0\n")

    def fingerprint(path: str) -> tuple[str, int | None]:
        described = describe_data(RunConfig(data=path, output_dir=str(tmp_path / "run")), counts)
        return described["fingerprint"], described["files"]

    first = fingerprint(data)
    assert first[1] == 1 and fingerprint(data) == first  # unchanged: the same fingerprint
    facts = storage.file_facts(data)
    assert [(path, size) for path, size, _ in facts] == [(data, len("x,target\n1,0\n"))]
    storage.write_text(data, "x,target\n1,0\n2,1\n")  # the input grows
    assert fingerprint(data)[0] != first[0]
    assert storage.file_facts(storage.join(bucket, "in", "*.csv"))[0][1] == len("x,target\n1,0\n2,1\n")

    local = tmp_path / "rows.csv"  # local inputs: the same rule, with the absolute path and st_mtime_ns
    local.write_text("x,target\n1,0\n")
    status = os.stat(local)
    assert storage.file_facts(str(local)) == [(str(local), status.st_size, status.st_mtime_ns)]
