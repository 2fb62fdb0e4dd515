"""A run directory on gs:// and s3:// (`trainer.run_storage`), against tests/object_storage.py's stores.

The references: the store's own listing (what is there, which versions carry
their marker), the run's records read back from the store, a SavedModel
loaded from local disk with `tf.saved_model.load` (independently of the
server and of the upload), and the local working copy as it was before the
upload.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from serving import versions
from serving.app import ServerOptions, start
from tests.serving_fixtures import MODEL, assert_close, call_signature, example_features, post, rest_url, serialize
from trainer import cli, run_copy, run_storage, storage
from trainer.config import ConfigError
from trainer.layout import SAVED_MODEL_FILE, SERVING_DIR

# The cheapest execution that still searches, trains both models, runs TFMA and gates (as test_tuning's).
TINY = ["--label", "target", "--max-trials", "1", "--tuning-epochs", "1", "--epochs", "1", "--verbose", "0",
        "--selection", "validation", "--intervals", "none", "--skip-weighting-study", "--attribution-rows", "0"]


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> str:
    """This test's temporary directory, where working copies go (so leftovers can be counted)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return str(directory)


def _copies(scratch: str) -> list[str]:
    return glob.glob(os.path.join(scratch, "imbalance-run-*"))


def _read_json(path: str) -> dict:
    return json.loads(storage.read_text(path))


def _versions(run: str) -> dict[str, bool]:
    return storage.version_dirs(storage.join(run, SERVING_DIR))


def _predict(server, serialized: list[bytes], version: str = "") -> list[float]:
    payload = {"instances": [{"b64": base64.b64encode(s).decode()} for s in serialized]}
    response = post(rest_url(server, f"/versions/{version}:predict" if version else ":predict"), payload)
    assert response.status_code == 200, response.text
    return [p["scores"] for p in response.json()["predictions"]]


@pytest.mark.slow
def test_tuning_on_gcs_then_served_then_a_second_execution(gcs, tiny_csv, scratch, rows, tmp_path, capsys):
    """`tuning.task --data gs:// --output-dir gs://`: pushed as version 1 (forced if need be), served from the
    bucket, and a second execution on the same run pushes version 2 or not, as its records say."""
    import tensorflow as tf

    from tuning import task

    data, run = storage.join(gcs, "in", "tiny.csv"), storage.join(gcs, "runs", "r")
    storage.copy_file(tiny_csv, data)
    # The first execution is pushed without TFMA (the second one evaluates, against it, on the store).
    assert task.main(["--data", data, "--output-dir", run, *TINY, "--skip-evaluation", "--push-anyway"]) == 0
    printed = capsys.readouterr().out
    assert "push:    " in printed and f"({run}/serving_model/1)" in printed  # the store's paths, not the copy's
    assert _copies(scratch) == [] and "imbalance-run-" not in printed
    first = _read_json(storage.join(run, "executions", "0001", "run.json"))
    assert first["status"] == "complete" and first["push"]["version"] == 1
    assert first["weighted"]["version_dir"] == f"{run}/executions/0001/candidate_model/1"
    assert "imbalance-run-" not in storage.read_text(storage.join(run, "executions", "0001", "run.json"))
    assert _versions(run) == {"1": True}
    files = storage.list_files(run)
    assert "executions/0001/candidate_model/1/saved_model.pb" in files and "history.html" in files

    # The served version, loaded independently from a local copy, is the reference of the server's answers.
    local = str(tmp_path / "v1")
    storage.copy_tree(storage.join(run, SERVING_DIR, "1"), local)
    serialized = [serialize(example_features(row)) for row in rows]
    expected = call_signature(tf.saved_model.load(local), "serving_default", examples=serialized)["scores"]
    earlier = set(os.listdir(versions._copies_parent()))  # this process's other servers' copies (other tests)
    server = start(ServerOptions(model_name=MODEL, model_base_path=storage.join(run, SERVING_DIR), port=None,
                                 rest_api_port=0, file_system_poll_wait_seconds=0))
    try:
        assert_close(_predict(server, serialized), expected)

        code = task.main(["--data", data, "--output-dir", run, *TINY])
        printed = capsys.readouterr().out
        second = _read_json(storage.join(run, "executions", "0002", "run.json"))
        assert second["status"] == "complete" and second["evaluation"]["compared_with"] == "served version 1"
        history = _read_json(storage.join(run, "history.json"))["executions"]
        assert [(row["id"], row["pushed_version"]) for row in history] == [("0001", 1),
                                                                          ("0002", second["push"]["version"])]
        if second["push"]["pushed"]:
            assert code == 0 and second["push"]["version"] == 2 and _versions(run) == {"1": True, "2": True}
            server.models.poll_once()
            assert _predict(server, serialized, "2")  # the new version answers
        else:  # NOT_BLESSED: nothing pushed, but the execution is uploaded all the same
            assert code == 1 and "version 1 stays served" in printed and _versions(run) == {"1": True}
        files = storage.list_files(run)
        assert "executions/0002/report/index.html" in files and "executions/0002/evaluation/summary.json" in files
        assert _copies(scratch) == []
    finally:
        server.stop()
    assert set(os.listdir(versions._copies_parent())) <= earlier  # this server's local copies of versions are gone

    # `make report RUN=gs://...` on the run tuning made: the latest execution's report drawn again, on the store.
    from evaluation import task as evaluation_task

    before = storage.file_facts(storage.join(run, "**"))
    assert evaluation_task.main(["--run", run, "--report-only"]) == 0
    assert f"report: {run}/executions/0002/report/index.html" in capsys.readouterr().out
    redrawn = {path for path, _, _ in set(storage.file_facts(storage.join(run, "**"))) ^ set(before)}
    assert f"{run}/executions/0002/report/index.html" in redrawn and all(
        path.startswith((f"{run}/executions/0002/report/", f"{run}/executions/0002/evaluation/")) for path in redrawn)
    assert _copies(scratch) == []


