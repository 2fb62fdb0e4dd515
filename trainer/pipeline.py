"""`train_and_export`: data -> fit -> calibrate/threshold -> export -> run.json."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time

import keras

from trainer import hparams as hparams_lib
from trainer import progress
from trainer.candidates import Member, Splits, combine, train_candidate
from trainer.config import RunConfig
from trainer.data.prepare import PreparedData, prepare_data, run_record
from trainer.distribute import check_supported, make_strategy, output_dir_of, strategy_scope, worker_count
from trainer.finalize import finalize, raw_test_predictions
from trainer.layout import LOGS_DIR, MODEL_DIRS, history_path
from trainer.losses import prior_shift
from trainer.run_storage import require_local
from trainer.summary import MemberSummary, ModelSummary, RowsSeen, read_run, write_run
from trainer.train import EpochProgress, fit_settings, save_history
from trainer.weighting_study import TUNED, UNWEIGHTED, save_predictions


def train_and_export(config: RunConfig, data: PreparedData | None = None, values: dict | None = None,
                     weighted: bool = True, members: list[Member] | None = None,
                     export_dir: str | None = None, study_variant: str | None = None,
                     reuse: dict | None = None, keep_predictions: bool = False,
                     splits: Splits | None = None) -> ModelSummary | dict:
    """Trains one model (or an ensemble of members) and exports it as the next version.

    Args:
      config: The run configuration.
      data: Prepared data; prepared (or reused) from `config` when None.
      values: Hyperparameter values overriding the defaults / `--hparams`
        (one model; ignored when `members` is given).
      weighted: False trains the unweighted baseline (plain cross entropy)
        into `baseline_model/`: every member without class weights.
      members: The ensemble to train and export (from the search's ensemble
        selection, `tuning.ensemble`): each member is trained with its own
        hyperparameters and the exported model averages their probabilities
        with the members' weights.
      export_dir: Where the versions go, relative to the run directory;
        default `serving_model/` (weighted) or `baseline_model/`. A tuning
        execution exports its candidate to `candidate_model/`, because only
        the push gate may write what is served (docs/design.md §10).
      study_variant: Train for the weighting study only
        (`trainer.weighting_study`, e.g. its N0/N1 variant): nothing is
        exported or written to run.json; the raw predictions are kept under
        this name.
      keep_predictions: Also keep the raw predictions of the weighted model
        (as `tuned`) or the baseline (as `unweighted`) for the weighting
        study, which a tuning execution runs next (a `trainer.task` run has
        no study, so nothing is kept).
      reuse: Members already trained by an earlier call on the same data,
        filled by this one (`member_key` -> candidate): a member whose
        hyperparameters and resolved loss and weights are the same is not
        trained again (the twin's unweighted members, the study's members
        already at N0/N1).
      splits: The splits already in memory (the search's, shared by the
        candidate, its twin and the study's variant): loaded from the
        prepared data when None.

    Returns:
      The model's `trainer.summary.ModelSummary`, also written under
      run.json's "weighted"/"baseline" key (a study variant's: a small dict
      of its weight ratios and reuse).
      In a multi-worker run only the chief (`trainer.distribute.is_chief`)
      writes the run; every other worker runs the same steps into a scratch
      directory that is removed, so the paths of its summary no longer exist.
    """
    require_local(config.output_dir)
    # First: a multi-worker strategy configures collective ops, which must precede any TensorFlow op.
    strategy = make_strategy(config.distribute)
    check_supported(strategy)
    file_values = hparams_lib.load_values(config.hparams) if config.hparams else {}  # fail before writing
    read_run(config.output_dir)  # a run.json this version cannot read fails here, not after the training
    if data is None:
        with progress.step("data", "split, statistics and shards"):
            data = prepare_data(config)
    members = members or [Member(values or {})]
    members = [dataclasses.replace(m, values={**file_values, **m.values}) for m in members]
    with output_dir_of(strategy, config.output_dir) as output_dir:  # only the chief writes the run
        return _train_and_export(config.replace(output_dir=output_dir), data, strategy, members, weighted,
                                 export_dir, study_variant, reuse, keep_predictions, splits)


def _train_and_export(config, data, strategy, members: list[Member], weighted, export_dir, study_variant,
                      reuse, keep_predictions, splits) -> ModelSummary | dict:
    name = study_variant or ("weighted" if weighted else "baseline")
    counts = data.train_counts
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    splits = Splits(data, config) if splits is None else splits
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(config.output_dir, LOGS_DIR, name))
    trained, reused = [], []
    with strategy_scope(strategy):  # variables and train steps replicated across devices
        for index, member in enumerate(members):
            hp = hparams_lib.with_values(counts, member.values)
            settings = fit_settings(hp, counts, config, weighted=weighted)
            step = name if len(members) == 1 else f"{name} member {index + 1} of {len(members)}"
            key = member_key(hp, settings)
            reused.append(reuse is not None and key in reuse)
            if reused[-1]:
                with progress.step(f"fit {step}", "the same model as an earlier one: reused"):
                    candidate = reuse[key]
            else:
                with _fit_step(step, hp, config, splits) as epoch_progress:
                    candidate = train_candidate(hp, settings, data, config, config.epochs, splits, refit=True,
                                                callbacks=[epoch_progress] + ([tensorboard] if index == 0 else []))
                if reuse is not None:
                    reuse[key] = candidate
            trained.append((hp, settings, candidate))
    heaviest = max(range(len(members)), key=lambda i: members[i].weight)
    hp, settings, _ = trained[heaviest]  # the single model, or the ensemble's heaviest member
    candidate = combine([c for _, _, c in trained], [m.weight for m in members], config)
    keep = functools.partial(save_predictions, config.output_dir, study_variant or (TUNED if weighted else UNWEIGHTED),
                             (candidate.margins, candidate.labels), ratios=[st.ratio for _, st, _ in trained],
                             weights=[st.weights for _, st, _ in trained])
    if study_variant:
        keep(raw_test_predictions(candidate.model, data))
        return {"variant": study_variant, "weight_ratios": [st.ratio for _, st, _ in trained], "reused": reused}
    # A mix has no closed-form shift: `auto` calibration then fits Platt scaling.
    shift = closed_form_shift(hp, settings) if len(members) == 1 else None
    save_history(candidate.history, history_path(config.output_dir, name))
    export_dir = export_dir or MODEL_DIRS[name]
    summary, test = finalize(candidate.model, settings, data, config, os.path.join(config.output_dir, export_dir),
                             held_out=(candidate.margins, candidate.labels), shift=shift)
    if keep_predictions:
        keep(test)
    grown = {k: v for k, v in candidate.info.items() if k != "members"}  # a blend's: described per member below
    summary = summary.replace(
        export_dir=export_dir, hyperparameters=dict(hp.values),
        model_family=hparams_lib.declare_family(hp) if len(members) == 1 else "ensemble",
        selection="cross_validation" if splits.cross_validation else "validation",
        held_out_score=candidate.score, **grown,
        train_seconds=round(time.time() - started, 1), class_counts=data.counts,
        replicas=strategy.num_replicas_in_sync if strategy else 1, workers=worker_count(strategy),
        rows_seen=tuple(_rows_seen(data, config, splits, c) for _, _, c in trained),
        reused=reused,  # per member: the same model as one an earlier call trained (`reuse`)
        members=tuple(_describe_member(m, h, st, c) for m, (h, st, c) in zip(members, trained, strict=True))
        if len(members) > 1 else None)
    update_run_json(config, {name: summary, **run_record(data)})  # run_record: the bad rows skipped
    return summary


def member_key(hp, settings) -> str:
    """What makes two trainings of a member the same: its hyperparameters and its resolved loss settings
    (weights included; how they were chosen does not matter)."""
    return json.dumps([dict(hp.values), dataclasses.asdict(dataclasses.replace(settings, source=""))],
                      sort_keys=True)


def _describe_member(member: Member, hp, settings, candidate) -> MemberSummary:
    """A member's facts for run.json, the report and the model card."""
    return MemberSummary(
        weight=member.weight, trial=member.trial, name=member.name,
        model_family=hparams_lib.declare_family(hp), hyperparameters=dict(hp.values),
        weight_ratio=settings.ratio, loss=settings.family, held_out_score=candidate.score,
        **{k: v for k, v in candidate.info.items() if k in ("rounds", "refit_rows", "epochs_run", "best_epochs", "cross_validation")})


