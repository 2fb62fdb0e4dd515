"""Per-feature skew and drift judgements, written as TFDV writes them: a `tensorflow_metadata` Anomalies proto.

TFDV's vocabulary: *skew* compares serving data with the training data
(`skew_comparator`, `skew_measurements`); *drift* compares a span with an
earlier one (`drift_comparator`, `drift_measurements`). A feature's
thresholds come from its comparator in the schema when it has one, else
from the defaults below. Every compared feature gets a `drift_skew_info`
entry, breach or not; a breach also gets an `anomaly_info` with TFDV's
reason type and description.

Defaults (docs/design.md, "Skew and drift"): categorical features
L-infinity 0.1; numeric ones Jensen-Shannon 0.1 over the quantiles
histograms (TFDV's own default source, the equal-width histogram, reads a
heavy-tailed feature's range: two samples of one log-normal differ by 0.21
to 0.34 at the 99th percentile at any size, so it alarms on noise); both
sides need `MIN_ROWS` values, else the comparison is reported as "too few
rows to judge" and never alarms (two samples of 500 from one distribution:
JSD 99th percentile 0.069 (normal) to 0.087 (log-normal), L-infinity over 5
values 0.076; `python -m benchmarks.drift_noise`).
"""

from __future__ import annotations

import dataclasses

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from evaluation import comparators

DEFAULT_L_INFINITY = 0.1
DEFAULT_JENSEN_SHANNON = 0.1
MIN_ROWS = 500  # values on each side below which a distance is not judged
SKEW, DRIFT = "skew", "drift"
TOO_FEW = "too few rows to judge"
Measurement = anomalies_pb2.DriftSkewInfo.Measurement
_CONTEXT = {SKEW: ("serving", "training"), DRIFT: ("current", "previous")}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One distance between the reference and the current data.

    Attributes:
      path: The feature's path (steps).
      type: `Measurement.L_INFTY`, `JENSEN_SHANNON_DIVERGENCE` or `NORMALIZED_ABSOLUTE_DIFFERENCE`.
      value: The distance (None: it could not be computed, see `status`).
      threshold: Above it is a breach.
      reference_n, current_n: Values compared on each side.
      status: `ok`, `breach`, `too few rows to judge`, or why it could not be computed.
      detail: The value with the largest difference (categorical), or "".
    """

    path: tuple[str, ...]
    type: int
    value: float | None
    threshold: float
    reference_n: int
    current_n: int
    status: str
    detail: str = ""

    @property
    def breached(self) -> bool:
        return self.status == "breach" or self.status.startswith("no values")

    @property
    def name(self) -> str:
        return ".".join(self.path)


def default_comparator(feature: statistics_pb2.FeatureNameStatistics) -> schema_pb2.FeatureComparator:
    """The default comparator of a feature: L-infinity when categorical, JSD over quantiles when numeric."""
    comparator = schema_pb2.FeatureComparator()
    if feature.HasField("string_stats"):
        comparator.infinity_norm.threshold = DEFAULT_L_INFINITY
    else:
        comparator.jensen_shannon_divergence.threshold = DEFAULT_JENSEN_SHANNON
        comparator.jensen_shannon_divergence.source.type = schema_pb2.HistogramSelection.QUANTILES
    return comparator


def comparators_schema(reference: statistics_pb2.DatasetFeatureStatistics, schema: schema_pb2.Schema | None,
                       mode: str, skip: tuple[str, ...] = ()) -> schema_pb2.Schema:
    """The schema with a comparator (its own, else the default) on every feature of the reference but `skip`."""
    result = schema_pb2.Schema()
    if schema is not None:
        result.CopyFrom(schema)
    field = f"{mode}_comparator"
    existing = {feature.name: feature for feature in result.feature}
    for stats in reference.features:
        name = _name(stats)
        if name in skip:
            continue
        feature = existing.get(name) or result.feature.add(name=name)
        if not feature.HasField(field):
            getattr(feature, field).CopyFrom(default_comparator(stats))
    return result


def compare_feature(reference: statistics_pb2.FeatureNameStatistics, current: statistics_pb2.FeatureNameStatistics,
                    comparator: schema_pb2.FeatureComparator, min_rows: int = MIN_ROWS) -> list[Comparison]:
    """Every measurement the comparator asks for, in TFDV's order (L-infinity, NAD, JSD)."""
    path = tuple(reference.path.step) or (reference.name,)
    reference_n, current_n = _present(reference), _present(current)
    results = []

    def judged(kind: int, threshold: float, compute) -> None:
        if not current_n:
            results.append(Comparison(path, kind, None, threshold, reference_n, 0,
                                      f"no values in the data (the reference has {reference_n})"))
            return
        try:
            detail, value = compute()
        except comparators.ComparisonError as error:
            results.append(Comparison(path, kind, None, threshold, reference_n, current_n, str(error)))
            return
        status = TOO_FEW if min(reference_n, current_n) < min_rows else ("breach" if value > threshold else "ok")
        results.append(Comparison(path, kind, value, threshold, reference_n, current_n, status, detail))

    counts = (comparators.string_counts(current), comparators.string_counts(reference))
    if comparator.infinity_norm.HasField("threshold"):
        judged(Measurement.L_INFTY, comparator.infinity_norm.threshold, lambda: comparators.l_infinity(*counts))
    if comparator.normalized_abs_difference.HasField("threshold"):
        judged(Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE, comparator.normalized_abs_difference.threshold,
               lambda: comparators.normalized_abs_difference(*counts))
    if comparator.jensen_shannon_divergence.HasField("threshold"):
        kind = (statistics_pb2.Histogram.QUANTILES
                if comparator.jensen_shannon_divergence.source.type == schema_pb2.HistogramSelection.QUANTILES
                else statistics_pb2.Histogram.STANDARD)
        judged(Measurement.JENSEN_SHANNON_DIVERGENCE, comparator.jensen_shannon_divergence.threshold,
               lambda: ("", comparators.jensen_shannon(current, reference, kind)))
    return results


