"""The driver's decisions between the two passes, from the merged first-pass profile.

The bad-data cases and their one-line messages are `trainer.data.ingest`'s
(as `ingest.validate` checks an in-memory frame), in the same order, plus the number of
offending records and the first few with their file and line (CSV), record
(TFRecord) or row (Parquet). With `--max-bad-rows` N > 0 the per-row cases
(a ragged CSV row, a missing or unreadable label, text in a numeric column,
an infinite value) are collected instead: up to N such rows are left out of
the split (their ids go to the second pass in the plan, and the split's
counts are planned without them), more stop the run with their count.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io

import numpy as np

from trainer.data import beam_values
from trainer.data.beam_files import Range, csv_delimiter, range_begin
from trainer.data.beam_profile import KEEP, ColumnProfile, Profile, Samples
from trainer.data.beam_split import EXACT_ORDER_ROWS, SplitPlan, plan_split
from trainer.data.ingest import (
    MAX_LABEL_VALUES,
    SHOWN_BAD_ROWS,
    BadRows,
    DataError,
    _sanitized_columns,
    column_kind,
    infinite_reason,
    missing_label_reason,
    not_a_number_reason,
    positive_class,
    ragged_reason,
    readable_labels,
    sanitize_name,
    too_many_bad_rows,
    unreadable_label_reason,
)


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
      skip: Range -> sorted int64 ordinals of its records left out as bad
        rows (`--max-bad-rows`).
      bad_rows: What was left out, for `source.json` and `run.json`.
    """

    ranges: tuple[Range, ...]
    label: str
    label_name: str
    positive_value: str
    features: tuple[tuple[str, str, str], ...]
    renamed: dict[str, str]
    seed: int
    split: SplitPlan
    skip: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    bad_rows: BadRows = BadRows(0, 0, ())


def profile_keep(max_bad_rows: int) -> int:
    """Records the profile keeps per per-row problem: all of them, up to one more than may be skipped."""
    return max(KEEP, max_bad_rows + 1) if max_bad_rows else KEEP


def make_plan(ranges: list[Range], profile: Profile, pattern: str, label: str, positive_label: str | None,
              fractions: tuple[float, float, float], seed: int, exact_order_rows: int = EXACT_ORDER_ROWS,
              max_bad_rows: int = 0) -> Plan:
    """Validates the profile and plans the second pass.

    Args:
      max_bad_rows: Leave at most this many bad rows out; the profile must
        have been made with `profile_keep(max_bad_rows)`.

    Raises:
      DataError: the first bad-data case met, in `ingest.validate`'s order;
        or more bad rows than `max_bad_rows`.
    """
    bad = _BadRowCollector(ranges, max_bad_rows) if max_bad_rows else None
    _check_reading(profile, ranges, bad)
    if profile.rows == 0:
        raise DataError(f"{pattern}: the input has no rows")
    names = _column_order(ranges, profile, label)
    if not profile.label_seen:
        raise DataError(f"label column {label!r} not found; columns are: {', '.join(map(str, names[:20]))}")
    missing = profile.label_missing
    if missing.count and bad is None:
        raise DataError(f"label column {label!r} has {missing.count} missing values{_where(missing, ranges)}")
    if missing.count:
        bad.add(missing, lambda value: missing_label_reason(label))
    positive, classes = _positive_text(profile, label, positive_label, bad is not None)
    if bad is not None and len(classes) < len(profile.label_counts):  # the others are unreadable labels
        bad.add(profile.label_unreadable, lambda text: unreadable_label_reason(label, text))
    renamed, clean = _sanitized_columns(names)
    features = tuple((name, clean[name], _kind(name, profile.columns[name], ranges, bad)) for name in names)
    if not features:
        raise DataError("the input has no feature columns besides the label")
    negative = next(text for text in classes if text != positive)
    histograms = np.stack([profile.histograms[negative], profile.histograms[positive]])
    range_counts = {part: (counts.get(negative, 0), counts.get(positive, 0))
                    for part, counts in profile.range_counts.items()}
    skip, bad_rows = {}, BadRows(0, max_bad_rows, ())
    if bad is not None:
        skip, bad_rows = bad.finish()
        histograms, range_counts = bad.without_bad_rows(histograms, range_counts, (negative, positive), seed)
    return Plan(tuple(ranges), label, sanitize_name(label), positive, features, renamed, seed,
                plan_split(histograms, fractions, seed, range_counts, exact_order_rows), skip, bad_rows)


