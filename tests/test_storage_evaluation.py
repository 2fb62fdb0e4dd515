"""The commands that read a run, on a run on gs:// (`trainer.run_storage.on_run`).

The remote runs are staged locally and uploaded as a tuning execution's
upload would (`run_storage.upload`): no new training. The references: the
store's own listing with each object's size and time (what changed), the
working copy as it was before its upload (what the evaluation wrote), the
monitoring page drawn by the same function on the full local run, and what
drift and live evaluation wrote to their own `--output`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil

import pytest

from evaluation import monitoring
from evaluation import task as evaluation_task
from evaluation.monitoring_records import write_record
from tests.test_storage_run import _copies, scratch  # noqa: F401 (scratch: a fixture)
from trainer import cli, run_copy, run_storage, storage
from trainer.layout import LIVE_RECORD, MONITORING_PAGE, SAVED_MODEL_FILE

pytestmark = pytest.mark.slow  # starts a store (tests/object_storage.py)


def _facts(run: str) -> dict[str, tuple[int, float]]:
    """Every object under `run` -> (size, the store's update time): what a command changed."""
    return {path[len(run) + 1:]: (size, updated) for path, size, updated in storage.file_facts(storage.join(run, "**"))}


def _upload(stage: str, run: str) -> None:
    """`stage` uploaded to `run` as a run's upload writes it (versions marker-last, records with the URL)."""
    run_storage.upload(run_copy.WorkingCopy(run, stage, frozenset(), {}))


def _stage_execution(source: str, target: str) -> None:
    """The tiny run as a tuning execution's directory, its records naming where it is."""
    # Not what other tests may have written into the shared run (evaluations, monitoring records).
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("evaluation", "report", "logs", "monitoring*"))
    path = os.path.join(target, "run.json")
    with open(path) as handle:
        record = json.load(handle)
    record["status"] = "complete"
    with open(path, "w") as handle:
        handle.write(json.dumps(record).replace(source, target))


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def _live_record(stage: str, day: int, version: int) -> None:
    """A live evaluation's record of version `version` on 2026-11-`day`."""
    interval = {"value": 0.5, "lower": 0.4, "upper": 0.6}
    write_record(stage, LIVE_RECORD, {
        "version": version, "threshold": 0.5, "matched": 900, "positives": 60, "alerts": [], "enough_positives": True,
        "pushed_test": {"pr_auc": {"value": 0.6}}, "metrics": dict.fromkeys(("pr_auc", "recall", "precision"), interval)},
        datetime.datetime(2026, 11, day, tzinfo=datetime.UTC))


def test_evaluation_on_gcs_writes_its_verdict_and_report_to_the_store(gcs, tiny_run, tmp_path, scratch,  # noqa: F811
                                                                      monkeypatch, capsys):
    """`evaluation.task --run gs://` evaluates the latest execution on a working copy and uploads what it wrote,
    naming the store; `--report-only` draws the report and the monitoring page again; nothing else changes."""
    source, stage, run = tiny_run[0].output_dir, str(tmp_path / "stage" / "fraud"), storage.join(gcs, "runs", "fraud")
    for execution in ("0001", "0002"):
        _stage_execution(source, os.path.join(stage, "executions", execution))
    shutil.copytree(os.path.join(source, "serving_model"), os.path.join(stage, "serving_model"))  # served: 1
    _live_record(stage, 2, 1)
    _upload(stage, run)
    before = _facts(run)

    written = {}
    upload = run_storage.upload

    def keep_then_upload(copy):  # the working copy as the evaluation left it: the reference of the upload
        for name in storage.list_files(copy.local):
            if name.startswith(("executions/0002/evaluation/", "executions/0002/report/")):
                with open(os.path.join(copy.local, name), "rb") as handle:
                    written[name] = handle.read()
        written["local"] = copy.local.encode()
        written["copied"] = "\n".join(storage.list_files(copy.local)).encode()
        upload(copy)

    monkeypatch.setattr(run_storage, "upload", keep_then_upload)  # as on_run calls it
    flags = ["--run", run, "--attribution-rows", "0", "--intervals", "none", "--min-recall", "0"]
    code = evaluation_task.main(flags)
    printed = capsys.readouterr().out
    summary = json.loads(storage.read_text(storage.join(run, "executions", "0002", "evaluation", "summary.json")))
    verdict = "BLESSED" if summary["blessed"] else "NOT_BLESSED"
    assert code == (0 if summary["blessed"] else 1)
    assert f"{verdict}  report: {run}/executions/0002/report/index.html" in printed.splitlines(), printed
    assert summary["evaluation_dir"] == f"{run}/executions/0002/evaluation"
    assert all(model["path"].startswith(f"{run}/executions/0002/") for model in summary["models"].values())
    copied = written.pop("copied").decode().splitlines()
    assert "executions/0001/run.json" in copied and not any(n.startswith("executions/0001/data/") for n in copied)
    assert "serving_model/1/variables/variables.index" in copied  # the newest version, in full

    after = _facts(run)
    changed = _changed(before, after)
    assert changed and all(name.startswith(("executions/0002/evaluation/", "executions/0002/report/"))
                           for name in changed), sorted(changed)
    local = written.pop("local").decode()
    for name, content in written.items():  # what the evaluation wrote is on the store, naming the store
        remote = storage.open_file(storage.join(run, name)).read()
        expected = content.replace(local.encode(), run.encode()) if name.endswith((".json", ".html")) else content
        assert remote == expected, name
    assert f"executions/0002/evaluation/{verdict}" in after and "executions/0002/report/index.html" in after
    assert "imbalance-run-" not in storage.read_text(storage.join(run, "executions", "0002", "report", "index.html"))
    assert _copies(scratch) == []

    assert evaluation_task.main([*flags, "--report-only"]) == 0
    printed = capsys.readouterr().out
    assert {f"{verdict}  report: {run}/executions/0002/report/index.html",
            f"monitoring: {run}/{MONITORING_PAGE}"} <= set(printed.splitlines()), printed
    redrawn = _changed(after, _facts(run))  # TFMA's output is read, not written again
    assert {MONITORING_PAGE, "executions/0002/report/index.html"} <= redrawn
    assert all(name.startswith("executions/0002/report/") for name in redrawn - {
        MONITORING_PAGE, "executions/0002/evaluation/summary.json", f"executions/0002/evaluation/{verdict}"}), redrawn
    assert "Monitoring: fraud</h1>" in storage.read_text(storage.join(run, MONITORING_PAGE))  # the run's name
    assert _copies(scratch) == []


