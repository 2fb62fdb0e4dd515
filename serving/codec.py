"""TF Serving's JSON formats <-> numpy arrays and tf.Examples.

Follows TF Serving's REST API: row format (`instances` -> `predictions`),
columnar format (`inputs` -> `outputs`) and `{"b64": ...}` for binary strings
(Classify's and Regress's `examples` are in `serving.example_json`). Every value is type-checked against the
signature's dtype, so `"1.5"` is not silently accepted as a float nor `null`
as NaN; numpy never sees unchecked JSON.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json

import grpc
import numpy as np
import tensorflow as tf

from serving.errors import ServingError, invalid_argument
from serving.servable import Signature

# The dtypes TF Serving writes as JSON (AddSingleValueAndAdvance in json_tensor.cc);
# any other output (half, complex...) is refused with INVALID_ARGUMENT, as there.
JSON_OUTPUT_DTYPES = frozenset({tf.float32, tf.float64, tf.int32, tf.int16, tf.int8, tf.uint8, tf.string,
                                tf.int64, tf.bool, tf.uint32, tf.uint64})


def parse_body(body: bytes) -> dict:
    """The request's JSON object."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise invalid_argument(f"JSON Parse error: {error}") from None
    if not isinstance(payload, dict):
        raise invalid_argument(f"JSON Value: request body must be a JSON object, got {type(payload).__name__}")
    return payload


def decode_predict(request: dict, signature: Signature) -> tuple[dict[str, np.ndarray], bool]:
    """Predict's inputs from a request; True as second value for row format."""
    if ("instances" in request) == ("inputs" in request):
        raise invalid_argument("Missing 'inputs' or 'instances' key" if "inputs" not in request
                               else "Not allowed to have both 'inputs' and 'instances' keys")
    if "instances" in request:
        return _decode_rows(request["instances"], signature), True
    return _decode_columns(request["inputs"], signature), False


def named_inputs(request: dict) -> set[str] | None:
    """The input names a Predict request uses (None for unnamed values)."""
    if isinstance(request.get("instances"), list) and request["instances"]:
        first = request["instances"][0]
        return set(first) if _is_named(first) else None
    return set(request["inputs"]) if _is_named(request.get("inputs")) else None


def _missing_value(spec: tf.TensorSpec):
    """The value that means "missing" to the raw-feature signature's model."""
    return "" if _is_string(spec.dtype) else float("nan")


@functools.cache
def _is_string(dtype: tf.DType) -> bool:
    return dtype == tf.string  # DType comparisons cost a microsecond each: once per dtype, not per value


def _decode_rows(instances, signature: Signature) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be a list/array")
    if not instances:
        raise invalid_argument("'instances' is empty: send at least one instance")
    if not _is_named(instances[0]):
        name = _only_input(signature, "instances is a plain list")
        return {name: to_array(instances, signature.inputs[name], f"input {name!r}", batched=True)}
    for index, instance in enumerate(instances):
        if not _is_named(instance):
            raise invalid_argument(f"instance {index}: expected a JSON object of named inputs like the first one")
        _check_names(instance, signature, f"instance {index}")
    arrays = {}
    for name, spec, where, missing, convert, numpy_dtype in _row_plan(signature):
        values = [instance.get(name, missing) for instance in instances]
        if convert is None or any(isinstance(value, list) for value in values):
            arrays[name] = to_array(values, spec, where, batched=True)  # nested values, or a dtype JSON cannot fill
        else:
            arrays[name] = _vector([convert(value) for value in values], numpy_dtype, spec, where)
    return arrays


def _row_plan(signature: Signature) -> tuple:
    """Per input, what decoding a row needs, worked out once per signature (kept in `signature.derived`):
    (name, spec, where, missing value, leaf converter or None, numpy dtype or None for strings)."""
    plan = signature.derived.get("codec.rows")
    if plan is None:
        entries = []
        for name, spec in signature.inputs.items():
            where = f"input {name!r}"
            try:
                convert = _leaf_converter(spec.dtype, where)
            except ServingError:  # raised again, in input order, by to_array
                convert = None
            numpy_dtype = None if _is_string(spec.dtype) else spec.dtype.as_numpy_dtype
            entries.append((name, spec, where, _missing_value(spec), convert, numpy_dtype))
        plan = signature.derived["codec.rows"] = tuple(entries)
    return plan


