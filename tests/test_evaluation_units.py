"""Fast unit tests of the evaluation package (no TFMA pipeline)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.results import ModelResult, flatten_metrics, slice_name, worst_first
from evaluation.slicing import BUCKET_SUFFIX, MISSING, add_buckets, bucket_name, plan_slices
from trainer.data.schema import Feature, Schema
from trainer.summary import ModelSummary, RunSummary

SCHEMA = Schema(features=(Feature("x0", "numeric", mean=1.0, std=2.0),
                          Feature("region", "categorical", vocabulary=("a", "b")),
                          Feature("merchant", "categorical", vocabulary=tuple(f"m{i}" for i in range(50)))),
                label="target")


def test_default_slices_are_small_categoricals_and_the_most_informative_numerics():
    plan = plan_slices(SCHEMA, None, max_vocabulary=20)
    assert plan.categorical == ("region",) and plan.numeric == {}
    assert plan.feature_keys == ["target", "region"]
    plan = plan_slices(SCHEMA, None, max_vocabulary=20, informative=["x0"])
    assert plan.feature_keys == ["target", "region", "x0" + BUCKET_SUFFIX]


def test_numeric_slice_features_are_bucketed_and_unknown_ones_refused():
    plan = plan_slices(SCHEMA, ("x0", "merchant"), max_vocabulary=20)
    assert plan.categorical == ("merchant",) and plan.numeric == {"x0": (-1.0, 1.0, 3.0)}  # no quantiles: mean +- std
    assert plan.feature_keys[-1] == "x0" + BUCKET_SUFFIX
    with pytest.raises(ValueError, match="nope"):
        plan_slices(SCHEMA, ("nope",), max_vocabulary=20)


def test_quartile_edges_follow_numpy_and_collapse_for_discrete_features():
    from evaluation.slicing import quartile_edges
    from trainer.data.schema import quantiles

    values = np.random.default_rng(0).lognormal(size=1001)
    feature = Feature("x", "numeric", quantiles=quantiles(values))
    np.testing.assert_allclose(quartile_edges(feature), np.quantile(values, [0.25, 0.5, 0.75]))
    binary = Feature("b", "numeric", quantiles=quantiles(np.array([0.0] * 70 + [1.0] * 30)))
    assert quartile_edges(binary) == (0.0, 1.0)


def test_numeric_features_rank_by_separation_in_either_direction():
    from evaluation.slicing import rank_numeric_features

    rng = np.random.default_rng(1)
    labels = (rng.random(2000) < 0.1).astype(int)
    features = {"noise": rng.normal(size=2000), "strong_down": -3.0 * labels + rng.normal(size=2000),
                "weak_up": 0.5 * labels + rng.normal(size=2000), "all_missing": np.full(2000, np.nan)}
    features["weak_up"][:100] = np.nan
    assert rank_numeric_features(features, labels) == ["strong_down", "weak_up", "noise"]


@pytest.mark.parametrize("value,expected", [(0.5, "< 1"), (1.0, "1..2"), (2.5, "2..3"), (3.0, ">= 3"),
                                            (1e6, ">= 3"), (None, MISSING), (math.nan, MISSING)])
def test_bucket_name(value, expected):
    assert bucket_name(value, (1.0, 2.0, 3.0)) == expected


def test_add_buckets_keeps_features_and_adds_bucket():
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x0"].float_list.value.append(100.0)
    example.features.feature["region"].bytes_list.value.append(b"a")
    out = example_pb2.Example.FromString(add_buckets(example.SerializeToString(),
                                                     {"x0": (1.0, 2.0), "x9": (0.0, 1.0)}))
    features = out.features.feature
    assert features["x0"].float_list.value[0] == 100.0 and features["region"].bytes_list.value[0] == b"a"
    assert features["x0_bucket"].bytes_list.value[0] == b">= 2"
    assert features["x9_bucket"].bytes_list.value[0] == MISSING.encode()  # absent feature


def test_flatten_metrics_and_worst_first():
    raw = {"scores": {"": {"pr_auc": {"doubleValue": 0.4}, "pr_auc_diff": {"doubleValue": 0.1},
                           "auc": {"doubleValue": "NaN"},
                           "example_count": {"doubleValue": 10.0}, "mean_label": {"doubleValue": 0.2},
                           "confusion_matrix_at_thresholds": {"confusionMatrixAtThresholds": {"matrices": [
                               {"threshold": 0.3, "truePositives": 1.0, "falseNegatives": 1.0,
                                "trueNegatives": 8.0}]}}},
                      "classId:0": {"auc": {"doubleValue": 0.7}}, "classId:5": {"auc": {"doubleValue": 0.1}}}}
    flat = flatten_metrics(raw)
    assert flat["pr_auc"] == 0.4 and "pr_auc_diff" not in flat
    assert flat["tp"] == 1.0 and flat["fp"] == 0.0 and flat["threshold"] == 0.3  # proto3 JSON omits zeros
    assert math.isnan(flat["class1/auc"]) and flat["class0/auc"] == 0.7 and flat["class1/pr_auc"] == 0.4
    assert not any("classId" in name or "5" in name for name in flat)  # unknown sub keys are skipped
    assert slice_name(()) == "overall" and slice_name((("region", "a"),)) == "region = a"
    slices = {"overall": flat, "a": {"class1/pr_auc": 0.9, "example_count": 50, "mean_label": 0.2},
              "b": {"class1/pr_auc": 0.1, "example_count": 50, "mean_label": 0.2},
              "few": {"class1/pr_auc": 0.0, "example_count": 50, "mean_label": 0.1},  # 5 positives: unranked
              "none": {"class1/pr_auc": 0.0, "example_count": 5, "mean_label": 0.0}}
    assert worst_first(ModelResult(slices, {}, {}, {})) == ["overall", "b", "a", "few", "none"]


def test_task_reports_missing_run(tmp_path, capsys):
    from evaluation.task import main

    assert main(["--run", str(tmp_path / "absent")]) == 2
    assert "run.json" in capsys.readouterr().err


def test_metrics_with_confidence_intervals_flatten_to_value_and_bounds():
    """With intervals on, TFMA writes `boundedValue` (proto3 JSON) instead of `doubleValue`."""
    from evaluation.results import flatten_intervals

    raw = {"scores": {"": {"pr_auc": {"boundedValue": {"lowerBound": 0.3, "upperBound": 0.5, "value": 0.4,
                                                        "methodology": "JACKKNIFE"}},
                           "recall": {"doubleValue": 0.25},
                           "auc": {"boundedValue": {"lowerBound": "NaN", "upperBound": 0.9, "value": 0.8}}},
                      "classId:0": {"pr_auc": {"boundedValue": {"lowerBound": 0.9, "upperBound": 0.99,
                                                                "value": 0.95}}}}}
    assert flatten_metrics(raw) == {"pr_auc": 0.4, "recall": 0.25, "auc": 0.8, "class0/pr_auc": 0.95,
                                    "class1/auc": 0.8, "class1/pr_auc": 0.4}
    intervals = flatten_intervals(raw)
    assert intervals["pr_auc"] == [0.3, 0.5] and "recall" not in intervals
    assert math.isnan(intervals["class1/auc"][0]) and intervals["class1/auc"][1] == 0.9
    assert intervals["class0/pr_auc"] == [0.9, 0.99] and intervals["class1/pr_auc"] == [0.3, 0.5]


def test_auto_intervals_are_jackknife_on_small_test_sets_only():
    from evaluation.gate import resolve_intervals
    from evaluation.options import AUTO_INTERVALS_MAX_EXAMPLES

    assert resolve_intervals("auto", AUTO_INTERVALS_MAX_EXAMPLES) == "jackknife"
    assert resolve_intervals("auto", AUTO_INTERVALS_MAX_EXAMPLES + 1) == "none"
    assert resolve_intervals("bootstrap", 10**7) == "bootstrap"
    with pytest.raises(ValueError, match="intervals must be one of"):
        from evaluation.options import EvaluationOptions

        EvaluationOptions(intervals="always")


def test_threshold_explorer_draws_with_and_without_a_cost_objective(tmp_path):
    from evaluation import plots
    from evaluation.report import _cost_ratio

    curve = {"threshold": [0.1, 0.5, 0.9], "precision": [0.2, 0.5, 1.0], "recall": [1.0, 0.6, 0.1],
             "tp": [10.0, 6.0, 1.0], "fp": [40.0, 6.0, 0.0], "fn": [0.0, 4.0, 9.0]}
    for ratio in (None, 10.0):
        path = plots.threshold_explorer(curve, 0.5, ratio, str(tmp_path / f"t{ratio}.png"))
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert _cost_ratio(RunSummary(config={"threshold_objective": "cost:25:2"})) == 12.5
    assert _cost_ratio(RunSummary(config={"threshold_objective": "recall_at_precision:0.5"})) is None
    assert _cost_ratio(RunSummary()) is None  # none recorded: RunConfig's default, not a cost


def test_majority_histogram_matches_the_histogram_of_one_minus_p():
    """Turning the minority histogram around equals bucketing 1 - p with class-0 labels directly."""
    from tensorflow_model_analysis.metrics import calibration_histogram

    from evaluation.histogram_metrics import majority_histogram

    n = 100
    rng = np.random.default_rng(0)
    # Bucket centres, away from edges where p and 1 - p may fall on different
    # sides, plus p = 1 (TFMA's overflow bucket). An exact p = 0 stays in the
    # last regular bucket instead of the overflow one: same counts at every
    # threshold below 1.
    p = np.concatenate([(rng.integers(0, n, 400) + 0.5) / n, [1.0]])
    y = (rng.random(p.size) < p).astype(float)

    def histogram(scores, labels):
        buckets = {}
        for score, label in zip(scores, labels, strict=True):
            bucket_id = min(int(score * n) + 1, n + 1)
            bucket = buckets.setdefault(bucket_id, calibration_histogram.Bucket(bucket_id, 0.0, 0.0, 0.0))
            bucket.weighted_labels += label
            bucket.weighted_predictions += score
            bucket.weighted_examples += 1.0
        return [buckets[i] for i in sorted(buckets)]

    expected = histogram(1.0 - p, 1.0 - y)
    got = majority_histogram(histogram(p, y), num_buckets=n)
    assert [b.bucket_id for b in got] == [b.bucket_id for b in expected]
    for a, b in zip(got, expected, strict=True):
        assert (a.weighted_labels, a.weighted_examples) == (b.weighted_labels, b.weighted_examples)
        assert a.weighted_predictions == pytest.approx(b.weighted_predictions)


def test_the_model_card_names_every_member_its_weight_and_the_rows_it_saw():
    from evaluation.report import _model_in_words

    test = {"examples": 300, "positives": 30, "pr_auc": 0.5, "roc_auc": 0.8, "threshold": 0.4, "precision": 0.5,
            "recall": 0.5}
    summary = ModelSummary.from_json({
        "version_dir": "v", "threshold": {"value": 0.4}, "test": test, "loss": "weighted_ce", "weight_ratio": 3.0,
        "model_family": "ensemble",
        "members": [{"weight": 0.6, "weight_ratio": 3.0, "hyperparameters": {"model_family": "trees"}},
                    {"weight": 0.4, "weight_ratio": 1.0,
                     "hyperparameters": {"model_family": "neural", "body": "linear", "numeric_encoding": "standard"}}],
        "rows_seen": [{"rows": 1870, "how": "refit on train + validation"}, {"rows": 1540, "how": "train split"}]})
    assert _model_in_words(summary) == (
        "0.6 x boosted trees (w1/w0 = 3) + 0.4 x logistic regression on standard inputs (w1/w0 = 1); "
        "trained on 1,870 rows (refit on train + validation); 1,540 rows (train split)")


def test_a_run_without_the_twin_is_refused_with_what_to_run_instead(tiny_run):
    """A trainer.task run has one weighted model: evaluating it says a tuning run is needed, not 'train it'."""
    from evaluation.run_files import load_run_json, run_models

    config, _, _ = tiny_run
    run_json = load_run_json(config.output_dir)
    assert [m.name for m in run_models(config.output_dir, run_json)] == ["candidate", "baseline"]
    with pytest.raises(FileNotFoundError, match=r"has no unweighted twin .* evaluate a tuning run \(make tune"):
        run_models(config.output_dir, run_json.replace(baseline=None))
    with pytest.raises(FileNotFoundError, match="run.json has no 'weighted' section"):
        run_models(config.output_dir, run_json.replace(weighted=None))
