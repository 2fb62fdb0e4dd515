"""Request logging: `logging_config` in `--model_config_file`, PredictionLog TFRecords, sampling, the queue.

The files are read back with TensorFlow's own reader (`tf.data.TFRecordDataset`)
and tensorflow-serving-api's `PredictionLog.FromString`; every logged request
must match what was sent and what the server answered, and its logged outputs
must be what the SavedModel itself computes on the logged inputs. Sampling is
checked against SciPy's binomial interval.
"""

from __future__ import annotations

import glob
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from scipy import stats
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import logging_config_pb2

from serving import log_burst, model_config, prediction_log, request_log, warmup
from serving.app import ServerOptions, start
from serving.errors import ServingError
from serving.log_collector import CollectorOptions
from serving.service import ModelService
from tests.serving_fixtures import (
    MODEL,
    assert_close,
    call_signature,
    example_features,
    feature_inputs,
    feature_tensors,
    post,
    serialize,
)
from trainer.layout import CLASSIFY_METHOD, WARMUP_FILE

QUIET = "quiet"  # the same model, logged at rate 0
OUTPUTS = ("class_ids", "logits", "probabilities", "scores")
MODEL_ENTRY = """config {{
  name: "{name}" base_path: "{base}" model_platform: "tensorflow"
  logging_config {{
    log_collector_config {{ type: "{kind}" filename_prefix: "{prefix}" }}
    sampling_config {{ sampling_rate: {rate} }}
  }}
}}
"""


def config_text(*entries: dict) -> str:
    return "model_config_list {\n" + "".join(MODEL_ENTRY.format(**entry) for entry in entries) + "}\n"


def read_logs(pattern: str) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(data) for path in sorted(glob.glob(pattern))
            for data in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def row_key(values: dict) -> tuple:
    """A row's feature values, comparable whatever carried them (JSON, numpy, TensorProto, tf.Example)."""
    def one(value):
        if isinstance(value, (bytes, str)):
            return value.decode() if isinstance(value, bytes) else value
        value = float(np.float32(value))
        return "nan" if math.isnan(value) else value
    return tuple(sorted((name, one(value)) for name, value in values.items()))


def example_key(example: tf.train.Example) -> tuple:
    values = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values[name] = getattr(feature, kind).value[0]
    return row_key(values)


# --- the served model, logged -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory, version_dir, rows):
    """A server logging `imbalance` at rate 1 and `quiet` at rate 0, sent REST and gRPC requests, then stopped.

    Returns what was sent and answered, per row, and the server (stopped).
    """
    root = tmp_path_factory.mktemp("request-log")
    base, logs = root / "model", root / "logs"
    shutil.copytree(version_dir, base / "1")
    (root / "models.config").write_text(config_text(
        {"name": MODEL, "base": base, "kind": "tfrecord", "prefix": logs / MODEL / "requests", "rate": 1.0},
        {"name": QUIET, "base": base, "kind": "tfrecord", "prefix": logs / QUIET / "requests", "rate": 0.0}))
    (root / "monitoring.config").write_text('prometheus_config { enable: true }')
    server = start(ServerOptions(model_name="", model_base_path="", model_config_file=str(root / "models.config"),
                                 port=0, rest_api_port=0, file_system_poll_wait_seconds=0,
                                 monitoring_config_file=str(root / "monitoring.config")))
    sent = {"predict": {}, "classify": {}, "multi": {}, "began": int(time.time())}
    try:
        _send_rest(server, rows, sent)
        _send_grpc(server, rows, sent)
        sent["page"] = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics",
                                    timeout=30).text
    finally:
        server.stop()
    sent["ended"] = int(time.time())
    return sent, server, logs


def _send_rest(server, rows, sent) -> None:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models"
    columns = feature_inputs(rows[0:3])
    answer = post(f"{url}/{MODEL}:predict", {"signature_name": "predict_features", "inputs": columns}).json()
    for i in range(3):
        sent["predict"][row_key({k: v[i] for k, v in columns.items()})] = {k: v[i] for k, v in answer["outputs"].items()}
    instance = {k: v[0] for k, v in feature_inputs(rows[3:4]).items()}
    answer = post(f"{url}/{MODEL}:predict", {"signature_name": "predict_features", "instances": [instance]}).json()
    sent["predict"][row_key(instance)] = answer["predictions"][0]
    examples = [example_features(row) for row in rows[6:8]]
    answer = post(f"{url}/{MODEL}:classify", {"examples": examples}).json()
    for example, result in zip(examples, answer["results"], strict=True):
        sent["classify"][row_key(example)] = [score for _, score in result]
    quiet = post(f"{url}/{QUIET}:predict", {"signature_name": "predict_features", "inputs": columns})
    assert quiet.status_code == 200, quiet.text