def _vector(converted: list, numpy_dtype, spec: tf.TensorSpec, where: str) -> np.ndarray:
    """Converted leaves as a 1-D array (`numpy_dtype` None: strings, an object array)."""
    if numpy_dtype is None:
        array = np.empty(len(converted), dtype=object)
        array[:] = converted
        return array
    try:
        return np.array(converted, dtype=numpy_dtype)
    except OverflowError:
        raise invalid_argument(f"{where}: value out of range for {spec.dtype.name}") from None


def _decode_columns(inputs, signature: Signature) -> dict[str, np.ndarray]:
    if not _is_named(inputs):
        name = _only_input(signature, "'inputs' is not an object of named inputs")
        return {name: to_array(inputs, signature.inputs[name], f"input {name!r}")}
    _check_names(inputs, signature, "'inputs'")
    arrays = {name: to_array(inputs[name], signature.inputs[name], f"input {name!r}") for name in inputs}
    absent = set(signature.inputs) - set(inputs)
    if absent:  # only for a signature that imputes them (see _check_names)
        rows = {array.shape[0] if array.ndim else 1 for array in arrays.values()}
        if len(rows) != 1:
            raise invalid_argument(f"'inputs' have different numbers of rows: {sorted(rows)}")
        count = rows.pop()
        for name in absent:
            spec = signature.inputs[name]
            arrays[name] = to_array([_missing_value(spec)] * count, spec, f"input {name!r}")
    return arrays


def _is_named(value) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _only_input(signature: Signature, what: str) -> str:
    if len(signature.inputs) != 1:
        raise invalid_argument(f"{what}, but signature {signature.name!r} has {len(signature.inputs)} inputs "
                               f"({', '.join(sorted(signature.inputs))}): send objects keyed by input name")
    return next(iter(signature.inputs))


def _check_names(named: dict, signature: Signature, where: str) -> None:
    expected, sent = set(signature.inputs), set(named)
    if signature.imputes_missing_inputs:
        expected = expected & sent  # absent raw features are missing values, imputed by the model
    if sent != expected:
        problems = []
        if expected - sent:
            problems.append(f"missing inputs: {', '.join(sorted(expected - sent))}")
        if sent - expected:
            problems.append(f"unknown inputs: {', '.join(sorted(sent - expected))}")
        raise invalid_argument(f"{where}: {'; '.join(problems)} (signature {signature.name!r} takes "
                               f"{', '.join(sorted(expected))})")


def to_array(value, spec: tf.TensorSpec, where: str, batched: bool = False) -> np.ndarray:
    """A JSON value as an array of `spec`'s dtype, checked leaf by leaf.

    Args:
      value: Nested lists of scalars (or one scalar).
      spec: The input's TensorSpec; shape is checked later, dtype here.
      where: Names the input in error messages.
      batched: `value` is a list of instances (row format).
    """
    if isinstance(value, list) and not any(isinstance(item, list) for item in value):
        shape, leaves = [len(value)], value  # one value per row, the common case: what _flatten would find
    else:
        shape, leaves = _flatten(value, where)
    if batched and not shape:
        raise invalid_argument(f"{where}: expected a list of instances")
    convert = _leaf_converter(spec.dtype, where)
    numpy_dtype = None if _is_string(spec.dtype) else spec.dtype.as_numpy_dtype
    return _vector([convert(leaf) for leaf in leaves], numpy_dtype, spec, where).reshape(shape)


MAX_DIMS = 32  # numpy's limit is 64; TF Serving's inputs are far flatter


