"""trainer.atomic: files and directories are replaced whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from trainer.atomic import replace_directory, staging_directory, write_json_atomically, write_text_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    write_json_atomically(str(target), {"a": 1})

    def full_disk(descriptor):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk)  # fails after the temporary file was written
        with pytest.raises(OSError, match="No space"):
            write_json_atomically(str(target), {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["run.json"]
    write_text_atomically(str(target), "ü")
    assert target.read_text(encoding="utf-8") == "ü"


def test_a_staged_directory_replaces_the_target_only_when_complete(tmp_path):
    target = tmp_path / "evaluation"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staging_directory(str(tmp_path), "evaluation-staging") as staging:
        os.makedirs(staging)
        (tmp_path / os.path.basename(staging) / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["evaluation"]  # the half-written staging directory is gone
    assert os.listdir(target) == ["old.txt"]
    with staging_directory(str(tmp_path), "evaluation-staging") as staging:
        assert os.path.basename(staging).startswith(".evaluation-staging-") and not os.path.exists(staging)
        os.makedirs(staging)
        (tmp_path / os.path.basename(staging) / "new.txt").write_text("new")
        replace_directory(staging, str(target))
    assert sorted(os.listdir(tmp_path)) == ["evaluation"] and os.listdir(target) == ["new.txt"]


def test_arrays_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import numpy as np

    from trainer.atomic import write_arrays_atomically

    path = str(tmp_path / "held.npz")
    write_arrays_atomically(path, margins=np.arange(3.0))
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["margins"], np.arange(3.0))

    def half_written(name, **arrays):
        with open(name, "wb") as handle:
            handle.write(b"PK half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="No space left"):
        write_arrays_atomically(path, margins=np.zeros(5))
    with np.load(path) as saved:  # the old file, untouched; no temporary left beside it
        np.testing.assert_array_equal(saved["margins"], np.arange(3.0))
    assert os.listdir(tmp_path) == ["held.npz"]
