"""Which slices TFMA computes, and bucketing of numeric slice features.

TFMA slices on exact feature values, so slicing a float feature directly would
make one slice per distinct value. A numeric feature named as a slice feature
is instead bucketed by its training z-score (mean and standard deviation from
the run's schema) into a new bytes feature `<name>_bucket`, added to each
serialized tf.Example before TFMA reads it. The model's parser ignores
features it does not know, so its predictions are unchanged.
"""

from __future__ import annotations

import dataclasses
import math

from trainer.schema import Schema

BUCKET_SUFFIX = "_bucket"
# z-score edges: five buckets plus "missing"; coarse on purpose, so that each
# bucket keeps enough minority examples to have meaningful metrics.
Z_EDGES = (-1.5, -0.5, 0.5, 1.5)
MISSING = "missing"


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """The slicing of one evaluation.

    Attributes:
      label: The label key (always sliced on: positives vs negatives).
      categorical: Categorical features sliced on their raw values.
      numeric: Numeric features sliced on their z-score bucket, name -> (mean, std).
    """

    label: str
    categorical: tuple[str, ...]
    numeric: dict[str, tuple[float, float]]

    @property
    def feature_keys(self) -> list[str]:
        """The slicing feature of each single-feature slicing spec, in order."""
        return [self.label, *self.categorical, *(name + BUCKET_SUFFIX for name in self.numeric)]


def plan_slices(schema: Schema, slice_features: tuple[str, ...] | None, max_vocabulary: int) -> SlicePlan:
    """Chooses the slicing features.

    Args:
      schema: The run's schema.
      slice_features: Requested features; None = categoricals with at most
        `max_vocabulary` values (larger vocabularies give slices too small to
        measure a minority class on).
      max_vocabulary: See above.

    Raises:
      ValueError: a requested feature is not in the schema.
    """
    by_name = {feature.name: feature for feature in schema.features}
    if slice_features is None:
        names = [f.name for f in schema.categorical if 0 < len(f.vocabulary) <= max_vocabulary]
    else:
        unknown = [name for name in slice_features if name not in by_name and name != schema.label]
        if unknown:
            raise ValueError(f"unknown slice feature(s): {', '.join(unknown)}; "
                             f"the schema has {', '.join(sorted(by_name))}")
        names = [name for name in slice_features if name != schema.label]
    categorical = tuple(name for name in names if by_name[name].kind == "categorical")
    numeric = {name: (by_name[name].mean, by_name[name].std) for name in names if by_name[name].kind == "numeric"}
    return SlicePlan(label=schema.label, categorical=categorical, numeric=numeric)


def bucket_name(value: float | None, mean: float, std: float) -> str:
    """The z-score bucket of one value, e.g. `z<-1.5`, `-0.5..0.5`, `z>=1.5`."""
    if value is None or math.isnan(value):
        return MISSING
    z = (value - mean) / std
    if z < Z_EDGES[0]:
        return f"z<{Z_EDGES[0]:g}"
    for low, high in zip(Z_EDGES, Z_EDGES[1:], strict=False):
        if z < high:
            return f"{low:g}..{high:g}"
    return f"z>={Z_EDGES[-1]:g}"


def add_buckets(serialized: bytes, numeric: dict[str, tuple[float, float]]) -> bytes:
    """A serialized tf.Example with a `<name>_bucket` bytes feature per numeric slice feature."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    features = example.features.feature
    for name, (mean, std) in numeric.items():
        values = features[name].float_list.value if name in features else ()
        bucket = bucket_name(values[0] if values else None, mean, std)
        features[name + BUCKET_SUFFIX].bytes_list.value.append(bucket.encode())
    return example.SerializeToString()
