"""The search space, declared once.

`build_model(hp)` reads the architecture hyperparameters declared here, and
training reads the fit-time ones (loss family, weight ratio, batch size). A
fresh `keras_tuner.HyperParameters` yields the defaults, so plain training and
tuning run the very same code.
"""

from __future__ import annotations

import json
import math

import keras_tuner as kt

from trainer.bodies import BODIES
from trainer.config import LOSSES, ConfigError
from trainer.encodings import NUMERIC_ENCODINGS

WIDTHS = (32, 64, 128, 256)
PLE_BINS = (8, 16, 32)
ENSEMBLE_SIZES = (4, 8, 16)  # TabM's k; 32 (the paper's) costs 2x of 16 on a CPU for little more
EMBEDDING_DIMS = (4, 8, 16)
BATCH_SIZES = (32, 64, 128, 256, 512, 1024)


def declare_model_hparams(hp: kt.HyperParameters) -> dict:
    """Architecture and optimizer hyperparameters (used by `build_model`).

    `ple_bins` only matters for the `ple` encoding, `periodic_sigma` for
    `periodic`, `ensemble_size` for the `tabm` body; they are declared
    unconditionally so every trial records a complete, reusable set.
    """
    return {
        "numeric_encoding": hp.Choice("numeric_encoding", list(NUMERIC_ENCODINGS), default="ple"),
        "bins": hp.Choice("ple_bins", list(PLE_BINS), default=16),
        "sigma": hp.Float("periodic_sigma", 0.01, 10.0, sampling="log", default=0.3),
        "body": hp.Choice("body", list(BODIES), default="tabm"),
        "ensemble_size": hp.Choice("ensemble_size", list(ENSEMBLE_SIZES), default=8),
        "depth": hp.Int("depth", 1, 3, default=2),
        "width": hp.Choice("width", list(WIDTHS), default=128),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.1),
        "embedding_dim": hp.Choice("embedding_dim", list(EMBEDDING_DIMS), default=8),
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3),
        "weight_decay": hp.Float("weight_decay", 1e-5, 1e-1, sampling="log", default=1e-3),
    }


FAMILIES = ("neural", "trees")


def declare_family(hp: kt.HyperParameters) -> str:
    """The model family: the neural model of `build_model`, or gradient-boosted trees."""
    return hp.Choice("model_family", list(FAMILIES), default="neural")


def declare_tree_hparams(hp: kt.HyperParameters) -> dict:
    """LightGBM's hyperparameters for the `trees` family (`trainer.trees.fit_trees`).

    Rounds are not searched: early stopping on held-out average precision picks them.
    """
    return {
        "tree_learning_rate": hp.Float("tree_learning_rate", 0.01, 0.3, sampling="log", default=0.05),
        "num_leaves": hp.Int("num_leaves", 4, 128, sampling="log", default=15),
        "min_child_samples": hp.Int("min_child_samples", 2, 100, sampling="log", default=10),
        "feature_fraction": hp.Float("feature_fraction", 0.5, 1.0, step=0.1, default=0.8),
        "bagging_fraction": hp.Float("bagging_fraction", 0.5, 1.0, step=0.1, default=0.8),
        "tree_l2": hp.Float("tree_l2", 1e-3, 10.0, sampling="log", default=0.1),
        # LightGBM's extremely randomized split thresholds (AutoGluon's "GBMXT" portfolio member).
        "extra_trees": hp.Boolean("extra_trees", default=False),
    }


def declare_fit_hparams(hp: kt.HyperParameters, counts: tuple[int, int]) -> dict:
    """Fit-time hyperparameters: loss family, weight ratio r = w1 / w0, batch size.

    The ratio is searched on a log scale from 1 (unweighted) to 3 x N0/N1; its
    default is sqrt(N0/N1), halfway on that log scale between unweighted and
    `balanced`: fully balanced weights cost PR-AUC (the unweighted model beat
    the balanced one on 6 of 10 datasets, and tuned LightGBM settles near
    (N0/N1)^0.44; docs/benchmarks.md).
    The default batch size follows the training split's size (`default_batch_size`).
    """
    balanced = counts[0] / counts[1]
    upper = max(3.0 * balanced, 2.0)
    return {
        "loss": hp.Choice("loss", list(LOSSES), default="weighted_ce"),
        "weight_ratio": hp.Float("weight_ratio", 1.0, upper, sampling="log", default=min(math.sqrt(balanced), upper)),
        "batch_size": hp.Choice("batch_size", batch_sizes(counts), default=default_batch_size(counts)),
    }


def batch_sizes(counts: tuple[int, int]) -> list[int]:
    """The searched batch sizes: the default, two halvings and two doublings (within `BATCH_SIZES`).

    Tied to the data's size, so no trial runs thousands of tiny steps per
    epoch on a large split, or a handful on a small one.
    """
    index = BATCH_SIZES.index(default_batch_size(counts))
    return list(BATCH_SIZES[max(index - 2, 0):index + 3])


def default_batch_size(counts: tuple[int, int]) -> int:
    """About 50 steps per epoch, as a power of two in [32, 1024].

    A fixed 256 leaves a 1,000-row training split 4 steps per epoch, too few
    for early stopping to find a good epoch (measured: docs/benchmarks.md).
    """
    steps_size = sum(counts) / 50.0
    return min(BATCH_SIZES, key=lambda size: abs(math.log2(size) - math.log2(max(steps_size, 1.0))))


def declare_all(counts: tuple[int, int]) -> kt.HyperParameters:
    """A HyperParameters object holding the whole search space at its defaults."""
    hp = kt.HyperParameters()
    declare_family(hp)
    declare_model_hparams(hp)
    declare_tree_hparams(hp)
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
