"""A run directory on object storage (gs://, s3://): the pipelines run on a local working copy.

`trainer.task` and `tuning.task` call `run_on(config, work)`. For a local
`--output-dir` it is `work(config)`. For a remote one (docs/design.md §10,
"Object storage"):

1. the bucket is checked (a missing bucket or bad URL: one line, exit 2,
   before any work);
2. the run tree is copied into a fresh local directory, except what no
   execution reads again: of `serving_model/` only the newest marked version
   (the gate compares with it; the other numbers become empty local
   directories, so the version sequence continues), and of a complete
   execution only its `run.json` (the history is rebuilt from it);
3. `work` runs on the copy: every TensorFlow, keras-tuner, TFMA and Beam
   writer writes local files, as for any run;
4. what the run added or changed is uploaded: new `serving_model/<N>`
   versions first, each marker last (`storage.publish_tree`: a server never
   sees half a version; a number taken meanwhile by another execution stops
   the upload with one line rather than mislabel), then the other new or
   changed files, files the run removed are removed, and the `run.json`
   files and the history last, so a reader that trusts `run.json` sees a
   complete tree. Paths naming the working copy in JSON and HTML records
   (run.json's model directories, the report's links) are written as the
   remote URL.

The copy is removed after the upload. An upload that fails removes the new
files it wrote before the records (no half execution for the next command to
resume) and keeps the copy, whose path is in the error line; a crash in
`work` leaves the remote tree as it was and keeps the copy too (a user's
error, such as bad data, removes it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import TypeVar

from trainer import storage
from trainer.config import ConfigError, RunConfig
from trainer.layout import (
    COMPLETE,
    EXECUTIONS_DIR,
    HISTORY_HTML,
    HISTORY_JSON,
    RUN_JSON,
    SAVED_MODEL_FILE,
    SERVING_DIR,
    VERSION_MARKER,
    parse_version,
    read_run_json,
)

T = TypeVar("T")
RECORD_SUFFIXES = (".json", ".html")  # text records whose paths name the working copy: uploaded with the URL
TRANSFERS = 8  # objects copied at once
LAST = (RUN_JSON, HISTORY_JSON, HISTORY_HTML)  # uploaded after everything else, in this order


@dataclasses.dataclass(frozen=True)
class WorkingCopy:
    """A remote run directory's local copy.

    Attributes:
      remote: The run's URL (gs://B/runs/r).
      local: The local directory the pipeline runs on.
      remote_files: Every file under `remote` when it was copied (relative paths).
      downloaded: relative path -> (size, mtime in ns) of each file copied, right after copying.
    """

    remote: str
    local: str
    remote_files: frozenset[str]
    downloaded: dict[str, tuple[int, int]]

    def to_remote(self, text: str) -> str:
        """`text` with the working copy's paths written as the remote URL."""
        return text.replace(self.local, self.remote)


def require_local(output_dir: str) -> None:
    """Refuses a remote run directory where a pipeline would write it directly (the Python API).

    The pipelines write with local file functions; only `run_on` (the entry
    points) runs them on object storage, through a working copy.
    """
    if storage.is_remote(output_dir):
        raise ConfigError(f"{output_dir}: a pipeline writes a local run directory; for object storage call it "
                          "through trainer.run_storage.run_on (as trainer.task and tuning.task do)")


def require_local_run(run: str, command: str) -> None:
    """Refuses a run on object storage in the commands that read one but have no working copy yet."""
    if storage.is_remote(run):
        raise ConfigError(f"--run {run}: {command} reads a local run directory; a run on object storage is "
                          f"copied to local disk first (e.g. gcloud storage cp -r {run} .)")


def run_on(config: RunConfig, work: Callable[[RunConfig], T]) -> tuple[T, Callable[[str], str]]:
    """`work(config)` on `config.output_dir`: a remote one through a local working copy (module docstring).

    Returns:
      What `work` returned, and a function that writes the working copy's
      paths in a text (what the entry point prints) as the remote URL (the
      identity for a local run).
    """
    if not storage.is_remote(config.output_dir):
        return work(config), str
    from keras_tuner.src.distribute import utils as distributed_search  # as tuning.pipeline asks it

    if config.distribute == "multi_worker" or distributed_search.has_chief_oracle():
        raise ConfigError(f"--output-dir {config.output_dir}: a run directory on object storage is run by one "
                          "process; a multi-worker training or distributed search needs a shared file system")
    storage.configure(config.beam_pipeline_args)
    storage.check_bucket(config.output_dir)
    copy = download(config.output_dir.rstrip("/"))
    try:
        result = work(config.replace(output_dir=copy.local))
    except BaseException as error:
        _after_failure(copy, error)
        raise
    try:
        upload(copy)
    except Exception as error:
        why = " ".join(str(error).split()) or type(error).__name__  # a store's errors span lines: one line
        raise storage.StorageError(f"uploading the run to {copy.remote} failed ({why}); the run's results are "
                                   f"kept in {copy.local}") from error
    shutil.rmtree(copy.local, ignore_errors=True)
    return result, copy.to_remote


