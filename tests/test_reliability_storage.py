"""A full disk or a read-only output directory: one clear line, exit 2, nothing half-written.

The tests as root use real file systems: a tiny tmpfs (a full disk) and a
read-only bind mount (chmod does not stop root). Where mounting is not
permitted they skip with the reason; the monkeypatched ENOSPC tests below
cover the same write sites everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess

import keras_tuner as kt
import pytest
import tensorflow as tf

from tests.test_reliability_data import tree
from trainer import task
from trainer.calibration import Calibration
from trainer.data.prepare import prepare_data
from trainer.export import ServingModule, export_version
from trainer.model import build_model


@contextlib.contextmanager
def mounted(target, *options):
    """`mount OPTIONS target` for the duration; skips the test if mounting is not permitted."""
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here; the monkeypatched ENOSPC tests cover these write sites")
    result = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.skip(f"mounting is not permitted here ({result.stderr.strip() or result.returncode}); "
                    "the monkeypatched ENOSPC tests cover these write sites")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True, timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=60)


def tmpfs(target, size: str):
    return mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def read_only(source, target):
    return mounted(target, "--bind", "-o", "ro", str(source))


def _main(argv, capsys) -> tuple[int, list[str]]:
    code = task.main(argv)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()]


def _train_argv(tiny_csv: str, out) -> list[str]:
    # The same data settings as the `tiny_run` fixture, so its RUN/data is reused.
    return ["--data", tiny_csv, "--label", "target", "--output-dir", str(out), "--epochs", "1", "--verbose", "0"]


@pytest.fixture
def module(tiny_run):
    """An untrained serving module over the tiny run's schema (export size ~0.7 MB)."""
    data = prepare_data(tiny_run[0])
    return ServingModule(build_model(kt.HyperParameters(), data.schema), data.schema, Calibration("none"), 0.5)


# --- real file systems ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_disk_while_preparing_data(tmp_path, capsys, tiny_csv):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        code, lines = _main(_train_argv(tiny_csv, disk / "run"), capsys)
        left = os.listdir(disk)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "cannot write the prepared data under" in lines[0]
    assert "No space left on device" in lines[0]
    assert left == []  # no staging directory, not even an empty run directory


@pytest.mark.slow
def test_full_disk_while_exporting(tmp_path, module):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        base = disk / "serving_model"
        with pytest.raises(OSError) as info:
            export_version(module, str(base))
        left = os.listdir(base)
    message = str(info.value)
    assert message == f"cannot write a new version under {base}: No space left on device"
    assert left == []  # the half-written .staging-* directory is gone


@pytest.mark.slow
def test_read_only_output_directory(tmp_path, capsys, tiny_csv):
    (tmp_path / "empty").mkdir()
    with read_only(tmp_path / "empty", tmp_path / "ro") as ro:
        code, lines = _main(_train_argv(tiny_csv, ro / "run"), capsys)
        left = os.listdir(ro)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Read-only file system" in lines[0] and str(tmp_path / "ro" / "run") in lines[0]
    assert left == []


@pytest.mark.slow
def test_read_only_existing_run_is_left_as_it_was(tmp_path, capsys, tiny_run, tiny_csv):
    """Data is reused, training starts, and the first write (TensorBoard's, in TF's C++) fails cleanly."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run[0].output_dir, copy)
    before = tree(copy)
    with read_only(copy, tmp_path / "ro") as ro:
        code, lines = _main(_train_argv(tiny_csv, ro), capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Read-only file system" in lines[0] and "Traceback" not in lines[0]
    assert tree(copy) == before


# --- simulated: ENOSPC raised at each write site -----------------------------------------------------------------

def test_enospc_while_writing_splits(tmp_path, capsys, tiny_csv, monkeypatch):
    """The Beam data step fails half-way through writing."""
    from trainer.data import beam_ingest

    def half_write(directory):
        os.makedirs(os.path.join(directory, "train"), exist_ok=True)
        with open(os.path.join(directory, "train", "data-00000-of-00001.tfrecord.gz"), "wb") as handle:
            handle.write(b"\x1f\x8b half a shard")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "run"
    monkeypatch.setattr(beam_ingest, "run_data_step",
                        lambda settings, directory, beam_args, records: half_write(directory))
    code, lines = _main(_train_argv(tiny_csv, out), capsys)
    assert code == 2 and lines == [f"error: [Errno 28] cannot write the prepared data under {out}: "
                                   "No space left on device"]
    assert not out.exists()


def test_enospc_while_saving_a_version(tmp_path, module, monkeypatch):
    def failing_save(obj, export_dir, signatures=None, options=None):
        os.makedirs(os.path.join(export_dir, "variables"))
        with open(os.path.join(export_dir, "variables", "variables.data-00000-of-00001"), "wb") as handle:
            handle.write(b"partial")
        raise tf.errors.ResourceExhaustedError(
            None, None, "{{function_node __wrapped__SaveV2}} " + export_dir
            + "/variables/variables_temp/part-0; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    base = tmp_path / "serving_model"
    (base / "1").mkdir(parents=True)  # an earlier, complete version stays as it is
    (base / "1" / "saved_model.pb").write_bytes(b"v1")
    with pytest.raises(OSError, match=r"^cannot write a new version under .*: No space left on device$"):
        export_version(module, str(base))
    assert sorted(os.listdir(base)) == ["1"] and (base / "1" / "saved_model.pb").read_bytes() == b"v1"


def test_other_tensorflow_errors_are_not_disguised_as_storage_errors(tmp_path, module, monkeypatch):
    def failing_save(*args, **kwargs):
        raise tf.errors.InvalidArgumentError(None, None, "a real bug")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(tf.errors.InvalidArgumentError):
        export_version(module, str(tmp_path / "serving_model"))
    assert os.listdir(tmp_path / "serving_model") == []


def test_enospc_while_writing_run_json_keeps_the_old_one(tmp_path, monkeypatch):
    """The disk fills while run.json's replacement is flushed: the old file stays, no temporary is left."""
    import json

    from tests.conftest import tiny_config
    from trainer import atomic, pipeline

    config = tiny_config(str(tmp_path), "unused.csv")
    (tmp_path / "run.json").write_text('{"status": "complete"}')

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pipeline, "_versions", lambda: {})
    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        pipeline.update_run_json(config, {"status": "running"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.json"]  # no run.json.tmp-* left behind
    assert json.loads((tmp_path / "run.json").read_text()) == {"status": "complete"}
