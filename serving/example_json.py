"""Classify's and Regress's JSON: `examples` + `context` -> tf.Examples, results -> JSON.

Follows `FillClassifyRegressRequestFromJson` and `AddValueToFeature` in
TF Serving's `tensorflow_serving/util/json_tensor.cc`: a JSON integer or
boolean is an `int64_list` value, a decimal number a `float_list` value, a
string or `{"b64": ...}` a `bytes_list` value; one feature's values must
share one kind; `null`, nested lists and other objects are refused.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from serving.codec import b64decode, is_b64, utf8
from serving.errors import invalid_argument

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def examples_from_json(request: dict) -> list[bytes]:
    """Serialized tf.Examples from a classify/regress request body.

    Context features are added to every example; an example's own value wins
    on a shared name (TF Serving concatenates the serialized context and
    example, and a later map entry wins).
    """
    # Checked in TF Serving's order: the context first, then the examples.
    shared = _features(request["context"], "context") if "context" in request else {}
    examples = request.get("examples")
    if "examples" not in request:
        raise invalid_argument("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid_argument("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument("'examples' value is an empty array")
    serialized = []
    for index, example in enumerate(examples):
        features = dict(shared)
        features.update(_features(example, f"example {index}"))
        serialized.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return serialized


def _features(value, where: str) -> dict[str, tf.train.Feature]:
    if not isinstance(value, dict) or is_b64(value):
        raise invalid_argument(f"{where}: Example must be JSON object but got JSON {_json_type(value)}")
    return {name: _feature(content, name) for name, content in value.items()}


def _feature(content, name: str) -> tf.train.Feature:
    kind, values = None, []
    for value in content if isinstance(content, list) else [content]:
        value_kind, converted = _value(value, name)
        if kind is not None and value_kind != kind:
            raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}")
        kind = value_kind
        values.append(converted)
    if kind is None:  # an empty list: a feature of no kind, as TF Serving sends it
        return tf.train.Feature()
    if kind == "float_list":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if kind == "int64_list":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _value(value, name: str) -> tuple[str, object]:
    """(feature kind, converted value) of one JSON value."""
    if isinstance(value, bool):
        return "int64_list", int(value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return "int64_list", value
        if INT64_MAX < value <= UINT64_MAX:
            raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        return "float_list", _float32(float(_as_double(value, name)))  # rapidjson reads it as a double
    if isinstance(value, float):
        return "float_list", _float32(value)
    if isinstance(value, str):
        return "bytes_list", utf8(value, f"feature {name!r}")
    if is_b64(value) and isinstance(value["b64"], str):
        return "bytes_list", b64decode(value["b64"], f"feature {name!r}")
    raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")


def _json_type(value) -> str:
    """JSON type names as TF Serving's messages spell them (JsonTypeString)."""
    if value is None:
        return "Null"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number" if isinstance(value, (int, float)) and not isinstance(value, bool) else "Boolean"


def _as_double(value: int, name: str) -> float:
    try:
        return float(value)
    except OverflowError:  # rapidjson refuses such a document: "Number too big to be stored in double"
        raise invalid_argument(f"Feature: {name}: number too big to be stored in double") from None


def _float32(value: float) -> float:
    """As rapidjson's GetFloat: a double narrowed to float32 (1e300 -> inf)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def encode_classify(rows: list[list[tuple[str, float]]]) -> dict:
    """Classify's `results`: per example, a list of [label, score] pairs."""
    return {"results": [[[label, score] for label, score in row] for row in rows]}


def encode_regress(values: list[float]) -> dict:
    """Regress's `results`: one number per example."""
    return {"results": values}
