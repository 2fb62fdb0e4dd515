"""The server on a gs:// and s3:// model base path (tests/object_storage.py's emulators), end to end.

The reference is the exported SavedModel loaded from local disk with
`tf.saved_model.load`, independently of the server and of trainer.storage.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from serving.app import ServerOptions, start
from tests.conftest import REPO
from tests.serving_fixtures import (
    MODEL,
    assert_close,
    call_signature,
    example_features,
    post,
    rest_url,
    serialize,
)
from trainer import storage
from trainer.atomic import publish_version

pytestmark = pytest.mark.slow


def _statuses(server) -> dict[str, str]:
    body = requests.get(rest_url(server), timeout=30).json()
    return {s["version"]: s["state"] for s in body["model_version_status"]}


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_server_polls_object_storage_and_never_sees_half_a_version(store, request, version_dir, reference, rows):
    root = request.getfixturevalue({"gs": "gcs", "s3": "s3"}[store])
    base = storage.join(root, "run", "serving_model")
    publish_version(version_dir, base)
    running = start(ServerOptions(model_name=MODEL, model_base_path=base, port=None, rest_api_port=0,
                                  file_system_poll_wait_seconds=0))
    try:
        serialized = [serialize(example_features(row)) for row in rows]
        expected = call_signature(reference, "serving_default", examples=serialized)
        response = post(rest_url(running, ":predict"), {"instances": [{"b64": _b64(s)} for s in serialized]})
        assert response.status_code == 200, response.text
        assert_close([p["scores"] for p in response.json()["predictions"]], expected["scores"])

        # A second publish under way (every file but the marker): the server must not even try it.
        storage.copy_tree(version_dir, storage.join(base, "2"))
        running.models.poll_once()
        assert _statuses(running) == {"1": "AVAILABLE"}
        storage.remove_tree(storage.join(base, "2"))  # that publisher died; its leftovers are cleaned up

        assert publish_version(version_dir, base) == storage.join(base, "2")
        running.models.poll_once()
        assert _statuses(running) == {"2": "AVAILABLE", "1": "END"}
        response = post(rest_url(running, "/versions/2:predict"), {"instances": [{"b64": _b64(s)} for s in serialized]})
        assert_close([p["scores"] for p in response.json()["predictions"]], expected["scores"])
    finally:
        running.stop()


def test_server_process_on_gcs_answers_and_takes_a_new_version(gcs, version_dir, reference, rows):
    """`python -m serving.server --model_base_path gs://...`: answers, then serves version 2 once published."""
    import os
    import signal

    from tests.serving_fixtures import free_port

    base = storage.join(gcs, "run", "serving_model")
    publish_version(version_dir, base)
    rest_port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "serving.server", f"--model_name={MODEL}",
                                f"--model_base_path={base}", "--port=0", f"--rest_api_port={rest_port}",
                                "--file_system_poll_wait_seconds=1"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}"
    serialized = [serialize(example_features(row)) for row in rows]
    expected = call_signature(reference, "serving_default", examples=serialized)
    try:
        assert _wait_for(process, url, "1"), process.stderr.read().decode()[-2000:] if process.poll() else "no v1"
        response = post(f"{url}:predict", {"instances": [{"b64": _b64(s)} for s in serialized]})
        assert response.status_code == 200, response.text
        assert_close([p["scores"] for p in response.json()["predictions"]], expected["scores"])
        publish_version(version_dir, base)
        assert _wait_for(process, url, "2"), "version 2 was not served"
        body = requests.get(url, timeout=30).json()
        assert {s["version"]: s["state"] for s in body["model_version_status"]} == {"2": "AVAILABLE", "1": "END"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(process, url: str, version: str) -> bool:
    """Polls the status until `version` is AVAILABLE; bounded (about 4 minutes), False if it never is."""
    for _ in range(480):
        if process.poll() is not None:
            return False
        try:
            states = {s["version"]: s["state"] for s in requests.get(url, timeout=5).json()["model_version_status"]}
            if states.get(version) == "AVAILABLE":
                return True
        except (requests.ConnectionError, KeyError, ValueError):
            pass
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    return False


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@pytest.mark.parametrize("path, message", [
    ("gs://no-such-bucket-imbalance/serving_model", "the bucket gs://no-such-bucket-imbalance does not exist"),
    ("hdfs://namenode/serving_model", "unsupported storage scheme hdfs://"),
])
def test_server_bad_object_storage_path_is_one_line_exit_2(gcs, path, message):
    import os

    done = subprocess.run([sys.executable, "-m", "serving.server", "--model_base_path", path, "--rest_api_port",
                           "0", "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
