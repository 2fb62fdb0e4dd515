"""A run's results as typed, frozen objects: the one home for reading and writing run.json's sections.

`run.json` (docs/design.md §10) keeps its JSON keys; in memory a trained
model's section is a `ModelSummary` (its `ThresholdRecord`, `TestMetrics`,
members and rows), and the file as a whole a `RunSummary`. `from_json`
rejects a key it does not know with one line naming it, so a misspelt or
newly written key cannot be read as "absent"; keys a field was added for
later are optional (None), so the run.json files older runs wrote still read.
`to_json` leaves out optional fields that are None, as those runs did
(`trainer.json_record`).

Sections not typed yet (`tuning`, `execution`, `push`, `weighting_study`,
`refit_full`) are the JSON values as recorded.

Plain Python: the evaluation's run readers and the server import it without
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from trainer.atomic import write_json_atomically
from trainer.config import RunConfig
from trainer.json_record import JsonRecord, RunJsonError
from trainer.layout import RUN_JSON, read_run_json

# The threshold objective of a run whose run.json records none: RunConfig's own default, stated once.
DEFAULT_THRESHOLD_OBJECTIVE = {f.name: f for f in dataclasses.fields(RunConfig)}["threshold_objective"].default


@dataclasses.dataclass(frozen=True)
class TestMetrics(JsonRecord):
    """Minority-class metrics on the test split at the model's threshold (`trainer.finalize.test_metrics`).

    Attributes:
      examples, positives: Test examples, and those of class 1.
      pr_auc, roc_auc: Of the exported (calibrated) score.
      threshold: The decision threshold they were measured at.
      precision, recall: Of class 1 at `threshold`.
      brier_before, brier, ece_before, ece: Brier score and expected
        calibration error of the raw sigmoid(logit) and of the exported score.
    """

    __test__ = False  # not a pytest test class, whatever its name

    examples: int
    positives: int
    pr_auc: float
    roc_auc: float
    threshold: float
    precision: float
    recall: float
    brier_before: float | None = None
    brier: float | None = None
    ece_before: float | None = None
    ece: float | None = None


@dataclasses.dataclass(frozen=True)
class ThresholdRecord(JsonRecord):
    """Where a model's decision threshold was chosen on held-out data (`trainer.threshold.choose_threshold`).

    Attributes:
      value: The threshold on the exported score.
      objective: The threshold objective it was chosen for.
      fallback: The objective's operating point was unreachable.
      validation_precision, validation_recall: At `value` on the held-out data.
      held_out_examples, held_out_flagged: Held-out examples, and those at or
        above `value`: the precision's sample size (evaluation/gate.py).
    """

    value: float
    objective: str | None = None
    fallback: bool | None = None
    validation_precision: float | None = None
    validation_recall: float | None = None
    held_out_examples: int | None = None
    held_out_flagged: int | None = None


@dataclasses.dataclass(frozen=True)
class RowsSeen(JsonRecord):
    """Which rows a member of the exported model was trained on, in numbers and words."""

    rows: int
    how: str


@dataclasses.dataclass(frozen=True)
class MemberSummary(JsonRecord):
    """One member of an exported ensemble (`trainer.pipeline`): its weight, origin and size.

    Attributes:
      weight: Its weight in the averaged probability.
      hyperparameters: Its hyperparameter values.
      trial, name: The search trial it came from, and its portfolio name.
      model_family, loss, weight_ratio: What it is and how it was weighted.
      held_out_score: The search objective on held-out data.
      rounds, refit_rows, epochs_run, best_epochs, cross_validation: How it
        was grown (`trainer.candidates`); `trainer.refit` grows it again so.
    """

    weight: float
    hyperparameters: dict
    trial: str | None = None
    name: str | None = None
    model_family: str | None = None
    weight_ratio: float | None = None
    loss: str | None = None
    held_out_score: float | None = None
    rounds: Any = None
    refit_rows: int | None = None
    epochs_run: Any = None
    best_epochs: list | None = None
    cross_validation: dict | None = None


@dataclasses.dataclass(frozen=True)
class ModelSummary(JsonRecord):
    """run.json's `weighted` or `baseline` section: one exported model and how it did on test.

    `trainer.finalize` fills the first group, `trainer.pipeline` the rest.

    Attributes:
      version_dir: The exported version directory.
      threshold: Its decision threshold, chosen on held-out data.
      test: Its metrics on the test split.
      loss, weights, weight_ratio, weight_source: The (heaviest member's)
        loss and class weights [w0, w1], w1/w0, and how they were chosen.
      calibration: `trainer.calibration.Calibration.to_json()`'s record.
      export_dir: Its model directory, relative to the run.
      hyperparameters, model_family, selection, held_out_score: What was
        trained, how the model was selected and its held-out objective.
      epochs_run, best_epochs, rounds, refit_rows, cross_validation: How it
        was grown (`trainer.candidates`' facts).
      train_seconds, class_counts, replicas, workers: The training's cost,
        the split's [class 0, class 1] counts and its distribution.
      rows_seen: Per member, the rows it was trained on.
      reused: Per member, whether an earlier training was reused.
      members: An ensemble's members (None: one model).
    """

    LEGACY = frozenset({"blend"})  # a two-model blend's partner, before ensembles had `members`

    version_dir: str
    threshold: ThresholdRecord
    test: TestMetrics | None = None
    loss: str | None = None
    weights: list | None = None
    weight_ratio: float | None = None
    weight_source: str | None = None
    calibration: dict | None = None
    export_dir: str | None = None
    hyperparameters: dict | None = None
    model_family: str | None = None
    selection: str | None = None
    held_out_score: float | None = None
    epochs_run: Any = None
    best_epochs: list | None = None
    rounds: Any = None
    refit_rows: int | None = None
    cross_validation: dict | None = None
    train_seconds: float | None = None
    class_counts: dict | None = None
    replicas: int | None = None
    workers: int | None = None
    rows_seen: tuple[RowsSeen, ...] | None = None
    reused: list | None = None
    members: tuple[MemberSummary, ...] | None = None



@dataclasses.dataclass(frozen=True)
class EvaluationRecord(JsonRecord):
    """run.json's `evaluation` section: what the push gate decided about an execution (`tuning.task`).

    Attributes:
      verdict: BLESSED or NOT_BLESSED.
      blessed: Whether every check passed (None in runs written before it
        was recorded: `verdict` says).
      verdict_file: The marker file written beside TFMA's output.
      compared_with: The reference, in words (the twin, or a served version).
      report: The HTML report's path.
      failures, checks: The failed checks, and every check, in words.
      decision: `evaluation.decision.Decision` as a dict: on a first
        execution, which model to serve (`serve`) and why.
      tfma_seconds: TFMA's wall time (None: `--report-only`).
      intervals, interval_methods: {model: {metric: [low, high]}} on the
        overall test slice, and how each was made (`evaluation.intervals`).
    """

    verdict: str
    blessed: bool | None = None
    verdict_file: str | None = None
    compared_with: str | None = None
    report: str | None = None
    failures: list | None = None
    checks: list | None = None
    decision: dict | None = None
    tfma_seconds: float | None = None
    intervals: dict | None = None
    interval_methods: dict | None = None



@dataclasses.dataclass(frozen=True)
class RunSummary(JsonRecord):
    """The whole of run.json.

    Attributes:
      config: The run's `RunConfig.to_dict()`.
      versions: The library versions that wrote it.
      weighted, baseline: The two exported models (None: not trained yet).
      bad_rows: The data step's skipped rows, when it recorded them.
      evaluation: A tuning execution's gate decision.
      status, execution, tuning, push, weighting_study, refit_full: A tuning
        execution's other sections (`tuning.pipeline`), as recorded.
    """

    WHERE = ""  # error messages name a section by its run.json key

    config: dict | None = None
    versions: dict | None = None
    weighted: ModelSummary | None = None
    baseline: ModelSummary | None = None
    bad_rows: Any = None
    status: str | None = None
    execution: dict | None = None
    tuning: dict | None = None
    evaluation: EvaluationRecord | None = None
    push: dict | None = None
    weighting_study: dict | None = None
    refit_full: dict | None = None


    def model(self, key: str) -> ModelSummary | None:
        """The section under a run.json model key (`weighted` or `baseline`)."""
        if key not in ("weighted", "baseline"):
            raise KeyError(f"run.json has no model section {key!r}")
        return getattr(self, key)

    @property
    def threshold_objective(self) -> str:
        """The run's threshold objective (RunConfig's default when run.json records none)."""
        return (self.config or {}).get("threshold_objective") or DEFAULT_THRESHOLD_OBJECTIVE


def read_run(directory: str) -> RunSummary:
    """`directory/run.json` as a RunSummary (empty when there is none yet).

    Raises:
      RunJsonError: a key this version does not know, naming the file.
    """
    try:
        return RunSummary.from_json(read_run_json(directory))
    except RunJsonError as error:
        raise RunJsonError(f"{os.path.join(directory, RUN_JSON)}: {str(error).removeprefix('run.json ')}") from None


def write_run(directory: str, run: RunSummary) -> None:
    """Writes `directory/run.json` atomically (a failed write keeps the old file)."""
    write_json_atomically(os.path.join(directory, RUN_JSON), run.to_json())
