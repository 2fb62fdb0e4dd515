"""TF Serving's gRPC services, on the tensorflow-serving-api protos.

`tensorflow.serving.PredictionService` (Predict, Classify, Regress,
MultiInference, GetModelMetadata) and `tensorflow.serving.ModelService`
(GetModelStatus, HandleReloadConfigRequest).
"""

from __future__ import annotations

import logging
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import prediction_log
from serving.errors import ServingError, as_serving_error, invalid_argument
from serving.inference import Task
from serving.monitoring import Metrics
from serving.service import ModelRef, ModelService

# As tensorflow_model_server: no limit on message sizes (-1), so large batches
# are not refused by the transport.
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

log = logging.getLogger(__name__)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata.

    Args:
      service: The API the calls go to.
      metrics: Where Predict, Classify and Regress are counted and timed
        (the calls TF Serving's PredictionServiceImpl records), or None.
    """

    def __init__(self, service: ModelService, metrics: Metrics | None = None):
        self._service = service
        self._metrics = metrics

    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:  # noqa: N802
        with _errors_to_status(context, self._metrics, "Predict", request.model_spec.name):
            ref = model_ref(request.model_spec)
            servable = self._service.resolve(ref)  # held for the whole call
            inputs = {name: tensor_to_array(name, proto) for name, proto in request.inputs.items()}
            result = self._service.predict(servable, request.model_spec.signature_name, inputs,
                                           list(request.output_filter))
            response = predict_pb2.PredictResponse(model_spec=result.model_spec(ref.name))
            for name, value in result.outputs.items():
                response.outputs[name].CopyFrom(output_tensor_proto(value))
            self._service.log(ref.name, prediction_log.PREDICT,
                              lambda: prediction_log.split(prediction_log.PREDICT, request, response))
            return response

    def Classify(self, request: classification_pb2.ClassificationRequest,  # noqa: N802
                 context) -> classification_pb2.ClassificationResponse:
        return self._on_examples(prediction_log.CLASSIFY, request, context, self._service.classify,
                                 classification_pb2.ClassificationResponse,
                                 lambda result, outputs: fill_classifications(result, outputs["rows"]))

    def Regress(self, request: regression_pb2.RegressionRequest,  # noqa: N802
                context) -> regression_pb2.RegressionResponse:
        return self._on_examples(prediction_log.REGRESS, request, context, self._service.regress,
                                 regression_pb2.RegressionResponse,
                                 lambda result, outputs: result.regressions.extend(
                                     regression_pb2.Regression(value=value) for value in outputs["values"]))

    def _on_examples(self, kind: str, request, context, run, response_type, fill):
        """Classify and Regress: one signature run on the request's tf.Examples, its rows filled into `result`."""
        with _errors_to_status(context, self._metrics, kind.capitalize(), request.model_spec.name):
            ref = model_ref(request.model_spec)
            servable = self._service.resolve(ref)
            result = run(servable, request.model_spec.signature_name, serialized_examples(request.input))
            response = response_type(model_spec=result.model_spec(ref.name))
            fill(response.result, result.outputs)
            self._service.log(ref.name, kind, lambda: prediction_log.split(kind, request, response))
            return response

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,  # noqa: N802
                       context) -> inference_pb2.MultiInferenceResponse:
        with _errors_to_status(context):
            # As RunMultiInferenceWithServerCore: the first task's ModelSpec picks the version.
            first = request.tasks[0].model_spec if request.tasks else None
            ref = model_ref(first) if first is not None else ModelRef("")
            servable = self._service.resolve(ref)
            names = {task.model_spec.name for task in request.tasks}
            if "" in names:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if len(names) > 1:
                raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            tasks = [Task(task.model_spec.signature_name, task.method_name) for task in request.tasks]
            results = self._service.multi_inference(servable, tasks, serialized_examples(request.input))
            response = inference_pb2.MultiInferenceResponse()
            for result in results:
                entry = response.results.add(model_spec=result.model_spec(ref.name))
                if "values" in result.outputs:
                    for value in result.outputs["values"]:
                        entry.regression_result.regressions.add(value=value)
                else:
                    fill_classifications(entry.classification_result, result.outputs["rows"])
            self._service.log(ref.name, prediction_log.MULTI_INFERENCE,
                              lambda: prediction_log.split(prediction_log.MULTI_INFERENCE, request, response))
            return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context) -> get_model_metadata_pb2.GetModelMetadataResponse:
        with _errors_to_status(context):
            return self._service.metadata(model_ref(request.model_spec), list(request.metadata_field))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, service: ModelService):
        self._service = service

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context) -> get_model_status_pb2.GetModelStatusResponse:
        with _errors_to_status(context):
            return self._service.status(model_ref(request.model_spec))

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,  # noqa: N802
                                  context) -> model_management_pb2.ReloadConfigResponse:
        """Realizes the request's config, as ModelServiceImpl: its status in the response and the RPC's.

        `metric_names` is ignored (TF Serving reports their increase from its
        own TensorFlow metrics registry; this server has none).
        """
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()
        with _errors_to_status(context):
            self._service.reload_config(request.config)
        return response


