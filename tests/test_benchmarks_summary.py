"""Fast logic of the benchmarks: metrics, ranks, table formatting, doc update (no timing)."""

import numpy as np
import pytest

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


def _records(values: dict, contender_extra=None) -> list[dict]:
    """{(dataset, contender): [pr_auc per seed]} -> records with every metric = that value."""
    rows = []
    for (dataset, contender), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            row = {"dataset": dataset, "seed": seed, "contender": contender, "train_seconds": 1.0,
                   **{m: value for m in metrics.METRICS}}
            row.update((contender_extra or {}).get(contender, {}))
            rows.append(row)
    return rows


def test_overview_means_spread_and_ranks_against_hand_computed_values():
    values = {("d1", "a"): [0.9, 0.7], ("d1", "b"): [0.5, 0.5], ("d1", "c"): [0.1, 0.3],
              ("d2", "a"): [0.2, 0.4], ("d2", "b"): [0.6, 0.8]}  # c has no result on d2
    table = quality.aggregate(_records(values), ["d1", "d2"])
    assert quality.common_datasets(table, ["a", "b", "c"]) == ["d1"]
    assert quality.common_datasets(table, ["a", "b"]) == ["d1", "d2"]
    stats = quality.overview(table, ["a", "b"], ["d1", "d2"])
    assert stats["a"]["pr_auc"] == pytest.approx((0.8 + 0.3) / 2)
    assert stats["b"]["pr_auc"] == pytest.approx((0.5 + 0.7) / 2)
    assert stats["a"]["pr_auc_spread"] == pytest.approx((0.1 + 0.1) / 2)  # population sd of each pair
    assert stats["b"]["pr_auc_spread"] == pytest.approx((0.0 + 0.1) / 2)
    two = quality.ranks(table, ["a", "b"], ["d1", "d2"])["pr_auc"]
    assert two["a"] == {"mean_rank": 1.5, "wins": 1.0, "datasets": 2}
    assert two["b"] == {"mean_rank": 1.5, "wins": 1.0, "datasets": 2}
    three = quality.ranks(table)["pr_auc"]  # default: all contenders, on the datasets all of them have
    assert {n: r["mean_rank"] for n, r in three.items()} == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert all(r["datasets"] == 1 for r in three.values())
    brier = quality.ranks(table, ["a", "b"], ["d1", "d2"])["brier"]  # lower is better: reversed
    assert brier["a"]["mean_rank"] == 1.5 and brier["b"]["wins"] == 1.0


def test_metrics_missing_from_old_records_are_left_out():
    rows = _records({("d", "old"): [0.5], ("d", "new"): [0.6]})
    for row in rows:
        if row["contender"] == "old":
            del row["recall_at_threshold"], row["precision_at_threshold"]
    table = quality.aggregate(rows)
    assert "recall_at_threshold" not in table["d"]["old"] and "recall_at_threshold" in table["d"]["new"]
    stats = quality.overview(table, ["old", "new"], ["d"])
    assert stats["old"]["recall_at_threshold"] is None and stats["new"]["recall_at_threshold"] == 0.6
    assert stats["old"]["pr_auc_spread"] is None  # one seed: no spread
    assert "recall_at_threshold" not in quality.ranks(table) and "pr_auc" in quality.ranks(table)


def test_spread_averages_the_datasets_that_have_several_seeds():
    table = quality.aggregate(_records({("d1", "a"): [0.9, 0.7, 0.8], ("d2", "a"): [0.4]}), ["d1", "d2"])
    stats = quality.overview(table, ["a"], ["d1", "d2"])
    assert stats["a"]["pr_auc_spread"] == pytest.approx(np.std([0.9, 0.7, 0.8]))  # d2's single seed left out
    assert stats["a"]["spread_datasets"] == 1


def test_recall_and_precision_at_threshold():
    labels = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert metrics.recall_precision_at(labels, scores, 0.65) == (2 / 3, 2 / 3)
    assert metrics.recall_precision_at(labels, scores, 0.95) == (0.0, 0.0)  # nothing flagged
    result = metrics.test_metrics(labels, scores, 0.6)
    assert result["recall_at_threshold"] == 1.0 and result["precision_at_threshold"] == 0.75


def _payload(records):
    return {"mode": "full", "seeds": [0, 1], "split": [0.7, 0.15, 0.15], "package_epochs": 30,
            "contenders": {}, "failures": [], "records": records,
            "datasets": [{"name": n, "rows": 1000, "positives": p, "positive_rate": p / 1000, "numeric_features": 3,
                          "categorical_features": 0, "source": "x"} for n, p in (("d1", 40), ("d2", 400))]}


