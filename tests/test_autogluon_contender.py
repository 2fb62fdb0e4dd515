"""The AutoGluon contender's driver (benchmarks/autogluon_contender.py), without AutoGluon.

A stand-in script takes the place of `benchmarks/autogluon_fit.py`: same
arguments, same output file. The tests check that the rows the driver hands
over are exactly the protocol's split (the non-test rows the untuned defaults
train on, `defaults.fit_rows`; the test rows without labels), that the
subprocess runs offline with the package's budget, and that the protocol's
metric on a prediction file is scikit-learn's average precision.
"""

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from benchmarks import autogluon_contender as ag
from benchmarks import confirm_report, defaults
from benchmarks.contenders import PACKAGE_TUNED
from benchmarks.datasets import Dataset
from benchmarks.quality import make_record
from trainer.data.split import assign_splits, class_counts

SPLIT = (0.7, 0.15, 0.15)

# Stands in for autogluon_fit.py: records what it was given, scores = a logistic function of column x0.
STAND_IN = textwrap.dedent("""
    import argparse, json, os
    import numpy as np, pandas as pd
    parser = argparse.ArgumentParser()
    for flag in ("--train", "--test", "--label", "--time-limit", "--model-dir", "--output"):
        parser.add_argument(flag)
    args = parser.parse_args()
    test = pd.read_parquet(args.test)
    scores = 1.0 / (1.0 + np.exp(-np.nan_to_num(test["x0"].to_numpy())))
    seen = {"time_limit": float(args.time_limit), "label": args.label, "https_proxy": os.environ["https_proxy"],
            "http_proxy": os.environ["HTTP_PROXY"], "no_proxy": os.environ.get("no_proxy")}
    with open(args.output, "w") as handle:
        json.dump({"scores": scores.tolist(), "decision_threshold": 0.5, "seen": seen}, handle)
""")


def tiny_dataset() -> Dataset:
    """60 rows, 12 positives; a numeric column with NaNs and a categorical one with None."""
    rng = np.random.default_rng(7)
    labels = np.zeros(60, dtype=np.int64)
    labels[rng.choice(60, 12, replace=False)] = 1
    x0 = rng.normal(size=60) + 1.5 * labels
    x0[[3, 17]] = np.nan
    colour = rng.choice(["red", "green", "blue"], size=60).astype(object)
    colour[[5, 40]] = None
    features = pd.DataFrame({"x0": x0, "x1": rng.normal(size=60), "colour": colour})
    return Dataset("tiny", features, labels, "synthetic")


@pytest.fixture
def stand_in(tmp_path):
    path = tmp_path / "stand_in.py"
    path.write_text(STAND_IN)
    return str(path)


