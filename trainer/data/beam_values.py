"""Cell-level rules of the Beam data step, vectorized over Arrow batches.

The rules (`trainer.data.ingest` holds the shared parts): a text cell is a
number when pandas' `to_numeric` reads it as one (NaN text is not), typed
numbers and text never mix in one column, labels are normalized by
`ingest._label_text`. Both passes use these functions, so the first pass's
decisions hold for the second.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.data.ingest import _label_text

HASH_BUCKETS = 4096  # the split's per-class histogram resolution (see trainer.data.beam_split)
_BUCKET_SHIFT = np.uint64(64 - 12)
_MASK64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class Cells:
    """One column of one batch, classified.

    Attributes:
      present: bool [n], the cell has a value.
      numbers: float64 [n], the value as a number; NaN when missing or text.
      typed: True when the values are stored as numbers (Parquet, TFRecord).
      text: object [n] of str or None when the values are stored as text.
    """

    present: np.ndarray
    numbers: np.ndarray
    typed: bool
    text: np.ndarray | None


def scalar_column(array: pa.Array) -> tuple[pa.Array, int, int]:
    """A TFRecord list column as scalars (null where absent).

    Returns:
      (scalars, first row with several values or -1, its number of values).
    """
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return array, -1, 1
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    several = np.flatnonzero(lengths > 1)
    one = lengths == 1
    flat = pc.list_flatten(array)
    if several.size:
        return flat, int(several[0]), int(lengths[several[0]])
    positions = np.cumsum(one) - 1
    return pc.take(flat, pa.array(positions, mask=~one)), -1, 1


def classify(array: pa.Array, numbers: bool = True) -> Cells:
    """Splits a raw column into present / number / text cells.

    Args:
      array: The raw column.
      numbers: Read text cells as numbers (False for a known categorical
        column: `Cells.numbers` is then all NaN).

    Raises:
      TypeError: a column type that is neither numbers nor text (e.g. dates).
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    n = len(array)
    if pa.types.is_null(kind):
        return Cells(np.zeros(n, bool), np.full(n, np.nan), False, np.full(n, None, dtype=object))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_decimal(kind):
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        values = np.where(array.is_null().to_numpy(zero_copy_only=False), np.nan, values)
        return Cells(~np.isnan(values), values, True, None)  # a NaN float is a missing value
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        array = _decoded(array)
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise TypeError(f"has values of type {kind}; use numbers or text")
    present = array.is_valid().to_numpy(zero_copy_only=False)
    values = parse_numbers(array) if numbers else np.full(n, np.nan)
    return Cells(present, values, False, array.to_numpy(zero_copy_only=False))


def _decoded(array: pa.Array) -> pa.Array:
    try:
        return pc.cast(array, pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8 is replaced, not refused
        return pa.array([None if v is None else v.decode("utf-8", errors="replace") for v in array.to_pylist()],
                        pa.string())


def parse_numbers(array: pa.Array) -> np.ndarray:
    """float64 [n]: each text cell read as a number, NaN for missing or non-numbers.

    Arrow's parser reads a whole column at C speed; when it refuses a cell
    (text, surrounding spaces), pandas' `to_numeric`, the package's rule for
    numbers in text, decides, once per distinct value when values repeat (categories).
    """
    try:
        numbers = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        if _arrow_agrees(array, numbers):
            return np.asarray(numbers, dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    uniques = pc.unique(array)
    if len(uniques) > len(array) // 2:
        return _pandas_numbers(array)
    index = pc.index_in(array, value_set=uniques).to_numpy(zero_copy_only=False)
    return _pandas_numbers(uniques)[np.nan_to_num(index, nan=0).astype(np.int64)]


def _pandas_numbers(array: pa.Array) -> np.ndarray:
    import pandas as pd

    values = pd.Series(array.to_numpy(zero_copy_only=False), dtype=object)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def _arrow_agrees(array: pa.Array, numbers: np.ndarray) -> bool:
    """Arrow reads "nan" and a few spellings pandas does not; those batches go to pandas."""
    odd = np.isnan(numbers) & array.is_valid().to_numpy(zero_copy_only=False)
    return not odd.any()


def label_codes(array: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Per row, the index of its label text in the returned list (-1 = missing)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        array = _decoded(array)
    uniques = pc.unique(array.drop_null())
    texts = [_label_text(value) for value in uniques.to_pylist()]
    index = pc.index_in(array, value_set=uniques).to_numpy(zero_copy_only=False)
    index = np.where(np.isnan(index.astype(np.float64)), -1, index).astype(np.int64)
    # Several raw values can share one text (1, 1.0, "1"): map to the first.
    distinct = list(dict.fromkeys(texts))
    remap = np.array([distinct.index(t) for t in texts] + [-1], dtype=np.int64)
    return remap[index], distinct


def record_hashes(range_index: int, first_ordinal: int, n: int, seed: int) -> np.ndarray:
    """uint64 [n]: a seeded hash of each record id (range, ordinal); the split's random order."""
    base = _splitmix(np.array([(seed & _MASK64) ^ (range_index * 0x9E3779B97F4A7C15 & _MASK64)], np.uint64))
    ordinals = np.arange(first_ordinal, first_ordinal + n, dtype=np.uint64)
    return _splitmix(_splitmix(ordinals ^ base))


def buckets(hashes: np.ndarray) -> np.ndarray:
    return (hashes >> _BUCKET_SHIFT).astype(np.int64)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer (Steele et al. 2014): a bijective, well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