def _send_grpc(server, rows, sent) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        tensors = {k: v.numpy() for k, v in feature_tensors(rows[4:6]).items()}
        for name in (QUIET, MODEL):  # the last answer, kept below, is the logged model's
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = name, "predict_features"
            for key, value in tensors.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            response = stub.Predict(request, timeout=30)
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        for i in range(2):
            sent["predict"][row_key({k: v[i] for k, v in tensors.items()})] = {k: v[i] for k, v in outputs.items()}
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = MODEL
        examples = [example_features(row) for row in rows[0:2]]
        for example in examples:
            request.input.example_list.examples.add().ParseFromString(serialize(example))
        response = stub.Classify(request, timeout=30)
        for example, result in zip(examples, response.result.classifications, strict=True):
            sent["classify"][row_key(example)] = [entry.score for entry in result.classes]
        multi = inference_pb2.MultiInferenceRequest()
        multi.tasks.add(method_name=CLASSIFY_METHOD).model_spec.name = MODEL
        multi.tasks[0].model_spec.signature_name = "classification"
        examples = [example_features(row) for row in rows[2:4]]
        for example in examples:
            multi.input.example_list.examples.add().ParseFromString(serialize(example))
        answer = stub.MultiInference(multi, timeout=30)
        for example, result in zip(examples, answer.results[0].classification_result.classifications, strict=True):
            sent["multi"][row_key(example)] = [entry.score for entry in result.classes]


def test_every_request_is_logged_with_its_answer(logged, reference):
    sent, _, logs = logged
    records = read_logs(str(logs / MODEL / "requests-*.tfrecord"))
    assert not glob.glob(str(logs / "**" / ".*.inprogress"), recursive=True)  # closed and published on stop
    kinds = [record.WhichOneof("log_type") for record in records]
    assert sorted(kinds) == ["classify_log"] * 4 + ["multi_inference_log"] * 2 + ["predict_log"] * 6  # per example
    found = {"predict": {}, "classify": {}, "multi": {}}
    for record in records:
        metadata = record.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.version.value) == (MODEL, 1)
        assert metadata.sampling_config.sampling_rate == 1.0
        assert sent["began"] <= metadata.timestamp_secs <= sent["ended"]
        assert list(metadata.saved_model_tags) == ["serve"]
        if record.HasField("predict_log"):
            request, response = record.predict_log.request, record.predict_log.response
            assert metadata.model_spec.signature_name == request.model_spec.signature_name == "predict_features"
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
            assert {array.shape[0] for array in (*inputs.values(), *outputs.values())} == {1}
            found["predict"][row_key({k: v[0] for k, v in inputs.items()})] = outputs
            expected = call_signature(reference, "predict_features", **{k: tf.constant(v) for k, v in inputs.items()})
            for name in OUTPUTS:  # the logged answer is the model's answer to the logged question
                assert_close(outputs[name], expected[name])
        elif record.HasField("classify_log"):
            request, response = record.classify_log.request, record.classify_log.response
            assert metadata.model_spec.signature_name == "classification"
            (example,) = request.input.example_list.examples
            (classes,) = response.result.classifications
            found["classify"][example_key(example)] = [entry.score for entry in classes.classes]
        else:
            request, response = record.multi_inference_log.request, record.multi_inference_log.response
            assert [task.method_name for task in request.tasks] == [CLASSIFY_METHOD]
            (example,) = request.input.example_list.examples
            (classes,) = response.results[0].classification_result.classifications
            found["multi"][example_key(example)] = [entry.score for entry in classes.classes]
    assert set(found["predict"]) == set(sent["predict"])
    for key, answer in sent["predict"].items():
        for name in OUTPUTS:
            assert_close(found["predict"][key][name][0], answer[name])
    for kind in ("classify", "multi"):
        assert set(found[kind]) == set(sent[kind])
        for key, scores in sent[kind].items():
            assert_close(found[kind][key], scores)


def test_rate_zero_logs_nothing_and_counters_are_on_the_metrics_page(logged):
    sent, server, logs = logged
    assert read_logs(str(logs / QUIET / "*")) == []
    page = sent["page"]
    assert f'{request_log.REQUEST_LOG_COUNT}{{model_name="{MODEL}",status_code="OK"}} 6' in page
    assert QUIET not in "".join(line for line in page.splitlines() if line.startswith(request_log.REQUEST_LOG_COUNT))
    assert server.request_log.count(request_log.RECORDS_WRITTEN, MODEL) == 12


