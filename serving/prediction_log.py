"""Logged requests as `tensorflow.serving.PredictionLog` records, one per example.

A REST or gRPC request that was sampled becomes an `Entry`: its kind, when it
came, and a function building its request and response *protos* (gRPC keeps
the messages it received and sent; REST builds the equivalent gRPC messages
from the arrays it decoded and computed). The collector's writer thread calls
`records(entry, sampling)`, so no proto is built on the request path.

One record per example (a documented deviation from TF Serving, which logs one
per request): a Predict whose inputs and outputs all share a leading batch
dimension n > 1 is cut into n single-row Predicts; a Classify, Regress or
MultiInference of n examples into n single-example ones (an
`example_list_with_context` becomes a plain `example_list` of the merged
examples). Each record is a valid request on its own, so a log file is a warm-up
file (`serving/warmup.py` replays it) and one row per record is what TFX's
BulkInferrer writes and TFMA's PredictionLog readers expect. A Predict whose
tensors do not share a batch dimension is logged whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from google.protobuf.message import Message
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    logging_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tensorflow_serving.config import logging_config_pb2

PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE = "predict", "classify", "regress", "multi_inference"
SAVED_MODEL_TAGS = ("serve",)  # the tag set every version is loaded with (serving/servable.py)

# numpy dtype -> (TensorProto dtype, typed field): the common dtypes built without tf.make_tensor_proto,
# which costs tens of microseconds a call; other dtypes go through it.
_FAST = {np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
         np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
         np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
         np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
         np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val")}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One sampled request, waiting for the writer thread.

    Attributes:
      kind: PREDICT, CLASSIFY, REGRESS or MULTI_INFERENCE.
      build: Returns (request, response) protos of the kind (called in the writer thread).
      timestamp_secs: When the request was answered (seconds since the epoch).
      model_name: The model the request addressed (for the counters).
    """

    kind: str
    build: Callable[[], tuple[Message, Message]]
    timestamp_secs: int
    model_name: str = ""


def tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """An array as a TensorProto in typed fields (TF Serving's default wire form)."""
    array = np.asarray(value)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)
                                                   for size in array.shape])
    fast = _FAST.get(array.dtype)
    if fast is not None:
        proto = tensor_pb2.TensorProto(dtype=fast[0], tensor_shape=shape)
        getattr(proto, fast[1]).extend(array.reshape(-1).tolist())
        return proto
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        values = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in array.reshape(-1)]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    from serving.grpc_api import output_tensor_proto  # half, complex, small ints: as the gRPC answer writes them

    return output_tensor_proto(array)


def model_spec(name: str, version: int, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def rest_predict(name: str, version: int, signature_name: str, inputs: dict[str, np.ndarray],
                 outputs: dict[str, np.ndarray]) -> tuple[predict_pb2.PredictRequest, predict_pb2.PredictResponse]:
    """A REST :predict as the gRPC Predict it is equivalent to (all outputs: REST has no output filter)."""
    spec = model_spec(name, version, signature_name)
    request, response = predict_pb2.PredictRequest(model_spec=spec), predict_pb2.PredictResponse(model_spec=spec)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tensor_proto(value))
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tensor_proto(value))
    return request, response


def rest_classify(name: str, version: int, signature_name: str, examples: list[bytes], rows: list
                  ) -> tuple[classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse]:
    """A REST :classify as the gRPC Classify it is equivalent to."""
    from serving.grpc_api import fill_classifications  # the gRPC layer owns the answer's layout

    spec = model_spec(name, version, signature_name)
    request = classification_pb2.ClassificationRequest(model_spec=spec)
    request.input.example_list.examples.extend(tf.train.Example.FromString(data) for data in examples)
    response = classification_pb2.ClassificationResponse(model_spec=spec)
    fill_classifications(response.result, rows)
    return request, response


def rest_regress(name: str, version: int, signature_name: str, examples: list[bytes], values: list[float]
                 ) -> tuple[regression_pb2.RegressionRequest, regression_pb2.RegressionResponse]:
    """A REST :regress as the gRPC Regress it is equivalent to."""
    spec = model_spec(name, version, signature_name)
    request = regression_pb2.RegressionRequest(model_spec=spec)
    request.input.example_list.examples.extend(tf.train.Example.FromString(data) for data in examples)
    response = regression_pb2.RegressionResponse(model_spec=spec)
    response.result.regressions.extend(regression_pb2.Regression(value=value) for value in values)
    return request, response


