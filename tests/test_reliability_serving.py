"""The model server under hostile or heavy use.

- categorical values never seen in training are served (out-of-vocabulary bucket), not refused;
- fuzzed REST bodies and paths never get a 5xx (hypothesis);
- URLs cannot name anything outside the base path; nothing decodes requests with pickle or eval;
- listeners bind 127.0.0.1 unless told otherwise;
- a load test against a server process while versions are copied in and removed: no failed request,
  bounded memory and threads, and swapped-out versions are freed.

413 for oversized bodies and slow clients are in tests/test_serving_rest.py; the
hot swap under REST + gRPC load in tests/test_serving_versions.py.
"""

from __future__ import annotations

import gc
import http.client
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
import weakref

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.app import ServerOptions
from serving.server import _parser
from serving.versions import VersionManager
from tests.conftest import REPO
from tests.serving_fixtures import (
    MODEL,
    assert_close,
    call_signature,
    example_features,
    feature_inputs,
    feature_tensors,
    free_port,
    post,
    rest_url,
    serialize,
)

CATEGORICAL = ("region", "channel", "merchant")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- unseen categorical values ------------------------------------------------------------------------------------

def _with_categories(rows: list[dict], values: tuple[str, str, str]) -> list[dict]:
    return [{**row, **dict(zip(CATEGORICAL, values, strict=True))} for row in rows]


UNSEEN = ("never-seen-region", "☃ unseen channel", "m999-not-in-vocabulary")
UNSEEN_TOO = ("Zürich", "fax", "")


@pytest.fixture(scope="module")
def unseen_expected(reference, rows):
    return call_signature(reference, "predict_features", **feature_tensors(_with_categories(rows, UNSEEN)))


def test_unseen_categories_share_the_out_of_vocabulary_bucket_in_the_saved_model(reference, rows, unseen_expected):
    other = call_signature(reference, "predict_features", **feature_tensors(_with_categories(rows, UNSEEN_TOO)))
    missing = call_signature(reference, "predict_features", **feature_tensors(_with_categories(rows, ("",) * 3)))
    scores = unseen_expected["scores"]
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
    # One OOV index, shared with missing (""): any unseen value gives the same output as a missing one.
    np.testing.assert_array_equal(scores, other["scores"])
    np.testing.assert_array_equal(scores, missing["scores"])
    examples = [serialize(example_features(row)) for row in _with_categories(rows, UNSEEN)]
    by_examples = call_signature(reference, "serving_default", examples=examples)
    assert_close(by_examples["scores"], scores)


@pytest.mark.slow
def test_unseen_categories_over_rest_predict_and_classify(server, reference, rows, unseen_expected):
    unseen_rows = _with_categories(rows, UNSEEN)
    columns = feature_inputs(unseen_rows)
    instances = [{name: columns[name][i] for name in columns} for i in range(len(rows))]
    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "instances": instances})
    assert response.status_code == 200, response.text
    assert_close([p["scores"] for p in response.json()["predictions"]], unseen_expected["scores"])
    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "inputs": columns})
    assert response.status_code == 200, response.text
    assert_close(response.json()["outputs"]["scores"], unseen_expected["scores"])
    assert response.json()["outputs"]["class_ids"] == unseen_expected["class_ids"].tolist()

    examples = [example_features(row) for row in unseen_rows]
    response = post(rest_url(server, ":classify"), {"examples": examples})
    assert response.status_code == 200, response.text
    expected = call_signature(reference, "classification", inputs=[serialize(e) for e in examples])
    assert_close([[pair[1] for pair in result] for result in response.json()["results"]], expected["scores"])


# --- fuzzing the REST API -------------------------------------------------------------------------------------------

_FEATURES = tuple(f"x{i}" for i in range(12)) + CATEGORICAL
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
            | st.sampled_from(["north", "", "\ud800", "1.5", "AAAA", "/wAgZ2FyYmFnZQ=="])
            | st.builds(lambda t: {"b64": t}, st.text(max_size=12) | st.sampled_from(["YQ==", "!!", "CgA="])))
_json = st.recursive(_scalars, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.text(max_size=6) | st.sampled_from(_FEATURES), children, max_size=4),
                     max_leaves=16)
