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

from trainer import beam_values
from trainer.beam_files import Range, ReadError, read_range

KEEP = 5  # offending records kept per problem, in record order
MAX_LABEL_VALUES = 64  # enough to say "found N classes" for any plausible label column


@dataclasses.dataclass
class Samples:
    """A count and the first `KEEP` (range, ordinal or line, value), in record order."""

    count: int = 0
    first: list = dataclasses.field(default_factory=list)

    def add(self, count: int, items: list) -> None:
        self.count += count
        self.first = sorted(self.first + items, key=lambda item: item[:2])[:KEEP]

    def merge(self, other: Samples) -> None:
        self.add(other.count, other.first)


@dataclasses.dataclass
class ColumnProfile:
    typed: int = 0  # present values stored as numbers
    numeric_text: Samples = dataclasses.field(default_factory=Samples)
    other_text: Samples = dataclasses.field(default_factory=Samples)
    infinite: Samples = dataclasses.field(default_factory=Samples)

    def merge(self, other: ColumnProfile) -> None:
        self.typed += other.typed
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
      histograms: Label text -> int64 [HASH_BUCKETS] records per hash bucket.
      range_counts: Range -> label text -> records.
      problems: Kind (`read`, `ragged`, `several values`, `type`) -> samples.
    """

    rows: int = 0
    label_seen: bool = False
    columns: dict[str, ColumnProfile] = dataclasses.field(default_factory=dict)
    label_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    label_missing: Samples = dataclasses.field(default_factory=Samples)
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
        for text, histogram in other.histograms.items():
            if text in self.histograms:
                self.histograms[text] = self.histograms[text] + histogram
            elif len(self.histograms) < 3:  # more than two classes fails anyway
                self.histograms[text] = histogram
        for part, counts in other.range_counts.items():
            mine = self.range_counts.setdefault(part, {})
            for text, count in counts.items():
                mine[text] = mine.get(text, 0) + count
        for kind, samples in other.problems.items():
            self.problems.setdefault(kind, Samples()).merge(samples)
        return self


def profile_range(part: Range, label: str, seed: int) -> Profile:
    """Reads one range and profiles it; read failures become problems, never exceptions."""
    profile = Profile()
    for name in part.columns:
        profile.columns[name] = ColumnProfile()

    def bad_row(line: int, fields: int, expected: int) -> None:
        profile.problem("ragged", 1, [(part.index, line, f"has {fields} fields, the header has {expected}")])

    try:
        for ordinal, batch in read_range(part, bad_row):
            profile.merge(profile_batch(part.index, ordinal, batch, label, seed))
    except ReadError as error:
        profile.problem("read", 1, [(part.index, error.ordinal, str(error))])
    return profile


def profile_batch(range_index: int, ordinal: int, batch: pa.RecordBatch, label: str, seed: int) -> Profile:
    """The profile of one batch of raw records."""
    profile = Profile(rows=batch.num_rows)
    if label not in batch.schema.names:  # a TFRecord batch where no record has the label
        _profile_label(profile, pa.nulls(batch.num_rows), range_index, ordinal, seed)
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        array, several, count = beam_values.scalar_column(array)
        if several >= 0:
            profile.problem("several values", 1, [(range_index, ordinal + several, (name, count))])
            continue
        if name == label:
            profile.label_seen = True
            _profile_label(profile, array, range_index, ordinal, seed)
            continue
        try:
            cells = beam_values.classify(array)
        except TypeError as error:
            profile.problem("type", 1, [(range_index, ordinal, f"column {name!r} {error}")])
            continue
        profile.columns[name] = _column_profile(cells, range_index, ordinal)
    return profile


def _column_profile(cells: beam_values.Cells, range_index: int, ordinal: int) -> ColumnProfile:
    column = ColumnProfile()
    numeric = cells.present & ~np.isnan(cells.numbers)
    column.infinite = _samples(np.isinf(cells.numbers), cells, range_index, ordinal)
    if cells.typed:
        column.typed = int(numeric.sum())
    else:
        column.numeric_text = _samples(numeric, cells, range_index, ordinal)
        column.other_text = _samples(cells.present & ~numeric, cells, range_index, ordinal)
    return column


def _samples(mask: np.ndarray, cells: beam_values.Cells, range_index: int, ordinal: int) -> Samples:
    rows = np.flatnonzero(mask)
    values = cells.text if cells.text is not None else cells.numbers
    first = [(range_index, ordinal + int(r), values[r] if cells.text is not None else float(values[r]))
             for r in rows[:KEEP]]
    return Samples(int(rows.size), first)


def _profile_label(profile: Profile, array: pa.Array, range_index: int, ordinal: int, seed: int) -> None:
    codes, texts = beam_values.label_codes(array)
    missing = np.flatnonzero(codes < 0)
    profile.label_missing = Samples(int(missing.size), [(range_index, ordinal + int(r), None) for r in missing[:KEEP]])
    counts = np.bincount(codes[codes >= 0], minlength=len(texts))
    profile.label_counts = {text: int(count) for text, count in zip(texts, counts, strict=True)}
    profile.range_counts = {range_index: dict(profile.label_counts)}
    if len(texts) > 2:
        return  # the run stops at "exactly two classes": no split to plan
    bucket = beam_values.buckets(beam_values.record_hashes(range_index, ordinal, len(codes), seed))
    for code, text in enumerate(texts):
        profile.histograms[text] = np.bincount(bucket[codes == code], minlength=beam_values.HASH_BUCKETS)
