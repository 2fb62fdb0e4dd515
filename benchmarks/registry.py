"""Which dataset plays which role: development (defaults were chosen on it) or confirmation (reported).

Issue 20's rule: never choose a default on the datasets you report. Every set
of the model-quality benchmark (`benchmarks.datasets.quality_datasets`) was
looked at while the package's defaults, search space and portfolio were
chosen, so all of them are development sets. The confirmation sets
(`benchmarks.confirmation_data.CONFIRMATION`) were added afterwards and no
default may be tuned on them; results on the two are written to different
files (`quality.json` / `confirmation.json`) and never averaged together.
"""

from __future__ import annotations

from benchmarks.confirmation_data import CONFIRMATION, QUICK_CONFIRMATION
from benchmarks.datasets import COMMON, FULL_QUALITY_SYNTHETIC, QUICK_SYNTHETIC, synthetic_name

DEVELOPMENT = (*COMMON, "sylva", *(synthetic_name(rows) for rows in (*FULL_QUALITY_SYNTHETIC, QUICK_SYNTHETIC)))

# Repeated stratified splits: more of them where the test split holds only a handful of positives.
FEW_POSITIVES = 100
SEEDS_FEW_POSITIVES = 5
SEEDS = 3


def role(name: str) -> str:
    """`"development"` or `"confirmation"` (KeyError for a set in neither)."""
    if name in DEVELOPMENT:
        return "development"
    if name in CONFIRMATION:
        return "confirmation"
    raise KeyError(name)


def seed_count(positives: int) -> int:
    """Splits per confirmation set: 5 below FEW_POSITIVES positives, else 3."""
    return SEEDS_FEW_POSITIVES if positives < FEW_POSITIVES else SEEDS


def confirmation_names(quick: bool) -> tuple[str, ...]:
    return QUICK_CONFIRMATION if quick else CONFIRMATION


def check_disjoint() -> None:
    """Raises if a set is registered in both roles (a confirmation set used for development)."""
    shared = sorted(set(DEVELOPMENT) & set(CONFIRMATION))
    if shared:
        raise AssertionError(f"both development and confirmation: {', '.join(shared)}")
