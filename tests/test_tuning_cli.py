"""`python -m tuning.task` refuses bad input with one line and leaves a run intact."""

import os

import pandas as pd
import pytest

from tuning import task


@pytest.fixture
def existing_run(tmp_path):
    run = tmp_path / "run"
    (run / "serving_model" / "1").mkdir(parents=True)
    (run / "run.json").write_text('{"status": "running"}')
    return run


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.mark.parametrize("extra,message", [
    (["--objective", "recall"], "unknown tuning objective"),
    (["--objective", "recall_at_precision:2"], "must be in (0, 1]"),
    (["--max-trials", "0"], "max_trials must be at least 1"),
    (["--tuning-epochs", "0"], "epochs must be at least 1"),
])
def test_bad_budget_or_objective(existing_run, capsys, extra, message):
    before = _snapshot(existing_run)
    code = task.main(["--output-dir", str(existing_run), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert _snapshot(existing_run) == before


def test_bad_data_leaves_the_run_intact(existing_run, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 2]}).to_csv(bad, index=False)
    before = _snapshot(existing_run)
    code = task.main(["--data", str(bad), "--label", "y", "--output-dir", str(existing_run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "exactly two classes, found 3" in err
    assert _snapshot(existing_run) == before
    assert not os.path.exists(existing_run / "data")


def test_unknown_tuner_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        task.main(["--tuner", "grid"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
