"""`--max-bad-rows`: bad rows skipped and counted, or refused, by the Beam data step.

The fast tests run the Beam step's parts in-process (profile every range,
merge, plan: `plan_of`); the `slow` ones run the whole `prepare_data`.
References are independent: the rows we corrupted ourselves (by id, with
the messages written out here), `split.assign_splits` and NumPy class counts
of the good rows, pandas and NumPy statistics of the good training rows.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_numeric_statistics
from trainer.config import ConfigError, RunConfig
from trainer.data import ingest
from trainer.data.beam_files import plan_ranges
from trainer.data.beam_plan import make_plan, profile_keep
from trainer.data.beam_profile import Profile, profile_range
from trainer.data.ingest import DataError
from trainer.data.split import SPLITS, assign_splits
from trainer.data.synthetic import make_synthetic

SPLIT = (0.7, 0.15, 0.15)
SEED = 42  # RunConfig's default: the plan and prepare_data use the same one


def class_counts(labels: np.ndarray, assignment: np.ndarray) -> dict[str, list[int]]:
    """{split: [N_0, N_1]}, counted with NumPy."""
    return {name: [int(np.sum((assignment == i) & (labels == c))) for c in (0, 1)] for i, name in enumerate(SPLITS)}


def plan_of(pattern: str, max_bad_rows: int, label: str = "target", positive_label=None,
            range_bytes: int = 1 << 24):
    """The Beam step's first pass and plan without Beam: every range profiled, merged, planned."""
    ranges = plan_ranges(pattern, range_bytes)
    profile = Profile()
    for part in ranges:
        profile.merge(profile_range(part, label, SEED, profile_keep(max_bad_rows)))
    return make_plan(ranges, profile, pattern, label, positive_label, SPLIT, SEED, max_bad_rows=max_bad_rows)


def good_frame(negatives: int = 1800, positives: int = 200, seed: int = 3) -> pd.DataFrame:
    """Synthetic rows with a unique `id` (a numeric feature, so written examples can be traced)."""
    frame = make_synthetic(negatives=negatives, positives=positives, seed=seed)
    frame.insert(0, "id", np.arange(len(frame), dtype=np.float64))
    return frame


def write_csv(frame: pd.DataFrame, path, cells: dict[tuple[int, str], str] = (), extra_lines=()) -> str:
    """`frame` as CSV with some cells' text replaced ({(row, column): text}); `extra_lines` are appended raw."""
    text = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)
    for (row, column), value in dict(cells).items():
        text.loc[row, column] = value
    body = text.to_csv(index=False) + "".join(line + "\n" for line in extra_lines)
    path.write_text(body)
    return str(path)


# Three bad rows among 2,000 (data row r is on file line r + 2): text in a numeric column,
# a missing label, an infinite value.
BAD_CELLS = {(100, "x0"): "abc", (500, "target"): "", (900, "x2"): "inf"}
BAD_IDS = (100, 500, 900)
FIRST = ["{path} line 102: column 'x0' is not a number: 'abc'", "{path} line 502: label 'target' is missing",
         "{path} line 902: column 'x2' is infinite: inf"]


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory):
    frame = good_frame()
    return frame, write_csv(frame, tmp_path_factory.mktemp("bad") / "d.csv", BAD_CELLS)


def test_the_beam_plan_skips_the_bad_rows_and_names_them(bad_csv):
    frame, path = bad_csv
    plan = plan_of(path, max_bad_rows=3)
    first = tuple(line.format(path=path) for line in FIRST)
    assert plan.bad_rows == ingest.BadRows(3, 3, first)
    assert {part: ordinals.tolist() for part, ordinals in plan.skip.items()} == {0: list(BAD_IDS)}
    good = np.setdiff1d(np.arange(len(frame)), BAD_IDS)
    labels = frame["target"].to_numpy()[good]
    assert plan.split.counts == class_counts(labels, assign_splits(labels, SPLIT, SEED))
    assert sum(map(sum, plan.split.counts.values())) == len(frame) - 3


@pytest.mark.parametrize("limit", [1, 2])
def test_more_bad_rows_than_allowed_stop_with_the_count_and_the_first_ones(bad_csv, limit):
    _, path = bad_csv
    with pytest.raises(DataError) as beam:
        plan_of(path, max_bad_rows=limit)
    expected = f"3 bad rows, more than --max-bad-rows {limit} allows: " + "; ".join(FIRST).format(path=path)
    assert str(beam.value) == expected


def test_without_max_bad_rows_the_first_bad_value_stops_the_run_as_before(bad_csv):
    _, path = bad_csv
    with pytest.raises(DataError, match=rf"label column 'target' has 1 missing values \(first: {path} line 502\)"):
        plan_of(path, max_bad_rows=0)


