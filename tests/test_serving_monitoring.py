"""`--monitoring_config_file`: the Prometheus page counts and times the requests sent.

Mirrors `tensorflow_model_server_test.py` (testPrometheusEndpoint: the page
at `/monitoring/prometheus/metrics` has `# TYPE` lines), `serving_config.md`
("Monitoring Configuration", whose example config is used as is),
`servables/tensorflow/util.cc` (metric names and labels),
`prediction_service_impl.cc` / `http_server.cc` (which calls are recorded,
latency only on success) and `util/prometheus_exporter.cc` (layout). The page
is read with a parser written here from Prometheus' text-format spec, not
with the server's writer.
"""

from __future__ import annotations

import collections
import re

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.app import ServerOptions, start
from serving.errors import ServingError
from serving.monitoring import prometheus_path
from tests.test_serving_models import MODEL, example, save_conformance_model

CONFIG = """prometheus_config {
  enable: true,
  path: "/monitoring/prometheus/metrics"
}
"""
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_page(text: str) -> tuple[dict[str, str], dict[tuple, float]]:
    """(metric -> TYPE, (sample name, sorted label items) -> value) from a text-format page."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            labels = tuple(sorted(_LABEL.findall(match["labels"] or "")))
            samples[(match["name"], labels)] = float(match["value"])
    return types, samples


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    base = tmp_path_factory.mktemp("monitored")
    save_conformance_model(str(base / "model" / "1"))
    (base / "monitoring.config").write_text(CONFIG)
    options = ServerOptions(MODEL, str(base / "model"), port=0, rest_api_port=0, file_system_poll_wait_seconds=0,
                            monitoring_config_file=str(base / "monitoring.config"))
    with start(options) as server:
        yield server


def test_monitoring_config():
    """MonitoringConfig: off unless enabled; PrometheusExporter::kPrometheusPath when no path is given."""
    assert prometheus_path(CONFIG) == "/monitoring/prometheus/metrics"
    assert prometheus_path("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert prometheus_path('prometheus_config { enable: true path: "/m" }') == "/m"
    assert prometheus_path("prometheus_config { enable: false }") is None
    with pytest.raises(ServingError, match="Error parsing text-format tensorflow.serving.MonitoringConfig"):
        prometheus_path("prometheus_config { enabled: true }")


@pytest.mark.slow  # `monitored` starts a server
def test_counters_match_the_requests_sent(monitored):
    rest = f"http://127.0.0.1:{monitored.rest_port}"
    sent = collections.Counter()  # (model, status) as the server answered them
    latencies = collections.Counter()  # (model, API, entrypoint) of the successful ones

    def rest_call(method, path, payload=None):
        response = requests.request(method, rest + path, json=payload, timeout=30)
        name = path.split("/")[3].split(":")[0]
        status = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}[response.status_code]
        sent[(name, status)] += 1
        if status == "OK":
            latencies[(name, path.split(":")[1] if ":" in path else "", "REST")] += 1

    for _ in range(3):
        rest_call("POST", f"/v1/models/{MODEL}:predict", {"instances": [1.0, 2.0]})
    rest_call("POST", f"/v1/models/{MODEL}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    rest_call("POST", "/v1/models/missing:predict", {"instances": [1.0]})
    rest_call("POST", f"/v1/models/{MODEL}:predict", {"instances": "not a list"})
    rest_call("GET", f"/v1/models/{MODEL}")

    with grpc.insecure_channel(f"127.0.0.1:{monitored.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def grpc_call(api, request, signature=""):
            request.model_spec.name = MODEL
            request.model_spec.signature_name = signature
            try:
                getattr(stub, api)(request, timeout=30)
                status = "OK"
                latencies[(MODEL, api, "GRPC")] += 1
            except grpc.RpcError as error:
                status = error.code().name
            sent[(MODEL, status)] += 1

        predict = predict_pb2.PredictRequest()
        predict.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        grpc_call("Predict", predict)
        grpc_call("Predict", predict)
        grpc_call("Predict", predict, signature="no_such_signature")  # FAILED_PRECONDITION
        regress = regression_pb2.RegressionRequest()
        regress.input.example_list.examples.add().CopyFrom(example(x=2.0))
        grpc_call("Regress", regress, signature="regress_x_to_y")
        grpc_call("Classify", classification_pb2.ClassificationRequest(), signature="classify_x_to_y")  # empty
        status = get_model_status_pb2.GetModelStatusRequest()  # not recorded, as TF Serving's ModelServiceImpl
        status.model_spec.name = MODEL
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)

    page = requests.get(rest + "/monitoring/prometheus/metrics", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/plain")
    types, samples = parse_page(page.text)
    assert types == {":tensorflow:serving:request_count": "counter",
                     ":tensorflow:serving:request_latency": "histogram"}
    assert {"FAILED_PRECONDITION", "INVALID_ARGUMENT", "NOT_FOUND", "OK"} <= {status for _, status in sent}
    counted = {dict(labels)["model_name"] + "/" + dict(labels)["status"]: value
               for (name, labels), value in samples.items() if name == ":tensorflow:serving:request_count"}
    assert counted == {f"{model}/{status}": count for (model, status), count in sent.items()}
    for (model, api, entrypoint), count in latencies.items():
        labels = {"model_name": model, "API": api, "entrypoint": entrypoint}
        assert _value(samples, ":tensorflow:serving:request_latency_count", **labels) == count, labels
        assert _value(samples, ":tensorflow:serving:request_latency_bucket", **labels, le="+Inf") == count
        assert _value(samples, ":tensorflow:serving:request_latency_sum", **labels) > 0
        buckets = [value for (name, items), value in samples.items()
                   if name == ":tensorflow:serving:request_latency_bucket"
                   and {k: v for k, v in items if k != "le"} == labels]
        assert len(buckets) == 34 and buckets == sorted(buckets)  # 33 bounds from 10 us, then +Inf; cumulative
    latency_series = {tuple(v for k, v in labels if k != "le") for (name, labels), _ in samples.items()
                      if name == ":tensorflow:serving:request_latency_count"}
    assert len(latency_series) == len(latencies)  # failed calls and status/metadata over gRPC left no latency