class CountingService(ModelService):
    """Counts the signature runs warm-up makes."""

    runs = 0

    def run(self, servable, signature, inputs):
        self.runs += 1
        return super().run(servable, signature, inputs)


def test_a_log_file_is_a_warmup_file(logged, tmp_path, version_dir):
    _, _, logs = logged
    (log_file,) = glob.glob(str(logs / MODEL / "requests-*.tfrecord"))
    version = tmp_path / "1"
    shutil.copytree(version_dir, version)
    os.makedirs(os.path.dirname(version / WARMUP_FILE), exist_ok=True)
    shutil.copy(log_file, version / WARMUP_FILE)
    service = CountingService(models=None)
    servable = warmup.load_and_warm_up(service, 1, str(version))
    assert servable.version == 1
    assert service.runs == len(warmup.read_records(str(version))) == 12  # every record replayed, none failed


# --- configuration errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rate", "code", "fragment"), [
    ("kafka", 1.0, grpc.StatusCode.NOT_FOUND, "Cannot find LogCollector::Factory for type: kafka"),
    ("", 1.0, grpc.StatusCode.NOT_FOUND, "Cannot find LogCollector::Factory for type: "),
    ("tfrecord", 1.5, grpc.StatusCode.INVALID_ARGUMENT, "sampling_rate of model m must be in [0, 1], got 1.5"),
    ("tfrecord", -0.1, grpc.StatusCode.INVALID_ARGUMENT, "must be in [0, 1]"),
    ("tfrecord", "nan", grpc.StatusCode.INVALID_ARGUMENT, "must be in [0, 1], got nan"),
])
def test_bad_logging_config_is_refused(tmp_path, kind, rate, code, fragment):
    config = model_config.parse(config_text({"name": "m", "base": tmp_path, "kind": kind,
                                             "prefix": tmp_path / "logs", "rate": rate}))
    loggers = request_log.RequestLoggers()
    with pytest.raises(ServingError) as raised:
        loggers.update(config)
    assert raised.value.code == code and fragment in raised.value.message
    assert not os.path.exists(tmp_path / "logs")