@pytest.mark.slow
def test_trainer_on_s3_uploads_the_model_it_trained(s3, tiny_csv, scratch, rows, tmp_path, monkeypatch, capsys):
    """`trainer.task --output-dir s3://`: the version on the store predicts exactly as the working copy's did."""
    import tensorflow as tf

    from trainer import task

    before = str(tmp_path / "before")
    upload = run_storage.upload

    def keep_then_upload(copy):  # the working copy's export, as it was before the upload
        shutil.copytree(os.path.join(copy.local, SERVING_DIR, "1"), before)
        upload(copy)

    monkeypatch.setattr(run_storage, "upload", keep_then_upload)
    run = storage.join(s3, "runs", "a")
    # Validation selection, as tests/conftest.py's tiny_config: the tiny data would otherwise train 5 fold models.
    assert task.main(["--data", tiny_csv, "--label", "target", "--output-dir", run, "--epochs", "1",
                      "--selection", "validation"]) == 0
    assert f"exported {run}/serving_model/1\n" in capsys.readouterr().out
    assert _versions(run) == {"1": True} and _copies(scratch) == []
    record = _read_json(storage.join(run, "run.json"))
    assert record["weighted"]["version_dir"] == f"{run}/serving_model/1"
    after = str(tmp_path / "after")
    storage.copy_tree(storage.join(run, SERVING_DIR, "1"), after)
    serialized = [serialize(example_features(row)) for row in rows]
    for name in ("scores", "logits", "class_ids"):
        np.testing.assert_array_equal(
            call_signature(tf.saved_model.load(after), "serving_default", examples=serialized)[name],
            call_signature(tf.saved_model.load(before), "serving_default", examples=serialized)[name])


@pytest.mark.slow  # starts a store (tests/object_storage.py)
@pytest.mark.parametrize("module", ["trainer.task", "tuning.task"])
def test_a_missing_bucket_is_one_line_and_exit_2(module, gcs, tiny_csv, scratch, capsys):
    import importlib

    run = "gs://no-such-bucket-imbalance-run/runs/r"
    argv = ["--data", tiny_csv, "--label", "target", "--output-dir", run]
    assert importlib.import_module(module).main(argv) == cli.USAGE_ERROR
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the bucket gs://no-such-bucket-imbalance-run does not exist" in errors[0], errors
    assert _copies(scratch) == []


def _fake_version(directory: str, content: str) -> None:
    """A directory shaped like a version (publish_tree copies files; it loads nothing)."""
    os.makedirs(os.path.join(directory, "variables"))
    for name in ("variables/variables.index", "saved_model.pb"):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(content)


@pytest.fixture(params=["gs", "s3"])
def bucket(request) -> str:
    return request.getfixturevalue({"gs": "gcs", "s3": "s3"}[request.param])


def _remote_run(bucket: str, tmp_path) -> str:
    """A remote run: versions 1 (marked) and 2 (a dead publisher's, unmarked), two executions, a history."""
    run = storage.join(bucket, "runs", "r")
    for version in ("1", "2"):
        _fake_version(str(tmp_path / "v" / version), f"v{version}")
    storage.publish_tree(str(tmp_path / "v" / "1"), storage.join(run, SERVING_DIR), 1)
    storage.copy_tree(str(tmp_path / "v" / "2"), storage.join(run, SERVING_DIR, "2"))
    storage.write_text(storage.join(run, "executions", "0001", "run.json"), '{"status": "complete"}')
    storage.write_text(storage.join(run, "executions", "0001", "data", "big.bin"), "shards")
    storage.write_text(storage.join(run, "executions", "0002", "run.json"), '{"status": "running"}')
    storage.write_text(storage.join(run, "executions", "0002", "data", "part.bin"), "resumed")
    storage.write_text(storage.join(run, "executions", "0002", "data", "source.json"), "{}")  # its marker, last
    storage.write_text(storage.join(run, "history.json"), "{}")
    return run


