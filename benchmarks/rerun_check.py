"""A re-run against the records it repeats: one contender's splits in two confirmation results files, paired.

  .venv/bin/python -m benchmarks.rerun_check --before OLD.json --after NEW.json [--contender package_tuned]

Records pair by (dataset, seed); each split is one pair (not a per-dataset
mean, as in the confirmation tables: the question is what a code change did
to the same runs). The statistics are the confirmation report's own
(`benchmarks.paired`): wins / ties / losses of after against before with its
tie band, the two-sided Wilcoxon signed-rank and sign tests.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks import paired
from benchmarks.confirm_report import p_value
from benchmarks.contenders import PACKAGE_TUNED
from benchmarks.summary import MISSING, table


def load_records(path: str, contender: str) -> dict[tuple[str, int], dict]:
    """`contender`'s records in a confirmation results file, by (dataset, seed)."""
    with open(path) as handle:
        records = json.load(handle)["records"]
    return {(r["dataset"], int(r["seed"])): r for r in records if r["contender"] == contender}


def pair(before: dict, after: dict) -> list[tuple[tuple[str, int], dict, dict]]:
    """(key, before's record, after's record) for every split both files hold with a PR-AUC, in `after`'s order."""
    return [(key, before[key], row) for key, row in after.items()
            if key in before and before[key].get("pr_auc") is not None and row.get("pr_auc") is not None]


def _served(row: dict) -> str:
    return {True: "yes", False: "no"}.get(row.get("served"), MISSING)


def _wall(row: dict) -> str:
    seconds = row.get("wall_seconds", row.get("train_seconds"))
    return MISSING if seconds is None else f"{float(seconds):,.0f}"


def report(pairs: list, contender: str = PACKAGE_TUNED) -> str:
    """The markdown table of the pairs and the paired summary (after against before)."""
    if not pairs:
        return f"No split of `{contender}` is in both files."
    rows = [[dataset, str(seed), f"{old['pr_auc']:.4f}", f"{new['pr_auc']:.4f}",
             f"{new['pr_auc'] - old['pr_auc']:+.4f}", f"{_served(old)} / {_served(new)}",
             f"{_wall(old)} / {_wall(new)}"] for (dataset, seed), old, new in pairs]
    header = ["dataset", "seed", "PR-AUC before", "PR-AUC after", "after − before", "served before / after",
              "wall s before / after"]
    stats = paired.compare([new["pr_auc"] for _, _, new in pairs], [old["pr_auc"] for _, old, _ in pairs])
    summary = (f"{stats['datasets']} splits of `{contender}`: mean PR-AUC {stats['mean_second']:.4f} before, "
               f"{stats['mean_first']:.4f} after, mean difference {stats['mean_difference']:+.4f}; after against "
               f"before {stats['wins']} / {stats['ties']} / {stats['losses']} (W / T / L, tie: "
               f"±{paired.TIE_BAND}); Wilcoxon signed-rank p {p_value(stats['wilcoxon_p'])}, sign test p "
               f"{p_value(stats['sign_test_p'])} (two-sided).")
    return table(header, rows, "lrrrrrr") + "\n\n" + summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="confirmation results file of the earlier runs")
    parser.add_argument("--after", required=True, help="confirmation results file of the re-runs")
    parser.add_argument("--contender", default=PACKAGE_TUNED)
    args = parser.parse_args(argv)
    pairs = pair(load_records(args.before, args.contender), load_records(args.after, args.contender))
    print(report(pairs, args.contender))
    return 0


if __name__ == "__main__":
    sys.exit(main())
