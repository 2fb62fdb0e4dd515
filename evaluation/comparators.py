"""TFDV's skew and drift comparators, on `tensorflow_metadata` statistics.

A line-by-line port of `tensorflow_data_validation/anomalies/metrics.cc`
(TFDV itself does not install with this stack), checked against the vectors
of its `metrics_test.cc` and `validation_api_test.py` (tests/test_drift.py):

- L-infinity distance (categorical): the largest absolute difference between
  the two value distributions, each normalized by its own total; the value
  reported is the last (in byte order) of those at the maximum.
- Normalized absolute difference: the same over counts divided by the
  combined total of both datasets (it also sees a change of volume).
- Jensen-Shannon divergence, base 2 (numeric): the two histograms are
  re-bucketed onto the union of their edges, assuming values uniform within
  a bucket; point buckets (low == high) are compared point by point, buckets
  with an infinite edge and NaNs each get buckets of their own that never
  match the other side's; the result is capped at 1 (rounding).
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

Histogram = statistics_pb2.Histogram


class ComparisonError(ValueError):
    """The two statistics cannot be compared (empty, or of different kinds)."""


def string_counts(feature: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    """A categorical feature's value -> count, from its rank histogram (TFDV's GetStringValuesWithCounts)."""
    return {b.label: b.sample_count for b in feature.string_stats.rank_histogram.buckets}


def _l_infinity(difference: dict[str, float]) -> tuple[str, float]:
    best = ("", 0.0)
    for key in sorted(difference, key=lambda k: k.encode()):  # std::map order; ties go to the last key
        if abs(difference[key]) >= best[1]:
            best = (key, abs(difference[key]))
    return best


def _difference(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {key: a.get(key, 0.0) - b.get(key, 0.0) for key in set(a) | set(b)}


def _normalized(counts: dict[str, float], total: float | None = None) -> dict[str, float]:
    total = sum(counts.values()) if total is None else total
    return {key: value / total for key, value in counts.items()} if total else dict(counts)


def l_infinity(a: dict[str, float], b: dict[str, float]) -> tuple[str, float]:
    """(value with the largest difference, L-infinity distance) of two value -> count maps."""
    return _l_infinity(_difference(_normalized(a), _normalized(b)))


def normalized_abs_difference(a: dict[str, float], b: dict[str, float]) -> tuple[str, float]:
    """As `l_infinity`, but both maps are divided by their combined total."""
    total = sum(a.values()) + sum(b.values())
    return _l_infinity(_difference(_normalized(a, total), _normalized(b, total)))


def jensen_shannon_counts(a: dict[str, float], b: dict[str, float]) -> float:
    """Base-2 Jensen-Shannon divergence of two value -> count maps (TFDV's string version)."""
    if not a or not b:
        raise ComparisonError("Input maps must not be empty.")
    if min(a.values()) <= 0 or min(b.values()) <= 0:
        raise ComparisonError("Sample count is a non-positive value.")
    a_sum, b_sum, total = sum(a.values()), sum(b.values()), 0.0
    for key in set(a) | set(b):
        p, q = a.get(key, 0.0) / a_sum, b.get(key, 0.0) / b_sum
        m = (p + q) / 2
        total += (p * math.log2(p / m) if p else 0.0) + (q * math.log2(q / m) if q else 0.0)
    return min(total / 2, 1.0)


def _strip(histogram: Histogram) -> tuple[list[tuple[float, float, float]], dict[float, float], float]:
    """(finite buckets, point value -> mass, mass in buckets with an infinite edge)."""
    buckets, points, infinite = [], {}, 0.0
    for b in histogram.buckets:
        if not (math.isfinite(b.low_value) and math.isfinite(b.high_value)):
            infinite += b.sample_count
        elif b.low_value == b.high_value:
            points[b.low_value] = points.get(b.low_value, 0.0) + b.sample_count
        else:
            buckets.append((b.low_value, b.high_value, b.sample_count))
    return buckets, points, infinite


def _rebucket(buckets: list[tuple[float, float, float]], edges: list[float]) -> list[float]:
    """Counts on consecutive `edges` (which hold every edge of `buckets`), uniform within a bucket."""
    counts, index = [], 0
    for low, high, count in buckets:
        while low > edges[index]:
            counts.append(0.0)
            index += 1
        if low == high == edges[index]:
            counts.append(count)
            index += 1
            continue
        start = index
        while high > edges[index]:
            index += 1
        counts.extend((edges[i + 1] - edges[i]) / (high - low) * count for i in range(start, index))
    counts.extend(0.0 for _ in range(index, len(edges) - 1))
    return counts


def _aligned(first: Histogram, second: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Both histograms' masses on shared buckets (TFDV's AlignHistograms)."""
    (buckets_1, points_1, inf_1), (buckets_2, points_2, inf_2) = _strip(first), _strip(second)

    def edges(buckets):
        return {edge for low, high, _ in buckets for edge in (low, high)}

    if edges(buckets_1) != edges(buckets_2):
        union = sorted(edges(buckets_1) | edges(buckets_2))
        counts_1, counts_2 = _rebucket(buckets_1, union), _rebucket(buckets_2, union)
    else:
        counts_1, counts_2 = [c for *_, c in buckets_1], [c for *_, c in buckets_2]
    for point in sorted(set(points_1) | set(points_2)):
        counts_1.append(points_1.get(point, 0.0))
        counts_2.append(points_2.get(point, 0.0))
    if inf_1:
        counts_1, counts_2 = counts_1 + [inf_1], counts_2 + [0.0]
    if inf_2:
        counts_1, counts_2 = counts_1 + [0.0], counts_2 + [inf_2]
    if first.num_nan > 0 or second.num_nan > 0:  # NaNs never match NaNs: two mismatched buckets
        counts_1, counts_2 = counts_1 + [0.0, first.num_nan], counts_2 + [second.num_nan, 0.0]
    return np.asarray(counts_1, np.float64), np.asarray(counts_2, np.float64)


def jensen_shannon_histograms(first: Histogram, second: Histogram) -> float:
    """Base-2 Jensen-Shannon divergence of two histograms, capped at 1 (TFDV's histogram version).

    Raises:
      ComparisonError: different histogram types, or an empty histogram.
    """
    if first.type != second.type:
        raise ComparisonError("Input histograms must have same type.")
    p, q = _aligned(first, second)
    if p.sum() == 0 or q.sum() == 0:
        raise ComparisonError("Unable to normalize an empty histogram")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        both = (x > 0) & (m > 0)
        return float((x[both] * np.log2(x[both] / m[both])).sum())

    return min((kl(p) + kl(q)) / 2, 1.0)


def histogram_of(feature: statistics_pb2.FeatureNameStatistics, kind: int) -> Histogram | None:
    """A numeric feature's histogram of `kind` (Histogram.STANDARD or QUANTILES), or None."""
    if not feature.HasField("num_stats"):
        return None
    return next((h for h in feature.num_stats.histograms if h.type == kind), None)


def jensen_shannon(first: statistics_pb2.FeatureNameStatistics, second: statistics_pb2.FeatureNameStatistics,
                   kind: int = Histogram.STANDARD) -> float:
    """TFDV's feature-level JSD: over value counts when both are categorical, else over histograms of `kind`."""
    counts_1, counts_2 = string_counts(first), string_counts(second)
    if counts_1 and counts_2:
        return jensen_shannon_counts(counts_1, counts_2)
    histogram_1, histogram_2 = histogram_of(first, kind), histogram_of(second, kind)
    if histogram_1 is not None and histogram_2 is not None:
        return jensen_shannon_histograms(histogram_1, histogram_2)
    if bool(counts_1) != bool(counts_2) and (histogram_1 is None) != (histogram_2 is None):
        raise ComparisonError("Input statistics must be either both numeric or both string in order to "
                              "calculate the Jensen-Shannon divergence.")
    raise ComparisonError("One or more feature missing data.")
