"""Reading CSV / Parquet / TFRecord (the Beam data step's readers, run in-process), label handling, the
bad-data errors, and the built-in datasets.

References: the frames we wrote, pandas' own CSV reader, the published sylva counts.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tensorflow as tf

from tests.conftest import serialized_example
from tests.test_beam_data import plan_of
from trainer.data import beam_values
from trainer.data.beam_files import plan_ranges, read_range
from trainer.data.ingest import BUILTIN_DATASETS, DataError, builtin_frame, sanitize_name, validate


def read_table(pattern: str) -> pd.DataFrame:
    """Every row of the files `pattern` names, as the Beam data step's readers read them (range by range)."""
    parts = plan_ranges(pattern, range_bytes=64)  # many ranges for a CSV, cut mid-line
    batches = [pa.Table.from_batches([batch]) for part in parts for _, batch in read_range(part)]
    table = pa.concat_tables(batches)
    columns = {}
    for name in table.column_names:  # a TFRecord's one-value lists as scalars, its bytes as text
        column = beam_values.scalar_column(table.column(name).combine_chunks())[0]
        columns[name] = column.cast(pa.large_string()) if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) else column
    return pa.table(columns).to_pandas()


def load(pattern: str, label: str, positive_label=None):
    """The rows of `pattern`, checked and cleaned (`validate`), as the data step reads them."""
    return validate(read_table(pattern), label, positive_label)


def _write_tfrecord(frame: pd.DataFrame, path: str) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        for row in frame.to_dict("records"):
            writer.write(serialized_example(row))


@pytest.fixture
def small():
    return pd.DataFrame({
        "amount": [1.5, np.nan, 3.0, 4.25, 5.0, 6.0],
        "region": ["north", "south", None, "north", "east", "south"],
        "label": [0, 0, 1, 0, 1, 0],
    })


def test_csv_parquet_and_tfrecord_read_the_same(tmp_path, small):
    small.to_csv(tmp_path / "d.csv", index=False)
    small.to_parquet(tmp_path / "d.parquet")
    _write_tfrecord(small, str(tmp_path / "d.tfrecord"))
    results = [load(str(tmp_path / name), "label") for name in ("d.csv", "d.parquet", "d.tfrecord")]
    for result in results:
        np.testing.assert_array_equal(result.labels, [0, 0, 1, 0, 1, 0])
        np.testing.assert_allclose(result.features["amount"].to_numpy(), small["amount"].to_numpy())
        assert result.features["region"].tolist() == ["north", "south", None, "north", "east", "south"]


def test_glob_reads_all_files(tmp_path, small):
    small.iloc[:3].to_csv(tmp_path / "part-1.csv", index=False)
    small.iloc[3:].to_csv(tmp_path / "part-2.csv", index=False)
    assert len(read_table(str(tmp_path / "part-*.csv"))) == 6


@pytest.mark.parametrize("values,positive,expected", [
    ([True, False, False], None, [1, 0, 0]),
    (["true", "false", "false"], None, [1, 0, 0]),
    (["yes", "no", "no"], "yes", [1, 0, 0]),
    (["1", "0", "0"], None, [1, 0, 0]),
    ([1.0, 0.0, 0.0], None, [1, 0, 0]),
    (["a", "b", "b"], "b", [0, 1, 1]),
])
def test_label_forms(values, positive, expected):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": values})
    assert validate(frame, "y", positive).labels.tolist() == expected


BAD_CASES = {
    "missing label column": (pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), "label", "not found"),
    "one class": (pd.DataFrame({"x": [1.0, 2.0], "y": [1, 1]}), "y", "exactly two classes, found 1"),
    "three classes": (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 2]}), "y", "found 3"),
    "strings without positive": (pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}), "y", "--positive-label"),
    "infinite": (pd.DataFrame({"x": [1.0, np.inf], "y": [0, 1]}), "y", "infinite"),
    # Many distinct numbers and a word: a measurement with stray text (few numbers beside words are levels).
    "mixed types": (pd.DataFrame({"x": [f"{v}.5" for v in range(30)] + ["abc"], "y": [0, 1] * 15 + [0]}), "y",
                    "mixes numbers"),
    "mixed python types": (pd.DataFrame({"x": [1, "abc"], "y": [0, 1]}), "y", "mixes numbers"),
    "missing labels": (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, None, 1]}), "y", "missing values"),
    "no features": (pd.DataFrame({"y": [0, 1]}), "y", "no feature columns"),
    "no rows": (pd.DataFrame({"x": [], "y": []}), "y", "no rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_is_one_clear_error(case):
    frame, label, message = BAD_CASES[case]
    with pytest.raises(DataError, match=message) as info:
        validate(frame, label, None)
    assert "\n" not in str(info.value)


def test_unknown_positive_label():
    with pytest.raises(DataError, match="not one of the label values"):
        validate(pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}), "y", "c")


@pytest.mark.parametrize("content,message", [
    ("", "empty"),
    ("a,b,label\n1,2,0\n3,4,5,6\n", "malformed CSV"),
])
def test_bad_csv_files(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):  # the data step's first pass (profile, plan)
        plan_of(str(path), label="label")


def test_truncated_tfrecord(tmp_path, small):
    path = tmp_path / "d.tfrecord"
    _write_tfrecord(small, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(DataError, match=r"cannot read .*d.tfrecord: record 6 is corrupt or truncated"):
        plan_of(str(path), label="label")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no input file"):
        plan_of(str(tmp_path / "nothing-*.csv"))
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        plan_of(str(tmp_path / "x.xlsx"))


def test_column_names_are_sanitized_and_collisions_refused():
    frame = pd.DataFrame({"amount ($)": [1.0, 2.0], "2nd": [1.0, 2.0], "y": [0, 1]})
    result = validate(frame, "y", None)
    assert list(result.features.columns) == ["amount____", "f_2nd"]
    assert result.renamed == {"amount ($)": "amount____", "2nd": "f_2nd"}
    with pytest.raises(DataError, match="both become"):
        validate(pd.DataFrame({"a b": [1.0, 2.0], "a_b": [1.0, 2.0], "y": [0, 1]}), "y", None)
    assert sanitize_name("ok_name") == "ok_name"


def test_a_column_named_like_the_numeric_input_is_refused_by_both_readers(tmp_path):
    # The neural models take every numeric feature as one input of this name (trainer/data/dataset.py).
    with pytest.raises(DataError, match="'numeric features' is named like"):
        validate(pd.DataFrame({"numeric features": [1.0, 2.0], "x": [1.0, 2.0], "y": [0, 1]}), "y", None)
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "numeric_features": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match="'numeric_features' is named like"):
        plan_of(str(path), label="y")


def test_builtin_sylva_matches_the_published_counts():
    frame, label = builtin_frame("sylva", None, 0)
    assert label == "target" and frame.shape == (13086, 217)
    assert int(frame["target"].sum()) == 805


def test_builtin_synthetic_is_seeded_and_a_built_in_label_must_be_target():
    assert BUILTIN_DATASETS == ("sylva", "synthetic")
    first, _ = builtin_frame("synthetic", None, 3, (300, 30))
    pd.testing.assert_frame_equal(first, builtin_frame("synthetic", "target", 3, (300, 30))[0])
    assert len(first) == 330 and int(first["target"].sum()) == 30
    assert not first.equals(builtin_frame("synthetic", None, 4, (300, 30))[0])
    with pytest.raises(DataError, match="has label column 'target', not 'y'"):
        builtin_frame("synthetic", "y", 3, (300, 30))
