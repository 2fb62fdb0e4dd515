"""Schema inferred from the training split, saved with the run.

Two files: `schema.json` (what the model's preprocessing is built from:
means, standard deviations, vocabularies) and `schema.pbtxt`, the same facts
as a `tensorflow_metadata` Schema proto, the ecosystem's format.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable

import numpy as np

from trainer.config import VOCABULARY_SIZE

MAX_VOCABULARY = VOCABULARY_SIZE  # the default top-k; rarer values share the out-of-vocabulary bucket
# Quantiles of each numeric feature at levels i / (QUANTILE_LEVELS - 1): the
# quantile-normal and piecewise-linear encodings are built from them (a power
# of two plus one, so 8, 16, 32, 64 and 128 equal-frequency bins nest).
QUANTILE_LEVELS = 129
# The neural models' input holding every numeric feature, [N, F] in schema order (trainer/data/dataset.py):
# no column may take this name (refused by the data step, `trainer.data.ingest`).
NUMERIC_INPUT = "numeric_features"


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" | "categorical"
    mean: float = 0.0
    std: float = 1.0
    vocabulary: tuple[str, ...] = ()
    missing_fraction: float = 0.0
    quantiles: tuple[float, ...] = ()  # training-split quantiles at QUANTILE_LEVELS levels


@dataclasses.dataclass(frozen=True)
class Schema:
    features: tuple[Feature, ...]
    label: str

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "categorical")

    def feature_spec(self, with_label: bool = True) -> dict:
        """`tf.io.parse_example` spec: absent numeric -> NaN, absent text -> ""."""
        import tensorflow as tf

        spec = {}
        for feature in self.features:
            if feature.kind == "numeric":
                spec[feature.name] = tf.io.FixedLenFeature([], tf.float32, default_value=float("nan"))
            else:
                spec[feature.name] = tf.io.FixedLenFeature([], tf.string, default_value="")
        if with_label:
            spec[self.label] = tf.io.FixedLenFeature([], tf.int64)
        return spec

    def to_json(self) -> dict:
        return {"label": self.label, "features": [dataclasses.asdict(f) for f in self.features]}

    @classmethod
    def from_json(cls, payload: dict) -> Schema:
        features = tuple(
            Feature(**{**f, "vocabulary": tuple(f.get("vocabulary", ())),
                       "quantiles": tuple(f.get("quantiles", ()))})
            for f in payload["features"]
        )
        return cls(features=features, label=payload["label"])


def top_vocabulary(counts: Iterable[tuple[str, int]], size: int = MAX_VOCABULARY, min_count: int = 1
                   ) -> tuple[str, ...]:
    """A categorical feature's vocabulary from its (value, count) pairs: both data steps' one rule.

    The values seen at least `min_count` times, most frequent first (ties by
    value, so the order is stable), at most `size` of them; the others share
    the model's out-of-vocabulary bucket.
    """
    kept = [(str(value), int(count)) for value, count in counts if count >= min_count]
    return tuple(value for value, _ in sorted(kept, key=lambda item: (-item[1], item[0]))[:size])


def quantiles(values: np.ndarray) -> tuple[float, ...]:
    """Quantiles of the present values at `QUANTILE_LEVELS` evenly spaced levels.

    Linear interpolation between order statistics, as NumPy's and
    scikit-learn's `QuantileTransformer` compute them. A feature with no
    present value gets all zeros (its imputed value).
    """
    if not values.size:
        return (0.0,) * QUANTILE_LEVELS
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
    return tuple(float(q) for q in np.quantile(values, levels))


def save_schema(schema: Schema, directory: str) -> None:
    """Writes `schema.json` and `schema.pbtxt` into `directory`."""
    with open(os.path.join(directory, "schema.json"), "w") as handle:
        json.dump(schema.to_json(), handle, indent=1)
    with open(os.path.join(directory, "schema.pbtxt"), "w") as handle:
        handle.write(to_metadata_proto_text(schema))


def load_schema(directory: str) -> Schema:
    with open(os.path.join(directory, "schema.json")) as handle:
        return Schema.from_json(json.load(handle))


def to_metadata_proto_text(schema: Schema) -> str:
    """The schema as a text-format `tensorflow_metadata` Schema proto."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    proto = schema_pb2.Schema()
    for feature in schema.features:
        entry = proto.feature.add(name=feature.name)
        entry.presence.min_fraction = 1.0 - feature.missing_fraction
        entry.shape.dim.add(size=1)
        if feature.kind == "numeric":
            entry.type = schema_pb2.FLOAT
        else:
            entry.type = schema_pb2.BYTES
            entry.string_domain.name = feature.name
            entry.string_domain.value.extend(feature.vocabulary)
    label = proto.feature.add(name=schema.label, type=schema_pb2.INT)
    label.int_domain.min, label.int_domain.max = 0, 1
    label.presence.min_fraction = 1.0
    return text_format.MessageToString(proto)
