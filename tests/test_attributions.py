"""Feature attributions: sampled Shapley against closed forms, TreeSHAP against the exported trees, TFMA's output."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from evaluation.attributions import (
    COMPLETENESS_TOLERANCE,
    SAMPLED_SHAPLEY,
    TREESHAP,
    AttributionOptions,
    feature_columns,
    sample_rows,
    sample_sizes,
    sampled_shapley,
    tree_shap,
)
from tests.conftest import schema_of


def linear(weights: dict[str, float], levels: dict[str, float], bias: float = 0.3):
    """f(z) = bias + sum_k w_k z_k over numerics + the level of the categorical `c`."""
    def f(columns: dict) -> np.ndarray:
        total = np.full(len(columns["c"]), bias)
        for name, w in weights.items():
            total = total + w * columns[name].astype(np.float64)
        return total + np.array([levels[v] for v in columns["c"]])
    return f


def test_sampled_shapley_of_a_linear_function_is_w_times_x_minus_the_background_mean(rng):
    """phi_k = w_k (x_k - mean_b b_k) exactly (any permutation), and a weight-0 feature gets exactly 0."""
    weights = {"a": 2.0, "b": -0.5, "noise": 0.0}
    levels = {"p": 0.0, "q": 1.5, "r": -1.0}
    rows = {"a": rng.normal(size=7), "b": rng.normal(size=7), "noise": rng.normal(size=7),
            "c": rng.choice(list(levels), size=7).astype(object)}
    background = {"a": rng.normal(size=5), "b": rng.normal(size=5), "noise": rng.normal(size=5),
                  "c": rng.choice(list(levels), size=5).astype(object)}
    f = linear(weights, levels)
    result = sampled_shapley(f, rows, background, seed=3)
    assert result.method == SAMPLED_SHAPLEY and result.features == ("a", "b", "noise", "c")
    for k, name in enumerate(("a", "b", "noise")):
        np.testing.assert_allclose(result.values[:, k], weights[name] * (rows[name] - background[name].mean()),
                                   rtol=0, atol=1e-12)
    c_level = np.array([levels[v] for v in rows["c"]]) - np.mean([levels[v] for v in background["c"]])
    np.testing.assert_allclose(result.values[:, 3], c_level, rtol=0, atol=1e-12)
    assert np.all(result.values[:, 2] == 0.0)
    # Completeness: sum = f(x) - mean_b f(b).
    np.testing.assert_allclose(result.margins, f(rows), atol=1e-12)
    assert result.expected == pytest.approx(f(background).mean(), abs=1e-12)
    assert result.max_completeness_error < 1e-12
    result.check_completeness()


def test_sampled_shapley_completeness_holds_for_an_interaction_and_equals_exact_shapley_of_a_product(rng):
    """f = a * b: in walk (x, b_j), a is credited (a_x - a_j) b_j when it switches first and (a_x - a_j) b_x
    when second, so its value lies between those means; the sum is f(x) - mean f(b) whatever the orders."""
    rows = {"a": rng.normal(size=4), "b": rng.normal(size=4)}
    background = {"a": rng.normal(size=6), "b": rng.normal(size=6)}

    def f(columns):
        return columns["a"] * columns["b"]

    result = sampled_shapley(f, rows, background, seed=0)
    sums = result.values.sum(axis=1)
    np.testing.assert_allclose(sums, f(rows) - f(background).mean(), atol=1e-12)
    # With both orders weighted equally, a's value against b_j is ((a_x - a_j) b_j + (a_x - a_j) b_x) / 2:
    # check the sample mean lies within the span of the two orders' credits.
    low = np.minimum((rows["a"][:, None] - background["a"]) * background["b"],
                     (rows["a"][:, None] - background["a"]) * rows["b"][:, None]).mean(axis=1)
    high = np.maximum((rows["a"][:, None] - background["a"]) * background["b"],
                      (rows["a"][:, None] - background["a"]) * rows["b"][:, None]).mean(axis=1)
    assert np.all((low - 1e-12 <= result.values[:, 0]) & (result.values[:, 0] <= high + 1e-12))


def test_sample_rows_takes_half_positives_and_weights_to_the_class_counts():
    labels = np.array([1] * 80 + [0] * 920)
    indices, weights = sample_rows(labels, 100, seed=0)
    assert len(indices) == 100 and (labels[indices] == 1).sum() == 50 and len(set(indices)) == 100
    np.testing.assert_allclose(weights[labels[indices] == 1], 80 / 50)
    np.testing.assert_allclose(weights[labels[indices] == 0], 920 / 50)
    assert weights.sum() == pytest.approx(len(labels))  # weighted totals estimate the whole test split's
    # Fewer positives than half: all of them, and negatives fill the rest.
    scarce, _ = sample_rows(np.array([1] * 30 + [0] * 970), 100, seed=0)
    assert len(scarce) == 100 and scarce[:30].tolist() == list(range(30))


def test_sample_sizes_stay_within_the_evaluation_budget():
    options = AttributionOptions(max_rows=256, background=32, max_evaluations=200_000, min_rows=64,
                                 min_background=8)
    assert sample_sizes(options, width=15, sampled=True) == (256, 32)  # narrow: nothing to shrink
    rows, background = sample_sizes(options, width=216, sampled=True)  # sylva: the background shrinks first
    assert (rows, background) == (65, 14) and rows * background * 217 <= 200_000
    rows, background = sample_sizes(options, width=5_000, sampled=True)  # wider still: the background gives way
    assert rows >= 2 and rows * background * 5_001 <= 200_000
    assert sample_sizes(options, width=216, sampled=False) == (256, 0)  # TreeSHAP only: no evaluations


@pytest.fixture(scope="module")
def exported_trees(tmp_path_factory):
    """A tiny LightGBM model (column `noise` has no effect on the label) exported as this package exports trees."""
    from trainer.calibration import Calibration
    from trainer.export import ServingModule, export_version
    from trainer.trees import feature_matrix, fit_trees, to_keras

    rng = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n), "noise": rng.normal(size=n),
                          "colour": rng.choice(["red", "green", "blue"], size=n)})
    frame.loc[rng.random(n) < 0.1, "x1"] = np.nan
    margin = 2.0 * frame["x0"] - 1.5 * frame["x1"].fillna(0.0) + (frame["colour"] == "red") * 1.0
    frame["y"] = (margin + 0.3 * rng.normal(size=n) > 1.0).astype(int)
    schema = schema_of(frame.drop(columns="y"), "y")
    features = {name: frame[name].to_numpy() for name in ("x0", "x1", "noise", "colour")}
    params = {"tree_learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 20, "feature_fraction": 1.0,
              "bagging_fraction": 1.0, "tree_l2": 1.0}
    booster, rounds = fit_trees(feature_matrix(features, schema), frame["y"].to_numpy(), (1.0, 1.0), params,
                                seed=0, rounds=40)
    module = ServingModule(to_keras(booster, schema, rounds), schema, Calibration("none"), threshold=0.5)
    version = export_version(module, str(tmp_path_factory.mktemp("trees") / "model"))
    rows = feature_columns({name: values[:200] for name, values in features.items()}, schema)
    return version, schema, booster, rows


def test_tree_shap_sums_to_the_exported_trees_margin(exported_trees):
    """pred_contrib's row sums equal the SavedModel's `logits` (and LightGBM's raw score)."""
    import tensorflow as tf

    from trainer.trees import feature_matrix

    version, schema, booster, rows = exported_trees
    result = tree_shap(version, rows, schema)
    assert result.method == TREESHAP and result.features == ("x0", "x1", "noise", "colour")
    served = tf.saved_model.load(version).signatures["predict_features"](
        **{name: tf.constant(values) for name, values in rows.items()})["logits"].numpy()
    sums = result.values.sum(axis=1) + result.expected
    np.testing.assert_allclose(sums, served, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sums, booster.predict(feature_matrix(rows, schema), raw_score=True), atol=1e-9)
    assert result.max_completeness_error < COMPLETENESS_TOLERANCE
    assert np.abs(result.values[:, 0]).mean() > 0.3  # x0 drives the label


def test_a_feature_with_no_effect_gets_about_zero(exported_trees):
    """TreeSHAP and sampled Shapley (on the exported function) agree that `noise` hardly matters."""
    from evaluation.attributions import margin_function

    version, schema, _, rows = exported_trees
    trees = tree_shap(version, rows, schema)
    few = {name: values[:20] for name, values in rows.items()}
    background = {name: values[100:116] for name, values in rows.items()}
    sampled = sampled_shapley(margin_function(version, schema), few, background, seed=1)
    sampled.check_completeness()
    for result in (trees, sampled):
        importance = np.abs(result.values).mean(axis=0)
        assert importance[2] < 0.05 * importance[0], (result.method, importance)


ROWS = 48  # explained test rows in the end-to-end test (24 positives of the tiny test split's 30)


@pytest.fixture(scope="module")
def evaluated_with_trees(tiny_run, tmp_path_factory):
    """The tiny run with a trees-only weighted candidate (TreeSHAP) and its neural baseline (sampled Shapley)."""
    import shutil

    from evaluation import EvaluationOptions, run_evaluation
    from trainer.candidates import Member
    from trainer.pipeline import train_and_export

    config = tiny_run[0]
    run_dir = str(tmp_path_factory.mktemp("attributions") / "run")
    shutil.copytree(config.output_dir, run_dir, ignore=shutil.ignore_patterns("evaluation", "report", "logs"))
    train_and_export(config.replace(output_dir=run_dir), members=[Member({"model_family": "trees"})])
    options = EvaluationOptions(slice_features=("region",), min_recall=0.0, intervals="none", attribution_rows=ROWS)
    return run_dir, options, run_evaluation(run_dir, options)


def test_tfma_attribution_metrics_match_the_explained_rows(evaluated_with_trees):
    """`tfma.load_attributions` reads the evaluation output; TFMA's weighted totals and the minority slice's
    mean |attribution| equal NumPy's over the explained rows; the margins are the served model's logits."""
    import tensorflow_model_analysis as tfma

    from evaluation.attribution_extractor import digest, explain_run, load_summary
    from evaluation.attributions import AttributionOptions
    from evaluation.evaluate import resolve_models
    from evaluation.run_files import load_run_json, run_schema, split_pattern
    from evaluation.slicing import plan_slices
    from trainer.data.dataset import read_serialized

    run_dir, options, summary = evaluated_with_trees
    eval_dir = os.path.join(run_dir, "evaluation")
    schema = run_schema(run_dir)
    models = resolve_models(run_dir, options, load_run_json(run_dir))
    explained = explain_run(run_dir, models, schema, plan_slices(schema, options.slice_features, 20),
                            AttributionOptions(max_rows=ROWS))
    assert {name: a.method for name, a in explained.models.items()} == {"candidate": TREESHAP,
                                                                       "baseline": SAMPLED_SHAPLEY}
    assert {name: entry["method"] for name, entry in load_summary(eval_dir).items()} == {
        "candidate": TREESHAP, "baseline": SAMPLED_SHAPLEY}
    records = {tuple((s.column, s.WhichOneof("kind")) for s in r.slice_key.single_slice_keys): r
               for r in tfma.load_attributions(eval_dir) if len(r.slice_key.single_slice_keys) <= 1}
    assert () in records and len(list(tfma.load_attributions(eval_dir))) >= 3  # overall, label 0 / 1, regions
    positive = explained.labels == 1
    records_by_digest = {digest(record): record for record in read_serialized(split_pattern(run_dir))}
    for name, attributions in explained.models.items():
        # The margins explained are the served model's `logits` on those rows (serving_default, raw bytes).
        served = served_logits(next(m.path for m in models if m.name == name), records_by_digest, explained)
        assert attributions.margins.shape == (ROWS,)
        assert attributions.max_completeness_error < COMPLETENESS_TOLERANCE
        total = tfma_values(records[()], "total_attributions", name)
        assert set(total) == {f.name for f in schema.features}
        expected = (explained.weights[:, None] * attributions.values).sum(axis=0)
        np.testing.assert_allclose([total[f] for f in attributions.features], expected, rtol=1e-6, atol=1e-6)
        minority = mean_absolute_on_label_slice(eval_dir, schema.label, name)
        weights = explained.weights[positive]
        reference = (weights[:, None] * np.abs(attributions.values[positive])).sum(axis=0) / weights.sum()
        np.testing.assert_allclose([minority[f] for f in attributions.features], reference, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(attributions.margins, served, rtol=0, atol=1e-5)
    with open(summary.report, encoding="utf-8") as handle:
        page = handle.read()
    assert "What drives the minority predictions?" in page and "exact TreeSHAP" in page
    assert "<td class='name'>explanations</td>" in page


def tfma_values(record, metric: str, model: str) -> dict[str, float]:
    for entry in record.attributions_keys_and_values:
        if entry.key.name == metric and entry.key.model_name == model:
            return {feature: value.double_value.value for feature, value in entry.values.items()}
    raise AssertionError(f"no {metric} for {model}")


def mean_absolute_on_label_slice(eval_dir: str, label: str, model: str) -> dict[str, float]:
    import tensorflow_model_analysis as tfma

    for record in tfma.load_attributions(eval_dir):
        keys = record.slice_key.single_slice_keys
        if len(keys) == 1 and keys[0].column == label and keys[0].int64_value == 1:
            return tfma_values(record, "mean_absolute_attributions", model)
    raise AssertionError("no label = 1 slice")


def served_logits(model_dir: str, records: dict, explained) -> np.ndarray:
    """The SavedModel's `serving_default` logits of the explained rows, from their serialized bytes."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    batch = tf.constant([records[key] for key in explained.digests])
    return serve(examples=batch)["logits"].numpy().astype(np.float64)


def test_a_served_model_not_explained_still_loads_in_tfma(evaluated_with_trees, tmp_path):
    """TFMA's load_eval_result wants attributions for every model once any has them: the served model (not
    explained, weight 0 everywhere) gets empty ones, so it loads; the run's own two models keep theirs."""
    import shutil

    import tensorflow_model_analysis as tfma

    from evaluation import run_evaluation
    from evaluation.attribution_extractor import load_summary

    source, options, _ = evaluated_with_trees
    run_dir = str(tmp_path / "run")
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("evaluation", "report"))
    served = os.path.join(run_dir, "baseline_model", sorted(os.listdir(os.path.join(run_dir, "baseline_model")))[-1])
    run_evaluation(run_dir, dataclasses.replace(options, served_dir=served, served_threshold=0.5))
    eval_dir = os.path.join(run_dir, "evaluation")
    assert set(load_summary(eval_dir)) == {"candidate", "baseline"}
    for model, explained in (("candidate", True), ("baseline", True), ("served", False)):
        overall = next(a for key, a in tfma.load_eval_result(eval_dir, model_name=model).attributions if key == ())
        means = overall["logits"][""]["mean_absolute_attributions"]
        values = [float(v["doubleValue"]) for v in means.values()]
        assert (len(values) == 15 and all(np.isfinite(values))) if explained else values == [], (model, values)
