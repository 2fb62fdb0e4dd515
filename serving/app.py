"""Assembles the model server: versions, service, REST and gRPC listeners.

`start(options)` returns a running `ModelServer` (used by tests and the
benchmark, in-process); `serve(options)` runs one until SIGINT/SIGTERM (used by
`python -m serving.server`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading

from serving import model_config, monitoring, warmup
from serving.batching import BatchingOptions
from serving.errors import ServingError
from serving.grpc_api import make_grpc_server
from serving.log_collector import CollectorOptions
from serving.models import ModelRegistry
from serving.request_log import RequestLoggers
from serving.rest import RestServer
from serving.servable import Servable
from serving.service import ModelService
from serving.versions import VersionManager

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """What tensorflow_model_server's flags configure.

    Attributes:
      model_name: Name clients address the model by (unused with a config file).
      model_base_path: Directory of `<version>/` SavedModels (unused with a config file).
      port: gRPC port (0 picks a free one; None disables gRPC).
      rest_api_port: REST port (0 picks a free one; None disables REST).
      host: Address both listeners bind.
      file_system_poll_wait_seconds: Version poll period (<= 0: load once).
      batching: Batching parameters, or None for no batching.
      max_request_bytes: Largest REST body accepted (413 beyond).
      grpc_max_threads: gRPC worker threads.
      rest_api_num_threads: REST worker threads, TF Serving's default of 4 x
        CPUs (at least 8): they run the unbatched model calls that are not
        run in the event loop, and large or non-inference requests; the
        connections, and requests waiting for a batch, live in the loop.
      max_num_load_retries: Polls on which a failed version is retried.
      version_labels: Label -> version for `/labels/{label}` requests (single model).
      model_config_file: A text-format ModelServerConfig serving several
        models; replaces model_name, model_base_path and version_labels.
      model_config_file_poll_wait_seconds: Period to re-read that file
        (<= 0: read once, at start).
      allow_version_labels_for_unavailable_models: A new label may name a
        version that is not loaded.
      monitoring_config_file: A text-format MonitoringConfig; with
        `prometheus_config { enable: true }` the REST port serves request
        metrics at its path.
      request_log: Queue and file sizes of the request logs the model
        config's `logging_config`s ask for (serving/request_log.py).
    """

    model_name: str
    model_base_path: str
    port: int | None = 8500
    rest_api_port: int | None = None  # as TF Serving: REST only when a port is given
    host: str = "127.0.0.1"
    file_system_poll_wait_seconds: float = 1.0
    batching: BatchingOptions | None = None
    max_request_bytes: int = 32 * 1024 * 1024
    grpc_max_threads: int = dataclasses.field(default_factory=lambda: _default_threads())
    # A REST request waiting for its batch holds no worker (serving/rest.py), so batches are not bounded
    # by this pool; more threads than this only contend for the GIL (docs/benchmarks.md, Serving).
    rest_api_num_threads: int = dataclasses.field(default_factory=lambda: _default_threads())
    max_num_load_retries: int = 5
    version_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    allow_version_labels_for_unavailable_models: bool = False
    monitoring_config_file: str | None = None
    request_log: CollectorOptions = CollectorOptions()


def _default_threads() -> int:
    return max(8, 4 * (os.cpu_count() or 1))


class ModelServer:
    """A started server; `stop()` shuts every part down.

    Attributes:
      models: The served models (tests poll them directly).
      metrics: The request metrics, or None without a Prometheus config.
      grpc_port: The bound gRPC port, or None.
      rest_port: The bound REST port, or None.
    """

    def __init__(self, options: ServerOptions):
        self.options = options
        self.request_log = RequestLoggers(options.request_log)  # realized from each config's logging_configs
        self.models = ModelRegistry(self._load, options.max_num_load_retries,
                                    options.allow_version_labels_for_unavailable_models, self.request_log)
        self.service = ModelService(self.models, options.batching, self.request_log)
        # Warm-up requests run unbatched: the version is not serving yet, nothing could join them.
        self._warmup_service = ModelService(self.models)
        self.metrics: monitoring.Metrics | None = None
        self._metrics_path: str | None = None
        self.grpc_port = self.rest_port = None
        self._grpc = self._rest = None

    def _load(self, version: int, path: str) -> Servable:
        return warmup.load_and_warm_up(self._warmup_service, version, path)

    @property
    def versions(self) -> VersionManager | None:
        """The version manager of `--model_name` (None if no such model is configured)."""
        return self.models.manager(self.options.model_name)

    def _initial_config(self) -> model_config.ModelServerConfig:
        if self.options.model_config_file:
            return model_config.read(self.options.model_config_file)
        return model_config.single_model(self.options.model_name, self.options.model_base_path,
                                         self.options.version_labels)

    def start(self) -> ModelServer:
        """Loads the configured models, then listens.

        Raises:
          ServingError: The config (file) is refused, as tensorflow_model_server
            refuses to start on it.
        """
        self._configure_monitoring()
        # Load before listening, so the first request finds a version (as
        # tensorflow_model_server, which waits for the initial load).
        self.models.reload(self._initial_config())
        for name, versions in self.models.available().items():
            if not versions:
                log.warning("no loadable version of %s yet; waiting for one", name)
        self.models.start(self.options.file_system_poll_wait_seconds, self.options.model_config_file,
                          self.options.model_config_file_poll_wait_seconds)
        if self.options.port is not None:
            self._grpc, self.grpc_port = make_grpc_server(self.service, self.options.host, self.options.port,
                                                          self.options.grpc_max_threads, self.metrics)
            self._grpc.start()
        if self.options.rest_api_port is not None:
            self._rest = RestServer(self.service, self.options.host, self.options.rest_api_port,
                                    self.options.max_request_bytes, self.options.rest_api_num_threads,
                                    self.metrics, self._metrics_path).start()
            self.rest_port = self._rest.port
        log.info("serving %s: gRPC on %s:%s, REST on %s:%s", ", ".join(self.models.model_names), self.options.host,
                 self.grpc_port, self.options.host, self.rest_port)
        return self

    def _configure_monitoring(self) -> None:
        if not self.options.monitoring_config_file:
            return
        try:
            with open(self.options.monitoring_config_file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ValueError(f"{self.options.monitoring_config_file}: {error.strerror}") from None
        self._metrics_path = monitoring.prometheus_path(text)
        if self._metrics_path is not None:
            self.metrics = monitoring.Metrics()
            self.metrics.add_section(self.request_log.prometheus_lines)
            if self.options.rest_api_port is None:  # as TF Serving: the page needs the REST port
                log.warning("Prometheus metrics need --rest_api_port; they are not served")

    def stop(self) -> None:
        self.models.stop()
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
            self._grpc = None
        self.request_log.close()  # last: requests answered while stopping are written too

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start(options: ServerOptions) -> ModelServer:
    """Starts a server in this process (listeners and poll run in threads).

    A missing base path is not an error: as tensorflow_model_server, the
    server starts and serves the first version that appears there.
    """
    if not options.model_config_file and "://" not in options.model_base_path and not os.path.isdir(
            options.model_base_path):
        log.warning("model base path %s does not exist (yet)", options.model_base_path)
    return ModelServer(options).start()


def serve(options: ServerOptions) -> int:
    """Runs a server until SIGINT or SIGTERM; returns the exit status."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        server = start(options)
    except (OSError, ValueError, ServingError) as error:
        log.error("cannot start: %s", error)
        return 1
    try:
        stopping.wait()
    finally:
        server.stop()
    return 0