def test_server_refuses_to_start_on_an_unknown_collector(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(config_text({"name": "m", "base": tmp_path / "model", "kind": "kafka",
                                   "prefix": tmp_path / "logs", "rate": 1.0}))
    result = subprocess.run([sys.executable, "-m", "serving.server", f"--model_config_file={config}",
                             "--port=0", "--rest_api_port=0"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode != 0
    assert "Cannot find LogCollector::Factory for type: kafka" in result.stderr


# --- sampling, the queue and rotation, unit level -----------------------------------------------------


def test_sampling_rate_stays_within_the_binomial_interval():
    draws, rate = 20_000, 0.1
    sampler = request_log.Sampler(random.Random(20))
    sampled = sum(sampler.sample(rate) for _ in range(draws))
    low, high = stats.binom.interval(0.999, draws, rate)
    assert low <= sampled <= high
    assert not any(sampler.sample(0.0) for _ in range(1000))
    assert all(sampler.sample(1.0) for _ in range(1000))


def _loggers(tmp_path, queue_size: int, max_file_bytes: int) -> request_log.RequestLoggers:
    loggers = request_log.RequestLoggers(CollectorOptions(queue_size=queue_size, max_file_bytes=max_file_bytes))
    loggers.update(model_config.parse(config_text({"name": "m", "base": tmp_path, "kind": "tfrecord",
                                                   "prefix": tmp_path / "logs" / "m", "rate": 1.0})))
    return loggers


def _predict(value: float):
    spec = prediction_log.model_spec("m", 3, "serving_default")
    return prediction_log.rest_predict("m", 3, spec.signature_name, {"x": np.array([value], np.float32)},
                                       {"y": np.array([2 * value], np.float32)})


def test_full_queue_drops_and_counts(tmp_path):
    loggers = _loggers(tmp_path, queue_size=2, max_file_bytes=1 << 20)
    taken, release = threading.Event(), threading.Event()

    def blocking():  # the writer thread runs this: it holds the writer until released
        taken.set()
        release.wait(timeout=60)
        return _predict(0.0)

    loggers.log("m", prediction_log.PREDICT, blocking)
    assert taken.wait(timeout=60)
    for value in range(1, 10):
        loggers.log("m", prediction_log.PREDICT, lambda value=value: _predict(float(value)))
    assert loggers.count(request_log.REQUEST_LOG_COUNT, "m", request_log.DROPPED) == 7
    assert loggers.count(request_log.REQUEST_LOG_COUNT, "m", request_log.OK) == 3
    release.set()
    loggers.close()
    written = [tf.make_ndarray(r.predict_log.request.inputs["x"])[0] for r in read_logs(str(tmp_path / "logs" / "*"))]
    assert written == [0.0, 1.0, 2.0]  # the first, and the two the queue held
    lines = loggers.prometheus_lines()
    assert f'{request_log.REQUEST_LOG_COUNT}{{model_name="m",status_code="RESOURCE_EXHAUSTED"}} 7' in lines
    assert f'{request_log.RECORDS_WRITTEN}{{model_name="m"}} 3' in lines


def test_files_rotate_by_size_and_keep_every_record(tmp_path):
    loggers = _loggers(tmp_path, queue_size=100, max_file_bytes=150)
    for value in range(6):
        loggers.log("m", prediction_log.PREDICT, lambda value=value: _predict(float(value)))
    loggers.close()
    files = sorted(glob.glob(str(tmp_path / "logs" / "m-*.tfrecord")))
    assert len(files) >= 2 and not glob.glob(str(tmp_path / "logs" / ".*"))
    records = read_logs(str(tmp_path / "logs" / "m-*.tfrecord"))
    assert [tf.make_ndarray(r.predict_log.request.inputs["x"])[0] for r in records] == [0, 1, 2, 3, 4, 5]
    assert [tf.make_ndarray(r.predict_log.response.outputs["y"])[0] for r in records] == [0, 2, 4, 6, 8, 10]
    assert all(r.log_metadata.model_spec.version.value == 3 for r in records)


def test_wire_encoding_parses_to_the_protobuf_librarys_messages():
    """The hand-assembled bytes (serving/wire.py) read back, with the protobuf library, as the message the
    library builds from the same arrays, whatever the dtype, sign, shape or text."""
    arrays = {"f": np.array([[1.5, -2.0]], np.float32), "d": np.array([3.25, float("nan")]),
              "i": np.array([-7, 300], np.int32), "l": np.array([-(2 ** 40), 5]), "b": np.array([True, False]),
              "s": np.array(["é", b"\x00x", ""], object), "h": np.array([1.5], np.float16),
              "e": np.zeros((1, 0), np.float32)}
    spec = prediction_log.model_spec("m", 7, "sig")
    expected = predict_pb2.PredictRequest(model_spec=spec)
    for name, array in arrays.items():
        prediction_log.fill_tensor(expected.inputs[name], array)
    (_, pairs) = prediction_log.rest_predict("m", 7, "sig", arrays, {"y": np.array([1.0], np.float32)})
    ((request_bytes, _),) = pairs
    parsed = predict_pb2.PredictRequest.FromString(request_bytes)
    assert parsed == expected
    for name, array in arrays.items():
        reference = (np.array([v.encode("utf-8") if isinstance(v, str) else v for v in array], object)
                     if array.dtype == object else array)
        np.testing.assert_array_equal(tf.make_ndarray(parsed.inputs[name]), reference)


def test_a_burst_encodes_as_one_request_at_a_time():
    """The writer's column-wise encoding of REST :predicts (serving/log_burst.py) gives the records the
    one-at-a-time path gives, for mixed signatures, several rows, strings, integers and a request whose
    tensors do not batch alike (which falls back)."""
    rng = np.random.default_rng(3)

    def entry(signature: str, rows: int, seconds: int, batched: bool = True):
        inputs = {"x": rng.normal(size=(rows, 2)).astype(np.float32), "d": rng.normal(size=rows),
                  "region": np.array(rng.choice(["north", "sud", "é"], size=rows), dtype=object)}
        outputs = {"scores": rng.random(rows).astype(np.float32), "class_ids": rng.integers(-3, 300, rows),
                   "bias": np.array(0.5, np.float32) if not batched else rng.random(rows).astype(np.float32)}
        build = log_burst.RestPredict("m", 4, signature, inputs, outputs)
        return prediction_log.Entry(prediction_log.PREDICT, build, seconds, "m")

    entries = [entry("a", 1, 10), entry("b", 3, 10), entry("a", 2, 10), entry("a", 1, 11),
               entry("a", 2, 10, batched=False), entry("b", 1, 10)]
    sampling = logging_config_pb2.SamplingConfig(sampling_rate=1.0)
    burst = log_burst.encode(entries, sampling)
    for one, records in zip(entries, burst, strict=True):
        alone = prediction_log.records(one, sampling)
        assert [prediction_log_pb2.PredictionLog.FromString(r) for r in records] == \
            [prediction_log_pb2.PredictionLog.FromString(r) for r in alone]
    assert [len(records) for records in burst] == [1, 3, 2, 1, 1, 1]  # one record a row; unbatched: whole
