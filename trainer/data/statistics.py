"""Dataset statistics as TFDV writes them: a `tensorflow_metadata` DatasetFeatureStatisticsList.

TFDV does not install with this stack (it stops at 1.16) and tfx-bsl 1.21
ships its sketches but not TFDV's statistics generators, so the accumulator
here is the data step's own (`beam_stats.TrainStats`: exact moments, exact
value counts, a mergeable quantile sketch) plus counts of zeros and
infinities; `StatisticsFn` is a Beam CombineFn over it, so statistics are one
pass on any runner and the statistics of k parts merged are those of the
whole. The proto follows TFDV's basic statistics generator with its default
options: per numeric feature count, missing, mean, population standard
deviation, zeros, min, median, max, an equal-width histogram of
`HISTOGRAM_BUCKETS` buckets between min and max and a quantiles histogram of
`QUANTILE_BUCKETS` buckets of equal mass; per categorical feature count,
missing, unique, the `TOP_VALUES` most frequent values and a rank histogram
of the `RANK_HISTOGRAM_BUCKETS` most frequent (ties by value). Histograms and
quantiles are exact while a feature has at most `beam_stats.SKETCH_CAPACITY`
values, then within the sketch's rank error. Infinite values get buckets of
their own, with infinite edges, as in TFDV.
"""

from __future__ import annotations

import dataclasses
import os

import apache_beam as beam
import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from trainer.atomic import write_text_atomically
from trainer.data.beam_stats import Moments, QuantileSketch, TrainStats

HISTOGRAM_BUCKETS = 10  # TFDV's StatsOptions.num_histogram_buckets
QUANTILE_BUCKETS = 10  # TFDV's StatsOptions.num_quantiles_histogram_buckets
TOP_VALUES = 20  # TFDV's StatsOptions.num_top_values
RANK_HISTOGRAM_BUCKETS = 1000  # TFDV's StatsOptions.num_rank_histogram_buckets
NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclasses.dataclass(frozen=True)
class Columns:
    """One batch of clean values: numeric float64 (NaN = missing), categorical object (None = missing)."""

    rows: int
    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]


@dataclasses.dataclass
class DataStatistics:
    """A mergeable accumulator of per-feature statistics."""

    base: TrainStats = dataclasses.field(default_factory=TrainStats)
    infinite: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # (-inf, +inf) counts
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.base.rows

    def add(self, columns: Columns) -> DataStatistics:
        finite = {}
        for name, values in columns.numeric.items():
            self.kinds.setdefault(name, NUMERIC)
            low, high = int(np.isneginf(values).sum()), int(np.isposinf(values).sum())
            old = self.infinite.get(name, (0, 0))
            self.infinite[name] = (old[0] + low, old[1] + high)
            finite[name] = np.where(np.isinf(values), np.nan, values) if low or high else values
        for name in columns.categorical:
            self.kinds.setdefault(name, CATEGORICAL)
        self.base.add(columns.rows, finite, columns.categorical)
        return self

    def merge(self, other: DataStatistics) -> DataStatistics:
        self.base.merge(other.base)
        for name, (low, high) in other.infinite.items():
            old = self.infinite.get(name, (0, 0))
            self.infinite[name] = (old[0] + low, old[1] + high)
        for name, kind in other.kinds.items():
            self.kinds.setdefault(name, kind)
        return self

    def with_label(self, name: str, negatives: int, positives: int) -> DataStatistics:
        """Adds a 0/1 label of known class counts as a numeric feature, without its rows."""
        self.kinds[name] = NUMERIC
        total = negatives + positives
        rate = positives / total if total else 0.0
        self.base.moments[name] = Moments(total, rate, positives * (1.0 - rate) ** 2 + negatives * rate ** 2)
        sketch = QuantileSketch()
        sketch.add(np.r_[np.zeros(negatives), np.ones(positives)])
        self.base.sketches[name] = sketch
        self.base.present[name] = total
        self.base.zeros[name] = negatives
        return self


class StatisticsFn(beam.CombineFn):
    """Beam combiner: `Columns` batches -> one `DataStatistics`."""

    def create_accumulator(self) -> DataStatistics:
        return DataStatistics()

    def add_input(self, accumulator: DataStatistics, columns: Columns) -> DataStatistics:
        return accumulator.add(columns)

    def merge_accumulators(self, accumulators) -> DataStatistics:
        merged = DataStatistics()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: DataStatistics) -> DataStatistics:
        return accumulator


