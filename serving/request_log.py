"""Request logging: each model's `logging_config` of `--model_config_file`, as TF Serving's ServerRequestLogger.

Semantics from tensorflow_serving/core (`server_request_logger.cc`,
`request_logger.cc`, `log_collector.cc`; `ServerCore::MaybeUpdateServerRequestLogger`):

- a model's `logging_config` is read with the rest of the ModelServerConfig, at
  start, on every re-read of the file and on `HandleReloadConfigRequest`; the
  loggers are keyed by the serialized LoggingConfig, so a reload keeps the
  logger (and its open file) of a config that did not change and models with
  the same config share one; a logger no longer configured is closed;
- each successful Predict, Classify, Regress or MultiInference of a model
  with a logger is sampled on its own: logged when a uniform draw in [0, 1)
  is below `sampling_rate` (`UniformSampler::Sample`), so 0 logs nothing and 1
  logs everything; failed requests are not logged;
- an unknown collector type is refused when the config is read (NOT_FOUND),
  and so, unlike TF Serving, is a rate outside [0, 1]: either refusal changes
  nothing (this server checks before loading models; TF Serving after).

Counters (on the Prometheus page when `--monitoring_config_file` enables it):
`:tensorflow:serving:request_log_count{model_name,status_code}`, TF Serving's,
counts sampled requests by what the collector said: "OK" queued,
"RESOURCE_EXHAUSTED" dropped because the queue was full; the writer's own
counts are `:tensorflow:serving:request_log_records_written{model_name}` and
`:tensorflow:serving:request_log_write_errors{model_name}`, and
`:tensorflow:serving:request_log_writer_cpu_seconds{filename_prefix}` is the
CPU time each writer thread has used (what logging costs the server, besides
a sample draw and an append per request).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable

from google.protobuf.message import Message
from tensorflow_serving.config import logging_config_pb2

from serving import log_collector, model_config, monitoring, prediction_log
from serving.log_collector import CollectorOptions

REQUEST_LOG_COUNT = ":tensorflow:serving:request_log_count"
RECORDS_WRITTEN = ":tensorflow:serving:request_log_records_written"
WRITE_ERRORS = ":tensorflow:serving:request_log_write_errors"
WRITER_CPU_SECONDS = ":tensorflow:serving:request_log_writer_cpu_seconds"
OK, DROPPED = "OK", "RESOURCE_EXHAUSTED"

log = logging.getLogger(__name__)


class Sampler:
    """TF Serving's UniformSampler: `Sample(rate)` is a uniform draw in [0, 1) below `rate`."""

    def __init__(self, rng: random.Random | None = None):
        self._random = (rng or random.Random()).random  # C-implemented: safe to call from any thread

    def sample(self, rate: float) -> bool:
        return self._random() < rate


class RequestLogger:
    """One LoggingConfig: its sampling rate and its collector."""

    def __init__(self, config: logging_config_pb2.LoggingConfig, collector, sampler: Sampler | None = None):
        self.config = config
        self.rate = config.sampling_config.sampling_rate
        self.collector = collector
        self.sampler = sampler or Sampler()


class RequestLoggers:
    """Every model's request logger, updated with the model config (TF Serving's ServerRequestLogger).

    Args:
      options: Queue and rotation sizes for the collectors this creates.
    """

    def __init__(self, options: CollectorOptions | None = None):
        self._options = options or CollectorOptions()
        self._by_model: dict[str, RequestLogger] = {}  # replaced whole: requests read it without a lock
        self._by_config: dict[bytes, RequestLogger] = {}
        self._update_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._next_id = 0
        self._counts: collections.Counter[tuple[str, str, str]] = collections.Counter()  # (metric, model, status)

    # --- configuration --------------------------------------------------------------------------------

    @staticmethod
    def check(config: model_config.ModelServerConfig) -> None:
        """Refuses a config whose logging_config cannot be realized (see `log_collector.check`)."""
        for entry in config.model_config_list.config:
            if entry.HasField("logging_config"):
                log_collector.check(entry.logging_config, entry.name)

    def update(self, config: model_config.ModelServerConfig) -> None:
        """Realizes `config`'s logging configs: unchanged ones kept, new ones created, dropped ones closed.

        Raises:
          ServingError: As `check` (nothing changed then).
        """
        self.check(config)
        with self._update_lock:
            by_model, by_config = {}, {}
            for entry in config.model_config_list.config:
                if not entry.HasField("logging_config"):
                    continue
                key = entry.logging_config.SerializeToString(deterministic=True)
                logger = by_config.get(key) or self._by_config.get(key) or self._create(entry.logging_config)
                by_config[key] = by_model[entry.name] = logger
            retired = [logger for key, logger in self._by_config.items() if key not in by_config]
            self._by_model, self._by_config = by_model, by_config
        for logger in retired:
            logger.collector.close()

    def _create(self, config: logging_config_pb2.LoggingConfig) -> RequestLogger:
        self._next_id += 1
        return RequestLogger(config, log_collector.create(config, self._next_id, self._options, self._written))

    def close(self) -> None:
        """Writes everything queued and closes every file (server stop)."""
        with self._update_lock:
            loggers, self._by_model, self._by_config = list(self._by_config.values()), {}, {}
        for logger in loggers:
            logger.collector.close()

    # --- requests -------------------------------------------------------------------------------------

    def log(self, model_name: str, kind: str, build: Callable[[], list[tuple[Message, Message]]]) -> None:
        """Samples one answered request of `model_name`; if drawn, queues it (`build` runs in the writer thread)."""
        logger = self._by_model.get(model_name)
        if logger is None or not logger.sampler.sample(logger.rate):
            return
        queued = logger.collector.collect(prediction_log.Entry(kind, build, int(time.time()), model_name))
        self._count(REQUEST_LOG_COUNT, model_name, OK if queued else DROPPED)
        if not queued:
            log.debug("request log queue of %s full: request dropped", model_name)

    def _written(self, entry: prediction_log.Entry, records: int, error: Exception | None) -> None:
        if records:
            self._count(RECORDS_WRITTEN, entry.model_name, "", records)
        if error is not None:
            self._count(WRITE_ERRORS, entry.model_name, "")

    def _count(self, metric: str, model_name: str, status: str, amount: int = 1) -> None:
        with self._counts_lock:
            self._counts[(metric, model_name, status)] += amount

    def count(self, metric: str, model_name: str, status: str = "") -> int:
        """A counter's value (tests, the benchmark)."""
        with self._counts_lock:
            return self._counts[(metric, model_name, status)]

    def prometheus_lines(self) -> list[str]:
        """The counters in Prometheus text format, for the metrics page."""
        with self._counts_lock:
            counts = sorted(self._counts.items())
        lines = []
        for metric in (REQUEST_LOG_COUNT, RECORDS_WRITTEN, WRITE_ERRORS):
            values = [({"model_name": model_name, **({"status_code": status} if metric == REQUEST_LOG_COUNT else {})},
                       value) for (name, model_name, status), value in counts if name == metric]
            if values:  # no logger, no lines: a server without logging shows the page it always did
                lines += monitoring.counter_lines(metric, values)
        writers = [({"filename_prefix": logger.collector.prefix}, round(logger.collector.cpu_seconds, 6))
                   for logger in list(self._by_config.values())]
        if writers:
            lines += monitoring.counter_lines(WRITER_CPU_SECONDS, writers)
        return lines
