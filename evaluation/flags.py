"""The push gate's command-line flags, shared by `evaluation.task` and `tuning.task`.

Defaults come from `EvaluationOptions` (declared once there).
"""

from __future__ import annotations

import argparse
import dataclasses

from evaluation.options import INTERVALS, EvaluationOptions

DEFAULTS = EvaluationOptions()


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("push gate (TFMA thresholds; docs/design.md §9)")
    group.add_argument("--slice-features", default=None,
                       help="comma-separated features to slice by (numeric ones by training quartiles); "
                            "default: categoricals with at most 20 values and the two most informative numerics")
    group.add_argument("--min-recall", type=float, default=DEFAULTS.min_recall,
                       help="bless only if the candidate's minority recall at its threshold is at least this")
    group.add_argument("--min-precision", type=float, default=DEFAULTS.min_precision,
                       help="bless only if precision at the threshold is at least this "
                            "(default: P of recall_at_precision:P, less the test set's 95%% margin)")
    group.add_argument("--min-pr-auc", type=float, default=DEFAULTS.min_pr_auc,
                       help="bless only if PR-AUC is at least this (default: --min-pr-auc-lift x positive rate)")
    group.add_argument("--min-pr-auc-lift", type=float, default=DEFAULTS.min_pr_auc_lift,
                       help="PR-AUC must be at least this times the test positive rate (0: off)")
    group.add_argument("--pr-auc-tolerance", type=float, default=DEFAULTS.pr_auc_tolerance,
                       help="allowed PR-AUC drop below the reference model (absolute; widened to the "
                            "test set's 95%% margin)")
    group.add_argument("--operating-point-tolerance", type=float, default=DEFAULTS.operating_tolerance,
                       help="allowed drop below the reference model of recall at the objective's precision "
                            "(or precision at its recall)")
    group.add_argument("--intervals", choices=INTERVALS, default=DEFAULTS.intervals,
                       help="TFMA's confidence intervals")


def gate_options(args: argparse.Namespace, **extra) -> EvaluationOptions:
    """EvaluationOptions from the parsed gate flags plus `extra` fields."""
    features = None if args.slice_features is None else tuple(
        name.strip() for name in args.slice_features.split(",") if name.strip())
    return dataclasses.replace(
        DEFAULTS, slice_features=features, min_recall=args.min_recall, min_precision=args.min_precision,
        min_pr_auc=args.min_pr_auc, min_pr_auc_lift=args.min_pr_auc_lift,
        pr_auc_tolerance=args.pr_auc_tolerance, operating_tolerance=args.operating_point_tolerance,
        intervals=args.intervals, **extra)
