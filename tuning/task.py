"""Tune the class-weight ratio, loss and architecture; export the best and a baseline.

    python -m tuning.task --data my.csv --label is_fraud [--positive-label yes] \
        --output-dir runs/t [--max-trials 20] [--epochs 30] [--tuning-epochs 8] \
        [--tuner bayesian|random|hyperband] [--objective pr_auc|recall_at_precision:0.5]

Without --data it tunes on the embedded `sylva` dataset. Interrupt it and run
the same command again to resume. Distributed: start the same command with
KERASTUNER_TUNER_ID=chief (then worker0, worker1, ...), KERASTUNER_ORACLE_IP
and KERASTUNER_ORACLE_PORT set, over a shared --output-dir (see README).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from trainer.config import TUNERS, RunConfig
from trainer.task import add_data_arguments, common_values, user_error_message


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m tuning.task", description=__doc__.split("\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--tuning-epochs", type=int, default=8, help="epochs per trial (Hyperband: max epochs)")
    parser.add_argument("--tuner", choices=TUNERS, default="bayesian")
    parser.add_argument("--objective", default="pr_auc", help="pr_auc | recall_at_precision:P")
    parser.add_argument("--skip-evaluation", action="store_true", help="stop after exporting both models")
    args = parser.parse_args(argv)
    config = RunConfig.from_dict({
        **common_values(args), "max_trials": args.max_trials, "tuning_epochs": args.tuning_epochs,
        "tuner": args.tuner, "objective": args.objective,
    })
    return config, args.skip_evaluation


def _evaluator(skip: bool):
    """TFMA evaluation + report of both exported models, or None to skip it."""
    if skip:
        return None
    from evaluation import EvaluationOptions, run_evaluation

    def evaluate(config: RunConfig) -> dict:
        summary = run_evaluation(config.output_dir, EvaluationOptions(beam_pipeline_args=config.beam_pipeline_args))
        verdict = "BLESSED" if summary["blessed"] else "NOT_BLESSED"
        return {"verdict": verdict, "verdict_file": os.path.join(summary["evaluation_dir"], verdict),
                "report": summary["report"], "failures": summary["failures"],
                "tfma_seconds": summary["tfma_seconds"]}

    return evaluate


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's deprecation notices (from inside TFMA) are not the user's business.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from tuning.pipeline import RunFinishedError, run_tuning

    try:
        config, skip_evaluation = parse_args(argv)
        summary = run_tuning(config, evaluate=_evaluator(skip_evaluation))
    except Exception as error:
        message = user_error_message(error, expected=(RunFinishedError,))
        if message is None:
            raise  # a bug, not bad input: keep the traceback
        print(f"error: {message}", file=sys.stderr)
        return 2
    if summary.get("role") == "worker":
        print("[tuning] worker done: the chief retrains and exports the best model")
        return 0
    print_summary(config, summary)
    return 0


def print_summary(config: RunConfig, summary: dict) -> None:
    from trainer.pipeline import describe_model, headline

    run = config.output_dir
    print(f"\nbest hyperparameters: {os.path.join(run, 'tuning', 'best_hyperparameters.json')}")
    for name in ("weighted", "baseline"):
        part = summary[name]
        print(f"{name:8s} model {part['version_dir']}  ({describe_model(part)}): {headline(part)}")
    evaluation = summary.get("evaluation") or {}
    if evaluation:
        print(f"verdict: {evaluation['verdict']}  ({evaluation['verdict_file']})")
        for failure in evaluation["failures"]:
            print(f"  failed: {failure}")
        print(f"report:  {evaluation['report']}")


if __name__ == "__main__":
    sys.exit(main())
