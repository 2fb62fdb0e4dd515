"""`python -m evaluation.task --run RUN [...]`: evaluate, bless, report.

With `--labels` it is the live evaluation of logged predictions on late labels
instead (`evaluation.live`: `--predictions` or `--logs`, `--labels`, `--id-column`).

RUN may be on object storage (gs://, s3://): the command runs on a local
working copy of the latest execution and uploads what it writes
(`trainer.run_storage.on_run`, docs/scaling.md).

Exit status: 0 when the candidate is BLESSED, 1 when NOT_BLESSED (so a
pipeline step can gate on it, as TFX's Evaluator gates a Pusher), 2 on a usage
or missing-input error. `--report-only` always exits 0 once the report exists;
it also draws the run's monitoring page again when the run has monitoring
records (`evaluation.monitoring`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from evaluation.flags import add_gate_arguments, gate_options
from trainer import cli
from trainer.layout import MONITORING_DIR, resolve_run
from trainer.run_copy import EVALUATING
from trainer.run_storage import on_run

EXPECTED = (ValueError,)  # the evaluation's own errors for a missing or unfinished run (evaluation/run_files.py)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.task", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True,
                        help="run directory (--output-dir of training or tuning; for tuning, its latest execution)")
    add_gate_arguments(parser)
    cli.add_beam_flag(parser)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from RUN/evaluation (and RUN/monitoring.html "
                                                                "from RUN/monitoring/)")
    cli.add_tensorflow_logs_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's deprecation notices (from inside TFMA) are not the user's business.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    arguments = sys.argv[1:] if argv is None else argv
    if any(a == "--labels" or a.startswith("--labels=") for a in arguments):  # late labels: evaluation/live.py
        from evaluation.live import main as live_main

        return live_main(arguments)
    return cli.run_entry_point(lambda: _evaluate(argv), expected=EXPECTED)


def _evaluate(argv: list[str] | None) -> int:
    args = parse_args(argv)
    beam_args = cli.beam_args(args)
    (status, printed), where = on_run(args.run, lambda run: _evaluate_run(run, args, beam_args), EVALUATING,
                                      beam_args, EXPECTED)
    print(where(printed), end="")  # a remote run's URL, not its working copy's path
    return status


def _evaluate_run(run: str, args: argparse.Namespace, beam_args: tuple[str, ...]) -> tuple[int, str]:
    """Evaluates (or reports) the local run `run`: (exit status, what to print)."""
    cli.start(show_native_logs=args.tensorflow_logs)
    from evaluation.evaluate import run_evaluation

    options = gate_options(args, beam_pipeline_args=beam_args, report_only=args.report_only)
    summary = run_evaluation(resolve_run(run), options)
    lines = [f"{summary.verdict}  report: {summary.report}"]
    if args.report_only and os.path.isdir(os.path.join(run, MONITORING_DIR)):  # drawn again with the report
        from evaluation.monitoring import write_monitoring_page

        lines.append(f"monitoring: {write_monitoring_page(run)}")
    lines += [f"  failed: {failure}" for failure in summary.failures]
    decision = summary.decision.in_words()
    if decision:  # the verdict alone does not say what a first execution serves; this command never pushes
        lines.append(f"first execution: {decision}")
    if summary.tfma_seconds is not None:
        lines.append(f"TFMA: {summary.tfma_seconds} s")
    return (0 if summary.blessed or args.report_only else 1), "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    sys.exit(main())
