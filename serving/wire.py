"""Protobuf wire format, for the request log's hot path: messages assembled from serialized parts.

A serialized message is the concatenation of its fields, each a key
(field number << 3 | wire type) and, for a length-delimited field, a varint
length and the bytes (protobuf's encoding spec); a map entry is a nested
message of key (1) and value (2); proto3 packs repeated numbers. So a
PredictionLog is its LogMetadata's bytes and its PredictLog's bytes, each
framed, and a single-row TensorProto of floats is a few constant bytes and
`array.tobytes()`. Building the same messages field by field through the
Python protobuf API costs about five times as much, in the server's process,
for every logged row (docs/serving.md, "Request logging"). Field numbers are
read from the messages' descriptors, never written here; the tests parse every
output with the protobuf library and compare it with the library's own build.
"""

from __future__ import annotations

import functools

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

LENGTH_DELIMITED, VARINT = 2, 0
_SMALL = tuple(bytes((value,)) for value in range(128))  # one-byte varints, the common case


def _number(message, name: str) -> int:
    return message.DESCRIPTOR.fields_by_name[name].number


def varint(value: int) -> bytes:
    """An unsigned varint (negative int32/int64 as their 64-bit two's complement, as protobuf writes them)."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int = LENGTH_DELIMITED) -> bytes:
    """A field's key (computed once per field, at import: every caller keeps it in a constant)."""
    return varint(number << 3 | wire_type)


def field(field_key: bytes, data: bytes) -> bytes:
    """A length-delimited field (a message, bytes, a string or packed numbers) under `field_key`."""
    size = len(data)
    return field_key + (_SMALL[size] if size < 128 else varint(size)) + data


