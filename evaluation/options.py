"""The settings of one evaluation, as plain values (no flags, no env vars)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate and what blesses the candidate.

    Attributes:
      slice_features: Features to slice by. None = every categorical feature of
        the schema with at most `max_slice_vocabulary` values. Numeric features
        named here are sliced by buckets of their training z-score.
      max_slice_vocabulary: Vocabulary limit for the default slices.
      min_recall: Value threshold: the candidate's minority recall at its own
        threshold on the overall test split must be at least this.
      min_pr_auc: Value threshold on the candidate's minority PR-AUC (None: off).
      pr_auc_tolerance: Change threshold: the candidate's PR-AUC may be at most
        this much (absolute) below the baseline's.
      precision_floor: RecallAtPrecision's precision (reported, not validated).
      recall_floor: PrecisionAtRecall's recall (reported, not validated).
      num_thresholds: Points of TFMA's AUC and curve computations. They are
        rebinned from one shared 10,000-bucket histogram, so this does not
        change TFMA's run time (docs/benchmarks.md, "Evaluation").
      beam_pipeline_args: Passed to `trainer.beam_runner.make_pipeline`.
      report_only: Skip TFMA and rebuild the report from `RUN/evaluation/`.
      candidate_dir, baseline_dir: Override the SavedModel directories (a
        version directory); default: latest versions of the run.
      candidate_threshold, baseline_threshold: Override the thresholds that
        are read from run.json.
    """

    slice_features: tuple[str, ...] | None = None
    max_slice_vocabulary: int = 20
    min_recall: float = 0.0
    min_pr_auc: float | None = None
    pr_auc_tolerance: float = 0.01
    precision_floor: float = 0.5
    recall_floor: float = 0.5
    num_thresholds: int = 1000
    beam_pipeline_args: tuple[str, ...] = ()
    report_only: bool = False
    candidate_dir: str | None = None
    baseline_dir: str | None = None
    candidate_threshold: float | None = None
    baseline_threshold: float | None = None
