"""The search space, declared once.

`build_model(hp)` reads the architecture hyperparameters declared here, and
training reads the fit-time ones (loss family, weight ratio, batch size). A
fresh `keras_tuner.HyperParameters` yields the defaults, so plain training and
tuning run the very same code.
"""

from __future__ import annotations

import json

import keras_tuner as kt

from trainer.config import LOSSES, ConfigError

WIDTHS = (32, 64, 128, 256)
EMBEDDING_DIMS = (4, 8, 16)
BATCH_SIZES = (128, 256, 512, 1024)


def declare_model_hparams(hp: kt.HyperParameters) -> dict:
    """Architecture and optimizer hyperparameters (used by `build_model`)."""
    return {
        "depth": hp.Int("depth", 1, 3, default=2),
        "width": hp.Choice("width", list(WIDTHS), default=128),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.2),
        "embedding_dim": hp.Choice("embedding_dim", list(EMBEDDING_DIMS), default=8),
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3),
    }


def declare_fit_hparams(hp: kt.HyperParameters, counts: tuple[int, int]) -> dict:
    """Fit-time hyperparameters: loss family, weight ratio r = w1 / w0, batch size.

    The ratio is searched on a log scale from 1 (unweighted) to 3 x N0/N1.
    """
    balanced = counts[0] / counts[1]
    upper = max(3.0 * balanced, 2.0)
    return {
        "loss": hp.Choice("loss", list(LOSSES), default="weighted_ce"),
        "weight_ratio": hp.Float("weight_ratio", 1.0, upper, sampling="log", default=min(balanced, upper)),
        "batch_size": hp.Choice("batch_size", list(BATCH_SIZES), default=256),
    }


def declare_all(counts: tuple[int, int]) -> kt.HyperParameters:
    """A HyperParameters object holding the whole search space at its defaults."""
    hp = kt.HyperParameters()
    declare_model_hparams(hp)
    declare_fit_hparams(hp, counts)
    return hp


def load_values(path: str) -> dict:
    """Hyperparameter values from `best_hyperparameters.json`.

    Accepts the `HyperParameters.get_config()` form (what tuning writes) or a
    plain {name: value} mapping.
    """
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read hyperparameters from {path}: {error}") from None
    if isinstance(payload, dict) and "values" in payload and "space" in payload:
        return dict(kt.HyperParameters.from_config(payload).values)
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: expected a JSON object of hyperparameters")
    return payload


def with_values(counts: tuple[int, int], values: dict) -> kt.HyperParameters:
    """The default space with `values` set; unknown names fail loudly."""
    hp = declare_all(counts)
    # Hyperband records its bookkeeping ("tuner/epochs", ...) as hyperparameters.
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    unknown = sorted(set(values) - set(hp.values))
    if unknown:
        raise ConfigError(f"unknown hyperparameters: {', '.join(unknown)}")
    for name, value in values.items():
        hp.values[name] = value
    return hp
