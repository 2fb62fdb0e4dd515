"""Quiet start-up: TensorFlow's native start-up lines are held back unless asked for."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from trainer.startup import native_stderr_captured

NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog", re.MULTILINE)


def test_native_writes_to_fd_2_are_captured_and_python_stderr_is_restored(capfd):
    with native_stderr_captured() as lines:
        os.write(2, b"from C++\nsecond line\n")
    print("after", file=sys.stderr)
    assert lines == ["from C++", "second line"]
    assert capfd.readouterr().err == "after\n"


@pytest.mark.slow
@pytest.mark.parametrize("show", [False, True])
def test_tensorflow_start_up_lines_appear_only_when_asked(show, tmp_path):
    # A dataset read after start-up: tf.data logs an INFO line for each TFRecordDataset it opens.
    records = str(tmp_path / "one.tfrecord")
    code = (f"from trainer.startup import start_tensorflow; start_tensorflow({show}); import tensorflow as tf; "
            f"w = tf.io.TFRecordWriter({records!r}); w.write(b'x'); w.close(); "
            f"assert list(tf.data.TFRecordDataset({records!r})) ; print('ready')")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.strip() == "ready"
    # TensorFlow 2.21 on a CPU machine always logs its oneDNN / CUDA probing at start-up.
    assert bool(NATIVE_LOG_LINE.search(done.stderr)) is show, done.stderr


def test_the_entry_points_import_without_tensorflow():
    """TensorFlow must first load inside `start_tensorflow`, or its lines escape the capture."""
    code = "import sys, evaluation.task, trainer.task, tuning.task; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == "False", done.stderr
