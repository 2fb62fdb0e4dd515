"""The push gate's and the attributions' command-line flags, shared by `evaluation.task` and `tuning.task`.

They are `EvaluationOptions`' fields of the `gate` and `explain` groups:
help, defaults and choices are declared there, once (`trainer.flags`).
"""

from __future__ import annotations

import argparse
import dataclasses

from evaluation.options import EvaluationOptions
from trainer.flags import add_flags, values_from_args

GATE = ("gate", "explain")
TITLE = {"gate": "push gate (TFMA thresholds; docs/design.md §9)",
         "explain": "feature attributions (TFMA; docs/design.md §9, Attributions)"}


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, EvaluationOptions, GATE, TITLE)


def gate_options(args: argparse.Namespace, **extra) -> EvaluationOptions:
    """EvaluationOptions from the parsed gate flags plus `extra` fields."""
    return dataclasses.replace(EvaluationOptions(), **values_from_args(args, EvaluationOptions, GATE), **extra)
