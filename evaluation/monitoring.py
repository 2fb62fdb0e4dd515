"""`RUN/monitoring.html`: what is served, and how it has held up, on one static page.

    python -m evaluation.monitoring --run RUN     # draw it again from RUN/monitoring/

(RUN may be on object storage: drawn on a local working copy of its records,
then uploaded; `trainer.run_storage.on_run`.)

Drawn from the run's records (`evaluation.monitoring_records`) after every
`evaluation.drift --run RUN` and every live evaluation, and by
`evaluation.task --run RUN --report-only`: per feature the distance and its
threshold at each drift run (breaches ringed, and listed in a table per
feature), the served model's score distribution in the latest drift run
against its reference, the live metrics with their 95% intervals against
the pushed test figures, and which version was served when (dotted lines on
every time axis, and a table). Figures are PNGs inside the page (data URIs),
so the one file opens from disk with no network and no script, and is
replaced atomically. A tuning run's `history.html` links to it.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import math
import os
import sys
import tempfile

from evaluation.monitoring_records import (
    DriftRecord,
    LiveRecord,
    Measurement,
    ServedVersion,
    drift_records,
    live_records,
    served_versions,
    write_record,
)
from trainer import storage
from trainer.atomic import write_text_atomically
from trainer.data.ingest import DataError
from trainer.layout import HISTORY_JSON, MONITORING_PAGE
from trainer.run_copy import MONITORING
from trainer.run_storage import on_run

FEATURES_PER_FIGURE = 12
DRAWN_FEATURES = 24  # panels drawn; every feature has its table (216 panels took 35 s and 9 MB)
MODEL_FIRST = ("served_model", "label_rate")  # what imbalanced data moves first: always drawn, first
LIVE_METRICS = ("pr_auc", "recall", "precision")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em;overflow-wrap:break-word}
h1{font-size:1.6em} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.scroll{overflow-x:auto;max-width:100%} table{border-collapse:collapse;font-size:.88em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right} th{background:#f3f3f3}
td.name,th.name{text-align:left} tr.breach td{background:#fadbd8;color:#78281f} .breach{color:#a93226;font-weight:bold}
.note{color:#555;font-size:.9em} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
summary{cursor:pointer;margin:.2em 0} tr.served td{font-weight:bold}
"""


def record_and_redraw(run_dir: str, kind: str, payload: dict) -> None:
    """Writes a run's record of one drift or live run and draws its page again.

    The caller's own output is already written: a run directory that cannot
    take the record (read-only, full) costs a warning line, not the result.
    """
    try:
        write_record(run_dir, kind, payload)
        write_monitoring_page(run_dir)
    except (OSError, DataError) as error:
        print(f"warning: the monitoring record or page of {run_dir} was not written: {error}", file=sys.stderr)


