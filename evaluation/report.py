"""`RUN/report/index.html`: one static page, PNGs beside it, no scripts.

Opens from disk in any browser without network access: the styles are inline
and every image is a relative `src`. All numbers on the page come from the
TFMA result (metrics, slices, curves, confusion matrices), the run's files
(run.json, history/, tuning/trials.csv) or the exported models' own
predictions on the test split (the reliability plot).
"""

from __future__ import annotations

import dataclasses
import html
import math
import os

from evaluation import attribution_report, plots, weighting_report
from evaluation.blessing import Verdict
from evaluation.intervals import METHODS
from evaluation.results import MIN_RANKED_POSITIVES, OVERALL, ModelResult, has_positives, worst_first
from evaluation.run_files import BASELINE, CANDIDATE, RUN_KEYS, SERVED, EvaluatedModel
from evaluation.slicing import readable_slice
from trainer.atomic import write_text_atomically
from trainer.layout import REPORT_PAGE
from trainer.summary import ModelSummary, RunSummary

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em;overflow-wrap:break-word}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #eee} .scroll table{margin:0}
td{white-space:nowrap} td.name,td.slice{white-space:normal}
td.slice{text-align:left;min-width:12em;max-width:22em} .scroll td.slice,.scroll th.name{position:sticky;left:0;background:#fff;z-index:1}
h1{font-size:1.6em} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right} th{background:#f3f3f3}
td.name,th.name{text-align:left} .verdict{font-size:1.3em;font-weight:bold;padding:.4em .8em;display:inline-block}
.blessed{background:#d5f5e3;color:#145a32} .not{background:#fadbd8;color:#78281f}
.note{color:#555;font-size:.9em} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
tr.overall td{font-weight:bold;background:#fafafa} .worse{color:#a93226}
"""


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows.

    Attributes:
      models: Evaluated models (candidate first).
      results: model name -> TFMA results.
      verdict: From TFMA's validation result.
      reliability: model name -> {"before": bins, "after": bins} from predictions.
      run_json: The run's run.json (`trainer.summary.RunSummary`: Brier / ECE
        before and after calibration, the model card's facts).
      histories: run.json key -> per-epoch Keras metrics.
      trials: Rows of tuning/trials.csv ([] when absent).
      checks: Human-readable blessing rules.
      tfma_seconds: TFMA pipeline wall time (None when `--report-only`).
      decision: `evaluation.decision.Decision.in_words()`: on a first
        execution, which model to serve when the verdict alone does not say
        (None: it does).
      explanations: model name -> its feature attributions
        (`evaluation.attribution_report`; empty when none were computed).
    """

    models: list[EvaluatedModel]
    results: dict[str, ModelResult]
    verdict: Verdict
    reliability: dict[str, dict]
    run_json: RunSummary
    histories: dict
    trials: list[dict]
    checks: list[str]
    tfma_seconds: float | None = None
    decision: str | None = None
    explanations: dict = dataclasses.field(default_factory=dict)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _count(value) -> str:
    return "–" if value is None or math.isnan(value) else f"{round(value):,}"


def write_report(inputs: ReportInputs, out_dir: str) -> str:
    """Draws the figures and writes `index.html` into `out_dir`; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    labels = {m.name: m.label for m in inputs.models}
    names = [m.name for m in inputs.models]
    others = [labels[n] for n in names[1:]]
    body = [f"<h1>Evaluation report: {html.escape(labels[names[0]])} model"
            + (" vs " + html.escape(" and ".join(others)) if others else "") + "</h1>", _verdict(inputs)]
    body.append(weighting_report.section(inputs.run_json.weighting_study))  # the question, answered first
    body += _headline(inputs, names, labels)
    body.append(attribution_report.section(inputs.explanations, labels))
    body.append(_model_card(inputs))
    images = _figures(inputs, names, labels, out_dir)
    if "curves" in images:
        body.append("<h2>Precision-recall and ROC curves (test split, TFMA)</h2>")
        body.append(_img(images["curves"], "PR and ROC curves"))
    body.append("<h2>Threshold explorer: the weighted model on the test split (TFMA)</h2>"
                "<p class='note'>Precision, recall and F1 at every threshold; the dashed line is the threshold"
                " chosen on held-out data. With a cost objective (<code>--cost-fn/--cost-fp</code>) the dotted"
                " line is the expected cost.</p>")
    if "thresholds" in images:
        body.append(_img(images["thresholds"], "threshold explorer"))
    if "confusion" in images:
        body.append("<h2>Confusion matrices at each model's threshold (TFMA)</h2>")
        body.append(_img(images["confusion"], "confusion matrices"))
    body.append("<h2>Calibration (reliability on test)</h2>"
                "<p class='note'>Before = sigmoid of the raw logit; after = the exported, corrected probability."
                " The correction is chosen among none, the weighting's closed-form prior shift and Platt scaling"
                " (maps that keep the order of the scores, so the ranking metrics are the model's own)"
                " by cross-fitted log-loss on held-out data, and stays none unless another beats it."
                " Brier score and ECE are from run.json.</p>")
    body.append(_calibration_table(inputs, names, labels))
    if "reliability" in images:
        body.append(_img(images["reliability"], "reliability diagrams"))
    body.append(_slice_table(inputs, names, labels))
    if "trials" in images:
        body.append("<h2>Tuner trials</h2>" + _img(images["trials"], "objective vs weight ratio"))
    if "training" in images:
        body.append("<h2>Did the weighting help? Training curves, weighted vs unweighted</h2>"
                    "<p class='note'>Neural members: per epoch, train (solid) and validation (dashed). Tree members:"
                    " LightGBM's held-out average precision per boosting round, the dot at the round kept. A blend"
                    " shows both. Losses of differently weighted objectives are on different scales; minority"
                    " recall at 0.5 is what weighting moves most.</p>" + _img(images["training"], "training"))
    timing = f" TFMA pipeline: {inputs.tfma_seconds:.1f} s." if inputs.tfma_seconds is not None else ""
    body.append(f"<p class='note'>Generated from RUN/evaluation (TFMA) and the run's files.{timing}</p>")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Evaluation report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    path = os.path.join(out_dir, REPORT_PAGE)
    write_text_atomically(path, page)
    return path


def _model_card(inputs: ReportInputs) -> str:
    """A model card (Mitchell et al. 2019, in brief): use, data, metrics with intervals, limits, decision."""
    weighted = inputs.run_json.weighted
    config = inputs.run_json.config or {}
    counts = (weighted.class_counts if weighted is not None else None) or {}
    rows = "".join(f"<tr><td class='name'>{html.escape(split)}</td><td>{_count(float(pair[0]))}</td>"
                   f"<td>{_count(float(pair[1]))}</td><td>{_fmt(pair[1] / max(sum(pair), 1), 4)}</td></tr>"
                   for split, pair in counts.items())
    overall = inputs.results[inputs.models[0].name].overall
    intervals = inputs.results[inputs.models[0].name].overall_intervals
    test_positives = counts.get("test", [0, 0])[1]

    def with_interval(key: str) -> str:
        low_high = intervals.get(key)
        suffix = f" (95% interval {_fmt(low_high[0], 3)}–{_fmt(low_high[1], 3)})" if low_high else ""  # in [0, 1]
        return _fmt(overall.get(key)) + suffix

    limits = [f"The test split holds {test_positives:,} minority examples; metrics on slices with fewer than "
              f"{MIN_RANKED_POSITIVES} are not ranked."]
    if test_positives < 50:
        limits.append("With fewer than 50 test positives, one positive more or less moves PR-AUC noticeably: "
                      "read the intervals, not the point values.")
    limits.append("Probabilities are corrected for the class weighting and calibrated on held-out data from the "
                  "same distribution; a shift in the minority rate after deployment changes precision at the "
                  "threshold.")
    decision = (f"{inputs.verdict.marker}: " + ("every check passed." if inputs.verdict.blessed
                                                 else f"{len(inputs.verdict.failures)} check(s) failed (above)."))
    if inputs.decision:
        decision += f" First execution: {inputs.decision}."
    return ("<h2>Model card</h2><table>"
            f"<tr><td class='name'>intended use</td><td class='name'>score examples for the minority class "
            f"({html.escape(str(config.get('label') or 'the label'))} = 1) and flag those at or above the "
            f"threshold {_fmt(weighted.threshold.value if weighted is not None else None)}, chosen for "
            f"{html.escape(inputs.run_json.threshold_objective)}</td></tr>"
            f"<tr><td class='name'>model</td><td class='name'>{html.escape(_model_in_words(weighted))}</td></tr>"
            f"<tr><td class='name'>data</td><td class='name'>{html.escape(str(config.get('data', '')))}</td></tr>"
            f"<tr><td class='name'>test metrics (TFMA)</td><td class='name'>PR-AUC {with_interval('pr_auc')}; "
            f"recall {with_interval('recall')} and precision {with_interval('precision')} at the threshold</td></tr>"
            f"<tr><td class='name'>gate decision</td><td class='name'>{html.escape(decision)}</td></tr>"
            f"{attribution_report.card_row(inputs.explanations, inputs.models[0].name)}"
            f"<tr><td class='name'>limitations</td><td class='name'>{'<br>'.join(html.escape(x) for x in limits)}"
            "</td></tr></table>"
            "<table><tr><th class='name'>split</th><th>class 0</th><th>class 1</th><th>positive rate</th></tr>"
            f"{rows}</table>")


def _model_in_words(summary: ModelSummary | None) -> str:
    """Every member of the candidate with its weight, and the rows each was trained on."""
    from trainer.description import describe_model

    if summary is None or summary.test is None:  # a run.json without a trained model
        return str(summary.model_family or "") if summary is not None else ""
    rows = "; ".join(f"{r.rows:,} rows ({r.how})" for r in summary.rows_seen or ())
    return describe_model(summary) + (f"; trained on {rows}" if rows else "")


def _cost_ratio(run_json: RunSummary) -> float | None:
    """cost_fn / cost_fp when the run's threshold objective is `cost:FN:FP`, else None."""
    from trainer.threshold import parse_objective

    objective = parse_objective(run_json.threshold_objective)
    return objective.value if objective.kind == "cost" else None


def _img(filename: str, alt: str) -> str:
    return f"<img src='{html.escape(filename)}' alt='{html.escape(alt)}'>"


def _verdict(inputs: ReportInputs) -> str:
    verdict = inputs.verdict
    css = "blessed" if verdict.blessed else "not"
    items = "".join(f"<li>{html.escape(c)}</li>" for c in inputs.checks)
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in verdict.failures)
    served = f"<p>First execution: {html.escape(inputs.decision)}</p>" if inputs.decision else ""
    return (f"<p><span class='verdict {css}'>{verdict.marker}</span></p>{served}<p>Checks (overall test slice):</p>"
            f"<ul>{items}</ul>" + (f"<p>Failed:</p><ul class='worse'>{failures}</ul>" if failures else ""))


HEADLINE = [("pr_auc", "PR-AUC"), ("auc", "ROC-AUC"), ("recall", "recall @ threshold"),
            ("precision", "precision @ threshold"), ("f1_score", "F1 @ threshold"),
            ("recall_at_precision", "recall @ precision ≥ p"), ("precision_at_recall", "precision @ recall ≥ r"),
            ("specificity", "specificity (class-0 recall)"), ("calibration", "calibration (mean pred / mean label)"),
            ("threshold", "decision threshold"), ("example_count", "test examples")]


def _headline(inputs: ReportInputs, names: list[str], labels: dict[str, str]) -> list[str]:
    head = "".join(f"<th>{html.escape(labels[n])}</th>" for n in names)
    rows = []
    for key, title in HEADLINE:
        cells = []
        for n in names:
            value = inputs.results[n].overall.get(key)
            interval = inputs.results[n].overall_intervals.get(key)
            text = _count(value) if key == "example_count" else _fmt(value)
            if interval and key not in ("example_count", "threshold"):
                text += f" <span class='note'>[{_fmt(interval[0], 3)}, {_fmt(interval[1], 3)}]</span>"
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><td class='name'>{html.escape(title)}</td>{''.join(cells)}</tr>")
    return ["<h2>Minority class (1) on the test split</h2>",
            f"<p class='note'>In brackets: 95% confidence intervals, where TFMA computed them, kept inside each"
            f" metric's range. {html.escape(_interval_methods(inputs, names))} Intervals of two models overlap far"
            " more than their paired difference varies: the gate tests the difference.</p>",
            f"<table><tr><th class='name'>metric (TFMA, overall slice)</th>{head}</tr>{''.join(rows)}</table>"]


def _interval_methods(inputs: ReportInputs, names: list[str]) -> str:
    """How the shown intervals were made, in words, with the metrics of each method (`evaluation.intervals`)."""
    metrics_by_method: dict[str, list[str]] = {}
    for key, title in HEADLINE:
        for method in {inputs.results[n].overall_interval_methods.get(key) for n in names} - {None}:
            metrics_by_method.setdefault(method, []).append(title)
    words = [f"{text} ({', '.join(metrics_by_method[method])})" for method, text in METHODS.items()
             if method in metrics_by_method]
    return ("Method: " + "; ".join(words) + ".") if words else "No intervals were computed (--intervals none)."


def _calibration_table(inputs: ReportInputs, names: list[str], labels: dict[str, str]) -> str:
    rows = []
    for name in names:
        # The served model has no section in this run's run.json: its cells are dashes.
        section = inputs.run_json.model(RUN_KEYS[name]) if name in RUN_KEYS else None
        test = section.test if section is not None else None
        figures = [_fmt(getattr(test, key) if test is not None else None)
                   for key in ("brier_before", "brier", "ece_before", "ece")]
        calibration = (section.calibration if section is not None else None) or {}
        rows.append(f"<tr><td class='name'>{html.escape(labels[name])}</td>"
                    f"<td class='name'>{html.escape(_calibration_choice(calibration))}</td>"
                    + "".join(f"<td>{figure}</td>" for figure in figures) + "</tr>")
    return ("<table><tr><th class='name'>model</th><th class='name'>correction (cross-fitted held-out log-loss)</th>"
            "<th>Brier before</th><th>Brier after</th><th>ECE before</th>"
            f"<th>ECE after</th></tr>{''.join(rows)}</table>")


def _calibration_choice(record: dict) -> str:
    """`platt (none 0.0412, prior_shift 0.0420, platt 0.0398, isotonic 0.0405)`: the map and what it beat."""
    losses = record.get("held_out_log_loss") or {}
    scores = ", ".join(f"{kind} {_fmt(loss)}" for kind, loss in losses.items())
    return str(record.get("kind", "–")) + (f" ({scores})" if scores else "")


CLASS0_AT_THRESHOLD = ("specificity", "negative_predictive_value")
SLICE_COLUMNS = [("class1/pr_auc", "PR-AUC"), ("class1/auc", "ROC-AUC"), ("recall", "recall"),
                 ("precision", "precision"), ("class0/pr_auc", "PR-AUC"), ("specificity", "recall"),
                 ("negative_predictive_value", "precision")]


def _slice_table(inputs: ReportInputs, names: list[str], labels: dict[str, str]) -> str:
    candidate = inputs.results[names[0]]
    short = {n: {CANDIDATE: "W", BASELINE: "B", SERVED: "S"}.get(n, n) for n in names}
    legend = ", ".join(f"{short[n]} = {html.escape(labels[n])}" for n in names)
    span = len(names)
    head1 = ("<tr><th class='name' rowspan='2'>slice</th><th rowspan='2'>examples</th><th rowspan='2'>positives</th>"
             f"<th colspan='{4 * span}'>minority class 1 (recall/precision at each model's threshold)</th>"
             f"<th colspan='{3 * span}'>majority class 0</th></tr>")
    head2 = "<tr>" + "".join(f"<th>{title} {short[n]}</th>" for _, title in SLICE_COLUMNS for n in names) + "</tr>"
    rows = []
    label = (inputs.run_json.config or {}).get("label")
    for slice_name in worst_first(candidate):
        metrics = {n: inputs.results[n].slices.get(slice_name, {}) for n in names}
        count = metrics[names[0]].get("example_count", math.nan)
        positives = count * metrics[names[0]].get("mean_label", math.nan)
        # The readable name, and TFMA's own slice (feature and bucket) on hover.
        readable = html.escape(readable_slice(candidate.slice_keys.get(slice_name, ()), label))
        name_cell = f"<td class='slice' title='{html.escape(slice_name)}'>{readable}"
        cells = [f"{name_cell}</td><td>{_count(count)}</td><td>{_count(positives)}</td>"]
        # Without positives (or negatives) a class's metrics are undefined, whatever TFMA wrote;
        # with a handful of positives they are noise: shown, but marked and not ranked.
        defined = {"class1": has_positives(metrics[names[0]]), "class0": positives < count - 0.5}
        if defined["class1"] and not has_positives(metrics[names[0]], MIN_RANKED_POSITIVES):
            cells[0] = (f"{name_cell} <span class='note'>(too few positives to rank)</span></td><td>"
                        + _count(count) + f"</td><td>{_count(positives)}</td>")
        for key, _ in SLICE_COLUMNS:
            owner = "class0" if key.startswith("class0") or key in CLASS0_AT_THRESHOLD else "class1"
            values = [metrics[n].get(key, math.nan) if defined[owner] else math.nan for n in names]
            for i, value in enumerate(values):
                worse = i == 0 and len(values) > 1 and not math.isnan(value) and value < values[1] - 1e-9
                cells.append(f"<td class='{'worse' if worse else ''}'>{_fmt(value, 3)}</td>")
        css = " class='overall'" if slice_name == OVERALL else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    return ("<h2>Slices (TFMA), worst first by the weighted model's minority PR-AUC</h2>"
            f"<p class='note'>{legend}. Red: the weighted model is below the next column's model. A slice without"
            f" positives has undefined minority metrics (–); one with fewer than {MIN_RANKED_POSITIVES} is marked;"
            " both are listed last, unranked. A numeric feature's slices are its training quartile ranges.</p>"
            f"<div class='scroll'><table>{head1}{head2}{''.join(rows)}</table></div>")


def _figures(inputs: ReportInputs, names: list[str], labels: dict[str, str], out_dir: str) -> dict[str, str]:
    def target(name: str) -> str:
        return os.path.join(out_dir, name)

    operating = {}
    for n in names:
        overall = inputs.results[n].overall
        operating[n] = {"precision": overall.get("precision", math.nan), "recall": overall.get("recall", math.nan),
                        "fpr": 1.0 - overall.get("specificity", math.nan)}
    files: dict[str, str | None] = {
        "curves": plots.pr_roc_curves({n: inputs.results[n].curve for n in names}, operating, labels,
                                      target("pr_roc.png")),
        "confusion": plots.confusion_matrices({n: inputs.results[n].overall for n in names}, labels,
                                              target("confusion.png")),
        "reliability": plots.reliability(inputs.reliability, labels, target("calibration.png")),
        "thresholds": plots.threshold_explorer(inputs.results[names[0]].curve, inputs.models[0].threshold,
                                               _cost_ratio(inputs.run_json), target("thresholds.png")),
    }
    if inputs.trials:
        files["trials"] = plots.trials(inputs.trials, target("trials.png"))
    if inputs.histories:
        files["training"] = plots.training_curves(inputs.histories, target("training.png"))
    return {key: os.path.basename(path) for key, path in files.items() if path is not None}  # None: nothing to draw
