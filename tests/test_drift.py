"""Skew and drift: TFDV's comparator test vectors, mergeable statistics, the drift command end to end."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import statistics_pb2

from evaluation import comparators


def _feature(text: str) -> statistics_pb2.FeatureNameStatistics:
    return text_format.Parse(text, statistics_pb2.FeatureNameStatistics())


def _numeric(buckets: str, num_nan: int = 0) -> statistics_pb2.FeatureNameStatistics:
    return _feature(f"name: 'float' type: FLOAT num_stats {{ common_stats {{}} histograms {{ num_nan: {num_nan} "
                    f"{buckets} type: STANDARD }} }}")


def _tokens(tokens: dict[str, float]) -> statistics_pb2.FeatureNameStatistics:
    """TFDV's GetFeatureNameStatisticsWithTokens (metrics_test.cc)."""
    feature = _feature("name: 'bar' type: STRING string_stats { common_stats { num_missing: 0 max_num_values: 1 } }")
    feature.string_stats.unique = len(tokens)
    for label, count in tokens.items():
        feature.string_stats.rank_histogram.buckets.add(label=label, sample_count=count)
    return feature


# metrics_test.cc: GetLInftyDistanceTests and GetNormalizedAbsDifferenceTests.
L_INFINITY = [({}, {}, 0.0), ({"hello": 0.1, "world": 0.9}, {"hello": 0.3, "world": 0.7}, 0.2),
              ({"b": 0.9, "c": 0.1}, {"a": 0.3, "b": 0.7}, 0.3), ({"a": 0.3, "b": 0.7}, {"b": 0.9, "c": 0.1}, 0.3)]
NORMALIZED_ABS = [({}, {}, 0.0), ({"hello": 0.1, "world": 0.9}, {"hello": 0.3, "world": 0.7}, 0.1),
                  ({"hello": 1.0, "world": 5.0}, {"hello": 10.0, "world": 50.0}, 0.68181818)]

# metrics_test.cc: JensenShannonDivergence tests (dataset 1 buckets, dataset 2 buckets, expected).
JSD = {
    "different bucket boundaries": (
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 2.0 } "
        "buckets { low_value: 2.0 high_value: 3.0 sample_count: 2.0 }",
        "buckets { low_value: 2.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 0.65563906222),
    "no overlap": (
        "buckets { low_value: 0.0 high_value: 1.0 sample_count: 2.0 } "
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 2.0 }",
        "buckets { low_value: 3.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 1.0),
    "one has all values in one bucket": (
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 4.0 }",
        "buckets { low_value: 2.0 high_value: 4.0 sample_count: 2.0 } "
        "buckets { low_value: 4.0 high_value: 6.0 sample_count: 2.0 }", 1.0),
    "one bucket vs many": (
        "buckets { low_value: 10 high_value: 10 sample_count: 21 }",
        "buckets { low_value: 0 high_value: 4 sample_count: 150 } buckets { low_value: 4 high_value: 12 "
        "sample_count: 200 } buckets { low_value: 12 high_value: 20 sample_count: 20 }", 1.0),
    "multiple point bins, partial overlap": (
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 1.0 }",
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 2.0 high_value: 2.0 sample_count: 1.0 }", 0.5),
    "mix of point and non-point boundaries": (
        "buckets { low_value: 0.0 high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: 1.0 high_value: 2.0 sample_count: 1.0 }",
        "buckets { low_value: 1.0 high_value: 1.0 sample_count: 1.0 } "
        "buckets { low_value: 2.0 high_value: 2.0 sample_count: 1.0 }", 1.0),
    "infinite bin boundaries": (
        "buckets { low_value: -inf high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: inf high_value: inf sample_count: 1.0 }",
        "buckets { low_value: -inf high_value: 0.0 sample_count: 1.0 } "
        "buckets { low_value: inf high_value: inf sample_count: 1.0 }", 1.0),
}


def test_tfdv_comparator_vectors():
    for training, serving, expected in L_INFINITY:
        assert comparators.l_infinity(training, serving)[1] == pytest.approx(expected, abs=1e-5)
    for training, serving, expected in NORMALIZED_ABS:
        assert comparators.normalized_abs_difference(training, serving)[1] == pytest.approx(expected, abs=1e-5)
    for name, (first, second, expected) in JSD.items():
        value = comparators.jensen_shannon(_numeric(first), _numeric(second))
        assert value == pytest.approx(expected, abs=1e-5), name
    with_nan = comparators.jensen_shannon(
        _numeric("buckets { low_value: 1.0 high_value: 2.0 sample_count: 3.0 }", num_nan=1),
        _numeric("buckets { low_value: 1.0 high_value: 2.0 sample_count: 4.0 }"))
    assert with_nan == pytest.approx(0.13792538096, abs=1e-5)
    only_nan = _numeric("", num_nan=1)
    assert comparators.jensen_shannon(only_nan, only_nan) == pytest.approx(1.0)  # NaN is not equal to itself
    rank = comparators.jensen_shannon(_tokens({"b": 2.0, "a": 2.0, "c": 1.0}),
                                      _tokens({"a": 2.0, "Z": 1.0, "Y": 1.0, "X": 1.0}))
    assert rank == pytest.approx(0.6, abs=1e-5)
    for empty in ("", "buckets { low_value: 0 high_value: 4 sample_count: 0 }"):
        with pytest.raises(comparators.ComparisonError):
            comparators.jensen_shannon(_numeric(empty), _numeric("buckets { low_value: 0 high_value: 4 "
                                                                 "sample_count: 10 }"))
    with pytest.raises(comparators.ComparisonError):
        comparators.jensen_shannon(_tokens({"a": 1.0}), _numeric("buckets { low_value: 1 high_value: 2 "
                                                                  "sample_count: 4 }"))
    # validation_api_test.py: drift of {a: 1, b: 1} against the previous span's {a: 3, b: 1}; skew of
    # serving {a: 3, b: 1, c: 6} against training {a: 1, b: 2, c: 7}.
    assert comparators.l_infinity({"a": 1, "b": 1}, {"a": 3, "b": 1}) == ("b", pytest.approx(0.25))
    assert comparators.l_infinity({"a": 1, "b": 2, "c": 7}, {"a": 3, "b": 1, "c": 6}) == ("a", pytest.approx(0.2))
