"""`make tune`: one execution of split -> portfolio + search -> ensemble selection -> retrain the
members (and their unweighted twin) -> evaluate -> push.

Each call is an execution under `RUN/executions/<id>/` (`tuning.executions`):
an unfinished execution is resumed (prepared data and completed trials are
kept), a finished one is followed by a new one. What is pushed to
`RUN/serving_model/` is decided by the evaluation (`evaluation.decision`):
with a model served, the candidate only when TFMA blesses it; on a first
execution the candidate or its unweighted twin, whichever is fit to serve
and not beaten beyond noise (`tuning.push`).
"""

from __future__ import annotations

import dataclasses
import os
import time

from keras_tuner.src.distribute import utils as distribute

from trainer import progress, weighting_study
from trainer.candidates import Member, Splits
from trainer.config import RunConfig
from trainer.data.ingest import DataError
from trainer.data.prepare import prepare_data
from trainer.hparams import declare_all
from trainer.layout import CANDIDATE_DIR, COMPLETE, TRIALS_FILE, TUNING_DIR
from trainer.pipeline import train_and_export, update_run_json
from trainer.refit import refit_full
from trainer.run_storage import require_local
from trainer.summary import EvaluationRecord, ModelSummary, read_run
from trainer.threshold import parse_objective
from trainer.weighting_study import DEFAULT_OPERATING_PRECISION, FORMULA
from tuning import tensorboard_hparams
from tuning.ensemble import Selection, load_held_out, select_ensemble
from tuning.executions import begin_execution, describe_data, now, write_history
from tuning.portfolio import portfolio_name
from tuning.push import push, served_model
from tuning.results import BEST_FILE, write_best_hyperparameters, write_trials_csv
from tuning.search import make_tuner


@dataclasses.dataclass(frozen=True)
class ExecutionSummary:
    """What one execution of `run_tuning` did (its run.json holds the same sections).

    Attributes:
      execution: Its `id`, `path`, whether it `resumed`, and run.json's
        execution record (`started`, `finished`, `data`).
      tuning: The search: trials, seconds, best values and file, objective,
        tuner, the ensemble selection.
      weighted, baseline: The candidate and its unweighted twin.
      weighting_study: The weighting study's section (None: skipped).
      evaluation: The gate's record (None: `--skip-evaluation`).
      push: `tuning.push.push`'s result, or why nothing was pushed.
      refit_full: With `--refit-full`, the pushed model trained on every row.
      history: `RUN/history.html`.
    """

    execution: dict
    tuning: dict
    weighted: ModelSummary
    baseline: ModelSummary
    weighting_study: dict | None = None
    evaluation: EvaluationRecord | None = None
    push: dict | None = None
    refit_full: dict | None = None
    history: str | None = None

    def replace(self, **changes) -> ExecutionSummary:
        return dataclasses.replace(self, **changes)


def run_tuning(config: RunConfig, evaluate=None, push_anyway: bool = False) -> ExecutionSummary | None:
    """Runs (or resumes) one execution of the tuning pipeline on `config.output_dir`.

    Args:
      config: The run configuration; `output_dir` is the run (`RUN`), the
        execution gets its own directory under it.
      evaluate: Called as `evaluate(execution_config, served)` after both
        models are exported, with the `tuning.push.ServedModel` being served
        (or None); runs TFMA and the report and returns a JSON-able summary
        as a `trainer.summary.EvaluationRecord`. None skips evaluation, and
        so the push.
      push_anyway: Push the candidate even if it is NOT_BLESSED (recorded).

    Returns:
      The `ExecutionSummary`; None on a keras-tuner worker, once the chief's
      search is over (the chief retrains and exports).
    """
    require_local(config.output_dir)
    run_dir = config.output_dir
    execution = begin_execution(run_dir)
    config = config.replace(output_dir=execution.path)
    is_worker = distribute.has_chief_oracle() and not distribute.is_chief_oracle()
    with progress.step("data", "split, statistics and shards"):
        data = prepare_data(config)
    if not is_worker:
        started = (read_run(execution.path).execution or {}).get("started") or now()
        update_run_json(config, {"status": "running", "execution": {
            "id": execution.id, "started": started, "data": describe_data(config, data.counts)}})
        write_history(run_dir)
    found = _search_and_export(config, data)
    if found is None:
        return None
    summary = ExecutionSummary(execution={"id": execution.id, "path": execution.path, "resumed": execution.resumed},
                               **found)
    if evaluate is not None:
        summary = summary.replace(evaluation=evaluate(config, served_model(run_dir)))
    refit = (lambda section, weighted: refit_full(config, data, section, weighted)) if config.refit_full else None
    pushed, refitted = _push(run_dir, execution.id, summary, push_anyway, refit)
    summary = summary.replace(push=pushed, refit_full=refitted)
    record = update_run_json_sections(config, summary)
    return summary.replace(history=write_history(run_dir), execution={**summary.execution, **record})


