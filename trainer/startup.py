"""Quiet start-up for the command-line entry points.

TensorFlow's C++ runtime writes its start-up lines (absl's "All log messages
before absl::InitializeLog() ..." notice, oneDNN, CUDA probing) straight to
file descriptor 2 while it is imported and first enumerates devices, before
`TF_CPP_MIN_LOG_LEVEL` or Python's logging apply to them. On a CPU machine
they say nothing the user can act on and bury the run's own progress lines,
so the entry points import TensorFlow with that descriptor pointed at a
temporary file, and show what it caught only when asked (`--verbose 3`).
Python-level errors are unaffected: they are raised after the descriptor is
restored.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Redirects fd 2 for the body; the list is filled with the captured lines on exit."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode("utf-8", "replace").splitlines())


def start_tensorflow(show_native_logs: bool) -> None:
    """Imports TensorFlow and enumerates devices, holding back its native start-up lines unless asked.

    Later native INFO lines (such as tf.data's "TFRecordDataset `buffer_size`
    is unspecified" on every dataset it opens) are filtered by TensorFlow's
    own level, which it reads from `TF_CPP_MIN_LOG_LEVEL` once, at import:
    warnings and errors still print. A level the user set is kept.
    """
    if not show_native_logs:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_captured() as lines:
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing logs now, inside the capture
    if show_native_logs:
        for line in lines:
            print(line, file=sys.stderr)
