"""`python -m trainer.task`: bad input gives one clear line, exit 2, nothing written."""

import json
import os

import pandas as pd
import pytest

from trainer import task


def _run(argv, capsys):
    code = task.main(argv)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("frame,extra,message", [
    (pd.DataFrame({"x": [1.0, 2.0], "y": [1, 1]}), [], "exactly two classes"),
    (pd.DataFrame({"x": [1.0] * 20, "y": [0] * 19 + [1]}), [], "class 1 has only 1 examples"),
    (pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), ["--label", "nope"], "label column 'nope' not found"),
    (pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}), [], "--positive-label"),
])
def test_bad_data_exits_2_and_writes_nothing(tmp_path, capsys, frame, extra, message):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "run"
    argv = ["--data", str(path), "--label", "y", "--output-dir", str(out), "--verbose", "0"] + extra
    argv = argv[:2] + argv[4:] if "--label" in extra else argv
    code, err = _run(argv, capsys)
    assert code == 2
    assert message in err and err.startswith("error: ") and "\n" not in err
    assert not out.exists()


def test_bad_flags_and_hparams_file(tmp_path, capsys):
    code, err = _run(["--data", "sylva", "--output-dir", str(tmp_path / "r"), "--threshold-objective", "nope"],
                     capsys)
    assert code == 2 and "unknown threshold objective" in err
    bad = tmp_path / "hp.json"
    bad.write_text("{not json")
    code, err = _run(["--data", "sylva", "--output-dir", str(tmp_path / "r"), "--hparams", str(bad)], capsys)
    assert code == 2 and "cannot read hyperparameters" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_train_cli_end_to_end_and_refuses_other_data(tmp_path, capsys, tiny_csv, tiny_frame):
    out = tmp_path / "run"
    base = ["--label", "target", "--output-dir", str(out), "--epochs", "2", "--verbose", "0", "--selection", "validation"]
    code = task.main(["--data", tiny_csv, *base, "--weight-scheme", "seed"])  # the old spelling still works
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0 and "test PR-AUC" in printed and "serving_model/1" in printed
    assert "--weight-scheme seed is deprecated; use --weight-scheme other_class_share" in captured.err
    run = json.loads((out / "run.json").read_text())
    counts = run["weighted"]["class_counts"]["train"]
    assert run["weighted"]["weight_ratio"] == pytest.approx(counts[0] / counts[1])  # other_class_share: [N1/N, N0/N]
    other = tmp_path / "other.csv"
    tiny_frame.iloc[:1500].to_csv(other, index=False)
    before = sorted(os.listdir(out))
    code, err = _run(["--data", str(other), *base], capsys)
    assert code == 2 and "prepared with other settings" in err
    assert sorted(os.listdir(out)) == before
    # A second training run into the same directory adds version 2, keeping version 1.
    assert task.main(["--data", tiny_csv, *base, "--weight-ratio", "3"]) == 0
    assert sorted(os.listdir(out / "serving_model")) == ["1", "2"]
