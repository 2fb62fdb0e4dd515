"""The monitoring page: drawn from synthesized records (no TFMA), and once from a real drift run on the tiny run."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import shutil
import subprocess

import pytest

from evaluation.monitoring import write_monitoring_page
from evaluation.monitoring_records import drift_records, feature_measurements, served_versions, write_record
from evaluation.skew import Comparison, Measurement
from tests.test_evaluation import CHROMIUM_FLAGS, WIDTH_PROBE  # the report's width check, reused
from trainer.layout import DRIFT_RECORD, LIVE_RECORD, MONITORING_PAGE, SAVED_MODEL_FILE

DAY = datetime.timedelta(days=1)
START = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
JSD, L_INF, NAD = (Measurement.JENSEN_SHANNON_DIVERGENCE, Measurement.L_INFTY,
                   Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE)
# Per drift run (days 1, 2, 3): x0's JSD, channel's L-infinity and normalized absolute difference. Run 3 breaches x0.
X0 = [(0.031, 0.1), (0.047, 0.1), (0.412, 0.1)]
CHANNEL = [(0.02, 0.08), (0.03, 0.07), (0.05, 0.06)]
LIVE = [(0.61, 0.52, 0.70, 0.63), (0.41, 0.33, 0.49, 0.63)]  # PR-AUC value, lower, upper, pushed; run 2 alerts


def _comparisons(day: int) -> list[Comparison]:
    status = "breach" if X0[day][0] > X0[day][1] else "ok"
    return [Comparison(("x0",), JSD, X0[day][0], X0[day][1], 2000, 1800 + day, status),
            Comparison(("channel",), L_INF, CHANNEL[day][0], 0.1, 2000, 1800, "ok", "web"),
            Comparison(("channel",), NAD, CHANNEL[day][1], 0.5, 2000, 1800, "ok", "web"),
            Comparison(("served_model", "score"), JSD, 0.01, 0.1, 330, 1800, "ok")]


def _version(run, version: int, execution: str, finished: datetime.datetime) -> None:
    path = run / "serving_model" / str(version)
    (path / "assets.extra").mkdir(parents=True)
    (path / SAVED_MODEL_FILE).write_bytes(b"")
    (path / "assets.extra" / "push.json").write_text(json.dumps(
        {"execution": execution, "model": "candidate", "threshold": 0.3 + version / 10}))
    (run / "executions" / execution).mkdir(parents=True)
    (run / "executions" / execution / "run.json").write_text(json.dumps(
        {"status": "complete", "execution": {"id": execution, "started": (finished - DAY / 24).isoformat(),
                                             "finished": finished.isoformat(timespec="seconds")}}))


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A tuning-style run with versions 1 (before the records) and 2 (pushed between drift runs 2 and 3),
    three drift records and two live records; returns (run, page text)."""
    from tuning.executions import write_history

    run = tmp_path_factory.mktemp("monitored") / "run"
    _version(run, 1, "0001", START - DAY)
    _version(run, 2, "0002", START + 1.5 * DAY)
    write_history(str(run))
    histogram = {"buckets": [[0.0, 0.5, 300.0], [0.5, 1.0, 30.0]], "count": 330, "positive_rate": 0.08, "rows": 330}
    for day in range(3):
        write_record(str(run), DRIFT_RECORD, {
            "mode": "skew", "served_version": 1 if day < 2 else 2, "threshold": 0.4, "data": f"day{day}.csv",
            "reference": "training statistics", "features": feature_measurements(_comparisons(day)),
            "scores": {"reference": histogram, "current": {**histogram, "buckets": [[0.0, 0.5, 250.0],
                                                                                 [0.5, 1.0, 80.0]]}}},
            START + day * DAY)
    for day, (value, lower, upper, pushed) in enumerate(LIVE):
        alerts = [f"pr_auc: live {value}"] if upper < pushed - 0.02 else []
        interval = {"value": value, "lower": lower, "upper": upper}
        write_record(str(run), LIVE_RECORD, {
            "version": 2, "threshold": 0.5, "matched": 900, "positives": 60, "alerts": alerts,
            "enough_positives": True, "metrics": {"pr_auc": interval, "recall": interval, "precision": interval},
            "pushed_test": {name: {"value": pushed} for name in ("pr_auc", "recall", "precision")}},
            START + (day + 2.5) * DAY)
    path = write_monitoring_page(str(run))
    assert path == str(run / MONITORING_PAGE)
    return run, (run / MONITORING_PAGE).read_text(encoding="utf-8")


