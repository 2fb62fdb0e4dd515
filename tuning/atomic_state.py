"""Crash-safe keras-tuner state files.

keras-tuner saves its oracle and trials with a plain truncate-and-write
(`keras_tuner.src.utils.save_json`). A `kill -9` in the middle of that write
leaves an empty `oracle.json`, and the next run cannot resume ("Expecting
value: line 1 column 1"). Every keras-tuner save goes through that one
function, so it is replaced, once per process, by a write to a temporary
sibling followed by an atomic rename: a reader sees the old file or the new
one, never half of one.
"""

from __future__ import annotations

from keras_tuner.src import utils as tuner_utils

from trainer.atomic import write_json_atomically


def install() -> None:
    """Makes keras-tuner's JSON state writes atomic (idempotent)."""
    if getattr(tuner_utils.save_json, "atomic", False):
        return
    original = tuner_utils.save_json

    def save_json(path, obj):
        if "://" in str(path):  # remote filesystems (gs://...): keep keras-tuner's own write
            return original(path, obj)
        return write_json_atomically(str(path), obj, indent=None)

    save_json.atomic = True
    tuner_utils.save_json = save_json
