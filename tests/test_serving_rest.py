"""REST API: same numbers as the SavedModel, TF Serving's JSON shapes, errors as 4xx."""

from __future__ import annotations

import json
import socket

import pytest
import requests
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tests.serving_fixtures import (
    MODEL,
    assert_close,
    b64,
    call_signature,
    example_features,
    feature_inputs,
    feature_tensors,
    post,
    rest_url,
    serialize,
)

pytestmark = pytest.mark.slow
OUTPUTS = ("class_ids", "logits", "probabilities", "scores")


def test_status_has_tf_serving_shape(server):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(rest_url(server), timeout=30).json() == expected
    assert requests.get(rest_url(server, "/versions/1"), timeout=30).json() == expected
    assert requests.get(rest_url(server, "/labels/stable"), timeout=30).json() == expected


def test_metadata_is_the_saved_signature_def_map(server, version_dir):
    body = requests.get(rest_url(server, "/metadata"), timeout=30).json()
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    saved = saved_model_pb2.SavedModel()
    with open(f"{version_dir}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    expected = get_model_metadata_pb2.SignatureDefMap(signature_def=saved.meta_graphs[0].signature_def)
    served = json_format.ParseDict(body["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap())
    assert served == expected
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["classification"]["method_name"] == "tensorflow/serving/classify"
    assert signatures["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert signatures["predict_features"]["inputs"]["x0"]["tensor_shape"]["dim"][0]["size"] == "-1"
    versioned = requests.get(rest_url(server, "/versions/1/metadata"), timeout=30).json()
    assert versioned == body


def test_predict_features_row_and_columnar_match_saved_model(server, reference, rows):
    expected = call_signature(reference, "predict_features", **feature_tensors(rows))
    columns = feature_inputs(rows)
    instances = [{name: columns[name][i] for name in columns} for i in range(len(rows))]

    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(rows) and set(predictions[0]) == set(OUTPUTS)
    for name in OUTPUTS:
        assert_close([p[name] for p in predictions], expected[name])

    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "inputs": columns})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert set(outputs) == set(OUTPUTS)
    for name in OUTPUTS:
        assert_close(outputs[name], expected[name])
    assert [p["class_ids"] for p in predictions] == expected["class_ids"].tolist()


def test_serving_default_with_b64_examples_matches_saved_model(server, reference, rows):
    serialized = [serialize(example_features(row)) for row in rows]
    expected = call_signature(reference, "serving_default", examples=serialized)
    for url in (rest_url(server, ":predict"), rest_url(server, "/versions/1:predict"),
                rest_url(server, "/labels/stable:predict")):
        row_body = post(url, {"instances": [b64(s) for s in serialized]}).json()
        column_body = post(url, {"inputs": {"examples": [b64(s) for s in serialized]}}).json()
        named_rows = post(url, {"instances": [{"examples": b64(s)} for s in serialized]}).json()
        for name in OUTPUTS:
            assert_close([p[name] for p in row_body["predictions"]], expected[name])
            assert_close(column_body["outputs"][name], expected[name])
            assert_close([p[name] for p in named_rows["predictions"]], expected[name])


def test_classify_matches_classification_signature(server, reference, rows):
    features = [example_features(row) for row in rows]
    context = {"x11": 0.25}
    examples = [{k: v for k, v in f.items() if k != "x11"} for f in features]
    merged = [{**context, **example} for example in examples]
    expected = call_signature(reference, "classification", inputs=[serialize(f) for f in merged])

    for payload in ({"examples": examples, "context": context},
                    {"signature_name": "classification", "examples": examples, "context": context}):
        response = post(rest_url(server, ":classify"), payload)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == len(rows)
        assert [[pair[0] for pair in result] for result in results] == [["0", "1"]] * len(rows)
        assert_close([[pair[1] for pair in result] for result in results], expected["scores"])


def test_chunked_request_body(server, rows):
    body = json.dumps({"signature_name": "predict_features", "inputs": feature_inputs(rows)}).encode()
    chunks = (body[i:i + 100] for i in range(0, len(body), 100))  # a generator: requests sends it chunked
    response = requests.post(rest_url(server, ":predict"), data=chunks, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["outputs"]["scores"]) == len(rows)


def _instance(rows, **changes):
    columns = feature_inputs(rows[:1])
    instance = {name: values[0] for name, values in columns.items()}
    instance.update(changes)
    return {key: value for key, value in instance.items() if value is not _DROP}


_DROP = object()


@pytest.mark.parametrize("suffix, payload, status, fragment", [
    (":predict", b"{not json", 400, "JSON Parse error"),
    (":predict", b"[1, 2]", 400, "JSON object"),
    (":predict", {"signature_name": "predict_features"}, 400, "Missing 'inputs' or 'instances'"),
    (":predict", {"instances": [], "inputs": {}}, 400, "both"),
    (":predict", {"instances": []}, 400, "empty"),
    (":predict", {"instances": "abc"}, 400, "list"),
    (":predict", {"instances": [1.5]}, 400, "string"),
    (":predict", {"instances": [{"b64": "!!not base64!!"}]}, 400, "base64"),
    (":predict", {"instances": [{"b64": "/wAgZ2FyYmFnZQ=="}]}, 400, "rejected its input"),
    (":predict", {"signature_name": "nope", "instances": ["a"]}, 400, "nope"),
    (":predict", {"signature_name": 3, "instances": ["a"]}, 400, "signature_name"),
    (":predict", {"signature_name": "predict_features", "instances": [1.0]}, 400, "inputs"),
    (":predict", {"signature_name": "predict_features", "inputs": {"x0": [1.0], "x1": [1.0, 2.0]}}, 400,
     "different numbers of rows"),
    (":classify", {"examples": []}, 400, "examples"),
    (":classify", {"examples": [{"x0": [1, "a"]}]}, 400, "expecting type: int64"),
    (":classify", {"examples": [{"x0": "text for a numeric"}]}, 400, "x0"),
    (":classify", {"signature_name": "predict_features", "examples": [{"x0": 1.0}]}, 400, "Expected one input"),
    (":classify", {"examples": [{"x0": 1}], "context": [1]}, 400, "context"),
    (":regress", {"examples": [{"x0": 1.0}]}, 400, "Expected one output Tensor."),  # no regress signature
    ("/versions/7:predict", {"instances": ["a"]}, 404, "Specific(imbalance, 7)"),
    ("/versions/abc:predict", {"instances": ["a"]}, 400, "version"),
    ("/versions/..%2F..:predict", {"instances": ["a"]}, 400, "version"),
    ("/labels/canary:predict", {"instances": ["a"]}, 400, "label"),
    (":explode", {"instances": ["a"]}, 400, "Malformed request"),
])
def test_bad_requests_are_4xx_with_a_message(server, suffix, payload, status, fragment):
    response = post(rest_url(server, suffix), payload)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert requests.get(rest_url(server), timeout=30).status_code == 200  # still serving


@pytest.mark.parametrize("change, fragment", [
    ({"x0": "1.5"}, "number"),
    ({"x0": None}, "number"),
    ({"x0": True}, "number"),
    ({"x0": [1.0, 2.0]}, "shape"),
    ({"region": 3}, "string"),
    ({"bogus": 1.0}, "unknown inputs: bogus"),
])
def test_wrong_features_are_400(server, rows, change, fragment):
    payload = {"signature_name": "predict_features", "instances": [_instance(rows), _instance(rows, **change)]}
    response = post(rest_url(server, ":predict"), payload)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_ragged_columnar_input_is_400(server, rows):
    columns = feature_inputs(rows)
    columns["x0"] = [[1.0], 2.0]
    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "inputs": columns})
    assert response.status_code == 400 and "rectangular" in response.json()["error"]


