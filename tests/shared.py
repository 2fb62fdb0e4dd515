"""Session fixtures built once per test run, also when pytest-xdist runs the tests in several workers.

A session-scoped fixture is built once per worker process: with two workers
the tiny trained run was trained twice. Here the first worker to ask builds it
under a lock in the run's common temporary directory and pickles what the
fixture returns; the others wait for the lock and load it. What is built is
only read afterwards (tests that change a run work on a copy), so the workers
can share it.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def build_once(tmp_path_factory, name: str, build: Callable[[Path], T]) -> T:
    """`build(directory)`'s result, built by one process of this test run (the first to ask); `directory`
    does not exist yet."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: the session fixture is already once per run
        return build(tmp_path_factory.mktemp(name) / "files")
    root = tmp_path_factory.getbasetemp().parent / name  # the controller's basetemp, common to the workers
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed: the others wait here while it is built
        built = root / "built.pickle"
        if built.exists():
            with open(built, "rb") as handle:
                return pickle.load(handle)
        value = build(root / "files")
        with open(built.with_suffix(".tmp"), "wb") as handle:
            pickle.dump(value, handle)
        os.replace(built.with_suffix(".tmp"), built)
        return value