def to_proto(stats: DataStatistics, name: str = "", order: list[str] | None = None
             ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics as a one-dataset DatasetFeatureStatisticsList; features in `order` (default: by name)."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add(name=name, num_examples=stats.rows)
    for feature in order if order is not None else sorted(stats.kinds):
        entry = dataset.features.add()
        entry.path.step.append(feature)
        if stats.kinds[feature] == NUMERIC:
            _numeric(stats, feature, entry)
        else:
            _categorical(stats, feature, entry)
    return result


def _common(stats: DataStatistics, present: int, common: statistics_pb2.CommonStatistics) -> None:
    common.num_non_missing = present
    common.num_missing = stats.rows - present
    if present:
        common.min_num_values = common.max_num_values = 1
        common.avg_num_values = 1.0
        common.tot_num_values = present


def _numeric(stats: DataStatistics, feature: str, entry: statistics_pb2.FeatureNameStatistics) -> None:
    entry.type = statistics_pb2.FeatureNameStatistics.FLOAT
    low_inf, high_inf = stats.infinite.get(feature, (0, 0))
    finite = stats.base.present.get(feature, 0)
    numbers = entry.num_stats
    _common(stats, finite + low_inf + high_inf, numbers.common_stats)
    numbers.num_zeros = stats.base.zeros.get(feature, 0)
    moments = stats.base.moments.get(feature, Moments())
    sketch = stats.base.sketches.get(feature, QuantileSketch())
    if not finite + low_inf + high_inf:
        return
    if moments.count:
        numbers.mean, numbers.std_dev = moments.mean, float(np.sqrt(moments.m2 / moments.count))
        quantiles = sketch.quantiles(QUANTILE_BUCKETS + 1)
        numbers.min, numbers.max = sketch.low, sketch.high
        numbers.median = float(np.interp(0.5, np.linspace(0, 1, QUANTILE_BUCKETS + 1), quantiles)) \
            if QUANTILE_BUCKETS % 2 else quantiles[QUANTILE_BUCKETS // 2]
        _equal_width(sketch, moments.count, numbers.histograms.add(type=statistics_pb2.Histogram.STANDARD))
        quantile = numbers.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
        for lower, upper in zip(quantiles[:-1], quantiles[1:], strict=True):
            quantile.buckets.add(low_value=lower, high_value=upper, sample_count=moments.count / QUANTILE_BUCKETS)
    if low_inf or high_inf:  # TFDV: min/max and the mean are infinite, infinite values in buckets of their own
        numbers.min = -np.inf if low_inf else numbers.min
        numbers.max = np.inf if high_inf else numbers.max
        numbers.mean = np.nan if low_inf and high_inf else (-np.inf if low_inf else np.inf)
        for histogram in numbers.histograms:
            if low_inf:
                histogram.buckets.add(low_value=-np.inf, high_value=-np.inf, sample_count=low_inf)
            if high_inf:
                histogram.buckets.add(low_value=np.inf, high_value=np.inf, sample_count=high_inf)


def _equal_width(sketch: QuantileSketch, count: int, histogram: statistics_pb2.Histogram) -> None:
    values, weights = sketch.weighted()
    if sketch.low == sketch.high:
        histogram.buckets.add(low_value=sketch.low, high_value=sketch.high, sample_count=count)
        return
    edges = np.linspace(sketch.low, sketch.high, HISTOGRAM_BUCKETS + 1)
    counts, _ = np.histogram(values, edges, weights=weights)  # the last bucket includes the max
    counts = counts * (count / counts.sum())  # a compacted sketch's weights sum to its count already
    for index in range(HISTOGRAM_BUCKETS):
        histogram.buckets.add(low_value=edges[index], high_value=edges[index + 1], sample_count=counts[index])


def _categorical(stats: DataStatistics, feature: str, entry: statistics_pb2.FeatureNameStatistics) -> None:
    entry.type = statistics_pb2.FeatureNameStatistics.STRING
    strings = entry.string_stats
    counts = stats.base.vocabularies.get(feature, {})
    _common(stats, stats.base.present.get(feature, 0), strings.common_stats)
    strings.unique = len(counts)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    total = sum(counts.values())
    if total:
        strings.avg_length = sum(len(value.encode()) * count for value, count in counts.items()) / total
    for value, count in ranked[:TOP_VALUES]:
        strings.top_values.add(value=value, frequency=count)
    for rank, (value, count) in enumerate(ranked[:RANK_HISTOGRAM_BUCKETS]):
        strings.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=value, sample_count=count)


def save_statistics(proto: statistics_pb2.DatasetFeatureStatisticsList, path: str) -> None:
    """Writes `path` (binary, as TFDV's `load_stats_binary` reads) and `path` + `txt` (text format)."""
    from google.protobuf import text_format

    staging = f"{path}.staging-{os.getpid()}"
    with open(staging, "wb") as handle:
        handle.write(proto.SerializeToString())
    os.replace(staging, path)
    write_text_atomically(f"{path}txt", text_format.MessageToString(proto))


def load_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A DatasetFeatureStatisticsList from a binary file, or a text one (`.pbtxt`).

    Raises:
      ValueError: the file holds neither.
    """
    from google.protobuf import message, text_format

    proto = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        if path.endswith((".pbtxt", ".txt")):
            return text_format.Parse(data.decode(), proto)
        proto.ParseFromString(data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a DatasetFeatureStatisticsList: {error}") from None
    if not proto.datasets:
        raise ValueError(f"{path} holds no dataset statistics")
    return proto


def frame_columns(frame) -> Columns:
    """A pandas frame of clean features (numbers or text with None/NaN missing) as `Columns`."""
    import pandas as pd

    numeric, categorical = {}, {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            numeric[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            categorical[name] = np.where(column.notna().to_numpy(), column.to_numpy(dtype=object), None)
    return Columns(len(frame), numeric, categorical)


def save_training_statistics(base: TrainStats, features: list[tuple[str, str]], label: str,
                             train_counts: list[int], directory: str) -> None:
    """Writes the training split's statistics (features in column order, then the 0/1 label) into `directory`.

    Args:
      base: The training split's accumulated statistics (`Written.stats`, or made from the frame).
      features: (clean name, kind) in column order.
      label: The label's clean name.
      train_counts: [N_0, N_1] of the training split.
      directory: The data directory (`RUN/data`, or its staging copy).
    """
    from trainer.layout import TRAIN_STATISTICS

    stats = DataStatistics(base=base, kinds=dict(features))
    stats.with_label(label, int(train_counts[0]), int(train_counts[1]))
    order = [name for name, _ in features] + [label]
    save_statistics(to_proto(stats, "train", order), os.path.join(directory, TRAIN_STATISTICS))
