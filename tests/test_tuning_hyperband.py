"""Hyperband: epochs and promotions through the package's search, with validation and cross-validation."""

import os

import pytest

from tests.conftest import read_trials, tiny_config
from tuning.pipeline import run_tuning

pytestmark = pytest.mark.slow


def test_hyperband_search_and_retrain(tmp_path, tiny_csv):
    """Hyperband passes epochs/initial_epoch, records "tuner/*" bookkeeping values and
    promotes trials (3 epochs, factor 3: a second round), also of trees; its bookkeeping
    values stay out of the retrained model's hyperparameters."""
    config = tiny_config(str(tmp_path / "run"), tiny_csv, tuner="hyperband", tuning_epochs=3, epochs=1)
    summary = run_tuning(config)
    rows = read_trials(summary.execution["path"])
    assert rows and {r["status"] for r in rows} == {"COMPLETED"}
    assert "tuner/epochs" in rows[0]
    assert any(r.get("tuner/trial_id") for r in rows), "no trial was promoted"
    assert not any(name.startswith("tuner/") for name in summary.weighted.hyperparameters)
    assert os.listdir(os.path.join(summary.execution["path"], "candidate_model")) == ["1"]


def test_hyperband_promotes_cross_validated_trials(tmp_path, tiny_csv):
    """Cross-validated trials keep no per-epoch checkpoint of their own, yet Hyperband promotes them.
    The search alone: retraining after it is the code tested above and in test_crossval_run."""
    from trainer.data.prepare import prepare_data
    from tuning.search import make_tuner

    config = tiny_config(str(tmp_path / "run"), tiny_csv, tuner="hyperband", tuning_epochs=3,
                         selection="cross_validation", cv_folds=2)
    tuner = make_tuner(prepare_data(config), config)
    tuner.search(verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert trials and {t.status for t in trials} == {"COMPLETED"}
    assert all(t.score is not None for t in trials)
    promoted = [t for t in trials if t.hyperparameters.values.get("tuner/trial_id")]
    assert promoted, "no trial was promoted"
    assert all(t.hyperparameters.values["tuner/initial_epoch"] > 0 for t in promoted)