# TensorProto's typed repeated field for each dtype, as `Tensor::AsProtoField` fills them.
TYPED_FIELDS = {
    tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val", tf.int16: "int_val",
    tf.int8: "int_val", tf.uint8: "int_val", tf.uint16: "int_val", tf.int64: "int64_val", tf.bool: "bool_val",
    tf.string: "string_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val",
}


def output_tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """An output tensor in TF Serving's default wire form: typed fields, not `tensor_content`.

    `tensorflow_model_server` fills `float_val`, `int64_val`, `string_val`...
    (`Tensor::AsProtoField`) unless started with
    `--enable_serialization_as_tensor_content`; clients that read
    `outputs["scores"].float_val`, as TF Serving's example clients do, rely
    on it. `tf.make_tensor_proto` packs numeric arrays into `tensor_content`
    instead, so the values are moved into the typed field here (half and
    bfloat16 as their bits in `half_val`, complex as interleaved parts;
    dtypes without a field, such as resources, keep `tensor_content`).
    """
    proto = tf.make_tensor_proto(value)
    if not proto.tensor_content:
        return proto  # strings are always typed; a scalar may already be
    typed = _typed_values(tf.as_dtype(proto.dtype), np.asarray(value).reshape(-1))
    if typed is None:
        return proto
    field, values = typed
    proto.ClearField("tensor_content")
    getattr(proto, field).extend(values)
    return proto


def _typed_values(dtype: tf.DType, flat: np.ndarray) -> tuple[str, list] | None:
    """(TensorProto field, values) as `Tensor::AsProtoField` writes `flat`, or None."""
    if dtype in (tf.float16, tf.bfloat16):
        return "half_val", flat.view(np.uint16).tolist()  # the raw 16 bits, as TF stores them
    if dtype == tf.complex64:
        return "scomplex_val", flat.view(np.float32).tolist()  # real, imaginary, real, ...
    if dtype == tf.complex128:
        return "dcomplex_val", flat.view(np.float64).tolist()
    field = TYPED_FIELDS.get(dtype)
    return None if field is None or field == "string_val" else (field, flat.tolist())


def fill_classifications(result: classification_pb2.ClassificationResult,
                         rows: list[list[tuple[str, float]]]) -> None:
    """A ClassificationResult's `classifications`, one per example."""
    for row in rows:
        classifications = result.classifications.add()
        for label, score in row:
            classifications.classes.add(label=label, score=score)


def make_grpc_server(service: ModelService, host: str, port: int, max_workers: int,
                     metrics: Metrics | None = None) -> tuple[grpc.Server, int]:
    """A bound, not yet started gRPC server and its port (port 0 picks one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=GRPC_OPTIONS)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"could not bind gRPC to {address}")
    return server, bound


def model_ref(spec) -> ModelRef:
    """A ModelSpec proto as a ModelRef."""
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label or None
    return ModelRef(spec.name, version=version, label=label)


def tensor_to_array(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A request TensorProto as numpy, via tf.make_ndarray."""
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError, KeyError) as error:
        raise invalid_argument(f"input {name!r}: invalid TensorProto: {error}") from None


def serialized_examples(request_input) -> list[bytes]:
    """Serialized tf.Examples from a tensorflow.serving.Input.

    With `example_list_with_context`, the context's features are added to
    each example, the example's own value winning on a shared name.
    """
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in request_input.example_list.examples]
    if kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        serialized = []
        for example in listed.examples:
            merged = tf.train.Example()
            for key, feature in listed.context.features.feature.items():
                merged.features.feature[key].CopyFrom(feature)
            for key, feature in example.features.feature.items():
                merged.features.feature[key].CopyFrom(feature)
            serialized.append(merged.SerializeToString())
        return serialized
    return []  # the caller answers "Input is empty.", after checking the signature as TF Serving does


class _errors_to_status:  # noqa: N801 - used as a lowercase context manager
    """Aborts the RPC with the canonical code of any error raised inside; records the call in `metrics`."""

    def __init__(self, context, metrics: Metrics | None = None, api: str = "", model_name: str = ""):
        self._context = context
        self._metrics, self._api, self._model_name = metrics, api, model_name
        self._started = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        wrapped = None if error is None else as_serving_error(error)
        if self._metrics is not None:
            status = "OK" if wrapped is None else wrapped.code.name  # error::Code_Name's spelling
            micros = (time.perf_counter() - self._started) * 1e6
            self._metrics.record(self._model_name, self._api, "GRPC", status, micros)
        if wrapped is None:
            return False
        if not isinstance(error, (ServingError, tf.errors.OpError)):
            log.error("internal error in a gRPC call", exc_info=(kind, error, traceback))
        self._context.abort(wrapped.code, wrapped.message)  # raises, ending the RPC
        return False
