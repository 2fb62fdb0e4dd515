"""`make tune` end to end on tiny data: search, outputs, resume, distributed mode."""

import html
import json
import os
import shutil

import keras_tuner as kt
import pytest

from tests.conftest import first_execution, read_trials
from trainer.data.prepare import prepare_data
from trainer.hparams import declare_all
from tuning import task
from tuning.portfolio import portfolio_values

pytestmark = pytest.mark.slow


def load_best_hyperparameters(path):
    """`best_hyperparameters.json` back through keras-tuner's own `from_config` (the round trip under test)."""
    with open(path) as handle:
        return kt.HyperParameters.from_config(json.load(handle))


@pytest.fixture
def tuned(tiny_search):
    """The session's tiny tuning run (conftest: 4 random-search trials, weighting study, no evaluation)."""
    return tiny_search


def test_outputs_of_a_search(tuned):
    config, summary = tuned
    execution = summary.execution["path"]
    assert execution == first_execution(config.output_dir) and summary.execution["resumed"] is False
    rows = read_trials(execution)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    # The first trials are the portfolio's, in its order, weight ratios included (tuning/portfolio.py).
    counts = prepare_data(config.replace(output_dir=execution)).train_counts
    expected = portfolio_values(declare_all(counts).values, counts)[:4]
    for row, values in zip(sorted(rows, key=lambda r: int(r["trial_id"])), expected, strict=True):
        assert row["model_family"] == values["model_family"] and row["body"] == values["body"]
        assert float(row["weight_ratio"]) == pytest.approx(values["weight_ratio"])
    assert {round(float(r["weight_ratio"]), 6) for r in rows} == {round((counts[0] / counts[1]) ** 0.5, 6),
                                                                  round(counts[0] / counts[1], 6), 1.0}
    best = load_best_hyperparameters(os.path.join(execution, "tuning", "best_hyperparameters.json"))
    best_row = max(rows, key=lambda r: float(r["objective"]))
    assert best.values["weight_ratio"] == pytest.approx(float(best_row["weight_ratio"]))
    assert best.values["loss"] == best_row["loss"]
    for name in ("candidate_model", "baseline_model"):
        assert os.listdir(os.path.join(execution, name)) == ["1"]
    # Not evaluated, so not pushed: nothing is served.
    assert not summary.push["pushed"] and not os.path.exists(os.path.join(config.output_dir, "serving_model"))
    run = json.load(open(os.path.join(execution, "run.json")))
    assert run["status"] == "complete" and run["tuning"]["trials"] == 4
    # The exported model is the ensemble selection's: its members are trials, with the selection's weights,
    # and (trained again with the same epochs) it scores what the selection measured on held-out data.
    ensemble = run["tuning"]["ensemble"]
    assert sum(ensemble["weights"].values()) == pytest.approx(1.0)
    assert ensemble["score"] >= max(float(r["objective"]) for r in rows) - 1e-12
    trials = {r["trial_id"]: r for r in rows}
    members = run["weighted"].get("members") or [{"weight": 1.0, "hyperparameters": run["weighted"]["hyperparameters"]}]
    assert [m["weight"] for m in members] == pytest.approx(list(ensemble["weights"].values()))
    for trial_id, member in zip(ensemble["weights"], members, strict=True):
        assert float(trials[trial_id]["weight_ratio"]) == pytest.approx(member["hyperparameters"]["weight_ratio"])
    # Same seeds, the same epochs, deterministic LightGBM and CPU ops: the members trained again are the
    # trials' models, so the blend scores exactly what the selection measured (up to float rounding).
    assert run["weighted"]["held_out_score"] == pytest.approx(ensemble["score"], rel=1e-9, abs=1e-12)
    assert run["baseline"]["weight_ratio"] == 1.0