def records(entry: Entry, sampling: logging_config_pb2.SamplingConfig) -> list[bytes]:
    """The entry's serialized PredictionLog records, one per example (see the module doc)."""
    request, response = entry.build()
    metadata = logging_pb2.LogMetadata(model_spec=_answered_spec(entry.kind, request, response),
                                       sampling_config=sampling, saved_model_tags=SAVED_MODEL_TAGS,
                                       timestamp_secs=entry.timestamp_secs)
    logs = []
    for one_request, one_response in _SPLIT[entry.kind](request, response):
        log = prediction_log_pb2.PredictionLog(log_metadata=metadata)
        target = getattr(log, f"{entry.kind}_log")
        target.request.CopyFrom(one_request)
        target.response.CopyFrom(one_response)
        logs.append(log.SerializeToString())
    return logs


def _answered_spec(kind: str, request, response) -> model_pb2.ModelSpec:
    """The ModelSpec that answered: the response's (name, version, signature), as TF Serving's log metadata."""
    if kind == MULTI_INFERENCE:
        return response.results[0].model_spec if response.results else request.tasks[0].model_spec
    return response.model_spec


def _split_predict(request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse):
    inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    sizes = {array.shape[0] if array.ndim else None for array in (*inputs.values(), *outputs.values())}
    if len(sizes) != 1 or None in sizes or sizes == {1} or sizes == {0}:
        return [(request, response)]  # unbatched (or one row): logged as it came
    (rows,) = sizes
    pairs = []
    for row in range(rows):
        one_request = predict_pb2.PredictRequest(model_spec=request.model_spec, output_filter=request.output_filter)
        for name, array in inputs.items():
            one_request.inputs[name].CopyFrom(tensor_proto(array[row:row + 1]))
        one_response = predict_pb2.PredictResponse(model_spec=response.model_spec)
        for name, array in outputs.items():
            one_response.outputs[name].CopyFrom(tensor_proto(array[row:row + 1]))
        pairs.append((one_request, one_response))
    return pairs


def _examples(request_input) -> list:
    """The examples of a tensorflow.serving.Input, a context merged into each (as the server ran them)."""
    from serving.grpc_api import serialized_examples  # the gRPC layer owns the merge rule

    if request_input.WhichOneof("kind") == "example_list":
        return list(request_input.example_list.examples)
    return [tf.train.Example.FromString(data) for data in serialized_examples(request_input)]


def _split_examples(request, response, results: Callable[[Message], list[tuple[Message, str]]]):
    """Requests on `Input`: one (request, response) per example; `results` lists (result message, its field)."""
    examples = _examples(request.input)
    if len(examples) == 1 and request.input.WhichOneof("kind") == "example_list":
        return [(request, response)]
    request_template, response_template = type(request)(), type(response)()
    request_template.CopyFrom(request)
    request_template.input.Clear()
    response_template.CopyFrom(response)
    for target, field in results(response_template):
        del getattr(target, field)[:]  # cleared once: copying n rows per example would be quadratic
    pairs = []
    for row, example in enumerate(examples):
        one_request, one_response = type(request)(), type(response)()
        one_request.CopyFrom(request_template)
        one_request.input.example_list.examples.add().CopyFrom(example)
        one_response.CopyFrom(response_template)
        for (source, field), (target, _) in zip(results(response), results(one_response), strict=True):
            getattr(target, field).add().CopyFrom(getattr(source, field)[row])
        pairs.append((one_request, one_response))
    return pairs


def _split_classify(request: classification_pb2.ClassificationRequest,
                    response: classification_pb2.ClassificationResponse):
    return _split_examples(request, response, lambda message: [(message.result, "classifications")])


def _split_regress(request: regression_pb2.RegressionRequest, response: regression_pb2.RegressionResponse):
    return _split_examples(request, response, lambda message: [(message.result, "regressions")])


def _split_multi_inference(request: inference_pb2.MultiInferenceRequest,
                           response: inference_pb2.MultiInferenceResponse):
    def results(message):
        listed = []
        for result in message.results:
            if result.WhichOneof("result") == "regression_result":
                listed.append((result.regression_result, "regressions"))
            else:
                listed.append((result.classification_result, "classifications"))
        return listed

    return _split_examples(request, response, results)


_SPLIT = {PREDICT: _split_predict, CLASSIFY: _split_classify, REGRESS: _split_regress,
          MULTI_INFERENCE: _split_multi_inference}