def test_a_bad_row_counts_once_and_only_its_first_reason_is_named(tmp_path):
    frame = good_frame(300, 60)
    cells = {(7, "target"): "", (7, "x0"): "abc", (8, "x1"): "abc", (8, "x3"): "-Infinity", (9, "x5"): "?"}
    path = write_csv(frame, tmp_path / "d.csv", cells)
    plan = plan_of(path, max_bad_rows=3)
    assert plan.bad_rows.skipped == 3 and plan.skip[0].tolist() == [7, 8, 9]
    assert plan.bad_rows.first == (f"{path} line 9: label 'target' is missing",
                                   f"{path} line 10: column 'x1' is not a number: 'abc'",
                                   f"{path} line 11: column 'x5' is not a number: '?'")


def _set_field(lines: list[str], row: int, column: int, value: str) -> None:
    fields = lines[1 + row].split(",")
    fields[column] = value
    lines[1 + row] = ",".join(fields)


def test_ragged_rows_and_unreadable_labels_are_bad_rows_in_many_ranges(tmp_path):
    """Rows with a wrong number of fields, a label that is no number ('N/A') among 0/1 labels; the file cut
    into ~1,000-byte ranges: the plan's ids, lines and counts are those of the rows we broke."""
    frame = good_frame(400, 80, seed=5)
    lines = frame.to_csv(index=False).splitlines()
    lines[1 + 30] += ",surplus"  # data row 30: one field too many
    lines[1 + 200] = ",".join(lines[1 + 200].split(",")[:5])  # data row 200: too few fields
    _set_field(lines, 350, -1, "N/A")
    _set_field(lines, 420, 2, "twelve")  # x1
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    path = str(path)
    plan = plan_of(path, max_bad_rows=4, range_bytes=1000)
    assert len(plan.ranges) > 50
    assert plan.bad_rows.first == (f"{path} line 32: has 18 fields, the header has 17",
                                   f"{path} line 202: has 5 fields, the header has 17",
                                   f"{path} line 352: label 'target' is 'N/A', not 0/1 or true/false",
                                   f"{path} line 422: column 'x1' is not a number: 'twelve'")
    assert plan.bad_rows.skipped == 4
    assert sum(ordinals.size for ordinals in plan.skip.values()) == 2  # ragged rows have no id: never read
    good = np.setdiff1d(np.arange(len(frame)), [30, 200, 350, 420])
    labels = frame["target"].to_numpy()[good]
    assert plan.split.counts == class_counts(labels, assign_splits(labels, SPLIT, SEED))
    with pytest.raises(DataError, match="^4 bad rows, more than --max-bad-rows 3 allows"):
        plan_of(path, max_bad_rows=3, range_bytes=1000)


def test_a_third_class_a_mixed_column_and_a_wrong_positive_label_stay_fatal(tmp_path):
    frame = good_frame(200, 40)
    cases = [
        ({(3, "target"): "2"}, None, "label column 'target' must have exactly two classes, found 3: 0, 1, 2"),
        ({(row, "x0"): f"w{row}" for row in range(0, 240, 2)}, None, "column 'x0' mixes numbers"),
    ]
    for cells, positive, message in cases:
        path = write_csv(frame, tmp_path / "d.csv", cells)
        with pytest.raises(DataError, match=message):
            plan_of(path, max_bad_rows=500, positive_label=positive)
    named = frame.assign(target=np.where(frame["target"] == 1, "yes", "no"))
    path = write_csv(named, tmp_path / "named.csv", {(5, "target"): "maybe"})
    with pytest.raises(DataError, match="exactly two classes, found 3: maybe, no, yes"):
        plan_of(path, 10, positive_label="yes")


def test_beam_says_at_least_when_one_problem_alone_exceeds_what_the_profile_keeps(tmp_path):
    frame = good_frame(200, 40)
    # The profile keeps max(5, N + 1) records a problem: 7 of one kind are more than it knows of.
    path = write_csv(frame, tmp_path / "d.csv", {(row, "x4"): "n/a" for row in range(3, 10)})
    with pytest.raises(DataError, match=r"^at least 7 bad rows, more than --max-bad-rows 2 allows: .*d.csv line 5: "):
        plan_of(path, max_bad_rows=2)


def test_max_bad_rows_and_the_data_settings_are_validated():
    with pytest.raises(ConfigError, match="max_bad_rows must be at least 0"):
        RunConfig(max_bad_rows=-1)
    with pytest.raises(ConfigError, match="vocabulary_size must be at least 1"):
        RunConfig(vocabulary_size=0)
    with pytest.raises(ConfigError, match="vocabulary_min_count must be at least 1"):
        RunConfig(vocabulary_min_count=0)
    config = RunConfig(max_bad_rows=3, vocabulary_size=10, vocabulary_min_count=2)
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


