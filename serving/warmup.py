"""SavedModel warm-up: replays `assets.extra/tf_serving_warmup_requests` before a version serves.

TF Serving's format and rules (`saved_model_warmup.cc`,
`saved_model_warmup_util.cc`, the "SavedModel Warmup" guide): a TFRecord file
of `tensorflow.serving.PredictionLog` protos; each record's Predict, Classify,
Regress or MultiInference request is run once against the version being
loaded (its ModelSpec's name and version are ignored, its signature name is
used); any failing record, an unparsable record, a streamed-predict or
session-run log, or more than 1,000 records fails the load, so the version
never becomes AVAILABLE. No file means no warm-up.
"""

from __future__ import annotations

import os

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.errors import ServingError, invalid_argument
from serving.grpc_api import serialized_examples, tensor_to_array  # the gRPC layer owns proto decoding
from serving.inference import Task
from serving.servable import Servable
from serving.service import ModelService
from trainer.layout import WARMUP_FILE  # one home: the exporter writes it

MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords


def read_records(version_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """The version's warm-up records, in file order ([] without a file).

    Raises:
      ServingError: INVALID_ARGUMENT for an unparsable record or too many.
    """
    path = os.path.join(version_dir, WARMUP_FILE)
    if not os.path.isfile(path):
        return []
    records = []
    try:
        for data in tf.data.TFRecordDataset(path).as_numpy_iterator():
            if len(records) >= MAX_RECORDS:
                raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
            record = prediction_log_pb2.PredictionLog()
            record.ParseFromString(data)
            records.append(record)
    except tf.errors.OpError as error:  # a truncated or corrupt TFRecord: DATA_LOSS, as TF Serving
        raise ServingError(grpc.StatusCode.DATA_LOSS, f"Failed to read warmup records from {path}: {error.message}. "
                           "Please verify your warmup data is in TFRecord format") from None
    except Exception as error:  # protobuf's DecodeError, whose module differs across backends
        if isinstance(error, ServingError):
            raise
        raise invalid_argument(f"Failed to parse warmup record {len(records)} from {path}") from None
    return records


def replay(service: ModelService, servable: Servable, records: list[prediction_log_pb2.PredictionLog]) -> None:
    """Runs each record's request on `servable` through `service`.

    Raises:
      ServingError: The first failing record's error.
    """
    for record in records:
        kind = record.WhichOneof("log_type")
        if kind == "predict_log":
            request = record.predict_log.request
            inputs = {name: tensor_to_array(name, proto) for name, proto in request.inputs.items()}
            service.predict(servable, request.model_spec.signature_name, inputs, list(request.output_filter))
        elif kind == "classify_log":
            request = record.classify_log.request
            service.classify(servable, request.model_spec.signature_name, serialized_examples(request.input))
        elif kind == "regress_log":
            request = record.regress_log.request
            service.regress(servable, request.model_spec.signature_name, serialized_examples(request.input))
        elif kind == "multi_inference_log":
            request = record.multi_inference_log.request
            tasks = [Task(task.model_spec.signature_name, task.method_name) for task in request.tasks]
            service.multi_inference(servable, tasks, serialized_examples(request.input))
        elif kind is not None:  # predict_streamed_log, session_run_log
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")


def load_and_warm_up(service: ModelService, version: int, path: str) -> Servable:
    """Loads a version, calls each signature on an empty batch, then replays its warm-up records.

    Raises:
      Exception: Whatever fails; the version manager then keeps the
        version out of service (state END with the error).
    """
    servable = Servable(version, path)
    servable.warm_up()
    replay(service, servable, read_records(path))
    return servable
