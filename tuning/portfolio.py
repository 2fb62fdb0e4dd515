"""The search's first trials: a fixed portfolio of configurations known to be strong.

A few Bayesian trials on a small budget can miss a good region entirely,
while a handful of proven, untuned configurations rarely does badly
(AutoGluon's default presets and TabRepo's zero-shot portfolios rest on the
same observation). So the first trials of a search are these, in this order,
and the Bayesian optimizer spends what is left of the budget. None of them
was chosen on this package's benchmark datasets: each comes from a library's
own defaults or a published preset (docs/design.md, "Portfolio").

Every entry is a set of hyperparameters of the one search space
(`trainer.hparams`): the rest stay at their defaults, so a portfolio trial
round-trips through keras-tuner's config like any other.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

WEIGHTINGS = ("default", "balanced", "none")


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One portfolio entry.

    Attributes:
      name: Short name (trials.csv, run.json, the report).
      source: Where the configuration comes from.
      values: Hyperparameters that differ from the search space's defaults.
      weighting: The class-weight ratio w1/w0: `default` (the space's
        default, sqrt(N0/N1)), `balanced` (N0/N1, LightGBM's
        `scale_pos_weight` / scikit-learn's `class_weight="balanced"`) or
        `none` (1: the unweighted model, so the selection can pick it).
    """

    name: str
    source: str
    values: dict[str, Any]
    weighting: str = "default"

    def resolve(self, defaults: dict[str, Any], balanced_ratio: float) -> dict[str, Any]:
        """Complete hyperparameter values: the defaults with this entry's values and weight ratio."""
        ratio = {"default": defaults.get("weight_ratio", math.sqrt(balanced_ratio)),
                 "balanced": balanced_ratio, "none": 1.0}[self.weighting]
        return {**defaults, **self.values, "weight_ratio": float(ratio)}


# LightGBM's own defaults where the space has a knob: learning_rate 0.1, num_leaves 31,
# min_data_in_leaf 20, no feature or bagging subsampling, lambda_l2 0 (the space's floor, 0.001).
LIGHTGBM_DEFAULTS = {"model_family": "trees", "tree_learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
                     "feature_fraction": 1.0, "bagging_fraction": 1.0, "tree_l2": 1e-3}

# Cheapest first, as AutoGluon trains its gradient-boosted models before its neural ones: a time
# budget or a small --max-trials takes a prefix, and on wide data one TabM trial can outlast the
# whole budget (docs/design.md, "Portfolio first"; the order's measurement: docs/benchmarks.md).
PORTFOLIO = (
    Configuration("lightgbm_defaults", "LightGBM's library defaults with scale_pos_weight = N0/N1",
                  LIGHTGBM_DEFAULTS, weighting="balanced"),
    Configuration("trees", "this package's tree defaults (trainer/hparams.py)", {"model_family": "trees"}),
    Configuration("logistic_regression",
                  "logistic regression with balanced class weights (scikit-learn's LogisticRegression("
                  "class_weight='balanced'), the benchmark's linear contender), as a Keras model on standardized inputs",
                  {"model_family": "neural", "body": "linear", "numeric_encoding": "standard",
                   "learning_rate": 1e-2, "weight_decay": 1e-4}, weighting="balanced"),
    Configuration("trees_unweighted", "this package's tree defaults without class weights (w1/w0 = 1)",
                  {"model_family": "trees"}, weighting="none"),
    Configuration("lightgbm_extra_trees", "AutoGluon's 'GBMXT' preset: LightGBM with extra_trees, learning rate 0.05",
                  {**LIGHTGBM_DEFAULTS, "tree_learning_rate": 0.05, "extra_trees": True}),
    Configuration("lightgbm_large", "AutoGluon's 'GBMLarge' preset: learning rate 0.03, 128 leaves, "
                  "feature_fraction 0.9, min_data_in_leaf 3",
                  {**LIGHTGBM_DEFAULTS, "tree_learning_rate": 0.03, "num_leaves": 128, "feature_fraction": 0.9,
                   "min_child_samples": 3}),
    Configuration("tabm_ple", "this package's neural defaults: TabM (k = 8) on piecewise-linear encodings",
                  {"model_family": "neural"}),
)


def portfolio_values(defaults: dict[str, Any], counts: tuple[int, int]) -> list[dict[str, Any]]:
    """The portfolio's complete hyperparameter values, in trial order."""
    balanced = counts[0] / counts[1]
    return [entry.resolve(defaults, balanced) for entry in PORTFOLIO]


def portfolio_name(values: dict[str, Any], counts: tuple[int, int], defaults: dict[str, Any]) -> str | None:
    """The portfolio entry whose values these are, or None for a searched trial."""
    for entry, resolved in zip(PORTFOLIO, portfolio_values(defaults, counts), strict=True):
        if all(_same(values.get(name), value) for name, value in resolved.items()):
            return entry.name
    return None


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b
