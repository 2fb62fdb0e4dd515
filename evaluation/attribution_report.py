"""The report's explanations: top features overall and on the minority slice, from TFMA's attribution output.

Importance is TFMA's weighted `mean_absolute_attributions` of the model's
margin (evaluation/attribution_extractor.py, evaluation/attribution_metrics.py): the mean |contribution to the
log-odds| over the test split (estimated from the explained sample) and over
its `label = 1` slice. The minority slice is the labelled positives, not the
predicted ones: it is the same rows for every model, so the candidate and
the baseline are explained on the same examples.
"""

from __future__ import annotations

import dataclasses
import html
import math

from evaluation.attribution_extractor import load_summary, mean_absolute
from evaluation.attributions import TREESHAP
from evaluation.slicing import readable_feature

TOP = 10
METHOD_WORDS = {TREESHAP: "exact TreeSHAP (LightGBM pred_contrib)",
                "sampled_shapley": "sampled Shapley values on predict_features"}


@dataclasses.dataclass(frozen=True)
class Explanation:
    """One model's explanation as the report shows it.

    Attributes:
      method: `evaluation.attributions` method name.
      rows, positive_rows, background_rows: Sample sizes.
      max_completeness_error, tolerance: |sum of attributions - (f(x) - E[f])|, at most.
      overall, minority: feature -> mean |attribution| (TFMA), all test rows / `label = 1`.
    """

    method: str
    rows: int
    positive_rows: int
    background_rows: int
    max_completeness_error: float
    tolerance: float
    overall: dict[str, float]
    minority: dict[str, float]

    def top(self, which: str, count: int = TOP) -> list[tuple[str, float]]:
        values = self.overall if which == "overall" else self.minority
        measured = [(name, value) for name, value in values.items() if not math.isnan(value)]  # NaN: no rows
        return sorted(measured, key=lambda item: (-item[1], item[0]))[:count]


def load_explanations(eval_dir: str, label: str) -> dict[str, Explanation]:
    """model name -> `Explanation`, from `attributions.json` and `tfma.load_attributions` ({} when none)."""
    explanations = {}
    for name, entry in load_summary(eval_dir).items():
        explanations[name] = Explanation(
            entry["method"], entry["rows"], entry["positive_rows"], entry["background_rows"],
            entry["max_completeness_error"], entry["completeness_tolerance"],
            mean_absolute(eval_dir, name), mean_absolute(eval_dir, name, ((label, 1),)))
    return explanations


def section(explanations: dict[str, Explanation], labels: dict[str, str]) -> str:
    """The report's section: one table per explained model (empty string when nothing was explained)."""
    if not explanations:
        return ""
    parts = ["<h2>What drives the minority predictions? Feature attributions (TFMA)</h2>"
             "<p class='note'>Mean |contribution| of each raw feature to the model's log-odds (before calibration),"
             " over the test split and over its minority slice (label = 1): TFMA's mean_absolute_attributions."
             " Trees-only models: exact TreeSHAP; others: sampled Shapley values against training rows."
             " A sample of test rows is explained, weighted back to the test split's class counts.</p>"]
    for name, explanation in explanations.items():
        parts.append(f"<p><b>{html.escape(labels.get(name, name))}</b>: {_method_line(explanation)}</p>")
        overall, minority = explanation.top("overall"), explanation.top("minority")
        rows = []
        for rank in range(max(len(overall), len(minority))):
            cells = [f"<td>{rank + 1}</td>"]
            for ranking in (overall, minority):
                feature, value = ranking[rank] if rank < len(ranking) else ("", None)
                cells.append(f"<td class='name'>{html.escape(readable_feature(feature)) if feature else ''}</td>"
                             f"<td>{'' if value is None else f'{value:.4f}'}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("<div class='scroll'><table><tr><th>rank</th><th class='name'>all test rows</th>"
                     "<th>mean |attribution|</th><th class='name'>minority (label = 1)</th>"
                     "<th>mean |attribution|</th></tr>" + "".join(rows) + "</table></div>")
    return "".join(parts)


def card_row(explanations: dict[str, Explanation], model: str) -> str:
    """The model card's row: the top five features overall and on the minority slice ('' when none)."""
    explanation = explanations.get(model)
    if explanation is None:
        return ""

    def names(which: str) -> str:
        return ", ".join(readable_feature(feature) for feature, _ in explanation.top(which, 5)) or "no rows explained"

    text = (f"top features (mean |attribution| to the log-odds): all test rows: {names('overall')}; "
            f"minority (label = 1): {names('minority')}. {_method_line(explanation)}")
    return f"<tr><td class='name'>explanations</td><td class='name'>{html.escape(text)}</td></tr>"


def _method_line(explanation: Explanation) -> str:
    background = (f", against {explanation.background_rows} training rows" if explanation.background_rows else "")
    return (f"{METHOD_WORDS.get(explanation.method, explanation.method)} on {explanation.rows} test rows "
            f"({explanation.positive_rows} positive){background}; attributions sum to f(x) − E[f] within "
            f"{explanation.max_completeness_error:.1e} (tolerance {explanation.tolerance:g}).")
