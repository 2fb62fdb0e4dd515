"""The driver's decisions between the two passes, from the merged first-pass profile.

The bad-data cases and their one-line messages are the in-memory reader's
(`trainer.ingest.validate`), checked in the same order, plus the number of
offending records and the first few with their file and line (CSV), record
(TFRecord) or row (Parquet).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io

import numpy as np

from trainer.beam_files import Range, csv_delimiter, range_begin
from trainer.beam_profile import KEEP, MAX_LABEL_VALUES, ColumnProfile, Profile, Samples
from trainer.beam_split import EXACT_ORDER_ROWS, SplitPlan, plan_split
from trainer.ingest import DataError, _sanitized_columns, positive_class, sanitize_name


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the second pass needs; small, shipped to every worker.

    Attributes:
      ranges: The input's ranges.
      label: The raw label column; `label_name` its clean name.
      positive_value: The label text of class 1.
      features: (raw name, clean name, kind) in column order.
      renamed: Raw name -> clean name, where they differ.
      seed: The split's seed.
      split: Where each record goes.
    """

    ranges: tuple[Range, ...]
    label: str
    label_name: str
    positive_value: str
    features: tuple[tuple[str, str, str], ...]
    renamed: dict[str, str]
    seed: int
    split: SplitPlan


def make_plan(ranges: list[Range], profile: Profile, pattern: str, label: str, positive_label: str | None,
              fractions: tuple[float, float, float], seed: int, exact_order_rows: int = EXACT_ORDER_ROWS) -> Plan:
    """Validates the profile and plans the second pass.

    Raises:
      DataError: the first bad-data case met, in `ingest.validate`'s order.
    """
    _check_reading(profile, ranges)
    if profile.rows == 0:
        raise DataError(f"{pattern}: the input has no rows")
    names = _column_order(ranges, profile, label)
    if not profile.label_seen:
        raise DataError(f"label column {label!r} not found; columns are: {', '.join(map(str, names[:20]))}")
    missing = profile.label_missing
    if missing.count:
        raise DataError(f"label column {label!r} has {missing.count} missing values{_where(missing, ranges)}")
    positive = _positive_text(profile, label, positive_label)
    renamed, clean = _sanitized_columns(names)
    features = tuple((name, clean[name], _kind(name, profile.columns[name], ranges)) for name in names)
    if not features:
        raise DataError("the input has no feature columns besides the label")
    negative = next(text for text in profile.label_counts if text != positive)
    histograms = np.stack([profile.histograms[negative], profile.histograms[positive]])
    range_counts = {part: (counts.get(negative, 0), counts.get(positive, 0))
                    for part, counts in profile.range_counts.items()}
    return Plan(tuple(ranges), label, sanitize_name(label), positive, features, renamed, seed,
                plan_split(histograms, fractions, seed, range_counts, exact_order_rows))


def _check_reading(profile: Profile, ranges: list[Range]) -> None:
    problems = profile.problems
    if "read" in problems:
        first = problems["read"].first[0]
        raise DataError(first[2])
    if "ragged" in problems:
        samples = problems["ragged"]
        part, line, detail = samples.first[0]
        rows = f"; {samples.count} rows with a wrong number of fields{_where(samples, ranges, lines=True)}"
        raise DataError(f"{ranges[part].path}: malformed CSV (line {_line(ranges[part], line)} {detail}"
                        f"{rows if samples.count > 1 else ''})")
    if "several values" in problems:
        part, ordinal, (name, count) = problems["several values"].first[0]
        raise DataError(f"feature {name!r} has {count} values in one example; only single values are supported"
                        f" ({locate(ranges, part, ordinal)})")
    if "type" in problems:
        raise DataError(problems["type"].first[0][2])


def _positive_text(profile: Profile, label: str, positive_label: str | None) -> str:
    values = sorted(profile.label_counts)
    found = f"more than {MAX_LABEL_VALUES}" if len(values) > MAX_LABEL_VALUES else None  # the profile keeps a sample
    return positive_class(values, label, positive_label, found)


def _kind(name: str, column: ColumnProfile, ranges: list[Range]) -> str:
    """`numeric` or `categorical`, by `ingest._feature_column`'s rule over all records."""
    texts = column.numeric_text.count + column.other_text.count
    if column.typed and texts or column.numeric_text.count and column.other_text.count:
        numbers = [value for *_, value in column.numeric_text.first[:2]] or ["(stored as numbers)"]
        words = column.other_text.first or column.numeric_text.first
        raise DataError(f"column {name!r} mixes numbers {numbers} and text {[value for *_, value in words[:2]]}; "
                        f"make it one type (text at {locate(ranges, words[0][0], words[0][1])})")
    if column.other_text.count:
        return "categorical"
    if column.infinite.count:
        raise DataError(f"column {name!r} has {column.infinite.count} infinite values; replace them or leave the "
                        f"cells empty{_where(column.infinite, ranges)}")
    return "numeric"


def _column_order(ranges: list[Range], profile: Profile, label: str) -> list[str]:
    """Header (or Parquet schema) order, then columns seen only in records (TFRecord) by name."""
    ordered = dict.fromkeys(name for part in ranges for name in part.columns)
    ordered.update(dict.fromkeys(sorted(profile.columns)))
    return [name for name in ordered if name != label and name in profile.columns]


def _where(samples: Samples, ranges: list[Range], lines: bool = False) -> str:
    shown = [locate(ranges, part, ordinal, line=lines) for part, ordinal, _ in samples.first[:KEEP]]
    more = " ..." if samples.count > len(shown) else ""
    return f" (first: {', '.join(shown)}{more})"


def locate(ranges: list[Range], part: int, ordinal: int, line: bool = False) -> str:
    """Where a record is, for a person: `file line N` (CSV), `file record N`, `file row group G row N`."""
    found = ranges[part]
    if found.kind == "csv":
        return f"{found.path} line {_line(found, ordinal) if line else _record_line(found, ordinal)}"
    if found.kind == "tfrecord":
        return f"{found.path} record {ordinal + 1}"
    return f"{found.path} row group {found.start} row {ordinal + 1}"


def _lines_before(part: Range) -> tuple[int, int]:
    """(byte offset of the range's first line, lines before it)."""
    begin = range_begin(part)
    if part.end < 0:
        return begin, 1  # a whole file: only its header line
    with open(part.path, "rb") as handle:
        count, left = 0, begin
        while left > 0:
            chunk = handle.read(min(left, 1 << 22))
            count, left = count + chunk.count(b"\n"), left - len(chunk)
    return begin, count


def _line(part: Range, line_in_range: int) -> int:
    return _lines_before(part)[1] + line_in_range


def _record_line(part: Range, ordinal: int) -> int:
    """The file line where the range's record `ordinal` starts (blank lines and quoted newlines counted)."""
    begin, before = _lines_before(part)
    opener = gzip.open if part.path.lower().endswith(".gz") else open
    with opener(part.path, "rb") as handle:
        handle.seek(begin) if part.end >= 0 else handle.read(begin)
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text, delimiter=csv_delimiter(part.path))
        previous, index = 0, -1
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if row:  # blank lines are skipped by the reader, as here
                index += 1
                if index == ordinal:
                    return before + start
    return before + ordinal + 1
