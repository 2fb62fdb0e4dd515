"""Paired comparisons over datasets: one number per dataset and contender, tests across datasets.

Demšar's advice (JMLR 2006) for comparing two models over several datasets:
the Wilcoxon signed-rank test of the per-dataset differences, with the sign
test as the assumption-free check, and win / tie / loss counts. A difference
within TIE_BAND PR-AUC is counted as a tie: the seed-to-seed spread of the
small sets is several times larger, so a smaller lead is noise.

- Wilcoxon: `scipy.stats.wilcoxon(first, second)` (two-sided; zero
  differences dropped, scipy's default `zero_method="wilcox"`); None when
  every difference is zero.
- Sign test: `scipy.stats.binomtest(wins, wins + losses, 0.5)` (two-sided) on
  the win / tie / loss counts: a lead within the tie band is noise, so it is
  neither a win nor a loss here either (ties dropped, as the Wilcoxon test
  drops zero differences); None when every dataset is a tie.
"""

from __future__ import annotations

import numpy as np

TIE_BAND = 0.01
_ROUNDING = 1e-12  # 0.81 - 0.80 is 0.010000000000000009 in floating point: still a tie


def win_tie_loss(first, second, band: float = TIE_BAND) -> dict[str, int]:
    """Datasets where `first` is ahead by more than `band`, within it, behind by more than it."""
    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    tie = np.abs(difference) <= band + _ROUNDING
    return {"wins": int(np.sum(~tie & (difference > 0))), "ties": int(np.sum(tie)),
            "losses": int(np.sum(~tie & (difference < 0)))}


def wilcoxon_p(first, second) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired values (None when all differences are 0)."""
    from scipy.stats import wilcoxon

    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    if not np.any(difference != 0):
        return None
    return float(wilcoxon(first, second).pvalue)


def sign_test_p(first, second, band: float = TIE_BAND) -> float | None:
    """Two-sided sign-test p-value: binomial(wins of wins + losses, 1/2) (None when all are ties)."""
    from scipy.stats import binomtest

    counts = win_tie_loss(first, second, band)
    decided = counts["wins"] + counts["losses"]
    if decided == 0:
        return None
    return float(binomtest(counts["wins"], decided, 0.5).pvalue)


def compare(first, second, band: float = TIE_BAND) -> dict:
    """Everything reported for one pair over the same datasets (values in the same dataset order)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    return {"datasets": int(first.size), "mean_first": float(first.mean()), "mean_second": float(second.mean()),
            "mean_difference": float(np.mean(first - second)), **win_tie_loss(first, second, band),
            "wilcoxon_p": wilcoxon_p(first, second), "sign_test_p": sign_test_p(first, second, band)}


def paired_means(records: list[dict], first: str, second: str, datasets, metric: str = "pr_auc"):
    """Per dataset, the mean of `metric` over the seeds both contenders have.

    Returns (dataset names, first's means, second's means), only datasets
    where both have at least one common seed, in the order of `datasets`.
    """
    values: dict = {}
    for row in records:
        if row.get(metric) is not None and row["contender"] in (first, second):
            values.setdefault((row["dataset"], row["contender"]), {})[row["seed"]] = float(row[metric])
    names, a, b = [], [], []
    for dataset in datasets:
        one, two = values.get((dataset, first), {}), values.get((dataset, second), {})
        seeds = sorted(set(one) & set(two))
        if seeds:
            names.append(dataset)
            a.append(float(np.mean([one[s] for s in seeds])))
            b.append(float(np.mean([two[s] for s in seeds])))
    return names, np.array(a), np.array(b)
