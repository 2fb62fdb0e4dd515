"""The settings of one evaluation, as plain values (no flags, no env vars)."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from trainer.flags import flag

INTERVALS = ("auto", "jackknife", "bootstrap", "none")
AUTO_INTERVALS_MAX_EXAMPLES = 50_000


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate and what blesses the candidate.

    Attributes:
      slice_features: Features to slice by. None = every categorical feature of
        the schema with at most `max_slice_vocabulary` values. Numeric features
        named here are sliced by their training quartiles (evaluation/slicing.py).
      max_slice_vocabulary: Vocabulary limit for the default slices.
      min_recall: Value threshold: the candidate's minority recall at its own
        threshold on the overall test split must be at least this, judged
        with the test split's uncertainty (it fails only when the one-sided
        95% Wilson upper bound of the recall is below it).
      min_precision: Value threshold on precision at the candidate's
        threshold. None follows the run's objective: for
        `recall_at_precision:P`, P less the one-sided 95% margin of the test
        and held-out precision combined (`evaluation.gate`).
      min_pr_auc: Value threshold on the candidate's PR-AUC; None uses
        `min_pr_auc_lift`.
      min_pr_auc_lift: PR-AUC must be at least this times the test positive
        rate (what a random ranking scores); 0 turns it off.
      pr_auc_tolerance, operating_tolerance: Change thresholds: the candidate
        may be at most this much (absolute) below the reference's PR-AUC / the
        objective's operating point (recall at precision P, or precision at
        recall R); widened to the test set's one-sided 95% margin when that
        is larger (`evaluation.gate`).
      precision_floor: RecallAtPrecision's precision when the objective does
        not set it.
      recall_floor: PrecisionAtRecall's recall when the objective does not
        set it.
      num_thresholds: Points of TFMA's AUC and curve computations. They are
        rebinned from one shared 10,000-bucket histogram, so this does not
        change TFMA's run time (docs/benchmarks.md, "Evaluation").
      intervals: TFMA's confidence intervals: `jackknife` (20 buckets),
        `bootstrap` (Poisson, 20 samples), `none`, or `auto`: jackknife up
        to `AUTO_INTERVALS_MAX_EXAMPLES` test examples, none above (they
        multiply TFMA's time by about 3.7, docs/benchmarks.md, and a large
        test set's intervals are narrow; the gate's margins come from its
        own bootstrap either way).
      bootstrap_seed: Seed of the gate's paired bootstrap.
      beam_pipeline_args: Passed to `trainer.beam_runner.make_pipeline`.
      report_only: Skip TFMA and rebuild the report from `RUN/evaluation/`.
      candidate_dir, baseline_dir: Override the SavedModel directories (a
        version directory); default: latest versions of the run.
      candidate_threshold, baseline_threshold: Override the thresholds that
        are read from run.json.
      served_dir, served_threshold: The model being served (a version
        directory) and its threshold: the gate's reference. None compares
        with the unweighted baseline instead.
      attribution_rows: Test rows whose feature attributions are computed for
        the candidate and the baseline, at most (evaluation/attributions.py);
        0 computes none.
    """

    slice_features: tuple[str, ...] | None = field(default=None, metadata=flag(
        "gate", "comma-separated features to slice by (numeric ones by training quartiles); default: categoricals "
                "with at most 20 values and the two most informative numerics", split="commas"))
    max_slice_vocabulary: int = 20
    min_recall: float = field(default=0.1, metadata=flag(
        "gate", "bless only if the candidate's minority recall at its threshold is at least this (fails only "
                "if the one-sided 95%% Wilson upper bound of the test recall is below it)"))
    min_precision: float | None = field(default=None, metadata=flag(
        "gate", "bless only if precision at the threshold is at least this (default: P of "
                "recall_at_precision:P, less the 95%% margin of the test and held-out precision combined)"))
    min_pr_auc: float | None = field(default=None, metadata=flag(
        "gate", "bless only if PR-AUC is at least this (default: --min-pr-auc-lift x positive rate)"))
    min_pr_auc_lift: float = field(default=2.0, metadata=flag(
        "gate", "PR-AUC must be at least this times the test positive rate (0: off)"))
    pr_auc_tolerance: float = field(default=0.01, metadata=flag(
        "gate", "allowed PR-AUC drop below the reference model (absolute; widened to the test set's 95%% margin)"))
    operating_tolerance: float = field(default=0.02, metadata=flag(
        "gate", "allowed drop below the reference model of recall at the objective's precision (or precision "
                "at its recall)", name="--operating-point-tolerance"))
    precision_floor: float = 0.5
    recall_floor: float = 0.5
    num_thresholds: int = 1000
    intervals: str = field(default="auto", metadata=flag("gate", "TFMA's confidence intervals", choices=INTERVALS))
    bootstrap_seed: int = 0
    beam_pipeline_args: tuple[str, ...] = ()
    report_only: bool = False
    candidate_dir: str | None = None
    baseline_dir: str | None = None
    candidate_threshold: float | None = None
    baseline_threshold: float | None = None
    served_dir: str | None = None
    served_threshold: float | None = None
    attribution_rows: int = field(default=256, metadata=flag(
        "explain", "explain at most this many test rows (candidate and baseline; 0: no attributions)"))

    def __post_init__(self) -> None:
        if self.intervals not in INTERVALS:
            raise ValueError(f"intervals must be one of {', '.join(INTERVALS)}, got {self.intervals!r}")
        if self.served_dir is not None and self.served_threshold is None:
            raise ValueError("served_dir needs served_threshold (the served model's decision threshold)")
