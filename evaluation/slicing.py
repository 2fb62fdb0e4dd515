"""Which slices TFMA computes, and bucketing of numeric slice features.

Default slices: the label; every categorical feature with at most
`max_vocabulary` values; and the `DEFAULT_NUMERIC_SLICES` most informative
numeric features, ranked by |ROC-AUC - 0.5| of the feature alone against the
label on the validation split (a feature that separates the classes in
either direction ranks high; the test split is never used to choose). So a
numeric-only dataset such as sylva still gets feature slices.

TFMA slices on exact feature values, so slicing a float feature directly would
make one slice per distinct value. A numeric slice feature is instead
bucketed by the training split's quartiles (from the run's schema) into a new
bytes feature `<name>_bucket`, added to each serialized tf.Example before
TFMA reads it. The model's parser ignores features it does not know, so its
predictions are unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from trainer.data.schema import Schema

BUCKET_SUFFIX = "_bucket"
MISSING = "missing"
DEFAULT_NUMERIC_SLICES = 2
# Quartiles: coarse on purpose, so each bucket keeps enough minority examples
# to have meaningful metrics.
QUARTILE_LEVELS = (0.25, 0.5, 0.75)


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """The slicing of one evaluation.

    Attributes:
      label: The label key (always sliced on: positives vs negatives).
      categorical: Categorical features sliced on their raw values.
      numeric: Numeric features sliced on quartile buckets, name -> the
        training split's distinct quartile edges (ascending).
    """

    label: str
    categorical: tuple[str, ...]
    numeric: dict[str, tuple[float, ...]]

    @property
    def feature_keys(self) -> list[str]:
        """The slicing feature of each single-feature slicing spec, in order."""
        return [self.label, *self.categorical, *(name + BUCKET_SUFFIX for name in self.numeric)]


def plan_slices(schema: Schema, slice_features: tuple[str, ...] | None, max_vocabulary: int,
                informative: list[str] | None = None) -> SlicePlan:
    """Chooses the slicing features.

    Args:
      schema: The run's schema.
      slice_features: Requested features; None = the defaults (module doc).
      max_vocabulary: Largest vocabulary of a default categorical slice
        (larger ones give slices too small to measure a minority class on).
      informative: Numeric feature names, most informative first
        (`rank_numeric_features`); the defaults take the first
        `DEFAULT_NUMERIC_SLICES`. None: no default numeric slices.

    Raises:
      ValueError: a requested feature is not in the schema.
    """
    by_name = {feature.name: feature for feature in schema.features}
    if slice_features is None:
        names = [f.name for f in schema.categorical if 0 < len(f.vocabulary) <= max_vocabulary]
        names += list(informative or [])[:DEFAULT_NUMERIC_SLICES]
    else:
        unknown = [name for name in slice_features if name not in by_name and name != schema.label]
        if unknown:
            raise ValueError(f"unknown slice feature(s): {', '.join(unknown)}; "
                             f"the schema has {', '.join(sorted(by_name))}")
        names = [name for name in slice_features if name != schema.label]
    categorical = tuple(name for name in names if by_name[name].kind == "categorical")
    numeric = {name: quartile_edges(by_name[name]) for name in names if by_name[name].kind == "numeric"}
    return SlicePlan(label=schema.label, categorical=categorical, numeric=numeric)


def quartile_edges(feature) -> tuple[float, ...]:
    """The distinct training quartiles of a numeric feature (fewer for discrete ones)."""
    if not feature.quantiles:  # a schema written before quantiles were stored: mean +- std
        return (feature.mean - feature.std, feature.mean, feature.mean + feature.std)
    levels = np.linspace(0.0, 1.0, len(feature.quantiles))  # the schema stores QUANTILE_LEVELS evenly spaced ones
    edges = [feature.quantiles[int(np.argmin(np.abs(levels - q)))] for q in QUARTILE_LEVELS]
    return tuple(sorted(set(edges)))


def rank_numeric_features(features: dict[str, np.ndarray], labels: np.ndarray) -> list[str]:
    """Numeric feature names by |ROC-AUC - 0.5| against `labels`, highest first (NaNs dropped)."""
    from sklearn.metrics import roc_auc_score

    strength = {}
    for name, values in features.items():
        present = ~np.isnan(values)
        y = labels[present]
        if 0 < y.sum() < y.size:
            strength[name] = abs(roc_auc_score(y, values[present]) - 0.5)
    return sorted(strength, key=lambda name: (-strength[name], name))


def bucket_name(value: float | None, edges: tuple[float, ...]) -> str:
    """The bucket of one value: `< e1`, `e1..e2`, ..., `>= ek` (edges printed with 4 significant digits)."""
    if value is None or math.isnan(value):
        return MISSING
    if value < edges[0]:
        return f"< {edges[0]:.4g}"
    for low, high in zip(edges, edges[1:], strict=False):
        if value < high:
            return f"{low:.4g}..{high:.4g}"
    return f">= {edges[-1]:.4g}"


def add_buckets(serialized: bytes, numeric: dict[str, tuple[float, ...]]) -> bytes:
    """A serialized tf.Example with a `<name>_bucket` bytes feature per numeric slice feature."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    features = example.features.feature
    for name, edges in numeric.items():
        values = features[name].float_list.value if name in features else ()
        bucket = bucket_name(values[0] if values else None, edges)
        features[name + BUCKET_SUFFIX].bytes_list.value.append(bucket.encode())
    return example.SerializeToString()


def readable_feature(name: str) -> str:
    """A short display name: the last part of a pipeline-prefixed name (`a__b__54` -> `feature 54`)."""
    short = name.split("__")[-1] or name
    return f"feature {short}" if short.isdigit() else short


def readable_slice(slice_key: tuple, label: str | None = None) -> str:
    """A slice as people read it: `x54 < 470`, `470 ≤ x54 < 512`, `x54 ≥ 600`, `x54 missing`, `label = 1 (minority)`.

    Bucketed numeric features (`<name>_bucket`, values from `bucket_name`)
    show the feature's short name and the bucket's range; other features
    show `name = value`. The empty key is `overall`.
    """
    if not slice_key:
        return "overall"
    parts = []
    for feature, value in slice_key:
        value = value.decode() if isinstance(value, bytes) else str(value)
        if feature == label:
            parts.append(f"{feature} = {value} ({'minority' if value == '1' else 'majority'})")
        elif feature.endswith(BUCKET_SUFFIX):
            parts.append(_bucket_range(readable_feature(feature[:-len(BUCKET_SUFFIX)]), value))
        else:
            parts.append(f"{readable_feature(feature)} = {value}")
    return ", ".join(parts)


def _bucket_range(name: str, bucket: str) -> str:
    """`bucket_name`'s label turned into a range of the feature."""
    if bucket == MISSING:
        return f"{name} missing"
    if bucket.startswith("< "):
        return f"{name} < {bucket[2:]}"
    if bucket.startswith(">= "):
        return f"{name} ≥ {bucket[3:]}"
    low, _, high = bucket.partition("..")
    return f"{low} ≤ {name} < {high}" if high else f"{name} = {bucket}"
