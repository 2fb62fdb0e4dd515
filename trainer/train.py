"""Training: loss and weights from hyperparameters, fit with early stopping.

`compile_and_fit` is shared by plain training and by the tuner's
`HyperModel.fit`, so a trial and the final retrain run the same code.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import keras_tuner as kt

from trainer.atomic import write_json_atomically
from trainer.config import RunConfig, parse_tuning_objective
from trainer.data.dataset import make_dataset
from trainer.data.prepare import PreparedData
from trainer.distribute import build_from_spec, replicated, vocabulary_ids
from trainer.hparams import declare_fit_hparams
from trainer.losses import class_weights, make_loss, prior_shift
from trainer.model import class_priors, lookup_layers, training_metrics, with_vocabulary_ids

EVAL_BATCH = 4096
FOCAL_GAMMA = 2.0
LOGIT_ADJUSTMENT_TAU = 1.0


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """What the loss is, resolved from hyperparameters and the config."""

    family: str
    weights: tuple[float, float]
    priors: tuple[float, float]
    batch_size: int
    learning_rate: float
    weight_decay: float
    source: str  # how the weights were chosen, for run.json

    @property
    def ratio(self) -> float:
        return self.weights[1] / self.weights[0]

    @property
    def closed_form_shift(self) -> float | None:
        return prior_shift(self.family, self.weights, self.priors, LOGIT_ADJUSTMENT_TAU)

    def loss(self) -> keras.losses.Loss:
        return make_loss(self.family, self.weights, self.priors, FOCAL_GAMMA, LOGIT_ADJUSTMENT_TAU)


def fit_settings(hp: kt.HyperParameters, counts: tuple[int, int], config: RunConfig,
                 weighted: bool = True) -> FitSettings:
    """Resolves loss family and class weights.

    Precedence: an unweighted baseline uses plain cross entropy; else
    `config.weight_ratio`, then `config.weight_scheme`, then the
    hyperparameter `weight_ratio` (default sqrt(N0/N1); `balanced` is N0/N1).
    """
    values = declare_fit_hparams(hp, counts)
    family = config.loss or values["loss"]
    if not weighted:
        family, weights, source = "weighted_ce", class_weights(counts, "none"), "none (baseline)"
    elif config.weight_ratio is not None:
        weights, source = class_weights(counts, ratio=config.weight_ratio), f"ratio {config.weight_ratio:g}"
    elif config.weight_scheme is not None:
        weights, source = class_weights(counts, config.weight_scheme), f"scheme {config.weight_scheme}"
    else:
        weights = class_weights(counts, ratio=values["weight_ratio"])
        source = f"hyperparameter ratio {values['weight_ratio']:.4g}"
    return FitSettings(family, tuple(float(w) for w in weights), class_priors(counts),
                       int(values["batch_size"]), float(hp.get("learning_rate")), float(hp.get("weight_decay")),
                       source)


def compile_and_fit(model: keras.Model, settings: FitSettings, data: PreparedData, config: RunConfig,
                    callbacks=(), train=None, validation=None, **fit_kwargs) -> keras.callbacks.History:
    """Compiles `model` with the imbalance-aware loss and fits it.

    Early stopping watches `config.early_stopping` on validation (minority
    PR-AUC by default) and restores the best epoch's weights. Under a
    multi-replica strategy with categorical features, what is compiled and
    fitted is `model`'s view over vocabulary ids (same layers and weights).

    Args:
      model: From `build_model`.
      settings: Loss family, weights, batch size, learning rate.
      data: The prepared splits.
      config: The run configuration (epochs, patience, seed, verbosity).
      callbacks: Extra callbacks (the tuner's, TensorBoard).
      train: Training batches; default the train split's shards.
      validation: Early-stopping batches; default the validation split's.
      **fit_kwargs: Forwarded to `model.fit` (the tuner passes `epochs` and,
        for Hyperband, `initial_epoch`).
    """
    _, floor = parse_tuning_objective(config.objective)
    if train is None:
        train = make_dataset(data.pattern("train"), data.schema, settings.batch_size, shuffle=True, seed=config.seed,
                             examples=sum(data.counts["train"]))
    if validation is None:
        validation = make_dataset(data.pattern("validation"), data.schema, EVAL_BATCH,
                                  examples=sum(data.counts["validation"]))
    if replicated():
        if data.schema.categorical:
            # Strings become ids in the input pipeline, and the view over the same layers and
            # weights is what trains (trainer/distribute.py).
            lookups = lookup_layers(model, data.schema)
            train, validation = vocabulary_ids(train, lookups), vocabulary_ids(validation, lookups)
            model = with_vocabulary_ids(model, data.schema)
        build_from_spec(model, train.element_spec)
    compile_model(model, settings, floor)
    stopping = keras.callbacks.EarlyStopping(
        monitor=f"val_{config.early_stopping}", mode="max" if config.early_stopping == "pr_auc" else "min",
        patience=config.patience, restore_best_weights=True
    )
    fit_kwargs.setdefault("epochs", config.epochs)
    fit_kwargs.setdefault("verbose", config.verbose)
    fit_kwargs["shuffle"] = False  # the datasets shuffle themselves; Keras would only warn that it ignores it
    for ignored in ("x", "y", "validation_data", "batch_size"):  # the data comes from `data`
        fit_kwargs.pop(ignored, None)
    return model.fit(train, validation_data=validation, callbacks=[stopping, *callbacks], **fit_kwargs)


class StopAt(keras.callbacks.Callback):
    """Ends training after the epoch during which `deadline` (a `time.monotonic()` value) passed.

    The search's time budget reaches into a running trial with it: a trial
    still training when the budget runs out ends after its current epoch,
    with its best epoch so far (early stopping restores it) as its result,
    instead of running its remaining epochs past the budget.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.stopped_after = None  # the epochs run when the deadline stopped training (None: it did not)

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() >= self.deadline:
            self.model.stop_training = True
            self.stopped_after = epoch + 1


def compile_model(model: keras.Model, settings: FitSettings, recall_precision_floor: float | None) -> None:
    """Compiles with the imbalance-aware loss, AdamW and the logged metrics (trials and final fits alike)."""
    model.compile(
        # AdamW: decoupled weight decay, a tuned regularizer (TabM's recipe).
        optimizer=keras.optimizers.AdamW(settings.learning_rate, weight_decay=settings.weight_decay),
        loss=settings.loss(),
        metrics=training_metrics(recall_precision_floor),
    )


def fit_for_epochs(model: keras.Model, settings: FitSettings, config: RunConfig, train, epochs: int):
    """Fits for exactly `epochs` epochs, with no held-out data (a refit on every row; `trainer.refit`)."""
    compile_model(model, settings, parse_tuning_objective(config.objective)[1])
    return model.fit(train, epochs=epochs, verbose=config.verbose, shuffle=False)


class EpochProgress(keras.callbacks.Callback):
    """Advances a `trainer.progress` step once per epoch, noting the monitored validation metric."""

    def __init__(self, advance, monitor: str):
        super().__init__()
        self.advance, self.monitor = advance, monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        self.advance(note=f"epoch {epoch + 1}: {self.monitor} {value:.4f}" if value is not None else
                     f"epoch {epoch + 1}")


def save_history(history: dict, path: str) -> None:
    """Per-epoch metrics ({name: [value per epoch]}) as JSON (the report's training curves)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomically(path, {name: [float(v) for v in values] for name, values in history.items()})