class _BadRowCollector:
    """The bad rows of a profile under `--max-bad-rows`: each record once, with its first reason."""

    def __init__(self, ranges: list[Range], limit: int):
        self._ranges, self._limit = ranges, limit
        self.rows: dict[tuple[int, int], tuple[str, str | None]] = {}  # (range, ordinal) -> (reason, label text)
        self.ragged = Samples()
        self.complete = True  # every bad record is known (else there are more than the limit)
        self.largest = 0  # the largest single problem's count: a lower bound of the bad rows

    def add(self, samples: Samples, reason) -> None:
        self.complete = self.complete and samples.complete
        self.largest = max(self.largest, samples.count)
        for part, ordinal, value, label in zip(samples.ranges, samples.positions, samples.values, samples.labels,
                                               strict=True):
            self.rows.setdefault((int(part), int(ordinal)), (reason(value), label))

    def finish(self) -> tuple[dict[int, np.ndarray], BadRows]:
        """(range -> sorted ordinals to skip, the record of them).

        Raises:
          DataError: more bad rows than the limit.
        """
        count = len(self.rows) + self.ragged.count
        first = self._first()
        if not self.complete or count > self._limit:
            raise too_many_bad_rows(max(count, self.largest), self._limit, first, at_least=not self.complete)
        skip: dict[int, list[int]] = {}
        for part, ordinal in sorted(self.rows):
            skip.setdefault(part, []).append(ordinal)
        return {part: np.array(ordinals, np.int64) for part, ordinals in skip.items()}, \
            BadRows(count, self._limit, tuple(first))

    def _first(self) -> list[str]:
        """The first few bad rows in file order, `location: reason` (as `ingest` words them)."""
        items = []
        for part, ordinal in sorted(self.rows)[:SHOWN_BAD_ROWS]:
            line = _record_line(self._ranges[part], ordinal) if self._ranges[part].kind == "csv" else ordinal
            items.append(((part, line), locate(self._ranges, part, line, line=None), self.rows[part, ordinal][0]))
        for part, line, (fields, expected) in self.ragged.first[:SHOWN_BAD_ROWS]:
            line = _line(self._ranges[part], line)
            items.append(((part, line), f"{self._ranges[part].path} line {line}", ragged_reason(fields, expected)))
        return [f"{where}: {reason}" for _, where, reason in sorted(items, key=lambda item: item[0])[:SHOWN_BAD_ROWS]]

    def without_bad_rows(self, histograms: np.ndarray, range_counts: dict, classes: tuple[str, str], seed: int):
        """The class histograms and per-range class counts without the bad rows (those with a class)."""
        histograms = histograms.copy()
        counts = {part: list(value) for part, value in range_counts.items()}
        for (part, ordinal), (_, label) in self.rows.items():
            if label in classes:
                cls = classes.index(label)
                bucket = int(beam_values.buckets(beam_values.record_hashes(part, ordinal, 1, seed))[0])
                histograms[cls, bucket] -= 1
                counts[part][cls] -= 1
        return histograms, {part: tuple(value) for part, value in counts.items()}


