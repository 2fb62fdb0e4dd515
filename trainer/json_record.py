"""Typed, frozen result records that read and write themselves as JSON objects, strictly.

A `JsonRecord` is a frozen dataclass of JSON values and nested records (or
tuples of them). `from_json` refuses a key it does not know, naming where it
is, so a misspelt key cannot be read as "absent"; a field with a default is
optional (older writers left it out). `to_json` leaves out optional fields
that are None. `trainer.summary` builds run.json's results on it.

Plain Python: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping

from trainer.config import ConfigError


class RunJsonError(ConfigError):
    """A run.json record with a key this version does not know, or without one it needs.

    A `ConfigError`: the entry points print it as one `error:` line and exit 2.
    """


def _nested(annotation) -> tuple[type | None, bool]:
    """(the record type a field holds, whether it holds a tuple of them), from its annotation."""
    def is_record(kind) -> bool:
        return isinstance(kind, type) and issubclass(kind, JsonRecord)

    for arg in typing.get_args(annotation) or (annotation,):
        if is_record(arg):
            return arg, False
        if typing.get_origin(arg) is tuple and is_record(typing.get_args(arg)[0]):
            return typing.get_args(arg)[0], True
    return None, False


class JsonRecord:
    """to_json / from_json for a frozen dataclass of JSON values and nested records.

    A field without a default is required; `LEGACY` names keys older runs
    wrote that are read and dropped.
    """

    LEGACY: typing.ClassVar[frozenset[str]] = frozenset()

    def replace(self, **changes) -> typing.Self:
        """A copy with `changes` (the nested records are checked again)."""
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        # Typed all the way down: a nested result given as a plain dict (or a list) fails here,
        # where it is made, not later where it is read.
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            kind, many = _nested(hints[field.name])
            value = getattr(self, field.name)
            if kind is None or value is None:
                continue
            if many and not (isinstance(value, tuple) and all(isinstance(v, kind) for v in value)):
                raise TypeError(f"{type(self).__name__}.{field.name}: expected a tuple of {kind.__name__}")
            if not many and not isinstance(value, kind):
                raise TypeError(f"{type(self).__name__}.{field.name}: expected {kind.__name__}, "
                                f"got {type(value).__name__}")

    def to_json(self) -> dict:
        """The JSON object of run.json, keys unchanged; optional fields that are None left out."""
        record = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            if isinstance(value, JsonRecord):
                value = value.to_json()
            elif isinstance(value, tuple) and value and isinstance(value[0], JsonRecord):
                value = [item.to_json() for item in value]
            record[field.name] = value
        return record

    @classmethod
    def from_json(cls, record: Mapping, where: str | None = None):
        """Reads a run.json object; raises RunJsonError on a key not known here or a required one missing."""
        where = getattr(cls, "WHERE", cls.__name__) if where is None else where
        if not isinstance(record, Mapping):
            raise RunJsonError(f"run.json {where or 'top level'}: expected an object, got {type(record).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - set(fields) - cls.LEGACY)
        if unknown:
            raise RunJsonError(f"run.json {where or 'top level'}: unknown key(s) {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(fields)}")
        missing = [name for name, f in fields.items() if _required(f) and name not in record]
        if missing:
            raise RunJsonError(f"run.json {where or 'top level'}: missing key(s) {', '.join(map(repr, missing))}")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in record.items():
            if name not in fields:
                continue  # LEGACY
            kind, many = _nested(hints[name])
            if kind is not None and value is not None:
                inner = f"{where}.{name}" if where else name
                value = (tuple(kind.from_json(v, f"{inner}[{i}]") for i, v in enumerate(value)) if many
                         else kind.from_json(value, inner))
            values[name] = value
        return cls(**values)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