def _figures(page: str) -> dict[str, int]:
    """{axis title: data points drawn} over every PNG embedded in the page (`evaluation.plots` counts them)."""
    from PIL import Image

    from evaluation.plots import POINTS_KEY

    points = {}
    for data in re.findall(r"<img src='data:image/png;base64,([^']+)'", page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            points.update(json.loads(image.text[POINTS_KEY]))
    return points


def _table(page: str, feature: str) -> list[list[str]]:
    block = re.search(rf"<details data-feature='{re.escape(feature)}'>(.*?)</details>", page, re.S)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", block)[1:]]


def test_page_lists_every_point_in_order_marks_breaches_and_versions(monitored):
    run, page = monitored
    # Every feature's table: one row per drift run and measurement, oldest first, with its threshold.
    x0 = _table(page, "x0")
    assert [row[0] for row in x0] == sorted(row[0] for row in x0) and len(x0) == 3
    assert [(float(row[3]), float(row[4])) for row in x0] == X0
    assert [row[6] for row in x0] == ["ok", "ok", "breach"]
    assert [row[1] for row in x0] == ["1", "1", "2"]  # the version served at each run
    channel = _table(page, "channel")  # two comparators: one feature, two measurements per run
    assert [(row[2], float(row[3])) for row in channel] == [
        (kind, pair[i]) for pair in CHANNEL for i, kind in enumerate(("L_INFTY", "NORMALIZED_ABSOLUTE_DIFFERENCE"))]
    assert page.count("data-feature='channel'") == 1
    # The breach is marked: its row, the feature's summary, the page's summary.
    assert len(re.findall(r"<tr class='breach'><td class='name'>[^<]+</td><td class='name'>2</td>", page)) == 1
    assert "x0: 3 run(s) <span class='breach'>1 breach(es)</span>" in page
    assert "1 breached: x0" in page
    # Figures: one point per run and measurement; live metrics with both ends of each interval drawn.
    points = _figures(page)
    assert points["x0"] == 3 and points["channel"] == 6 and points["served_model.score"] == 3
    assert points["pr_auc"] == 3 * len(LIVE) and points["recall"] == 3 * len(LIVE)
    assert points["Score distribution: reference vs now"] == 4
    assert "0.4100 [0.330, 0.490]" in page and "pr_auc: live 0.41" in page
    # Which version was served when: both versions with their pushes, the latest marked as served.
    assert [v.version for v in served_versions(str(run))] == [1, 2]
    assert "<tr class='served'><td>2</td><td>2026-11-03 00:00:00</td><td>now</td><td>0002</td>" in page
    assert "<td>1</td><td>2026-10-31 12:00:00</td><td>2026-11-03 00:00:00</td><td>0001</td>" in page
    # Static: opens from disk, nothing fetched, no script; the tuning run's history page links to it.
    assert not re.search(r"https?://", page) and "<script" not in page
    assert f"href='{MONITORING_PAGE}'" in (run / "history.html").read_text(encoding="utf-8")


def test_records_are_one_entry_per_feature_and_the_page_redraws(monitored, tmp_path, capsys):
    from evaluation.monitoring import feature_series, main, ranked

    run, _ = monitored
    assert main(["--run", str(run)]) == 0 and capsys.readouterr().out.strip() == str(run / MONITORING_PAGE)
    assert main(["--run", str(tmp_path / "none")]) == 2 and capsys.readouterr().err.count("\n") == 1
    records = drift_records(str(run))
    assert [r.data for r in records] == ["day0.csv", "day1.csv", "day2.csv"]
    assert [m.type for m in records[0].features["channel"]] == ["L_INFTY", "NORMALIZED_ABSOLUTE_DIFFERENCE"]
    assert list(records[0].features) == ["x0", "channel", "served_model.score"]
    # Drawn first: the model's comparisons, then breached features, then the nearest to their thresholds.
    assert ranked(feature_series(records)) == ["served_model.score", "x0", "channel"]


def test_page_fits_a_laptop_screen(monitored, tmp_path):
    """At 1366 x 768 (as the report is checked in tests/test_evaluation.py) the page is no wider than the window,
    with every feature's table open."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on this machine: the page is checked as HTML only")
    page = monitored[1].replace("<details ", "<details open ")
    (tmp_path / "probe.html").write_text(page.replace("</body>", WIDTH_PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--dump-dom", f"file://{tmp_path / 'probe.html'}"],
                         check=False, timeout=120, capture_output=True, text=True).stdout
    page_width, window, body_content, body_box = map(int, re.search(r'data-widths="([\d ]+)"', dom)[1].split())
    assert window == 1366 and page_width <= window and body_content <= body_box, dom[:200]


def test_drift_run_on_a_served_run_records_and_draws(tiny_run, tmp_path, tiny_frame, capsys):
    """A real drift run against (a copy of) the tiny run: its record under the run, and the page drawn from it."""
    from evaluation.drift import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0].output_dir, run, ignore=shutil.ignore_patterns("evaluation", "report", "logs",
                                                                              "monitoring*"))
    shifted = tiny_frame.copy()
    shifted["x0"] += 2.0
    for name, frame in (("same", tiny_frame), ("shifted", shifted)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        main(["--run", str(run), "--data", str(tmp_path / f"{name}.csv"), "--output", str(tmp_path / name)])
    capsys.readouterr()
    records = drift_records(str(run))
    assert len(os.listdir(run / "monitoring")) == 2 and [r.data.split("/")[-1] for r in records] == \
        ["same.csv", "shifted.csv"]
    drift_json = json.loads((tmp_path / "shifted" / "drift.json").read_text())
    names = [f["name"] for f in drift_json["features"]]
    assert len(names) == len(set(names)) and names == list(records[1].features)
    assert [m.status for m in records[1].features["x0"]] == ["breach"]
    assert records[1].scores is not None and records[1].scores[0].count > 0
    assert records[1].scores[1].count == len(shifted) and records[1].score_reference.startswith("the served exec")
    page = (run / MONITORING_PAGE).read_text(encoding="utf-8")
    assert len(_table(page, "x0")) == 2 and _figures(page)["x0"] == 2
    assert "Score distribution: now vs at training" in page and not re.search(r"https?://", page)
