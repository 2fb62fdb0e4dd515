"""Input files for the Beam data step: cut into ranges, read as Arrow batches.

The driver only lists the files, reads CSV header lines and Parquet footers,
and cuts the files into ranges: byte ranges of uncompressed CSV files (a line
belongs to the range holding its first byte, as in Beam's text source),
row groups of Parquet files, whole files otherwise. A worker reads one range
as Arrow record batches of raw values. Every record has a stable id, (range,
ordinal within the range), that depends on the files only, never on the
runner or the number of workers, so the split computed from it is
reproducible anywhere.

Input files may be on gs:// or s3://: they are listed, sized and opened
through `trainer.storage` (Beam's FileSystems), locally as before.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import struct
from collections.abc import Callable, Iterator

import pyarrow as pa
from google_crc32c import value as _crc32c

from trainer import storage
from trainer.data.ingest import DataError, resolve_paths

RANGE_BYTES = 16 * 2**20  # ~65k rows of the synthetic CSV: enough ranges to keep 2+ workers busy
BATCH_ROWS = 32_768  # Parquet and TFRecord batch size


@dataclasses.dataclass(frozen=True)
class Range:
    """A part of one input file that one worker reads.

    Attributes:
      index: Position in the plan; the first half of every record id.
      path: The file.
      kind: `csv`, `parquet` or `tfrecord`.
      start: CSV: first byte offset; Parquet: row group; else 0.
      end: CSV: byte offset (exclusive), -1 for the whole (maybe gzipped) file.
      columns: CSV header names (the reader is told them) or the Parquet schema's.
    """

    index: int
    path: str
    kind: str
    start: int = 0
    end: int = -1
    columns: tuple[str, ...] = ()


class ReadError(Exception):
    """A range cannot be read further; `ordinal` records before the failure were read."""

    def __init__(self, message: str, ordinal: int):
        super().__init__(message)
        self.ordinal = ordinal


def plan_ranges(pattern: str, range_bytes: int = RANGE_BYTES) -> list[Range]:
    """Lists `pattern`'s files and cuts them into ranges (driver side, reads no rows).

    Raises:
      DataError: no file matches, an unknown file type, an empty CSV file or
        an unreadable header or footer.
    """
    from trainer.data.ingest import _kind  # one notion of file types for both engines

    paths = _resolve(pattern)
    kind = _kind(paths[0])
    ranges: list[Range] = []
    for path in paths:
        if _kind(path) != kind:
            raise DataError(f"{path}: all input files must have one type ({kind})")
        planner = {"csv": _csv_ranges, "parquet": _parquet_ranges, "tfrecord": _whole_file}[kind]
        for fields in planner(path, range_bytes):
            ranges.append(Range(len(ranges), path, kind, **fields))
    return ranges


def _resolve(pattern: str) -> list[str]:
    """`resolve_paths` for local patterns; on gs:// and s3:// Beam's FileSystems list the files."""
    if not storage.is_remote(pattern):
        return resolve_paths(pattern)
    try:
        paths = storage.glob(pattern)
    except OSError as error:
        raise DataError(_first_line(error)) from None
    if not paths:
        raise DataError(f"no input file matches {pattern!r}")
    return paths


def _open(path: str):
    """A binary, seekable file object for a local or remote (gs://, s3://) path."""
    return storage.open_file(path, "rb")


def _whole_file(path: str, _: int) -> list[dict]:
    return [{}]


def _parquet_ranges(path: str, _: int) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(_open(path) if storage.is_remote(path) else path)
    except Exception as error:  # pyarrow's own failure becomes one line
        raise DataError(f"cannot read {path}: {_first_line(error)}") from None
    columns = tuple(parquet.schema_arrow.names)
    return [{"start": group, "columns": columns} for group in range(max(parquet.num_row_groups, 1))]


def _csv_ranges(path: str, range_bytes: int) -> list[dict]:
    columns, header_end = read_header(path)
    size = storage.size(path)
    if path.lower().endswith(".gz") or size - header_end <= range_bytes:
        return [{"start": header_end, "end": -1, "columns": columns}]
    starts = range(header_end, size, range_bytes)
    return [{"start": s, "end": min(s + range_bytes, size), "columns": columns} for s in starts]


def csv_delimiter(path: str) -> str:
    return "\t" if path.lower().endswith((".tsv", ".tsv.gz")) else ","


def read_header(path: str) -> tuple[tuple[str, ...], int]:
    """A CSV file's column names and the byte offset just after its header line."""
    if storage.size(path) == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        with _open(path) as raw, (gzip.GzipFile(fileobj=raw) if path.lower().endswith(".gz") else raw) as handle:
            line = handle.readline()
        text = line.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {_first_line(error)}") from None
    names = next(csv.reader([text.rstrip("\r\n")], delimiter=csv_delimiter(path)), [])
    if not any(name.strip() for name in names):
        raise DataError(f"{path}: the file is empty")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{path}: the header names {', '.join(map(repr, duplicated))} more than once")
    return tuple(names), len(line)