def test_every_execution_studies_the_weighting(tuned):
    """Three variants really trained (their saved weights differ), numbers recomputed from the saved predictions
    with scikit-learn, both splits, an answer (issue: "did weighting help?" in every run)."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    from tests.test_weighting_study import brute_recall_at_precision
    from trainer.weighting_study import load_predictions

    config, summary = tuned
    execution = summary.execution["path"]
    study = json.load(open(os.path.join(execution, "run.json")))["weighting_study"]
    counts = prepare_data(config.replace(output_dir=execution)).train_counts
    saved = {v: load_predictions(execution, v) for v in ("unweighted", "tuned", "formula")}
    assert saved["unweighted"].ratios == (1.0,) * len(saved["tuned"].ratios)
    assert all(w[0] == w[1] for w in saved["unweighted"].weights)
    assert saved["formula"].ratios == pytest.approx([counts[0] / counts[1]] * len(saved["tuned"].ratios))
    members = json.load(open(os.path.join(execution, "run.json")))["weighted"].get("members")
    tuned_ratios = [m["weight_ratio"] for m in members] if members else [summary.weighted.weight_ratio]
    assert list(saved["tuned"].ratios) == pytest.approx(tuned_ratios)
    # A member already trained with the same weights is reused, not trained again: the study's members at
    # N0/N1 and the twin's members the search trained unweighted, exactly those.
    assert study["formula_reused"] == [abs(r / (counts[0] / counts[1]) - 1) < 1e-12 for r in saved["tuned"].ratios]
    run = json.load(open(os.path.join(execution, "run.json")))
    losses = [m["loss"] for m in members] if members else [run["weighted"]["loss"]]
    assert run["baseline"]["reused"] == [abs(r - 1) < 1e-12 and loss == "weighted_ce"
                                         for r, loss in zip(saved["tuned"].ratios, losses, strict=True)]
    assert run["weighted"]["reused"] == [False] * len(tuned_ratios)
    for split in ("validation", "test"):
        rows = {row["source"]: row for row in study[split]}
        assert set(rows) == {"unweighted", "tuned", "formula"}
        for variant, row in rows.items():
            labels, margins = saved[variant].labels[split], saved[variant].margins[split]
            probability = 1 / (1 + np.exp(-margins))
            assert row["pr_auc"] == pytest.approx(average_precision_score(labels, probability), abs=1e-12)
            assert row["brier"] == pytest.approx(np.mean((probability - labels) ** 2), abs=1e-12)
            assert row["recall_at_precision"] == pytest.approx(
                brute_recall_at_precision(labels, probability, study["operating_precision"]))
        assert rows["formula"]["weight_ratio"] == pytest.approx(counts[0] / counts[1])
        for metric, value in rows["tuned"]["vs_unweighted"].items():
            assert value["difference"] == pytest.approx(rows["tuned"][metric] - rows["unweighted"][metric])
            assert value["interval"][0] <= value["interval"][1]
    assert "PR-AUC" in study["answer"] and study["answer"].startswith("The search chose")


def test_best_trial_reproduces_from_the_json(tuned, tmp_path):
    """Retraining the best values (same epochs) reproduces the trial's objective."""
    from trainer.pipeline import train_and_export

    config, summary = tuned
    best_file = os.path.join(summary.execution["path"], "tuning", "best_hyperparameters.json")
    rows = read_trials(summary.execution["path"])
    best_score = max(float(r["objective"]) for r in rows)
    retrain = config.replace(output_dir=str(tmp_path / "again"), hparams=best_file, epochs=config.tuning_epochs)
    summary = train_and_export(retrain)
    # The same held-out objective (scikit-learn's) of the same configuration, either family.
    assert summary.held_out_score == pytest.approx(best_score, abs=0.02)
    assert summary.hyperparameters == dict(load_best_hyperparameters(best_file).values)
    assert kt.HyperParameters.from_config(json.load(open(best_file))).values == summary.hyperparameters


