"""`--wandb`: an offline W&B run of a finished run, read back from the files wandb wrote; a missing wandb is one line."""

import base64
import glob
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest

from tuning import task


def test_missing_wandb_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails, as when it is not installed

    def no_run(*args, **kwargs):
        raise AssertionError("the run started although wandb is missing")

    monkeypatch.setattr("tuning.pipeline.run_tuning", no_run)
    run_dir = tmp_path / "run"
    assert task.main(["--output-dir", str(run_dir), "--wandb", "offline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --wandb needs the wandb package") and "pip install" in err[0]
    assert not run_dir.exists()


def test_the_finished_execution_is_logged_with_the_flags_mode_and_project(tmp_path, monkeypatch, capsys):
    """The wiring only (no training): `--wandb MODE --wandb-project P` logs the execution `run_tuning` returns."""
    pytest.importorskip("wandb", reason="wandb is not installed (the tracking extra)")
    execution = str(tmp_path / "run" / "executions" / "0001")
    from trainer.summary import ModelSummary, ThresholdRecord
    from tuning.pipeline import ExecutionSummary

    model = ModelSummary(version_dir="unused", threshold=ThresholdRecord(value=0.5))
    summary = ExecutionSummary(execution={"id": "0001", "path": execution, "resumed": False}, tuning={},
                               weighted=model, baseline=model, push={"pushed": False})
    calls = []
    monkeypatch.setattr("tuning.pipeline.run_tuning", lambda config, **kwargs: summary)
    monkeypatch.setattr(task, "print_summary", lambda config, summary: None)
    monkeypatch.setattr("tuning.wandb_logging.log_execution", lambda *args: calls.append(args) or "RUN-DIR")
    assert task.main(["--output-dir", str(tmp_path / "run"), "--wandb", "offline", "--wandb-project", "p1",
                      "--skip-evaluation"]) == 0
    assert calls == [(execution, "offline", "p1")]
    assert "wandb:   RUN-DIR  (upload it with: wandb sync RUN-DIR)" in capsys.readouterr().out


def wandb_records(path):
    """The protobuf records of a `.wandb` file: wandb's header, then LevelDB's log format (32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, position, pending = 32 * 1024, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # too short for a chunk header: padding up to the next block
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])  # crc32, length, FULL/FIRST/MIDDLE/LAST
        if position + 7 + length > len(data):
            break  # a chunk still being written
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4) and pending:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@pytest.fixture(scope="module")
def logged(tmp_path_factory, tiny_run):
    """The tiny trained run (copied), with a report, logged offline; wandb's own dirs kept in tmp_path."""
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (the tracking extra)")
    from tuning.wandb_logging import log_execution

    tmp_path = tmp_path_factory.mktemp("wandb")
    config, _, _ = tiny_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(config.output_dir, run_dir)
    report = os.path.join(run_dir, "report")  # what evaluation.task writes, in miniature
    os.makedirs(os.path.join(report, "figures"))
    with open(os.path.join(report, "index.html"), "w") as handle:
        handle.write("<html><body><img src='figures/pr.png'></body></html>")
    with open(os.path.join(report, "figures", "pr.png"), "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
    run_json = json.load(open(os.path.join(run_dir, "run.json")))
    run_json["evaluation"] = {"report": os.path.join(report, "index.html"), "verdict": "BLESSED"}
    json.dump(run_json, open(os.path.join(run_dir, "run.json"), "w"))
    with pytest.MonkeyPatch.context() as monkeypatch:  # wandb's staging and cache: not under $HOME
        for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
            monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name))
        where = log_execution(run_dir, "offline", "imbalance-tests")
        wandb.teardown()  # wandb's service has written and closed the run's files
    files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1 and os.path.dirname(files[0]) == where
    records = {}
    for record in wandb_records(files[0]):
        records.setdefault(record.WhichOneof("record_type"), []).append(record)
    return run_dir, run_json, records


def _history(records):
    """{step: {key: value}} of the logged history rows."""
    rows = {}
    for record in records["history"]:
        items = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
        rows.setdefault(items["_step"], {}).update(items)
    return rows


@pytest.mark.slow  # trains the session's tiny run, if no other test did
def test_offline_run_has_the_epoch_metrics_config_and_summary(logged):
    run_dir, run_json, records = logged
    history = json.load(open(os.path.join(run_dir, "history", "weighted.json")))
    baseline = json.load(open(os.path.join(run_dir, "history", "baseline.json")))
    rows = _history(records)
    assert len(history["val_pr_auc"]) >= 2
    for epoch, value in enumerate(history["val_pr_auc"]):  # what Keras recorded, epoch by epoch
        assert rows[epoch]["weighted/val_pr_auc"] == pytest.approx(value)
        assert rows[epoch]["weighted/loss"] == pytest.approx(history["loss"][epoch])
        assert rows[epoch]["epoch"] == epoch
    for epoch, value in enumerate(baseline["val_pr_auc"]):
        assert rows[epoch]["baseline/val_pr_auc"] == pytest.approx(value)
    config = {item.key: json.loads(item.value_json) for r in records["run"] for item in r.run.config.update}
    assert config["hyperparameters"] == run_json["weighted"]["hyperparameters"]
    assert config["weight_ratio"] == pytest.approx(run_json["weighted"]["weight_ratio"])
    assert config["seed"] == run_json["config"]["seed"]
    summary = {item.key: json.loads(item.value_json) for r in records["summary"] for item in r.summary.update}
    assert summary["weighted/test_pr_auc"] == pytest.approx(run_json["weighted"]["test"]["pr_auc"])
    assert summary["baseline/test_pr_auc"] == pytest.approx(run_json["baseline"]["test"]["pr_auc"])
    assert summary["verdict"] == "BLESSED"


@pytest.mark.slow
def test_offline_run_has_the_test_pr_curves(logged):
    """Each model's curve is the interpolated precision (best precision at recall >= r) of its test scores."""
    from sklearn.metrics import precision_recall_curve

    from evaluation.predictions import predict_test
    from evaluation.run_files import run_models, run_schema, split_pattern

    run_dir, run_json, _ = logged
    models = {model.name: model for model in run_models(run_dir)}  # read from the logged run.json
    for key, model in (("weighted", models["candidate"]), ("baseline", models["baseline"])):
        [table_file] = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "files", "media", "table",
                                              "test", f"pr_curve_{key}_table_*.table.json"))
        table = json.load(open(table_file))
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
        assert {row["class"] for row in rows} == {"minority"} and len(rows) == 21
        outputs = predict_test(model.path, split_pattern(run_dir, "test"), run_schema(run_dir))
        precision, recall, _ = precision_recall_curve(outputs["labels"], outputs["scores"])
        grid = np.linspace(0.0, 1.0, 21)  # W&B's recall levels (logged rounded to 3 decimals)
        for row in rows:
            level = grid[np.argmin(np.abs(grid - row["recall"]))]
            expected = precision[recall >= level].max()
            assert row["precision"] == pytest.approx(expected, abs=5e-4), row


@pytest.mark.slow
def test_offline_run_has_the_report_as_an_artifact(logged):
    run_dir, _, records = logged
    [artifact] = [r.artifact for r in records["artifact"] if r.artifact.type == "report"]
    contents = {entry.path: entry for entry in artifact.manifest.contents}
    assert set(contents) == {"index.html", "figures/pr.png"}
    for path, entry in contents.items():  # the report's own bytes (W&B's digest: base64 of the MD5)
        local = os.path.join(run_dir, "report", path)
        assert entry.digest == base64.b64encode(hashlib.md5(open(local, "rb").read()).digest()).decode()
