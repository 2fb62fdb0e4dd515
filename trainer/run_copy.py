"""What of a remote run is copied to local disk for a command (`Selection`), and the copy (`download`).

The working copy's other half, running the command on it and uploading what
it wrote, is `trainer.run_storage` (its docstring describes the whole).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shutil
import tempfile
from typing import Literal

from trainer import storage
from trainer.layout import (
    DATA_DIR,
    EXECUTIONS_DIR,
    PUSH_FILE,
    RUN_JSON,
    SAVED_MODEL_FILE,
    SERVING_DIR,
    VERSION_MARKER,
    is_complete,
    parse_version,
    read_push_record,
)

EXECUTIONS = ("unfinished", "latest", "served", "none")


@dataclasses.dataclass(frozen=True)
class Selection:
    """What of a remote run a command reads: the rest is not copied (`trainer.run_storage`, step 2).

    Attributes:
      executions: The executions copied in full: the `unfinished` ones (a new
        execution resumes one), the `latest` (the one evaluated), the one
        that trained the `served` version (its push record's; else the
        latest: its data is drift's and live evaluation's reference) or
        `none`. Of the others only their run.json.
      newest_version: Whether the newest marked version is copied in full
        (a new execution's gate compares with it; it is a trainer.task
        run's model).
      version_records: Whether each marked version holds its push record,
        marker and `saved_model.pb` (with the store's time): what the
        monitoring page reads. Otherwise its directory is empty.
      existing: Whether the run must be there already (a command that reads
        a run); a new execution may start one.
    """

    executions: Literal["unfinished", "latest", "served", "none"]
    newest_version: bool = True
    version_records: bool = False
    existing: bool = False

    def __post_init__(self) -> None:
        if self.executions not in EXECUTIONS:
            raise ValueError(f"executions must be one of {', '.join(EXECUTIONS)}, got {self.executions!r}")


NEW_EXECUTION = Selection("unfinished")  # trainer.task, tuning.task
EVALUATING = Selection("latest", version_records=True, existing=True)  # evaluation.task (--report-only: the page)
MONITORING = Selection("none", newest_version=False, version_records=True, existing=True)  # evaluation.monitoring
SERVED = Selection("served", version_records=True, existing=True)  # evaluation.drift, evaluation.live


@dataclasses.dataclass(frozen=True)
class WorkingCopy:
    """A remote run directory's local copy.

    Attributes:
      remote: The run's URL (gs://B/runs/r).
      local: The local directory the pipeline runs on.
      remote_files: Every file under `remote` when it was copied (relative paths).
      downloaded: relative path -> (size, mtime in ns) of each file known to be on the store as it is
        locally: copied, right after copying, or published there by the run itself
        (`trainer.run_storage.published`). The upload leaves them out while they stay unchanged.
    """

    remote: str
    local: str
    remote_files: frozenset[str]
    downloaded: dict[str, tuple[int, int]]

    @property
    def scratch(self) -> str:
        """The temporary directory that holds the copy (`local` is named as the run), removed with it."""
        return os.path.dirname(self.local)

    def to_remote(self, text: str) -> str:
        """`text` with the working copy's paths written as the remote URL."""
        return text.replace(self.local, self.remote)


def download(remote: str, selection: Selection) -> WorkingCopy:
    """Copies what `selection` names of the run at `remote` into a fresh local directory named as the run.

    Raises:
      StorageError: `selection.existing` and nothing is under `remote`.
    """
    scratch = tempfile.mkdtemp(prefix="imbalance-run-")
    local = os.path.join(scratch, posixpath.basename(remote) or "run")  # pages titled by the run's name
    try:
        names = [n for n in storage.list_files(remote) if not n.endswith("/")]  # not folder markers
        if selection.existing and not names:
            raise storage.StorageError(f"{remote}: no run there (nothing under it)")
        os.makedirs(local)
        records = [n for n in names if os.path.basename(n) == RUN_JSON and not n.startswith(SERVING_DIR + "/")]
        for name in records:  # first: which executions are done
            _fetch(remote, local, name)
        versions = _versions(names)
        newest = _newest(versions)
        push = "" if newest is None else _push_record(newest)
        if selection.executions == "served" and push in names:  # names the execution that trained it
            _fetch(remote, local, push)
        skipped = _skipped_executions(names, local, selection, newest) | _unmarked_data(names)
        for version in versions:  # the sequence continues after every number taken, marked or not
            os.makedirs(os.path.join(local, SERVING_DIR, version), exist_ok=True)
        wanted = _version_files(names, versions, selection) | {n for n in names if _wanted(n, skipped)}
        storage.copy_files(remote, local, sorted(wanted - {*records, push}))
        if selection.version_records:
            _keep_store_times(remote, local, wanted)
        return WorkingCopy(remote, local, frozenset(names), snapshot(local))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _fetch(remote: str, local: str, name: str) -> None:
    storage.copy_file(storage.join(remote, name), os.path.join(local, *name.split("/")))


def _skipped_executions(names, local: str, selection: Selection, newest: str | None) -> set[str]:
    """`executions/<id>/` prefixes of which only run.json is copied (`Selection.executions`); `newest`: the
    served version (its push record already fetched)."""
    ids = {name.split("/")[1] for name in names if name.startswith(EXECUTIONS_DIR + "/") and name.count("/") > 1}
    served = None
    if selection.executions == "served" and newest is not None:
        recorded = read_push_record(os.path.join(local, SERVING_DIR, newest)).get("execution")
        served = None if recorded is None else str(recorded)
    if served in ids:  # as `evaluation.drift` finds the served version's data
        read = {served}
    elif selection.executions in ("latest", "served"):  # as `trainer.layout.resolve_run` picks it
        read = set(sorted((i for i in ids if parse_version(i) is not None), key=int)[-1:])
    elif selection.executions == "unfinished":
        read = {i for i in ids if not is_complete(os.path.join(local, EXECUTIONS_DIR, i))}
    else:
        read = set()
    return {f"{EXECUTIONS_DIR}/{i}/" for i in ids - read}


def _unmarked_data(names) -> set[str]:
    """`<...>/data/` prefixes a data step on remote workers left without its marker (it crashed): trusted by
    no one, not copied (the next data step removes and rewrites them; `trainer.data.prepare`)."""
    from trainer.data.prepare import SOURCE_FILE

    directories = set()
    for parts in (name.split("/") for name in names):  # RUN/data/ (trainer.task), RUN/executions/<id>/data/
        depth = 0 if parts[0] == DATA_DIR else 2 if parts[0] == EXECUTIONS_DIR and parts[2:3] == [DATA_DIR] else -1
        if depth >= 0 and len(parts) > depth + 1:
            directories.add("/".join(parts[: depth + 1]) + "/")
    return {d for d in directories if d + SOURCE_FILE not in names}


def _versions(names) -> dict[str, bool]:
    """Version directory names under serving_model/ on the store -> whether their marker is there."""
    prefix = SERVING_DIR + "/"
    found: dict[str, bool] = {}
    for name in names:
        if name.startswith(prefix) and "/" in name[len(prefix):]:
            version, rest = name[len(prefix):].split("/", 1)
            if parse_version(version) is not None:
                found[version] = found.get(version, False) or rest == VERSION_MARKER
    return found


def _newest(versions: dict[str, bool]) -> str | None:
    """The newest marked version's name: the one served."""
    return max((version for version, marked in versions.items() if marked), default=None, key=int)


def _push_record(version: str) -> str:
    """A version's push record (`tuning.push`: its execution, model and threshold), relative to the run."""

    return f"{SERVING_DIR}/{version}/{PUSH_FILE.replace(os.sep, '/')}"


def _version_files(names, versions: dict[str, bool], selection: Selection) -> set[str]:
    """The files under serving_model/ that are copied (`Selection.newest_version`, `version_records`)."""
    newest = _newest(versions) if selection.newest_version else None
    records = {name for version, marked in versions.items() if marked and selection.version_records
               for name in (f"{SERVING_DIR}/{version}/{SAVED_MODEL_FILE}", f"{SERVING_DIR}/{version}/{VERSION_MARKER}",
                            _push_record(version))}
    return {n for n in names if (newest is not None and n.startswith(f"{SERVING_DIR}/{newest}/")) or n in records}


def _wanted(name: str, skipped: set[str]) -> bool:
    """Whether a file of the remote run outside serving_model/ is copied."""
    return not name.startswith(SERVING_DIR + "/") and not any(name.startswith(prefix) for prefix in skipped)


def _keep_store_times(remote: str, local: str, copied: set[str]) -> None:
    """The copied `saved_model.pb` files keep the store's time: a version pushed without a push record
    (`trainer.task`) was served since then (`evaluation.monitoring_records.served_versions`)."""
    for path, _, updated in storage.file_facts(storage.join(remote, SERVING_DIR, "*", SAVED_MODEL_FILE)):
        name = path[len(remote) + 1:]
        if name in copied:
            os.utime(os.path.join(local, *name.split("/")), (updated, updated))


def snapshot(local: str) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime ns) of every file outside serving_model/ (versions are published)."""
    found = {}
    for root, directories, files in os.walk(local):
        if root == local and SERVING_DIR in directories:
            directories.remove(SERVING_DIR)
        for file_name in files:
            path = os.path.join(root, file_name)
            status = os.stat(path)
            found[os.path.relpath(path, local).replace(os.sep, "/")] = (status.st_size, status.st_mtime_ns)
    return found
