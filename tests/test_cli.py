"""Every entry point: a user's error (here an OSError: an output under a regular file) is one line, exit 2."""

from __future__ import annotations

import importlib

import pytest

from trainer import cli


def entry_points(tmp_path, tiny_csv):
    """(module, argv) per entry point, each pointed at a path under a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    under = str(blocker / "out")
    return {
        "trainer.task": ["--data", tiny_csv, "--label", "target", "--output-dir", under, "--epochs", "1"],
        "tuning.task": ["--data", tiny_csv, "--label", "target", "--output-dir", under, "--max-trials", "1"],
        "evaluation.task": ["--run", under],
        "evaluation.drift": ["--reference", tiny_csv, "--data", tiny_csv, "--label", "target", "--output", under],
        "serving.batch": ["--model_base_path", under, "--data", tiny_csv, "--output", str(tmp_path / "scores")],
    }


@pytest.mark.parametrize("module", ["trainer.task", "tuning.task", "evaluation.task", "evaluation.drift",
                                    "serving.batch"])
def test_an_os_error_is_one_line_and_exit_2(module, tmp_path, tiny_csv, capsys):
    argv = entry_points(tmp_path, tiny_csv)[module]
    assert importlib.import_module(module).main(argv) == cli.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "out" in errors[0], err
    assert not (tmp_path / "a-file" / "out").exists() and not (tmp_path / "scores").exists()


def test_a_bug_keeps_its_traceback():
    def bug():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        cli.run_entry_point(bug)
    assert cli.run_entry_point(lambda: 0) == 0


def test_expected_types_and_os_errors_become_one_line(capsys):
    def missing():
        raise FileNotFoundError(2, "No such file or directory", "/no/such/run")

    assert cli.run_entry_point(missing) == cli.USAGE_ERROR
    assert capsys.readouterr().err == "error: [Errno 2] No such file or directory: '/no/such/run'\n"

    def own():
        raise KeyError("id")

    assert cli.run_entry_point(own, expected=(KeyError,)) == cli.USAGE_ERROR
    assert capsys.readouterr().err == "error: 'id'\n"


@pytest.mark.parametrize("module", ["trainer.task", "tuning.task"])
def test_a_run_directory_on_unsupported_storage_is_refused_before_anything_is_written(module, tmp_path, tiny_csv,
                                                                                      monkeypatch, capsys):
    """A URL other than gs:// and s3:// (tests/test_storage_run.py) is one line and exit 2, and no local
    'hdfs:' directory (os.makedirs would have made one under the working directory)."""
    monkeypatch.chdir(tmp_path)
    argv = ["--data", tiny_csv, "--label", "target", "--output-dir", "hdfs://namenode/runs/fraud"]
    assert importlib.import_module(module).main(argv) == cli.USAGE_ERROR
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "unsupported storage scheme hdfs://" in errors[0], errors
    assert not (tmp_path / "hdfs:").exists()
