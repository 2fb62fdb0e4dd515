"""Confidence bounds of a proportion, for the gate's value thresholds.

TFMA's validator compares point values, so the gate turns each bound into a
number before TFMA runs (`evaluation.gate`):

* recall floor: the Wilson score interval (Wilson 1927), which unlike the
  normal approximation stays inside [0, 1] and is not degenerate at 0 of n
  successes. A recall floor fails only when the one-sided 95% upper bound of
  the measured recall is below it; with n test positives that is "fewer than
  k of n found", k the smallest count whose upper bound reaches the floor.
* precision floor: the test precision's standard error read off its Wilson
  upper bound ((upper - p) / z: about sqrt(p(1 - p) / n) for many flagged
  examples, and not 0 at 0 of n, where a bootstrap or the normal
  approximation says "no uncertainty": 0 true positives among 2 flagged test
  examples is not evidence that precision is below 0.5), combined with a
  binomial standard error sqrt(p(1 - p) / n) of the precision measured on the
  n examples the threshold flagged on the held-out data it was chosen on.
"""

from __future__ import annotations

import math

import numpy as np

ONE_SIDED_95 = 1.645


def wilson_upper(successes, trials: int, z: float = ONE_SIDED_95):
    """Upper end of the Wilson score interval of successes / trials (one-sided at `z`).

    `successes` may be an array (vectorized over counts). Equals the upper end
    of the two-sided interval at the level whose half-width is `z` (90% for
    1.645), e.g. statsmodels' `proportion_confint(k, n, 0.1, "wilson")[1]`.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = float(trials)
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre + spread) / (1 + z2 / n)


def min_successes(floor: float, trials: int, z: float = ONE_SIDED_95) -> int:
    """The smallest k in 0..n whose Wilson upper bound of k / n reaches `floor`.

    Fewer than k successes is evidence (one-sided 95%) that the true rate is
    below `floor`; k or more is not. 0 with no trials or a floor <= 0;
    n + 1 (unreachable) for a floor above 1.
    """
    if trials <= 0 or floor <= 0:
        return 0
    reaches = wilson_upper(np.arange(trials + 1), trials, z) >= floor
    return int(np.argmax(reaches)) if reaches.any() else trials + 1


def binomial_standard_error(proportion: float, trials: int) -> float | None:
    """sqrt(p (1 - p) / n), or None without trials or with an undefined proportion."""
    if trials <= 0 or proportion is None or not math.isfinite(proportion):
        return None
    return math.sqrt(proportion * (1 - proportion) / trials)


def wilson_standard_error(successes: int, trials: int, z: float = ONE_SIDED_95) -> float | None:
    """(Wilson upper bound - p) / z: a standard error of successes / trials that stays positive at 0 of n.

    None without trials (the proportion is undefined).
    """
    if trials <= 0:
        return None
    return float((wilson_upper(successes, trials, z) - successes / trials) / z)