_row = st.dictionaries(st.sampled_from(_FEATURES), _json, max_size=len(_FEATURES))
_nested = st.integers(min_value=1, max_value=120).map(lambda depth: "[" * depth + "1" + "]" * depth)
_body = st.one_of(
    st.fixed_dictionaries({}, optional={
        "signature_name": st.sampled_from(["serving_default", "predict_features", "classification", "", "nope"])
        | _json,
        "instances": st.lists(_scalars, min_size=1, max_size=3) | st.lists(_row | _json, max_size=4) | _json,
        "inputs": _row | _json,
        "examples": st.lists(_row, min_size=1, max_size=3) | _json,
        "context": _row | _json,
    }).map(lambda body: json.dumps(body).encode()),
    _nested.map(lambda nested: ('{"instances": ' + nested + "}").encode()),
    _json.map(lambda body: json.dumps(body).encode()),
    st.binary(max_size=64),
)
_ACTIONS = (":predict", ":classify", ":regress", "/versions/1:predict", "/labels/stable:classify", "/metadata", "")


def _request(server, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _assert_no_5xx(status: int, payload: bytes, what: str) -> None:
    assert status < 500 or (status == 501 and ":regress" in what), (status, payload[:300], what)
    if status >= 400:
        assert "error" in json.loads(payload), payload[:300]


@pytest.mark.slow
@FUZZ
@given(body=_body, action=st.sampled_from(_ACTIONS))
def test_fuzzed_bodies_never_get_a_5xx(server, body, action):
    path = f"/v1/models/{MODEL}{action}"
    status, payload = _request(server, "POST", path, body)
    _assert_no_5xx(status, payload, f"POST {path} {body[:200]!r}")


@pytest.mark.slow
@pytest.mark.parametrize("action, body", [
    (":predict", '{"instances": ' + "[" * 100 + '"a"' + "]" * 100 + "}"),  # was 500: numpy's 64 dimensions
    (":predict", '{"instances": ' + "[" * 900 + "]" * 900 + "}"),  # near the JSON parser's own depth limit
    (":predict", '{"instances": ["\\ud800"]}'),  # was 500: a lone surrogate cannot be UTF-8 encoded
    (":predict", '{"signature_name": "predict_features", "instances": [{"region": "\\udfff"}]}'),
    (":classify", '{"examples": [{"region": "\\ud800"}]}'),  # was 500
    (":classify", '{"examples": [{"x0": ' + "9" * 400 + "}]}"),  # was 500: int too large for a float
    (":classify", '{"examples": [{"x0": 1}], "context": {"x1": -' + "9" * 400 + "}}"),
    (":predict", '{"instances": [' + '{"a":' * 500 + "1" + "}" * 500 + "]}"),  # deep object as a leaf
    (":classify", '{"examples": [{"x0": ' + '{"a":' * 500 + "1" + "}" * 500 + "}]}"),
])
def test_requests_that_once_got_a_500_are_400(server, action, body):
    status, payload = _request(server, "POST", f"/v1/models/{MODEL}{action}", body.encode())
    assert status == 400, (status, payload[:300])
    assert "error" in json.loads(payload)


_segment = st.one_of(
    st.text(max_size=10).map(lambda text: urllib.parse.quote(text, safe="")),
    st.text(alphabet="./%:-0123456789abcdef", max_size=10),
    st.sampled_from(["..", "..%2F..", "%2e%2e", "-1", "0", "1", "01", "9" * 30, str(2 ** 63), str(2 ** 63 - 1),
                     "%F0%9F%98%80", "%D9%A3", "%00", "1%00", "imbalance", "%2F", ""]),
)


@pytest.mark.slow
@FUZZ
@given(name=_segment, kind=st.sampled_from(["", "/versions/", "/labels/"]), ref=_segment,
       action=st.sampled_from(_ACTIONS + ("/metadata/x", ":", "/")), method=st.sampled_from(["GET", "POST"]))
def test_fuzzed_paths_never_get_a_5xx(server, name, kind, ref, action, method):
    path = f"/v1/models/{name}{kind}{ref if kind else ''}{action}"
    body = b'{"instances": ["a"]}' if method == "POST" else None
    status, payload = _request(server, method, path, body)
    _assert_no_5xx(status, payload, f"{method} {path}")
    if status == 200:  # only the served model, by name, and its only version
        match = re.match(r"^/v1/models/([^/:]*)(?:/versions/([^/:]*))?", path)
        assert urllib.parse.unquote(match[1]) == MODEL and (match[2] is None or int(match[2]) == 1), path


# --- the URL never reaches outside the base path -------------------------------------------------------------------

@pytest.fixture(scope="module")
def decoy(server, version_dir):
    """A valid SavedModel just outside the base path, where a path-joining bug would find it."""
    outside = os.path.join(os.path.dirname(server.options.model_base_path), "7")
    shutil.copytree(version_dir, outside)
    yield outside
    shutil.rmtree(outside)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [
    "/versions/..%2F7:predict", "/versions/..%2F..%2F7:predict", "/versions/%2E%2E%2F7:predict",
    "/versions/../7:predict", "/versions/7:predict", "/versions/-1:predict", "/versions/+1:predict",
    "/versions/1.0:predict", "/versions/0x1:predict", "/versions/" + "9" * 40 + ":predict",
    f"/versions/{2 ** 63}:predict", "/versions/%D9%A3:predict", "/versions/%EF%BC%91:predict",
    "/versions/1%00:predict", "/versions/%20:predict", "/labels/..%2F7:predict", "/labels/%00:predict",
])
def test_versions_from_the_url_never_reach_the_file_system(server, decoy, suffix):
    status, payload = _request(server, "POST", f"/v1/models/{MODEL}{suffix}", b'{"instances": ["a"]}')
    assert status in (400, 404), (status, payload)
    assert "error" in json.loads(payload)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["..%2F7", "..", "%2E%2E", "..%2F..%2Fetc", "imbalance%2F..%2F7", "%00"])
