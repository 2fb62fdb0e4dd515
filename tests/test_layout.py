"""trainer/layout.py: the run tree's names and version rules, without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO
from trainer.layout import list_versions, next_version, split_pattern

TF_FREE = """
import sys
import serving.server, evaluation.run_files, tuning.push, trainer.layout, trainer.atomic
loaded = sorted(name for name in ("keras", "tensorflow") if name in sys.modules)
assert not loaded, loaded
"""


def test_server_readers_and_push_import_without_tensorflow():
    # A fresh interpreter: this one has TensorFlow loaded by other tests.
    result = subprocess.run([sys.executable, "-c", TF_FREE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_versions_are_plain_integers_with_a_saved_model(tmp_path):
    for name in ("1", "007", "12", ".staging-1234", "٣", "-1", "3.0", "4"):
        os.makedirs(tmp_path / name)
    for name in ("1", "007", "12", ".staging-1234", "٣", "-1", "3.0"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "99").write_text("a stray file, not a version")
    assert list_versions(str(tmp_path)) == {1: str(tmp_path / "1"), 7: str(tmp_path / "007"),
                                            12: str(tmp_path / "12")}
    assert next_version(str(tmp_path)) == 100  # an incomplete or stray name is still taken
    assert next_version(str(tmp_path / "missing")) == 1


def test_split_pattern_matches_the_shards_the_split_writes(tmp_path):
    import glob

    shard = tmp_path / "data" / "test" / "data-00000-of-00001.tfrecord.gz"
    os.makedirs(shard.parent)
    shard.write_bytes(b"")
    (tmp_path / "data" / "validation").mkdir()
    (tmp_path / "data" / "validation" / "data-00000-of-00001.tfrecord.gz").write_bytes(b"")
    assert glob.glob(split_pattern(str(tmp_path), "test")) == [str(shard)]