def _version(stage: str, version: int, execution: str | None, finished: str) -> None:
    """A served version (what the page reads of it) and, when pushed by an execution, that execution."""
    directory = os.path.join(stage, "serving_model", str(version))
    os.makedirs(os.path.join(directory, "assets.extra"))
    with open(os.path.join(directory, SAVED_MODEL_FILE), "w") as handle:
        handle.write(f"model {version}")
    if execution is None:  # exported by trainer.task: no push record, served since its file's time
        return
    with open(os.path.join(directory, "assets.extra", "push.json"), "w") as handle:
        json.dump({"execution": execution, "model": "candidate", "threshold": 0.3}, handle)
    os.makedirs(os.path.join(stage, "executions", execution, "data"))
    with open(os.path.join(stage, "executions", execution, "run.json"), "w") as handle:
        json.dump({"status": "complete", "execution": {"id": execution, "finished": finished}}, handle)
    with open(os.path.join(stage, "executions", execution, "data", "big.bin"), "w") as handle:
        handle.write("shards")  # what the page does not read


def test_monitoring_on_gcs_draws_the_page_a_local_run_draws(gcs, tmp_path, scratch, monkeypatch,  # noqa: F811
                                                             capsys):
    """`evaluation.monitoring --run gs://`: the page and history on the store are those drawn from the whole run
    locally (with the store's time for a version without a push record); nothing else changes."""
    from tuning.executions import write_history

    stage, run = str(tmp_path / "stage" / "fraud"), storage.join(gcs, "runs", "fraud")
    _version(stage, 1, "0001", "2026-11-01T12:00:00+00:00")
    _version(stage, 2, "0002", "2026-11-03T12:00:00+00:00")
    _version(stage, 3, None, "")
    write_history(stage)
    for day, version in ((2, 1), (4, 3)):
        _live_record(stage, day, version)
    _upload(stage, run)
    before = _facts(run)
    exported = before[f"serving_model/3/{SAVED_MODEL_FILE}"][1]
    os.utime(os.path.join(stage, "serving_model", "3", SAVED_MODEL_FILE), (exported, exported))
    copied = {}
    upload = run_storage.upload

    def look_then_upload(copy):  # the working copy as the page was drawn on it
        copied.update({name: os.path.getmtime(os.path.join(copy.local, name)) for name in storage.list_files(copy.local)})
        upload(copy)

    monkeypatch.setattr(run_storage, "upload", look_then_upload)  # as on_run calls it
    assert monitoring.main(["--run", run]) == 0
    assert capsys.readouterr().out == f"{run}/{MONITORING_PAGE}\n"
    expected = open(monitoring.write_monitoring_page(stage), encoding="utf-8").read()
    drawn = re.compile(r"Drawn [^<]* UTC")  # the page's own time
    assert drawn.sub("", storage.read_text(storage.join(run, MONITORING_PAGE))) == drawn.sub("", expected)
    for name in ("history.json", "history.html"):
        with open(os.path.join(stage, name), encoding="utf-8") as handle:
            assert storage.read_text(storage.join(run, name)) == handle.read(), name
    assert _changed(before, _facts(run)) == {MONITORING_PAGE, "history.json", "history.html"}
    assert copied[f"serving_model/3/{SAVED_MODEL_FILE}"] == exported  # served since its object's time
    assert "executions/0001/run.json" in copied and "executions/0001/data/big.bin" not in copied
    assert _copies(scratch) == []