def test_model_names_from_the_url_never_reach_the_file_system(server, decoy, name):
    status, payload = _request(server, "POST", f"/v1/models/{name}:predict", b'{"instances": ["a"]}')
    assert status == 404 and "error" in json.loads(payload), (status, payload)


@pytest.mark.slow
@pytest.mark.parametrize("name, version", [("../7", None), ("imbalance", -1), ("imbalance", 7),
                                           ("imbalance", 2 ** 63 - 1), ("..", 1)])
def test_grpc_names_and_versions_never_reach_the_file_system(server, decoy, rows, name, version):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "predict_features"
    if version is not None:
        request.model_spec.version.value = version
    for key, value in feature_tensors(rows).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert info.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_serving_code_never_unpickles_or_evaluates_request_data():
    forbidden = re.compile(r"\bpickle\b|\bcPickle\b|\bmarshal\b|\bshelve\b|\bdill\b|(?<![\w.])eval\s*\(|"
                           r"(?<![\w.])exec\s*\(|__import__\s*\(|yaml\.load\s*\(|\bnp\.load\s*\(|allow_pickle")
    serving = os.path.join(REPO, "serving")
    sources = [os.path.join(serving, name) for name in sorted(os.listdir(serving)) if name.endswith(".py")]
    assert len(sources) >= 5
    hits = []
    for path in sources:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if forbidden.search(line):
                    hits.append(f"{os.path.basename(path)}:{number}: {line.strip()}")
    assert hits == []


# --- loopback by default --------------------------------------------------------------------------------------------

def test_binds_loopback_by_default(server):
    assert ServerOptions(MODEL, "x").host == "127.0.0.1"
    assert _parser().parse_args(["--model_base_path", "x"]).host == "127.0.0.1"
    assert server.options.host == "127.0.0.1"  # the fixture does not pass a host
    assert server._rest.server_address[0] == "127.0.0.1"
    assert set(_listening(os.getpid(), {server.rest_port, server.grpc_port}).values()) == {"127.0.0.1"}


def _listening(pid: int, ports: set[int]) -> dict[int, str]:
    """Port -> local address of the process's listening TCP sockets on `ports` (from /proc)."""
    found = {}
    for table, width in (("tcp", 8), ("tcp6", 32)):  # hex digits of the address
        with open(f"/proc/{pid}/net/{table}") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                address, port = fields[1].split(":")
                if fields[3] == "0A" and int(port, 16) in ports:  # 0A = LISTEN
                    raw = bytes.fromhex(address)
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    ip = ipaddress.ip_address(words if width == 32 else raw[::-1])
                    found[int(port, 16)] = str(getattr(ip, "ipv4_mapped", None) or ip)  # ::ffff:127.0.0.1 too
    return found


