"""`python -m serving.batch`: batch scores against the REST server's answers, bad rows, PredictionLogs, refusals.

The reference is the real server (tests/serving_fixtures.py) answering plain
HTTP Predict requests for the same rows; the model is the tiny run's export.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.batch import main
from tests.conftest import serialized_example
from tests.serving_fixtures import post, rest_url
from trainer.data.synthetic import make_synthetic

ID = "transaction"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Rows with string ids, the label (ignored), missing values and unseen categories."""
    frame = make_synthetic(negatives=40, positives=10, seed=5)
    frame.insert(0, ID, [f"t{i:03d}" for i in range(len(frame))])
    frame.loc[0, "x1"] = np.nan
    frame.loc[1, "region"] = None
    frame.loc[2, "region"] = "atlantis"  # never seen in training
    frame.loc[3, "merchant"] = "m999"
    frame.loc[4, ["channel", "x4"]] = [None, np.nan]
    return frame


@pytest.fixture(scope="module")
def base_path(tmp_path_factory, version_dir) -> str:
    base = tmp_path_factory.mktemp("batch") / "serving_model"
    shutil.copytree(version_dir, base / "1")
    return str(base)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, frame) -> dict[str, str]:
    """The rows as CSV, Parquet and TFRecord of tf.Example (missing values left out)."""
    directory = tmp_path_factory.mktemp("batch-data")
    paths = {kind: str(directory / f"rows.{kind}") for kind in ("csv", "parquet", "tfrecord")}
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"])
    with tf.io.TFRecordWriter(paths["tfrecord"]) as writer:
        for row in frame.to_dict(orient="records"):
            writer.write(serialized_example({k: v if isinstance(v, str) or v is None else float(v)
                                             for k, v in row.items()}))
    return paths


@pytest.fixture(scope="module")
def served(server, frame) -> pd.DataFrame:
    """The server's REST answers for the rows (raw features; missing numbers NaN, missing text "")."""
    features = frame.drop(columns=[ID, "target"])
    instances = [{k: ("" if v is None else v) if not isinstance(v, float) else v for k, v in row.items()}
                 for row in features.to_dict(orient="records")]
    response = post(rest_url(server, ":predict"), {"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return pd.DataFrame({ID: frame[ID], "probability": [p["scores"] for p in predictions],
                         "class_id": [p["class_ids"] for p in predictions]})


def score(tmp_path, *args: str) -> tuple[int, str]:
    output = str(tmp_path / "scores")
    return main(["--output", output, *args]), output


def read_predictions(output: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(output, "predictions-*.parquet")))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def assert_matches(scores: pd.DataFrame, served: pd.DataFrame) -> None:
    np.testing.assert_allclose(scores["probability"], served["probability"], rtol=0, atol=1e-6)
    assert scores["class_id"].tolist() == served["class_id"].tolist()
    assert set(scores["model_version"]) == {1}


@pytest.mark.parametrize("kind", ["csv", "parquet", "tfrecord"])
def test_scores_with_id_equal_the_rest_servers(tmp_path, capsys, base_path, inputs, served, kind):
    status, output = score(tmp_path, "--model_base_path", base_path, "--data", inputs[kind], "--id-column", ID)
    assert status == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"scored {len(served)} rows, 0 errors"
    scores = read_predictions(output)
    assert list(scores.columns) == [ID, "probability", "class_id", "model_version"]
    assert_matches(scores.set_index(ID).loc[served[ID]].reset_index(), served)
    assert not glob.glob(os.path.join(output, "errors-*"))


def test_scores_without_id_keep_input_order(tmp_path, base_path, inputs, served):
    status, output = score(tmp_path, "--model_base_path", base_path, "--model_version", "1",
                           "--data", inputs["parquet"])
    assert status == 0
    scores = read_predictions(output)
    assert list(scores.columns) == ["probability", "class_id", "model_version"]
    assert_matches(scores, served)


def test_prediction_log_format_round_trips(tmp_path, base_path, inputs, served):
    status, output = score(tmp_path, "--model_base_path", base_path, "--data", inputs["csv"],
                           "--format", "prediction_log")
    assert status == 0
    files = sorted(glob.glob(os.path.join(output, "prediction_logs-*.tfrecord.gz")))
    logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in
            tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()]
    assert len(logs) == len(served)
    for log, (_, expected) in zip(logs, served.iterrows(), strict=True):
        predict = log.predict_log
        assert predict.response.model_spec.version.value == 1
        assert predict.request.model_spec.signature_name == "predict_features"
        assert math.isclose(tf.make_ndarray(predict.response.outputs["scores"])[0], expected["probability"],
                            abs_tol=1e-6)
        assert tf.make_ndarray(predict.response.outputs["class_ids"])[0] == expected["class_id"]
    assert tf.make_ndarray(logs[2].predict_log.request.inputs["region"])[0] == b"atlantis"
    assert math.isnan(tf.make_ndarray(logs[0].predict_log.request.inputs["x1"])[0])


