"""Which versions exist on disk, which one is served, and swapping them.

Policy (TF Serving's default, "latest 1"): serve the highest integer version
under the base path. A poll thread rescans every few seconds; a new version is
loaded and warmed up while the old one keeps serving, then the old one is
dropped. Requests take a reference to a `Servable` when they start and keep
it for their whole duration, so a swap never fails one.

Directory names are parsed as integers before anything touches the file
system, so no request can name a path: versions are looked up in memory only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import invalid_argument, not_found
from serving.servable import Servable
from trainer.export import list_versions  # the exporter owns the layout

State = get_model_status_pb2.ModelVersionStatus.State

log = logging.getLogger(__name__)


class VersionManager:
    """Loads, serves and unloads the versions of one model.

    Args:
      model_name: The name clients address the model by.
      base_path: The directory holding `<version>/` subdirectories.
      version_labels: Label -> version, for `/labels/{label}` requests.
      max_num_load_retries: Polls on which a version that failed to load is
        tried again (it may have been incomplete) before it is given up on.
      loader: Loads one version; injectable so tests can make loads fail.
    """

    def __init__(self, model_name: str, base_path: str, version_labels: dict[str, int] | None = None,
                 max_num_load_retries: int = 5, loader: Callable[[int, str], Servable] | None = None):
        self.model_name = model_name
        self.base_path = base_path
        self.version_labels = dict(version_labels or {})
        self._max_retries = max_num_load_retries
        self._loader = loader or _load_and_warm_up
        self._lock = threading.Lock()  # guards _serving and _states, never held while loading
        self._serving: Servable | None = None
        self._states: dict[int, tuple[int, str]] = {}  # version -> (State, error message)
        self._failures: dict[int, int] = {}
        self._poll_lock = threading.Lock()  # one scan at a time (poll thread vs. explicit calls)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        """Scans the base path and swaps to the version that should be served."""
        with self._poll_lock:
            on_disk = list_versions(self.base_path)
            candidates = [v for v in on_disk if self._failures.get(v, 0) <= self._max_retries]
            wanted = max(candidates, default=None)
            current = self._serving.version if self._serving else None
            if wanted is not None and wanted != current:
                self._load(wanted, on_disk[wanted])
            elif wanted is None and current is not None and current not in on_disk:
                self._unload_current()

    def _load(self, version: int, path: str) -> None:
        self._set_state(version, State.LOADING)
        log.info("loading %s version %d from %s", self.model_name, version, path)
        try:
            servable = self._loader(version, path)
        except Exception as error:  # a broken version must not take the server down
            self._failures[version] = self._failures.get(version, 0) + 1
            log.warning("failed to load %s version %d: %s", self.model_name, version, error)
            self._set_state(version, State.END, f"{type(error).__name__}: {error}")
            return
        with self._lock:
            old, self._serving = self._serving, servable
            self._states[version] = (State.AVAILABLE, "")
            if old is not None:
                # In-flight requests still hold `old`; it is freed when they end.
                self._states[old.version] = (State.END, "")
        log.info("serving %s version %d%s", self.model_name, version,
                 f" (unloaded version {old.version})" if old else "")

    def _unload_current(self) -> None:
        with self._lock:
            old, self._serving = self._serving, None
            if old is not None:
                self._states[old.version] = (State.END, "")
                log.info("version %d of %s removed from disk; unloaded", old.version, self.model_name)

    def _set_state(self, version: int, state: int, message: str = "") -> None:
        with self._lock:
            self._states[version] = (state, message)

    def start(self, poll_seconds: float) -> None:
        """Polls in a daemon thread every `poll_seconds` (no thread if <= 0)."""
        if poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll_loop, args=(poll_seconds,),
                                        name=f"poll-{self.model_name}", daemon=True)
        self._thread.start()

    def _poll_loop(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep polling whatever one scan hit
                log.exception("version poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request addresses; the caller keeps it for the request.

        Raises:
          ServingError: NOT_FOUND for an unknown model or version,
            INVALID_ARGUMENT for an unknown label or both version and label.
        """
        if version is not None and label:
            raise invalid_argument("ModelSpec has both version and version_label set; set at most one")
        if label:
            if label not in self.version_labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = self.version_labels[label]
        serving = self._serving  # one atomic read: the request keeps this object
        if name != self.model_name or serving is None or (version is not None and version != serving.version):
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        return serving

    def statuses(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus's answer: every version seen, newest first."""
        if name != self.model_name:
            raise not_found(f"Could not find any versions of model {name}")
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(states, reverse=True):
            state, message = states[number]
            entry = response.model_version_status.add(version=number, state=state)
            entry.status.SetInParent()  # TF Serving always reports a status, "OK" included
            if message:
                entry.status.error_code = 2  # tensorflow.error.UNKNOWN
                entry.status.error_message = message
        return response

    @property
    def serving_version(self) -> int | None:
        serving = self._serving
        return serving.version if serving else None


def _load_and_warm_up(version: int, path: str) -> Servable:
    servable = Servable(version, path)
    servable.warm_up()
    return servable

