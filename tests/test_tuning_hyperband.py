"""Hyperband: epochs and promotions through the package's search, with validation and cross-validation."""

import os

import pytest

from tests.conftest import read_trials, tiny_config
from tuning.pipeline import run_tuning

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("selection", ["validation", "cross_validation"])
def test_hyperband_search_and_retrain(tmp_path, tiny_csv, selection):
    """Hyperband passes epochs/initial_epoch, records "tuner/*" bookkeeping values and
    promotes trials (3 epochs, factor 3: a second round), also of trees and of
    cross-validated trials, which keep no per-epoch checkpoint of their own."""
    config = tiny_config(str(tmp_path / "run"), tiny_csv, tuner="hyperband", tuning_epochs=3, epochs=1,
                         selection=selection, cv_folds=2)
    summary = run_tuning(config)
    rows = read_trials(summary.execution["path"])
    assert rows and {r["status"] for r in rows} == {"COMPLETED"}
    assert "tuner/epochs" in rows[0]
    assert any(r.get("tuner/trial_id") for r in rows), "no trial was promoted"
    assert not any(name.startswith("tuner/") for name in summary.weighted.hyperparameters)
    assert os.listdir(os.path.join(summary.execution["path"], "candidate_model")) == ["1"]