def _rows_seen(data: PreparedData, config: RunConfig, splits, candidate) -> RowsSeen:
    """Which rows a member of the exported model was trained on (run.json, the model card)."""
    train, validation = sum(data.counts["train"]), sum(data.counts["validation"])
    if "refit_rows" in candidate.info:
        return RowsSeen(rows=candidate.info["refit_rows"], how="refit on train + validation")
    if splits.cross_validation:
        share = (config.cv_folds - 1) / config.cv_folds
        return RowsSeen(rows=int(round(share * (train + validation))),
                        how=f"each of {config.cv_folds} fold models on (k - 1)/k of train + validation")
    return RowsSeen(rows=train, how="train split")


@contextlib.contextmanager
def _fit_step(name: str, hp, config: RunConfig, splits: Splits):
    """A progress step for one final fit; yields its per-epoch callback.

    Epochs are the total of a neural model on the validation split (early
    stopping may end it sooner); trees and cross-validated folds get a
    spinner with the elapsed time.
    """
    family = hparams_lib.declare_family(hp)
    total = config.epochs if family == "neural" and not splits.cross_validation else None
    with progress.step(f"fit {name}", f"epochs ({family})", total=total) as advance:
        yield EpochProgress(advance, f"val_{config.early_stopping}")


def closed_form_shift(hp, settings) -> float | None:
    """The logit shift the weighting causes: the loss's, or weighted log-loss's for trees."""
    if hparams_lib.declare_family(hp) == "trees":
        return prior_shift("weighted_ce", settings.weights, settings.priors)
    return settings.closed_form_shift


def update_run_json(config: RunConfig, section: dict) -> None:
    """Merges `section` into RUN/run.json (written atomically, through `trainer.summary`).

    Args:
      config: The run configuration, recorded with the library versions.
      section: `trainer.summary.RunSummary` fields to replace: a
        `ModelSummary` under `weighted` / `baseline`, JSON values elsewhere.
    """
    run = read_run(config.output_dir).replace(**section, config=config.to_dict(), versions=_versions())
    write_run(config.output_dir, run)


def _versions() -> dict:
    import apache_beam
    import keras_tuner
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "keras_tuner": keras_tuner.__version__,
            "apache_beam": apache_beam.__version__}
