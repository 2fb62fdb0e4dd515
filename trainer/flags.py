"""Command-line flags generated from a config dataclass's fields.

Each setting is declared once, as a field of its frozen dataclass
(`trainer.config.RunConfig`, `evaluation.options.EvaluationOptions`), with its
type, default, help text and choices; the entry points (`task.py`) add the
flags of the groups they offer and turn the parsed values back into the
dataclass. A field becomes a flag when its metadata says so:

    epochs: int = dataclasses.field(default=30, metadata=flag("training", "maximum training epochs"))

The flag is `--epochs` (the field name with dashes), typed from the field's
annotation: `int`, `float`, `str`, `bool` (a switch), `X | None` (default
None), `tuple[int, int]` (two values), `tuple[str, ...]` (one string, split
as shell words or at commas). Library code never sees the flags.

A retired setting (the class's `retired`: field name -> (group, why)) keeps
its flag: accepted with its value, ignored, and a one-line warning says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import types
import typing
from typing import Any

SPLITTERS = {"words": shlex.split, "commas": lambda text: [part.strip() for part in text.split(",") if part.strip()]}


def flag(group: str, help: str, *, choices: tuple | None = None, name: str | None = None,  # noqa: A002 - argparse's word
         metavar: str | tuple | None = None, split: str | None = None, renamed: dict | None = None) -> dict:
    """Field metadata that makes the field a command-line flag.

    Args:
      group: The flag group; an entry point offers some groups (`add_flags`).
      help: The help line (`%%` for a literal percent sign, as argparse wants).
      choices: The accepted values.
      name: The flag's name when it is not the field's (`--operating-point-tolerance`).
      metavar: argparse's metavar.
      split: For `tuple[str, ...]` fields: how the one string splits
        (`words`: as a shell does; `commas`).
      renamed: Old spelling -> new value; accepted with a deprecation message.
    """
    return {"flag": {"group": group, "help": help, "choices": choices, "name": name, "metavar": metavar,
                     "split": split, "renamed": renamed or {}}}


def add_flags(parser: argparse.ArgumentParser, cls: type, groups: tuple[str, ...],
              titles: dict | None = None) -> dict[str, argparse._ArgumentGroup]:
    """Adds the flags of `cls`'s fields in `groups`, defaults from `cls()`.

    Returns:
      Group -> its argparse argument group (titled by `titles`), for flags
      that are not fields (such as `--cost-fn`) to join.
    """
    defaults, hints, added = cls(), typing.get_type_hints(cls), {}
    for group in groups:
        added[group] = parser.add_argument_group((titles or {}).get(group, group))
        for field, spec in _fields(cls, group):
            added[group].add_argument(_name(field, spec), dest=field.name,
                                      **_argument(hints[field.name], spec, getattr(defaults, field.name)))
        for name, (retired_group, reason) in getattr(cls, "retired", {}).items():
            if retired_group == group:
                added[group].add_argument("--" + name.replace("_", "-"), action=_Retired, reason=reason,
                                          dest=f"retired_{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return added


class _Retired(argparse.Action):
    """A retired flag: takes its value, warns that it is ignored (old command lines keep working)."""

    def __init__(self, option_strings, dest, reason: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self._reason = reason

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is retired and ignored: {self._reason}", file=sys.stderr)


def values_from_args(args: argparse.Namespace, cls: type, groups: tuple[str, ...]) -> dict[str, Any]:
    """Field name -> value for the flags of `groups`, converted back to the fields' types."""
    hints, values = typing.get_type_hints(cls), {}
    for group in groups:
        for field, spec in _fields(cls, group):
            values[field.name] = _converted(getattr(args, field.name), hints[field.name], spec, _name(field, spec))
    return values


def _fields(cls: type, group: str) -> list[tuple[dataclasses.Field, dict]]:
    return [(field, field.metadata["flag"]) for field in dataclasses.fields(cls)
            if "flag" in field.metadata and field.metadata["flag"]["group"] == group]


def _name(field: dataclasses.Field, spec: dict) -> str:
    return spec["name"] or "--" + field.name.replace("_", "-")


def _argument(hint, spec: dict, default) -> dict[str, Any]:
    """argparse keyword arguments for a field of type `hint`."""
    base = _without_none(hint)
    options: dict[str, Any] = {"help": spec["help"], "default": default}
    if spec["choices"] is not None:
        options["choices"] = tuple(spec["choices"]) + tuple(spec["renamed"])
        if spec["renamed"]:
            options["metavar"] = "{" + ",".join(map(str, spec["choices"])) + "}"
    if spec["metavar"] is not None:
        options["metavar"] = spec["metavar"]
    if base is bool:
        return {**options, "action": "store_true"}
    if typing.get_origin(base) is tuple:
        items = typing.get_args(base)
        if items[-1] is Ellipsis:  # one string, split later
            return {**options, "default": None if default is None else _joined(default, spec)}
        return {**options, "type": items[0], "nargs": len(items)}
    return {**options, "type": base}


def _converted(value, hint, spec: dict, name: str):
    base = _without_none(hint)
    if value is None:
        return None
    if typing.get_origin(base) is tuple:
        return tuple(SPLITTERS[spec["split"]](value)) if isinstance(value, str) else tuple(value)
    if value in spec["renamed"]:
        new = spec["renamed"][value]
        print(f"warning: {name} {value} is deprecated; use {name} {new}", file=sys.stderr)
        return new
    return value


def _joined(default: tuple, spec: dict) -> str:
    return (" " if spec["split"] == "words" else ",").join(default)


def _without_none(hint):
    """`X | None` -> X; anything else unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