# --- swapped-out versions are freed ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_swapped_out_and_removed_versions_are_freed(tmp_path, version_dir):
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    manager = VersionManager(MODEL, str(base))
    manager.poll_once()
    held = manager.servable(MODEL)  # an in-flight request keeps its version...
    first = weakref.ref(held)
    shutil.copytree(version_dir, base / "2")
    manager.poll_once()
    shutil.rmtree(base / "1")
    gc.collect()
    assert first() is not None and manager.serving_version == 2
    del held  # ...until it ends
    gc.collect()
    assert first() is None
    second = weakref.ref(manager.servable(MODEL))
    shutil.copytree(version_dir, base / "3")
    manager.poll_once()
    shutil.rmtree(base / "2")
    manager.poll_once()
    gc.collect()
    assert second() is None and manager.serving_version == 3


# --- load test against a server process -----------------------------------------------------------------------------

def _proc_status(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "Threads"):
                values[key] = int(rest.split()[0])
    return values


@pytest.mark.slow
def test_load_while_versions_are_copied_in_and_removed(tmp_path, version_dir, rows):
    base = tmp_path / "model"
    shutil.copytree(version_dir, base / "1")
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving.server", f"--model_name={MODEL}", f"--model_base_path={base}",
               f"--rest_api_port={rest_port}", f"--port={grpc_port}", "--file_system_poll_wait_seconds=0.1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO})
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}"
    predict = json.dumps({"signature_name": "predict_features", "inputs": feature_inputs(rows)})
    classify = json.dumps({"examples": [example_features(row) for row in rows]})
    try:
        for _ in range(600):  # until loaded; bounded
            assert process.poll() is None, "the server exited"
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            threading.Event().wait(0.1)
        # Not told a host: listens on loopback only (IPv4 and IPv6 wildcards would show here).
        assert _listening(process.pid, {rest_port, grpc_port}) == {rest_port: "127.0.0.1", grpc_port: "127.0.0.1"}

        with requests.Session() as session:  # warm up to a steady state before measuring
            for _ in range(100):
                assert session.post(f"{url}:predict", data=predict, timeout=30).status_code == 200
        start = _proc_status(process.pid)

        stop, failures, served, counts = threading.Event(), [], set(), []

        def client(index: int):
            done = 0
            with requests.Session() as session:
                for _ in range(1500):  # bounded
                    if stop.is_set():
                        break
                    done += 1
                    if index % 2:
                        response = session.post(f"{url}:predict", data=predict, timeout=30)
                        ok = response.status_code == 200 and len(response.json()["outputs"]["scores"]) == len(rows)
                    else:
                        response = session.post(f"{url}:classify", data=classify, timeout=30)
                        ok = response.status_code == 200 and len(response.json()["results"]) == len(rows)
                    if not ok:
                        failures.append((response.status_code, response.text[:200]))
            counts.append(done)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        peak = dict(start)
        for version in range(2, 7):
            staging = base / f".staging-{version}"
            shutil.copytree(version_dir, staging)
            os.rename(staging, base / str(version))
            shutil.rmtree(base / str(version - 1))  # at once: the old one may still be serving
            for _ in range(600):  # until the new version serves; bounded
                status = requests.get(url, timeout=30).json()["model_version_status"][0]
                if (status["version"], status["state"]) == (str(version), "AVAILABLE"):
                    break
                stop.wait(0.05)
            served.add(status["version"])
            now = _proc_status(process.pid)
            peak = {key: max(peak[key], now[key]) for key in peak}
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        end = _proc_status(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()

    assert failures == []
    assert len(counts) == 4 and min(counts) > 0
    assert served == {"2", "3", "4", "5", "6"}
    assert os.listdir(base) == ["6"]
    # Memory: five loads and unloads under load stay within a quarter of the starting RSS (~0.8 GB,
    # mostly TensorFlow); a version kept alive per swap would add its graph and variables each time.
    assert max(peak["VmRSS"], end["VmRSS"]) < start["VmRSS"] * 1.25, (start, peak, end)
    assert end["Threads"] < start["Threads"] + 16, (start, end)  # connection threads end with their clients
