"""Version policy: latest integer version, hidden/incomplete dirs ignored, hot swap without failures."""

from __future__ import annotations

import os
import shutil
import threading

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.app import ServerOptions, start
from serving.versions import list_versions
from tests.serving_fixtures import MODEL, feature_inputs, feature_tensors, post, rest_url


def test_list_versions_ignores_staging_non_integer_and_incomplete(tmp_path):
    for name in ("1", "12", ".staging-abc", "abc", "-3", "٣", "7"):
        (tmp_path / name).mkdir()
    for name in ("1", "12", ".staging-abc", "abc", "-3", "٣"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "8").write_text("a file, not a version")
    assert list_versions(str(tmp_path)) == {1: str(tmp_path / "1"), 12: str(tmp_path / "12")}
    assert list_versions(str(tmp_path / "missing")) == {}


def _status(server) -> list[tuple[str, str]]:
    body = requests.get(rest_url(server), timeout=30).json()
    return [(entry["version"], entry["state"]) for entry in body["model_version_status"]]


def _copy_version(source: str, base, version: int) -> None:
    """As the exporter: write to a hidden staging dir, then rename into place."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    os.rename(staging, base / str(version))


@pytest.mark.slow
def test_hot_swap_under_load_fails_no_request(tmp_path, version_dir, rows):
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    options = ServerOptions(MODEL, str(base), port=0, rest_api_port=0, file_system_poll_wait_seconds=0.05)
    payload = {"signature_name": "predict_features", "inputs": feature_inputs(rows)}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_features"
    for name, value in feature_tensors(rows).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))

    with start(options) as server, grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stop, failures, served_versions, counts = threading.Event(), [], [], {"rest": 0, "grpc": 0}

        def rest_loop():
            for _ in range(5000):  # bounded even if the swap never happened
                if stop.is_set():
                    return
                response = post(rest_url(server, ":predict"), payload)
                counts["rest"] += 1
                if response.status_code != 200:
                    failures.append(response.text)

        def grpc_loop():
            for _ in range(5000):
                if stop.is_set():
                    return
                try:
                    served_versions.append(stub.Predict(request, timeout=30).model_spec.version.value)
                except grpc.RpcError as error:
                    failures.append(error.details())
                counts["grpc"] += 1

        threads = [threading.Thread(target=loop) for loop in (rest_loop, grpc_loop, rest_loop)]
        for thread in threads:
            thread.start()
        # A half-copied version in a hidden dir is never picked up.
        shutil.copytree(version_dir, base / ".staging-manual")
        server.versions.poll_once()
        assert server.versions.serving_version == 1
        shutil.rmtree(base / ".staging-manual")

        _copy_version(version_dir, base, 2)
        swapped = threading.Event()
        for _ in range(1200):  # the poll thread loads version 2; bounded wait
            if server.versions.serving_version == 2 and served_versions.count(2) >= 5:
                swapped.set()
                break
            stop.wait(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

        assert swapped.is_set(), "version 2 was never served"
        assert failures == []
        assert served_versions[0] == 1 and served_versions[-1] == 2
        assert counts["rest"] > 0 and counts["grpc"] > 0
        assert _status(server) == [("2", "AVAILABLE"), ("1", "END")]


@pytest.mark.slow
def test_removed_and_broken_versions(tmp_path, version_dir, rows):
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    _copy_version(version_dir, base, 2)
    options = ServerOptions(MODEL, str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
                            max_num_load_retries=1)
    payload = {"signature_name": "predict_features", "inputs": feature_inputs(rows)}
    with start(options) as server:
        assert _status(server) == [("2", "AVAILABLE")]

        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        server.versions.poll_once()
        body = requests.get(rest_url(server, "/versions/3"), timeout=30).json()
        entry = body["model_version_status"][0]
        assert entry["state"] == "END" and entry["status"]["error_code"] != "OK"
        assert entry["status"]["error_message"]
        assert server.versions.serving_version == 2
        assert post(rest_url(server, ":predict"), payload).status_code == 200
        for _ in range(3):  # retried max_num_load_retries times, then given up on
            server.versions.poll_once()
        assert server.versions.serving_version == 2
        shutil.rmtree(base / "3")

        shutil.rmtree(base / "2")  # the served version disappears: fall back to the highest left
        server.versions.poll_once()
        assert server.versions.serving_version == 1
        assert post(rest_url(server, "/versions/1:predict"), payload).status_code == 200
        assert post(rest_url(server, "/versions/2:predict"), payload).status_code == 404

        shutil.rmtree(base / "1")  # nothing left: unloaded, requests are 404, the server stays up
        server.versions.poll_once()
        assert server.versions.serving_version is None
        assert post(rest_url(server, ":predict"), payload).status_code == 404
        assert ("1", "END") in _status(server)
