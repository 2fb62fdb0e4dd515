"""Flags generated from config dataclasses (trainer.flags): types, defaults, renames, and coverage."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from evaluation.flags import add_gate_arguments, gate_options
from evaluation.options import EvaluationOptions
from trainer.cli import add_run_flags, config_from_args
from trainer.config import RunConfig
from trainer.flags import add_flags, flag, values_from_args
from trainer.task import TRAINING_GROUPS
from tuning.task import TUNING_GROUPS


@dataclasses.dataclass(frozen=True)
class Example:
    count: int = dataclasses.field(default=3, metadata=flag("a", "a count"))
    rate: float | None = dataclasses.field(default=None, metadata=flag("a", "a rate"))
    mode: str = dataclasses.field(default="fast", metadata=flag("a", "a mode", choices=("fast", "slow"),
                                                                renamed={"quick": "fast"}))
    switch: bool = dataclasses.field(default=False, metadata=flag("a", "a switch"))
    pair: tuple[int, int] = dataclasses.field(default=(1, 2), metadata=flag("b", "two ints"))
    words: tuple[str, ...] = dataclasses.field(default=("--x=1",), metadata=flag("b", "words", split="words"))
    names: tuple[str, ...] | None = dataclasses.field(default=None, metadata=flag("b", "names", split="commas"))
    tolerance: float = dataclasses.field(default=0.5, metadata=flag("b", "renamed flag", name="--slack"))
    hidden: int = 7  # no metadata: no flag


def _parse(argv, groups=("a", "b")):
    parser = argparse.ArgumentParser()
    add_flags(parser, Example, groups)
    return values_from_args(parser.parse_args(argv), Example, groups)


def test_no_flags_give_the_dataclass_defaults():
    assert Example(**_parse([])) == Example()


def test_each_annotation_kind_parses_to_its_type(capsys):
    values = _parse(["--count", "9", "--rate", "0.25", "--mode", "slow", "--switch", "--pair", "4", "5",
                     "--words", "--a='b c' --d", "--names", " x, y ,,z", "--slack", "0.1"])
    assert values == {"count": 9, "rate": 0.25, "mode": "slow", "switch": True, "pair": (4, 5),
                      "words": ("--a=b c", "--d"), "names": ("x", "y", "z"), "tolerance": 0.1}
    assert capsys.readouterr().err == ""


def test_an_old_spelling_maps_to_the_new_value_with_a_deprecation_line(capsys):
    assert _parse(["--mode", "quick"])["mode"] == "fast"
    assert "warning: --mode quick is deprecated; use --mode fast" in capsys.readouterr().err


def test_only_the_requested_groups_become_flags_and_bad_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        _parse(["--pair", "1", "2"], groups=("a",))
    with pytest.raises(SystemExit):
        _parse(["--mode", "medium"])
    assert "invalid choice: 'medium'" in capsys.readouterr().err


def test_the_entry_points_defaults_are_run_configs():
    for groups in (TRAINING_GROUPS, TUNING_GROUPS):
        parser = argparse.ArgumentParser()
        add_run_flags(parser, groups)
        assert config_from_args(parser.parse_args([]), groups) == RunConfig()
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    assert gate_options(parser.parse_args([])) == EvaluationOptions()


def test_every_run_config_field_but_the_split_has_a_flag_in_some_entry_point():
    # A new field without flag metadata would be unreachable from the command line.
    flagged = {field.name for field in dataclasses.fields(RunConfig) if "flag" in field.metadata}
    groups = {field.metadata["flag"]["group"] for field in dataclasses.fields(RunConfig) if "flag" in field.metadata}
    assert {field.name for field in dataclasses.fields(RunConfig)} - flagged == {"split"}
    assert groups <= set(TRAINING_GROUPS) | set(TUNING_GROUPS)