@pytest.mark.parametrize("module, arguments", [
    ("evaluation.task", []),
    ("evaluation.monitoring", []),
    ("evaluation.drift", ["--data", "rows.csv", "--output", "drift"]),
    ("evaluation.live", ["--predictions", "p.parquet", "--labels", "l.csv", "--id-column", "id", "--output", "live"]),
])
@pytest.mark.parametrize("missing", ["bucket", "run"])
def test_a_missing_remote_run_is_one_line_and_exit_2(module, arguments, missing, gcs, scratch, tmp_path,  # noqa: F811
                                                     monkeypatch, capsys):
    import importlib

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run = "gs://no-such-bucket-imbalance-eval/runs/r" if missing == "bucket" else storage.join(gcs, "runs", "none")
    assert importlib.import_module(module).main(["--run", run, *arguments]) == cli.USAGE_ERROR
    errors = capsys.readouterr().err.strip().splitlines()
    reason = "bucket gs://no-such-bucket-imbalance-eval does not exist" if missing == "bucket" else "no run there"
    assert len(errors) == 1 and errors[0].startswith("error: ") and reason in errors[0], errors
    assert _copies(scratch) == [] and os.listdir(tmp_path / "cwd") == []  # nothing written, no local 'gs:' directory


def test_an_error_on_the_working_copy_names_the_store(gcs, tiny_run, scratch, capsys):  # noqa: F811
    """An execution without its models: one line naming the remote directory (not the copy, which is removed)."""
    run = storage.join(gcs, "runs", "fraud")
    storage.copy_file(os.path.join(tiny_run[0].output_dir, "run.json"), storage.join(run, "executions", "0001",
                                                                                    "run.json"))
    assert evaluation_task.main(["--run", run]) == cli.USAGE_ERROR
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"error: no exported model version under {run}/executions/0001/serving_model"], errors
    assert _copies(scratch) == []


def _served_run(source: str, stage: str) -> None:
    """A tuning run serving version 1, pushed by execution 0001; the later 0002 has only its run.json (the
    served version's data is 0001's, as its push record says)."""
    from trainer.summary import read_run

    _stage_execution(source, os.path.join(stage, "executions", "0001"))
    os.makedirs(os.path.join(stage, "executions", "0002"))
    with open(os.path.join(stage, "executions", "0002", "run.json"), "w") as handle:
        json.dump({"status": "complete"}, handle)
    version = os.path.join(stage, "serving_model", "1")
    shutil.copytree(os.path.join(source, "serving_model", "1"), version)
    threshold = read_run(source).model("weighted").threshold.value
    with open(os.path.join(version, "assets.extra", "push.json"), "w") as handle:
        json.dump({"execution": "0001", "model": "candidate", "threshold": threshold}, handle)


def test_drift_and_live_on_gcs_record_on_the_store_what_they_wrote(gcs, tiny_run, tiny_frame, tmp_path,
                                                                    scratch, capsys):  # noqa: F811
    """`evaluation.drift` and `evaluation.live --run gs://` read the served version and the data of the execution
    that pushed it (not the latest), and their records on the store are what they wrote to `--output`; on the
    store only the records and the monitoring page are new."""
    from evaluation import drift, live
    from tests.test_live import _files

    source, stage, run = tiny_run[0].output_dir, str(tmp_path / "stage" / "fraud"), storage.join(gcs, "runs", "fraud")
    _served_run(source, stage)
    _upload(stage, run)
    before = _facts(run)
    shifted = tiny_frame.copy()
    shifted["x0"] += 2.0
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    served = drift._served(stage)  # the rows the served version was tested on: the live predictions' reference
    predictions, labels = _files(tmp_path, *live.pushed_test(served, served.data_dir))

    output = str(tmp_path / "out")
    assert drift.main(["--run", run, "--data", str(tmp_path / "shifted.csv"), "--output", f"{output}/drift"]) == 1
    assert live.main(["--run", run, "--predictions", predictions, "--labels", labels, "--id-column", "id",
                      "--output", f"{output}/live"]) == 0
    assert "error" not in capsys.readouterr().err
    new = _changed(before, _facts(run))
    records = sorted(name for name in new if name.startswith("monitoring/"))
    assert new == {*records, MONITORING_PAGE} and [name.split("/")[1].split("-")[0] for name in records] == \
        ["drift", "live"]
    drifted, lived = (json.loads(storage.read_text(storage.join(run, name))) for name in records)
    with open(f"{output}/drift/drift.json") as handle:
        assert [f["name"] for f in drifted["features"]] == [f["name"] for f in json.load(handle)["features"]]
    assert drifted["served_version"] == 1 and drifted["scores"]["reference_rows"].startswith("the served execution")
    with open(f"{output}/live/live.json") as handle:
        written = json.load(handle)
    assert lived["metrics"] == written["metrics"] and lived["version"] == 1
    tested = json.loads(storage.read_text(storage.join(run, "executions", "0001", "run.json")))["weighted"]["test"]
    assert lived["run_json_test"]["pr_auc"] == tested["pr_auc"]  # execution 0001's figures
    assert "Monitoring: fraud</h1>" in storage.read_text(storage.join(run, MONITORING_PAGE))
    assert _copies(scratch) == []


