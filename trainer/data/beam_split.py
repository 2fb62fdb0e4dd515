"""The stratified split of the Beam data step: exact per class, in bounded memory.

Up to `EXACT_ORDER_ROWS` records the split is `split.assign_splits`' own,
record for record: the driver draws the same per-class permutations and
ships, per class, the split of its k-th record in file order (one byte a
record); workers count each class's records in order (the first pass gave
every range's class counts). So small files split exactly as
`assign_splits` splits their labels, and benchmarks that rebuild the split agree.

Above that, within each class, records are ordered by a seeded 64-bit hash of their id
(`beam_values.record_hashes`); the first round(N_c * validation) go to
validation, the next round(N_c * test) to test, the rest to train, so every
split has exactly the counts of `split.assign_splits` (a different random
order than its permutation, the same sizes). The first pass histograms each
class's hashes into `HASH_BUCKETS` buckets; from the histogram the driver
knows the split of every record in a bucket that lies wholly below or above
a cut. Only the records of the (at most two per class) buckets holding a cut
are grouped and sorted to find their exact ranks: N / 4096 records each,
about 130 at 531k rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from trainer.data.split import SPLITS, split_sizes, splits_by_rank

TRAIN, VALIDATION, TEST = 0, 1, 2
BOUNDARY = -1
EXACT_ORDER_ROWS = 1_000_000  # at most 1 MB of per-record splits shipped to workers


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Where every record goes, by class and hash bucket.

    Attributes:
      table: int8 [2, buckets]: the split of every record in the bucket, or
        BOUNDARY when the bucket holds a cut.
      offsets: int64 [2, buckets]: records of the class in lower buckets.
      cuts: int64 [2, 2]: per class, ranks below cuts[c, 0] are validation,
        below cuts[c, 1] test, the rest train.
      counts: {split: [N_0, N_1]}.
      by_rank: Per class, int8 [N_c]: the split of the class's k-th record in
        file order (`assign_splits`' split), or None to split by hash.
      range_offsets: Range -> records of each class in the ranges before it.
    """

    table: np.ndarray
    offsets: np.ndarray
    cuts: np.ndarray
    counts: dict[str, list[int]]
    by_rank: tuple[np.ndarray, np.ndarray] | None = None
    range_offsets: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)


def plan_split(histograms: np.ndarray, fractions: tuple[float, float, float], seed: int,
               range_counts: dict[int, tuple[int, int]], exact_order_rows: int = EXACT_ORDER_ROWS) -> SplitPlan:
    """Plans the split from per-class bucket histograms (int64 [2, buckets]) and per-range class counts.

    Raises:
      DataError: a class too small for the split (as `split.assign_splits`).
    """
    table = np.zeros(histograms.shape, np.int8)
    offsets = np.zeros(histograms.shape, np.int64)
    cuts = np.zeros((2, 2), np.int64)
    sizes = {}
    for cls in (0, 1):
        histogram = histograms[cls]
        n = int(histogram.sum())
        n_val, n_test = split_sizes(n, fractions, cls)
        cuts[cls] = (n_val, n_val + n_test)
        offsets[cls] = np.cumsum(histogram) - histogram
        first = split_of_ranks(offsets[cls], cuts[cls])
        last = split_of_ranks(offsets[cls] + np.maximum(histogram - 1, 0), cuts[cls])
        table[cls] = np.where(first == last, first, BOUNDARY)
        sizes[cls] = (n - n_val - n_test, n_val, n_test)
    counts = {name: [sizes[0][index], sizes[1][index]] for index, name in enumerate(SPLITS)}
    if histograms.sum() > exact_order_rows:
        return SplitPlan(table, offsets, cuts, counts)
    return SplitPlan(table, offsets, cuts, counts, splits_by_rank(histograms.sum(axis=1), fractions, seed),
                     _range_offsets(range_counts))


def _range_offsets(range_counts: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    offsets, seen = {}, np.zeros(2, np.int64)
    for part in sorted(range_counts):
        offsets[part] = (int(seen[0]), int(seen[1]))
        seen += range_counts[part]
    return offsets


def assign_by_rank(plan: SplitPlan, labels: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """int8 [n]: the splits of a range's next records; `seen` (int64 [2], per class so far) is advanced."""
    splits = np.empty(labels.size, np.int8)
    for cls in (0, 1):
        rows = np.flatnonzero(labels == cls)
        splits[rows] = plan.by_rank[cls][seen[cls] + np.arange(rows.size)]
        seen[cls] += rows.size
    return splits


def split_of_ranks(ranks: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The split of each within-class rank."""
    return np.where(ranks < cuts[0], VALIDATION, np.where(ranks < cuts[1], TEST, TRAIN)).astype(np.int8)


def assign(plan: SplitPlan, labels: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """int8 [n]: each record's split, BOUNDARY where its bucket holds a cut."""
    return plan.table[labels, bucket]


def assign_boundary(plan: SplitPlan, cls: int, bucket: int, keys: list[tuple]) -> np.ndarray:
    """The splits of one boundary bucket's records, given their (hash, range, ordinal) keys.

    Records are ranked by hash (ties, which need two ids hashing alike, by id).
    """
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ranks = np.empty(len(keys), np.int64)
    ranks[order] = plan.offsets[cls, bucket] + np.arange(len(keys))
    return split_of_ranks(ranks, plan.cuts[cls])


def reference_assignment(labels: np.ndarray, hashes: np.ndarray, fractions: tuple[float, float, float]
                         ) -> np.ndarray:
    """The same split computed directly (sort each class by hash), for tests and small data."""
    assignment = np.zeros(labels.size, np.int8)
    for cls in (0, 1):
        rows = np.flatnonzero(labels == cls)
        rows = rows[np.argsort(hashes[rows], kind="stable")]
        n_val, n_test = split_sizes(rows.size, fractions, cls)
        assignment[rows[:n_val]] = VALIDATION
        assignment[rows[n_val:n_val + n_test]] = TEST
    return assignment
