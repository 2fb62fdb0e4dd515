"""End-to-end evaluation on the tiny trained run: TFMA, blessing, report.

Each scenario works on a copy of the session's tiny run, so the runs do not
see each other's `evaluation/` output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from evaluation import EvaluationOptions, run_evaluation
from evaluation.run_files import run_models, run_schema, split_pattern

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# TFMA's AUCs are Riemann sums over 1,000 interpolated thresholds (PR-AUC with
# "careful interpolation"), scikit-learn's are exact (ROC: trapezoids over
# every distinct score; average precision: a step function). On the tiny test
# split (30 positives) they differ by about 0.02 for PR-AUC and < 0.005 for ROC.
PR_AUC_TOLERANCE, ROC_AUC_TOLERANCE = 0.04, 0.01


def copy_run(tiny_run, tmp_path) -> str:
    config = tiny_run[0]
    target = str(tmp_path / "run")
    shutil.copytree(config.output_dir, target, ignore=shutil.ignore_patterns("evaluation", "report", "logs"))
    return target


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    run_dir = copy_run(tiny_run, tmp_path_factory.mktemp("evaluated"))
    options = EvaluationOptions(slice_features=("region", "channel", "x0"), min_recall=0.0)
    return run_dir, run_evaluation(run_dir, options)


def test_tfma_agrees_with_scikit_learn_on_model_predictions(evaluated):
    from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

    from evaluation.predictions import predict_test

    run_dir, summary = evaluated
    schema = run_schema(run_dir)
    for model in run_models(run_dir):
        predicted = predict_test(model.path, split_pattern(run_dir), schema)
        labels, scores = predicted["labels"], predicted["scores"]
        tfma_metrics = summary["metrics"][model.name]
        assert tfma_metrics["example_count"] == labels.size
        assert abs(tfma_metrics["pr_auc"] - average_precision_score(labels, scores)) < PR_AUC_TOLERANCE
        assert abs(tfma_metrics["auc"] - roc_auc_score(labels, scores)) < ROC_AUC_TOLERANCE
        # Class 0's AUCs (derived from the minority histogram turned around) and
        # the histogram's means against the same predictions.
        assert abs(tfma_metrics["class0/pr_auc"] - average_precision_score(1 - labels, 1 - scores)) < PR_AUC_TOLERANCE
        assert abs(tfma_metrics["class0/auc"] - roc_auc_score(1 - labels, 1 - scores)) < ROC_AUC_TOLERANCE
        assert tfma_metrics["class1/pr_auc"] == tfma_metrics["pr_auc"]
        assert tfma_metrics["mean_label"] == pytest.approx(labels.mean(), abs=1e-9)
        assert tfma_metrics["mean_prediction"] == pytest.approx(scores.mean(), rel=1e-5)
        assert tfma_metrics["calibration"] == pytest.approx(scores.sum() / labels.sum(), rel=1e-5)
        # At one explicit threshold TFMA counts exactly (prediction > threshold);
        # the model's class_ids use >=, identical unless a score equals t exactly.
        decided = (scores > model.threshold).astype(int)
        assert np.array_equal(decided, predicted["class_ids"])
        assert tfma_metrics["precision"] == pytest.approx(precision_score(labels, decided), abs=1e-9)
        assert tfma_metrics["recall"] == pytest.approx(recall_score(labels, decided), abs=1e-9)
        assert tfma_metrics["threshold"] == pytest.approx(model.threshold, abs=1e-6)


def test_per_class_metrics_and_label_slices_load_back(evaluated):
    import tensorflow_model_analysis as tfma

    run_dir, summary = evaluated
    label = run_schema(run_dir).label
    eval_dir = summary["evaluation_dir"]
    for name in ("candidate", "baseline"):
        result = tfma.load_eval_result(eval_dir, model_name=name)
        slices = dict(result.slicing_metrics)
        overall = slices[()]
        assert {"auc", "pr_auc"} <= set(overall["scores"]["classId:0"])  # class 0's, minority's are overall
        assert "recall" in overall["scores"][""] and "confusion_matrix_at_thresholds" in overall["scores"][""]
        # Label slices, including one with no positives, which must not break anything.
        assert ((label, 0),) in slices and ((label, 1),) in slices
        assert slices[((label, 0),)]["scores"][""]["example_count"]["doubleValue"] > 0
        assert any(key and key[0][0] == "x0_bucket" for key in slices)  # bucketed numeric slices
        assert any(key and key[0][0] == "region" for key in slices)
    validation = tfma.load_validation_result(eval_dir)
    assert validation.validation_ok == summary["blessed"]
    marker = "BLESSED" if summary["blessed"] else "NOT_BLESSED"
    assert os.listdir(eval_dir).count(marker) == 1
    assert ("NOT_BLESSED" if summary["blessed"] else "BLESSED") not in os.listdir(eval_dir)


def test_report_renders_with_every_image(evaluated):
    run_dir, summary = evaluated
    report = summary["report"]
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert {"pr_roc.png", "confusion.png", "calibration.png", "training.png", "thresholds.png"} <= set(sources)
    for source in sources:
        path = os.path.join(os.path.dirname(report), source)
        with open(path, "rb") as handle:
            assert handle.read(8) == PNG_MAGIC, source
    assert "<script" not in page and "http" not in page  # static, no network
    assert ("NOT_BLESSED" in page) != summary["blessed"]
    assert "target = 0" in page and "weighted" in page
    # The model card: the class balance of every split, from run.json, and the gate's decision.
    counts = json.load(open(os.path.join(run_dir, "run.json")))["weighted"]["class_counts"]
    assert "Model card" in page and f"<td>{counts['test'][1]:,}</td>" in page
    assert ("BLESSED: every check passed" in page) == summary["blessed"]


def test_report_renders_in_a_headless_browser(evaluated, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on this machine: the page is checked as HTML only")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--window-size=1280,3000",
                    f"--screenshot={shot}", f"file://{evaluated[1]['report']}"], check=False, timeout=120,
                   capture_output=True)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_report_only_rebuilds_without_tfma(evaluated):
    run_dir, summary = evaluated
    again = run_evaluation(run_dir, EvaluationOptions(report_only=True))
    assert again["tfma_seconds"] is None and again["blessed"] == summary["blessed"]
    assert again["metrics"]["candidate"]["pr_auc"] == summary["metrics"]["candidate"]["pr_auc"]


def save_random_model(path: str) -> str:
    """A deliberately broken model: scores are a hash of the example, unrelated to the label."""
    import tensorflow as tf

    class Random(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            score = tf.cast(tf.strings.to_hash_bucket_fast(examples, 10_007), tf.float32) / 10_007.0
            return {"probabilities": tf.stack([1.0 - score, score], axis=1), "scores": score,
                    "class_ids": tf.cast(score >= 0.5, tf.int64), "logits": tf.math.log(score / (1.0 - score + 1e-6))}

    module = Random()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_value_threshold_on_recall_fails_the_candidate(evaluated, tmp_path, tiny_run):
    from evaluation.task import main

    run_dir = copy_run(tiny_run, tmp_path)
    code = main(["--run", run_dir, "--slice-features", "region", "--min-recall", "0.999", "--pr-auc-tolerance", "1",
                 "--intervals", "none"])
    assert code == 1
    with open(os.path.join(run_dir, "evaluation", "NOT_BLESSED")) as handle:
        assert "candidate recall" in handle.read()


def test_a_tree_family_blend_evaluates_in_tfma_like_a_neural_model(tiny_run, tmp_path):
    """The tree family's TensorFlow ops (blended with a neural model) run in TFMA's Beam pipeline."""
    from sklearn.metrics import average_precision_score

    from evaluation.predictions import predict_test
    from trainer.candidates import Member
    from trainer.pipeline import train_and_export

    run_dir = copy_run(tiny_run, tmp_path)
    config = tiny_run[0].replace(output_dir=run_dir)
    members = [Member({"model_family": "trees"}, 0.75), Member({"model_family": "neural"}, 0.25)]
    summary = train_and_export(config, members=members)
    assert summary["model_family"] == "ensemble"
    assert [(m["model_family"], m["weight"]) for m in summary["members"]] == [("trees", 0.75), ("neural", 0.25)]
    assert summary["version_dir"].endswith(os.path.join("serving_model", "2"))
    evaluation = run_evaluation(run_dir, EvaluationOptions(min_recall=0.0, intervals="none"))
    predicted = predict_test(summary["version_dir"], split_pattern(run_dir), run_schema(run_dir))
    expected = average_precision_score(predicted["labels"], predicted["scores"])
    assert abs(evaluation["metrics"]["candidate"]["pr_auc"] - expected) < PR_AUC_TOLERANCE


def test_tfma_intervals_agree_with_a_numpy_bootstrap(evaluated):
    """TFMA's jackknife standard errors vs a 2,000-sample NumPy bootstrap on the same predictions.

    A 20-bucket jackknife's standard error has 19 degrees of freedom: its
    ratio to the true one lies in [0.55, 1.55] with probability > 0.998
    (chi-square), and the bootstrap's own Monte Carlo error is ~2%.
    """
    from scipy import stats
    from sklearn.metrics import average_precision_score, roc_auc_score

    from evaluation.predictions import predict_test

    run_dir, summary = evaluated  # default options: "auto" intervals, jackknife on a test split this small
    assert summary["gate"]["intervals"] == "jackknife"
    candidate = next(m for m in run_models(run_dir) if m.name == "candidate")
    predicted = predict_test(candidate.path, split_pattern(run_dir), run_schema(run_dir))
    labels, scores = predicted["labels"], predicted["scores"]
    decided = scores > candidate.threshold
    statistics = {"pr_auc": lambda y, s, d: average_precision_score(y, s), "auc": lambda y, s, d: roc_auc_score(y, s),
                  "recall": lambda y, s, d: d[y == 1].mean()}
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, labels.size, labels.size) for _ in range(2000)]
    t = stats.t.ppf(0.975, df=19)
    for name, statistic in statistics.items():
        low, high = summary["tfma_intervals"]["candidate"][name]
        point = summary["metrics"]["candidate"][name]
        assert low <= point <= high
        shown_low, shown_high = summary["intervals"]["candidate"][name]  # rebuilt inside [0, 1]
        assert 0.0 <= shown_low <= point <= shown_high <= 1.0
        tfma_se = (high - low) / (2 * t)
        numpy_se = np.std([statistic(labels[i], scores[i], decided[i]) for i in samples], ddof=1)
        assert 0.55 <= tfma_se / numpy_se <= 1.55, (name, tfma_se, numpy_se)