def _search_and_export(config: RunConfig, data) -> dict | None:
    """The search, ensemble selection and the final trainings: ExecutionSummary's fields (None: a worker)."""
    started = time.time()
    tuner = make_tuner(data, config)
    budget = None if config.tuner == "hyperband" else config.max_trials  # Hyperband's brackets set its count
    with progress.step("search", "trial", total=budget) as tuner.advance:
        tuner.search(verbose=0, callbacks=tensorboard_hparams.search_callbacks(config.output_dir))
    if distribute.has_chief_oracle() and not distribute.is_chief_oracle():
        return None
    tuning_dir = os.path.join(config.output_dir, TUNING_DIR)
    trial_count = write_trials_csv(tuner, os.path.join(tuning_dir, TRIALS_FILE))
    best = write_best_hyperparameters(tuner, os.path.join(tuning_dir, BEST_FILE))
    search_seconds = round(time.time() - started, 1)
    selection, members = select_members(tuner, data, config)
    trained = {}  # members trained once: a member the twin or the study shares with the candidate is reused
    keep = not config.skip_weighting_study  # the study's tuned and unweighted variants are these two models
    splits = tuner.hypermodel.splits  # the rows the search held in memory: not read again for each model
    weighted = train_and_export(config, data, members=members, export_dir=CANDIDATE_DIR, reuse=trained,
                                keep_predictions=keep, splits=splits)
    baseline = train_and_export(config, data, members=members, weighted=False, reuse=trained,
                                keep_predictions=keep, splits=splits)
    study = None if config.skip_weighting_study else study_weighting(config, data, members, trained, splits)
    return {
        "tuning": {"trials": trial_count, "search_seconds": search_seconds, "best": dict(best.values),
                   "best_file": os.path.join(tuning_dir, BEST_FILE), "objective": config.objective,
                   "tuner": config.tuner, "time_budget": config.time_budget,
                   "stopped_by_time_budget": list(tuner.hypermodel.stopped_by_deadline),
                   "ensemble": {**selection.to_dict(), "members": [dataclasses.asdict(m) for m in members]}},
        "weighted": weighted,
        "baseline": baseline,
        "weighting_study": study or None,
    }


def study_weighting(config: RunConfig, data, members: list[Member], trained: dict,
                    splits: Splits | None = None) -> dict:
    """`trainer.weighting_study` for this execution: trains the members at N0/N1 (those already trained so,
    in `trained`, are reused), compares the three variants, writes run.json's `weighting_study`.

    N0/N1 is `other_class_share`'s ratio, given as a ratio so that its weights
    are scaled as every ratio's are (mean example weight 1): a member the
    search already trained at N0/N1 is then the same model, not retrained.
    """
    n0, n1 = data.train_counts
    formula_ratio = n0 / n1
    formula = train_and_export(config.replace(weight_ratio=formula_ratio, weight_scheme=None), data,
                               members=members, study_variant=FORMULA, reuse=trained, splits=splits)
    objective = parse_objective(config.threshold_objective)
    precision = objective.value if objective.kind == "recall_at_precision" else DEFAULT_OPERATING_PRECISION
    with progress.step("weighting study", "paired bootstrap"):
        section = weighting_study.study(config.output_dir, precision, formula_ratio)
    section["formula_reused"] = formula["reused"]  # per member: already trained at N0/N1, not trained again
    update_run_json(config, {"weighting_study": section})
    return section


