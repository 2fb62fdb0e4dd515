"""The push gate: TFMA's verdict decides what becomes the next served version.

Each scenario works on a copy of the session's tiny run; "served" models are
pushed into the copy's `serving_model/` with the real pusher.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pytest

from evaluation import EvaluationOptions, run_evaluation
from evaluation.decision import Decision
from evaluation.predictions import predict_test
from evaluation.run_files import run_models, run_schema, split_pattern
from tests.test_evaluation import copy_run, save_random_model
from trainer.layout import PUSH_FILE
from tuning.push import push, served_model

pytestmark = pytest.mark.slow
# Change thresholds cannot fail with these: the scenarios that use them test value thresholds alone.
NO_CHANGE_CHECK = dict(pr_auc_tolerance=1.0, operating_tolerance=1.0)
# TFMA's intervals (tested in test_evaluation) would only triple each pipeline's time here.
FAST = dict(slice_features=(), intervals="none")


def tree_digest(path: str) -> str:
    """SHA-256 over every file's relative path and bytes under `path`."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def save_prior_model(path: str, prior: float) -> str:
    """A model that predicts the training prior for everyone (no ranking at all)."""
    import tensorflow as tf

    class Prior(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            score = tf.fill(tf.shape(examples), tf.constant(prior, tf.float32))
            return {"probabilities": tf.stack([1.0 - score, score], axis=1), "scores": score,
                    "class_ids": tf.cast(score >= prior, tf.int64), "logits": tf.math.log(score / (1.0 - score))}

    module = Prior()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def candidate_of(run_dir: str):
    return next(m for m in run_models(run_dir) if m.name == "candidate")


def test_worse_candidate_is_not_pushed_and_the_served_version_is_untouched(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    real = candidate_of(run_dir)
    first = push(run_dir, real.path, {"execution": "0001", "threshold": real.threshold}, blessed=True)
    assert first["pushed"] and first["version"] == 2  # the copy's own trainer export is version 1
    served = served_model(run_dir)
    assert served.version == 2 and served.threshold == pytest.approx(real.threshold)
    before = tree_digest(os.path.join(run_dir, "serving_model"))

    broken = save_random_model(str(tmp_path / "random_model"))
    summary = run_evaluation(run_dir, EvaluationOptions(
        **FAST, candidate_dir=broken, candidate_threshold=0.5,
        served_dir=served.path, served_threshold=served.threshold))
    assert not summary.blessed
    assert any("pr_auc change vs the reference" in f for f in summary.failures), summary.failures
    # With a model served, the change check blocks as before: no twin to fall back on.
    assert summary.gate.twin is None
    assert summary.decision == Decision(serve=None, reason=None, first_execution=False)
    result = push(run_dir, broken, {"execution": "0002", "threshold": 0.5}, blessed=summary.blessed)
    assert not result["pushed"] and "version 2 stays served" in result["reason"]
    assert tree_digest(os.path.join(run_dir, "serving_model")) == before
    assert served_model(run_dir).version == 2
    assert os.path.exists(os.path.join(run_dir, "evaluation", "NOT_BLESSED"))


def test_better_candidate_becomes_the_next_version(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    broken = save_random_model(str(tmp_path / "random_model"))
    push(run_dir, broken, {"execution": "0001", "threshold": 0.5}, blessed=True)
    served = served_model(run_dir)
    before = tree_digest(served.path)

    # The candidate is the run's own export (version 1), not the broken model now served as version 2.
    # Also the multi-process DirectRunner path of TFMA's pipeline.
    summary = run_evaluation(run_dir, EvaluationOptions(
        **FAST, candidate_dir=os.path.join(run_dir, "serving_model", "1"),
        served_dir=served.path, served_threshold=served.threshold,
        beam_pipeline_args=("--direct_num_workers=2", "--direct_running_mode=multi_processing")))
    assert summary.blessed, summary.failures
    assert summary.gate.reference == "served"
    assert os.path.exists(os.path.join(run_dir, "evaluation", "BLESSED"))
    assert not os.path.exists(os.path.join(run_dir, "evaluation", "NOT_BLESSED"))
    candidate = dataclasses.replace(candidate_of(run_dir), path=os.path.join(run_dir, "serving_model", "1"))
    result = push(run_dir, candidate.path, {"execution": "0002", "threshold": candidate.threshold},
                  blessed=summary.blessed)
    assert result["pushed"] and result["version"] == served.version + 1
    assert tree_digest(served.path) == before
    # The pushed copy is the candidate plus its push record, loadable as a SavedModel.
    pushed = predict_test(result["path"], split_pattern(run_dir), run_schema(run_dir))
    original = predict_test(candidate.path, split_pattern(run_dir), run_schema(run_dir))
    assert np.array_equal(pushed["scores"], original["scores"])
    assert os.path.exists(os.path.join(result["path"], PUSH_FILE))


def test_push_anyway_is_recorded(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    broken = save_random_model(str(tmp_path / "random_model"))
    result = push(run_dir, broken, {"execution": "0003", "threshold": 0.5}, blessed=False, push_anyway=True)
    assert result["pushed"] and result["push_anyway"] and "--push-anyway" in result["reason"]
    import json

    with open(os.path.join(result["path"], PUSH_FILE)) as handle:
        assert json.load(handle)["push_anyway"] is True


def test_a_model_predicting_the_prior_fails_on_value_thresholds_alone(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    config = tiny_run[0]
    counts = tiny_run[1].class_counts["train"]
    prior_model = save_prior_model(str(tmp_path / "prior_model"), counts[1] / sum(counts))
    summary = run_evaluation(run_dir, EvaluationOptions(**FAST, candidate_dir=prior_model,
                                                        candidate_threshold=0.5, **NO_CHANGE_CHECK))
    assert config.threshold_objective.startswith("recall_at_precision")
    assert not summary.blessed
    assert summary.failures and not any("change" in f for f in summary.failures)
    assert any("pr_auc" in f for f in summary.failures)  # PR-AUC = the positive rate < 2x that rate
    # A first execution: the twin (the run's real baseline) is served instead if it passes the same floors,
    # judged in Python on TFMA's metrics of the twin.
    from evaluation.decision import shortfalls

    twin = summary.gate.twin
    assert twin.model == "baseline" and twin.held_out_flagged is not None  # run.json's held-out count is used
    # The gate's own counts at the threshold are TFMA's (TFMA and NumPy count score > threshold alike).
    assert twin.precision == pytest.approx(summary.metrics["baseline"]["precision"], abs=1e-9)
    assert twin.recall == pytest.approx(summary.metrics["baseline"]["recall"], abs=1e-9)
    twin_fit = not shortfalls(twin, summary.metrics["baseline"])
    decision = summary.decision
    assert decision.first_execution and decision.serve == ("baseline" if twin_fit else None)
    if twin_fit:  # the prior model flags nobody at 0.5 and ranks at random
        assert decision.reason.startswith("the unweighted twin: the candidate misses recall ≥ 0.1")
        assert "precision" not in decision.reason  # nothing flagged on test: precision is not judged
        assert "PR-AUC ≥" in decision.reason
    else:
        assert decision.reason.startswith("neither model")
    with open(os.path.join(run_dir, "report", "index.html"), encoding="utf-8") as handle:
        assert f"First execution: {decision.in_words()}"[:60] in handle.read()
