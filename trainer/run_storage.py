"""A run directory on object storage (gs://, s3://): the commands run on a local working copy.

`trainer.task` and `tuning.task` call `run_on(config, work)`; the commands
that read a run and add to it (`evaluation.task`, `evaluation.monitoring`,
`evaluation.drift`, `evaluation.live`) call `on_run(run, work, selection)`.
For a local run it is `work` on it. For a remote one (docs/design.md §10,
"Object storage"):

1. the bucket is checked (a missing bucket or bad URL: one line, exit 2,
   before any work; so is a missing run, for a command that reads one);
2. what the command reads of the run is copied into a fresh local directory
   named as the run (`trainer.run_copy.Selection`): for a new execution the
   newest marked version of `serving_model/` (the gate compares with it;
   the other numbers become empty directories, so the version sequence
   continues) and of the executions only their `run.json` (the history is
   rebuilt from it), except the unfinished ones (one is resumed); for
   evaluation the latest execution instead, for drift and live evaluation
   the one that trained the served version, for the monitoring page none,
   and every version's push record and `saved_model.pb`;
3. `work` runs on the copy: every TensorFlow, keras-tuner and TFMA writer
   writes local files, as for any run, except the Beam steps, whose
   workers may be other machines: the data step writes the data directory
   under the remote run (`on_store` tells it where), marker last, brings it
   into the copy and says so (`published`: the upload leaves it out); TFMA
   reads models put on the store for it (`publish`) and writes its output
   there (`clear` empties it first), brought into the copy the same way
   (`evaluation.remote_tfma`); what the run put there for its workers but a
   marked data directory is removed again if the run fails;
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
`work` leaves the remote tree as it was, but for a data directory the data
step completed (marked: as a local run's crash keeps it) and an old
evaluation that TFMA's new one had replaced on the store, and keeps the copy
too (a user's error, such as bad data, removes it, and its line names the
remote URL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from typing import TypeVar

from trainer import storage
from trainer.config import ConfigError, RunConfig
from trainer.layout import (
    EXECUTIONS_DIR,
    HISTORY_HTML,
    HISTORY_JSON,
    RUN_JSON,
    SAVED_MODEL_FILE,
    SERVING_DIR,
    parse_version,
)
from trainer.run_copy import NEW_EXECUTION, Selection, WorkingCopy, download, snapshot

T = TypeVar("T")
_working: list[WorkingCopy] = []  # the copies `work` runs on now (on_run), innermost last
_provisional: dict[int, list[str]] = {}  # id(copy) -> remote directories `work` wrote, removed if the run fails
RECORD_SUFFIXES = (".json", ".html")  # text records whose paths name the working copy: uploaded with the URL
LAST = (RUN_JSON, HISTORY_JSON, HISTORY_HTML)  # uploaded after everything else, in this order


def require_local(output_dir: str) -> None:
    """Refuses a remote run directory where a pipeline would write it directly (the Python API).

    The pipelines write with local file functions; only `run_on` (the entry
    points) runs them on object storage, through a working copy.
    """
    if storage.is_remote(output_dir):
        raise ConfigError(f"{output_dir}: a pipeline writes a local run directory; for object storage call it "
                          "through trainer.run_storage.run_on (as trainer.task and tuning.task do)")


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
    _working.append(copy)
    try:
        result = work(copy.local)
    except BaseException as error:
        _discard_provisional(copy)
        _after_failure(copy, error, expected)
        raise
    finally:
        _working.remove(copy)
    try:
        upload(copy)
    except Exception as error:
        why = " ".join(str(error).split()) or type(error).__name__  # a store's errors span lines: one line
        raise storage.StorageError(f"uploading the run to {copy.remote} failed ({why}); the run's results are "
                                   f"kept in {copy.local}") from error
    _provisional.pop(id(copy), None)
    shutil.rmtree(copy.scratch, ignore_errors=True)
    return result, copy.to_remote


def on_store(local: str) -> str | None:
    """The URL a path in the working copy `work` runs on stands for; None outside one (a local run).

    Where a step whose writers may run on other machines (the Beam data step
    on Dataflow, Flink or Spark workers) writes, as they can.
    """
    copy = _copy_of(local)
    return None if copy is None else copy.to_remote(local).replace(os.sep, "/")


def published(local: str, provisional: bool = False) -> None:
    """Records that every file under `local` (a directory of the working copy `work` runs on) is on the
    store as it is locally, written there by the run itself: the upload leaves them out while unchanged.

    `provisional`: the remote directory is removed again if the run fails before its upload completes (a
    model or an evaluation is not trusted without the records the upload writes last; a marked data
    directory is kept).
    """
    copy = _copy_of(local)
    copy.downloaded.update({_prefix(copy, local) + name: stat for name, stat in snapshot(local).items()})
    if provisional:
        _provisional.setdefault(id(copy), []).append(on_store(local))


def publish(local: str) -> str:
    """Puts the directory `local` of the working copy on the store, at the URL it stands for, for readers on
    other machines (TFMA's Beam workers); returns the URL.

    A directory already there as it is locally (copied from the store, or a
    version under serving_model/, which the store keeps as published) is not
    written again; one written is recorded (`published`, provisional).
    """
    copy, remote = _copy_of(local), on_store(local)
    prefix, files = _prefix(copy, local), snapshot(local)
    if all(copy.downloaded.get(prefix + name) == stat
           or (prefix.startswith(SERVING_DIR + "/") and prefix + name in copy.remote_files)
           for name, stat in files.items()):
        return remote
    storage.copy_files(local, remote, sorted(files))
    published(local, provisional=True)
    return remote


def clear(local: str, first: tuple[str, ...] = ()) -> None:
    """Removes the remote directory a directory `local` of the working copy stands for, the files named
    in `first` (relative paths: its markers) before the rest, and forgets it was there (the upload does not
    remove it again; the local directory is left as it is)."""
    copy, remote = _copy_of(local), on_store(local)
    storage.remove_files([storage.join(remote, name) for name in first if storage.exists(storage.join(remote, name))])
    storage.remove_tree(remote)
    prefix = _prefix(copy, local)
    for name in [n for n in copy.downloaded if n.startswith(prefix)]:
        del copy.downloaded[name]


def _copy_of(local: str) -> WorkingCopy | None:
    """The working copy `work` runs on (the innermost) that holds the path `local`; None outside one."""
    return next((c for c in reversed(_working) if local == c.local or local.startswith(c.local + os.sep)), None)


def _prefix(copy: WorkingCopy, local: str) -> str:
    return os.path.relpath(local, copy.local).replace(os.sep, "/") + "/"


def _discard_provisional(copy: WorkingCopy) -> None:
    """Removes what `work` wrote on the store provisionally (`published`): the run failed."""
    for remote in _provisional.pop(id(copy), []):
        with contextlib.suppress(Exception):
            storage.remove_tree(remote)


def upload(copy: WorkingCopy) -> None:
    """Writes what the run added or changed in `copy.local` to `copy.remote` (module docstring, step 4)."""
    try:  # until the records: a failure removes what the run put on the store for its workers
        _check_new_executions_free(copy)
        base = storage.join(copy.remote, SERVING_DIR)
        for version in _new_versions(copy):
            try:
                storage.publish_tree(os.path.join(copy.local, SERVING_DIR, version), base, int(version))
            except storage.VersionTaken as error:
                raise storage.StorageError(f"{error}, which this run had recorded as its own: nothing more "
                                           "was uploaded") from None
        now = snapshot(copy.local)
        changed = [name for name, stat in now.items() if copy.downloaded.get(name) != stat]
        ordered = sorted(changed, key=lambda name: (os.path.basename(name) in LAST, _last_rank(name), name))
        first = [name for name in ordered if os.path.basename(name) not in LAST]
        try:
            storage.in_parallel(lambda name: _put(copy, name), first)
        except BaseException:  # no new execution half on the store: the next command would resume from it
            for name in (n for n in first if n not in copy.remote_files):
                with contextlib.suppress(Exception):
                    storage.remove_files([storage.join(copy.remote, name)])
            raise
    except BaseException:
        _discard_provisional(copy)
        raise
    removed = [storage.join(copy.remote, name) for name in copy.downloaded if name not in now]
    storage.remove_files(removed)
    for name in ordered[len(first):]:
        _put(copy, name)


def _after_failure(copy: WorkingCopy, error: BaseException, expected: tuple[type, ...]) -> None:
    """A user's error (bad data...) removes the working copy and names the remote run; anything else keeps
    the copy, and says where."""
    from trainer.cli import user_error_message

    if isinstance(error, Exception) and user_error_message(error, expected) is not None:
        shutil.rmtree(copy.scratch, ignore_errors=True)
        # Its one line names the remote run, not a copy that is gone (str() reads these).
        error.args = tuple(copy.to_remote(a) if isinstance(a, str) else a for a in error.args)
        for name in ("filename", "filename2"):
            if isinstance(getattr(error, name, None), str):
                setattr(error, name, copy.to_remote(getattr(error, name)))
    else:
        print(f"note: nothing was uploaded to {copy.remote}; the working copy is kept in {copy.local}",
              file=sys.stderr)


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
        ours = f"{EXECUTIONS_DIR}/{execution}/"
        if any(ours + name not in copy.downloaded for name in storage.list_files(target)):  # not its data step's
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
