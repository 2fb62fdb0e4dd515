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
        tfma_metrics = summary.metrics[model.name]
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
    eval_dir = summary.evaluation_dir
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
    assert validation.validation_ok == summary.blessed
    marker = "BLESSED" if summary.blessed else "NOT_BLESSED"
    assert os.listdir(eval_dir).count(marker) == 1
    assert ("NOT_BLESSED" if summary.blessed else "BLESSED") not in os.listdir(eval_dir)
    with open(os.path.join(eval_dir, "summary.json")) as handle:  # the typed summary, written as JSON
        written = json.load(handle)
    assert written["blessed"] == summary.blessed and written["decision"]["serve"] == summary.decision.serve
    assert written["gate"]["candidate"]["min_recall"] == summary.gate.candidate.min_recall


def test_report_renders_with_every_image(evaluated):
    run_dir, summary = evaluated
    report = summary.report
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert {"pr_roc.png", "confusion.png", "calibration.png", "training.png", "thresholds.png"} <= set(sources)
    for source in sources:
        path = os.path.join(os.path.dirname(report), source)
        with open(path, "rb") as handle:
            assert handle.read(8) == PNG_MAGIC, source
    assert "<script" not in page and "http" not in page  # static, no network
    assert ("NOT_BLESSED" in page) != summary.blessed
    assert "target = 0" in page and "weighted" in page
    # The model card: the class balance of every split, from run.json, and the gate's decision.
    counts = json.load(open(os.path.join(run_dir, "run.json")))["weighted"]["class_counts"]
    assert "Model card" in page and f"<td>{counts['test'][1]:,}</td>" in page
    assert ("BLESSED: every check passed" in page) == summary.blessed


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--window-size=1366,768"]
# Appended to a copy of the page: the widths that show a horizontal overflow, read back with --dump-dom.
WIDTH_PROBE = ("<script>document.body.setAttribute('data-widths', [document.documentElement.scrollWidth,"
               " window.innerWidth, document.body.scrollWidth, document.body.clientWidth].join(' '));</script>")


def test_report_fits_a_laptop_screen_in_a_headless_browser(evaluated, tmp_path):
    """At 1366 x 768 neither the page nor the body's content is wider than the window (the slice table scrolls
    inside its own box), and the page renders to a screenshot."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on this machine: the page is checked as HTML only")
    copy = tmp_path / "report"
    shutil.copytree(os.path.dirname(evaluated[1].report), copy)
    page = (copy / "index.html").read_text(encoding="utf-8")
    (copy / "probe.html").write_text(page.replace("</body>", WIDTH_PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--dump-dom", f"file://{copy / 'probe.html'}"], check=False,
                         timeout=120, capture_output=True, text=True).stdout
    page_width, window, body_content, body_box = map(int, re.search(r'data-widths="([\d ]+)"', dom)[1].split())
    assert window == 1366 and page_width <= window and body_content <= body_box, dom[:200]
    assert "class='scroll'" in page  # the slice table's own box
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--screenshot={shot}", f"file://{copy / 'index.html'}"],
                   check=False, timeout=120, capture_output=True)
    from PIL import Image

    with Image.open(shot) as image:  # the window's size, and drawn: not one blank colour
        assert image.size == (1366, 768) and len(image.convert("L").getcolors(maxcolors=1 << 16) or [0] * 3) > 2


def report_figures(report: str) -> dict[str, dict[str, int]]:
    """Every figure of a report: {file: {axis title: data points drawn}} (`evaluation.plots` writes the counts)."""
    from PIL import Image

    from evaluation.plots import POINTS_KEY

    with open(report, encoding="utf-8") as handle:
        sources = re.findall(r"<img src='([^']+)'", handle.read())
    figures = {}
    for source in sources:
        with Image.open(os.path.join(os.path.dirname(report), source)) as image:
            figures[source] = json.loads(image.text[POINTS_KEY])
    return figures


def assert_no_empty_figure(report: str, training_panels: set[str]) -> None:
    figures = report_figures(report)
    assert figures and all(points and min(points.values()) > 0 for points in figures.values()), figures
    assert set(figures["training.png"]) == training_panels, figures["training.png"]


NEURAL_PANELS = {"neural: PR-AUC per epoch", "neural: loss per epoch", "neural: minority recall (at 0.5) per epoch"}
TREE_PANEL = "trees: validation PR-AUC per boosting round"


def test_a_neural_run_s_report_has_no_empty_figure(evaluated):
    assert_no_empty_figure(evaluated[1].report, NEURAL_PANELS)


def test_a_trees_only_run_s_report_draws_boosting_rounds(tiny_run, tmp_path):
    """Both models trees: the training figure is LightGBM's held-out PR-AUC per round, weighted vs unweighted."""
    from trainer.candidates import Member
    from trainer.pipeline import train_and_export

    run_dir = copy_run(tiny_run, tmp_path)
    config = tiny_run[0].replace(output_dir=run_dir)
    for weighted in (True, False):
        train_and_export(config, members=[Member({"model_family": "trees"})], weighted=weighted)
    summary = run_evaluation(run_dir, EvaluationOptions(slice_features=(), min_recall=0.0, intervals="none",
                                                        attribution_rows=0))  # the figures only
    assert_no_empty_figure(summary.report, {TREE_PANEL})
    assert report_figures(summary.report)["training.png"][TREE_PANEL] >= 2 * 2  # two curves of >= 1 round + dots


