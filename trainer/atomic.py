"""Atomic file writes: the one way this package replaces a file.

The text goes to a temporary sibling, is flushed to disk, and is renamed over
the target (atomic on one filesystem). A reader sees the old file or the new
one, never half of either; a failure (a full disk, an interrupt) removes the
temporary file and leaves the old one in place. Directories are published
the same way: filled in a hidden staging sibling (`staging_directory`), then
renamed into place (`replace_directory`, or the next version number:
`rename_to_next_version`, `publish_version`). On object storage (gs://,
s3://), which has no rename, a version is published under its final name
with a completion marker written last, which readers trust
(`publish_to_next_version`, `trainer.storage.publish_tree`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

from trainer import storage
from trainer.layout import SAVED_MODEL_FILE, next_version


def write_text_atomically(path: str, text: str) -> None:
    """Replaces `path` with `text` (UTF-8), atomically.

    On object storage (gs://, s3://) the object is uploaded in one piece:
    GCS and S3 show an object whole or not at all, and replace it whole.
    """
    if storage.is_remote(path):
        storage.write_text(path, text)
        return
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_arrays_atomically(path: str, **arrays) -> None:
    """Replaces `path` with NumPy's `.npz` of `arrays`, atomically (a reader never sees half a file)."""
    import numpy as np

    if storage.is_remote(path):  # one object, whole or absent (as write_text_atomically)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with storage.open_file(path, "wb") as handle:
            handle.write(buffer.getvalue())
        return
    temporary = f"{path}.tmp-{os.getpid()}.npz"  # np.savez appends .npz to names without it
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json_atomically(path: str, payload: Any, indent: int | None = 1) -> str:
    """Replaces `path` with `payload` as JSON, atomically; returns the text.

    Non-JSON values (NumPy floats, paths) are written as `float()` when
    possible, else `str()`.
    """
    text = json.dumps(payload, indent=indent, default=_plain)
    write_text_atomically(path, text)
    return text


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@contextlib.contextmanager
def staging_directory(parent: str, prefix: str = "staging") -> Iterator[str]:
    """The path of a fresh hidden directory in `parent` (not created) for a body to fill.

    Whatever is still at that path when the body ends (it failed, or did not
    rename the directory away) is removed, so an interrupted write never
    leaves a half-written directory where a reader would look.
    """
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{prefix}-{uuid.uuid4().hex}")
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: str, target: str) -> None:
    """Moves a filled staging directory to `target`, replacing what was there."""
    if os.path.exists(target):
        shutil.rmtree(target)
    os.rename(staging, target)


def rename_to_next_version(staging: str, base: str) -> str:
    """Renames a filled staging directory to the next version under `base`; returns its path.

    Another exporter may take the same number first: then the rename fails
    with the target in place, and the next number is tried.
    """
    while True:
        target = os.path.join(base, str(next_version(base)))
        try:
            os.rename(staging, target)  # atomic on one filesystem
            return target
        except OSError:
            if not os.path.exists(target):
                raise  # not a lost race with another exporter


def publish_to_next_version(staging: str, base: str, extra_files: dict[str, str] | None = None) -> str:
    """Publishes a filled local staging directory as the next version under `base`; returns its path.

    Locally, `extra_files` are written into it and it is renamed into place
    (`rename_to_next_version`). On object storage (gs://, s3://), which has
    no rename, it is copied under the next version's name, its completion
    marker last (`trainer.storage.publish_tree`); the next number is tried
    when another publisher took one first.
    """
    if not storage.is_remote(base):
        _write_extra_files(staging, extra_files)
        return rename_to_next_version(staging, base)
    for _ in range(10):
        version = next_version(base)
        with contextlib.suppress(storage.VersionTaken):
            return storage.publish_tree(staging, base, version, extra_files)
    raise storage.StorageError(f"{base}: could not take a version number: other publishers kept taking them")


def _write_extra_files(directory: str, extra_files: dict[str, str] | None) -> None:
    for relative, text in (extra_files or {}).items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def publish_version(version_dir: str, base: str, extra_files: dict[str, str] | None = None) -> str:
    """Copies an exported version under `base` as its next version, atomically.

    This is the push of a blessed candidate (docs/design.md §9): the copy is
    made in a hidden staging sibling and renamed into place, so a server
    polling `base` never loads a half-copied model, and the versions already
    there are never touched.

    Args:
      version_dir: The exported version to copy.
      base: The served model's base path (TF Serving's `--model_base_path`).
      extra_files: Relative path -> text, written into the copy before it
        appears (e.g. `assets.extra/push.json`, which TF Serving ignores).

    Returns:
      The path of the new version directory.
    """
    if not storage.exists(storage.join(version_dir, SAVED_MODEL_FILE)):
        raise FileNotFoundError(f"{version_dir} is not an exported SavedModel version")
    if storage.is_remote(base):  # copied straight from wherever the version is, marker last
        return publish_to_next_version(version_dir, base, extra_files)
    with staging_directory(base) as staging:
        if storage.is_remote(version_dir):
            storage.copy_tree(version_dir, staging)
        else:
            shutil.copytree(version_dir, staging)
        return publish_to_next_version(staging, base, extra_files)
