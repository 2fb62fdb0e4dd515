"""On sylva, the weighted model is at least as good as the usual baseline.

The reference is scikit-learn's LogisticRegression(class_weight="balanced")
on exactly the same stratified split (same rows, same seed).
"""

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trainer.config import RunConfig
from trainer.data.ingest import builtin_frame, validate
from trainer.data.split import assign_splits

pytestmark = pytest.mark.slow


def test_weighted_model_beats_balanced_logistic_regression_on_sylva(tmp_path):
    from trainer.pipeline import train_and_export

    config = RunConfig(data="sylva", output_dir=str(tmp_path / "run"), epochs=15, verbose=0)
    summary = train_and_export(config)
    sylva = validate(*builtin_frame("sylva", None, config.seed), None)
    assignment = assign_splits(sylva.labels, config.split, config.seed)
    x, y = sylva.features.to_numpy(np.float64), sylva.labels
    train, test = assignment == 0, assignment == 2
    assert int(y[test].sum()) == summary.test.positives  # the same split
    reference = make_pipeline(SimpleImputer(), StandardScaler(),
                              LogisticRegression(class_weight="balanced", max_iter=2000))
    reference.fit(x[train], y[train])
    reference_pr_auc = average_precision_score(y[test], reference.predict_proba(x[test])[:, 1])
    print(f"sylva test PR-AUC: weighted model {summary.test.pr_auc:.4f}, balanced LR {reference_pr_auc:.4f}")
    assert summary.test.pr_auc >= reference_pr_auc, (summary.test.pr_auc, reference_pr_auc)
