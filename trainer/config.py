"""The one run configuration: declared once, frozen, passed in explicitly.

Entry points (`trainer.task`, `tuning.task`, `evaluation.task`) build a
`RunConfig` from their flags; library code only ever receives the object and
never reads flags or environment variables itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import field
from typing import Any, ClassVar

from trainer import storage
from trainer.flags import flag

LOSSES = ("weighted_ce", "focal", "logit_adjusted")
WEIGHT_SCHEMES = ("other_class_share", "balanced", "effective_number", "none")
# Old spellings still accepted (with a deprecation message at the command line).
RENAMED_WEIGHT_SCHEMES = {"seed": "other_class_share"}
CALIBRATIONS = ("auto", "prior_shift", "platt", "isotonic", "none")
TUNERS = ("bayesian", "random", "hyperband")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
SELECTIONS = ("auto", "validation", "cross_validation")
EARLY_STOPPING = ("pr_auc", "log_loss")
SYNTHETIC_ROWS = (500_000, 31_000)  # the reference problem's size: (negatives, positives)
WANDB_MODES = ("offline", "online")  # wandb.init's modes: offline needs no account or network
# Settings that no longer exist -> (their flag group, why). The flag is still accepted with a warning, and a
# saved config carrying the key still loads, so old command lines and resumed runs keep working.
RETIRED_SETTINGS = {"data_engine": ("data", "the data step always runs on Beam (docs/design.md §2)")}
VOCABULARY_SIZE = 1000  # the default top-k of a categorical feature's vocabulary


class ConfigError(ValueError):
    """A configuration value is invalid (unknown key, bad value)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know.

    Attributes:
      data: Input path or glob (CSV, Parquet, TFRecord of tf.Example), or one
        of the built-in names `sylva` (embedded default) and `synthetic`.
      label: Label column; defaults to the built-in dataset's label.
      output_dir: The run directory (see docs/design.md §10).
      positive_label: For non-0/1 labels, the value naming the positive
        (minority) class.
      seed: Seed for the split, the weights' initialisation and the tuner.
      split: Fractions of (train, validation, test); must sum to 1.
      epochs: Maximum training epochs (early stopping may end sooner).
      patience: Early-stopping patience, in epochs.
      early_stopping: The validation metric early stopping watches (and
        whose best epoch it restores): minority `pr_auc` (default) or the
        unweighted `log_loss` of the minority probability
        (docs/benchmarks.md compares them).
      loss: Loss family override (`weighted_ce`, `focal`, `logit_adjusted`).
      weight_scheme: How class weights come from the training counts; None
        uses the `weight_ratio` hyperparameter (default sqrt(N0/N1)).
      weight_ratio: Explicit w1 / w0; overrides `weight_scheme`.
      hparams: Path of a `best_hyperparameters.json` to train with.
      threshold_objective: `recall_at_precision:P`, `f1`, `fbeta:B` or
        `precision_at_recall:R`; chooses the decision threshold on validation.
      calibration: `auto` (of the maps that keep the scores' order: none,
        the closed-form prior shift where one exists and Platt, the lowest
        cross-fitted held-out log-loss; none unless beaten:
        `trainer.calibration`), or one of
        `prior_shift`, `platt`, `isotonic`, `none`.
      synthetic_rows: Size of the `synthetic` dataset (negatives, positives).
      beam_pipeline_args: Options passed through to Apache Beam.
      max_trials: Tuner budget in trials.
      time_budget: Seconds of search after which no new trial starts and a
        running neural trial ends after its current epoch (None: only
        `max_trials` bounds the search).
      refit_full: Push the judged model's members trained again on train +
        validation + test (`trainer.refit`), with the judged calibration and
        threshold, instead of the judged version itself.
      tuner: `bayesian`, `random` or `hyperband`.
      objective: Tuning objective: `pr_auc` or `recall_at_precision:P`.
      tuning_epochs: Epochs per tuning trial.
      verbose: Keras verbosity of the final fits (0 silent, the default: `trainer.progress` reports
        each epoch; 2 one line per epoch with every metric).
      distribute: tf.distribute strategy for training: `none`, `mirrored`
        (all local devices) or `multi_worker` (one process per worker; the
        cluster comes from `TF_CONFIG`, read by TensorFlow's own cluster
        resolver; docs/scaling.md).
      selection: How trials are scored and the final model is chosen:
        `validation` (the validation split), `cross_validation` (stratified
        k-fold over train + validation; the final model is the fold models'
        ensemble) or `auto` (cross-validation when the validation split holds
        fewer than 50 minority examples).
      cv_folds: k for cross-validation.
      wandb: Log the finished execution to Weights & Biases, `offline`
        (files under the execution, for `wandb sync` later) or `online`;
        None (default) logs nothing. Needs the `tracking` extra.
      wandb_project: The W&B project the run is logged to.
      max_bad_rows: How many bad rows the data step may skip (0, the
        default: the first one stops the run, naming its file, line and
        reason). A bad row is one that cannot be used on its own: a CSV row
        with the wrong number of fields, a missing or unreadable label, a
        cell of a numeric column that is not a number, an infinite value.
        Skipped rows are counted in `RUN/data/source.json` and `run.json`;
        more than this many stop the run with their count.
      vocabulary_size: At most this many values (the most frequent, ties by
        value) make a categorical feature's vocabulary.
      vocabulary_min_count: Values seen fewer times than this in the
        training split stay out of the vocabulary and share the
        out-of-vocabulary bucket (1, the default: every value may enter).
    """

    retired: ClassVar[dict[str, tuple[str, str]]] = RETIRED_SETTINGS  # flags.add_flags accepts and ignores them
    data: str = field(default="sylva", metadata=flag(
        "data", "CSV/Parquet/TFRecord path or glob, or 'sylva'/'synthetic'"))
    label: str | None = field(default=None, metadata=flag("data", "label column (required for your own data)"))
    output_dir: str = field(default="runs/default", metadata=flag("data", "the run directory"))
    positive_label: str | None = field(default=None, metadata=flag(
        "data", "label value of the positive (minority) class"))
    seed: int = field(default=42, metadata=flag("data", "seed of the split, the initial weights and the tuner"))
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    epochs: int = field(default=30, metadata=flag("training", "maximum training epochs"))
    patience: int = field(default=5, metadata=flag("training", "early-stopping patience (epochs)"))
    early_stopping: str = field(default="pr_auc", metadata=flag(
        "training", "validation metric early stopping watches", choices=EARLY_STOPPING))
    loss: str | None = field(default=None, metadata=flag("weighting", "loss family", choices=LOSSES))
    weight_scheme: str | None = field(default=None, metadata=flag(
        "weighting", "how class weights come from the training counts", choices=WEIGHT_SCHEMES,
        renamed=RENAMED_WEIGHT_SCHEMES))
    weight_ratio: float | None = field(default=None, metadata=flag("weighting", "explicit w1/w0"))
    hparams: str | None = field(default=None, metadata=flag("weighting", "best_hyperparameters.json from tuning"))
    threshold_objective: str = field(default="recall_at_precision:0.5", metadata=flag(
        "training", "recall_at_precision:P | precision_at_recall:R | f1 | fbeta:B | cost:FN:FP"))
    calibration: str = field(default="auto", metadata=flag(
        "training", "probability correction for the weighting", choices=CALIBRATIONS))
    synthetic_rows: tuple[int, int] = field(default=SYNTHETIC_ROWS, metadata=flag(
        "data", "size of the 'synthetic' dataset", metavar=("NEGATIVES", "POSITIVES")))
    beam_pipeline_args: tuple[str, ...] = field(default=(), metadata=flag(
        "data", "options for Apache Beam, one string", split="words"))
    max_trials: int = field(default=10, metadata=flag("tuning", "tuner budget in trials"))
    time_budget: float | None = field(default=None, metadata=flag(
        "tuning", "end the search after this many seconds: no new trial starts, a running neural trial stops "
                  "after its epoch (a tree trial finishes); --max-trials still caps the count"))
    skip_weighting_study: bool = field(default=False, metadata=flag(
        "tuning", "do not train the selected model a third time, at N0/N1, to answer 'did weighting help?' "
                  "(trainer/weighting_study.py): saves about one final training per execution"))
    refit_full: bool = field(default=False, metadata=flag(
        "tuning", "after the gate has judged the model it pushes, train its members again on every row (test "
                  "included) and push that instead (AutoGluon's refit_full; run.json records the rows it saw)"))
    tuner: str = field(default="bayesian", metadata=flag("tuning", "keras-tuner's search algorithm", choices=TUNERS))
    objective: str = field(default="pr_auc", metadata=flag("tuning", "pr_auc | recall_at_precision:P"))
    tuning_epochs: int = field(default=8, metadata=flag("tuning", "epochs per trial (Hyperband: max epochs)"))
    verbose: int = field(default=0, metadata=flag(
        "training", "Keras' own output of each final fit: 0 none (default: the progress bars say it), 1 a bar, "
                    "2 one line per epoch with every metric", choices=(0, 1, 2)))
    distribute: str = field(default="none", metadata=flag(
        "training", "tf.distribute strategy for training (mirrored: all local devices; multi_worker: one process "
                    "per worker, cluster from TF_CONFIG, docs/scaling.md)", choices=DISTRIBUTE))
    selection: str = field(default="auto", metadata=flag(
        "training", "score and choose models on the validation split, or by k-fold cross-validation over train + "
                    "validation (auto: cross-validation below 50 validation positives)", choices=SELECTIONS))
    cv_folds: int = field(default=5, metadata=flag("training", "k for cross-validation"))
    wandb: str | None = field(default=None, metadata=flag(
        "tuning", "log the execution to Weights & Biases (offline: files under the execution, no account or "
                  "network; needs the tracking extra)", choices=WANDB_MODES))
    wandb_project: str = field(default="imbalance-tf", metadata=flag("tuning", "the W&B project"))
    max_bad_rows: int = field(default=0, metadata=flag(
        "data", "skip at most this many bad rows (a wrong number of fields, a missing or unreadable label, text in "
                "a numeric column, an infinite value), counted in run.json; 0: the first one stops the run"))
    vocabulary_size: int = field(default=VOCABULARY_SIZE, metadata=flag(
        "data", "at most this many values (most frequent first) in a categorical feature's vocabulary"))
    vocabulary_min_count: int = field(default=1, metadata=flag(
        "data", "values seen fewer times in the training split share the out-of-vocabulary bucket"))

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES, allow_none=True)
        _check_choice("weight_scheme", self.weight_scheme, WEIGHT_SCHEMES, allow_none=True)
        _check_choice("calibration", self.calibration, CALIBRATIONS)
        _check_choice("tuner", self.tuner, TUNERS)
        _check_choice("distribute", self.distribute, DISTRIBUTE)
        _check_choice("selection", self.selection, SELECTIONS)
        _check_choice("early_stopping", self.early_stopping, EARLY_STOPPING)
        _check_choice("wandb", self.wandb, WANDB_MODES, allow_none=True)
        try:  # gs:// and s3:// are run through a local working copy (trainer.run_storage); other URLs fail here
            storage.scheme(self.output_dir)
        except storage.StorageError as error:
            raise ConfigError(f"--output-dir {error}") from None
        if self.max_bad_rows < 0:
            raise ConfigError(f"max_bad_rows must be at least 0, got {self.max_bad_rows}")
        if self.vocabulary_size < 1:
            raise ConfigError(f"vocabulary_size must be at least 1, got {self.vocabulary_size}")
        if self.vocabulary_min_count < 1:
            raise ConfigError(f"vocabulary_min_count must be at least 1, got {self.vocabulary_min_count}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) <= 0:
            raise ConfigError(f"split must be three positive fractions summing to 1, got {self.split}")
        if self.epochs < 1 or self.tuning_epochs < 1:
            raise ConfigError("epochs must be at least 1")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"time_budget must be > 0 seconds, got {self.time_budget}")
        if self.max_trials < 1:
            raise ConfigError(f"max_trials must be at least 1, got {self.max_trials}")
        if self.weight_ratio is not None and not self.weight_ratio > 0:
            raise ConfigError(f"weight_ratio must be > 0, got {self.weight_ratio}")
        # Parsing here makes a bad objective fail before any work is done.
        from trainer.threshold import parse_objective

        parse_objective(self.threshold_objective)
        parse_tuning_objective(self.objective)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Builds a config, failing loudly on unknown keys (retired ones, `RETIRED_SETTINGS`, are dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - set(RETIRED_SETTINGS))
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        values = {key: value for key, value in values.items() if key not in RETIRED_SETTINGS}
        if values.get("weight_scheme") in RENAMED_WEIGHT_SCHEMES:  # e.g. a run.json written before the rename
            values["weight_scheme"] = RENAMED_WEIGHT_SCHEMES[values["weight_scheme"]]
        for key in ("split", "synthetic_rows", "beam_pipeline_args"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def parse_tuning_objective(spec: str) -> tuple[str, float | None]:
    """Parses `pr_auc` or `recall_at_precision:P` into (name, parameter)."""
    if spec == "pr_auc":
        return "pr_auc", None
    name, _, value = spec.partition(":")
    if name == "recall_at_precision" and value:
        return name, parse_fraction(spec, value)
    raise ConfigError(
        f"unknown tuning objective {spec!r}: use 'pr_auc' or 'recall_at_precision:P' "
        "(plain recall at 0.5 is not offered: it rewards ever-larger weights)"
    )


def parse_fraction(spec: str, value: str) -> float:
    """The P or R of an objective spec: a number in (0, 1] (the one rule for both kinds of objective)."""
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{spec!r}: {value!r} is not a number") from None
    if not 0.0 < number <= 1.0:
        raise ConfigError(f"{spec!r}: {number} must be in (0, 1]")
    return number


def _check_choice(name: str, value: Any, choices: tuple[str, ...], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