def test_renderer_shows_tuning_budget_spread_recall_and_precision():
    values = {("d1", "lightgbm_spw"): [0.5, 0.6], ("d1", "lightgbm_tuned"): [0.6, 0.6],
              ("d2", "lightgbm_spw"): [0.2, 0.2], ("d2", "lightgbm_tuned"): [0.4, 0.2],
              ("d1", "package_weighted"): [0.9, 0.9]}
    records = _records(values, {"lightgbm_tuned": {"trials": 10, "selection": "cv5"}})
    text = summary.quality_section(_payload(records), "quality.json")
    for header in ("mean PR-AUC", "PR-AUC mean rank (wins)", "spread (PR-AUC sd)", "recall @ own threshold",
                   "precision @ own threshold", "Brier", "trials (budget)", "tuned trials scored by"):
        assert header in text
    assert "| `lightgbm_tuned` | yes, 10 trials |" in text and "| `lightgbm_spw` | no |" in text
    assert "6: 5-fold CV" in text and "60: validation" in text  # round(40 * 0.15), round(400 * 0.15)
    # package_weighted lacks d2: the first summary covers d1 only, a second one both datasets without it
    assert "Over the 1 datasets where all 3 contenders have results (left out: d2)" in text
    assert "Over the 2 datasets where all 2 contenders have results; without `package_weighted`, which" in text
    # lightgbm_tuned over d1, d2: mean PR-AUC (0.6 + 0.3) / 2, spread (0 + 0.1) / 2, rank 1 on both
    assert "| `lightgbm_tuned` | yes, 10 trials | **0.450** | **1.00 (2)** | 0.050 | 0.450 | 0.450 |" in text
    assert "| `lightgbm_spw` | no | 0.375 | 2.00 (0) | 0.025 |" in text  # (0.55 + 0.2) / 2, (0.05 + 0) / 2
    assert "`package_tuned`" in text and "none yet" in text  # listed, not run


def test_merge_replaces_only_the_rerun_rows():
    old = [{"dataset": d, "seed": s, "contender": c, "v": "old"}
           for d, s, c in (("d", 0, "a"), ("d", 0, "b"), ("d", 1, "a"), ("e", 0, "a"))]
    payload = {"records": list(old), "failures": [{"dataset": "d", "seed": 0, "contender": "a", "error": "x"}]}
    quality.merge(payload, "d", 0, ("a",), [{"dataset": "d", "seed": 0, "contender": "a", "v": "new"}], [])
    kept = {(r["dataset"], r["seed"], r["contender"]): r["v"] for r in payload["records"]}
    assert kept == {("d", 0, "a"): "new", ("d", 0, "b"): "old", ("d", 1, "a"): "old", ("e", 0, "a"): "old"}
    assert payload["failures"] == []


def test_run_merges_a_contender_into_existing_results(tmp_path):
    path = str(tmp_path / "quality-quick.json")
    first = quality.run(False, 1, path, only={"yeast4"}, contenders=("logreg_balanced",), log=lambda m: None)
    assert {r["contender"] for r in first["records"]} == {"logreg_balanced"}
    second = quality.run(False, 1, path, only={"yeast4"}, contenders=("smote_logreg",), log=lambda m: None)
    assert sorted(r["contender"] for r in second["records"]) == ["logreg_balanced", "smote_logreg"]
    assert [d["name"] for d in second["datasets"]] == ["yeast4"] and second["seeds"] == [0]
    again = quality.run(False, 1, path, only={"yeast4"}, contenders=("smote_logreg",), fresh=True, log=lambda m: None)
    assert [r["contender"] for r in again["records"]] == ["smote_logreg"]


def test_command_line_contenders_and_trials():
    from benchmarks import run
    from benchmarks.contenders import ALL

    assert run.ALL == ALL and {"package_tuned", "lightgbm_tuned", "ydf_gbt_tuned"} <= set(ALL)
    args = run.parse_args(["--only", "quality", "--contenders", "package_tuned", "--trials", "2"])
    assert args.contenders == "package_tuned" and args.trials == 2
    with pytest.raises(SystemExit):
        run.parse_args(["--contenders", "nope"])
    with pytest.raises(SystemExit):
        run.parse_args(["--full", "--trials", "3"])  # the full run always uses the package tuner's budget
