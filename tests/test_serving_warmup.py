"""Warm-up: `assets.extra/tf_serving_warmup_requests` replayed before a version becomes AVAILABLE.

Mirrors tensorflow/serving's `saved_model_warmup_test.cc` (MixedWarmupData,
UnsupportedLogType_*) and `saved_model_warmup_util_test.cc` (NoWarmupDataFile,
TooManyWarmupRecords, UnsupportedFileFormat, RunFailure). The replayed
requests are observed through a variable the model's signatures add their
batch size to (the empty-batch warm-up call adds 0).
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import warmup
from serving.app import ServerOptions, start
from serving.errors import ServingError
from tests.test_serving_models import CLASSIFY, REGRESS, example
from trainer.layout import WARMUP_FILE

EXAMPLES = tf.TensorSpec([None], tf.string, name="inputs")


class Counting(tf.Module):
    """Signatures that count the rows they are called with."""

    def __init__(self):
        super().__init__()
        self.rows = tf.Variable(0, dtype=tf.int64)

    def _count(self, batch):
        self.rows.assign_add(tf.cast(tf.shape(batch)[0], tf.int64))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        self._count(x)
        return {"y": x}

    @tf.function(input_signature=[EXAMPLES])
    def regress(self, inputs):
        self._count(inputs)
        return {"outputs": tf.zeros(tf.shape(inputs), tf.float32)}

    @tf.function(input_signature=[EXAMPLES])
    def classify(self, inputs):
        self._count(inputs)
        return {"scores": tf.zeros([tf.shape(inputs)[0], 1], tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def total(self, x):
        return {"rows": self.rows.read_value()}

    def signatures(self) -> dict:
        return {"serving_default": self.predict, "regress": self.regress, "classify": self.classify,
                "total": self.total}


def _records() -> list[prediction_log_pb2.PredictionLog]:
    """MixedWarmupData: one record of each kind; 2 + 3 + 1 + (1 + 1) rows."""
    predict = prediction_log_pb2.PredictionLog()
    predict.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0], np.float32)))
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress"
    for value in (1.0, 2.0, 3.0):
        regress.regress_log.request.input.example_list.examples.add().CopyFrom(example(x=value))
    classify = prediction_log_pb2.PredictionLog()
    classify.classify_log.request.model_spec.signature_name = "classify"
    classify.classify_log.request.input.example_list.examples.add()
    multi = prediction_log_pb2.PredictionLog()
    multi.multi_inference_log.request.input.example_list.examples.add()
    for signature, method in (("regress", REGRESS), ("classify", CLASSIFY)):
        task = multi.multi_inference_log.request.tasks.add(method_name=method)
        task.model_spec.signature_name = signature
    return [predict, regress, classify, multi]


def _write_model(version_dir: str, records: list | None) -> None:
    module = Counting()
    tf.saved_model.save(module, version_dir, signatures=module.signatures())
    if records is not None:
        os.makedirs(os.path.join(version_dir, "assets.extra"))
        with tf.io.TFRecordWriter(os.path.join(version_dir, WARMUP_FILE)) as writer:
            for record in records:
                writer.write(record if isinstance(record, bytes) else record.SerializeToString())


def _serve(base: str):
    return start(ServerOptions(model_name="counting", model_base_path=base, port=None, rest_api_port=0,
                               file_system_poll_wait_seconds=0, max_num_load_retries=0))


def _status(server) -> dict:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/counting"
    return requests.get(url, timeout=30).json()["model_version_status"][0]


def _rows_counted(server) -> int:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/counting:predict"
    response = requests.post(url, json={"signature_name": "total", "inputs": [0.0]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


@pytest.mark.slow  # starts a server
@pytest.mark.parametrize("records, rows", [(None, 0), ([], 0), (_records(), 8)])
def test_warmup_records_are_replayed_before_the_version_serves(tmp_path, records, rows):
    """MixedWarmupData (every record run once, Predict/Regress/Classify/MultiInference), NoWarmupDataFile
    and WarmupDataFileEmpty (no replay, the version still loads)."""
    _write_model(str(tmp_path / "1"), records)
    with _serve(str(tmp_path)) as server:
        assert _status(server)["state"] == "AVAILABLE"
        assert _rows_counted(server) == rows


@pytest.mark.slow  # starts a server
def test_a_failing_warmup_keeps_the_version_from_serving(tmp_path):
    """RunFailure: a record that fails (here an unknown signature) fails the load; the version is
    never AVAILABLE and requests to it are NOT_FOUND."""
    bad = prediction_log_pb2.PredictionLog()
    bad.regress_log.request.model_spec.signature_name = "nope"
    bad.regress_log.request.input.example_list.examples.add()
    _write_model(str(tmp_path / "1"), [*_records(), bad])
    with _serve(str(tmp_path)) as server:
        status = _status(server)
        assert status["state"] == "END" and "No signature was found with the name: nope" in status["status"][
            "error_message"]
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/counting:predict"
        assert requests.post(url, json={"inputs": [1.0]}, timeout=30).status_code == 404


def test_records_tf_serving_refuses(tmp_path):
    """TooManyWarmupRecords (INVALID_ARGUMENT beyond 1,000), UnsupportedFileFormat (DATA_LOSS),
    UnsupportedLogType_SessionRun and _PredictStreamed (UNIMPLEMENTED)."""
    path = tmp_path / WARMUP_FILE
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(warmup.MAX_RECORDS + 1):
            writer.write(prediction_log_pb2.PredictionLog().SerializeToString())
    with pytest.raises(ServingError, match="exceeds the maximum") as caught:
        warmup.read_records(str(tmp_path))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    path.write_bytes(b"not a TFRecord file at all")
    with pytest.raises(ServingError, match="TFRecord format") as caught:
        warmup.read_records(str(tmp_path))
    assert caught.value.code == grpc.StatusCode.DATA_LOSS
    for kind in ("session_run_log", "predict_streamed_log"):
        record = prediction_log_pb2.PredictionLog()
        getattr(record, kind).SetInParent()
        with pytest.raises(ServingError, match="Unsupported log_type") as caught:
            warmup.replay(None, None, [record])  # refused before any servable is touched
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.slow
def test_the_exporter_writes_a_request_per_signature(version_dir, server):
    """TF Serving's "SavedModel Warmup" guide: the exported version carries the file in
    assets.extra; its records name each signature, and this server loaded the version after
    replaying them (the shared `server` fixture serves a copy of it)."""
    records = warmup.read_records(version_dir)
    kinds = [(r.WhichOneof("log_type"), getattr(r, r.WhichOneof("log_type")).request.model_spec.signature_name)
             for r in records]
    assert kinds == [("predict_log", "serving_default"), ("predict_log", "predict_features"),
                     ("classify_log", "classification")]
    assert server.versions.serving_version == 1