def compare(reference: statistics_pb2.DatasetFeatureStatistics, current: statistics_pb2.DatasetFeatureStatistics,
            schema: schema_pb2.Schema, mode: str, min_rows: int = MIN_ROWS) -> list[Comparison]:
    """Compares every feature of `schema` that the reference has statistics for."""
    field = f"{mode}_comparator"
    reference_by_name = {_name(f): f for f in reference.features}
    current_by_name = {_name(f): f for f in current.features}
    results = []
    for feature in schema.feature:
        if feature.name in reference_by_name and feature.HasField(field):
            empty = statistics_pb2.FeatureNameStatistics(name=feature.name)
            results += compare_feature(reference_by_name[feature.name], current_by_name.get(feature.name, empty),
                                       getattr(feature, field), min_rows)
    return results


def to_anomalies(comparisons: list[Comparison], mode: str) -> anomalies_pb2.Anomalies:
    """An Anomalies proto: `drift_skew_info` for every comparison made, `anomaly_info` for every breach."""
    result = anomalies_pb2.Anomalies(anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)
    infos = {}
    for comparison in comparisons:
        if comparison.path not in infos:
            infos[comparison.path] = result.drift_skew_info.add()
            infos[comparison.path].path.step.extend(comparison.path)
        if comparison.value is not None:
            measurements = getattr(infos[comparison.path], f"{mode}_measurements")
            measurements.add(type=comparison.type, value=comparison.value, threshold=comparison.threshold)
        if comparison.breached:
            _add_anomaly(result, comparison, mode)
    return result


_REASONS = {
    Measurement.L_INFTY: (anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH, "Linfty distance"),
    Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: (
        anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH, "normalized absolute difference"),
    Measurement.JENSEN_SHANNON_DIVERGENCE: (
        anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH, "approximate Jensen-Shannon divergence"),
}


def _add_anomaly(result: anomalies_pb2.Anomalies, comparison: Comparison, mode: str) -> None:
    """TFDV's anomaly for a comparator above its threshold (feature_util.cc's descriptions)."""
    treatment, control = _CONTEXT[mode]
    reason_type, metric = _REASONS[comparison.type]
    short = f"High {metric} between {treatment} and {control}"
    if comparison.value is None:
        description = f"The {metric} could not be computed: {comparison.status}."
    else:
        description = (f"The {metric} between {treatment} and {control} is {comparison.value:.6g} (up to six "
                       f"significant digits), above the threshold {comparison.threshold:.6g}.")
        if comparison.detail:
            description += f" The feature value with maximum difference is: {comparison.detail}"
    info = result.anomaly_info[comparison.name]
    if not info.path.step:
        info.path.step.extend(comparison.path)
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.reason.add(type=reason_type, short_description=short, description=description)
    info.short_description = short if len(info.reason) == 1 else "Multiple errors"
    info.description = " ".join(r.description for r in info.reason)


def _present(feature: statistics_pb2.FeatureNameStatistics) -> int:
    if feature.HasField("num_stats"):
        return feature.num_stats.common_stats.num_non_missing
    return feature.string_stats.common_stats.num_non_missing


def _name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return ".".join(feature.path.step) or feature.name
