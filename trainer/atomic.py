"""Atomic file writes: the one way this package replaces a file.

The text goes to a temporary sibling, is flushed to disk, and is renamed over
the target (atomic on one filesystem). A reader sees the old file or the new
one, never half of either; a failure (a full disk, an interrupt) removes the
temporary file and leaves the old one in place. Directories are published
the same way: filled in a hidden staging sibling (`staging_directory`), then
renamed into place (`replace_directory`, or the next version number in
`trainer.export`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any


def write_text_atomically(path: str, text: str) -> None:
    """Replaces `path` with `text` (UTF-8), atomically."""
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
