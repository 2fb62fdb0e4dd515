"""`--monitoring_config_file`: TF Serving's request metrics on a Prometheus text endpoint.

What and how, as TF Serving (`servables/tensorflow/util.cc`,
`model_servers/prediction_service_impl.cc`, `http_server.cc`,
`util/prometheus_exporter.cc`):

- `:tensorflow:serving:request_count{model_name, status}`: a counter of
  Predict, Classify and Regress calls over gRPC and of every REST `/v1/`
  request, by the request's model name and the canonical status name
  ("OK", "INVALID_ARGUMENT", ...).
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: a
  histogram, in microseconds, of the same requests that succeeded; API is
  "Predict", "Classify" or "Regress" over gRPC ("GRPC") and the URL's verb
  ("predict", "classify", "regress"; "" for status and metadata) over REST
  ("REST"); buckets 10 us x 1.8^i, 33 of them, then +Inf.

The page is Prometheus' text format 0.0.4 written by hand: TF Serving's
metric names carry no `_total` suffix, which `prometheus_client` (not
installed here either) would add to every counter.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Callable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from serving.errors import invalid_argument

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# monitoring::Buckets::Exponential(10, 1.8, 33): the upper bounds; a last bucket takes the rest.
LATENCY_BOUNDS = tuple(10 * 1.8 ** i for i in range(33))
CONTENT_TYPE = "text/plain; version=0.0.4"


def _monitoring_config_class():
    """`tensorflow.serving.MonitoringConfig` (config/monitoring_config.proto).

    tensorflow-serving-api does not ship this proto's Python module, so the
    two messages are declared here, in a private descriptor pool that cannot
    clash with a module that does.
    """
    file = descriptor_pb2.FileDescriptorProto(name="tensorflow_serving/config/monitoring_config.proto",
                                              package="tensorflow.serving", syntax="proto3")
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    config = file.message_type.add(name="MonitoringConfig")
    config.field.add(name="prometheus_config", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                     type_name=".tensorflow.serving.PrometheusConfig",
                     label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()


def prometheus_path(text: str) -> str | None:
    """The metrics path a text-format MonitoringConfig enables, or None if Prometheus is off.

    Raises:
      ServingError: INVALID_ARGUMENT for text that does not parse.
    """
    try:
        config = text_format.Parse(text, MonitoringConfig())
    except text_format.ParseError as error:
        raise invalid_argument(f"Error parsing text-format tensorflow.serving.MonitoringConfig: {error}") from None
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PATH


class Metrics:
    """The request metrics, safe to update from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._latencies: dict[tuple[str, str, str], _Histogram] = {}
        self._sections: list[Callable[[], list[str]]] = []  # other parts' metrics (serving/request_log.py)

    def add_section(self, lines: Callable[[], list[str]]) -> None:
        """Adds the lines `lines()` returns, at each render, to the page."""
        self._sections.append(lines)

    def record(self, model_name: str, api: str, entrypoint: str, status: str, micros: float) -> None:
        """One request: counted by status; its latency kept if it succeeded (as TF Serving)."""
        with self._lock:
            self._counts[(model_name, status)] += 1
            if status == "OK":
                key = (model_name, api, entrypoint)
                histogram = self._latencies.get(key)
                if histogram is None:
                    histogram = self._latencies[key] = _Histogram()
                histogram.add(micros)

    def render(self) -> str:
        """The Prometheus text page, laid out as TF Serving's PrometheusExporter."""
        with self._lock:
            counts = sorted(self._counts.items())
            latencies = sorted((key, histogram.snapshot()) for key, histogram in self._latencies.items())
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        for (model_name, status), count in counts:
            lines.append(f"{REQUEST_COUNT}{{{_labels(model_name=model_name, status=status)}}} {count}")
        lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
        for (model_name, api, entrypoint), (buckets, total) in latencies:
            labels = _labels(model_name=model_name, API=api, entrypoint=entrypoint)
            cumulative = 0
            for index, count in enumerate(buckets):
                cumulative += count
                bound = f"{LATENCY_BOUNDS[index]:.6g}" if index < len(LATENCY_BOUNDS) else "+Inf"
                lines.append(f'{REQUEST_LATENCY}_bucket{{{labels},le="{bound}"}} {cumulative}')
            lines.append(f"{REQUEST_LATENCY}_sum{{{labels}}} {total!r}")
            lines.append(f"{REQUEST_LATENCY}_count{{{labels}}} {cumulative}")
        for section in self._sections:
            lines.extend(section())
        return "\n".join(lines) + "\n"


class _Histogram:
    __slots__ = ("buckets", "total")

    def __init__(self):
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        # tsl's Histogram: bucket i holds values below bound i (upper_bound), so a value on a bound goes up one.
        self.buckets[bisect.bisect_right(LATENCY_BOUNDS, value)] += 1
        self.total += value

    def snapshot(self) -> tuple[list[int], float]:
        return list(self.buckets), self.total


def counter_lines(metric: str, values: list[tuple[dict[str, str], int]]) -> list[str]:
    """A counter family in the page's format: its TYPE line, then one line per (labels, value)."""
    return [f"# TYPE {metric} counter", *(f"{metric}{{{_labels(**labels)}}} {value}" for labels, value in values)]


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def _escape(value: str) -> str:
    """Label values as SanitizeLabelValue: backslash and double quote escaped (and newline, per the format)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
