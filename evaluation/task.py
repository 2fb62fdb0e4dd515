"""`python -m evaluation.task --run RUN [...]`: evaluate, bless, report.

Exit status: 0 when the candidate is BLESSED, 1 when NOT_BLESSED (so a
pipeline step can gate on it, as TFX's Evaluator gates a Pusher), 2 on a usage
or missing-input error. `--report-only` always exits 0 once the report exists.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from evaluation.evaluate import run_evaluation
from evaluation.options import EvaluationOptions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.task", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory (--output-dir of training)")
    parser.add_argument("--slice-features", default=None,
                        help="comma-separated features to slice by (numeric ones are bucketed); "
                             "default: categoricals with at most 20 values")
    parser.add_argument("--min-recall", type=float, default=0.0,
                        help="bless only if the candidate's minority recall at its threshold is at least this")
    parser.add_argument("--min-pr-auc", type=float, default=None, help="bless only if PR-AUC is at least this")
    parser.add_argument("--pr-auc-tolerance", type=float, default=0.01,
                        help="allowed PR-AUC drop below the baseline (absolute)")
    parser.add_argument("--beam-pipeline-args", default="",
                        help='Beam options, e.g. "--direct_num_workers=2 --direct_running_mode=multi_processing"')
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from RUN/evaluation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's deprecation notices (from inside TFMA) are not the user's business.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    args = parse_args(argv)
    features = None if args.slice_features is None else tuple(
        name.strip() for name in args.slice_features.split(",") if name.strip())
    options = EvaluationOptions(slice_features=features, min_recall=args.min_recall, min_pr_auc=args.min_pr_auc,
                                pr_auc_tolerance=args.pr_auc_tolerance,
                                beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)),
                                report_only=args.report_only)
    try:
        summary = run_evaluation(args.run, options)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    verdict = "BLESSED" if summary["blessed"] else "NOT_BLESSED"
    print(f"{verdict}  report: {summary['report']}")
    for failure in summary["failures"]:
        print(f"  failed: {failure}")
    if summary["tfma_seconds"] is not None:
        print(f"TFMA: {summary['tfma_seconds']} s")
    return 0 if summary["blessed"] or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