def read_range(part: Range, on_bad_row: Callable[[int, int, int], None] | None = None
               ) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yields (ordinal of the batch's first record, batch of raw values).

    Args:
      part: The range.
      on_bad_row: CSV only: called with (line within the range, fields,
        expected fields) for a row with the wrong number of fields, which is
        skipped; without it such a row is a ReadError.

    Raises:
      ReadError: the file is unreadable, corrupt or truncated at some point.
    """
    readers = {"csv": _csv_batches, "parquet": _parquet_batches, "tfrecord": _tfrecord_batches}
    ordinal = 0
    batches = readers[part.kind](part, on_bad_row)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except ReadError:
            raise
        except Exception as error:  # every reader's own failure: one line, with where
            raise ReadError(f"cannot read {part.path}: {_first_line(error)}", ordinal) from None
        if batch.num_rows:
            yield ordinal, batch
            ordinal += batch.num_rows


def _csv_batches(part: Range, on_bad_row) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pacsv

    whole = part.end < 0
    if whole:
        compression = "gzip" if part.path.lower().endswith(".gz") else None
        source = pa.input_stream(_open(part.path) if storage.is_remote(part.path) else part.path,
                                 compression=compression)
        source.read(part.start)  # the header line, read in the driver
    else:
        source = pa.BufferReader(_range_bytes(part.path, part.start, part.end))

    def invalid(row) -> str:
        if on_bad_row is None:
            raise ValueError(f"a row has {row.actual_columns} fields, the header has {row.expected_columns}")
        on_bad_row(row.number, row.actual_columns, row.expected_columns)
        return "skip"

    try:
        reader = _open_csv(pacsv, source, part, whole, invalid)
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):  # a header-only file, or a range without a line start
            return
        raise
    yield from reader


def _open_csv(pacsv, source, part: Range, whole: bool, invalid):
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=list(part.columns), block_size=1 << 22, use_threads=False),
        # Quoted newlines are only safe where a file is not cut into byte ranges.
        parse_options=pacsv.ParseOptions(delimiter=csv_delimiter(part.path), newlines_in_values=whole,
                                          invalid_row_handler=invalid),
        # Every cell as text, as the in-memory reader does: types are decided
        # over the whole column, not per block. Empty cells are missing.
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in part.columns},
                                             null_values=[""], strings_can_be_null=True),
    )


def _range_bytes(path: str, start: int, end: int) -> bytes:
    """The bytes of the lines that start in [start, end)."""
    size = storage.size(path)
    with _open(path) as handle:
        begin = _line_start_at_or_after(handle, start, size)
        finish = size if end >= size else _line_start_at_or_after(handle, end, size)
        handle.seek(begin)
        return handle.read(max(0, finish - begin))


def _line_start_at_or_after(handle, position: int, size: int) -> int:
    handle.seek(position - 1)
    while True:
        chunk = handle.read(1 << 16)
        if not chunk:
            return size
        newline = chunk.find(b"\n")
        if newline >= 0:
            return handle.tell() - len(chunk) + newline + 1


def range_begin(part: Range) -> int:
    """The byte offset of the range's first line (CSV), for locating lines in the driver."""
    if part.end < 0:
        return part.start
    with _open(part.path) as handle:
        return _line_start_at_or_after(handle, part.start, storage.size(part.path))


def _parquet_batches(part: Range, _) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(_open(part.path) if storage.is_remote(part.path) else part.path)
    if parquet.num_row_groups == 0:
        return
    yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[part.start], use_threads=False)


def _tfrecord_batches(part: Range, _) -> Iterator[pa.RecordBatch]:
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    records: list[bytes] = []
    for record in tfrecord_records(part.path):
        records.append(record)
        if len(records) == BATCH_ROWS:
            yield decoder.DecodeBatch(records)
            records = []
    if records:
        yield decoder.DecodeBatch(records)


def tfrecord_records(path: str) -> Iterator[bytes]:
    """The records of a (gzipped) TFRecord file, each checked against its CRC.

    Raises:
      ReadError: a truncated or corrupt record, naming it.
    """
    count = 0
    with _open(path) as raw, (gzip.GzipFile(fileobj=raw) if path.lower().endswith(".gz") else raw) as handle:
        while True:
            try:
                record = _next_record(handle)
            except (ValueError, OSError, EOFError) as error:
                raise ReadError(f"cannot read {path}: record {count + 1} is corrupt or truncated ({error}); "
                                f"{count} records before it were read", count) from None
            if record is None:
                return
            yield record
            count += 1


def _next_record(handle) -> bytes | None:
    header = handle.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise ValueError("truncated length")
    (length,) = struct.unpack("<Q", header[:8])
    if struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
        raise ValueError("length CRC mismatch")
    data = handle.read(length)
    footer = handle.read(4)
    if len(data) < length or len(footer) < 4:
        raise ValueError("truncated record")
    if struct.unpack("<I", footer)[0] != masked_crc(data):
        raise ValueError("data CRC mismatch")
    return data


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def _length_header(length: int) -> bytes:
    """A record's length and its masked CRC (records of one dataset have few distinct lengths)."""
    encoded = struct.pack("<Q", length)
    return encoded + struct.pack("<I", masked_crc(encoded))


def frame_records(records: list[bytes]) -> bytes:
    """Records in TFRecord framing, ready to append to a file."""
    parts = []
    for record in records:
        parts += (_length_header(len(record)), record, struct.pack("<I", masked_crc(record)))
    return b"".join(parts)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
