"""The report's first section: "Did weighting help?", from run.json's `weighting_study` (trainer/weighting_study.py).

The answer sentence comes first, then one table per split (held-out data,
then test): each variant's ratio and its four numbers, and beside each
weighted variant's number its paired difference to the unweighted model
with the interval. A run without a study (a `trainer.task` run, or an
execution from before the study existed) says how to get one instead.
"""

from __future__ import annotations

import html

SPLIT_TITLES = {"validation": "held-out data (validation split or out-of-fold)", "test": "test split"}
SOURCE_WORDS = {"unweighted": "unweighted (w1/w0 = 1)", "tuned": "the search's ratio", "formula": "N0/N1"}
COLUMNS = (("pr_auc", "PR-AUC"), ("recall_at_precision", "recall at precision P"),
           ("recall_at_0_5", "recall at threshold 0.5"), ("brier", "Brier (raw probability)"))


def section(study: dict | None) -> str:
    """HTML for the study, or a one-line note when the run has none."""
    if not study:
        return ("<h2>Did weighting help?</h2><p class='note'>This run has no weighting study (a "
                "<code>trainer.task</code> run, or <code>--skip-weighting-study</code>): <code>make tune</code> "
                "(<code>python -m tuning.task</code>) trains the selected model unweighted, at the tuned ratio and "
                "at N0/N1 in every execution and compares them here.</p>")
    parts = ["<h2>Did weighting help?</h2>", f"<p><b>{html.escape(study['answer'])}</b></p>",
             f"<p class='note'>The selected model's members trained three times; raw probabilities before "
             f"calibration and threshold. P = {study['operating_precision']:g} (the threshold objective's). "
             f"Differences to the unweighted model with {html.escape(study['method'])} intervals.</p>"]
    for split, title in SPLIT_TITLES.items():
        if split in study:
            parts.append(f"<h3>On {title}</h3>" + _table(study[split]))
    return "".join(parts)


def _table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for _, name in COLUMNS)
    body = []
    for row in rows:
        cells = "".join(f"<td>{_cell(row, key)}</td>" for key, _ in COLUMNS)
        ratio = f"{row['weight_ratio']:.3g}"
        body.append(f"<tr><td class='name'>{html.escape(SOURCE_WORDS.get(row['source'], row['source']))}</td>"
                    f"<td>{ratio}</td>{cells}</tr>")
    return (f"<div class='scroll'><table><tr><th>variant</th><th>w1/w0</th>{head}</tr>{''.join(body)}"
            "</table></div>")


def _cell(row: dict, key: str) -> str:
    value = f"{row[key]:.4f}"
    paired = row.get("vs_unweighted", {}).get(key)
    if paired is None:
        return value
    low, high = paired["interval"]
    return f"{value} <span class='note'>({paired['difference']:+.4f} [{low:+.4f}, {high:+.4f}])</span>"
