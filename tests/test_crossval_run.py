"""Cross-validated selection end to end: tuning trials, fold-ensemble export, out-of-fold threshold."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from trainer.data.dataset import read_serialized
from trainer.data.prepare import prepare_data
from trainer.hparams import declare_all
from tuning.pipeline import run_tuning
from tuning.portfolio import portfolio_values

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_csv):
    config = tiny_config(str(tmp_path_factory.mktemp("cv") / "run"), tiny_csv, max_trials=2, tuner="random",
                         tuning_epochs=1, epochs=2, selection="cross_validation", cv_folds=2)
    summary = run_tuning(config)
    # The execution's directory holds what a trainer run would (data/, tuning/, models).
    return config.replace(output_dir=summary.execution["path"]), summary


def test_first_trial_is_the_portfolios_first_entry(tuned):
    config, _ = tuned
    trial_dirs = sorted(d for d in os.listdir(os.path.join(config.output_dir, "tuning", "search"))
                        if d.startswith("trial_"))
    with open(os.path.join(config.output_dir, "tuning", "search", trial_dirs[0], "trial.json")) as handle:
        first = json.load(handle)["hyperparameters"]["values"]
    data = prepare_data(config)
    expected = portfolio_values(declare_all(data.train_counts).values, data.train_counts)[0]  # LightGBM's defaults
    assert {k: first[k] for k in expected} == pytest.approx(expected)


def test_final_model_is_the_fold_ensemble_thresholded_out_of_fold(tuned):
    config, summary = tuned
    data = prepare_data(config)
    weighted = summary.weighted
    assert weighted.selection == "cross_validation"
    for member in weighted.members or [weighted]:  # an ensemble's members, or the single model
        assert len(member.cross_validation["fold_scores"]) == 2
    held_out = sum(data.counts["train"]) + sum(data.counts["validation"])
    assert weighted.threshold.held_out_examples == held_out  # every train + validation example, once
    # (That the served probability averages every fold member is tested in test_crossval.)
    loaded = tf.saved_model.load(weighted.version_dir)
    serialized = tf.constant(read_serialized(data.pattern("test"))[:50])
    outputs = loaded.signatures["serving_default"](examples=serialized)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(),
                                  (outputs["scores"].numpy() >= np.float32(weighted.threshold.value)))
    assert summary.baseline.selection == "cross_validation"
