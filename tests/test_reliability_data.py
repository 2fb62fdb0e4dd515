"""Bad input at the command line: one line on stderr, exit 2, the output directory untouched.

tests/test_ingest.py checks each bad-data case at the library level and
tests/test_task.py a few through `trainer.task.main` in-process. Here the
entry points run as users run them, `python -m trainer.task` and
`python -m tuning.task` in a subprocess, for the cases not covered there.
The subprocesses run two at a time (each one imports TensorFlow).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import REPO, serialized_example
from tests.test_beam_data import plan_of
from tests.test_ingest import read_table
from trainer.data.ingest import DataError

# TensorFlow's C++ logging writes these while it is imported, whatever
# TF_CPP_MIN_LOG_LEVEL says; they are not the program's own output.
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |"
                       r"To enable the following instructions:)")


def program_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's import-time C++ log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]


def tree(path) -> dict[str, str]:
    """Relative path -> content hash (directories map to "dir"); {} if absent."""
    result = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            result[os.path.relpath(os.path.join(root, name), path)] = "dir"
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                result[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return result


def _tfrecord(path: str, rows: int = 40, compression: str = "") -> None:
    with tf.io.TFRecordWriter(path, options=compression or None) as writer:
        for i in range(rows):
            writer.write(serialized_example({"x": float(i), "region": "north", "y": int(i % 4 == 0)}))


def _frame_csv(frame: pd.DataFrame):
    return lambda path: frame.to_csv(path, index=False)


def _text(content: bytes):
    def write(path):
        with open(path, "wb") as handle:
            handle.write(content)
    return write


def _truncated_tfrecord(path):
    _tfrecord(path)
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:-7])  # the last record loses its tail (and CRC)


def _garbage_gz_tfrecord(path):
    with gzip.open(path, "wb") as handle:
        handle.write(np.random.default_rng(0).bytes(3000))


_ROWS = 40
_OK_X = np.arange(_ROWS, dtype=float)
_OK_Y = np.array([1 if i % 4 == 0 else 0 for i in range(_ROWS)])

# name: (file name, writer, entry point, extra flags, expected fragment, output dir exists before)
CASES = {
    "empty file": ("d.csv", _text(b""), "trainer", [], "the file is empty", False),
    "header only": ("d.csv", _text(b"x,y\n"), "trainer", [], "no rows", True),
    "three label values": ("d.csv", _frame_csv(pd.DataFrame({"x": _OK_X, "y": np.arange(_ROWS) % 3})),
                           "trainer", [], "exactly two classes, found 3", False),
    "infinite values": ("d.csv", _text(b"x,y\n" + b"".join(
        f"{'inf' if i == 3 else '-Infinity' if i == 5 else i},{_OK_Y[i]}\n".encode() for i in range(_ROWS))),
        "trainer", [], "column 'x' has 2 infinite values", True),
    "mixed types": ("d.csv", _text(b"x,y\n" + b"".join(
        f"{'abc' if i == 7 else i},{_OK_Y[i]}\n".encode() for i in range(_ROWS))),
        "trainer", [], "column 'x' mixes numbers", False),
    "ragged row, too many fields": ("d.csv", _text(b"x,z,y\n1,2,0\n3,4,1,9\n"), "trainer", [], "malformed CSV",
                                    True),
    "ragged row, too few fields": ("d.csv", _text(b"x,z,y\n" + b"".join(
        (f"{i},{i},{_OK_Y[i]}\n" if i != 9 else f"{i},{_OK_Y[i]}\n").encode() for i in range(_ROWS))),
        "trainer", [], "line 11 has 2 fields, the header has 3", False),
    "invalid utf-8": ("d.csv", _text(b"x,region,y\n" + b"".join(
        f"{i},r{i % 3},{_OK_Y[i]}\n".encode() for i in range(_ROWS)) + b"1,\xff\xfe,0\n"),
        "trainer", [], "cannot read", True),
    "truncated tfrecord": ("d.tfrecord", _truncated_tfrecord, "trainer", [], "cannot read", False),
    "unreadable tfrecord.gz": ("d.tfrecord.gz", _garbage_gz_tfrecord, "trainer", [], "cannot read", True),
    "tuning: missing label column": ("d.csv", _frame_csv(pd.DataFrame({"x": _OK_X, "y": _OK_Y})), "tuning",
                                     ["--label", "nope"], "label column 'nope' not found", False),
    "tuning: one class only": ("d.csv", _frame_csv(pd.DataFrame({"x": _OK_X, "y": np.ones(_ROWS, int)})),
                               "tuning", [], "exactly two classes, found 1", True),
    "tuning: class too small for the split": (
        "d.csv", _frame_csv(pd.DataFrame({"x": _OK_X, "y": (np.arange(_ROWS) < 3).astype(int)})), "tuning", [],
        "class 1 has only 3 examples", False),
}


def _command(entry: str, data: str, out: str, extra: list[str]) -> list[str]:
    flags = {"--label": "y", **dict(zip(extra[::2], extra[1::2], strict=True))}
    command = [sys.executable, "-m", f"{entry}.task", "--data", data, "--output-dir", out, "--verbose", "0"]
    for flag, value in flags.items():
        command += [flag, value]
    if entry == "tuning":
        command += ["--max-trials", "1", "--tuning-epochs", "1", "--epochs", "1", "--skip-evaluation"]
    return command


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}


# Each subprocess costs a TensorFlow import (~5 s of CPU): these run as real
# commands; every case (these included) also runs through the entry point's
# `main()` in-process below.
# One case per stage a refusal comes from (the file check before the pipeline, Beam's row parsing, the
# plan's column types, TensorFlow's record reader, the split in tuning.task): what a process prints on
# stderr depends on the stage, not on which check of the stage fails; every check runs in-process below.
SUBPROCESS_CASES = ("empty file", "ragged row, too few fields", "mixed types", "truncated tfrecord",
                    "tuning: class too small for the split")


def _prepare_case(name: str, root) -> tuple[list[str], object, dict]:
    file_name, write, entry, extra, _, exists = CASES[name]
    data = str(root / file_name)
    write(data)
    out = root / "run"
    if exists:
        (out / "data").mkdir(parents=True)
        (out / "notes.txt").write_text("an earlier user's file\n")
    return _command(entry, data, str(out), extra), out, tree(out)


def _check(returncode: int, stderr: str, stdout: str, case: str, out, before: dict) -> None:
    fragment, existed = CASES[case][4], CASES[case][5]
    lines = program_lines(stderr)
    assert returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert fragment in lines[0]
    assert stdout.strip() == ""
    if existed:
        assert tree(out) == before  # left exactly as it was
    else:
        assert not out.exists()  # not even created


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Runs the subprocess cases two at a time: name -> (result, out dir, tree before)."""
    jobs = {name: _prepare_case(name, tmp_path_factory.mktemp("cli")) for name in SUBPROCESS_CASES}

    def run(name):
        return subprocess.run(jobs[name][0], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(run, jobs), strict=True))
    return {name: (results[name], jobs[name][1], jobs[name][2]) for name in jobs}


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_data_command_one_line_exit_2_output_untouched(cli_results, case):
    result, out, before = cli_results[case]
    _check(result.returncode, result.stderr, result.stdout, case, out, before)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_main_one_line_exit_2_output_untouched(tmp_path, capsys, case):
    from trainer import task as trainer_task
    from tuning import task as tuning_task

    command, out, before = _prepare_case(case, tmp_path)
    main = tuning_task.main if CASES[case][2] == "tuning" else trainer_task.main
    code = main(command[3:])  # the flags after "python -m x.task"
    captured = capsys.readouterr()
    _check(code, captured.err, captured.out, case, out, before)


