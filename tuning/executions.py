"""Executions of a tuning run: start or resume one, and the history of all.

Every `make tune` on the same `RUN` is a new execution with its own data
split, tuning project, candidate, evaluation and report, under
`RUN/executions/<id>/` (layout: `trainer.layout`). An execution that did not
finish (interrupted, killed, a failed step) is resumed by the next command;
a finished one is never redone. `RUN/history.json` and `RUN/history.html`
list every execution; they are rebuilt from the executions' own `run.json`
files, which stay the one record.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import html
import os

from trainer import storage
from trainer.atomic import write_json_atomically, write_text_atomically
from trainer.config import RunConfig
from trainer.data.ingest import BUILTIN_DATASETS
from trainer.layout import (
    EXECUTIONS_DIR,
    HISTORY_HTML,
    HISTORY_JSON,
    MONITORING_PAGE,
    REPORT_DIR,
    REPORT_PAGE,
    execution_dir,
    execution_ids,
    is_complete,
)
from trainer.summary import read_run


@dataclasses.dataclass(frozen=True)
class Execution:
    """One execution: its id, directory, and whether it resumes an unfinished one."""

    id: str
    path: str
    resumed: bool


def begin_execution(run_dir: str) -> Execution:
    """The unfinished latest execution of `run_dir`, or a new one after it.

    Concurrent callers (keras-tuner's chief and workers over one `RUN`) get
    the same answer, because the id depends only on what is on disk.
    """
    ids = execution_ids(run_dir)
    if ids and not is_complete(execution_dir(run_dir, ids[-1])):
        return Execution(ids[-1], execution_dir(run_dir, ids[-1]), resumed=True)
    new_id = f"{int(ids[-1]) + 1 if ids else 1:04d}"
    # Not created here: preparing the data creates it, once the input is valid,
    # so bad input leaves the run exactly as it was.
    return Execution(new_id, execution_dir(run_dir, new_id), resumed=False)


def describe_data(config: RunConfig, counts: dict[str, list[int]]) -> dict:
    """What the execution was trained on: source, class counts and a fingerprint.

    The fingerprint hashes the input files' names, sizes and modification
    times (not their bytes, which can be terabytes) with the split settings,
    so two executions on the same unchanged files share it.
    """
    files = storage.file_facts(config.data) if config.data not in BUILTIN_DATASETS else []
    digest = hashlib.sha256(repr((config.data, config.label, config.seed, list(config.split))).encode())
    for facts in files:  # (path, size, modification time), on local disk or object storage
        digest.update(repr(facts).encode())
    return {"source": config.data, "files": len(files) if files else None, "fingerprint": digest.hexdigest()[:16],
            "rows": sum(sum(pair) for pair in counts.values()),
            "positives": sum(pair[1] for pair in counts.values())}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_history(run_dir: str) -> str:
    """Rebuilds `RUN/history.json` and `RUN/history.html`; returns the page's path."""
    rows = [history_row(run_dir, execution_id) for execution_id in execution_ids(run_dir)]
    write_json_atomically(os.path.join(run_dir, HISTORY_JSON), {"executions": rows})
    path = os.path.join(run_dir, HISTORY_HTML)
    write_text_atomically(path, _history_page(rows, os.path.exists(os.path.join(run_dir, MONITORING_PAGE))))
    return path


def history_row(run_dir: str, execution_id: str) -> dict:
    """One execution's line of the history, from its run.json."""
    run = read_run(execution_dir(run_dir, execution_id))
    info, evaluation, push = run.execution or {}, run.evaluation, run.push or {}
    test = run.weighted.test if run.weighted is not None else None
    return {"id": execution_id, "started": info.get("started"), "finished": info.get("finished"),
            "status": run.status or "running", "data": info.get("data", {}),
            "verdict": evaluation.verdict if evaluation else None,
            "failures": (evaluation.failures if evaluation else None) or [],
            "pushed_version": push.get("version"), "push_anyway": push.get("push_anyway", False),
            # Which model was pushed: on a first execution the gate may serve the unweighted twin.
            "pushed_model": push.get("model") or ("candidate" if push.get("pushed") else None),
            "push_reason": push.get("reason"),
            "metrics": {key: getattr(test, key) if test is not None else None
                        for key in ("pr_auc", "recall", "precision", "threshold")},
            "report": os.path.join(EXECUTIONS_DIR, execution_id, REPORT_DIR, REPORT_PAGE) if evaluation else None}


def _history_page(rows: list[dict], monitoring: bool = False) -> str:
    """The executions newest first; a link to `monitoring.html` once a drift or live run has drawn it."""
    head = ("<tr><th>execution</th><th>started (UTC)</th><th>data</th><th>rows / positives</th><th>status</th>"
            "<th>verdict</th><th>pushed as version</th><th>test PR-AUC</th><th>recall / precision</th>"
            "<th>report</th></tr>")
    lines = []
    for row in reversed(rows):  # newest first
        data, metrics = row["data"], row["metrics"]
        pushed = "–" if row["pushed_version"] is None else str(row["pushed_version"])
        if row["push_anyway"]:
            pushed += " (--push-anyway)"
        if row["pushed_model"] == "baseline":
            pushed += " (the unweighted twin)"
        report = f"<a href='{html.escape(row['report'])}'>report</a>" if row["report"] else "–"
        cells = [row["id"], row["started"] or "–",
                 f"{data.get('source', '–')} <small>{data.get('fingerprint', '')}</small>",
                 f"{data.get('rows', '–')} / {data.get('positives', '–')}", row["status"], row["verdict"] or "–",
                 pushed, _number(metrics.get("pr_auc")),
                 f"{_number(metrics.get('recall'))} / {_number(metrics.get('precision'))}"]
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{report}</td></tr>")
    link = (f"<p><a href='{MONITORING_PAGE}'>Monitoring</a>: drift per feature, score distribution, live metrics and"
            " the served versions over time.</p>" if monitoring else "")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Run history</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em} table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em}</style></head><body><h1>Executions of this run</h1>"
            f"{link}<table>{head}{''.join(lines)}</table></body></html>")


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"