def test_a_near_perfect_model_s_intervals_stay_inside_zero_one(tiny_run, tmp_path):
    """TFMA's jackknife intervals of a near-perfect model leave [0, 1]; the shown ones do not."""
    run_dir = copy_run(tiny_run, tmp_path)
    model = save_near_perfect_model(str(tmp_path / "near_perfect"), run_schema(run_dir).label)
    summary = run_evaluation(run_dir, EvaluationOptions(candidate_dir=model, candidate_threshold=0.5,
                                                        slice_features=(), min_recall=0.0, intervals="jackknife",
                                                        attribution_rows=0))  # intervals only
    metrics, shown, raw = (getattr(summary, key)["candidate"] for key in ("metrics", "intervals", "tfma_intervals"))
    # Near-perfect, as built: about 5% of positives fall below 0.5 (recall 0.9 exactly on the tiny test split).
    assert metrics["pr_auc"] > 0.95 and metrics["recall"] >= 0.9
    assert any(high > 1.0 for name, (low, high) in raw.items() if not name.endswith("_diff"))  # the issue
    for name, (low, high) in shown.items():
        if name.endswith("_diff"):
            assert -1.0 <= low <= high <= 1.0, (name, low, high)
        else:
            upper = float("inf") if name.endswith("calibration") else 1.0  # mean prediction / mean label
            assert 0.0 <= low <= metrics[name] <= high <= upper, (name, low, high)
    with open(summary.report, encoding="utf-8") as handle:
        rows = re.findall(r"<tr><td class='name'>([^<]+)</td>(.*?)</tr>", handle.read())
    brackets = [(title, float(low), float(high)) for title, cells in rows if not title.startswith("calibration")
                for low, high in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", cells)]
    assert len(brackets) >= 8 and all(0.0 <= low <= high <= 1.0 for _, low, high in brackets), brackets


def save_near_perfect_model(path: str, label: str) -> str:
    """A model that reads the label (!) and adds hashed noise: about 5% of positives fall below 0.5.

    The noise hashes two feature values, not the serialized example: the data
    step's bytes order a tf.Example's features differently in each process
    (protobuf maps have no fixed order), which made this model's PR-AUC
    differ from one test session to the next.
    """
    import tensorflow as tf

    class NearPerfect(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            spec = {label: tf.io.FixedLenFeature([], tf.int64),
                    **{name: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for name in ("x0", "x1")}}
            parsed = tf.io.parse_example(examples, spec)
            y = tf.cast(parsed[label], tf.float32)
            key = tf.strings.join([tf.strings.as_string(parsed["x0"], precision=9),
                                   tf.strings.as_string(parsed["x1"], precision=9)], separator="/")
            noise = tf.cast(tf.strings.to_hash_bucket_fast(key, 10_007), tf.float32) / 10_007.0 - 0.5
            margin = 4.5 * (2.0 * y - 1.0) + 10.0 * noise
            score = tf.sigmoid(margin)
            return {"probabilities": tf.stack([1.0 - score, score], axis=1), "scores": score,
                    "class_ids": tf.cast(score >= 0.5, tf.int64), "logits": margin}

    module = NearPerfect()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_report_only_rebuilds_without_tfma(evaluated):
    run_dir, summary = evaluated
    again = run_evaluation(run_dir, EvaluationOptions(report_only=True))
    assert again.tfma_seconds is None and again.blessed == summary.blessed
    assert again.metrics["candidate"]["pr_auc"] == summary.metrics["candidate"]["pr_auc"]


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
    assert summary.model_family == "ensemble"
    assert [(m.model_family, m.weight) for m in summary.members] == [("trees", 0.75), ("neural", 0.25)]
    assert summary.version_dir.endswith(os.path.join("serving_model", "2"))
    evaluation = run_evaluation(run_dir, EvaluationOptions(min_recall=0.0, intervals="none"))
    predicted = predict_test(summary.version_dir, split_pattern(run_dir), run_schema(run_dir))
    expected = average_precision_score(predicted["labels"], predicted["scores"])
    assert abs(evaluation.metrics["candidate"]["pr_auc"] - expected) < PR_AUC_TOLERANCE
    # The blend's training figure: the trees' rounds and the neural member's epochs (the baseline is neural).
    assert_no_empty_figure(evaluation.report, NEURAL_PANELS | {TREE_PANEL})


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
    assert summary.gate.intervals == "jackknife"
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
        low, high = summary.tfma_intervals["candidate"][name]
        point = summary.metrics["candidate"][name]
        assert low <= point <= high
        shown_low, shown_high = summary.intervals["candidate"][name]  # rebuilt inside [0, 1]
        assert 0.0 <= shown_low <= point <= shown_high <= 1.0
        tfma_se = (high - low) / (2 * t)
        numpy_se = np.std([statistic(labels[i], scores[i], decided[i]) for i in samples], ddof=1)
        assert 0.55 <= tfma_se / numpy_se <= 1.55, (name, tfma_se, numpy_se)