def test_the_script_gets_exactly_the_protocols_rows_offline_with_the_packages_budget(tmp_path, stand_in):
    dataset = tiny_dataset()
    assignment = assign_splits(dataset.labels, SPLIT, 3)
    earlier = [{"dataset": "tiny", "seed": 3, "contender": PACKAGE_TUNED, "wall_seconds": 321.5, "train_seconds": 300}]
    result = ag.run_autogluon(dataset, assignment, 3, str(tmp_path / "work"), earlier, python=sys.executable,
                              script=stand_in)

    directory = tmp_path / "work" / "autogluon-3"
    train, test = pd.read_parquet(directory / "train.parquet"), pd.read_parquet(directory / "test.parquet")
    # train: the rows LightGBM's and YDF's defaults fit on (train + validation), in the dataset's order, labelled
    expected_train = dataset.frame("target").iloc[defaults.fit_rows(assignment)].reset_index(drop=True)
    pd.testing.assert_frame_equal(train, expected_train)
    counts = class_counts(dataset.labels, assignment)
    assert len(train) == sum(counts["train"]) + sum(counts["validation"])
    # test: the test rows, features only (the labels stay with the driver)
    expected_test = dataset.features[assignment == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(test, expected_test)
    assert "target" not in test.columns and len(test) == sum(counts["test"])

    np.testing.assert_array_equal(result["labels"], dataset.labels[assignment == 2])
    np.testing.assert_allclose(result["scores"], 1.0 / (1.0 + np.exp(-np.nan_to_num(expected_test["x0"].to_numpy()))))
    assert result["budget_seconds"] == 321.5 and result["budget_source"] == f"{PACKAGE_TUNED} wall_seconds"
    assert result["seen"] == {"time_limit": 321.5, "label": "target", "https_proxy": ag.CLOSED_PORT,
                              "http_proxy": ag.CLOSED_PORT, "no_proxy": None}
    # the record the protocol writes scores them with scikit-learn's average precision
    row = make_record("tiny", 3, ag.AUTOGLUON, result, counts["test"])
    assert row["pr_auc"] == pytest.approx(average_precision_score(result["labels"], result["scores"]), abs=1e-12)


def test_the_metric_on_a_known_prediction_file_is_average_precision(tmp_path):
    labels = np.array([0, 1, 0, 1, 0, 0, 1, 0])
    scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.05, 0.3]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps({"scores": scores, "decision_threshold": 0.5, "fit_seconds": 1.0}))
    result = ag.read_predictions(str(path), labels)
    row = make_record("known", 0, ag.AUTOGLUON, {**result, "train_seconds": 1.0}, [5, 3])
    # by hand: ranked 0.8(+) 0.7 0.4(+) 0.35 0.3 0.2 0.1 0.05(+): precision at the hits 1/1, 2/3, 3/8
    assert row["pr_auc"] == pytest.approx((1.0 + 2 / 3 + 3 / 8) / 3, abs=1e-12)
    assert row["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert row["threshold"] == 0.5 and row["fit_seconds"] == 1.0
    with pytest.raises(ValueError, match="7 scores for 8 test rows"):
        path.write_text(json.dumps({"scores": scores[:7], "decision_threshold": 0.5}))
        ag.read_predictions(str(path), labels)


def test_budget_is_the_packages_recorded_wall_time_else_the_default(tmp_path):
    path = tmp_path / "confirmation.json"
    path.write_text(json.dumps({"records": [
        {"dataset": "cm1", "seed": 0, "contender": PACKAGE_TUNED, "wall_seconds": 750.7, "train_seconds": 747.0},
        {"dataset": "cm1", "seed": 1, "contender": "lightgbm_default", "wall_seconds": 0.1, "train_seconds": 0.1}]}))
    assert ag.package_budget("cm1", 0, path=str(path)) == (750.7, f"{PACKAGE_TUNED} wall_seconds")
    earlier = [{"dataset": "cm1", "seed": 0, "contender": PACKAGE_TUNED, "wall_seconds": 99.0, "train_seconds": 9}]
    assert ag.package_budget("cm1", 0, earlier, path=str(path))[0] == 99.0  # this run's own record first
    assert ag.package_budget("cm1", 1, path=str(path))[0] == ag.DEFAULT_BUDGET_SECONDS
    assert ag.package_budget("cm1", 0, path=str(tmp_path / "absent.json"))[0] == ag.DEFAULT_BUDGET_SECONDS


def test_a_failing_script_is_one_error_with_its_stderr(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys; sys.exit('no AutoGluon here')")
    dataset = tiny_dataset()
    with pytest.raises(RuntimeError, match="exited 1: no AutoGluon here"):
        ag.run_autogluon(dataset, assign_splits(dataset.labels, SPLIT, 0), 0, str(tmp_path), budget=5.0,
                         python=sys.executable, script=str(script))
    with pytest.raises(FileNotFoundError, match="make bench-autogluon-env"):
        ag.run_autogluon(dataset, assign_splits(dataset.labels, SPLIT, 0), 0, str(tmp_path), budget=5.0,
                         python=str(tmp_path / "no-python"))


def test_the_report_pairs_the_package_with_autogluon_without_shrinking_the_summary():
    def record(dataset, contender, pr_auc):
        return {"dataset": dataset, "seed": 0, "contender": contender, "pr_auc": pr_auc, "roc_auc": 0.9,
                "brier": 0.05, "recall_at_p50": 0.5, "f1_at_threshold": 0.5, "recall_at_threshold": 0.5,
                "precision_at_threshold": 0.5, "train_seconds": 1.0, "wall_seconds": 1.0}

    sets = ["cm1", "kc1", "flare_f"]
    records = [record(d, c, p) for d in sets for c, p in ((PACKAGE_TUNED, 0.6), ("lightgbm_default", 0.5))]
    records += [record("cm1", ag.AUTOGLUON, 0.4), record("kc1", ag.AUTOGLUON, 0.7)]  # two of the three sets
    infos = [{"name": d, "rows": 500, "positives": 50, "positive_rate": 0.1, "numeric_features": 3,
              "categorical_features": 0, "source": "test"} for d in sets]
    text = confirm_report.confirmation_section({"mode": "full", "datasets": infos, "records": records,
                                                "failures": []}, "confirmation.json", [])
    assert "Over the 3 confirmation sets" in text  # AutoGluon's missing set does not drop flare_f
    assert f"`{ag.AUTOGLUON}` (2 of 3 sets)" in text
    # package vs AutoGluon over the two sets both ran: 0.600 vs 0.550, one win and one loss
    assert f"| `{ag.AUTOGLUON}` | 2 | 0.600 | 0.550 | +0.050 | 1 / 0 / 1 |" in text


@pytest.mark.slow  # a real AutoGluon fit in its own venv (~30-60 s on 2 busy cores)
@pytest.mark.skipif(not ag.installed(), reason="no AutoGluon venv: make bench-autogluon-env")
def test_the_real_script_scores_the_test_rows_in_order(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.15).astype(np.int64)
    # separable by x0 alone: scores out of the test rows' order would not be
    features = pd.DataFrame({"x0": labels * 3.0 + rng.normal(scale=0.5, size=400), "x1": rng.normal(size=400)})
    dataset = Dataset("separable", features, labels, "synthetic")
    assignment = assign_splits(labels, SPLIT, 0)
    result = ag.run_autogluon(dataset, assignment, 0, str(tmp_path), budget=30.0)
    row = make_record("separable", 0, ag.AUTOGLUON, result, class_counts(labels, assignment)["test"])
    assert result["autogluon_version"] == "1.6.3" and result["presets"] == "medium_quality"
    assert np.all((result["scores"] >= 0) & (result["scores"] <= 1))
    # scores in the test rows' order: the positive rows get the high scores
    assert row["pr_auc"] > 0.9 and row["pr_auc"] == pytest.approx(
        average_precision_score(labels[assignment == 2], result["scores"]), abs=1e-12)