def test_a_finished_run_starts_the_next_execution_and_keeps_everything(tmp_path):
    """A finished execution (or a finished run from before executions) is never redone or touched:
    the next command gets a new execution id; an unfinished one is resumed."""
    from tuning.executions import begin_execution

    out = tmp_path / "run"
    (out / "serving_model" / "1").mkdir(parents=True)  # a run made before executions existed
    (out / "run.json").write_text(json.dumps({"status": "complete", "weighted": {"threshold": {"value": 0.3}}}))
    before = tree(out)
    first = begin_execution(str(out))
    assert (first.id, first.resumed) == ("0001", False) and tree(out) == before  # nothing written yet
    os.makedirs(first.path)
    (out / "executions" / "0001" / "run.json").write_text('{"status": "running"}')
    assert begin_execution(str(out)).resumed and begin_execution(str(out)).id == "0001"
    (out / "executions" / "0001" / "run.json").write_text('{"status": "complete"}')
    assert begin_execution(str(out)).id == "0002"
    assert {k: v for k, v in tree(out).items() if not k.startswith("executions")} == before


def test_short_csv_row_is_refused_not_padded_with_missing_values(tmp_path):
    """pandas pads a row with too few fields with NaN; that must not pass as "missing values"."""
    path = tmp_path / "d.csv"
    path.write_text("x,region,y\n1.5,north,0\n2.5,south\n3.5,,1\n")  # line 3 lost a field; line 4 is fine
    with pytest.raises(DataError, match="line 3 has 2 fields, the header has 3") as info:
        plan_of(str(path))
    assert "\n" not in str(info.value)
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match="line 3 has 2 fields"):
        plan_of(str(gz))
    path.write_text("x,region,y\n1.5,north,0\n\n3.5,,1\n\"a\nb\",2,0\n")  # blank lines and quoted newlines are fine
    frame = read_table(str(path))
    assert frame.shape == (3, 3) and pd.isna(frame["region"][1])


def test_truncated_tfrecord_names_the_record_not_tensorflow_internals(tmp_path):
    path = str(tmp_path / "d.tfrecord")
    _truncated_tfrecord(path)  # 40 records, the last one cut
    with pytest.raises(DataError) as info:
        plan_of(path)
    message = str(info.value)
    assert message.startswith(f"cannot read {path}: record 40 is corrupt or truncated")
    assert "39 records before it were read" in message
    assert "function_node" not in message and "[Op:" not in message and "\n" not in message
