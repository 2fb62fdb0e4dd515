"""The stratified train / validation / test split's rules and its recorded class counts.

The assignment is exact per class (a seeded permutation of each class's rows),
so every split has the same positive rate up to rounding. The Beam data step
(`trainer.data.beam_split`) uses this order for small inputs and a seeded
record hash with the same per-class counts beyond; it writes the shards.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from trainer.data.ingest import DataError

SPLITS = ("train", "validation", "test")


def assign_splits(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Assigns each row to a split, stratified by label.

    Args:
      labels: int [N] of 0/1.
      fractions: (train, validation, test), summing to 1.
      seed: Seed of the per-class permutations.

    Returns:
      int8 [N]: 0 = train, 1 = validation, 2 = test.

    Raises:
      DataError: when a class is too small to put one example in every split.
    """
    by_rank = splits_by_rank(np.bincount(labels, minlength=2), fractions, seed)
    assignment = np.zeros(labels.shape[0], dtype=np.int8)
    for cls in (0, 1):
        assignment[labels == cls] = by_rank[cls]  # a row's rank: its place among its class's rows
    return assignment


def splits_by_rank(totals: np.ndarray, fractions: tuple[float, float, float],
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, int8 [totals[class]]: the split of the class's k-th row, for every k.

    The one split rule, for `assign_splits` and the Beam data step
    (`trainer.data.beam_split`): a seeded permutation per class (class 0's
    drawn first), its first `split_sizes` ranks to validation, the next to
    test, the rest to train.
    """
    rng = np.random.default_rng(seed)
    by_rank = []
    for cls in (0, 1):
        order = rng.permutation(int(totals[cls]))
        n_val, n_test = split_sizes(int(totals[cls]), fractions, cls)
        splits = np.zeros(order.size, np.int8)  # 0 = train
        splits[order[:n_val]] = 1
        splits[order[n_val:n_val + n_test]] = 2
        by_rank.append(splits)
    return by_rank[0], by_rank[1]


def split_sizes(n: int, fractions: tuple[float, float, float], cls: int) -> tuple[int, int]:
    """(validation, test) examples of a class of `n`; train gets the rest.

    Raises:
      DataError: when the class is too small to put one example in every split.
    """
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if min(n_val, n_test, n - n_val - n_test) < 1:
        needed = int(np.ceil(1.0 / min(fractions)))
        raise DataError(
            f"class {cls} has only {n} examples; the split {tuple(fractions)} needs at least {needed} "
            "so that train, validation and test each get one"
        )
    return n_val, n_test


def class_counts(labels: np.ndarray, assignment: np.ndarray) -> dict[str, list[int]]:
    """{split: [N_0, N_1]} for each split."""
    return {
        name: [int(((assignment == i) & (labels == c)).sum()) for c in (0, 1)]
        for i, name in enumerate(SPLITS)
    }


class _QuietOSErrors(logging.Filter):
    """Drops Beam's log of a worker's OSError (with its traceback).

    The OSError is re-raised to the caller, which reports it in one line
    (`error: cannot write ...: No space left on device`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, OSError) or record.getMessage().startswith("OSError: "))


def _os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind a chain of wrapping exceptions, if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def save_counts(counts: dict, directory: str) -> None:
    with open(os.path.join(directory, "class_counts.json"), "w") as handle:
        json.dump(counts, handle, indent=1)


def load_counts(directory: str) -> dict[str, list[int]]:
    with open(os.path.join(directory, "class_counts.json")) as handle:
        return json.load(handle)
