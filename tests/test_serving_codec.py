"""JSON codec: TF Serving's row/columnar formats, b64, strict types (no model needed)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import tensorflow as tf

from serving import codec, example_json
from serving.errors import ServingError
from serving.servable import Signature

TWO_INPUTS = Signature("s", "tensorflow/serving/predict",
                       {"x": tf.TensorSpec([None], tf.float32), "k": tf.TensorSpec([None], tf.string)},
                       ("y",), None)
ONE_INPUT = Signature("e", "tensorflow/serving/predict", {"examples": tf.TensorSpec([None], tf.string)}, ("y",), None)


def test_row_and_columnar_decode_to_the_same_arrays():
    rows, row_format = codec.decode_predict({"instances": [{"x": 1, "k": "a"}, {"x": 2.5, "k": {"b64": "/w=="}}]},
                                            TWO_INPUTS)
    columns, columnar = codec.decode_predict({"inputs": {"x": [1, 2.5], "k": ["a", {"b64": "/w=="}]}}, TWO_INPUTS)
    assert row_format and not columnar
    for decoded in (rows, columns):
        np.testing.assert_array_equal(decoded["x"], np.array([1, 2.5], np.float32))
        assert decoded["x"].dtype == np.float32
        assert decoded["k"].tolist() == [b"a", b"\xff"]


def test_single_input_plain_lists():
    data = base64.b64encode(b"\x00\x01").decode()
    decoded, _ = codec.decode_predict({"instances": [{"b64": data}, "text"]}, ONE_INPUT)
    assert decoded["examples"].tolist() == [b"\x00\x01", b"text"]
    decoded, _ = codec.decode_predict({"inputs": ["a", "b"]}, ONE_INPUT)
    assert decoded["examples"].tolist() == [b"a", b"b"]


@pytest.mark.parametrize("request_body", [
    {"instances": [{"x": "1", "k": "a"}]},
    {"instances": [{"x": None, "k": "a"}]},
    {"instances": [{"x": True, "k": "a"}]},
    {"instances": [{"x": 1.0}]},
    {"instances": [{"x": 1.0, "k": "a", "z": 1}]},
    {"instances": [{"x": 1.0, "k": "a"}, 3]},
    {"instances": [1.0]},
    {"inputs": {"x": [1.0, [2.0]], "k": ["a", "b"]}},
    {"inputs": {"x": [1.0], "k": [{"b64": "***"}]}},
    {"instances": []},
])
def test_invalid_requests_raise_invalid_argument(request_body):
    with pytest.raises(ServingError) as caught:
        codec.decode_predict(request_body, TWO_INPUTS)
    assert caught.value.http_status == 400


def test_integer_range_is_checked():
    spec = tf.TensorSpec([None], tf.int32)
    assert codec.to_array([1, -2], spec, "i").tolist() == [1, -2]
    with pytest.raises(ServingError, match="integer"):
        codec.to_array([2**40], spec, "i")
    with pytest.raises(ServingError, match="integer"):
        codec.to_array([1.5], spec, "i")


def test_encode_predict_formats():
    outputs = {"b": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "a": np.array([b"x", b"\xff"], dtype=object)}
    assert codec.encode_predict(outputs, row_format=True) == {"predictions": [
        {"a": "x", "b": [1.0, 2.0]}, {"a": {"b64": "/w=="}, "b": [3.0, 4.0]}]}
    assert codec.encode_predict(outputs, row_format=False) == {"outputs": {
        "a": ["x", {"b64": "/w=="}], "b": [[1.0, 2.0], [3.0, 4.0]]}}
    single = {"y": np.array([0.5, 0.25], np.float32)}
    assert codec.encode_predict(single, row_format=True) == {"predictions": [0.5, 0.25]}
    assert codec.encode_predict(single, row_format=False) == {"outputs": [0.5, 0.25]}
    assert codec.to_json(np.array([b"x"], dtype=object), "id_bytes") == [{"b64": "eA=="}]


def test_examples_merge_context_and_types():
    serialized = example_json.examples_from_json(
        {"context": {"c": "ctx", "x": 9}, "examples": [{"x": 1.5}, {"y": [1.0, 2.5], "b": True}]})
    first, second = (tf.train.Example.FromString(data).features.feature for data in serialized)
    assert first["x"].float_list.value == [1.5] and first["c"].bytes_list.value == [b"ctx"]
    assert second["x"].int64_list.value == [9] and list(second["y"].float_list.value) == [1.0, 2.5]
    assert second["b"].int64_list.value == [1]  # as TF Serving: booleans are int64 features
    with pytest.raises(ServingError):
        example_json.examples_from_json({"examples": [{"x": [1, 2.5]}]})  # one feature, two kinds
    with pytest.raises(ServingError):
        example_json.examples_from_json({"examples": [{"x": {"nested": 1}}]})


def test_parse_body_rejects_non_objects():
    # NaN and Infinity (JSON extensions) are read as those floats, not as some other number or an error.
    parsed = codec.parse_body(b'{"a": NaN, "b": -Infinity}')
    assert np.isnan(parsed["a"]) and parsed["b"] == -np.inf
    for body, message in ((b"", "JSON Parse error"), (b"[]", "must be a JSON object, got list"),
                          (b"\xff", "JSON Parse error"), (b"[" * 100000, "JSON Parse error")):
        with pytest.raises(ServingError, match=message):
            codec.parse_body(body)
