"""The weighting study (`trainer.weighting_study`): its numbers against scikit-learn / NumPy, its intervals."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss

from trainer import weighting_study
from trainer.weighting_study import FORMULA, TUNED, UNWEIGHTED


def brute_recall_at_precision(labels, scores, precision):
    """Every distinct score as a threshold, by plain NumPy: the independent reference."""
    best = 0.0
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        hits = int((flagged & (labels == 1)).sum())
        if hits / flagged.sum() >= precision:
            best = max(best, hits / labels.sum())
    return best


def synthetic(seed=0, n=600, rate=0.1):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < rate).astype(np.int64)
    return labels, rng.normal(size=n) + 1.5 * labels


def test_metrics_match_scikit_learn_and_numpy():
    labels, margins = synthetic()
    got = weighting_study.metrics(labels, margins, 0.6)
    probability = 1 / (1 + np.exp(-margins))
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, probability), abs=1e-12)
    assert got["brier"] == pytest.approx(brier_score_loss(labels, probability), abs=1e-12)
    assert got["recall_at_0_5"] == pytest.approx(((probability >= 0.5) & (labels == 1)).sum() / labels.sum())
    assert got["recall_at_precision"] == pytest.approx(brute_recall_at_precision(labels, probability, 0.6))


def test_paired_intervals_are_zero_for_the_same_model_and_exclude_zero_for_a_clearly_better_one():
    labels, margins = synthetic(n=2000)
    better = margins + 2.0 * labels  # the same noise, positives pushed further up: better ranking everywhere
    intervals = weighting_study.paired_intervals(labels, {UNWEIGHTED: margins, TUNED: margins, FORMULA: better}, 0.5)
    assert intervals[TUNED]["pr_auc"] == (0.0, 0.0) and intervals[TUNED]["brier"] == (0.0, 0.0)
    low, high = intervals[FORMULA]["pr_auc"]
    assert 0 < low <= high


def test_the_answer_follows_the_intervals():
    def row(source, ratios, pr_auc_interval, recall_interval=(0.0, 0.0)):
        return {"source": source, "member_ratios": ratios, "pr_auc": 0.5, "recall_at_0_5": 0.4,
                "vs_unweighted": {"pr_auc": {"difference": sum(pr_auc_interval) / 2, "interval": pr_auc_interval},
                                  "recall_at_0_5": {"difference": 0.1, "interval": recall_interval}}}
    base = {"source": UNWEIGHTED, "member_ratios": [1.0], "pr_auc": 0.5, "recall_at_0_5": 0.2}
    tie = weighting_study.answer([base, row(TUNED, [3.0], [-0.01, 0.02], [0.05, 0.2]), row(FORMULA, [9.0],
                                                                                        [0.01, 0.03])], 9.0)
    assert "did not change ranking beyond noise" in tie and "0.5 threshold it moved recall" in tie
    assert "N0/N1 = 9: weighting improved ranking" in tie and "w1/w0 = 3" in tie
    none = weighting_study.answer([base, row(TUNED, [1.0], [-0.05, -0.01]), row(FORMULA, [9.0], [-0.02, 0.01])],
                                  9.0)
    assert none.startswith("The search chose no weighting") and "weighting hurt ranking" in none
    assert "0.5 threshold" not in none


def test_the_report_section_shows_the_answer_and_every_variant_per_split():
    from evaluation import weighting_report

    labels, margins = synthetic(n=800)
    rows = []
    for split in ("validation", "test"):
        intervals = weighting_study.paired_intervals(labels, {UNWEIGHTED: margins, TUNED: margins * 1.5,
                                                              FORMULA: margins + 1.0}, 0.5)
        rows.append((split, intervals))
    study = {"method": weighting_study.METHOD, "operating_precision": 0.5, "answer": "The search chose <x>.",
             "validation": [], "test": []}
    for split, intervals in rows:
        for source, shown in ((UNWEIGHTED, margins), (TUNED, margins * 1.5), (FORMULA, margins + 1.0)):
            row = {"source": source, "weight_ratio": {UNWEIGHTED: 1.0, TUNED: 3.0, FORMULA: 9.0}[source],
                   **weighting_study.metrics(labels, shown, 0.5)}
            if source != UNWEIGHTED:
                row["vs_unweighted"] = {m: {"difference": 0.01, "interval": list(intervals[source][m])}
                                        for m in weighting_study.METRICS}
            study[split].append(row)
    page = weighting_report.section(study)
    assert page.index("Did weighting help?") < page.index("The search chose &lt;x&gt;.")  # escaped, first
    assert page.count("<table>") == 2 and page.count("<tr>") == 2 * 4  # a header and three variants per split
    low, high = study["test"][2]["vs_unweighted"]["pr_auc"]["interval"]
    assert f"[{low:+.4f}, {high:+.4f}]" in page
    assert "no weighting study" in weighting_report.section(None)


def test_a_run_without_the_study_keeps_no_predictions_for_it(tiny_run):
    """trainer.task-style training (the weighted model and a baseline, no tuning execution) runs no study,
    so it leaves no `weighting_study/` behind (test_tuning checks a tuning execution keeps all three)."""
    import os

    from trainer.layout import WEIGHTING_STUDY_DIR

    config, weighted, baseline = tiny_run
    assert os.path.isdir(os.path.join(config.output_dir, weighted.export_dir))  # the run itself is there
    assert not os.path.exists(os.path.join(config.output_dir, WEIGHTING_STUDY_DIR))
