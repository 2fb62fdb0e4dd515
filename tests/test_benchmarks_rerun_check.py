"""benchmarks.rerun_check: pairing by (dataset, seed), the differences, and the paired tests against scipy."""

import json
import re

import pytest
from scipy.stats import binomtest, wilcoxon

from benchmarks import rerun_check

BEFORE = {("a", 0): 0.50, ("a", 1): 0.60, ("b", 0): 0.90, ("c", 0): 0.30, ("d", 0): 0.80, ("e", 0): 0.40,
          ("only_before", 0): 0.10}
AFTER = {("a", 0): 0.55, ("a", 1): 0.58, ("b", 0): 0.905, ("c", 0): 0.20, ("d", 0): 0.93, ("e", 0): 0.47,
         ("only_after", 0): 0.99}


def write(path, values: dict, served=True) -> str:
    records = [{"dataset": d, "seed": s, "contender": "package_tuned", "pr_auc": v, "served": served,
                "wall_seconds": 100.0 + s} for (d, s), v in values.items()]
    # another contender on a shared split, and a package record without a score: neither may be paired
    records += [{"dataset": "a", "seed": 0, "contender": "lightgbm_default", "pr_auc": 0.0, "wall_seconds": 1.0},
                {"dataset": "f", "seed": 0, "contender": "package_tuned", "pr_auc": None}]
    path.write_text(json.dumps({"mode": "full", "records": records}))
    return str(path)


def test_pairs_by_dataset_and_seed(tmp_path):
    before = rerun_check.load_records(write(tmp_path / "old.json", BEFORE), "package_tuned")
    after = rerun_check.load_records(write(tmp_path / "new.json", AFTER), "package_tuned")
    pairs = rerun_check.pair(before, after)
    assert [key for key, _, _ in pairs] == sorted(set(BEFORE) & set(AFTER))
    for key, old, new in pairs:
        assert (old["pr_auc"], new["pr_auc"]) == (BEFORE[key], AFTER[key])


def test_report_differences_counts_and_p_values(tmp_path, capsys):
    old, new = write(tmp_path / "old.json", BEFORE, served=False), write(tmp_path / "new.json", AFTER)
    assert rerun_check.main(["--before", old, "--after", new]) == 0
    text = capsys.readouterr().out
    common = sorted(set(BEFORE) & set(AFTER))
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| dataset")]
    assert len(rows) == len(common)
    for (dataset, seed), line in zip(common, rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:2] == [dataset, str(seed)]
        assert float(cells[4]) == pytest.approx(AFTER[dataset, seed] - BEFORE[dataset, seed], abs=5e-5)
        assert cells[5] == "no / yes" and cells[6] == f"{100 + seed} / {100 + seed}"
    first, second = [AFTER[k] for k in common], [BEFORE[k] for k in common]
    mean = sum(first) / len(first) - sum(second) / len(second)
    assert f"mean difference {mean:+.4f}" in text
    # by hand: +0.05, -0.02, +0.005 (a tie), -0.10, +0.13, +0.07 with the band 0.01
    assert "3 / 1 / 2 (W / T / L" in text
    reported = re.search(r"Wilcoxon signed-rank p ([0-9.]+), sign test p ([0-9.]+)", text)
    assert float(reported.group(1)) == pytest.approx(wilcoxon(first, second).pvalue, abs=5e-4)
    assert float(reported.group(2)) == pytest.approx(binomtest(3, 5, 0.5).pvalue, abs=5e-4)


def test_no_common_split_says_so(tmp_path):
    before = rerun_check.load_records(write(tmp_path / "old.json", {("x", 0): 0.5}), "package_tuned")
    after = rerun_check.load_records(write(tmp_path / "new.json", {("y", 0): 0.5}), "package_tuned")
    assert "No split" in rerun_check.report(rerun_check.pair(before, after))