_DTYPE = key(_number(tensor_pb2.TensorProto, "dtype"), VARINT)
_SHAPE = key(_number(tensor_pb2.TensorProto, "tensor_shape"))
_DIM = key(_number(tensor_shape_pb2.TensorShapeProto, "dim"))
_DIM_SIZE = key(_number(tensor_shape_pb2.TensorShapeProto.Dim, "size"), VARINT)
_STRING_VAL = key(_number(tensor_pb2.TensorProto, "string_val"))
# numpy dtype -> (dtype enum, packed field, how the values are written: little-endian raw, or varints)
_PACKED = {np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val", "<f4"),
           np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val", "<f8"),
           np.dtype(np.int32): (types_pb2.DT_INT32, "int_val", None),
           np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val", None),
           np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val", None)}
_PACKED = {dtype: (enum, key(_number(tensor_pb2.TensorProto, name)), little_endian)
           for dtype, (enum, name, little_endian) in _PACKED.items()}


@functools.lru_cache(maxsize=4096)
def _head(dtype_enum: int, shape: tuple[int, ...]) -> bytes:
    """A TensorProto's dtype and shape fields (the same for every row of a signature's tensor)."""
    dims = b"".join(field(_DIM, _DIM_SIZE + varint(size) if size else b"") for size in shape)
    return _DTYPE + varint(dtype_enum) + field(_SHAPE, dims)


def tensor(array: np.ndarray) -> bytes | None:
    """A TensorProto's bytes in typed fields (as `prediction_log.fill_tensor` writes it), or None for a
    dtype this does not write (the caller then uses the protobuf library)."""
    packed = _PACKED.get(array.dtype)
    if packed is not None:
        enum, values_key, little_endian = packed
        flat = array.reshape(-1)
        head = _head(enum, array.shape)
        if not flat.size:
            return head
        values = flat.astype(little_endian).tobytes() if little_endian else b"".join(map(varint, flat.tolist()))
        return head + field(values_key, values)
    if array.dtype == object or array.dtype.kind == "S":
        return _head(types_pb2.DT_STRING, array.shape) + _strings(array)
    return None


def _strings(array: np.ndarray) -> bytes:
    return b"".join(field(_STRING_VAL, item.encode("utf-8") if isinstance(item, str) else bytes(item))
                    for item in array.reshape(-1))


INPUTS = key(_number(predict_pb2.PredictRequest, "inputs"))
OUTPUTS = key(_number(predict_pb2.PredictResponse, "outputs"))
_REQUEST_SPEC = key(_number(predict_pb2.PredictRequest, "model_spec"))
_RESPONSE_SPEC = key(_number(predict_pb2.PredictResponse, "model_spec"))
MAP_KEY, MAP_VALUE = key(1), key(2)  # every map entry's key and value fields (protobuf's encoding spec)


@functools.lru_cache(maxsize=4096)
def _map_key(name: str) -> bytes:
    return field(MAP_KEY, name.encode("utf-8"))


_PREFIXES: dict[tuple, object] = {}  # (map, name, dtype, shape) -> (prefix, byte order); grows
# with the signatures' tensors, bounded by `_MAX_PREFIXES`


_MAX_PREFIXES = 4096


def entry_prefix(map_key: bytes, name: str, array: np.ndarray) -> tuple[bytes, str | None] | None:
    """Everything of a map entry of a fixed-size numeric tensor that precedes its values' bytes, and the
    byte order to write the values in (None: as they are); None for a tensor of another kind."""
    packed = _PACKED.get(array.dtype)
    if packed is None or packed[2] is None or not array.size:
        return None
    enum, values_key, little_endian = packed
    size = array.size * np.dtype(little_endian).itemsize
    head = _head(enum, array.shape) + values_key + varint(size)
    value = MAP_VALUE + varint(len(head) + size) + head
    entry_size = len(_map_key(name)) + len(value) + size
    return (map_key + varint(entry_size) + _map_key(name) + value,
            None if array.dtype.str == little_endian else little_endian)


_NOT_FIXED = object()  # a cached "not a fixed-size numeric tensor"


def tensor_entry(map_key: bytes, name: str, array: np.ndarray) -> bytes | None:
    """One map<string, TensorProto> entry (`map_key` names the map field), or None for a dtype `tensor`
    does not write. Raw little-endian numbers (floats) take the cached-prefix path: the signature's
    name, dtype and shape fix every byte but the values'."""
    cache_key = (map_key, name, array.dtype.str, array.shape)
    found = _PREFIXES.get(cache_key)
    if found is None:
        if len(_PREFIXES) >= _MAX_PREFIXES:
            _PREFIXES.clear()
        found = _PREFIXES[cache_key] = entry_prefix(map_key, name, array) or _NOT_FIXED
    if found is not _NOT_FIXED:
        prefix, byte_order = found
        return prefix + (array.tobytes() if byte_order is None else array.astype(byte_order).tobytes())
    encoded = tensor(array)
    if encoded is None:
        return None
    return field(map_key, _map_key(name) + field(MAP_VALUE, encoded))


def predict_pair(spec: bytes, inputs: bytes, outputs: bytes) -> tuple[bytes, bytes]:
    """A PredictRequest's and its PredictResponse's bytes from a serialized ModelSpec and their
    concatenated `tensor_entry`s (made with INPUTS and OUTPUTS)."""
    return field(_REQUEST_SPEC, spec) + inputs, field(_RESPONSE_SPEC, spec) + outputs


_METADATA = key(_number(prediction_log_pb2.PredictionLog, "log_metadata"))
_LOG_TYPE = {kind: key(_number(prediction_log_pb2.PredictionLog, f"{kind}_log"))
             for kind in ("predict", "classify", "regress", "multi_inference")}
_REQUEST = key(_number(prediction_log_pb2.PredictLog, "request"))  # the same in every *Log
_RESPONSE = key(_number(prediction_log_pb2.PredictLog, "response"))


def prediction_log(metadata: bytes, kind: str, request: bytes, response: bytes) -> bytes:
    """A PredictionLog's bytes: its LogMetadata and its `<kind>_log` of request and response."""
    return field(_METADATA, metadata) + field(_LOG_TYPE[kind], field(_REQUEST, request) + field(_RESPONSE, response))
