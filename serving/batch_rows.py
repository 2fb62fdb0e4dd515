"""Input rows for batch scoring: the data step's reader, checked against the model's inputs.

Files are planned and read exactly as the Beam data step reads them
(`trainer.data.beam_files`: CSV byte ranges, Parquet row groups, whole
TFRecord files, all as Arrow batches of raw values; cells classified by
`trainer.data.beam_values`), and column names are matched to the model's
inputs through `ingest.sanitize_name`, as training named them. A row is bad,
and goes to the errors file instead of the model, for the data step's own
reasons (a CSV row with the wrong number of fields, text in a numeric column,
an infinite number) and, for tf.Example input, a feature with several values
or of a list type the model's `serving_default` does not parse.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.batch_logs import NotARow, log_example
from trainer.data import beam_values
from trainer.data.beam_files import (
    BATCH_ROWS,
    Range,
    ReadError,
    _range_bytes,
    csv_delimiter,
    read_range,
    tfrecord_records,
)
from trainer.data.beam_plan import _lines_before
from trainer.data.ingest import DataError, infinite_reason, not_a_number_reason, ragged_reason, sanitize_name

BLOCK_ROWS = 2048  # rows per pipeline element; RunInference batches several (see batch_handlers)


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """The raw features the model reads, by kind (names as in its `predict_features` signature)."""

    numeric: tuple[str, ...]
    text: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.numeric + self.text


@dataclasses.dataclass(frozen=True)
class Block:
    """Up to BLOCK_ROWS good rows of one range, in file order.

    Attributes:
      part: The range's index (output files are named by it).
      ordinals: int64 [n], each row's record ordinal within the range.
      ids: The `--id-column` values (object [n]), or None without one.
      features: Input name -> float32 [n] (NaN = missing) or object [n] of
        str ("" = missing), as the REST server imputes absent values.
      examples: The rows' serialized tf.Examples (TFRecord input), else None.
    """

    part: int
    ordinals: np.ndarray
    ids: np.ndarray | None
    features: dict[str, np.ndarray]
    examples: tuple[bytes, ...] | None = None

    def __len__(self) -> int:
        return int(self.ordinals.size)


@dataclasses.dataclass(frozen=True)
class RowError:
    """A row that was not scored: where it is and why.

    Attributes:
      part: The range's index; ordinal: its record ordinal (for file order).
      file: The input file; location: e.g. {"line": 17}, {"record": 3} or
        {"row_group": 0, "row": 5}, as the data step names rows.
      reason: One line.
    """

    part: int
    ordinal: int
    file: str
    location: tuple[tuple[str, int], ...]
    reason: str

    def to_json(self) -> dict:
        return {"file": self.file, **dict(self.location), "reason": self.reason}


def check_columns(ranges: list[Range], inputs: ModelInputs, id_column: str | None) -> None:
    """Refuses CSV/Parquet input that lacks a model input or the id column (tf.Example features may be absent).

    Raises:
      DataError: naming the missing columns and the file.
    """
    for part in ranges:
        if part.kind == "tfrecord":
            continue
        present = {sanitize_name(name) for name in part.columns}
        missing = [name for name in inputs.names if name not in present]
        if missing:
            raise DataError(f"{part.path} lacks the model's input columns {', '.join(map(repr, missing))}")
        if id_column is not None and id_column not in part.columns:
            raise DataError(f"{part.path} has no --id-column {id_column!r}")


def read_part(part: Range, inputs: ModelInputs, id_column: str | None, logs: bool = False
              ) -> Iterator[Block | RowError]:
    """Reads one range: Blocks of good rows and a RowError for every bad row, in file order.

    Args:
      logs: The TFRecord records are PredictionLogs (serving.batch_logs), not tf.Examples.
    """
    locator = _Locator(part)
    ragged: list[RowError] = []

    def on_bad_row(line: int, fields: int, expected: int) -> None:
        ragged.append(RowError(part.index, -1, part.path, (("line", locator.line(line)),),
                               ragged_reason(fields, expected)))

    batches = _tfrecord_batches(part, logs) if part.kind == "tfrecord" else _range_batches(part, on_bad_row)
    ordinal = 0
    try:
        for ordinal, batch, records, reasons in batches:
            yield from ragged
            ragged.clear()
            yield from _checked(part, locator, inputs, id_column, ordinal, batch, records, reasons)
            ordinal += batch.num_rows
    except ReadError as error:
        yield from ragged
        yield RowError(part.index, ordinal, part.path, locator.where(error.ordinal), str(error))
    yield from ragged


def _tfrecord_batches(part: Range, logs: bool) -> Iterator[tuple[int, pa.RecordBatch, list[bytes], dict]]:
    """As the data step's TFRecord reader, keeping each batch's serialized tf.Examples.

    With `logs`, each PredictionLog record becomes its tf.Example first; a
    record that is not one example's request becomes an empty Example and a
    reason (so ordinals still count records).
    """
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    records: list[bytes] = []
    reasons: dict[int, str] = {}
    ordinal = 0
    for record in tfrecord_records(part.path):
        if logs:
            try:
                record = log_example(record)
            except NotARow as error:
                reasons[len(records)], record = str(error), b""
        records.append(record)
        if len(records) == BATCH_ROWS:
            yield ordinal, decoder.DecodeBatch(records), records, reasons
            ordinal, records, reasons = ordinal + len(records), [], {}
    if records:
        yield ordinal, decoder.DecodeBatch(records), records, reasons


def _range_batches(part: Range, on_bad_row):
    for ordinal, batch in read_range(part, on_bad_row):
        yield ordinal, batch, None, {}


def _checked(part: Range, locator: _Locator, inputs: ModelInputs, id_column: str | None, first: int,
             batch: pa.RecordBatch, records: list[bytes] | None, reasons: dict[int, str]
             ) -> Iterator[Block | RowError]:
    columns = {sanitize_name(name): column for name, column in zip(batch.schema.names, batch.columns, strict=True)}
    n = batch.num_rows
    reasons = dict(reasons)
    features = {}
    for name in inputs.names:
        array = columns.get(name, pa.nulls(n))
        array = _scalars(array, name, reasons)
        if name in inputs.numeric:
            features[name] = _numbers(array, name, reasons, records is not None)
        else:
            features[name] = _texts(array, name, reasons, records is not None)
    ids = None
    if id_column is not None:
        raw = batch.column(id_column) if id_column in batch.schema.names else pa.nulls(n)
        ids = np.asarray(_id_values(_scalars(raw, id_column, {})), dtype=object)
    for row in sorted(reasons):
        yield RowError(part.index, first + row, part.path, locator.where(first + row), reasons[row])
    good = np.setdiff1d(np.arange(n), np.fromiter(reasons, np.int64, len(reasons)))
    for start in range(0, good.size, BLOCK_ROWS):
        rows = good[start:start + BLOCK_ROWS]
        yield Block(part.index, first + rows, None if ids is None else ids[rows],
                    {name: values[rows] for name, values in features.items()},
                    None if records is None else tuple(records[i] for i in rows))


def _id_values(array: pa.Array) -> list:
    """Ids as read; a tf.Example's bytes_list id as text (invalid UTF-8 replaced, as the data step's reader)."""
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        array = beam_values._decoded(array)
    return array.to_pylist()


def _scalars(array: pa.Array, name: str, reasons: dict[int, str]) -> pa.Array:
    """A tf.Example list column as scalars; a row with several values is bad (null here)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return array
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    for row in np.flatnonzero(lengths > 1):
        reasons.setdefault(int(row), f"feature {name!r} has {int(lengths[row])} values in one example; "
                                     "the model reads one")
    one = lengths == 1
    positions = np.cumsum(lengths) - lengths  # each list's first value in the flattened values
    return pc.take(pc.list_flatten(array), pa.array(positions, mask=~one))


