"""`run_evaluation`: TFMA on both models -> BLESSED / NOT_BLESSED -> report."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from evaluation.blessing import read_verdict, write_marker
from evaluation.decision import Decision, decide
from evaluation.gate import Gate, resolve_gate
from evaluation.options import EvaluationOptions
from evaluation.predictions import predict_test, reliability
from evaluation.results import OVERALL, load_model_result
from evaluation.run_files import (
    BASELINE,
    CANDIDATE,
    LABELS,
    SERVED,
    EvaluatedModel,
    load_histories,
    load_run_json,
    load_trials,
    run_models,
    run_schema,
    split_pattern,
)
from trainer import progress
from trainer.atomic import write_json_atomically
from trainer.layout import EVALUATION_DIR, REPORT_DIR
from trainer.summary import RunSummary

SUMMARY_FILE = "summary.json"  # in EVALUATION_DIR


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
    """What `run_evaluation` found (`to_json()` is `RUN/evaluation/summary.json`).

    Attributes:
      blessed: TFMA's verdict on the candidate: every check passed.
      failures: The failed checks, in words.
      checks: The gate in words, with the measured values.
      gate: The resolved push gate (`evaluation.gate`).
      decision: What to serve (`evaluation.decision`: on a first execution
        the twin may be served instead, or the candidate in spite of a failed
        change check).
      evaluation_dir, report: TFMA's output directory and the HTML report.
      tfma_seconds: TFMA's wall time (None with `report_only`).
      models: {model name: {"path", "threshold"}} as evaluated.
      metrics: {model name: TFMA's overall-slice metrics}.
      intervals: {model: {metric: [lower, upper]}}, inside each metric's range.
      interval_methods: {model: {metric: method}} (`evaluation.intervals.METHODS`).
      tfma_intervals: {model: {metric: [lower, upper]}}, TFMA's own.
    """

    blessed: bool
    failures: tuple[str, ...]
    checks: list[str]
    gate: Gate
    decision: Decision
    evaluation_dir: str
    report: str
    tfma_seconds: float | None
    models: dict
    metrics: dict
    intervals: dict
    interval_methods: dict
    tfma_intervals: dict

    @property
    def verdict(self) -> str:
        """The marker's name: BLESSED or NOT_BLESSED."""
        return "BLESSED" if self.blessed else "NOT_BLESSED"

    def to_json(self) -> dict:
        """summary.json: the fields, with the gate and the decision as objects."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "failures": list(self.failures),
                "gate": dataclasses.asdict(self.gate), "decision": dataclasses.asdict(self.decision)}


def resolve_models(run_dir: str, options: EvaluationOptions, run_json: RunSummary) -> list[EvaluatedModel]:
    """The run's models (candidate, baseline[, served]), with any overrides applied."""
    overrides = {CANDIDATE: (options.candidate_dir, options.candidate_threshold),
                 BASELINE: (options.baseline_dir, options.baseline_threshold)}
    models = []
    for model in run_models(run_dir, run_json):
        path, threshold = overrides[model.name]
        # An overridden threshold was not chosen where run.json's held-out record says.
        models.append(dataclasses.replace(model, path=path or model.path,
                                          threshold=model.threshold if threshold is None else threshold,
                                          held_out=model.held_out if threshold is None else None))
    if options.served_dir is not None:
        models.append(EvaluatedModel(name=SERVED, path=options.served_dir, threshold=options.served_threshold,
                                     label=LABELS[SERVED]))
    return models


def run_evaluation(run_dir: str, options: EvaluationOptions | None = None) -> EvaluationSummary:
    """Evaluates a trained run and writes `RUN/evaluation/` and `RUN/report/`.

    Runs TFMA over the test split for the weighted model (candidate), its
    unweighted twin and the served model (when `options.served_dir` names
    one) in one Beam pipeline, validates the candidate against the push gate
    (`evaluation.gate`: value thresholds, and change thresholds against the
    served model or else the twin), writes `BLESSED` or `NOT_BLESSED` into
    `RUN/evaluation/` and renders `RUN/report/index.html`. The marker is
    TFMA's verdict on the candidate; what to serve is `decision`
    (`evaluation.decision`: on a first execution, with the twin as the
    reference, the twin may be served instead, or the candidate in spite of
    a failed change check).

    Args:
      run_dir: The run directory (`--output-dir` of training, or one
        execution of a tuning run).
      options: Slices, thresholds, Beam args; defaults when None.

    Returns:
      An `EvaluationSummary` (also written to `RUN/evaluation/summary.json`).

    Raises:
      FileNotFoundError: the run lacks models, run.json or the test split
        (or, with `report_only`, a previous TFMA output).
      ValueError: an unknown slice feature.
    """
    options = options or EvaluationOptions()
    run_json = load_run_json(run_dir)
    models = resolve_models(run_dir, options, run_json)
    schema = run_schema(run_dir)
    eval_dir = os.path.join(run_dir, EVALUATION_DIR)
    if options.report_only and not os.path.exists(os.path.join(eval_dir, "eval_config.json")):
        raise FileNotFoundError(f"no TFMA output in {eval_dir}: run the evaluation without --report-only first")
    import tensorflow as tf

    loaded = {m.name: tf.saved_model.load(m.path) for m in models}  # once each: predictions and attributions
    predictions = {m.name: predict_test(loaded[m.name], split_pattern(run_dir), schema) for m in models}
    reference = SERVED if options.served_dir is not None else BASELINE
    gate = resolve_gate(options, run_json.threshold_objective, reference, predictions, {m.name: m.threshold for m in models},
                        {m.name: m.held_out for m in models})
    seconds = None
    if not options.report_only:
        # Imported here so that `--report-only` does not pay for building a pipeline.
        from evaluation.analysis import run_tfma
        from evaluation.eval_config import build_eval_config
        from evaluation.remote_tfma import bring_back, places
        from evaluation.slicing import plan_slices

        informative = informative_numeric(run_dir, schema) if options.slice_features is None else None
        plan = plan_slices(schema, options.slice_features, options.max_slice_vocabulary, informative)
        eval_config = build_eval_config(models, schema.label, plan, gate)
        explained = _explain(run_dir, models, schema, plan, options, eval_config, loaded)
        where = places(run_dir, models, eval_dir)  # a remote run's: on the store, for remote workers
        with progress.step("TFMA", f"{len(models)} models sliced by {len(plan.feature_keys)} features"):
            seconds = run_tfma(where.models, eval_config, where.data_pattern, plan, where.output,
                               options.beam_pipeline_args, explained)
        bring_back(where, eval_dir)
        if explained is not None:
            from evaluation.attribution_extractor import write_summary

            write_summary(eval_dir, explained)
    verdict = read_verdict(eval_dir)
    write_marker(eval_dir, verdict)
    results = {m.name: load_model_result(eval_dir, m.name) for m in models}
    decision = decide(gate, verdict, {name: result.overall for name, result in results.items()})
    report_path = _report(run_dir, models, results, verdict, run_json, gate, seconds, predictions, decision)
    summary = EvaluationSummary(
        blessed=verdict.blessed, failures=tuple(verdict.failures), checks=gate.in_words(), gate=gate,
        decision=decision, evaluation_dir=eval_dir, report=report_path,
        tfma_seconds=None if seconds is None else round(seconds, 1),
        models={m.name: {"path": m.path, "threshold": m.threshold} for m in models},
        metrics={name: result.overall for name, result in results.items()},
        # Shown intervals, inside each metric's range, how each was made, and TFMA's own.
        intervals={name: result.overall_intervals for name, result in results.items()},
        interval_methods={name: result.overall_interval_methods for name, result in results.items()},
        tfma_intervals={name: result.tfma_intervals.get(OVERALL, {}) for name, result in results.items()})
    write_json_atomically(os.path.join(eval_dir, SUMMARY_FILE), summary.to_json())
    return summary


def _explain(run_dir, models, schema, plan, options: EvaluationOptions, eval_config, loaded: dict):
    """Attributions of a sample of test rows (evaluation/attribution_extractor.py), added to `eval_config`."""
    if options.attribution_rows <= 0:
        return None
    from evaluation.attribution_extractor import add_attribution_specs, explain_run
    from evaluation.attributions import AttributionOptions

    with progress.step("Attributions", f"at most {options.attribution_rows} test rows"):
        explained = explain_run(run_dir, models, schema, plan, AttributionOptions(max_rows=options.attribution_rows),
                                loaded)
    add_attribution_specs(eval_config, explained)
    return explained


def informative_numeric(run_dir: str, schema) -> list[str]:
    """Numeric features, most informative first, judged on the validation split (`rank_numeric_features`)."""
    from evaluation.slicing import rank_numeric_features
    from trainer.crossval import load_arrays

    names = [f.name for f in schema.features if f.kind == "numeric"]
    if not names:
        return []
    arrays = load_arrays([split_pattern(run_dir, "validation")], schema)
    return rank_numeric_features({name: arrays.features[name].astype(np.float64) for name in names},
                                 arrays.labels.astype(np.int64))


def _report(run_dir, models, results, verdict, run_json, gate, seconds, predictions, decision) -> str:
    from evaluation.attribution_report import load_explanations
    from evaluation.report import ReportInputs, write_report

    tables = {}
    for model in models:
        predicted = predictions[model.name]
        # "After" is TFMA's own CalibrationPlot; TFMA cannot see the uncorrected
        # probability, so "before" comes from the model's raw logit output.
        tables[model.name] = {"before": reliability(predicted["labels"], predicted["raw"]),
                              "after": results[model.name].calibration}
    inputs = ReportInputs(models=models, results=results, verdict=verdict, reliability=tables, run_json=run_json,
                          histories=load_histories(run_dir), trials=load_trials(run_dir),
                          checks=gate.in_words(), tfma_seconds=seconds, decision=decision.in_words(),
                          explanations=load_explanations(os.path.join(run_dir, EVALUATION_DIR),
                                                         run_schema(run_dir).label))
    return write_report(inputs, os.path.join(run_dir, REPORT_DIR))