@pytest.mark.slow  # starts a store (tests/object_storage.py)
def test_working_copy_downloads_what_is_read_and_uploads_what_changed(bucket, tmp_path, scratch):
    """Without TensorFlow: the copy holds the newest marked version and what a new execution reads; the
    upload publishes version 3 (2 was taken), writes changes with local paths as the URL, removes what the run
    removed, and leaves the rest as it was."""
    run = _remote_run(bucket, tmp_path)
    copy = run_copy.download(run, run_copy.NEW_EXECUTION)
    local = copy.local
    assert sorted(os.listdir(os.path.join(local, SERVING_DIR))) == ["1", "2"]
    assert os.listdir(os.path.join(local, SERVING_DIR, "2")) == []  # a number kept, nothing copied
    assert os.path.isfile(os.path.join(local, SERVING_DIR, "1", "saved_model.pb"))
    assert not os.path.exists(os.path.join(local, "executions", "0001", "data"))  # complete: only its run.json
    assert os.path.isfile(os.path.join(local, "executions", "0002", "data", "part.bin"))  # unfinished: all
    assert os.path.basename(local) == "r"  # named as the run (the pages' titles)

    from trainer.layout import next_version

    assert next_version(os.path.join(local, SERVING_DIR)) == 3
    _fake_version(os.path.join(local, SERVING_DIR, "3"), "v3")
    with open(os.path.join(local, "executions", "0002", "run.json"), "w") as handle:
        json.dump({"status": "complete", "version_dir": os.path.join(local, SERVING_DIR, "3")}, handle)
    os.remove(os.path.join(local, "executions", "0002", "data", "part.bin"))
    run_storage.upload(copy)
    assert _versions(run) == {"1": True, "2": False, "3": True}
    assert storage.read_text(storage.join(run, SERVING_DIR, "3", "saved_model.pb")) == "v3"
    assert _read_json(storage.join(run, "executions", "0002", "run.json"))["version_dir"] == f"{run}/serving_model/3"
    files = storage.list_files(run)
    assert "executions/0002/data/part.bin" not in files and "executions/0001/data/big.bin" in files
    assert storage.read_text(storage.join(run, "history.json")) == "{}"  # unchanged, not rewritten
    shutil.rmtree(os.path.dirname(local))


@pytest.mark.slow  # starts a store (tests/object_storage.py)
def test_a_version_taken_meanwhile_stops_the_upload_before_the_records(gcs, tmp_path, scratch):
    run = _remote_run(gcs, tmp_path)
    copy = run_copy.download(run, run_copy.NEW_EXECUTION)
    _fake_version(os.path.join(copy.local, SERVING_DIR, "3"), "mine")
    with open(os.path.join(copy.local, "executions", "0002", "run.json"), "w") as handle:
        handle.write('{"status": "complete", "push": {"version": 3}}')
    _fake_version(str(tmp_path / "other"), "theirs")
    storage.publish_tree(str(tmp_path / "other"), storage.join(run, SERVING_DIR), 3)  # a concurrent execution
    with pytest.raises(storage.StorageError, match="another publisher took version 3.*nothing more was uploaded"):
        run_storage.upload(copy)
    assert storage.read_text(storage.join(run, SERVING_DIR, "3", "saved_model.pb")) == "theirs"
    assert _read_json(storage.join(run, "executions", "0002", "run.json")) == {"status": "running"}
    shutil.rmtree(os.path.dirname(copy.local))


@pytest.mark.slow  # starts a store (tests/object_storage.py)
def test_a_crash_leaves_the_store_as_it_was_and_keeps_the_copy(gcs, tmp_path, scratch, capsys):
    from tests.conftest import tiny_config

    run = _remote_run(gcs, tmp_path)
    before = {name: storage.read_text(storage.join(run, name)) for name in storage.list_files(run)}

    def crash(config):
        with open(os.path.join(config.output_dir, "executions", "0002", "run.json"), "w") as handle:
            handle.write('{"status": "complete"}')
        raise RuntimeError("a bug half-way")

    with pytest.raises(RuntimeError, match="a bug half-way"):
        run_storage.run_on(tiny_config(run, "unused.csv"), crash)
    assert {name: storage.read_text(storage.join(run, name)) for name in storage.list_files(run)} == before
    (kept,) = _copies(scratch)
    assert f"the working copy is kept in {kept}" in capsys.readouterr().err


