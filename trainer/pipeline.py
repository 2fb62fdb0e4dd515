"""`train_and_export`: data -> fit -> calibrate/threshold -> export -> run.json."""

from __future__ import annotations

import json
import os
import time

import keras

from trainer import hparams as hparams_lib
from trainer.config import RunConfig
from trainer.crossval import cross_validate, fold_ensemble, uses_cross_validation
from trainer.distribute import check_supported, make_strategy, strategy_scope
from trainer.finalize import finalize
from trainer.model import build_model, class_priors
from trainer.prepare import PreparedData, prepare_data
from trainer.train import compile_and_fit, fit_settings, save_history

MODEL_DIRS = {"weighted": "serving_model", "baseline": "baseline_model"}


def train_and_export(config: RunConfig, data: PreparedData | None = None, values: dict | None = None,
                     weighted: bool = True) -> dict:
    """Trains one model and exports it as the next version.

    Args:
      config: The run configuration.
      data: Prepared data; prepared (or reused) from `config` when None.
      values: Hyperparameter values overriding the defaults / `--hparams`.
      weighted: False trains the unweighted baseline (plain cross entropy)
        into `baseline_model/`.

    Returns:
      The summary also written under run.json's "weighted"/"baseline" key.
    """
    file_values = hparams_lib.load_values(config.hparams) if config.hparams else {}  # fail before writing
    data = data or prepare_data(config)
    name = "weighted" if weighted else "baseline"
    counts = data.train_counts
    hp = hparams_lib.with_values(counts, {**file_values, **(values or {})})
    settings = fit_settings(hp, counts, config, weighted=weighted)
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.distribute)
    check_supported(strategy, bool(data.schema.categorical))
    started = time.time()
    log_dir = os.path.join(config.output_dir, "logs", name)
    held_out, selection = None, "validation"
    with strategy_scope(strategy):  # variables and train steps replicated across devices
        if uses_cross_validation(data, config):
            folds = cross_validate(hp, settings, data, config, epochs=config.epochs, verbose=config.verbose)
            model, history, selection = fold_ensemble(folds.models, data.schema), folds.histories[0], "cross_validation"
            held_out = folds.margins, folds.labels
        else:
            model = build_model(hp, data.schema, priors=class_priors(counts))
            history = compile_and_fit(model, settings, data, config,
                                      callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir)])
    save_history(history, os.path.join(config.output_dir, "history", f"{name}.json"))
    summary = finalize(model, settings, data, config, os.path.join(config.output_dir, MODEL_DIRS[name]), held_out)
    if held_out is not None:
        summary["cross_validation"] = {"folds": config.cv_folds, "fold_scores": folds.fold_scores,
                                       "mean": folds.score, "epochs_run": [len(h.epoch) for h in folds.histories]}
    summary.update({"hyperparameters": dict(hp.values), "selection": selection, "epochs_run": len(history.epoch),
                    "train_seconds": round(time.time() - started, 1), "class_counts": data.counts,
                    "replicas": strategy.num_replicas_in_sync if strategy else 1})
    update_run_json(config, {name: summary})
    return summary


def update_run_json(config: RunConfig, section: dict) -> None:
    """Merges `section` into RUN/run.json (written atomically)."""
    path = os.path.join(config.output_dir, "run.json")
    payload = {}
    if os.path.exists(path):
        with open(path) as handle:
            payload = json.load(handle)
    payload.update(section)
    payload["config"] = config.to_dict()
    payload["versions"] = _versions()
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w") as handle:
            json.dump(payload, handle, indent=1, default=str)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):  # e.g. a full disk: leave no half-written file behind
            os.remove(temporary)
        raise


def _versions() -> dict:
    import apache_beam
    import keras_tuner
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "keras_tuner": keras_tuner.__version__,
            "apache_beam": apache_beam.__version__}


def headline(summary: dict) -> str:
    """One line of the minority-class test metrics."""
    test = summary["test"]
    return (f"test PR-AUC {test['pr_auc']:.4f}  ROC-AUC {test['roc_auc']:.4f}  "
            f"recall {test['recall']:.3f} / precision {test['precision']:.3f} at threshold "
            f"{test['threshold']:.4f}  Brier {test['brier']:.4f} (before calibration {test['brier_before']:.4f})")
