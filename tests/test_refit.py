"""Refit: the exported trees are grown again on every non-test row, for the round count held-out data chose."""

import lightgbm
import numpy as np
import pytest

from trainer.candidates import Splits, train_candidate
from trainer.crossval import load_arrays, predict_margin
from trainer.data.dataset import read_serialized
from trainer.data.prepare import prepare_data
from trainer.hparams import declare_tree_hparams, with_values
from trainer.summary import EvaluationRecord, MemberSummary, ModelSummary, ThresholdRecord
from trainer.train import fit_settings
from trainer.trees import _settings, feature_matrix


@pytest.mark.parametrize("selection", ["validation", "cross_validation"])
def test_exported_trees_see_every_train_and_validation_row(tiny_run, selection):
    config, _, _ = tiny_run
    config = config.replace(selection=selection)
    data = prepare_data(config)
    hp = with_values(data.train_counts, {"model_family": "trees"})
    settings = fit_settings(hp, data.train_counts, config)
    splits = Splits(data, config)
    candidate = train_candidate(hp, settings, data, config, config.epochs, splits, refit=True)

    non_test = sum(data.counts["train"]) + sum(data.counts["validation"])  # counted from the split's own record
    assert candidate.info["refit_rows"] == non_test
    rows = load_arrays([data.pattern("train"), data.pattern("validation")], data.schema)
    assert len(rows.labels) == non_test
    # The reference: LightGBM on those rows, for the held-out round count, with the same settings.
    x = feature_matrix(rows.features, data.schema)
    reference = lightgbm.train(_settings(declare_tree_hparams(hp), config.seed),
                               lightgbm.Dataset(x, rows.labels, weight=np.where(rows.labels == 1, *settings.weights[::-1])),
                               num_boost_round=candidate.info["rounds"])
    test = load_arrays([data.pattern("test")], data.schema)
    expected = reference.predict(feature_matrix(test.features, data.schema), raw_score=True)
    np.testing.assert_allclose(predict_margin(candidate.model, test), expected, rtol=1e-5, atol=1e-5)
    # The held-out margins (threshold, calibration, selection) come from models that did not see those rows.
    assert len(candidate.margins) == (non_test if selection == "cross_validation" else sum(data.counts["validation"]))


def test_refit_full_trains_every_member_on_every_row_and_keeps_the_judged_calibration_and_threshold(tiny_run, tmp_path):
    """`--refit-full`: tree members against LightGBM on train + validation + test, neural fold models retrained,
    the judged calibration and threshold exported unchanged."""
    import tensorflow as tf

    from trainer.refit import refit_full

    config, _, _ = tiny_run
    config = config.replace(output_dir=str(tmp_path / "execution"))
    data = prepare_data(tiny_run[0])
    counts = data.train_counts
    trees = with_values(counts, {"model_family": "trees"}).values
    neural = with_values(counts, {"model_family": "neural", "body": "mlp", "depth": 1, "width": 32}).values
    judged = ModelSummary(version_dir="judged", threshold=ThresholdRecord(value=0.3),
                          members=(MemberSummary(weight=0.6, hyperparameters=trees, rounds=25),
                                   MemberSummary(weight=0.4, hyperparameters=neural, best_epochs=[1, 2])),
                          calibration={"kind": "platt", "scale": 1.25, "offset": -0.5})
    refitted = refit_full(config, data, judged, weighted=True)

    every_row = sum(sum(data.counts[split]) for split in ("train", "validation", "test"))
    assert refitted["rows"] == every_row
    assert [m["rows"] for m in refitted["members"]] == [every_row, every_row]
    assert refitted["members"][1]["epochs"] == [1, 2]
    loaded = tf.saved_model.load(refitted["version_dir"])
    assert float(loaded.threshold.numpy()) == pytest.approx(0.3)
    assert float(loaded.calibration_scale.numpy()) == pytest.approx(1.25)
    assert float(loaded.calibration_offset.numpy()) == pytest.approx(-0.5)

    # The tree member alone, refit the same way, equals LightGBM trained on every row for 25 rounds.
    alone = refit_full(config, data, judged.replace(members=judged.members[:1]), weighted=True)
    rows = load_arrays([data.pattern(s) for s in ("train", "validation", "test")], data.schema)
    settings = fit_settings(with_values(counts, trees), counts, config)
    x = feature_matrix(rows.features, data.schema)
    reference = lightgbm.train(_settings(declare_tree_hparams(with_values(counts, trees)), config.seed),
                               lightgbm.Dataset(x, rows.labels, weight=np.where(rows.labels == 1, *settings.weights[::-1])),
                               num_boost_round=25)
    served = tf.saved_model.load(alone["version_dir"]).signatures["serving_default"](
        examples=tf.constant(read_serialized(data.pattern("test"))))
    np.testing.assert_allclose(served["logits"].numpy(), reference.predict(
        feature_matrix(load_arrays([data.pattern("test")], data.schema).features, data.schema), raw_score=True),
        rtol=1e-5, atol=1e-5)


def test_the_push_with_refit_full_publishes_the_refit_version(tmp_path):
    """`_push` asks for the refit only once the decision is to push, and publishes what it returns."""
    import json
    import os
    import shutil

    from tests.test_evaluation import save_random_model
    from tuning.pipeline import ExecutionSummary, _push

    model = save_random_model(str(tmp_path / "random"))
    execution = tmp_path / "run" / "executions" / "0001"
    judged = str(execution / "candidate_model" / "1")
    shutil.copytree(model, judged)
    refit_dir = str(execution / "refit_full_model" / "1")
    shutil.copytree(model, refit_dir)
    asked = []

    def refit(section, weighted):
        asked.append((section.version_dir, weighted))
        return {"version_dir": refit_dir, "rows": 1234}

    weighted = ModelSummary(version_dir=judged, threshold=ThresholdRecord(value=0.4))
    summary = ExecutionSummary(execution={"id": "0001"}, tuning={}, weighted=weighted, baseline=weighted,
                               evaluation=EvaluationRecord(verdict="BLESSED", blessed=True, decision={"serve": "candidate"}))
    result, refitted = _push(str(tmp_path / "run"), "0001", summary, False, refit)
    assert asked == [(judged, True)] and result["pushed"] and result["refit_full"] == {"rows": 1234}
    assert refitted == {"version_dir": refit_dir, "rows": 1234}  # run.json's refit_full section
    assert "refit on all 1234 rows" in result["reason"]
    with open(os.path.join(result["path"], "assets.extra", "push.json")) as handle:
        assert json.load(handle)["refit_full"] == {"rows": 1234}
    summary = summary.replace(evaluation=EvaluationRecord(verdict="NOT_BLESSED", blessed=False, decision={"serve": None}))
    asked.clear()
    result, refitted = _push(str(tmp_path / "run"), "0001", summary, False, refit)
    assert not result["pushed"] and refitted is None and asked == []
