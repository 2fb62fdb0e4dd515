"""What the monitoring page is drawn from: one record per drift or live-evaluation run, and the push records.

`evaluation.drift --run RUN` and the live evaluation (`evaluation.live`)
write, besides their `--output`, one JSON record under the run:
`RUN/monitoring/<kind>-<UTC time>.json` (`trainer.layout.MONITORING_DIR`;
kind `drift` or `live`), written atomically, never rewritten. The page
(`evaluation.monitoring`) reads them back as the typed records below; which
version was served when comes from the served versions' own push records
(`assets.extra/push.json`) and their executions' `run.json`, the sources
`RUN/history.json` is rebuilt from.

A drift record's comparisons are grouped per feature as TFDV's
`drift_skew_info` is (one entry per path, a list of measurements), so a
feature with two comparators (L-infinity and normalized absolute
difference) is one entry with two measurements, never two entries with
one name; `drift.json` has the same shape (`feature_measurements`).
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import math
import os
from collections.abc import Iterable

from trainer.atomic import write_json_atomically
from trainer.data.ingest import DataError
from trainer.layout import (
    DRIFT_RECORD,
    LIVE_RECORD,
    MONITORING_DIR,
    SAVED_MODEL_FILE,
    SERVING_DIR,
    execution_dir,
    list_versions,
    read_push_record,
)
from trainer.summary import read_run

STAMP = "%Y%m%dT%H%M%S.%fZ"  # file names sort by time as text


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One distance of one feature in one drift run (`evaluation.skew.Comparison`, as recorded)."""

    type: str  # TFDV's DriftSkewInfo.Measurement.Type name: L_INFTY, JENSEN_SHANNON_DIVERGENCE, ...
    value: float | None
    threshold: float
    reference_n: int
    current_n: int
    status: str  # ok, breach, too few rows to judge, or why it could not be computed
    detail: str = ""

    @property
    def breached(self) -> bool:
        return self.status == "breach" or self.status.startswith("no values")


@dataclasses.dataclass(frozen=True)
class ScoreHistogram:
    """One side's served-model scores: an equal-width histogram ((low, high, count), ...) and the flagged share."""

    buckets: tuple[tuple[float, float, float], ...]
    count: int
    positive_rate: float


@dataclasses.dataclass(frozen=True)
class DriftRecord:
    time: str  # ISO 8601, UTC
    mode: str  # skew (against the training statistics) or drift (against --reference)
    served_version: int | None
    data: str  # what was judged: --data or --logs
    reference: str  # --reference, or the served version's training statistics
    features: dict[str, tuple[Measurement, ...]]  # feature name -> its measurements, in the run's order
    threshold: float | None = None  # the served threshold the positive rate was counted at
    scores: tuple[ScoreHistogram, ScoreHistogram] | None = None  # (reference, current), when a model scored
    score_reference: str = ""  # the rows the reference scores are of


@dataclasses.dataclass(frozen=True)
class Interval:
    value: float
    lower: float | None = None
    upper: float | None = None


@dataclasses.dataclass(frozen=True)
class LiveRecord:
    time: str
    served_version: int
    threshold: float
    matched: int
    positives: int
    metrics: dict[str, Interval]  # live: pr_auc, precision, recall (95% jackknife intervals)
    pushed: dict[str, float]  # the served execution's test figures, same estimator
    alerts: tuple[str, ...]
    enough_positives: bool


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """A version under `RUN/serving_model/` and when it began to be served."""

    version: int
    since: str | None  # its execution's finish (the push), else the SavedModel's modification time
    execution: str | None
    model: str  # candidate, baseline (the unweighted twin), or exported (a trainer.task run)
    threshold: float | None
    push_anyway: bool = False


def feature_measurements(comparisons: Iterable) -> list[dict]:
    """Comparisons (`evaluation.skew.Comparison`) as JSON: one entry per feature with its measurements."""
    from evaluation.skew import Measurement as Proto

    features: dict[tuple[str, ...], dict] = {}
    for c in comparisons:
        entry = features.setdefault(c.path, {"name": c.name, "path": list(c.path), "measurements": []})
        entry["measurements"].append({"type": Proto.Type.Name(c.type), "value": c.value, "threshold": c.threshold,
                                      "reference_n": c.reference_n, "current_n": c.current_n, "status": c.status,
                                      "detail": c.detail})
    return list(features.values())


