"""Stratified train / validation / test split, written as TFRecord shards.

The assignment is exact per class (a seeded permutation of each class's rows),
so every split has the same positive rate up to rounding. The conversion to
`tf.Example` and the writing of shards is an Apache Beam pipeline, as TFX's
ExampleGen is, so it runs on the same runners as the TFMA evaluation.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from trainer.data.ingest import DataError
from trainer.layout import SHARD_PREFIX, SHARD_SUFFIX, shard_pattern

SPLITS = ("train", "validation", "test")
CHUNK_ROWS = 20_000


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
    rng = np.random.default_rng(seed)
    assignment = np.zeros(labels.shape[0], dtype=np.int8)
    for cls in (0, 1):
        rows = np.nonzero(labels == cls)[0]
        rows = rows[rng.permutation(rows.size)]
        n_val, n_test = split_sizes(rows.size, fractions, cls)
        assignment[rows[:n_val]] = 1
        assignment[rows[n_val:n_val + n_test]] = 2
    return assignment


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


def write_splits(features: pd.DataFrame, labels: np.ndarray, label_name: str, assignment: np.ndarray,
                 directory: str, beam_pipeline_args=()) -> dict[str, str]:
    """Writes `directory/{train,validation,test}/data-*.tfrecord.gz` with Beam.

    Returns:
      {split: file pattern} of the written shards.
    """
    import apache_beam as beam

    from trainer.beam_runner import make_pipeline

    frame = features.copy()
    frame[label_name] = labels
    frame["__split__"] = assignment
    chunks = [frame.iloc[start:start + CHUNK_ROWS] for start in range(0, len(frame), CHUNK_ROWS)]
    patterns = {}
    beam_log = logging.getLogger("apache_beam.runners.common")
    quiet = _QuietOSErrors()
    beam_log.addFilter(quiet)
    try:
        with make_pipeline(beam_pipeline_args) as pipeline:
            examples = (
                pipeline
                | "Chunks" >> beam.Create(chunks, reshuffle=False)
                | "ToExamples" >> beam.FlatMap(_chunk_to_examples, label_name)
            )
            parts = examples | "BySplit" >> beam.Partition(lambda item, _: item[0], len(SPLITS))
            for index, name in enumerate(SPLITS):
                prefix = os.path.join(directory, name, SHARD_PREFIX)
                os.makedirs(os.path.dirname(prefix), exist_ok=True)
                _ = (
                    parts[index]
                    | f"Serialize{name}" >> beam.Map(lambda item: item[1])
                    | f"Write{name}" >> beam.io.WriteToTFRecord(
                        prefix, file_name_suffix=SHARD_SUFFIX, num_shards=_shards(assignment, index)
                    )
                )
                patterns[name] = shard_pattern(directory, name)
    except RuntimeError as error:
        cause = _os_error(error)  # Beam wraps a worker's OSError (e.g. a full disk) in a RuntimeError
        if cause is None:
            raise
        raise cause from None
    finally:
        beam_log.removeFilter(quiet)
    return patterns


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


def _shards(assignment: np.ndarray, index: int) -> int:
    # About 100k examples a shard: few files for small data, parallel reads for large.
    return max(1, int(np.ceil((assignment == index).sum() / 100_000)))


def _chunk_to_examples(chunk: pd.DataFrame, label_name: str):
    import tensorflow as tf

    columns = [c for c in chunk.columns if c not in ("__split__", label_name)]
    numeric = {c: pd.api.types.is_numeric_dtype(chunk[c]) for c in columns}
    for values in chunk.to_dict("records"):
        feature = {label_name: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(values[label_name])]))}
        for name in columns:
            value = values[name]
            if value is None or (numeric[name] and np.isnan(value)):
                continue  # missing: the feature is absent, as in TF Serving requests
            if numeric[name]:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        yield int(values["__split__"]), example.SerializeToString()


def save_counts(counts: dict, directory: str) -> None:
    with open(os.path.join(directory, "class_counts.json"), "w") as handle:
        json.dump(counts, handle, indent=1)


def load_counts(directory: str) -> dict[str, list[int]]:
    with open(os.path.join(directory, "class_counts.json")) as handle:
        return json.load(handle)
