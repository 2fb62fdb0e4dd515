"""REST answers for a TF Serving-style SavedModel, against TF Serving's own tests and docs.

Each test names what it mirrors in tensorflow/serving: the handler test
(`model_servers/http_rest_api_handler_test.cc`), the JSON codec and its test
(`util/json_tensor.cc`, `util/json_tensor_test.cc`), the REST guide
(`g3doc/api_rest.md`) or the C++ that sets a behaviour. Expected values are
half_plus_two's arithmetic (`y = 0.5 x + 2`) or NumPy.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from tests.serving_fixtures import post
from tests.test_serving_models import MODEL


def _url(server, suffix: str = "") -> str:
    return f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}{suffix}"


def _ok(server, suffix: str, payload) -> dict:
    response = post(_url(server, suffix), payload)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


def _error(server, suffix: str, payload, status: int = 400) -> str:
    response = post(_url(server, suffix), payload)
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_model_with_an_unknown_rank_input_loads(conformance_server):
    """HttpRestApiHandlerTest.GetStatus, on a model whose `serving_default` input has unknown rank."""
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for suffix in ("", "/versions/1", "/labels/stable"):
        response = requests.get(_url(conformance_server, suffix), timeout=30)
        assert response.status_code == 200
        assert response.json() == expected


def test_predict_as_the_handler_test(conformance_server):
    """HttpRestApiHandlerTest.Predict: row and columnar, latest, version, label, explicit signature."""
    assert _ok(conformance_server, ":predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}) == {
        "predictions": [[2.5, 3.0], [3.5, 4.0]]}
    for route in ("/versions/1", "/labels/stable"):
        assert _ok(conformance_server, f"{route}:predict", {"instances": [1.0, 2.0]}) == {"predictions": [2.5, 3.0]}
    explicit = {"signature_name": "serving_default", "instances": [3.0, 4.0]}
    assert _ok(conformance_server, "/versions/1:predict", explicit) == {"predictions": [3.5, 4.0]}
    columnar = {"signature_name": "serving_default", "inputs": [3.0, 4.0]}
    assert _ok(conformance_server, "/versions/1:predict", columnar) == {"outputs": [3.5, 4.0]}
    # An unknown-rank input takes a scalar too (api_rest.md, columnar format: "<value>").
    assert _ok(conformance_server, ":predict", {"inputs": 3.0}) == {"outputs": 3.5}


def test_regress_and_classify_as_the_handler_test(conformance_server):
    """HttpRestApiHandlerTest.Regress and .Classify: `results`, empty labels for a scores-only signature."""
    regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    for route in ("", "/versions/1", "/labels/stable"):
        assert _ok(conformance_server, f"{route}:regress", regress) == {"results": [42.0]}
    classify = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    assert _ok(conformance_server, ":classify", classify) == {"results": [[["", 12.0]]]}
    classify["examples"] = [{"x": 10.0}]
    assert _ok(conformance_server, "/labels/stable:classify", classify) == {"results": [[["", 7.0]]]}


def test_classify_labels_context_and_several_examples(conformance_server):
    """api_rest.md "Classify and Regress API": `context` shared by all examples, [label, score] pairs."""
    payload = {"signature_name": "classify_labels", "context": {"x": 2.0}, "examples": [{}, {"x": 80.0}]}
    assert _ok(conformance_server, ":classify", payload) == {
        "results": [[["low", 3.0], ["high", 4.0]], [["low", 42.0], ["high", 43.0]]]}
    regress = {"signature_name": "regress_x_to_y2", "context": {"x": 2.0}, "examples": [{}, {"x": 4.0}]}
    assert _ok(conformance_server, ":regress", regress) == {"results": [4.0, 5.0]}


def test_json_integers_and_booleans_are_int64_features(conformance_server):
    """json_tensor.cc AddValueToFeature (ClassifyRegressRequestTest.RequestWithContextAndSignature's
    `"age": 20` and `"intboolmix": [1, true, false]`): integers and booleans are int64_list values,
    decimals float_list, so a float where the model parses int64 fails in ParseExample."""
    payload = {"signature_name": "regress_int64", "examples": [{"n": 3}, {"n": True}, {"n": [False]}]}
    assert _ok(conformance_server, ":regress", payload) == {"results": [6.0, 2.0, 0.0]}
    assert "n" in _error(conformance_server, ":regress", {"signature_name": "regress_int64", "examples": [{"n": 3.0}]})


@pytest.mark.parametrize("body, fragment", [
    ({"signature_name": ["hello"], "examples": [{"names": ["foo", "bar"]}]}, "'signature_name' key must be a string"),
    ({"context": [{"names": ["foo", "bar"]}]}, "Example must be JSON object"),
    ({"examples": {"names": ["foo", "bar"]}}, "list/array"),
    ({"examples": [[{"names": ["foo", "bar"]}]]}, "Example must be JSON object"),
    ({"examples": [{"names": [10, None]}]}, "names has element with unexpected JSON type: Null"),
    ({"examples": [{"names": [10, 10.0]}]}, "feature: names expecting type: int64"),
    ({"examples": [{"names": [10, {"test": 10}]}]}, "names has element with unexpected JSON type: Object"),
    ({"examples": [{"names": [[10], 20]}]}, "names has element with unexpected JSON type: Array"),
    ({"examples": [{"names": [20, 18446744073709551603]}]}, "Only int64_t is supported"),
    ({"examples": []}, "'examples' value is an empty array"),
    ({}, "'examples' is expected"),
])
@pytest.mark.parametrize("action", [":classify", ":regress"])
def test_classify_regress_json_errors(conformance_server, action, body, fragment):
    """ClassifyRegressRequestTest.JsonErrors (json_tensor_test.cc), for both methods: 400 and the message."""
    body = {"signature_name": "regress_x_to_y" if action == ":regress" else "classify_x_to_y", **body}
    assert fragment in _error(conformance_server, action, body)


def _dtype_instances() -> list[dict]:
    return [{"f64": 1.5, "i32": [1, 2], "flag": True, "text": "ab", "u8": [[1, 2], [3, 4]], "i64": 2**40},
            {"f64": -2.0, "i32": [3, 4], "flag": False, "text": "é", "u8": [[5, 6], [7, 8]], "i64": -5}]


def _dtype_expected(instance: dict) -> dict:
    """NumPy's reading of the `dtypes` signature, in api_rest.md's JSON mapping."""
    return {"f64": instance["f64"] * 2.0, "i32": (np.array(instance["i32"]) + 1).tolist(),
            "flag": not instance["flag"],
            "text": "".join(c.upper() if c.isascii() else c for c in instance["text"]),  # tf.strings.upper: ASCII
            "text_bytes": {"b64": base64.b64encode(instance["text"].encode()).decode()},
            "u8": instance["u8"], "i64": -instance["i64"]}


def test_dtypes_and_ranks_in_row_and_columnar_format(conformance_server):
    """api_rest.md "JSON mapping", "Response format" and "Output of binary values": float64, int32,
    bool, string, uint8 (rank 3) and int64 both ways; an output named `*_bytes` is always {"b64": ...}."""
    instances = _dtype_instances()
    expected = [_dtype_expected(instance) for instance in instances]
    rows = _ok(conformance_server, ":predict", {"signature_name": "dtypes", "instances": instances})
    assert rows == {"predictions": expected}
    columns = {name: [instance[name] for instance in instances] for name in instances[0]}
    answer = _ok(conformance_server, ":predict", {"signature_name": "dtypes", "inputs": columns})
    assert answer == {"outputs": {name: [row[name] for row in expected] for name in expected[0]}}


def test_scalar_inputs_and_outputs(conformance_server):
    """json_tensor_test FromJsonSingleScalarTensor and MakeRowFormatJsonFromTensors: rank-0 tensors
    work in columnar format (a scalar string output included); in row format they are a 400."""
    answer = _ok(conformance_server, ":predict", {"signature_name": "scalar", "inputs": {"x": 3.0}})
    assert answer == {"outputs": {"label": "3.000000", "y": 3.5}}
    assert _error(conformance_server, ":predict", {"signature_name": "scalar", "instances": [3.0]})


def test_outputs_json_cannot_hold_are_a_400(conformance_server):
    """json_tensor.cc AddSingleValueAndAdvance: complex and half outputs are refused with
    INVALID_ARGUMENT ("Failed to write JSON value for tensor type"), not a 500 or a dropped connection."""
    for body in ({"signature_name": "unusual", "inputs": [1.0, 2.0]}, {"signature_name": "unusual", "instances": [1.0]}):
        assert "Failed to write JSON value for tensor type" in _error(conformance_server, ":predict", body)
    assert requests.get(_url(conformance_server), timeout=30).status_code == 200


def test_signature_errors_and_their_statuses(conformance_server):
    """predict_util.cc (unknown signature: FAILED_PRECONDITION, which http_server.cc's ToHTTPStatusCode
    maps to 400), classifier.cc / regressor.cc (INVALID_ARGUMENT and their messages)."""
    assert 'Serving signature key "nope" not found' in _error(
        conformance_server, ":predict", {"signature_name": "nope", "instances": [1.0]})
    for action in (":classify", ":regress"):
        message = _error(conformance_server, action, {"signature_name": "nope", "examples": [{"x": 1.0}]})
        assert "No signature was found with the name: nope" in message
    cases = [(":regress", "regress_two_outputs", "Expected one output Tensor."),
             (":regress", "classify_x_to_y", "No regression outputs found"),
             (":regress", "dtypes", "Expected one input Tensor."),
             (":classify", "regress_x_to_y", "Expected classification signature outputs to contain"),
             (":regress", "", "No regression inputs found")]  # serving_default's input is "x"
    for action, signature, fragment in cases:
        body = {"signature_name": signature, "examples": [{"x": 1.0}]}
        assert fragment in _error(conformance_server, action, body), (action, signature)


def test_non_finite_numbers_round_trip(conformance_server):
    """api_rest.md "JSON conformance": NaN, Infinity and -Infinity are accepted and written as such."""
    response = post(_url(conformance_server, ":predict"), '{"instances": [NaN, Infinity, -Infinity]}')
    assert response.status_code == 200
    assert "NaN" in response.text and "-Infinity" in response.text
    values = json.loads(response.text)["predictions"]
    assert np.isnan(values[0]) and values[1:] == [float("inf"), float("-inf")]
