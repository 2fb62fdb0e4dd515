"""Reading what training left in a run directory (docs/design.md §10).

Everything the evaluation needs from a run is looked up here, once: the two
exported models (latest integer version), their decision thresholds from
`run.json`, the schema, the per-epoch histories and the tuner's trials.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

from trainer.data.schema import Schema, load_schema
from trainer.layout import DATA_DIR, MODEL_DIRS, RUN_JSON, history_path, list_versions, trials_path
from trainer.layout import split_pattern as _split_pattern
from trainer.summary import RunSummary, ThresholdRecord, read_run

# TFMA model names: the weighted candidate, its unweighted twin and the model
# being served (the push gate's reference, docs/design.md §10).
CANDIDATE, BASELINE, SERVED = "candidate", "baseline", "served"
RUN_KEYS = {CANDIDATE: "weighted", BASELINE: "baseline"}  # their keys in run.json / history/
LABELS = {CANDIDATE: "weighted", BASELINE: "unweighted baseline", SERVED: "served"}  # for the report


@dataclasses.dataclass(frozen=True)
class HeldOutPoint:
    """Where a model's threshold was chosen: its precision there and how many examples it flagged.

    Attributes:
      precision: Precision at the threshold on the held-out data (validation,
        or out-of-fold predictions).
      flagged: Held-out examples scored at or above the threshold.
    """

    precision: float
    flagged: int


@dataclasses.dataclass(frozen=True)
class EvaluatedModel:
    """One model under evaluation.

    Attributes:
      name: TFMA model name (`candidate` or `baseline`).
      path: SavedModel directory (one integer version).
      threshold: The model's own decision threshold on the minority score.
      label: Human-readable name for the report.
      held_out: Where `threshold` was chosen (run.json's `threshold` record),
        or None when unknown: a run written before `held_out_flagged` was
        recorded, the served model, or an overridden threshold.
    """

    name: str
    path: str
    threshold: float
    label: str
    held_out: HeldOutPoint | None = None


def latest_version(base: str) -> str:
    """The highest complete integer version directory under `base`.

    Raises:
      FileNotFoundError: no complete integer version exists.
    """
    versions = list_versions(base)
    if not versions:
        raise FileNotFoundError(f"no exported model version under {base}")
    return versions[max(versions)]


def load_run_json(run_dir: str) -> RunSummary:
    """`RUN/run.json` (`trainer.summary.read_run`); unlike there, its absence is an error here."""
    path = os.path.join(run_dir, RUN_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: train the run first")
    return read_run(run_dir)


def run_models(run_dir: str, run_json: RunSummary | None = None) -> list[EvaluatedModel]:
    """The candidate (weighted) and baseline models of a run, latest versions.

    The threshold of each comes from its own `run.json` section, because the
    two models were thresholded separately on validation.
    """
    run_json = run_json if run_json is not None else load_run_json(run_dir)
    models = []
    for name in (CANDIDATE, BASELINE):
        section = run_json.model(RUN_KEYS[name])
        if section is None:
            if name == BASELINE:  # trainer.task trains one weighted model; only a tuning execution has the twin
                raise FileNotFoundError(f"{run_dir} has no unweighted twin to compare with (a trainer.task run "
                                        "trains one model): evaluate a tuning run (make tune, python -m tuning.task)")
            raise FileNotFoundError(f"run.json has no '{RUN_KEYS[name]}' section: train it first")
        export_dir = section.export_dir or MODEL_DIRS[RUN_KEYS[name]]
        models.append(EvaluatedModel(
            name=name,
            path=latest_version(os.path.join(run_dir, export_dir)),
            threshold=float(section.threshold.value),
            label=LABELS[name],
            held_out=held_out_point(section.threshold),
        ))
    return models


def held_out_point(record: ThresholdRecord) -> HeldOutPoint | None:
    """The held-out precision and flagged count of a run.json `threshold` record, if it has both."""
    flagged, precision = record.held_out_flagged, record.validation_precision
    if flagged is None or precision is None:
        return None
    return HeldOutPoint(precision=float(precision), flagged=int(flagged))


def split_pattern(run_dir: str, split: str = "test") -> str:
    """Glob of a split's gzipped tf.Example shards."""
    return _split_pattern(run_dir, split)


def run_schema(run_dir: str) -> Schema:
    return load_schema(os.path.join(run_dir, DATA_DIR))


def load_histories(run_dir: str) -> dict[str, dict[str, list[float]]]:
    """`{"weighted": {...}, "baseline": {...}}` per-epoch Keras metrics (missing ones skipped)."""
    histories = {}
    for key in RUN_KEYS.values():
        path = history_path(run_dir, key)
        if os.path.exists(path):
            with open(path) as handle:
                histories[key] = json.load(handle)
    return histories


def load_trials(run_dir: str) -> list[dict[str, str]]:
    """Rows of `RUN/tuning/trials.csv`, or [] when the run was not tuned."""
    path = trials_path(run_dir)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