def select_members(tuner, data, config: RunConfig) -> tuple[Selection, list[Member]]:
    """Ensemble selection over the completed trials' held-out predictions (`tuning.ensemble`)."""
    completed = {t.trial_id: t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"}
    held_out = load_held_out(os.path.join(config.output_dir, TUNING_DIR), sorted(completed))
    if held_out.margins:
        selection = select_ensemble(held_out, config.objective)
    else:  # an execution resumed from a version that kept no held-out predictions: its best trial alone
        best = max((t for t in completed.values() if t.score is not None), key=lambda t: t.score)
        selection = Selection({best.trial_id: 1.0}, float(best.score), {best.trial_id: float(best.score)},
                              [float(best.score)])
    defaults = declare_all(data.train_counts).values
    members = []
    for trial_id, weight in selection.weights.items():
        values = {k: v for k, v in completed[trial_id].hyperparameters.values.items() if not k.startswith("tuner/")}
        members.append(Member(values, weight, trial_id, portfolio_name(values, data.train_counts, defaults)))
    return selection, members


def _push(run_dir: str, execution_id: str, summary: ExecutionSummary, push_anyway: bool,
          refit=None) -> tuple[dict, dict | None]:
    """Pushes what the evaluation's decision serves (the candidate, or on a first execution maybe its twin).

    With `refit` (`--refit-full`), what is pushed is that model's members
    trained again on every row (`trainer.refit`), called as
    `refit(section, weighted)` only once the decision is to push.

    Returns:
      (the push's result, the refit model's record or None).
    """
    from evaluation.run_files import CANDIDATE, RUN_KEYS

    evaluation = summary.evaluation
    if evaluation is None and not push_anyway:
        return {"pushed": False, "version": None, "path": None, "push_anyway": False, "model": None,
                "reason": "not evaluated (--skip-evaluation): not pushed; evaluate it, or use --push-anyway"}, None
    decision = (evaluation.decision if evaluation else None) or {}
    serve = decision.get("serve", CANDIDATE if evaluation and evaluation.blessed else None)
    forced = push_anyway and serve != CANDIDATE  # --push-anyway names the candidate
    model = CANDIDATE if forced or serve is None else serve
    section = getattr(summary, RUN_KEYS[model])
    record = {"execution": execution_id, "model": model, "threshold": section.threshold.value,
              "verdict": evaluation.verdict if evaluation else "NOT_EVALUATED", "pushed_at": now()}
    version_dir, refitted = section.version_dir, None
    if refit is not None and (serve is not None or forced):
        refitted = refit(section, model == CANDIDATE)
        version_dir, record["refit_full"] = refitted["version_dir"], {"rows": refitted["rows"]}
    result = push(run_dir, version_dir, record, blessed=serve is not None and not forced,
                  push_anyway=forced, why=None if forced else decision.get("reason"))
    if "refit_full" in record and result["pushed"]:
        result["refit_full"] = record["refit_full"]
        result["reason"] += f"; refit on all {record['refit_full']['rows']} rows (--refit-full)"
    return result, refitted


def update_run_json_sections(config: RunConfig, summary: ExecutionSummary) -> dict:
    """Marks the execution complete in its run.json; returns its `execution` record."""
    record = {**(read_run(config.output_dir).execution or {}), "finished": now()}
    sections = {"tuning": summary.tuning, "push": summary.push, "status": COMPLETE, "execution": record}
    if summary.refit_full is not None:
        sections["refit_full"] = summary.refit_full
    if summary.evaluation is not None:
        sections["evaluation"] = summary.evaluation
    update_run_json(config, sections)
    return record


__all__ = ["DataError", "ExecutionSummary", "run_tuning"]