def test_bad_rows_go_to_the_errors_file_with_exact_counts(tmp_path, capsys, base_path, inputs, frame):
    lines = open(inputs["csv"]).read().splitlines()
    lines[3] += ",surplus"  # line 4: a field too many
    cells = lines[6].split(",")
    cells[frame.columns.get_loc("x2")] = "n/a"  # line 7: text in a numeric column
    lines[6] = ",".join(cells)
    cells = lines[9].split(",")
    cells[frame.columns.get_loc("x0")] = "inf"  # line 10
    lines[9] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")

    status, output = score(tmp_path, "--model_base_path", base_path, "--data", str(bad), "--id-column", ID)
    assert status == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"scored {len(frame) - 3} rows, 3 errors"
    errors = [json.loads(line) for f in sorted(glob.glob(os.path.join(output, "errors-*.jsonl")))
              for line in open(f)]
    assert [(e["file"], e["line"]) for e in errors] == [(str(bad), 4), (str(bad), 7), (str(bad), 10)]
    assert "fields" in errors[0]["reason"] and "'n/a'" in errors[1]["reason"] and "infinite" in errors[2]["reason"]
    scored = read_predictions(output)
    assert len(scored) + len(errors) == len(frame)  # rows in = rows scored + rows in errors
    assert set(scored[ID]) == set(frame[ID]) - {frame[ID][i - 2] for i in (4, 7, 10)}


def test_bad_examples_are_named_by_record(tmp_path, capsys, base_path, frame):
    good = serialized_example({"x0": 1.0, "region": "north"})
    several = tf.train.Example.FromString(good)
    several.features.feature["x0"].float_list.value.append(2.0)
    wrong_type = tf.train.Example.FromString(good)
    wrong_type.features.feature["x3"].int64_list.value.append(3)
    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in (good, several.SerializeToString(), good, wrong_type.SerializeToString()):
            writer.write(record)

    status, output = score(tmp_path, "--model_base_path", base_path, "--data", path)
    assert status == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "scored 2 rows, 2 errors"
    errors = [json.loads(line) for line in open(os.path.join(output, "errors-00000.jsonl"))]
    assert [e["record"] for e in errors] == [2, 4]
    assert "2 values" in errors[0]["reason"] and "int64_list" in errors[1]["reason"]


@pytest.mark.parametrize("problem", ["no model", "no version", "no data", "missing column"])
def test_bad_arguments_exit_2_with_one_line_and_nothing_written(tmp_path, capsys, base_path, inputs, problem):
    args = {"--model_base_path": base_path, "--data": inputs["csv"]}
    if problem == "no model":
        args["--model_base_path"] = str(tmp_path / "absent")
    elif problem == "no version":
        args["--model_version"] = "7"
    elif problem == "no data":
        args["--data"] = str(tmp_path / "absent-*.csv")
    else:
        pd.read_csv(inputs["csv"]).drop(columns=["x3"]).to_csv(tmp_path / "short.csv", index=False)
        args["--data"] = str(tmp_path / "short.csv")
    before = set(os.listdir(tmp_path))
    status, output = score(tmp_path, *[item for pair in args.items() for item in pair])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert set(os.listdir(tmp_path)) == before  # no output directory, no staging directory


def test_request_log_is_rescored_row_by_row(tmp_path, capsys, base_path, frame, served):
    """A log of one PredictionLog per example (Predict of raw features or of a tf.Example, Classify)."""
    features = frame.drop(columns=[ID, "target"]).to_dict(orient="records")

    def predict_log(inputs: dict) -> bytes:
        log = prediction_log_pb2.PredictionLog()
        for name, value in inputs.items():
            dtype = tf.string if isinstance(value, (str, bytes)) or value is None else tf.float32
            log.predict_log.request.inputs[name].CopyFrom(
                tf.make_tensor_proto(["" if value is None else value], dtype=dtype))
        return log.SerializeToString()

    def example(row: dict) -> bytes:
        return serialized_example({k: v if isinstance(v, str) or v is None else float(v) for k, v in row.items()})

    records = [predict_log(row) for row in features[:10]]
    records += [predict_log({"examples": example(row)}) for row in features[10:20]]
    for row in features[20:30]:
        log = prediction_log_pb2.PredictionLog()
        log.classify_log.request.input.example_list.examples.add().ParseFromString(example(row))
        records.append(log.SerializeToString())
    two_rows = prediction_log_pb2.PredictionLog()
    two_rows.predict_log.request.inputs["x0"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
    records.append(two_rows.SerializeToString())
    path = str(tmp_path / "requests.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)

    status, output = score(tmp_path, "--model_base_path", base_path, "--data", path, "--data-format", "prediction_log")
    assert status == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "scored 30 rows, 1 errors"
    assert_matches(read_predictions(output), served.head(30))
    (error,) = [json.loads(line) for line in open(os.path.join(output, "errors-00000.jsonl"))]
    assert error["record"] == 31 and "2 values" in error["reason"]