def download(remote: str) -> WorkingCopy:
    """Copies what a new execution reads of the run at `remote` into a fresh local directory."""
    local = tempfile.mkdtemp(prefix="imbalance-run-")
    try:
        names = [n for n in storage.list_files(remote) if not n.endswith("/")]  # not folder markers
        records = [n for n in names if os.path.basename(n) == RUN_JSON and not n.startswith(SERVING_DIR + "/")]
        for name in records:  # first: which executions are done
            _fetch(remote, local, name)
        skipped = _complete_executions(local)
        versions = _versions(names)
        served = max((v for v, marked in versions.items() if marked), default=None, key=int)
        for version in versions:  # the sequence continues after every number taken, marked or not
            os.makedirs(os.path.join(local, SERVING_DIR, version), exist_ok=True)
        _in_parallel(lambda name: _fetch(remote, local, name),
                     [n for n in names if _wanted(n, served, skipped) and n not in records])
        return WorkingCopy(remote, local, frozenset(names), _snapshot(local))
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise


def upload(copy: WorkingCopy) -> None:
    """Writes what the run added or changed in `copy.local` to `copy.remote` (module docstring, step 4)."""
    _check_new_executions_free(copy)
    base = storage.join(copy.remote, SERVING_DIR)
    for version in _new_versions(copy):
        try:
            storage.publish_tree(os.path.join(copy.local, SERVING_DIR, version), base, int(version))
        except storage.VersionTaken as error:
            raise storage.StorageError(f"{error}, which this run had recorded as its own: nothing more "
                                       "was uploaded") from None
    now = _snapshot(copy.local)
    changed = [name for name, stat in now.items() if copy.downloaded.get(name) != stat]
    ordered = sorted(changed, key=lambda name: (os.path.basename(name) in LAST, _last_rank(name), name))
    first = [name for name in ordered if os.path.basename(name) not in LAST]
    try:
        _in_parallel(lambda name: _put(copy, name), first)
    except BaseException:  # no new execution half on the store: the next command would resume from it
        for name in (n for n in first if n not in copy.remote_files):
            with contextlib.suppress(Exception):
                storage.remove_files([storage.join(copy.remote, name)])
        raise
    removed = [storage.join(copy.remote, name) for name in copy.downloaded if name not in now]
    storage.remove_files(removed)
    for name in ordered[len(first):]:
        _put(copy, name)


def _after_failure(copy: WorkingCopy, error: BaseException) -> None:
    """A user's error (bad data...) removes the working copy; anything else keeps it, and says where."""
    from trainer.cli import user_error_message

    if isinstance(error, Exception) and user_error_message(error) is not None:
        shutil.rmtree(copy.local, ignore_errors=True)
    else:
        print(f"note: nothing was uploaded to {copy.remote}; the working copy is kept in {copy.local}",
              file=sys.stderr)


def _in_parallel(function: Callable[[str], None], names: list[str]) -> None:
    """`function` on every name, a few at a time: each object is one request, its latency the cost."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=TRANSFERS) as pool:
        for _ in pool.map(function, names):  # the first failure is raised here
            pass


def _fetch(remote: str, local: str, name: str) -> None:
    storage.copy_file(storage.join(remote, name), os.path.join(local, *name.split("/")))


def _complete_executions(local: str) -> set[str]:
    """`executions/<id>` prefixes whose run.json says complete: no execution reads more of them."""
    root = os.path.join(local, EXECUTIONS_DIR)
    ids = os.listdir(root) if os.path.isdir(root) else []
    return {f"{EXECUTIONS_DIR}/{i}/" for i in ids if read_run_json(os.path.join(root, i)).get("status") == COMPLETE}


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


def _wanted(name: str, served: str | None, skipped: set[str]) -> bool:
    """Whether a file of the remote run is copied: of the served versions only the newest marked one."""
    if name.startswith(SERVING_DIR + "/"):
        return served is not None and name.startswith(f"{SERVING_DIR}/{served}/")
    return not any(name.startswith(prefix) for prefix in skipped)


def _snapshot(local: str) -> dict[str, tuple[int, int]]:
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


def _new_versions(copy: WorkingCopy) -> list[str]:
    """The complete local versions the store did not have, ascending."""
    base = os.path.join(copy.local, SERVING_DIR)
    names = os.listdir(base) if os.path.isdir(base) else []
    taken = {name.split("/")[1] for name in copy.remote_files if name.startswith(SERVING_DIR + "/")}
    return sorted((n for n in names if parse_version(n) is not None and n not in taken
                   and os.path.isfile(os.path.join(base, n, SAVED_MODEL_FILE))), key=int)


def _check_new_executions_free(copy: WorkingCopy) -> None:
    """An execution id this run created must still be free on the store (another execution may have run)."""
    root = os.path.join(copy.local, EXECUTIONS_DIR)
    known = {name.split("/")[1] for name in copy.remote_files if name.startswith(EXECUTIONS_DIR + "/")}
    for execution in sorted(set(os.listdir(root) if os.path.isdir(root) else []) - known):
        target = storage.join(copy.remote, EXECUTIONS_DIR, execution)
        if storage.list_files(target):
            raise storage.StorageError(f"{target} was written by another execution while this one ran: "
                                       "nothing was uploaded")


def _last_rank(name: str) -> int:
    base = os.path.basename(name)
    return LAST.index(base) if base in LAST else -1


def _put(copy: WorkingCopy, name: str) -> None:
    """Uploads one file; a JSON or HTML record with the working copy's paths written as the remote URL."""
    source, target = os.path.join(copy.local, *name.split("/")), storage.join(copy.remote, name)
    if name.endswith(RECORD_SUFFIXES):
        with open(source, encoding="utf-8") as handle:
            storage.write_text(target, copy.to_remote(handle.read()))
    else:
        storage.copy_file(source, target)
