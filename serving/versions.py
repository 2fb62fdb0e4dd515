"""Which versions of one model exist on disk, which are served, and swapping them.

The version policy (TF Serving's `ServableVersionPolicy`: latest N, the
default latest 1; all; specific) picks the *aspired* versions among those on
disk. As TF Serving's `AvailabilityPreservingPolicy`, new versions are loaded
and warmed up while the old ones keep serving, and a version no longer
aspired is unloaded only once an aspired one is available (or none is
aspired at all). Requests take a reference to a `Servable` when they start
and keep it for their whole duration, so a swap never fails one.

Directory names are parsed as integers before anything touches the file
system, so no request can name a path: versions are looked up in memory only.

The base path may be on object storage (gs://, s3://): there a version is
listed only once its completion marker is present (`trainer.storage`), and
is copied to local disk and loaded from there. A listing that fails (the
store unreachable) changes nothing: the loaded versions keep serving.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable

from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import invalid_argument, not_found
from serving.model_config import VersionPolicy
from serving.servable import Servable
from trainer import storage
from trainer.layout import list_versions  # one home of the version directories

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
      policy: Which versions to serve; latest 1 by default.
    """

    def __init__(self, model_name: str, base_path: str, version_labels: dict[str, int] | None = None,
                 max_num_load_retries: int = 5, loader: Callable[[int, str], Servable] | None = None,
                 policy: VersionPolicy | None = None):
        self.model_name = model_name
        self.base_path = base_path
        self.policy = policy or VersionPolicy()
        # Replaced whole, never mutated, so request threads read it without a lock.
        self.version_labels: dict[str, int] = dict(version_labels or {})
        self._max_retries = max_num_load_retries
        self._loader = loader or _load_and_warm_up
        self._lock = threading.Lock()  # guards _loaded and _states, never held while loading
        self._loaded: dict[int, Servable] = {}  # replaced whole (copy on write): one atomic read per request
        self._states: dict[int, tuple[int, str]] = {}  # version -> (State, error message)
        self._failures: dict[int, int] = {}
        self._poll_lock = threading.Lock()  # one scan at a time (poll thread vs. explicit calls)
        self._retired = False
        self._local_copies: dict[int, str] = {}  # version -> local copy of a version on object storage

    def configure(self, base_path: str, policy: VersionPolicy) -> None:
        """Takes a reloaded config's base path and policy (applied on the next poll)."""
        with self._poll_lock:
            self.base_path, self.policy, self._retired = base_path, policy, False

    def retire(self) -> None:
        """The model left the config: every version is unloaded (its status stays, as END)."""
        with self._poll_lock:
            self._retired = True
        self.poll_once()

    @property
    def retired(self) -> bool:
        return self._retired

    def poll_once(self) -> None:
        """Scans the base path, loads newly aspired versions and unloads the others."""
        with self._poll_lock:
            try:
                on_disk = {} if self._retired else list_versions(self.base_path)
            except Exception as error:  # object storage unreachable: keep serving what is loaded, try next poll
                log.warning("cannot list %s: %s", self.base_path, " ".join(str(error).split())[:300])
                return
            candidates = {v for v in on_disk if self._failures.get(v, 0) <= self._max_retries}
            aspired = self.policy.select(candidates)
            for version in sorted(aspired - set(self._loaded), reverse=True):  # highest first, as TF Serving
                self._load(version, on_disk[version])
            self._unload_unaspired(aspired)

    def _unload_unaspired(self, aspired: set[int]) -> None:
        loaded = self._loaded
        unaspired = sorted(set(loaded) - aspired)
        if aspired and not aspired & set(loaded):
            unaspired = unaspired[:-1]  # nothing aspired is available: keep the newest old version serving
        for version in unaspired:
            self._unload(version)

    def _load(self, version: int, path: str) -> None:
        self._set_state(version, State.LOADING)
        log.info("loading %s version %d from %s", self.model_name, version, path)
        try:
            if storage.is_remote(path):  # a marked version on object storage, loaded from a local copy
                path = self._local_copies[version] = _local_copy(version, path)
            servable = self._loader(version, path)
        except Exception as error:  # a broken version must not take the server down
            self._drop_local_copy(version)
            self._failures[version] = self._failures.get(version, 0) + 1
            log.warning("failed to load %s version %d: %s", self.model_name, version, error)
            self._set_state(version, State.END, f"{type(error).__name__}: {error}")
            return
        with self._lock:
            self._loaded = {**self._loaded, version: servable}
            self._states[version] = (State.AVAILABLE, "")
        log.info("serving %s version %d", self.model_name, version)

    def _unload(self, version: int) -> None:
        with self._lock:
            # In-flight requests still hold the servable; it is freed when they end.
            self._loaded = {v: s for v, s in self._loaded.items() if v != version}
            self._states[version] = (State.END, "")
        self._drop_local_copy(version)  # the servable holds its graph and variables in memory
        log.info("unloaded %s version %d", self.model_name, version)

    def close(self) -> None:
        """Removes the local copies of remote versions (the server is stopping; loaded models stay in memory)."""
        for version in list(self._local_copies):
            self._drop_local_copy(version)

    def _drop_local_copy(self, version: int) -> None:
        local = self._local_copies.pop(version, None)
        if local:
            shutil.rmtree(local, ignore_errors=True)

    def _set_state(self, version: int, state: int, message: str = "") -> None:
        with self._lock:
            self._states[version] = (state, message)

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request addresses; the caller keeps it for the request.

        No version means the highest available one (ServableRequest::Latest).

        Raises:
          ServingError: NOT_FOUND for an unknown model or version,
            INVALID_ARGUMENT for an unknown label or both version and label.
        """
        if version is not None and label:
            raise invalid_argument("ModelSpec has both version and version_label set; set at most one")
        if label:
            version = self.label_version(label)
        loaded = self._loaded  # one atomic read: the request keeps what it found
        if name != self.model_name or not loaded or (version is not None and version not in loaded):
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        return loaded[max(loaded) if version is None else version]

    def label_version(self, label: str) -> int:
        """The version `label` names (GetModelVersionForLabel)."""
        labels = self.version_labels
        if label not in labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return labels[label]

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
    def available_versions(self) -> list[int]:
        """The versions being served, ascending."""
        return sorted(self._loaded)

    @property
    def serving_version(self) -> int | None:
        """The version a request without a version gets (the highest available)."""
        loaded = self._loaded
        return max(loaded) if loaded else None


def _local_copy(version: int, path: str) -> str:
    """Copies a version on object storage (gs://, s3://) to a fresh local directory; returns it.

    Only marked versions are listed (`trainer.storage.publish_tree`), so the
    copy is whole; loading from local disk serves s3:// too, which
    TensorFlow 2.21 cannot open.
    """
    local = tempfile.mkdtemp(prefix=f"v{version}-", dir=_copies_parent())
    try:
        storage.copy_tree(path, local)
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    return local


_copies_lock = threading.Lock()
_copies_root: str | None = None


def _copies_parent() -> str:
    """This process's one directory for local copies (`imbalance-serving-<pid>-*`), removed when it exits.

    `ModelServer.stop` removes the copies themselves; the parent goes at exit
    (a SIGKILL leaves it, one directory per process, named by its PID).
    """
    global _copies_root
    with _copies_lock:
        if _copies_root is None or not os.path.isdir(_copies_root):
            _copies_root = tempfile.mkdtemp(prefix=f"imbalance-serving-{os.getpid()}-")
            atexit.register(shutil.rmtree, _copies_root, True)
        return _copies_root


def _load_and_warm_up(version: int, path: str) -> Servable:
    servable = Servable(version, path)
    servable.warm_up()
    return servable