def test_unknown_model_and_paths_are_404(server):
    base = f"http://127.0.0.1:{server.rest_port}"
    assert requests.get(f"{base}/v1/models/other", timeout=30).status_code == 404
    assert requests.get(f"{base}/v1/models/{MODEL}/versions/9", timeout=30).status_code == 404
    response = post(f"{base}/v1/models/other:predict", {"instances": ["a"]})
    assert response.status_code == 404 and "Latest(other)" in response.json()["error"]
    assert requests.get(f"{base}/index.html", timeout=30).status_code == 404
    assert requests.get(f"{base}/v1/models/{MODEL}/metadata/extra", timeout=30).status_code == 400


def test_oversized_body_is_413_and_server_stays_up(server):
    response = post(rest_url(server, ":predict"), b" " * (2 << 20))
    assert response.status_code == 413 and "exceeds" in response.json()["error"]
    assert requests.get(rest_url(server), timeout=30).status_code == 200


def test_slow_client_does_not_block_others(server, reference, rows):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as slow:
        slow.sendall(b"POST /v1/models/imbalance:predict HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{\"ins")
        # The slow client now holds its connection mid-body; others are served meanwhile.
        response = post(rest_url(server, ":predict"),
                        {"signature_name": "predict_features", "inputs": feature_inputs(rows)}, timeout=30)
        assert response.status_code == 200
        expected = call_signature(reference, "predict_features", **feature_tensors(rows))
        assert_close(response.json()["outputs"]["scores"], expected["scores"])


def test_partial_feature_rows_without_signature_name_are_imputed(server, reference):
    """The README's curl: named raw features, some left out, no signature_name.

    The reference is `serving_default` on tf.Examples from which the same
    features are absent: the model must treat both the same way.
    """
    partial = [{"x0": 1.5, "region": "north"}, {"x3": -0.5, "channel": "web", "merchant": "never-seen"}]
    response = post(rest_url(server, ":predict"), {"instances": partial})
    assert response.status_code == 200, response.text
    expected = call_signature(reference, "serving_default", examples=tf.constant([serialize(f) for f in partial]))
    predictions = response.json()["predictions"]
    assert_close([p["scores"] for p in predictions], expected["scores"])
    assert [p["class_ids"] for p in predictions] == expected["class_ids"].tolist()


def test_partial_columnar_inputs_are_imputed(server, reference):
    inputs = {"x0": [1.5, -2.0], "merchant": ["m001", "never-seen"]}
    response = post(rest_url(server, ":predict"), {"signature_name": "predict_features", "inputs": inputs})
    assert response.status_code == 200, response.text
    examples = [serialize({"x0": 1.5, "merchant": "m001"}), serialize({"x0": -2.0, "merchant": "never-seen"})]
    expected = call_signature(reference, "serving_default", examples=tf.constant(examples))
    assert_close(response.json()["outputs"]["scores"], expected["scores"])
