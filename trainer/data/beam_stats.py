"""Training-split statistics of the Beam data step, as mergeable accumulators.

Workers add the training records they write to a `TrainStats`; a combiner
merges them; the driver turns the one merged value into the `Schema`:
means and standard deviations (exact, by
Chan et al.'s parallel update), missing fractions and vocabularies (exact
counts, most frequent first, ties by value), and 129 quantiles (exact, with
NumPy's linear interpolation, up to `SKETCH_CAPACITY` values a feature; above
that from a KLL-style sketch whose rank error is at most about
log2(N / capacity) / capacity, under 0.4% at 50M values).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.data.schema import MAX_VOCABULARY, QUANTILE_LEVELS, Feature, Schema, top_vocabulary

SKETCH_CAPACITY = 4096


class QuantileSketch:
    """Level h holds values of weight 2**h; a full level keeps every other value of its sorted contents."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []
        self.low, self.high = np.inf, -np.inf
        self._flip = 0  # alternates which half a compaction keeps, so rounding does not drift

    def add(self, values: np.ndarray, level: int = 0) -> None:
        if not values.size:
            return
        if level == 0:
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        while len(self.levels) <= level:
            self.levels.append(np.empty(0))
        merged = np.concatenate([self.levels[level], values])
        if merged.size <= SKETCH_CAPACITY:
            self.levels[level] = merged
            return
        merged.sort()
        odd = merged.size % 2
        self.levels[level] = merged[merged.size - odd:]  # an odd one out stays at this level
        self._flip ^= 1
        self.add(merged[self._flip:merged.size - odd:2], level + 1)

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        for level, values in enumerate(other.levels):
            self.add(values, level)
        return self

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """(values sorted, their weights): every value seen, exactly, until the first compaction."""
        values = np.concatenate(self.levels) if self.levels else np.empty(0)
        weights = np.concatenate([np.full(v.size, 2.0 ** h) for h, v in enumerate(self.levels)]) \
            if self.levels else np.empty(0)
        order = np.argsort(values, kind="stable")
        return values[order], weights[order]

    def quantiles(self, count: int = QUANTILE_LEVELS) -> tuple[float, ...]:
        """Quantiles at `count` evenly spaced levels, 0 and 1 included."""
        levels = np.linspace(0.0, 1.0, count)
        if not any(v.size for v in self.levels):
            return (0.0,) * count
        if len(self.levels) == 1:  # nothing compacted: exact
            return tuple(float(q) for q in np.quantile(self.levels[0], levels))
        values, weights = self.weighted()
        ends = np.cumsum(weights)
        centers = ends - (weights + 1.0) / 2.0  # each value's mean rank, 0-based
        result = np.interp(levels * (ends[-1] - 1.0), centers, values)
        result[0], result[-1] = self.low, self.high
        return tuple(float(q) for q in result)


@dataclasses.dataclass
class Moments:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean

    def add(self, values: np.ndarray) -> None:
        if values.size:
            mean = float(values.mean())
            self.merge(Moments(int(values.size), mean, float(((values - mean) ** 2).sum())))

    def merge(self, other: Moments) -> Moments:
        total = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
            self.mean += delta * other.count / total
            self.count = total
        return self


@dataclasses.dataclass
class TrainStats:
    """Statistics of the training split's records, feature by (clean) name."""

    rows: int = 0
    moments: dict[str, Moments] = dataclasses.field(default_factory=dict)
    sketches: dict[str, QuantileSketch] = dataclasses.field(default_factory=dict)
    vocabularies: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    present: dict[str, int] = dataclasses.field(default_factory=dict)
    zeros: dict[str, int] = dataclasses.field(default_factory=dict)  # numeric values equal to 0 (statistics' num_zeros)

    def add(self, rows: int, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray]) -> None:
        """Adds records: numeric float64 columns (NaN = missing), categorical object columns (None = missing)."""
        self.rows += rows
        for name, column in numeric.items():
            values = column[~np.isnan(column)]
            self.moments.setdefault(name, Moments()).add(values)
            self.sketches.setdefault(name, QuantileSketch()).add(values)
            self.present[name] = self.present.get(name, 0) + int(values.size)
            self.zeros[name] = self.zeros.get(name, 0) + int((values == 0).sum())
        for name, column in categorical.items():
            counts = self.vocabularies.setdefault(name, {})
            frequencies = pc.value_counts(pa.array(column, pa.string()).drop_null())
            for value, frequency in zip(frequencies.field("values").to_pylist(),
                                        frequencies.field("counts").to_pylist(), strict=True):
                counts[value] = counts.get(value, 0) + frequency
                self.present[name] = self.present.get(name, 0) + frequency
            self.present.setdefault(name, 0)

    def merge(self, other: TrainStats) -> TrainStats:
        self.rows += other.rows
        for name, moments in other.moments.items():
            self.moments.setdefault(name, Moments()).merge(moments)
        for name, sketch in other.sketches.items():
            self.sketches.setdefault(name, QuantileSketch()).merge(sketch)
        for name, counts in other.vocabularies.items():
            mine = self.vocabularies.setdefault(name, {})
            for value, count in counts.items():
                mine[value] = mine.get(value, 0) + count
        for name, count in other.present.items():
            self.present[name] = self.present.get(name, 0) + count
        for name, count in other.zeros.items():
            self.zeros[name] = self.zeros.get(name, 0) + count
        return self

    def schema(self, features: list[tuple[str, str]], label: str, vocabulary_size: int = MAX_VOCABULARY,
               vocabulary_min_count: int = 1) -> Schema:
        """The Schema of `features` [(clean name, kind)] from these exact moments, counts and quantile sketches.

        Vocabularies follow `schema.top_vocabulary` over the exact counts.
        """
        inferred = []
        for name, kind in features:
            missing = (self.rows - self.present.get(name, 0)) / self.rows if self.rows else 0.0
            if kind == "numeric":
                moments = self.moments.get(name, Moments())
                std = float(np.sqrt(moments.m2 / moments.count)) if moments.count else 1.0
                inferred.append(Feature(name, "numeric", mean=moments.mean if moments.count else 0.0,
                                        std=std if std > 1e-12 else 1.0, missing_fraction=missing,
                                        quantiles=self.sketches.get(name, QuantileSketch()).quantiles()))
            else:
                vocabulary = top_vocabulary(self.vocabularies.get(name, {}).items(), vocabulary_size,
                                            vocabulary_min_count)
                inferred.append(Feature(name, "categorical", vocabulary=vocabulary, missing_fraction=missing))
        return Schema(features=tuple(inferred), label=label)
