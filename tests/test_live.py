"""Live evaluation on late labels: join by id, TFMA over materialized predictions, the alert rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation import live


def test_join_counts_and_alert_rule(tmp_path):
    pq.write_table(pa.table({"id": [1, 2, 3, 3, 5], "probability": [0.1, 0.9, 0.2, 0.4, 0.7]}),
                   tmp_path / "predictions-00000.parquet")
    pd.DataFrame({"id": ["2", "3", "4"], "label": ["yes", "no", "yes"]}).to_csv(tmp_path / "labels.csv", index=False)
    predictions, duplicates = live.read_predictions(str(tmp_path / "predictions-*.parquet"), "id")
    joined = live.join(predictions, live.read_labels(str(tmp_path / "labels.csv"), "id", "label", "yes"), duplicates)
    assert joined.labels.tolist() == [1, 0] and joined.scores.tolist() == [0.9, 0.4]  # id 3: its last prediction
    assert (joined.unmatched_predictions, joined.unmatched_labels, joined.duplicate_predictions) == (2, 1, 1)
    live_metrics = {"pr_auc": {"value": 0.2, "lower": 0.1, "upper": 0.3}, "recall": {"value": 0.5, "lower": 0.3,
                                                                                      "upper": 0.7}}
    pushed = {"pr_auc": 0.4, "recall": 0.6}
    assert [line.split(":")[0] for line in live.alerts(live_metrics, pushed, 30, 0.02)] == ["pr_auc"]
    assert live.alerts(live_metrics, pushed, 19, 0.02) == []  # too few positives to say so
    assert live.alerts(live_metrics, {"pr_auc": 0.31, "recall": 0.6}, 30, 0.02) == []  # within the tolerance


@pytest.fixture(scope="module")
def test_split(tiny_run):
    """The tiny run's test rows (labels, scores by the served model) and its run directory."""
    from evaluation.drift import _served

    run = tiny_run[0].output_dir
    served = _served(run)
    labels, scores = live.pushed_test(served, served.data_dir)
    return run, labels, scores


def _files(directory, labels, scores, label_of=None) -> tuple[str, str]:
    """Batch-scoring Parquet with shuffled text ids and 3 unlabelled rows; labels with 2 unknown ids."""
    rng = np.random.default_rng(0)
    ids = np.array([f"r{i:05d}" for i in rng.permutation(labels.size)])
    predictions = pd.DataFrame({"id": np.r_[ids, ["x1", "x2", "x3"]], "probability": np.r_[scores, [0.5] * 3]})
    predictions.sample(frac=1.0, random_state=1).to_parquet(directory / "predictions-00000.parquet", index=False)
    values = labels if label_of is None else label_of
    pd.DataFrame({"id": np.r_[ids, ["y1", "y2"]], "target": np.r_[values, [0, 1]]}).to_csv(directory / "labels.csv",
                                                                                           index=False)
    return str(directory / "predictions-*.parquet"), str(directory / "labels.csv")


def test_live_evaluation_reproduces_the_offline_metrics(test_split, tmp_path, capsys):
    from evaluation.task import main

    run, labels, scores = test_split
    predictions, label_file = _files(tmp_path, labels, scores)
    assert main(["--run", run, "--predictions", predictions, "--labels", label_file, "--id-column", "id",
                 "--output", str(tmp_path / "live")]) == 0
    summary = json.loads((tmp_path / "live" / "live.json").read_text())
    assert (summary["matched"], summary["unmatched_predictions"], summary["unmatched_labels"]) == (labels.size, 3, 2)
    for name in ("pr_auc", "precision", "recall"):  # the same rows, joined by id: TFMA's figures of the test split
        assert summary["metrics"][name]["value"] == pytest.approx(summary["pushed_test"][name]["value"], abs=1e-9)
        assert summary["metrics"][name]["lower"] <= summary["metrics"][name]["value"] <= \
            summary["metrics"][name]["upper"]
    recorded = summary["run_json_test"]  # the exporter's own counts at the served threshold (trainer/finalize.py)
    assert summary["metrics"]["recall"]["value"] == pytest.approx(recorded["recall"])
    assert summary["metrics"]["precision"]["value"] == pytest.approx(recorded["precision"])
    assert capsys.readouterr().out == ""

    # Late labels that contradict the model: the live upper bounds fall below the pushed figures.
    worst = np.zeros(labels.size, np.int64)
    worst[np.argsort(scores)[:int(labels.sum())]] = 1  # the lowest scores are the positives
    predictions, label_file = _files(tmp_path, labels, scores, label_of=worst)
    assert main(["--run", run, "--predictions", predictions, "--labels", label_file, "--id-column", "id",
                 "--output", str(tmp_path / "worse")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert {line.split(":")[0] for line in lines} == {"pr_auc", "recall"}


def test_logged_predictions_are_read_by_id(tmp_path):
    """Classify and serving_default Predict logs (serving/prediction_log.py) whose examples carry the id."""
    from tensorflow_serving.config import logging_config_pb2

    from serving import prediction_log
    from tests.conftest import serialized_example
    from trainer.data.beam_files import frame_records

    examples = [serialized_example({"id": f"a{i}", "x0": float(i)}) for i in range(3)]
    classifies = prediction_log.rest_classify("imbalance", 1, "classification", examples,
                                              [[("0", 1.0 - s), ("1", s)] for s in (0.25, 0.5, 0.75)])
    predicts = prediction_log.rest_predict("imbalance", 1, "serving_default",
                                           {"examples": np.array([serialized_example({"id": 7, "x0": 1.0})], object)},
                                           {"scores": np.array([0.125], np.float32)})
    sampling = logging_config_pb2.SamplingConfig(sampling_rate=1.0)
    records = [*prediction_log.records(prediction_log.Entry("classify", lambda: classifies, 0), sampling),
               *prediction_log.records(prediction_log.Entry("predict", lambda: predicts, 0), sampling)]
    (tmp_path / "requests-0").write_bytes(frame_records(records))
    scores, duplicates = live.read_logged_predictions(str(tmp_path / "requests-"), "id")
    assert scores == {"a0": pytest.approx(0.25), "a1": pytest.approx(0.5), "a2": pytest.approx(0.75),
                      "7": pytest.approx(0.125)} and duplicates == 0
