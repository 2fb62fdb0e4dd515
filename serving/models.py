"""All served models: the config they come from, reloading it, and their version labels.

The counterpart of TF Serving's ServerCore: `reload(config)` realizes a
`ModelServerConfig` and only it (models added are loaded, models left out are
unloaded, policies and base paths take effect, labels move), from the
`--model_config_file` at start, from the same file every
`--model_config_file_poll_wait_seconds`, or from a gRPC
`HandleReloadConfigRequest`. One thread polls every model's base path for new
versions, one polls the config file.

Labels follow `ServerCore::UpdateModelVersionLabelMap`: a label may only name
a version that is AVAILABLE (unless `allow_version_labels_for_unavailable_models`
and the label is new), and a refused label map changes no label. Unlike TF
Serving, the labels are checked *after* the config's versions are loaded, so
one config can add a version and label it (TF Serving needs two steps).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from serving import model_config
from serving.errors import ServingError, not_found
from serving.request_log import RequestLoggers
from serving.servable import Servable
from serving.versions import VersionManager

log = logging.getLogger(__name__)


class ModelRegistry:
    """The models being served, by name.

    Args:
      loader: Loads one version (path) into a Servable, warm-up included.
      max_num_load_retries: Per version, as VersionManager's.
      allow_version_labels_for_unavailable_models: TF Serving's flag of the
        same name: a new label may name a version not loaded (yet).
      request_log: The request loggers each config's `logging_config`s update, or None.
    """

    def __init__(self, loader: Callable[[int, str], Servable], max_num_load_retries: int = 5,
                 allow_version_labels_for_unavailable_models: bool = False,
                 request_log: RequestLoggers | None = None):
        self._request_log = request_log
        self._loader = loader
        self._max_retries = max_num_load_retries
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._managers: dict[str, VersionManager] = {}  # replaced whole: requests read it without a lock
        self._config = model_config.ModelServerConfig()
        self._reload_lock = threading.Lock()  # one reload at a time (poll thread vs. gRPC)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- configuration --------------------------------------------------------------------------------

    def reload(self, config: model_config.ModelServerConfig) -> None:
        """Realizes `config`: loads what it adds, unloads what it drops, moves labels.

        Returns once every configured model has been polled once, so new
        models and versions are loaded (or have failed) by then, as
        ServerCore waits for new models to become available.

        Raises:
          ServingError: The config is refused (nothing changed), or its labels
            are (models changed, labels did not).
        """
        with self._reload_lock:
            model_config.check_transition(self._config, config)
            if config.WhichOneof("config") is None:
                log.info("taking no action for an empty model server config")
                return
            wanted = model_config.models(config)
            RequestLoggers.check(config)  # a bad logging_config changes nothing
            self._config = config
            managers = dict(self._managers)
            for entry in wanted:
                manager = managers.get(entry.name)
                if manager is None:
                    managers[entry.name] = manager = VersionManager(
                        entry.name, entry.base_path, max_num_load_retries=self._max_retries, loader=self._loader,
                        policy=entry.policy)
                else:
                    manager.configure(entry.base_path, entry.policy)
            self._managers = managers
            names = {entry.name for entry in wanted}
            for name, manager in managers.items():
                if name not in names and not manager.retired:
                    log.info("model %s left the config; unloading it", name)
                    manager.retire()
            for entry in wanted:
                managers[entry.name].poll_once()
            self._update_labels(wanted)
            if self._request_log is not None:  # after the models, as ServerCore::MaybeUpdateServerRequestLogger
                self._request_log.update(config)

    def _update_labels(self, wanted: list[model_config.ModelConfig]) -> None:
        new_labels = {}
        for entry in wanted:
            manager = self._managers[entry.name]
            available = set(manager.available_versions)
            for label, version in entry.version_labels.items():
                is_new = manager.version_labels.get(label, version) == version
                if version not in available and not (self._allow_unavailable_labels and is_new):
                    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                       f"Request to assign label to version {version} of model {entry.name}, "
                                       "which is not currently available for inference")
            new_labels[entry.name] = dict(entry.version_labels)
        for name, manager in self._managers.items():
            manager.version_labels = new_labels.get(name, {})

    def reload_file(self, path: str) -> None:
        """Reads `path` and reloads it; a bad file is logged and changes nothing (PollFilesystemAndReloadConfig)."""
        try:
            self.reload(model_config.read(path))
        except ServingError as error:
            log.error("failed to reload the model config %s: %s", path, error.message)

    # --- requests -------------------------------------------------------------------------------------

    def manager(self, name: str) -> VersionManager | None:
        """The named model's version manager (also after it left the config), or None."""
        return self._managers.get(name)

    @property
    def model_names(self) -> list[str]:
        """The models the current config serves."""
        return sorted(name for name, manager in self._managers.items() if not manager.retired)

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request addresses (see VersionManager.servable)."""
        manager = self._managers.get(name)
        if manager is None:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        return manager.servable(name, version, label)

    def statuses(self, name: str, version: int | None = None, label: str | None = None
                 ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: every version of `name` seen, or the one `version` or `label` names."""
        manager = self._managers.get(name)
        if manager is None:
            raise not_found(f"Could not find any versions of model {name}")
        if label:
            version = manager.label_version(label)
        return manager.statuses(name, version)

    def available(self) -> dict[str, list[int]]:
        """Model name -> versions being served (for logs and tests)."""
        return {name: manager.available_versions for name, manager in self._managers.items()}

    # --- polling --------------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Polls every configured model's base path once."""
        for manager in list(self._managers.values()):
            if not manager.retired:
                manager.poll_once()

    def start(self, file_system_poll_seconds: float, config_file: str | None = None,
              config_poll_seconds: float = 0) -> None:
        """Starts the poll threads (none for a period <= 0: TF Serving polls once, at start)."""
        if file_system_poll_seconds > 0:
            self._spawn("poll-models", file_system_poll_seconds, self.poll_once)
        if config_file and config_poll_seconds > 0:
            self._spawn("poll-config", config_poll_seconds, lambda: self.reload_file(config_file))

    def _spawn(self, name: str, seconds: float, function: Callable[[], None]) -> None:
        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    function()
                except Exception:  # keep polling whatever one round hit
                    log.exception("%s failed", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        for manager in self._managers.values():
            manager.close()  # local copies of versions on object storage

