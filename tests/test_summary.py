"""run.json's typed results (`trainer.summary`): round trips, loud unknown keys, older files, the real writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import tiny_config
from trainer.summary import (
    EvaluationRecord,
    MemberSummary,
    ModelSummary,
    RowsSeen,
    RunJsonError,
    RunSummary,
    TestMetrics,
    ThresholdRecord,
    read_run,
    write_run,
)

TEST = {"examples": 300, "positives": 30, "pr_auc": 0.61, "roc_auc": 0.88, "threshold": 0.42, "precision": 0.5,
        "recall": 0.7, "brier_before": 0.09, "brier": 0.07, "ece_before": 0.05, "ece": 0.02}


def ensemble() -> ModelSummary:
    members = (MemberSummary(weight=0.75, hyperparameters={"model_family": "trees"}, trial="03", rounds=25,
                             model_family="trees", weight_ratio=6.0, loss="weighted_ce"),
               MemberSummary(weight=0.25, hyperparameters={"model_family": "neural"}, best_epochs=[4],
                             epochs_run=6, cross_validation={"folds": 3, "fold_scores": [0.5, 0.6, 0.7]}))
    return ModelSummary(
        version_dir="/run/candidate_model/1", export_dir="candidate_model",
        threshold=ThresholdRecord(value=0.42, objective="recall_at_precision:0.5", fallback=False,
                                  validation_precision=0.51, validation_recall=0.66, held_out_examples=400,
                                  held_out_flagged=37),
        test=TestMetrics(**TEST), loss="weighted_ce", weights=[0.55, 5.2], weight_ratio=9.45,
        calibration={"kind": "platt", "scale": 1.1, "offset": -2.0}, model_family="ensemble",
        class_counts={"train": [900, 100], "validation": [270, 30], "test": [270, 30]},
        rows_seen=(RowsSeen(rows=1000, how="train split"), RowsSeen(rows=1300, how="refit on train + validation")),
        reused=[False, True], members=members)


def test_a_run_round_trips_through_json_text():
    evaluation = EvaluationRecord(verdict="BLESSED", blessed=True, report="/run/report/index.html", failures=[],
                                  checks=["candidate PR-AUC >= 0.2"], decision={"serve": "candidate"},
                                  intervals={"candidate": {"pr_auc": [0.5, 0.7]}})
    run = RunSummary(config={"threshold_objective": "f1"}, weighted=ensemble(), status="complete",
                     push={"pushed": True, "version": 1}, bad_rows={"skipped": 2, "limit": 5, "first": []},
                     evaluation=evaluation)
    text = json.dumps(run.to_json())
    assert RunSummary.from_json(json.loads(text)) == run
    written = json.loads(text)
    assert written["weighted"]["test"] == TEST  # the file's keys and values are those finalize always wrote
    # Optional fields that are None are left out, as the writers before these types did.
    assert written["weighted"]["members"][0] == {"weight": 0.75, "hyperparameters": {"model_family": "trees"},
                                                 "trial": "03", "model_family": "trees", "weight_ratio": 6.0,
                                                 "loss": "weighted_ce", "rounds": 25}
    assert "baseline" not in written and written["weighted"]["rows_seen"][1] == {
        "rows": 1300, "how": "refit on train + validation"}


def test_an_unknown_key_fails_loudly_with_where_it_is():
    record = ensemble().to_json()
    record["threshold"]["held_out_flaged"] = 3  # a misspelt key must not read as "absent"
    with pytest.raises(RunJsonError, match=r"weighted\.threshold: unknown key\(s\) 'held_out_flaged'"):
        RunSummary.from_json({"weighted": record})
    with pytest.raises(RunJsonError, match="top level: unknown key"):
        RunSummary.from_json({"wieghted": record})
    without = {**ensemble().to_json(), "test": {k: v for k, v in TEST.items() if k != "pr_auc"}}
    with pytest.raises(RunJsonError, match=r"baseline\.test: missing key\(s\) 'pr_auc'"):
        RunSummary.from_json({"baseline": without})


def test_a_run_json_an_older_version_wrote_still_reads(tmp_path):
    """Before `held_out_flagged`, Brier/ECE and `members`, a two-model blend recorded its partner as `blend`."""
    old = {"config": {"label": "target"},
           "weighted": {"version_dir": "/old/serving_model/1", "loss": "weighted_ce", "weight_ratio": 9.0,
                        "calibration": {"kind": "prior_shift", "scale": 1.0, "offset": -2.2},
                        "threshold": {"value": 0.3, "objective": "f1", "fallback": False,
                                      "validation_precision": 0.4, "validation_recall": 0.6},
                        "test": {k: v for k, v in TEST.items() if not k.startswith(("brier", "ece"))},
                        "blend": {"weight": 0.5, "partner": {"model_family": "trees"}}},
           # Before `blessed`, `checks`, `decision` and the intervals were recorded.
           "evaluation": {"verdict": "NOT_BLESSED", "verdict_file": "/old/evaluation/NOT_BLESSED",
                          "report": "/old/report/index.html", "failures": ["pr_auc below 0.2"], "tfma_seconds": 31.0}}
    (tmp_path / "run.json").write_text(json.dumps(old))
    run = read_run(str(tmp_path))
    assert run.weighted.threshold.held_out_flagged is None and run.weighted.test.brier is None
    assert run.weighted.members is None and run.baseline is None
    assert run.evaluation.verdict == "NOT_BLESSED" and run.evaluation.blessed is None
    assert run.threshold_objective == "recall_at_precision:0.5"  # none recorded: RunConfig's default
    rewritten = run.to_json()
    assert rewritten["weighted"] == {k: v for k, v in old["weighted"].items() if k != "blend"}
    assert rewritten["evaluation"] == old["evaluation"]


def test_an_unreadable_run_json_stops_training_before_it_starts(tmp_path, capsys):
    """One `error:` line naming the file and the key, exit 2, and nothing trained or written."""
    from trainer import task

    record = {"weighted": {**ensemble().to_json(), "thresold": {"value": 0.5}}}  # misspelt by a hand edit
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert task.main(["--output-dir", str(tmp_path), "--epochs", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'run.json'}: weighted: unknown key(s) 'thresold'")
    assert sorted(os.listdir(tmp_path)) == ["run.json"]


def test_nested_results_must_be_typed():
    with pytest.raises(TypeError, match="ModelSummary.threshold: expected ThresholdRecord, got dict"):
        ModelSummary(version_dir="v", threshold={"value": 0.5})
    with pytest.raises(TypeError, match="tuple of RowsSeen"):
        ModelSummary(version_dir="v", threshold=ThresholdRecord(0.5), rows_seen=[RowsSeen(1, "train split")])


def test_the_default_threshold_objective_is_run_configs():
    assert RunSummary().threshold_objective == tiny_config("out", "data.csv").threshold_objective
    assert RunSummary(config={"threshold_objective": "f1"}).threshold_objective == "f1"


def test_write_then_read(tmp_path):
    run = RunSummary(baseline=ensemble().replace(members=None, export_dir="baseline_model"))
    write_run(str(tmp_path), run)
    assert read_run(str(tmp_path)) == run
    assert read_run(str(tmp_path / "none")) == RunSummary()


def test_the_readers_import_no_tensorflow():
    code = ("import sys, serving.server, evaluation.run_files, tuning.push, trainer.summary, trainer.description; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'TensorFlow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_pipelines_run_json_reads_back_as_what_it_returned(tiny_run):
    config, weighted, baseline = tiny_run
    run = read_run(config.output_dir)
    assert run.weighted == weighted and run.baseline == baseline
    assert run.weighted.test.examples == run.weighted.class_counts["test"][0] + run.weighted.class_counts["test"][1]
    with open(f"{config.output_dir}/run.json") as handle:
        assert json.load(handle)["weighted"] == weighted.to_json()