def write_monitoring_page(run_dir: str) -> str:
    """Draws `RUN/monitoring.html` from the run's records; returns its path."""
    drifts, lives, versions = drift_records(run_dir), live_records(run_dir), served_versions(run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        body = [f"<h1>Monitoring: {html.escape(os.path.basename(os.path.abspath(run_dir)))}</h1>",
                _summary(drifts, lives, versions), _versions_section(versions, drifts, lives),
                _drift_section(drifts, _pushes(versions, drifts), scratch), _scores_section(drifts, scratch),
                _live_section(lives, _pushes(versions, lives), scratch),
                f"<p class='note'>Drawn {_now()} UTC from RUN/monitoring/ ({len(drifts)} drift and {len(lives)} live"
                " records) and the served versions' push records.</p>"]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Monitoring</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    path = os.path.join(run_dir, MONITORING_PAGE)
    write_text_atomically(path, page)
    if os.path.exists(os.path.join(run_dir, HISTORY_JSON)):  # a tuning run: its history page links here
        from tuning.executions import write_history

        write_history(run_dir)
    return path


def _pushes(versions: list[ServedVersion], records: list) -> list[tuple[float, int]]:
    """(time, version) of the pushes after the first of `records`: the version lines of its time axes."""
    first = min((_when(r.time) for r in records), default=None)
    return [(_when(v.since), v.version) for v in versions if v.since and first is not None and _when(v.since) > first]


def _shown(iso: str | None) -> str:
    """An ISO time as the tables show it: `2026-11-03 12:00:00` (UTC)."""
    if iso is None:
        return "–"
    moment = datetime.datetime.fromisoformat(iso)
    moment = moment.astimezone(datetime.UTC) if moment.tzinfo else moment
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _when(iso: str) -> float:
    """An ISO time as a matplotlib date number (UTC when no zone is given)."""
    import matplotlib.dates as mdates

    moment = datetime.datetime.fromisoformat(iso)
    return mdates.date2num(moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _embed(path: str | None, alt: str) -> str:
    """The PNG inside the page (a data URI): the page is one file."""
    if path is None:
        return ""
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _summary(drifts: list[DriftRecord], lives: list[LiveRecord], versions: list[ServedVersion]) -> str:
    served = f"version {versions[-1].version}" if versions else "nothing"
    parts = [f"Served now: {served}."]
    if drifts:
        latest = drifts[-1]
        breached = [name for name, ms in latest.features.items() if any(m.breached for m in ms)]
        parts.append(f"Latest drift run {_shown(latest.time)}: " + (
            f"<span class='breach'>{len(breached)} breached: {html.escape(', '.join(breached))}</span>."
            if breached else "nothing breached."))
    if lives:
        latest = lives[-1]
        parts.append(f"Latest live evaluation {_shown(latest.time)}: " + (
            f"<span class='breach'>{len(latest.alerts)} alert(s)</span>." if latest.alerts else "no alert."))
    return f"<p>{' '.join(parts)}</p>"


def _versions_section(versions: list[ServedVersion], drifts: list[DriftRecord], lives: list[LiveRecord]) -> str:
    rows = []
    for index, v in enumerate(versions):
        until = _shown(versions[index + 1].since) if index + 1 < len(versions) else "now"
        judged = sum(r.served_version == v.version for r in drifts)
        evaluated = sum(r.served_version == v.version for r in lives)
        model = v.model + (" (--push-anyway)" if v.push_anyway else "")
        css = " class='served'" if index == len(versions) - 1 else ""
        # A version exported directly has no push record: its threshold as the drift and live runs read it.
        recorded = [r.threshold for r in drifts + lives if r.served_version == v.version and r.threshold is not None]
        threshold = v.threshold if v.threshold is not None else (recorded[-1] if recorded else None)
        cells = [str(v.version), _shown(v.since), until, v.execution or "–", model, _fmt(threshold),
                 str(judged), str(evaluated)]
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<h2>Served versions</h2><p class='note'>TF Serving serves the latest version under serving_model/;"
            " each was served from its push (its execution's finish; for a version exported directly, its"
            " SavedModel's time) until the next. Dotted green lines on the figures mark the pushes.</p>"
            "<div class='scroll'><table><tr><th>version</th><th>served from (UTC)</th><th>until</th>"
            "<th>execution</th><th>model</th><th>threshold</th><th>drift runs</th><th>live evaluations</th></tr>"
            f"{''.join(rows)}</table></div>")


def feature_series(drifts: list[DriftRecord]) -> dict[str, dict[str, list[tuple[float, Measurement]]]]:
    """feature -> measurement type -> (time, measurement) per drift run that measured it, oldest first."""
    series: dict[str, dict[str, list]] = {}
    for record in drifts:
        for name, measurements in record.features.items():
            for m in measurements:
                series.setdefault(name, {}).setdefault(m.type, []).append((_when(record.time), m))
    return series


def _drift_section(drifts: list[DriftRecord], lines, scratch: str) -> str:
    from evaluation.monitoring_plots import feature_distances

    head = "<h2>Skew and drift per feature</h2>"
    if not drifts:
        return head + "<p>No drift run yet: <code>python -m evaluation.drift --run RUN --data ...</code>.</p>"
    series = feature_series(drifts)
    names = ranked(series)
    drawn = names[:max(DRAWN_FEATURES, sum(name.split(".")[0] in MODEL_FIRST for name in names))]
    images = []
    for start in range(0, len(drawn), FEATURES_PER_FIGURE):
        chunk = {name: series[name] for name in drawn[start:start + FEATURES_PER_FIGURE]}
        path = feature_distances(chunk, lines, os.path.join(scratch, f"features-{start}.png"))
        images.append(_embed(path, f"distances of {', '.join(chunk)}"))
    shown = "" if len(drawn) == len(names) else (
        f" Drawn: the model's and the label's comparisons, then the {len(drawn)} features nearest (or over) their"
        f" thresholds at any run; all {len(names)} have a table.")
    note = ("<p class='note'>One point per drift run; the dashed line is the threshold of that run (a feature's"
            " comparator in the schema, else the default); a red ring is a breach, a grey dot a distance on too"
            f" few rows to judge. Each feature's table lists every run, oldest first.{shown}</p>")
    return head + note + "".join(images) + "".join(_feature_table(drifts, name) for name in names)


def ranked(series: dict[str, dict[str, list[tuple[float, Measurement]]]]) -> list[str]:
    """Feature names: the model's and the label's first, then by the largest distance / threshold at any run."""
    def closeness(name: str) -> float:
        ratios = [m.value / m.threshold if m.threshold > 0 else (math.inf if m.value else 0.0)
                  for points in series[name].values() for _, m in points if m.value is not None]
        breached = any(m.breached for points in series[name].values() for _, m in points)
        return math.inf if breached else max(ratios, default=0.0)

    return sorted(series, key=lambda name: (name.split(".")[0] not in MODEL_FIRST, -closeness(name)))


def _feature_table(drifts: list[DriftRecord], name: str) -> str:
    rows, breaches, runs = [], 0, 0
    for record in drifts:
        measurements = record.features.get(name, ())
        runs += bool(measurements)
        breaches += any(m.breached for m in measurements)
        for m in measurements:
            cells = [_shown(record.time), "–" if record.served_version is None else str(record.served_version), m.type,
                     _fmt(m.value), _fmt(m.threshold), f"{m.reference_n:,} / {m.current_n:,}", m.status, m.detail]
            css = " class='breach'" if m.breached else ""
            rows.append(f"<tr{css}>" + "".join(f"<td class='name'>{html.escape(c)}</td>" for c in cells) + "</tr>")
    marker = f" <span class='breach'>{breaches} breach(es)</span>" if breaches else ""
    return (f"<details data-feature='{html.escape(name)}'><summary>{html.escape(name)}: {runs} run(s){marker}"
            "</summary><div class='scroll'><table><tr><th class='name'>drift run (UTC)</th><th class='name'>version"
            "</th><th class='name'>measurement</th><th class='name'>distance</th><th class='name'>threshold</th>"
            "<th class='name'>n reference / current</th><th class='name'>status</th><th class='name'>detail</th></tr>"
            f"{''.join(rows)}</table></div></details>")


def _scores_section(drifts: list[DriftRecord], scratch: str) -> str:
    from evaluation.monitoring_plots import score_distributions

    scored = [r for r in drifts if r.scores is not None]
    if not scored:
        return ""
    latest = scored[-1]
    path = score_distributions(*latest.scores, latest.threshold, ("reference", "now"),
                               os.path.join(scratch, "scores.png"))
    return ("<h2>Score distribution: now vs at training</h2>"
            f"<p class='note'>Latest scored drift run ({_shown(latest.time)}, version {latest.served_version}):"
            f" {html.escape(latest.data)} against {html.escape(latest.score_reference or latest.reference)}, both"
            " scored by the served model;"
            " equal-width histograms as densities. The distance is the <code>served_model.score</code> panel"
            " above.</p>" + _embed(path, "score distributions"))


def _live_section(lives: list[LiveRecord], lines, scratch: str) -> str:
    from evaluation.monitoring_plots import live_metrics

    head = "<h2>Live metrics on late labels</h2>"
    if not lives:
        return head + "<p>No live evaluation yet: <code>python -m evaluation.task --run RUN --labels ...</code>.</p>"
    series = {name: [(_when(r.time), r.metrics[name], r.pushed.get(name),
                      any(a.startswith(f"{name}:") for a in r.alerts)) for r in lives if name in r.metrics]
              for name in LIVE_METRICS}
    path = live_metrics({k: v for k, v in series.items() if v}, lines, os.path.join(scratch, "live.png"))
    rows = []
    for r in lives:
        cells = [_shown(r.time), str(r.served_version), f"{r.matched:,}", f"{r.positives:,}"]
        for name in LIVE_METRICS:
            m = r.metrics.get(name)
            cells.append("–" if m is None else f"{_fmt(m.value)} [{_fmt(m.lower, 3)}, {_fmt(m.upper, 3)}]"
                         f" <span class='note'>pushed {_fmt(r.pushed.get(name))}</span>")
        alert = html.escape("; ".join(r.alerts)) if r.alerts else ("none" if r.enough_positives
                                                                   else "too few positives to alert")
        css = " class='breach'" if r.alerts else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + f"<td class='name'>{alert}</td></tr>")
    return (head + "<p class='note'>TFMA's figures at the served threshold on the predictions joined with their"
            " labels, with 95% jackknife intervals (vertical bars); dashed: the served execution's test figures"
            " from the same estimator; a red ring is an alert (the live upper bound below the pushed figure less"
            " the tolerance, with enough positives).</p>" + _embed(path, "live metrics")
            + "<div class='scroll'><table><tr><th>live run (UTC)</th><th>version</th><th>labelled</th>"
            "<th>positives</th><th>PR-AUC</th><th>recall</th><th>precision</th><th class='name'>alerts</th></tr>"
            f"{''.join(rows)}</table></div>")


def main(argv: list[str] | None = None) -> int:
    from trainer import cli

    parser = argparse.ArgumentParser(prog="python -m evaluation.monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run directory (its monitoring/ records)")
    args = parser.parse_args(argv)
    return cli.run_entry_point(lambda: _write_page(args.run))


def _write_page(run: str) -> int:
    if not storage.is_remote(run) and not os.path.isdir(run):  # a remote one: on_run says it is missing
        raise DataError(f"--run {run}: no such run directory")
    page, where = on_run(run, write_monitoring_page, MONITORING)
    print(where(page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