def score_histogram(summary) -> dict:
    """`evaluation.score_drift.summarize`'s (statistics, (rate, rows)) as JSON: the equal-width histogram."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    statistics, (rate, rows) = summary
    histogram = next((h for h in statistics.num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD),
                     None)
    buckets = [] if histogram is None else [
        [b.low_value, b.high_value, b.sample_count] for b in histogram.buckets
        if math.isfinite(b.low_value) and math.isfinite(b.high_value)]
    return {"buckets": buckets, "count": int(statistics.num_stats.common_stats.num_non_missing),
            "positive_rate": rate, "rows": rows}


def write_record(run_dir: str, kind: str, payload: dict, moment: datetime.datetime | None = None) -> str:
    """Writes `RUN/monitoring/<kind>-<time>.json` (with `time`: `moment`, default now) atomically; returns its path."""
    directory = os.path.join(run_dir, MONITORING_DIR)
    os.makedirs(directory, exist_ok=True)
    moment = (moment or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    while True:  # two runs in one microsecond: the later one a microsecond on
        path = os.path.join(directory, f"{kind}-{moment.strftime(STAMP)}.json")
        if not os.path.exists(path):
            break
        moment += datetime.timedelta(microseconds=1)
    write_json_atomically(path, {"time": moment.isoformat(timespec="seconds"), **payload})
    return path


def _records(run_dir: str, kind: str) -> list[dict]:
    records = []
    for path in sorted(glob.glob(os.path.join(run_dir, MONITORING_DIR, f"{kind}-*.json"))):
        try:
            with open(path) as handle:
                records.append(json.load(handle))
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a monitoring record ({error})") from None
    return records


def drift_records(run_dir: str) -> list[DriftRecord]:
    """The run's drift records, oldest first."""
    result = []
    for record in _records(run_dir, DRIFT_RECORD):
        features = {f["name"]: tuple(Measurement(**m) for m in f["measurements"]) for f in record["features"]}
        scores = record.get("scores")
        if scores:
            scores = tuple(ScoreHistogram(tuple(map(tuple, side["buckets"])), side["count"], side["positive_rate"])
                           for side in (scores["reference"], scores["current"]))
        result.append(DriftRecord(record["time"], record["mode"], record.get("served_version"), record["data"],
                                  record["reference"], features, record.get("threshold"), scores or None,
                                  (record.get("scores") or {}).get("reference_rows", "")))
    return result


def live_records(run_dir: str) -> list[LiveRecord]:
    """The run's live-evaluation records, oldest first."""
    result = []
    for record in _records(run_dir, LIVE_RECORD):
        metrics = {name: Interval(m["value"], m.get("lower"), m.get("upper")) for name, m in record["metrics"].items()}
        pushed = {name: m["value"] for name, m in record["pushed_test"].items()}
        result.append(LiveRecord(record["time"], record["version"], record["threshold"], record["matched"],
                                 record["positives"], metrics, pushed, tuple(record["alerts"]),
                                 record["enough_positives"]))
    return result


def served_versions(run_dir: str) -> list[ServedVersion]:
    """Every version under `RUN/serving_model/`, oldest first, with when it was pushed."""

    result = []
    for version, path in sorted(list_versions(os.path.join(run_dir, SERVING_DIR)).items()):
        push = read_push_record(path)
        execution = push.get("execution")
        since = (read_run(execution_dir(run_dir, str(execution))).execution or {}).get("finished") \
            if execution else None
        if since is None:
            modified = os.path.getmtime(os.path.join(path, SAVED_MODEL_FILE))
            since = datetime.datetime.fromtimestamp(modified, datetime.UTC).isoformat(timespec="seconds")
        result.append(ServedVersion(version, since, str(execution) if execution else None,
                                    push.get("model", "candidate") if push else "exported", push.get("threshold"),
                                    bool(push.get("push_anyway", False))))
    return result