def _check_reading(profile: Profile, ranges: list[Range], bad: _BadRowCollector | None = None) -> None:
    problems = profile.problems
    if "read" in problems:
        first = problems["read"].first[0]
        raise DataError(first[2])
    if "ragged" in problems and bad is not None:
        bad.ragged = problems["ragged"]  # the readers left them out; they count
    elif "ragged" in problems:
        samples = problems["ragged"]
        part, line, detail = samples.first[0]
        rows = f"; {samples.count} rows with a wrong number of fields{_where(samples, ranges, lines=True)}"
        raise DataError(f"{ranges[part].path}: malformed CSV (line {_line(ranges[part], line)} "
                        f"{ragged_reason(*detail)}{rows if samples.count > 1 else ''})")
    if "several values" in problems:
        part, ordinal, (name, count) = problems["several values"].first[0]
        raise DataError(f"feature {name!r} has {count} values in one example; only single values are supported"
                        f" ({locate(ranges, part, ordinal)})")
    if "type" in problems:
        raise DataError(problems["type"].first[0][2])


def _positive_text(profile: Profile, label: str, positive_label: str | None, skipping: bool) -> tuple[str, list[str]]:
    """(the positive class's text, the label's classes); with `skipping`, other texts are unreadable labels."""
    values = sorted(profile.label_counts)
    found = f"more than {MAX_LABEL_VALUES}" if len(values) > MAX_LABEL_VALUES else None  # the profile keeps a sample
    classes = readable_labels(values, positive_label) if skipping and not found else values
    return positive_class(classes, label, positive_label, found), classes


def _kind(name: str, column: ColumnProfile, ranges: list[Range], bad: _BadRowCollector | None = None) -> str:
    """`numeric` or `categorical`, by `ingest.column_kind` over all records; collects bad cells when skipping."""
    kind = column_kind(column.typed, column.numeric_text.count, column.other_text.count, bad is not None,
                       few_numbers=column.few_numbers)
    if kind == "mixed":
        numbers = [item[2] for item in column.numeric_text.first[:2]] or ["(stored as numbers)"]
        words = column.other_text.first or column.numeric_text.first
        raise DataError(f"column {name!r} mixes numbers {numbers} and text {[item[2] for item in words[:2]]}; "
                        f"make it one type (text at {locate(ranges, words[0][0], words[0][1])})")
    if kind == "categorical":
        return kind
    if bad is not None:  # text in a numeric column, infinite values: bad rows
        bad.add(column.other_text, lambda value: not_a_number_reason(name, value))
        bad.add(column.infinite, lambda value: infinite_reason(name, value))
    elif column.infinite.count:
        raise DataError(f"column {name!r} has {column.infinite.count} infinite values; replace them or leave the "
                        f"cells empty{_where(column.infinite, ranges)}")
    return kind


def _column_order(ranges: list[Range], profile: Profile, label: str) -> list[str]:
    """Header (or Parquet schema) order, then columns seen only in records (TFRecord) by name."""
    ordered = dict.fromkeys(name for part in ranges for name in part.columns)
    ordered.update(dict.fromkeys(sorted(profile.columns)))
    return [name for name in ordered if name != label and name in profile.columns]


def _where(samples: Samples, ranges: list[Range], lines: bool = False) -> str:
    shown = [locate(ranges, part, ordinal, line=lines) for part, ordinal, _ in samples.first[:KEEP]]
    more = " ..." if samples.count > len(shown) else ""
    return f" (first: {', '.join(shown)}{more})"


def locate(ranges: list[Range], part: int, ordinal: int, line: bool | None = False) -> str:
    """Where a record is, for a person: `file line N` (CSV), `file record N`, `file row group G row N`.

    For CSV, `ordinal` is the record's ordinal in its range, or with `line`
    its line in the range, or with `line=None` already its line in the file.
    """
    found = ranges[part]
    if found.kind == "csv" and line is None:
        return f"{found.path} line {ordinal}"
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
            if len(row) == len(part.columns):  # blank lines and ragged rows (skipped) are not records
                index += 1
                if index == ordinal:
                    return before + start
    return before + ordinal + 1
