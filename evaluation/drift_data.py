"""Reading data files (CSV, Parquet, TFRecord) for the drift check: clean columns and one-pass statistics.

Files are read with the data step's own readers (`trainer.data.beam_files`:
ranges of CSV bytes, Parquet row groups, whole TFRecord files) and their
values cleaned as the data step cleans them (`beam_values.classify`); raw
column names become the model's feature names by `ingest.sanitize_name`.
Statistics are one Beam pipeline (in-process unless `--beam-pipeline-args`
names another runner): each range's batches go through the `StatisticsFn`
combiner, whose merged value comes back through a file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from trainer.beam_runner import make_pipeline
from trainer.data import beam_values
from trainer.data.beam_files import Range, plan_ranges, read_range
from trainer.data.ingest import DataError, sanitize_name
from trainer.data.statistics import CATEGORICAL, NUMERIC, Columns, DataStatistics, StatisticsFn


@dataclasses.dataclass(frozen=True)
class Reading:
    """Which columns to read and how.

    Attributes:
      kinds: Clean feature name -> `numeric` or `categorical` (others are ignored).
      label: The label's clean name (None: no label column is read).
      positive_value: The label text of class 1 (`1` for the data step's TFRecords).
    """

    kinds: dict[str, str]
    label: str | None = None
    positive_value: str = "1"


def ranges_of(pattern: str) -> list[Range]:
    """The ranges of the files matching `pattern`.

    Raises:
      DataError: no file matches, or a file cannot be planned.
    """
    try:
        ranges = plan_ranges(pattern)
    except OSError as error:
        raise DataError(f"{pattern}: {error.strerror or error}") from None
    if not ranges:
        raise DataError(f"{pattern}: no data file matches")
    return ranges


def infer_kinds(pattern: str, label: str | None) -> dict[str, str]:
    """Feature kinds from the first batch of the first file: number columns numeric, text categorical."""
    for _, batch in read_range(ranges_of(pattern)[0]):
        kinds = {}
        for name, array in zip(batch.schema.names, batch.columns, strict=True):
            clean = sanitize_name(name)
            if clean == label:
                continue
            cells = beam_values.classify(beam_values.scalar_column(array)[0])
            numeric = cells.typed or bool(np.all(~np.isnan(cells.numbers[cells.present])))
            kinds[clean] = NUMERIC if numeric and cells.present.any() else CATEGORICAL
        return kinds
    raise DataError(f"{pattern}: the input has no rows")


def batch_columns(batch: pa.RecordBatch, reading: Reading) -> Columns:
    """One batch of raw records as clean columns; a feature the batch lacks is all missing."""
    raw = {sanitize_name(name): array for name, array in zip(batch.schema.names, batch.columns, strict=True)}
    n = batch.num_rows
    numeric, categorical = {}, {}
    for name, kind in reading.kinds.items():
        array = beam_values.scalar_column(raw[name])[0] if name in raw else pa.nulls(n)
        cells = beam_values.classify(array, numbers=kind == NUMERIC)
        if kind == NUMERIC:
            numeric[name] = cells.numbers
        else:
            text = cells.text if cells.text is not None else _number_text(cells)
            categorical[name] = np.where(cells.present, text, None)
    if reading.label is not None and reading.label in raw:
        codes, texts = beam_values.label_codes(beam_values.scalar_column(raw[reading.label])[0])
        positive = np.array([float(text == reading.positive_value) for text in texts] + [np.nan])
        numeric[reading.label] = positive[codes]
    return Columns(n, numeric, categorical)


def _number_text(cells: beam_values.Cells) -> np.ndarray:
    """A categorical column stored as numbers: its values as the data step's text (`3`, not `3.0`)."""
    return np.array([None if np.isnan(v) else (str(int(v)) if float(v).is_integer() else str(v))
                     for v in cells.numbers], dtype=object)


def read_columns(part: Range, reading: Reading) -> Iterator[Columns]:
    """The clean columns of one range, batch by batch."""
    for _, batch in read_range(part):
        yield batch_columns(batch, reading)


def compute_statistics(pattern: str, reading: Reading, beam_pipeline_args: Sequence[str] = ()) -> DataStatistics:
    """Statistics of every record of the files matching `pattern`, in one Beam pass.

    Raises:
      DataError: no file matches, or a file cannot be read.
    """
    stats = statistics_of(ranges_of(pattern), functools.partial(read_columns, reading=reading), pattern,
                          beam_pipeline_args)
    for name, kind in reading.kinds.items():  # a feature no batch had still has statistics (all missing)
        stats.kinds.setdefault(name, kind)
    return stats


def statistics_of(parts: list, read: Callable[[object], Iterable[Columns]], what: str,
                  beam_pipeline_args: Sequence[str] = ()) -> DataStatistics:
    """One Beam pass: `read` turns each part into `Columns` batches, `StatisticsFn` merges them.

    Raises:
      DataError: a part cannot be read (`what` names the input in the message).
    """
    with tempfile.TemporaryDirectory(prefix="drift-stats-") as scratch:
        result = os.path.join(scratch, "statistics.pkl")
        try:
            with make_pipeline(beam_pipeline_args) as pipeline:
                _ = (pipeline
                     | "Parts" >> beam.Create(parts)
                     | "Read" >> beam.FlatMap(read)
                     | "Statistics" >> beam.CombineGlobally(StatisticsFn())
                     | "Hand back" >> beam.Map(_dump, result))
        except Exception as error:  # a worker's read failure: one line
            raise DataError(f"cannot read {what}: {str(error).strip().splitlines()[-1]}") from None
        with open(result, "rb") as handle:
            return pickle.load(handle)


def _dump(stats: DataStatistics, path: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump(stats, handle)
