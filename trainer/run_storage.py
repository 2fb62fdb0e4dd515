"""A run directory on object storage (gs://, s3://): the commands run on a local working copy.

`trainer.task` and `tuning.task` call `run_on(config, work)`; the commands
that read a run and add to it (`evaluation.task`, `evaluation.monitoring`)
call `on_run(run, work, selection)`. For a local run it is `work` on it. For a
remote one (docs/design.md §10, "Object storage"):

1. the bucket is checked (a missing bucket or bad URL: one line, exit 2,
   before any work; so is a missing run, for a command that reads one);
2. the run tree is copied into a fresh local directory (named as the run),
   except what the command does not read (`Selection`): of `serving_model/`
   the newest marked version in full (the gate compares with it), the other
   numbers as empty local directories (the version sequence continues) or,
   for the monitoring page, with only their push record and
   `saved_model.pb`; and of the executions only their `run.json` (the
   history is rebuilt from it), except the unfinished ones (a new execution
   resumes one) or the latest one (`evaluation.task` evaluates it);
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
error, such as bad data, removes it, and its line names the remote URL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Literal, TypeVar

from trainer import storage
from trainer.config import ConfigError, RunConfig
from trainer.layout import (
    EXECUTIONS_DIR,
    HISTORY_HTML,
    HISTORY_JSON,
    RUN_JSON,
    SAVED_MODEL_FILE,
    SERVING_DIR,
    VERSION_MARKER,
    is_complete,
    parse_version,
)

T = TypeVar("T")
RECORD_SUFFIXES = (".json", ".html")  # text records whose paths name the working copy: uploaded with the URL
TRANSFERS = 8  # objects copied at once
LAST = (RUN_JSON, HISTORY_JSON, HISTORY_HTML)  # uploaded after everything else, in this order


EXECUTIONS = ("unfinished", "latest", "none")


@dataclasses.dataclass(frozen=True)
class Selection:
    """What of a remote run a command reads: the rest is not copied (module docstring, step 2).

    Attributes:
      executions: The executions copied in full: the `unfinished` ones (a new
        execution resumes one), the `latest` (the one evaluated) or `none`.
        Of the others only their run.json.
      newest_version: Whether the newest marked version is copied in full
        (a new execution's gate compares with it; it is a trainer.task
        run's model).
      version_records: Whether each marked version holds its push record,
        marker and `saved_model.pb` (with the store's time): what the
        monitoring page reads. Otherwise its directory is empty.
      existing: Whether the run must be there already (a command that reads
        a run); a new execution may start one.
    """

    executions: Literal["unfinished", "latest", "none"]
    newest_version: bool = True
    version_records: bool = False
    existing: bool = False

    def __post_init__(self) -> None:
        if self.executions not in EXECUTIONS:
            raise ValueError(f"executions must be one of {', '.join(EXECUTIONS)}, got {self.executions!r}")


NEW_EXECUTION = Selection("unfinished")  # trainer.task, tuning.task
EVALUATING = Selection("latest", version_records=True, existing=True)  # evaluation.task (--report-only: the page)
MONITORING = Selection("none", newest_version=False, version_records=True, existing=True)  # evaluation.monitoring


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
    """Refuses a run on object storage in the commands that have no working copy (docs/scaling.md says why)."""
    if storage.is_remote(run):
        raise ConfigError(f"--run {run}: {command} reads a local run directory; a run on object storage is "
                          f"copied to local disk first (e.g. gcloud storage cp -r {run} .)")


def run_on(config: RunConfig, work: Callable[[RunConfig], T]) -> tuple[T, Callable[[str], str]]:
    """`work(config)` on `config.output_dir`, a remote one through a working copy for a new execution (`on_run`)."""
    if storage.is_remote(config.output_dir):
        from keras_tuner.src.distribute import utils as distributed_search  # as tuning.pipeline asks it

        if config.distribute == "multi_worker" or distributed_search.has_chief_oracle():
            raise ConfigError(f"--output-dir {config.output_dir}: a run directory on object storage is run by one "
                              "process; a multi-worker training or distributed search needs a shared file system")
    return on_run(config.output_dir, lambda run: work(config.replace(output_dir=run)), NEW_EXECUTION,
                  config.beam_pipeline_args)


def on_run(run: str, work: Callable[[str], T], selection: Selection, beam_pipeline_args: tuple[str, ...] = (),
           expected: tuple[type, ...] = ()) -> tuple[T, Callable[[str], str]]:
    """`work(run)`: a remote run through a local working copy of what `selection` names (module docstring).

    `expected` are the errors the entry point reports as the user's
    (`trainer.cli.run_entry_point`): they remove the copy, as bad data does.

    Returns:
      What `work` returned, and a function that writes the working copy's
      paths in a text (what the entry point prints) as the remote URL (the
      identity for a local run).
    """
    if not storage.is_remote(run):
        return work(run), str
    storage.configure(beam_pipeline_args)
    storage.check_bucket(run)
    copy = download(run.rstrip("/"), selection)
    try:
        result = work(copy.local)
    except BaseException as error:
        _after_failure(copy, error, expected)
        raise
    try:
        upload(copy)
    except Exception as error:
        why = " ".join(str(error).split()) or type(error).__name__  # a store's errors span lines: one line
        raise storage.StorageError(f"uploading the run to {copy.remote} failed ({why}); the run's results are "
                                   f"kept in {copy.local}") from error
    shutil.rmtree(_scratch(copy), ignore_errors=True)
    return result, copy.to_remote


def download(remote: str, selection: Selection = NEW_EXECUTION) -> WorkingCopy:
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
        skipped = _skipped_executions(names, local, selection)
        versions = _versions(names)
        for version in versions:  # the sequence continues after every number taken, marked or not
            os.makedirs(os.path.join(local, SERVING_DIR, version), exist_ok=True)
        wanted = _version_files(names, versions, selection) | {n for n in names if _wanted(n, skipped)}
        _in_parallel(lambda name: _fetch(remote, local, name), sorted(wanted - set(records)))
        if selection.version_records:
            _keep_store_times(remote, local, wanted)
        return WorkingCopy(remote, local, frozenset(names), _snapshot(local))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
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


def _scratch(copy: WorkingCopy) -> str:
    """The temporary directory that holds the working copy (removed with it)."""
    return os.path.dirname(copy.local)


def _after_failure(copy: WorkingCopy, error: BaseException, expected: tuple[type, ...]) -> None:
    """A user's error (bad data...) removes the working copy and names the remote run; anything else keeps
    the copy, and says where."""
    from trainer.cli import user_error_message

    if isinstance(error, Exception) and user_error_message(error, expected) is not None:
        shutil.rmtree(_scratch(copy), ignore_errors=True)
        # Its one line names the remote run, not a copy that is gone (str() reads these).
        error.args = tuple(copy.to_remote(a) if isinstance(a, str) else a for a in error.args)
        for name in ("filename", "filename2"):
            if isinstance(getattr(error, name, None), str):
                setattr(error, name, copy.to_remote(getattr(error, name)))
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


def _skipped_executions(names, local: str, selection: Selection) -> set[str]:
    """`executions/<id>/` prefixes of which only run.json is copied (`Selection.executions`)."""
    ids = {name.split("/")[1] for name in names if name.startswith(EXECUTIONS_DIR + "/") and name.count("/") > 1}
    if selection.executions == "latest":  # as `trainer.layout.resolve_run` picks it
        read = set(sorted((i for i in ids if parse_version(i) is not None), key=int)[-1:])
    elif selection.executions == "unfinished":
        read = {i for i in ids if not is_complete(os.path.join(local, EXECUTIONS_DIR, i))}
    else:
        read = set()
    return {f"{EXECUTIONS_DIR}/{i}/" for i in ids - read}


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


def _version_files(names, versions: dict[str, bool], selection: Selection) -> set[str]:
    """The files under serving_model/ that are copied (`Selection.newest_version`, `version_records`)."""
    from tuning.push import PUSH_FILE

    marked = [version for version, done in versions.items() if done]
    newest = max(marked, default=None, key=int) if selection.newest_version else None
    records = {f"{SERVING_DIR}/{version}/{name}" for version in marked if selection.version_records
               for name in (SAVED_MODEL_FILE, VERSION_MARKER, PUSH_FILE.replace(os.sep, "/"))}
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
