"""The monitoring page's PNG figures, drawn as the report's are (`evaluation.plots`: Agg, points counted).

Times are matplotlib date numbers (UTC). Guide lines (thresholds, the
pushed figures, version changes, breach rings) carry `plots.REFERENCE`, so
the `Data points` chunk of each PNG counts what was measured: one point per
run and measurement, and for a live metric also the two ends of its
interval.
"""

from __future__ import annotations

import math

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from evaluation.monitoring_records import Interval, Measurement, ScoreHistogram
from evaluation.plots import COLORS, REFERENCE, _save

COLUMNS = 3
MEASUREMENT_COLORS = {"L_INFTY": "#2980b9", "JENSEN_SHANNON_DIVERGENCE": "#8e44ad",
                      "NORMALIZED_ABSOLUTE_DIFFERENCE": "#d35400"}
SHORT = {"L_INFTY": "L-inf", "JENSEN_SHANNON_DIVERGENCE": "JSD", "NORMALIZED_ABSOLUTE_DIFFERENCE": "NAD"}
BREACH_COLOR, TOO_FEW_COLOR = "#c0392b", "#95a5a6"

Points = list[tuple[float, Measurement]]  # (time, measurement) of one measurement type, oldest first


def _time_axis(axis, versions: list[tuple[float, int]]) -> None:
    """Dates on x, and a dotted line where each served version began."""
    for when, version in versions:
        axis.axvline(when, color=COLORS["served"], linestyle=":", linewidth=1, gid=REFERENCE)
        axis.annotate(f"v{version}", (when, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                      color=COLORS["served"], ha="left", va="top")
    axis.xaxis_date()
    locator = mdates.AutoDateLocator(minticks=2, maxticks=6)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axis.tick_params(labelsize=7)
    axis.grid(alpha=0.3)


def feature_distances(features: dict[str, dict[str, Points]], versions: list[tuple[float, int]], path: str
                      ) -> str | None:
    """One panel per feature: each measurement's distance per drift run, its threshold dashed, breaches ringed.

    Args:
      features: feature name -> measurement type -> points (`Points`).
      versions: (time pushed, version) of the served versions.
      path: Output PNG.
    """
    rows = max(1, math.ceil(len(features) / COLUMNS))
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(11, 2.6 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis, (name, measurements) in zip(flat, features.items(), strict=False):
        for kind, points in measurements.items():
            _distance_series(axis, kind, points)
        _time_axis(axis, versions)
        axis.set_title(name, fontsize=9)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=6, loc="upper left")
    return _save(figure, path)  # unused panels have no points and are removed


def _distance_series(axis, kind: str, points: Points) -> None:
    color = MEASUREMENT_COLORS.get(kind, "#2c3e50")
    times = [t for t, _ in points]
    values = [math.nan if m.value is None else m.value for _, m in points]
    axis.plot(times, values, "o-", color=color, markersize=4, label=SHORT.get(kind, kind))
    axis.step(times, [m.threshold for _, m in points], "--", where="post", color=color, linewidth=1, alpha=0.7,
              gid=REFERENCE)
    breaches = [(t, 0.0 if m.value is None else m.value) for t, m in points if m.breached]
    if breaches:  # a ring around each breach (a red cross on the axis where the value could not be computed)
        axis.plot([t for t, _ in breaches], [v for _, v in breaches], "o", markersize=10, markerfacecolor="none",
                  markeredgecolor=BREACH_COLOR, markeredgewidth=1.5, gid=REFERENCE)
    too_few = [(t, m.value) for t, m in points if m.value is not None and m.status == "too few rows to judge"]
    if too_few:
        axis.plot([t for t, _ in too_few], [v for _, v in too_few], "o", markersize=5, color=TOO_FEW_COLOR,
                  gid=REFERENCE)


def score_distributions(reference: ScoreHistogram, current: ScoreHistogram, threshold: float | None,
                        labels: tuple[str, str], path: str) -> str | None:
    """The served model's score densities, reference and now (equal-width histograms), and the threshold."""
    figure, axis = plt.subplots(figsize=(8, 3.6))
    for side, label, color in ((reference, labels[0], COLORS["baseline"]), (current, labels[1], COLORS["candidate"])):
        total = sum(count for _, _, count in side.buckets) or 1.0
        edges = [low for low, _, _ in side.buckets] + [side.buckets[-1][1]] if side.buckets else []
        density = [count / total / max(high - low, 1e-12) for low, high, count in side.buckets]
        if density:
            axis.stairs(density, edges, color=color, linewidth=1.5,
                        label=f"{label}: {side.count:,} scores, {side.positive_rate:.2%} flagged")
            axis.plot([(low + high) / 2 for low, high, _ in side.buckets], density, ".", color=color)
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}",
                     gid=REFERENCE)
    axis.set(xlabel="served model's score (minority probability)", ylabel="density",
             title="Score distribution: reference vs now")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def live_metrics(series: dict[str, list[tuple[float, Interval, float | None, bool]]],
                 versions: list[tuple[float, int]], path: str) -> str | None:
    """One panel per live metric: value and 95% interval per live run, the pushed test figure dashed.

    Args:
      series: metric -> (time, live interval, pushed test figure, alerted) per live run, oldest first.
      versions: (time pushed, version) of the served versions.
    """
    figure, axes = plt.subplots(1, len(series), figsize=(11, 3.4), squeeze=False)
    for axis, (name, points) in zip(axes[0], series.items(), strict=True):
        times = [t for t, *_ in points]
        axis.plot(times, [p.value for _, p, _, _ in points], "o-", color=COLORS["candidate"], label="live")
        for when, interval, _, _ in points:
            if interval.lower is not None and interval.upper is not None:
                axis.plot([when, when], [interval.lower, interval.upper], "-", color=COLORS["candidate"],
                          linewidth=2, alpha=0.5)
        pushed = [(t, figure_) for t, _, figure_, _ in points if figure_ is not None]
        if pushed:
            axis.step([t for t, _ in pushed], [v for _, v in pushed], "--", where="post", color=COLORS["baseline"],
                      label="pushed (test split)", gid=REFERENCE)
        alerted = [(t, p.value) for t, p, _, alert in points if alert]
        if alerted:
            axis.plot([t for t, _ in alerted], [v for _, v in alerted], "o", markersize=11, markerfacecolor="none",
                      markeredgecolor=BREACH_COLOR, markeredgewidth=1.5, gid=REFERENCE)
        _time_axis(axis, versions)
        axis.set_title(name, fontsize=9)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=7, loc="lower left")
    return _save(figure, path)