def test_tfma_on_a_remote_run_reads_and_writes_the_store(gcs, tiny_run, tmp_path, scratch, monkeypatch):  # noqa: F811
    """A new execution's evaluation on gs:// (as tuning.task runs it, without training): TFMA reads the models
    and the test shards at their URLs in the run (the execution's models uploaded first, the served version
    already there) and writes its output there; the working copy's evaluation is that output, byte for byte,
    and the final upload writes neither again (only the verdict and summary, last, as locally)."""
    from evaluation.evaluate import run_evaluation
    from evaluation.options import EvaluationOptions
    from trainer.summary import read_run

    source, stage, run = tiny_run[0].output_dir, str(tmp_path / "stage" / "fraud"), storage.join(gcs, "runs", "fraud")
    _stage_execution(source, os.path.join(stage, "executions", "0001"))
    shutil.copytree(os.path.join(source, "serving_model"), os.path.join(stage, "serving_model"))  # served: 1
    _upload(stage, run)
    before = _facts(run)
    put, local = [], {}
    original_put = run_storage._put
    monkeypatch.setattr(run_storage, "_put", lambda copy, name: (put.append(name), original_put(copy, name)))

    def evaluate(copy: str) -> None:  # a new execution, trained but not evaluated, as in tuning.task
        execution = os.path.join(copy, "executions", "0002")
        _stage_execution(source, execution)
        data = os.path.join(execution, "data")  # as its data step leaves it: on the store, recorded so
        storage.copy_tree(data, run_storage.on_store(data))
        run_storage.published(data)
        run_evaluation(execution, EvaluationOptions(
            served_dir=os.path.join(copy, "serving_model", "1"), attribution_rows=0, intervals="none", min_recall=0,
            served_threshold=read_run(source).model("weighted").threshold.value))
        local["copy"] = copy
        local.update({name: open(os.path.join(execution, "evaluation", name), "rb").read()
                      for name in storage.list_files(os.path.join(execution, "evaluation"))})

    run_storage.on_run(run, evaluate, run_copy.NEW_EXECUTION)
    ours, copy = f"{run}/executions/0002", local.pop("copy")
    tfma_config = json.loads(local["eval_config.json"])  # TFMA's own record of what it read, written on the store
    assert tfma_config["dataLocation"] == f"{ours}/data/test/data-*.tfrecord.gz", tfma_config
    models = [read_run(source).model(key).export_dir for key in ("weighted", "baseline")]
    assert sorted(tfma_config["modelLocations"].values()) == sorted(
        [f"{ours}/{models[0]}/1", f"{ours}/{models[1]}/1", f"{run}/serving_model/1"])
    for name, content in local.items():  # the working copy's evaluation is what is on the store (records: with URLs)
        expected = content.replace(copy.encode(), run.encode()) if name.endswith(".json") else content
        assert storage.open_file(storage.join(ours, "evaluation", name)).read() == expected, name
    tfma_files = {name for name in local if name not in ("BLESSED", "NOT_BLESSED", "summary.json")}
    assert {"metrics-00000-of-00001.tfrecord", "validations.tfrecord"} <= tfma_files, sorted(tfma_files)
    for model in models:  # the models TFMA read are on the store, as trained
        names = storage.list_files(os.path.join(source, model, "1"))
        assert SAVED_MODEL_FILE in names
        for name in names:
            with open(os.path.join(source, model, "1", name), "rb") as handle:
                assert storage.open_file(f"{ours}/{model}/1/{name}").read() == handle.read(), name
    again = [n for n in put if n.startswith((f"executions/0002/{models[0]}/", f"executions/0002/{models[1]}/",
                                             "executions/0002/data/"))
             or n.removeprefix("executions/0002/evaluation/") in tfma_files]
    assert again == [] and "executions/0002/evaluation/summary.json" in put, sorted(put)
    assert not any(n.startswith("serving_model/") for n in _changed(before, _facts(run)))  # the served one, read
    assert copy not in storage.read_text(f"{ours}/evaluation/summary.json") and _copies(scratch) == []
