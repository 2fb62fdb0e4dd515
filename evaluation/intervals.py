"""Confidence intervals that stay inside the metric's range.

TFMA's intervals (jackknife or Poisson bootstrap) are normal approximations,
point +- t * standard error, so near a bound they leave it: a PR-AUC of
0.982 got [0.958, 1.006], a recall of 0.991 got [0.974, 1.009]. Every
interval the report and the evaluation summary show is rebuilt here from
TFMA's own standard error or from the test split's counts:

* proportions at the decision threshold (recall, precision, specificity,
  negative predictive value): the Wilson score interval of k of n
  (`evaluation.bounds`), from TFMA's confusion matrix at the threshold; it
  is inside [0, 1] and not degenerate at 0 or n of n.
* other metrics bounded by [0, 1] (ROC-AUC, PR-AUC, F1, recall at precision,
  means): TFMA's interval transformed on the logit scale: logit(p) +- h /
  (p (1 - p)), h TFMA's half-width (the delta method: the same standard
  error, measured where the metric is unbounded), mapped back. It contains
  the point value, is asymmetric near a bound and never crosses it. At a
  point value of exactly 0 or 1 the logit does not exist, and TFMA's
  normal interval is clipped to [0, 1] instead.
* the calibration ratio (mean prediction / mean label, > 0): the same on
  the log scale.
* candidate-vs-reference differences (in [-1, 1]): TFMA's interval clipped.

Metrics TFMA gave no interval (intervals off, or a metric it does not
resample) get none here either.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

from evaluation.bounds import wilson_upper

TWO_SIDED_95 = NormalDist().inv_cdf(0.975)  # 1.95996...
# At-threshold proportions: metric -> (successes, failures) counts of TFMA's confusion matrix.
PROPORTIONS = {"recall": ("tp", "fn"), "precision": ("tp", "fp"), "specificity": ("tn", "fp"),
               "negative_predictive_value": ("tn", "fn")}
POSITIVE = ("calibration",)  # ratios in (0, inf)
UNBOUNDED = ("example_count", "threshold")
WILSON, LOGIT, LOG, CLIPPED = "wilson", "logit", "log", "clipped"
METHODS = {
    WILSON: "Wilson score interval of the test counts at the threshold",
    LOGIT: "TFMA's standard error on the logit scale (delta method), mapped back into [0, 1]",
    LOG: "TFMA's standard error on the log scale, mapped back (stays positive)",
    CLIPPED: "TFMA's normal-approximation interval clipped to the metric's range",
}


@dataclasses.dataclass(frozen=True)
class Interval:
    """A 95% interval and how it was made (a key of `METHODS`)."""

    lower: float
    upper: float
    method: str


def wilson_interval(successes: float, trials: float, z: float = TWO_SIDED_95) -> tuple[float, float]:
    """Two-sided Wilson score interval of successes / trials (NaNs without trials)."""
    if trials <= 0:
        return math.nan, math.nan
    upper = float(wilson_upper(successes, trials, z))
    lower = 1.0 - float(wilson_upper(trials - successes, trials, z))  # the lower end is the mirror image's upper
    # Exactly 0 at 0 of n and 1 at n of n (the formula leaves a rounding error there).
    return (0.0 if successes <= 0 else max(lower, 0.0)), (1.0 if successes >= trials else min(upper, 1.0))


def transformed(point: float, lower: float, upper: float, scale: str = LOGIT) -> Interval:
    """TFMA's normal interval [lower, upper] re-centred on `point` on the logit (or log) scale.

    The half-width h = (upper - lower) / 2 is t * standard error; the delta
    method turns it into h / (p (1 - p)) on the logit scale (h / p on the log
    scale). A point on the boundary, or a non-finite one, falls back to the
    clipped interval.
    """
    half = (upper - lower) / 2.0
    if not (math.isfinite(point) and math.isfinite(half)):
        return clipped(lower, upper, 0.0, math.inf if scale == LOG else 1.0)
    if scale == LOG:
        if point <= 0:
            return clipped(lower, upper, 0.0, math.inf)
        spread = half / point
        return Interval(point * math.exp(-spread), point * math.exp(spread), LOG)
    if not 0.0 < point < 1.0:
        return clipped(lower, upper, 0.0, 1.0)
    centre, spread = math.log(point / (1.0 - point)), half / (point * (1.0 - point))
    return Interval(_expit(centre - spread), _expit(centre + spread), LOGIT)


def clipped(lower: float, upper: float, low: float, high: float) -> Interval:
    """TFMA's interval cut to [low, high]: the least a bounded metric's interval must do."""
    return Interval(min(max(lower, low), high), max(min(upper, high), low), CLIPPED)


def _expit(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))  # overflow-free logistic


def bounded_intervals(metrics: dict[str, float], raw: dict[str, list[float]]) -> dict[str, Interval]:
    """Every interval of one slice, inside its metric's range.

    Args:
      metrics: The slice's point values (`evaluation.results.flatten_metrics`),
        with the confusion counts `tp`, `fp`, `tn`, `fn` at the threshold.
      raw: TFMA's [lower, upper] per metric (`flatten_intervals`).
    """
    intervals = {}
    for name, (lower, upper) in raw.items():
        if name in UNBOUNDED:
            continue
        if name.endswith("_diff"):
            intervals[name] = clipped(lower, upper, -1.0, 1.0)
        elif name in PROPORTIONS and all(key in metrics for key in ("tp", "fp", "tn", "fn")):
            hits, misses = (metrics[key] for key in PROPORTIONS[name])
            low, high = wilson_interval(hits, hits + misses)
            intervals[name] = Interval(low, high, WILSON) if math.isfinite(low) else clipped(lower, upper, 0.0, 1.0)
        elif name.split("/")[-1] in POSITIVE:
            intervals[name] = transformed(metrics.get(name, math.nan), lower, upper, LOG)
        else:
            intervals[name] = transformed(metrics.get(name, math.nan), lower, upper, LOGIT)
    return intervals


def methods_used(intervals: dict[str, Interval]) -> list[str]:
    """The distinct methods of `intervals`, in words, in `METHODS` order."""
    used = {interval.method for interval in intervals.values()}
    return [f"{key}: {text}" for key, text in METHODS.items() if key in used]