def _numbers(array: pa.Array, name: str, reasons: dict[int, str], example: bool) -> np.ndarray:
    if example and not (pa.types.is_floating(array.type) or pa.types.is_null(array.type)):
        _wrong_list(array, name, "float_list", reasons)
        return np.full(len(array), np.nan, np.float32)
    try:
        cells = beam_values.classify(array, numbers=True)
    except TypeError as error:
        raise DataError(f"column {name!r} {error}") from None
    bad_text = cells.present & np.isnan(cells.numbers)
    shown = cells.text if cells.text is not None else cells.numbers
    for row in np.flatnonzero(bad_text):
        reasons.setdefault(int(row), not_a_number_reason(name, shown[row]))
    for row in np.flatnonzero(np.isinf(cells.numbers)):
        reasons.setdefault(int(row), infinite_reason(name, shown[row]))
    return cells.numbers.astype(np.float32)


def _texts(array: pa.Array, name: str, reasons: dict[int, str], example: bool) -> np.ndarray:
    if example and not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
                        or pa.types.is_null(array.type)):
        _wrong_list(array, name, "bytes_list", reasons)
        return np.full(len(array), "", dtype=object)
    try:
        cells = beam_values.classify(array, numbers=False)
    except TypeError as error:
        raise DataError(f"column {name!r} {error}") from None
    if cells.text is None:  # typed numbers in a text column: their text, as the in-memory reader's str()
        values = np.array(["" if v is None else str(v) for v in array.to_pylist()], dtype=object)
    else:
        values = np.where(cells.present, cells.text, "").astype(object)
    return values


def _wrong_list(array: pa.Array, name: str, expected: str, reasons: dict[int, str]) -> None:
    kind = {"int64": "int64_list", "float": "float_list"}.get(str(array.type), "bytes_list")
    for row in np.flatnonzero(array.is_valid().to_numpy(zero_copy_only=False)):
        reasons.setdefault(int(row), f"feature {name!r} is a {kind}; the model's serving_default parses a {expected}")


class _Locator:
    """Names a range's records as the data step does; CSV lines are worked out once per range, when needed."""

    def __init__(self, part: Range):
        self._part = part
        self._before: int | None = None
        self._lines: np.ndarray | None = None

    def line(self, line_in_range: int) -> int:
        if self._before is None:
            self._before = _lines_before(self._part)[1]
        return self._before + line_in_range

    def where(self, ordinal: int) -> tuple[tuple[str, int], ...]:
        part = self._part
        if part.kind == "tfrecord":
            return (("record", ordinal + 1),)
        if part.kind == "parquet":
            return (("row_group", part.start), ("row", ordinal + 1))
        if self._lines is None:
            self._lines = _record_lines(part)
        return (("line", int(self._lines[ordinal]) if ordinal < self._lines.size else -1),)


def _record_lines(part: Range) -> np.ndarray:
    """int64 [records]: the file line each record of a CSV range starts on (one pass over the range)."""
    begin, before = _lines_before(part)
    if part.end >= 0:
        data = _range_bytes(part.path, part.start, part.end)
    else:
        opener = gzip.open if part.path.lower().endswith(".gz") else open
        with opener(part.path, "rb") as handle:
            data = handle.read()[begin:]
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text, delimiter=csv_delimiter(part.path))
    lines, previous = [], 0
    for row in reader:
        start, previous = previous + 1, reader.line_num
        if len(row) == len(part.columns):  # blank lines and ragged rows are not records
            lines.append(before + start)
    return np.asarray(lines, np.int64)
