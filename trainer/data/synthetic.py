"""A synthetic dataset at the reference problem's scale (500,000 vs 31,000).

Numeric and categorical features with missing values; positives differ from
negatives in a few numeric directions and in their category mix, so the task is
learnable but not trivial (PR-AUC well below 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer.config import SYNTHETIC_ROWS

REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("web", "app", "store", "phone")
NUMERIC_FEATURES = 12
MISSING_RATE = 0.03


def make_synthetic(negatives: int = SYNTHETIC_ROWS[0], positives: int = SYNTHETIC_ROWS[1],
                   seed: int = 0) -> pd.DataFrame:
    """Returns a shuffled frame with numeric `x0..x11`, categorical `region`,
    `channel`, `merchant`, and an int64 `target` (1 = positive)."""
    rng = np.random.default_rng(seed)
    n = negatives + positives
    target = np.r_[np.zeros(negatives, np.int64), np.ones(positives, np.int64)]
    rng.shuffle(target)
    shift = np.zeros(NUMERIC_FEATURES)
    shift[:4] = (1.0, -0.8, 0.6, 0.4)  # only four features carry signal
    numeric = rng.normal(size=(n, NUMERIC_FEATURES)) + target[:, None] * shift  # [n, 12]
    numeric[:, 4] = np.exp(numeric[:, 4])  # a skewed, amount-like column
    numeric[rng.random(numeric.shape) < MISSING_RATE] = np.nan
    frame = pd.DataFrame(numeric, columns=[f"x{i}" for i in range(NUMERIC_FEATURES)])
    frame["region"] = _categorical(rng, target, REGIONS, positive_boost=0)
    frame["channel"] = _categorical(rng, target, CHANNELS, positive_boost=1)
    frame["merchant"] = _categorical(rng, target, tuple(f"m{i:03d}" for i in range(200)), positive_boost=7)
    frame["target"] = target
    return frame


def _categorical(rng, target, values, positive_boost: int) -> np.ndarray:
    """Draws values; positives favour the value at `positive_boost` 3 to 1."""
    weights = np.ones(len(values))
    negative_p = weights / weights.sum()
    weights[positive_boost] *= 3.0
    positive_p = weights / weights.sum()
    drawn = np.where(
        target == 1,
        rng.choice(len(values), size=target.size, p=positive_p),
        rng.choice(len(values), size=target.size, p=negative_p),
    )
    column = np.asarray(values, dtype=object)[drawn]
    column[rng.random(target.size) < MISSING_RATE] = None
    return column
