"""Fast logic of the benchmarks: metrics, ranks, table formatting, doc update (no timing)."""

import numpy as np

from benchmarks import metrics, quality, summary


def test_recall_at_precision_and_f1():
    labels = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # thresholds 0.6: 3 TP of 4 predicted (precision 0.75), recall 1.0
    assert metrics.recall_at_precision(labels, scores, 0.5) == 1.0
    assert metrics.recall_at_precision(labels, scores, 0.9) == 2 / 3
    assert metrics.f1_at(labels, scores, 0.8) == 2 * 2 / (2 + 3)
    result = metrics.test_metrics(labels, scores, 0.8)
    assert set(metrics.METRICS) <= set(result)


def test_ranks_share_ties_and_wins():
    def cell(value):
        return {m: {"mean": value, "std": 0.0, "n": 1} for m in (*metrics.METRICS, "train_seconds")}

    table = {"d1": {"a": cell(0.9), "b": cell(0.5), "c": cell(0.9)}, "d2": {"a": cell(0.1), "b": cell(0.7), "c": cell(0.2)}}
    ranks = quality.ranks(table)["pr_auc"]
    assert ranks["a"] == {"mean_rank": (1.5 + 3) / 2, "wins": 0.5, "datasets": 2}
    assert ranks["b"]["wins"] == 1.0 and ranks["b"]["mean_rank"] == (3 + 1) / 2
    brier = quality.ranks(table)["brier"]  # lower is better
    assert brier["a"]["mean_rank"] == (2.5 + 1) / 2


def test_aggregate_mean_and_std():
    records = [{"dataset": "d", "contender": "a", "seed": s, **{m: float(s) for m in metrics.METRICS},
                "train_seconds": 1.0} for s in (0, 2)]
    table = quality.aggregate(records)
    assert table["d"]["a"]["pr_auc"] == {"mean": 1.0, "std": 1.0, "n": 2}
    assert summary.mean_std(table["d"]["a"]["pr_auc"]) == "1.000 ± 1.000"


def test_table_format():
    text = summary.table(["x", "y"], [["a", 1]])
    assert text.splitlines() == ["| x | y |", "|---|---:|", "| a | 1 |"]


def test_update_doc_keeps_other_sections(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Serving\n\nserving table\n")
    summary.update_doc(str(path), f"{summary.START}\nfirst\n{summary.END}")
    summary.update_doc(str(path), f"{summary.START}\nsecond\n{summary.END}")
    text = path.read_text()
    assert "second" in text and "first" not in text
    assert text.index(summary.END) < text.index("## Serving") and "serving table" in text
