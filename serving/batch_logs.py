"""Request logs as batch-scoring input: a `PredictionLog` record as the tf.Example it asked about.

The server's request logs (serving/prediction_log.py) hold one example per
record: a Predict of one row (raw-feature tensors of one value each, or one
serialized tf.Example), or a Classify, Regress or MultiInference of one
example. `serving.batch --data-format prediction_log` turns each record into
that tf.Example, so a log file is re-scored, by another version for
comparison, through the same path as a TFRecord of tf.Examples.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_log_pb2

EXAMPLE_INPUTS = ("examples", "inputs")  # serving_default's and Classify's serialized tf.Example inputs
EXAMPLE_LOGS = ("classify_log", "regress_log", "multi_inference_log")


class NotARow(ValueError):
    """A record that is not one example's request; the message is the errors file's reason."""


def log_example(record: bytes) -> bytes:
    """The serialized tf.Example a PredictionLog record asked about.

    Raises:
      NotARow: not a PredictionLog, not of one example, or of a kind without examples.
    """
    try:
        log = prediction_log_pb2.PredictionLog.FromString(record)
    except DecodeError:
        raise NotARow("not a serialized tensorflow.serving.PredictionLog") from None
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return _predict_example(log.predict_log.request.inputs)
    if kind in EXAMPLE_LOGS:
        request_input = getattr(log, kind).request.input
        examples = (request_input.example_list.examples or request_input.example_list_with_context.examples)
        if len(examples) != 1:
            raise NotARow(f"a {kind} of {len(examples)} examples; one a record is read")
        if request_input.HasField("example_list_with_context"):
            merged = example_pb2.Example()
            merged.CopyFrom(request_input.example_list_with_context.context)
            merged.MergeFrom(examples[0])
            return merged.SerializeToString()
        return examples[0].SerializeToString()
    raise NotARow(f"a PredictionLog of kind {kind or 'none'}; predict, classify, regress and multi_inference "
                  "logs are read")


def _predict_example(inputs) -> bytes:
    """A one-row Predict request's inputs as a tf.Example (NaN numbers and empty strings left out: missing)."""
    if len(inputs) == 1 and next(iter(inputs)) in EXAMPLE_INPUTS:
        tensor = next(iter(inputs.values()))
        if tensor.dtype == types_pb2.DT_STRING and len(tensor.string_val) == 1:
            return tensor.string_val[0]
    features = {}
    for name, tensor in inputs.items():
        values = _values(tensor)
        if len(values) != 1:
            raise NotARow(f"a Predict whose input {name!r} has {len(values)} values; one row a record is read")
        value = values[0]
        if isinstance(value, bytes):
            if value:
                features[name] = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value]))
        elif not np.isnan(value):
            features[name] = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(value)]))
    return example_pb2.Example(features=feature_pb2.Features(feature=features)).SerializeToString()


def _values(tensor) -> list:
    if tensor.dtype == types_pb2.DT_STRING:
        return list(tensor.string_val)
    import tensorflow as tf

    return np.asarray(tf.make_ndarray(tensor), dtype=np.float64).reshape(-1).tolist()