# ---- the whole data step (Beam pipelines: slow) ----


def _split_frame(data):
    from tests.test_beam_pipeline import split_frame

    return split_frame(data.directory, data.schema)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


@pytest.mark.slow
def test_prepare_data_refuses_or_skips_bad_rows(tmp_path, bad_csv, capsys):
    from trainer.data.prepare import prepare_data

    frame, path = bad_csv
    refused = tmp_path / "refused"
    with pytest.raises(DataError, match=rf"has 1 missing values \(first: {path} line 502\)"):
        prepare_data(RunConfig(data=path, label="target", output_dir=str(refused)))
    with pytest.raises(DataError, match="^3 bad rows, more than --max-bad-rows 2 allows"):
        prepare_data(RunConfig(data=path, label="target", output_dir=str(refused), max_bad_rows=2))
    assert not refused.exists()  # nothing written, not even the run directory
    capsys.readouterr()
    beam = prepare_data(RunConfig(data=path, label="target", output_dir=str(tmp_path / "beam"), max_bad_rows=3))
    notice = [line for line in capsys.readouterr().err.splitlines() if "bad rows" in line]
    assert notice == ["warning: skipped 3 bad rows (--max-bad-rows 3): " + "; ".join(FIRST).format(path=path)]
    written = _sorted(_split_frame(beam))
    good = np.setdiff1d(np.arange(len(frame)), BAD_IDS)
    np.testing.assert_array_equal(written["id"].to_numpy(), good)  # 1,997 rows, none of the bad ones
    labels = frame["target"].to_numpy()[good]
    assignment = assign_splits(labels, SPLIT, SEED)  # record for record: the good rows' exact split
    np.testing.assert_array_equal(written["split"].to_numpy(), assignment)
    assert beam.counts == class_counts(labels, assignment)
    source = json.load(open(os.path.join(beam.directory, "source.json")))
    assert source["bad_rows"] == {"skipped": 3, "limit": 3, "first": [line.format(path=path) for line in FIRST]}
    train = frame.set_index("id").loc[written.loc[written["split"] == 0, "id"]]
    assert_numeric_statistics(beam.schema, train, ("x0", "x2", "x4"))  # statistics of the good training rows only
    counts = train["merchant"].value_counts()
    assert {f.name: f for f in beam.schema.features}["merchant"].vocabulary == \
        tuple(sorted(counts.index, key=lambda v: (-counts[v], v)))


