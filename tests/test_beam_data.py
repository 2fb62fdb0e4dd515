"""The Beam data step's parts, run in-process without a pipeline (fast).

References are independent: pandas' readers and `to_numeric`, NumPy's
quantiles and moments, `split.assign_splits`, the frames we wrote, and the
error messages written out here. tests/test_beam_pipeline.py runs the same parts as Beam pipelines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from trainer.data import beam_values
from trainer.data.beam_files import plan_ranges, read_range
from trainer.data.beam_plan import make_plan
from trainer.data.beam_profile import Profile, profile_range
from trainer.data.beam_split import (
    BOUNDARY,
    assign,
    assign_boundary,
    assign_by_rank,
    plan_split,
    reference_assignment,
)
from trainer.data.beam_stats import SKETCH_CAPACITY, Moments, QuantileSketch
from trainer.data.ingest import DataError
from trainer.data.split import assign_splits, class_counts

SPLIT = (0.7, 0.15, 0.15)


def plan_of(pattern: str, label: str = "y", positive_label=None, range_bytes: int = 1 << 24, exact_order_rows=None):
    """The first pass without Beam: every range profiled here, then merged, then planned."""
    ranges = plan_ranges(pattern, range_bytes)
    profile = Profile()
    for part in ranges:
        profile.merge(profile_range(part, label, seed=5))
    extra = {} if exact_order_rows is None else {"exact_order_rows": exact_order_rows}
    return make_plan(ranges, profile, pattern, label, positive_label, SPLIT, 5, **extra), profile


def test_csv_ranges_read_every_row_once_in_order(tmp_path, rng):
    frame = pd.DataFrame({"x": rng.normal(size=3000).round(6), "name": rng.choice(["a,b", "c", ""], 3000),
                          "y": rng.integers(0, 2, 3000)})
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    ranges = plan_ranges(str(path), range_bytes=997)  # many ranges, cut mid-line
    assert len(ranges) > 40
    read = pa.concat_tables([pa.Table.from_batches([b]) for part in ranges for _, b in read_range(part)])
    reference = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    assert read.num_rows == len(reference)
    for name in reference.columns:
        assert read.column(name).to_pylist() == [None if pd.isna(v) else v for v in reference[name]]


@pytest.mark.parametrize("spellings", [
    ["1", "-2.5", "1e3", "inf", "-Infinity", "nan", "abc", " 4 ", "+5", "0x10", "", "1,5", "NaN", ".5"],
])
def test_numbers_in_text_are_read_as_pandas_reads_them(spellings):
    array = pa.array([s or None for s in spellings], pa.string())
    ours = beam_values.parse_numbers(array)
    theirs = pd.to_numeric(pd.Series([s or None for s in spellings], dtype=object), errors="coerce").to_numpy(float)
    np.testing.assert_array_equal(ours, theirs)
    clean = pa.array(["1", "2.5", "-3e2", None], pa.string())  # the fast path (Arrow's parser)
    np.testing.assert_array_equal(beam_values.parse_numbers(clean), [1.0, 2.5, -300.0, np.nan])


def _labels_and_ranges(rng, n=5000, ranges=7):
    labels = (rng.random(n) < 0.08).astype(np.int64)
    cuts = np.sort(rng.choice(np.arange(1, n), ranges - 1, replace=False))
    return labels, np.split(np.arange(n), cuts)


def test_small_data_split_is_assign_splits_record_for_record(rng):
    labels, parts = _labels_and_ranges(rng)
    hist = np.stack([np.bincount(np.zeros(int((labels == c).sum()), np.int64), minlength=4096) for c in (0, 1)])
    range_counts = {i: (int((labels[p] == 0).sum()), int((labels[p] == 1).sum())) for i, p in enumerate(parts)}
    plan = plan_split(hist, SPLIT, seed=11, range_counts=range_counts)
    got = np.concatenate([
        np.concatenate([assign_by_rank(plan, labels[chunk], seen)
                        for chunk in np.array_split(p, 3)])  # a range read in several batches
        for p, seen in ((p, np.array(plan.range_offsets[i])) for i, p in enumerate(parts))
    ])
    np.testing.assert_array_equal(got, assign_splits(labels, SPLIT, seed=11))


def test_large_data_split_by_hash_is_exact_and_matches_sorting_by_hash(rng):
    labels = (rng.random(60_000) < 0.06).astype(np.int64)
    hashes = beam_values.record_hashes(3, 0, labels.size, seed=2)
    bucket = beam_values.buckets(hashes)
    hist = np.stack([np.bincount(bucket[labels == c], minlength=4096) for c in (0, 1)])
    plan = plan_split(hist, SPLIT, seed=2, range_counts={}, exact_order_rows=0)
    assert plan.by_rank is None
    got = assign(plan, labels, bucket)
    boundary = np.flatnonzero(got == BOUNDARY)
    assert 0 < boundary.size < 200  # only the cut buckets are sorted
    for cls, b in {(int(labels[r]), int(bucket[r])) for r in boundary}:
        rows = boundary[(labels[boundary] == cls) & (bucket[boundary] == b)]
        got[rows] = assign_boundary(plan, cls, b, [(int(hashes[r]), 3, int(r)) for r in rows])
    np.testing.assert_array_equal(got, reference_assignment(labels, hashes, SPLIT))
    assert class_counts(labels, got) == class_counts(labels, assign_splits(labels, SPLIT, 0)) == plan.counts
    other_seed = beam_values.record_hashes(3, 0, labels.size, seed=3)
    assert (reference_assignment(labels, other_seed, SPLIT) != got).any()


def test_hash_split_proportions_hold_per_class(rng):
    labels = (rng.random(200_000) < 0.06).astype(np.int64)
    hashes = beam_values.record_hashes(0, 0, labels.size, seed=9)
    assignment = reference_assignment(labels, hashes, SPLIT)
    for cls in (0, 1):
        shares = np.bincount(assignment[labels == cls], minlength=3) / (labels == cls).sum()
        np.testing.assert_allclose(shares, [0.7, 0.15, 0.15], atol=1e-4)  # exact up to rounding


def test_quantile_sketch_is_exact_when_small_and_close_when_large(rng):
    small = rng.normal(size=SKETCH_CAPACITY - 10)
    sketch = QuantileSketch()
    for chunk in np.array_split(small, 5):
        sketch.add(chunk)
    levels = np.linspace(0, 1, 129)
    np.testing.assert_array_equal(sketch.quantiles(), np.quantile(small, levels))
    large = rng.lognormal(size=1_000_000)
    parts = []
    for chunk in np.array_split(large, 37):  # merged like per-range accumulators
        part = QuantileSketch()
        part.add(chunk)
        parts.append(part)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    ranks = np.searchsorted(np.sort(large), merged.quantiles()) / large.size
    assert np.max(np.abs(ranks - levels)) < 0.004
    assert merged.quantiles()[0] == large.min() and merged.quantiles()[-1] == large.max()


def test_moments_merge_as_numpy_computes(rng):
    values = rng.normal(3.0, 2.0, size=10_001)
    moments = Moments()
    for chunk in np.array_split(values, 13):
        part = Moments()
        part.add(chunk)
        moments.merge(part)
    assert moments.count == values.size
    assert np.isclose(moments.mean, values.mean()) and np.isclose(np.sqrt(moments.m2 / moments.count), values.std())


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


ROWS = "".join(f"{i},{'north' if i % 3 else 'south'},{int(i % 4 == 0)}\n" for i in range(40))


@pytest.mark.parametrize("text,message", [
    ("x,r,y\n" + ROWS.replace("\n5,", "\nabc,", 1), "column 'x' mixes numbers ['0', '1'] and text ['abc']"),
    ("x,r,y\n" + ROWS.replace("\n5,", "\ninf,", 1).replace("\n7,", "\n-Infinity,", 1),
     "column 'x' has 2 infinite values; replace them or leave the cells empty (first: {path} line 7, {path} line 9)"),
    ("x,r,y\n" + ROWS.replace(",1\n", ",2\n", 3), "label column 'y' must have exactly two classes, found 3: 0, 1, 2"),
    ("x,r,y\n" + ROWS.replace(",1\n", ",\n", 2),
     "label column 'y' has 2 missing values (first: {path} line 2, {path} line 6)"),
    ("x,r,y\n" + ROWS.replace("\n9,south,0\n", "\n9,0\n"),
     "{path}: malformed CSV (line 11 has 2 fields, the header has 3)"),
    ("x,r,y\n" + ROWS.replace("\n9,south,0\n", "\n9,0\n").replace("\n20,north,1\n", "\n20,north,1,2\n"),
     "{path}: malformed CSV (line 11 has 2 fields, the header has 3; 2 rows with a wrong number of fields "
     "(first: {path} line 11, {path} line 22))"),
    ("x,r,y\n", "the input has no rows"),
    ("x,r,z\n" + ROWS, "label column 'y' not found; columns are: x, r, z"),
    ("x,r,y\n" + ROWS.replace(",1\n", ",0\n"), "exactly two classes, found 1"),
    ("x,r,y\n" + "".join(f"{i},r,{int(i < 3)}\n" for i in range(40)), "class 1 has only 3 examples"),
])
@pytest.mark.parametrize("range_bytes", [1 << 24, 64])
def test_bad_data_messages_say_what_how_many_and_where(tmp_path, text, message, range_bytes):
    path = _write(tmp_path / "d.csv", text)
    with pytest.raises(DataError) as info:
        plan_of(path, range_bytes=range_bytes)
    assert message.format(path=path) in str(info.value)
    assert "\n" not in str(info.value)


def test_lines_count_blank_lines_and_quoted_newlines(tmp_path):
    text = 'x,note,y\n1,"two\nlines",0\n\n2,ok,1\n3,ok,inf_label\n'
    path = _write(tmp_path / "d.csv", text.replace("inf_label", "0").replace("2,ok", "inf,ok"))
    with pytest.raises(DataError, match=r"has 1 infinite values.*\(first: .*d.csv line 5\)"):
        plan_of(path)


def test_plan_decides_kinds_labels_and_names_from_the_written_frame(tmp_path, tiny_frame):
    frame = tiny_frame.rename(columns={"x1": "x 1"})
    frame["flag"] = np.where(frame["target"] == 1, "yes", "no")
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    plan, profile = plan_of(str(path), label="flag", positive_label="yes", range_bytes=5000)
    # The frame's own dtypes say each column's kind; "x 1" is not a usable feature name.
    kinds = [(name.replace(" ", "_"), "numeric" if pd.api.types.is_numeric_dtype(frame[name]) else "categorical")
             for name in frame.columns if name != "flag"]
    assert [(clean, kind) for _, clean, kind in plan.features] == kinds
    assert plan.renamed == {"x 1": "x_1"} and plan.positive_value == "yes"
    assert profile.rows == len(frame)
    labels = (frame["flag"] == "yes").to_numpy(np.int64)
    assert plan.split.counts == class_counts(labels, assign_splits(labels, SPLIT, 5))