def _flatten(value, where: str, depth: int = 0) -> tuple[list[int], list]:
    """(shape, leaves in row-major order) of a rectangular nested list."""
    if not isinstance(value, list):
        return [], [value]
    if depth >= MAX_DIMS:
        raise invalid_argument(f"{where}: nested lists have more than {MAX_DIMS} dimensions")
    if not value:
        return [0], []
    inner_shape, leaves = None, []
    for item in value:
        shape, item_leaves = _flatten(item, where, depth + 1)
        if inner_shape is None:
            inner_shape = shape
        elif shape != inner_shape:
            raise invalid_argument(f"{where}: nested lists are not rectangular (shapes {inner_shape} and {shape})")
        leaves.extend(item_leaves)
    return [len(value)] + inner_shape, leaves


@functools.lru_cache(maxsize=4096)  # per (dtype, input name): built once, not per request
def _leaf_converter(dtype: tf.DType, where: str):
    def fail(leaf, expected):
        raise invalid_argument(f"{where}: expected {expected} for {dtype.name}, got {preview(leaf)}")

    if dtype == tf.string:
        def convert(leaf):
            if isinstance(leaf, str):
                return utf8(leaf, where)
            if is_b64(leaf) and isinstance(leaf["b64"], str):
                return b64decode(leaf["b64"], where)
            return fail(leaf, 'a string or {"b64": ...}')
    elif dtype == tf.bool:
        def convert(leaf):
            return leaf if isinstance(leaf, bool) else fail(leaf, "true/false")
    elif dtype.is_floating:
        def convert(leaf):
            ok = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
            return leaf if ok else fail(leaf, "a number")
    elif dtype.is_integer:
        low, high = dtype.min, dtype.max

        def convert(leaf):
            if not isinstance(leaf, int) or isinstance(leaf, bool):
                return fail(leaf, "an integer")
            return leaf if low <= leaf <= high else fail(leaf, f"an integer in [{low}, {high}]")
    else:
        # TF Serving's AddValueToTensor answers UNIMPLEMENTED (HTTP 501) for these dtypes.
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{where}: conversion of JSON values to type "
                           f"{dtype.name} is not supported")
    return convert


def utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows lone surrogates ("\\ud800"); UTF-8 does not
        raise invalid_argument(f"{where}: string is not valid Unicode (lone surrogate)") from None


def preview(value) -> str:
    """The start of a value as JSON, for error messages (never fails)."""
    try:
        return json.dumps(value)[:80]
    except (RecursionError, ValueError, TypeError):
        return type(value).__name__


def b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"{where}: invalid base64 in {{\"b64\": ...}}") from None


def encode_predict(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's response: `predictions` (row) or `outputs` (columnar)."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": to_json(outputs[names[0]], names[0])}
        return {"outputs": {name: to_json(outputs[name], name) for name in names}}
    _check_batch_sizes(outputs, names)
    columns = {name: to_json(outputs[name], name) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    rows = outputs[names[0]].shape[0]
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(rows)]}


def _check_batch_sizes(outputs: dict[str, np.ndarray], names: list[str]) -> None:
    """Row format needs one batch size (MakeRowFormatJsonFromTensors' checks and messages)."""
    expected = None
    for name in names:
        if outputs[name].ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information (a scalar output cannot be "
                                   "returned in row format: send 'inputs' for columnar format)")
        size = outputs[name].shape[0]
        if expected is not None and size != expected:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {expected}")
        expected = size


def to_json(array: np.ndarray, name: str):
    """An output array as JSON values; bytes as text, or b64 when not UTF-8.

    As TF Serving, an output whose name ends in `_bytes` is always b64.
    """
    dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)
    if dtype not in JSON_OUTPUT_DTYPES:
        raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype.name} (output {name!r})")
    values = array.tolist()
    if array.dtype != object:
        return values
    always_b64 = name.endswith("_bytes")
    return _map_leaves(values, lambda leaf: _bytes_to_json(leaf, always_b64))


def _bytes_to_json(leaf: bytes, always_b64: bool):
    if not always_b64:
        try:
            return leaf.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(leaf).decode("ascii")}


def _map_leaves(values, function):
    if isinstance(values, list):
        return [_map_leaves(value, function) for value in values]
    return function(values)