def test_each_make_tune_is_an_execution_gated_against_what_is_served(tuned, tmp_path, tiny_csv, capsys):
    """Executions 2 and 3 on the same RUN: the first is pushed (forced if need be, and recorded);
    the next is compared with the served version by TFMA and pushed only if blessed."""
    config, _ = tuned
    run_dir = str(tmp_path / "run")
    shutil.copytree(config.output_dir, run_dir)
    # (TFMA's intervals are tested in test_evaluation; here they would only triple TFMA's time.)
    arguments = ["--data", tiny_csv, "--label", "target", "--output-dir", run_dir, "--max-trials", "1",
                 "--tuning-epochs", "2", "--epochs", "2", "--verbose", "0", "--selection", "validation",
                 "--intervals", "none"]
    assert task.main([*arguments, "--push-anyway", "--skip-weighting-study"]) == 0
    second = json.load(open(os.path.join(run_dir, "executions", "0002", "run.json")))
    assert "weighting_study" not in second and "weighting:" not in capsys.readouterr().out  # skipped
    assert second["push"]["pushed"] and second["push"]["version"] == 1
    # Nothing was served: the gate's decision serves the candidate (BLESSED, or fit while its twin is not)
    # or the twin, or nothing; --push-anyway forces the candidate whenever the decision does not serve it.
    decision = second["evaluation"]["decision"]
    assert decision["first_execution"] and second["push"]["model"] == "candidate"
    assert second["push"]["push_anyway"] == (decision["serve"] != "candidate")
    if second["evaluation"]["verdict"] == "BLESSED":
        assert decision["serve"] == "candidate" and not second["push"]["push_anyway"]
    assert "the unweighted baseline" in second["evaluation"]["compared_with"]
    served_before = _tree(os.path.join(run_dir, "serving_model"))

    code = task.main(arguments)
    output = capsys.readouterr().out
    third = json.load(open(os.path.join(run_dir, "executions", "0003", "run.json")))
    assert third["evaluation"]["compared_with"] == "served version 1"
    assert f"weighting: {third['weighting_study']['answer']}\n" in output  # the study's answer, printed
    report = open(third["evaluation"]["report"]).read()
    assert report.index("Did weighting help?") < report.index("Minority class (1) on the test split")
    assert html.escape(third["weighting_study"]["answer"]) in report
    if third["evaluation"]["verdict"] == "BLESSED":
        assert code == 0 and third["push"]["version"] == 2
    else:
        assert code == 1 and not third["push"]["pushed"] and "version 1 stays served" in output
        assert _tree(os.path.join(run_dir, "serving_model")) == served_before
    history = json.load(open(os.path.join(run_dir, "history.json")))["executions"]
    assert [row["id"] for row in history] == ["0001", "0002", "0003"]
    assert [row["status"] for row in history] == ["complete"] * 3
    assert history[1]["pushed_version"] == 1 and history[1]["push_anyway"] == second["push"]["push_anyway"]
    assert history[0]["data"]["fingerprint"] == history[2]["data"]["fingerprint"]  # the same file, unchanged
    page = open(os.path.join(run_dir, "history.html"), encoding="utf-8").read()
    assert page.count("<tr>") == 4 and "executions/0003/report/index.html" in page
    # TFMA's own readers work on every evaluated execution; the default slices include numeric quartiles.
    import tensorflow_model_analysis as tfma

    for execution in ("0002", "0003"):
        eval_dir = os.path.join(run_dir, "executions", execution, "evaluation")
        assert tfma.load_validation_result(eval_dir).validation_ok == (
            json.load(open(os.path.join(run_dir, "executions", execution, "run.json")))["evaluation"]["blessed"])
        keys = [key for key, _ in tfma.load_eval_result(eval_dir, model_name="candidate").slicing_metrics]
        assert sum(1 for key in keys if key and key[0][0].endswith("_bucket")) >= 4


def _tree(path):
    """{relative file path: bytes} under `path`."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            files[os.path.relpath(full, path)] = open(full, "rb").read()
    return files


def test_tuner_state_writes_are_atomic(tmp_path, monkeypatch):
    """A crash in the middle of a state write leaves the previous file whole."""
    from keras_tuner.src import utils as tuner_utils

    from tuning import atomic_state

    atomic_state.install()
    path = tmp_path / "oracle.json"
    tuner_utils.save_json(str(path), {"trials": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed between writing and renaming

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        tuner_utils.save_json(str(path), {"trials": 2})
    assert json.loads(path.read_text()) == {"trials": 1}
    assert tuner_utils.load_json(str(path)) == {"trials": 1}
