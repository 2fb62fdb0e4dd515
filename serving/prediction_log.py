"""Logged requests as `tensorflow.serving.PredictionLog` records, one per example.

A REST or gRPC request that was sampled becomes an `Entry`: its kind, when it
came, and a function returning the ModelSpec that answered and its serialized
request and response, one pair per example (gRPC keeps the messages it
received and sent: `split`; REST's arrays become the equivalent gRPC messages:
`rest_predict` as wire bytes, `rest_classify`, `rest_regress`). The
collector's writer thread calls them (`records`, or serving/log_burst.py for a
burst of REST :predicts), so no record is built on the request path.

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
import functools
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from google.protobuf.message import Message
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    logging_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.config import logging_config_pb2

from serving import wire

PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE = "predict", "classify", "regress", "multi_inference"
SAVED_MODEL_TAGS = ("serve",)  # the tag set every version is loaded with (serving/servable.py)

# numpy dtype -> (TensorProto dtype, typed field): the common dtypes built without tf.make_tensor_proto,
# which costs tens of microseconds a call; other dtypes go through it.
_FAST = {np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
         np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
         np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
         np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
         np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val")}


Logged = tuple[model_pb2.ModelSpec, list[tuple[bytes, bytes]]]  # what answered; (request, response) per example


@dataclasses.dataclass(frozen=True)
class Entry:
    """One sampled request, waiting for the writer thread.

    Attributes:
      kind: PREDICT, CLASSIFY, REGRESS or MULTI_INFERENCE.
      build: Returns the ModelSpec that answered and the serialized (request, response) of the kind, one
        pair per example (called in the writer thread: `split` for gRPC's messages, `rest_predict` & co.
        for REST's arrays).
      timestamp_secs: When the request was answered (seconds since the epoch).
      model_name: The model the request addressed (for the counters).
    """

    kind: str
    build: Callable[[], Logged]
    timestamp_secs: int
    model_name: str = ""


def fill_tensor(proto: tensor_pb2.TensorProto, value: np.ndarray) -> None:
    """Writes an array into `proto` in typed fields (TF Serving's default wire form), in place: building
    and then copying a TensorProto costs twice, and this runs once per logged tensor."""
    array = np.asarray(value)
    fast = _FAST.get(array.dtype)
    if fast is None and not (array.dtype == object or array.dtype.kind in ("S", "U")):
        from serving.grpc_api import output_tensor_proto  # half, complex, small ints: as the gRPC answer

        proto.CopyFrom(output_tensor_proto(array))
        return
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    if fast is not None:
        proto.dtype = fast[0]
        getattr(proto, fast[1]).extend(array.reshape(-1).tolist())
    else:
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(item.encode("utf-8") if isinstance(item, str) else bytes(item)
                                for item in array.reshape(-1))


def tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """An array as a new TensorProto (see `fill_tensor`)."""
    proto = tensor_pb2.TensorProto()
    fill_tensor(proto, value)
    return proto


def model_spec(name: str, version: int, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def rest_predict(name: str, version: int, signature_name: str, inputs: dict[str, np.ndarray],
                 outputs: dict[str, np.ndarray]) -> Logged:
    """A REST :predict as the gRPC Predicts it is equivalent to, one per row (all outputs: REST has no filter).

    The hot path of request logging: assembled as wire bytes (serving/wire.py); a dtype the wire
    module does not write is built with the protobuf library instead.
    """
    spec = model_spec(name, version, signature_name)
    spec_bytes = spec.SerializeToString()
    rows = _batch_size([array.shape for array in (*inputs.values(), *outputs.values())])
    parts = [slice(row, row + 1) for row in range(rows)] if rows is not None and rows > 1 else [None]
    pairs = []
    for part in parts:  # None: the request whole (one row, or not batched alike), no slicing
        request = b"".join(tensor_entry(wire.INPUTS, key, value if part is None else value[part])
                           for key, value in inputs.items())
        response = b"".join(tensor_entry(wire.OUTPUTS, key, value if part is None else value[part])
                            for key, value in outputs.items())
        pairs.append(wire.predict_pair(spec_bytes, request, response))
    return spec, pairs


def tensor_entry(map_key: bytes, name: str, array: np.ndarray) -> bytes:
    """One map<string, TensorProto> entry's bytes (wire.py's, or the protobuf library's for other dtypes)."""
    encoded = wire.tensor_entry(map_key, name, array)
    if encoded is None:  # a dtype the wire module does not write: the protobuf library's bytes
        encoded = wire.field(map_key, wire.field(wire.MAP_KEY, name.encode("utf-8"))
                             + wire.field(wire.MAP_VALUE, tensor_proto(array).SerializeToString()))
    return encoded


def _batch_size(shapes: list) -> int | None:
    """The leading dimension every tensor shares, or None (not batched alike: logged whole)."""
    sizes = {shape[0] if len(shape) else None for shape in shapes}
    return next(iter(sizes)) if len(sizes) == 1 and None not in sizes else None


def rest_classify(name: str, version: int, signature_name: str, examples: list[bytes], rows: list
                  ) -> Logged:
    """A REST :classify as the gRPC Classifies it is equivalent to, one per example."""
    from serving.grpc_api import fill_classifications  # the gRPC layer owns the answer's layout

    spec = model_spec(name, version, signature_name)
    request = classification_pb2.ClassificationRequest(model_spec=spec)
    request.input.example_list.examples.extend(tf.train.Example.FromString(data) for data in examples)
    response = classification_pb2.ClassificationResponse(model_spec=spec)
    fill_classifications(response.result, rows)
    return split(CLASSIFY, request, response)


def rest_regress(name: str, version: int, signature_name: str, examples: list[bytes], values: list[float]
                 ) -> Logged:
    """A REST :regress as the gRPC Regresses it is equivalent to, one per example."""
    spec = model_spec(name, version, signature_name)
    request = regression_pb2.RegressionRequest(model_spec=spec)
    request.input.example_list.examples.extend(tf.train.Example.FromString(data) for data in examples)
    response = regression_pb2.RegressionResponse(model_spec=spec)
    response.result.regressions.extend(regression_pb2.Regression(value=value) for value in values)
    return split(REGRESS, request, response)


def records(entry: Entry, sampling: logging_config_pb2.SamplingConfig) -> list[bytes]:
    """The entry's serialized PredictionLog records, one per example (see the module doc)."""
    spec, pairs = entry.build()
    metadata = metadata_bytes(spec.SerializeToString(), sampling.SerializeToString(), entry.timestamp_secs)
    return [wire.prediction_log(metadata, entry.kind, request, response) for request, response in pairs]


@functools.lru_cache(maxsize=64)  # consecutive requests share the model, the sampling and the second
def metadata_bytes(spec: bytes, sampling: bytes, timestamp_secs: int) -> bytes:
    """A serialized LogMetadata from a serialized ModelSpec and SamplingConfig."""
    return logging_pb2.LogMetadata(model_spec=model_pb2.ModelSpec.FromString(spec),
                                   sampling_config=logging_config_pb2.SamplingConfig.FromString(sampling),
                                   saved_model_tags=SAVED_MODEL_TAGS, timestamp_secs=timestamp_secs
                                   ).SerializeToString()


def split(kind: str, request: Message, response: Message) -> Logged:
    """A gRPC request and its response: the ModelSpec that answered, and one serialized pair per example."""
    return _answered_spec(kind, request, response), [
        (one_request.SerializeToString(), one_response.SerializeToString())
        for one_request, one_response in _SPLIT[kind](request, response)]


def _answered_spec(kind: str, request, response) -> model_pb2.ModelSpec:
    """The ModelSpec that answered: the response's (name, version, signature), as TF Serving's log metadata."""
    if kind == MULTI_INFERENCE:
        return response.results[0].model_spec if response.results else request.tasks[0].model_spec
    return response.model_spec


def _split_predict(request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse):
    tensors = [*request.inputs.values(), *response.outputs.values()]
    rows = _batch_size([[dim.size for dim in proto.tensor_shape.dim] for proto in tensors])
    if rows is None or rows <= 1:
        return [(request, response)]  # unbatched, or one row: logged as it came
    inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    pairs = []
    for row in range(rows):
        one_request = predict_pb2.PredictRequest(model_spec=request.model_spec, output_filter=request.output_filter)
        for name, array in inputs.items():
            fill_tensor(one_request.inputs[name], array[row:row + 1])
        one_response = predict_pb2.PredictResponse(model_spec=response.model_spec)
        for name, array in outputs.items():
            fill_tensor(one_response.outputs[name], array[row:row + 1])
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