@pytest.mark.slow
def test_parquet_bad_rows_in_file_order_and_by_record_hash(tmp_path):
    """Infinite typed values and missing labels in Parquet row groups; also the hash-ordered split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.test_beam_pipeline import split_frame
    from trainer.data import beam_values
    from trainer.data.beam_ingest import Settings, run_data_step
    from trainer.data.beam_split import reference_assignment
    from trainer.data.prepare import prepare_data

    frame = good_frame(1500, 150, seed=11)
    frame["target"] = frame["target"].astype("float64")
    frame.loc[[10, 777], "x3"] = [np.inf, -np.inf]
    frame.loc[[400, 1200], "target"] = np.nan
    root = tmp_path / "parquet"
    root.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), 2)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[rows], preserve_index=False), root / f"p-{index}.parquet",
                       row_group_size=300)
    pattern = str(root / "p-*.parquet")
    bad = [10, 400, 777, 1200]
    good = np.setdiff1d(np.arange(len(frame)), bad)
    prepared = prepare_data(RunConfig(data=pattern, label="target", output_dir=str(tmp_path / "beam"), max_bad_rows=4))
    written = _sorted(_split_frame(prepared))
    np.testing.assert_array_equal(written["id"].to_numpy(), good)
    good_labels = frame["target"].to_numpy()[good].astype(np.int64)
    np.testing.assert_array_equal(written["split"].to_numpy(), assign_splits(good_labels, SPLIT, SEED))
    np.testing.assert_array_equal(written["x0"].to_numpy(), frame["x0"].to_numpy()[good].astype(np.float32))
    first = prepared.source["bad_rows"]["first"]
    assert len(first) == 4 and first[0] == f"{root}/p-0.parquet row group 0 row 11: column 'x3' is infinite: inf"
    assert first[2] == f"{root}/p-0.parquet row group 2 row 178: column 'x3' is infinite: -inf"
    # Above EXACT_ORDER_ROWS records go by hash: the good records' own ids decide, the bad ones are out.
    out = str(tmp_path / "hash")
    plan, schema, counts = run_data_step(Settings(pattern, "target", None, SPLIT, 3, exact_order_rows=0,
                                                  max_bad_rows=4), out)
    by_hash = split_frame(out, schema).sort_values("id")
    np.testing.assert_array_equal(by_hash["id"].to_numpy(), good)
    hashes = []
    for part in plan.ranges:
        rows = pq.ParquetFile(part.path).metadata.row_group(part.start).num_rows
        hashes.append(beam_values.record_hashes(part.index, 0, rows, 3))
    hashes = np.concatenate(hashes)[good]
    labels = frame["target"].to_numpy()[good].astype(np.int64)
    np.testing.assert_array_equal(by_hash["split"].to_numpy(), reference_assignment(labels, hashes, SPLIT))
    assert counts == class_counts(labels, assign_splits(labels, SPLIT, 0))  # the same sizes as any exact split


def test_numbers_stored_as_numbers_next_to_text_stay_a_mix():
    """A TFRecord feature that is a float in most records and bytes in one is a column's problem, not a row's
    (the Beam step's decoder refuses such a batch)."""
    assert ingest.column_kind(typed=50, numeric_text=0, other_text=1, tolerate=True) == "mixed"
    assert ingest.column_kind(typed=0, numeric_text=50, other_text=1, tolerate=True) == "numeric"
    assert ingest.column_kind(typed=0, numeric_text=50, other_text=1, tolerate=False) == "mixed"
    assert ingest.column_kind(typed=0, numeric_text=5, other_text=5, tolerate=True) == "mixed"  # no majority
    assert ingest.column_kind(typed=0, numeric_text=5, other_text=5, tolerate=False, few_numbers=True) == "categorical"
    assert ingest.column_kind(typed=50, numeric_text=0, other_text=1, tolerate=False, few_numbers=True) == "mixed"


@pytest.mark.slow
def test_levels_that_look_like_numbers_beside_words_are_categorical(tmp_path):
    """A count capped in words ("2", "3", "4", "5more", as in UCI's car data) is a column of levels: categorical,
    every value kept as its text; a column of many distinct numbers with a word stays refused."""
    from trainer.data.prepare import prepare_data

    rng = np.random.default_rng(0)
    n = 400
    doors = rng.choice(["2", "3", "4", "5more"], n)
    frame = pd.DataFrame({"id": np.arange(n, dtype=np.float64), "doors": doors,
                          "target": (rng.random(n) < 0.2).astype(int)})
    path = write_csv(frame, tmp_path / "d.csv")
    data = prepare_data(RunConfig(data=path, label="target", output_dir=str(tmp_path / "beam")))
    assert {f.name: f.kind for f in data.schema.features}["doors"] == "categorical"
    written = _sorted(_split_frame(data))
    assert written["doors"].tolist() == doors[written["id"].to_numpy().astype(int)].tolist()
    measured = frame.assign(doors=np.where(np.arange(n) == 7, "abc", rng.normal(size=n).round(3).astype(str)))
    path = write_csv(measured, tmp_path / "m.csv")
    with pytest.raises(DataError, match="column 'doors' mixes numbers"):
        plan_of(path, max_bad_rows=0)


@pytest.mark.slow
def test_tfrecord_bad_rows(tmp_path):
    """Numbers stored as text with one word and one 'inf', a record without the label."""
    import tensorflow as tf

    from tests.conftest import serialized_example
    from trainer.data.prepare import prepare_data

    rng = np.random.default_rng(0)
    path = str(tmp_path / "d.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(600):
            row = {"id": float(i), "x": f"{rng.normal():.4f}", "region": "abc"[i % 3], "y": int(i % 5 == 0)}
            row.update({50: {"x": "oops"}, 90: {"x": "inf"}}.get(i, {}))
            if i == 77:
                del row["y"]
            writer.write(serialized_example(row))
    prepared = prepare_data(RunConfig(data=path, label="y", output_dir=str(tmp_path / "beam"), max_bad_rows=3))
    first = [f"{path} record 51: column 'x' is not a number: 'oops'", f"{path} record 78: label 'y' is missing",
             f"{path} record 91: column 'x' is infinite: inf"]
    assert prepared.source["bad_rows"] == {"skipped": 3, "limit": 3, "first": first}
    written = _sorted(_split_frame(prepared))
    good = np.setdiff1d(np.arange(600), [50, 77, 90])
    np.testing.assert_array_equal(written["id"].to_numpy(), good)
    labels = (good % 5 == 0).astype(np.int64)
    assert prepared.counts == class_counts(labels, assign_splits(labels, SPLIT, SEED))
