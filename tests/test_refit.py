"""Refit: the exported trees are grown again on every non-test row, for the round count held-out data chose."""

import lightgbm
import numpy as np
import pytest

from trainer.candidates import Splits, train_candidate
from trainer.crossval import load_arrays, predict_margin
from trainer.data.prepare import prepare_data
from trainer.hparams import declare_tree_hparams, with_values
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
