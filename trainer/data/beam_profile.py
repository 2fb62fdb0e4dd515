"""The first pass of the Beam data step: a profile of every record, mergeable.

For each range a worker builds a `Profile` (row count, per column how many
cells are typed numbers, numeric text, other text and infinite, per label
text its count and a histogram of record-hash buckets, and every problem met
while reading) and the profiles are merged by a combiner. The driver sees only
the merged profile: its size depends on the number of columns and problems
kept, never on the number of rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from trainer.data import beam_values
from trainer.data.beam_files import Range, ReadError, read_range
from trainer.data.ingest import FEW_NUMBERS, MAX_LABEL_VALUES, SHOWN_BAD_ROWS, is_class_text

KEEP = SHOWN_BAD_ROWS  # offending records kept per problem, in record order (more with --max-bad-rows)

_EMPTY_INTS = np.zeros(0, np.int64)


def _objects(values) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # element by element: tuples stay tuples
        array[index] = value
    return array


@dataclasses.dataclass
class Samples:
    """A count and the first `keep` offending records, in record order.

    Arrays, so that keeping thousands (`--max-bad-rows`) costs a slice per
    batch, not a Python object per record.

    Attributes:
      count: Records with the problem.
      keep: How many are kept.
      ranges, positions: int64: each kept record's range and ordinal in it
        (for a ragged CSV row: its line in the range).
      values: object: the offending value (or a detail) of each.
      labels: object: each record's label text (None: missing, or not kept).
    """

    count: int = 0
    keep: int = KEEP
    ranges: np.ndarray = dataclasses.field(default_factory=lambda: _EMPTY_INTS)
    positions: np.ndarray = dataclasses.field(default_factory=lambda: _EMPTY_INTS)
    values: np.ndarray = dataclasses.field(default_factory=lambda: _objects([]))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: _objects([]))

    @classmethod
    def of(cls, count: int, items: list, keep: int = KEEP) -> Samples:
        """From (range, position, value) tuples."""
        samples = cls(keep=keep)
        samples.add(count, items)
        return samples

    @classmethod
    def rows(cls, rows: np.ndarray, range_index: int, ordinal: int, values: np.ndarray, labels: np.ndarray | None,
             keep: int) -> Samples:
        """The records at `rows` (indices into a batch whose first record is `ordinal`) of one range."""
        first = rows[:keep]
        return cls(int(rows.size), keep, np.full(first.size, range_index, np.int64), ordinal + first.astype(np.int64),
                   values[first].astype(object),
                   labels[first].astype(object) if labels is not None else np.full(first.size, None, dtype=object))

    @property
    def first(self) -> list[tuple]:
        """The kept records as (range, position, value), in record order."""
        return [(int(r), int(p), v) for r, p, v in zip(self.ranges, self.positions, self.values, strict=True)]

    @property
    def complete(self) -> bool:
        """Every record with the problem is kept."""
        return self.count == self.ranges.size

    def add(self, count: int, items: list) -> None:
        self.merge(Samples(count, self.keep, np.array([i[0] for i in items], np.int64),
                           np.array([i[1] for i in items], np.int64), _objects([i[2] for i in items]),
                           _objects([None] * len(items))))

    def merge(self, other: Samples) -> None:
        self.count += other.count
        self.keep = max(self.keep, other.keep)
        if not other.ranges.size:
            return
        ranges = np.concatenate([self.ranges, other.ranges])
        positions = np.concatenate([self.positions, other.positions])
        order = np.lexsort((positions, ranges))[:self.keep]  # stable: by range, then position
        self.ranges, self.positions = ranges[order], positions[order]
        self.values = np.concatenate([self.values, other.values])[order]
        self.labels = np.concatenate([self.labels, other.labels])[order]


@dataclasses.dataclass
class ColumnProfile:
    typed: int = 0  # present values stored as numbers
    numeric_text: Samples = dataclasses.field(default_factory=Samples)
    other_text: Samples = dataclasses.field(default_factory=Samples)
    infinite: Samples = dataclasses.field(default_factory=Samples)
    numbers: frozenset = frozenset()  # distinct numeric texts, at most FEW_NUMBERS + 1 (ingest.column_kind)

    @property
    def few_numbers(self) -> bool:
        """Its numeric text takes at most `FEW_NUMBERS` distinct values."""
        return len(self.numbers) <= FEW_NUMBERS

    def merge(self, other: ColumnProfile) -> None:
        self.typed += other.typed
        self.numbers = _capped(self.numbers | other.numbers)
        for name in ("numeric_text", "other_text", "infinite"):
            getattr(self, name).merge(getattr(other, name))


@dataclasses.dataclass
class Profile:
    """What the driver needs to validate the data and plan the split.

    Attributes:
      rows: Records read.
      label_seen: Some record has the label column.
      columns: Raw column name -> its cells' kinds, in first-seen order.
      label_counts: Label text -> records.
      label_missing: Records without a label.
      label_unreadable: Records whose label text is neither a number nor
        true/false (bad rows when the label is 0/1 or boolean).
      histograms: Label text -> int64 [HASH_BUCKETS] records per hash bucket.
      range_counts: Range -> label text -> records.
      problems: Kind (`read`, `ragged`, `several values`, `type`) -> samples.
    """

    rows: int = 0
    label_seen: bool = False
    columns: dict[str, ColumnProfile] = dataclasses.field(default_factory=dict)
    label_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    label_missing: Samples = dataclasses.field(default_factory=Samples)
    label_unreadable: Samples = dataclasses.field(default_factory=Samples)
    histograms: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    range_counts: dict[int, dict[str, int]] = dataclasses.field(default_factory=dict)
    problems: dict[str, Samples] = dataclasses.field(default_factory=dict)

    def problem(self, kind: str, count: int, items: list) -> None:
        self.problems.setdefault(kind, Samples()).add(count, items)

    def merge(self, other: Profile) -> Profile:
        self.rows += other.rows
        self.label_seen = self.label_seen or other.label_seen
        for name, column in other.columns.items():
            self.columns.setdefault(name, ColumnProfile()).merge(column)
        for text, count in other.label_counts.items():
            if text in self.label_counts or len(self.label_counts) <= MAX_LABEL_VALUES:
                self.label_counts[text] = self.label_counts.get(text, 0) + count
        self.label_missing.merge(other.label_missing)
        self.label_unreadable.merge(other.label_unreadable)
        for text, histogram in other.histograms.items():
            if text in self.histograms:
                self.histograms[text] = self.histograms[text] + histogram
            elif len(self.histograms) <= MAX_LABEL_VALUES:  # more values than that fail anyway
                self.histograms[text] = histogram
        for part, counts in other.range_counts.items():
            mine = self.range_counts.setdefault(part, {})
            for text, count in counts.items():
                mine[text] = mine.get(text, 0) + count
        for kind, samples in other.problems.items():
            self.problems.setdefault(kind, Samples()).merge(samples)
        return self


def profile_range(part: Range, label: str, seed: int, keep: int = KEEP) -> Profile:
    """Reads one range and profiles it; read failures become problems, never exceptions.

    Args:
      part: The range.
      label: The label column.
      seed: The split's seed (record hashes).
      keep: Records kept per per-row problem (missing or unreadable labels,
        text and infinite cells): `--max-bad-rows` + 1, at least `KEEP`.
    """
    profile = Profile()
    for name in part.columns:
        profile.columns[name] = ColumnProfile()

    def bad_row(line: int, fields: int, expected: int) -> None:
        profile.problem("ragged", 1, [(part.index, line, (fields, expected))])

    try:
        for ordinal, batch in read_range(part, bad_row):
            profile.merge(profile_batch(part.index, ordinal, batch, label, seed, keep))
    except ReadError as error:
        profile.problem("read", 1, [(part.index, error.ordinal, str(error))])
    return profile


def profile_batch(range_index: int, ordinal: int, batch: pa.RecordBatch, label: str, seed: int,
                  keep: int = KEEP) -> Profile:
    """The profile of one batch of raw records."""
    profile = Profile(rows=batch.num_rows)
    profile.label_missing.keep = profile.label_unreadable.keep = keep
    labels = np.full(batch.num_rows, None, dtype=object)  # each record's label text
    if label not in batch.schema.names:  # a TFRecord batch where no record has the label
        labels = _profile_label(profile, pa.nulls(batch.num_rows), range_index, ordinal, seed, keep)
    else:
        array, several, count = beam_values.scalar_column(batch.column(label))
        if several >= 0:
            profile.problem("several values", 1, [(range_index, ordinal + several, (label, count))])
        else:
            profile.label_seen = True
            labels = _profile_label(profile, array, range_index, ordinal, seed, keep)
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if name == label:
            continue
        array, several, count = beam_values.scalar_column(array)
        if several >= 0:
            profile.problem("several values", 1, [(range_index, ordinal + several, (name, count))])
            continue
        try:
            cells = beam_values.classify(array)
        except TypeError as error:
            profile.problem("type", 1, [(range_index, ordinal, f"column {name!r} {error}")])
            continue
        profile.columns[name] = _column_profile(cells, range_index, ordinal, labels, keep)
    return profile


def _column_profile(cells: beam_values.Cells, range_index: int, ordinal: int, labels: np.ndarray,
                    keep: int) -> ColumnProfile:
    column = ColumnProfile()
    numeric = cells.present & ~np.isnan(cells.numbers)
    values = cells.text if cells.text is not None else cells.numbers

    def samples(mask: np.ndarray, limit: int = keep) -> Samples:
        return Samples.rows(np.flatnonzero(mask), range_index, ordinal, values, labels, limit)

    column.infinite = samples(np.isinf(cells.numbers))
    if cells.typed:
        column.typed = int(numeric.sum())
    else:
        column.numeric_text = samples(numeric, KEEP)  # only ever named in a message
        column.numbers = _capped(frozenset(np.unique(values[numeric].astype(str))[:FEW_NUMBERS + 1]))
        column.other_text = samples(cells.present & ~numeric)
    return column


def _capped(numbers: frozenset) -> frozenset:
    """At most FEW_NUMBERS + 1 values: enough to tell "few" from "many", whatever the rows."""
    return numbers if len(numbers) <= FEW_NUMBERS + 1 else frozenset(sorted(numbers)[:FEW_NUMBERS + 1])


def _profile_label(profile: Profile, array: pa.Array, range_index: int, ordinal: int, seed: int,
                   keep: int) -> np.ndarray:
    """Profiles the label column; returns each record's label text (None: missing)."""
    codes, texts = beam_values.label_codes(array)
    row_texts = _objects(texts + [None])[codes]
    missing = np.flatnonzero(codes < 0)
    profile.label_missing = Samples.rows(missing, range_index, ordinal, row_texts, None, keep)
    unreadable = [code for code, text in enumerate(texts) if not is_class_text(text)]
    if unreadable:
        rows = np.flatnonzero(np.isin(codes, unreadable))
        profile.label_unreadable = Samples.rows(rows, range_index, ordinal, row_texts, row_texts, keep)
    counts = np.bincount(codes[codes >= 0], minlength=len(texts))
    profile.label_counts = {text: int(count) for text, count in zip(texts, counts, strict=True)}
    profile.range_counts = {range_index: dict(profile.label_counts)}
    if len(texts) > MAX_LABEL_VALUES:
        return row_texts  # the run stops at "exactly two classes": no split to plan
    bucket = beam_values.buckets(beam_values.record_hashes(range_index, ordinal, len(codes), seed))
    for code, text in enumerate(texts):
        profile.histograms[text] = np.bincount(bucket[codes == code], minlength=beam_values.HASH_BUCKETS)
    return row_texts