@pytest.mark.slow  # starts a store (tests/object_storage.py)
def test_what_a_crashed_run_put_on_the_store_for_its_workers_is_removed(gcs, tmp_path, scratch):
    """`run_storage.publish` (a model for TFMA's workers) writes a directory of the copy at its URL, and one
    copied from the store not again; a crash afterwards leaves the store as it was, every object untouched."""
    from tests.conftest import tiny_config

    run = _remote_run(gcs, tmp_path)
    before = storage.file_facts(storage.join(run, "**"))
    seen = {}

    def crash(config):
        execution = os.path.join(config.output_dir, "executions", "0002")
        model = os.path.join(execution, "candidate_model", "1")
        os.makedirs(os.path.join(model, "variables"))
        for name in (SAVED_MODEL_FILE, "variables/variables.index"):
            with open(os.path.join(model, name), "w") as handle:
                handle.write(name)
        seen["urls"] = [run_storage.publish(model), run_storage.publish(os.path.join(execution, "data"))]
        seen["during"] = storage.list_files(storage.join(run, "executions", "0002"))
        raise RuntimeError("a bug after TFMA")

    with pytest.raises(RuntimeError, match="a bug after TFMA"):
        run_storage.run_on(tiny_config(run, "unused.csv"), crash)
    assert seen["urls"] == [f"{run}/executions/0002/candidate_model/1", f"{run}/executions/0002/data"]
    assert {f"candidate_model/1/{SAVED_MODEL_FILE}", "candidate_model/1/variables/variables.index"} <= set(
        seen["during"]), seen["during"]
    assert sorted(storage.file_facts(storage.join(run, "**"))) == sorted(before)


@pytest.mark.slow  # starts a store (tests/object_storage.py)
def test_a_failed_upload_removes_its_new_files_and_keeps_the_copy(gcs, tmp_path, scratch, monkeypatch):
    from tests.conftest import tiny_config

    run = _remote_run(gcs, tmp_path)
    before = {name: storage.read_text(storage.join(run, name)) for name in storage.list_files(run)}

    def execution(config):
        for name in ("a.txt", "b.bin", "run.json"):
            path = os.path.join(config.output_dir, "executions", "0003", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                handle.write(name)
        return "done"

    copy_file = storage.copy_file

    def failing(source, target):
        if target.endswith("b.bin"):
            raise OSError("the store went away")
        copy_file(source, target)

    monkeypatch.setattr(storage, "copy_file", failing)
    with pytest.raises(storage.StorageError, match="the store went away.*kept in") as raised:
        run_storage.run_on(tiny_config(run, "unused.csv"), execution)
    (kept,) = _copies(scratch)
    assert kept in str(raised.value) and os.path.isfile(os.path.join(kept, "r", "executions", "0003", "a.txt"))
    assert {name: storage.read_text(storage.join(run, name)) for name in storage.list_files(run)} == before


@pytest.mark.parametrize("shared", ["multi_worker", "distributed_search"])
def test_several_processes_cannot_share_a_remote_run(shared, monkeypatch, scratch):
    """Each process would work on a copy of its own: one line before any request to the store."""
    from tests.conftest import tiny_config

    overrides = {"distribute": "multi_worker"} if shared == "multi_worker" else {}
    if shared == "distributed_search":
        for key, value in (("KERASTUNER_TUNER_ID", "worker0"), ("KERASTUNER_ORACLE_IP", "127.0.0.1"),
                           ("KERASTUNER_ORACLE_PORT", "8000")):
            monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="run by one process"):
        run_storage.run_on(tiny_config("gs://bucket/runs/r", "unused.csv", **overrides), lambda config: None)
    assert _copies(scratch) == []


@pytest.mark.parametrize("pipeline", ["trainer.pipeline.train_and_export", "tuning.pipeline.run_tuning"])
def test_the_python_api_refuses_a_remote_run_directory_before_writing(pipeline, tmp_path, monkeypatch):
    """Called directly (not through `run_on`), a pipeline refuses gs:// with the way to do it, writing nothing."""
    import importlib

    from trainer.config import RunConfig

    module, name = pipeline.rsplit(".", 1)
    monkeypatch.chdir(tmp_path)  # a local directory named 'gs:' would appear here
    with pytest.raises(ConfigError, match="run_storage.run_on"):
        getattr(importlib.import_module(module), name)(RunConfig(data="rows.csv", output_dir="gs://b/runs/r"))
    assert os.listdir(tmp_path) == []
