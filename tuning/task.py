"""Tune the class-weight ratio, loss and architecture; export the best and a baseline.

    python -m tuning.task --data my.csv --label is_fraud [--positive-label yes] \
        --output-dir runs/t [--max-trials 20] [--epochs 30] [--tuning-epochs 8] \
        [--tuner bayesian|random|hyperband] [--objective pr_auc|recall_at_precision:0.5] \
        [--wandb offline|online]

Without --data it tunes on the embedded `sylva` dataset. Each run of the
command on the same --output-dir is a new execution (RUN/executions/<id>/);
its candidate is pushed to RUN/serving_model/ as the next version only if
TFMA blesses it against the served model (exit status 1 otherwise, or 0 with
--push-anyway). On the first execution, with nothing served, the better of
the candidate and its unweighted twin that is fit to serve is pushed, or one
line says why neither is (docs/design.md §9). Interrupt it and run the same
command again to resume. Distributed: start the same command with
KERASTUNER_TUNER_ID=chief (then worker0, worker1, ...), KERASTUNER_ORACLE_IP
and KERASTUNER_ORACLE_PORT set, over a shared --output-dir (see README).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import os
import sys

from evaluation.flags import add_gate_arguments, gate_options
from trainer import cli
from trainer.config import RunConfig
from trainer.summary import EvaluationRecord

# The search's flags: RunConfig's fields of these groups (the weighting is what it tunes).
TUNING_GROUPS = ("data", "training", "tuning")


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m tuning.task", description=__doc__.split("\n")[0])
    cli.add_run_flags(parser, TUNING_GROUPS)
    parser.add_argument("--skip-evaluation", action="store_true",
                        help="stop after exporting both models (nothing is pushed without --push-anyway)")
    add_gate_arguments(parser)
    parser.add_argument("--push-anyway", action="store_true",
                        help="push the candidate even if NOT_BLESSED (recorded in run.json and the history)")
    args = parser.parse_args(argv)
    return cli.config_from_args(args, TUNING_GROUPS), args


def _evaluator(args: argparse.Namespace):
    """TFMA evaluation + report of an execution's models against what is served, or None to skip it."""
    if args.skip_evaluation:
        return None
    from evaluation import run_evaluation

    def evaluate(config: RunConfig, served) -> EvaluationRecord:
        options = gate_options(args, beam_pipeline_args=config.beam_pipeline_args,
                               served_dir=served.path if served else None,
                               served_threshold=served.threshold if served else None)
        summary = run_evaluation(config.output_dir, options)
        return EvaluationRecord(
            verdict=summary.verdict, blessed=summary.blessed,
            verdict_file=os.path.join(summary.evaluation_dir, summary.verdict),
            compared_with=f"served version {served.version}" if served else "the unweighted baseline",
            report=summary.report, failures=list(summary.failures), checks=summary.checks,
            decision=dataclasses.asdict(summary.decision), tfma_seconds=summary.tfma_seconds,
            # 95% intervals of the overall test slice, inside each metric's range (evaluation/intervals.py).
            intervals=summary.intervals, interval_methods=summary.interval_methods)

    return evaluate


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's deprecation notices (from inside TFMA) are not the user's business.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return cli.run_entry_point(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    config, args = parse_args(argv)
    cli.start(show_native_logs=args.tensorflow_logs)
    from trainer.run_storage import run_on

    # On a gs:// or s3:// run directory the execution runs on a local copy, uploaded before anything is printed.
    (summary, printed), where = run_on(config, lambda local: _execute(local, args))
    if summary is None:  # a keras-tuner worker
        print("[tuning] worker done: the chief retrains and exports the best model")
        return 0
    print(where(printed), end="")
    return 0 if summary.push["pushed"] or summary.evaluation is None else 1


def _execute(config: RunConfig, args) -> tuple:
    """One execution on a local run directory: (its summary or None on a worker, the lines to print)."""
    summary = _tune(config, args)
    if summary is None:
        return None, ""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        print_summary(config, summary)
        if config.wandb:  # before any upload: offline W&B files go into the execution
            log_to_wandb(config, summary.execution["path"])
    return summary, printed.getvalue()


def _tune(config: RunConfig, args):
    if config.wandb:
        from tuning.wandb_logging import require_wandb

        require_wandb()  # one line before any work, not a traceback after the search
    from tuning.pipeline import run_tuning

    return run_tuning(config, evaluate=_evaluator(args), push_anyway=args.push_anyway)


def log_to_wandb(config: RunConfig, execution_dir: str) -> None:
    """Logs the finished execution to W&B; a failure there is a warning, the execution stands."""
    from tuning.wandb_logging import TrackingError, log_execution

    try:
        where = log_execution(execution_dir, config.wandb, config.wandb_project)
    except TrackingError as error:
        print(f"warning: the execution is complete, but logging it to W&B failed: {error}", file=sys.stderr)
        return
    print(f"wandb:   {where}" + (f"  (upload it with: wandb sync {where})" if config.wandb == "offline" else ""))


def print_summary(config: RunConfig, summary) -> None:
    """The execution's results on the command line (`tuning.pipeline.ExecutionSummary`)."""
    from trainer.description import describe_model, headline

    execution = summary.execution
    print(f"\nexecution {execution['id']}{' (resumed)' if execution['resumed'] else ''}: {execution['path']}")
    print(f"best hyperparameters: {summary.tuning['best_file']}")
    for name in ("weighted", "baseline"):
        part = getattr(summary, name)
        print(f"{name:8s} model {part.version_dir}  ({describe_model(part)}): {headline(part)}")
    if summary.weighting_study is not None:  # None with --skip-weighting-study
        print(f"weighting: {summary.weighting_study['answer']}")
    evaluation = summary.evaluation
    if evaluation is not None:
        print(f"verdict: {evaluation.verdict} against {evaluation.compared_with}  ({evaluation.verdict_file})")
        for check in evaluation.checks or ():  # each with what was measured on test
            print(f"  check:  {check}")
        for failure in evaluation.failures or ():
            print(f"  failed: {failure}")
        print(f"report:  {evaluation.report}")
    push = summary.push
    print(f"push:    {push['reason']}" + (f"  ({push['path']})" if push["pushed"] else ""))
    print(f"history: {summary.history}")


if __name__ == "__main__":
    sys.exit(main())
