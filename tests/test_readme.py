"""The README's commands exist: every `python -m <entry point> ...` flag, every flag it names, every make target.

The flags come from the entry points' own argument parsers (captured when `main` parses), not from a
copied list, so a renamed or removed flag fails here until the README follows.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = ("tuning.task", "trainer.task", "evaluation.task", "evaluation.live", "evaluation.drift",
                "evaluation.monitoring", "serving.server", "serving.batch")
# Flags in the README that belong to other programs: Beam's own options (inside --beam-pipeline-args),
# saved_model_cli's and TensorBoard's.
OTHER_PROGRAMS = {"--direct_num_workers", "--direct_running_mode", "--runner", "--all", "--dir", "--logdir"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


class _Parsed(BaseException):  # not an Exception: the entry points' error handlers must not catch it
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def _accepted(module_name: str, monkeypatch) -> set[str]:
    """The option strings the entry point's parser takes, captured when its `main` parses."""
    def capture(parser, *args, **kwargs):
        raise _Parsed(parser)

    module = importlib.import_module(module_name)
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(_Parsed) as parsed:
            module.main([])
    return set(parsed.value.parser._option_string_actions)


def _commands(text: str) -> list[tuple[str, str]]:
    """(module, its arguments) of every `python -m <entry point>` command, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [(m.group(1), m.group(2)) for m in re.finditer(r"python -m ([\w.]+)([^\n`]*)", joined)
            if m.group(1) in ENTRY_POINTS]


@pytest.fixture(scope="module")
def accepted():
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {name: _accepted(name, monkeypatch) for name in ENTRY_POINTS}


def test_the_flag_capture_sees_real_flags_and_would_catch_a_missing_one(accepted):
    assert "--time-budget" in accepted["tuning.task"] and "--weight-ratio" not in accepted["tuning.task"]
    assert "--rest_api_port" in accepted["serving.server"]
    (module, arguments), = _commands("x `python -m serving.batch --data a \\\n    --nope 1` y")
    assert module == "serving.batch" and FLAG.findall(arguments) == ["--data", "--nope"]
    assert "--data" in accepted[module] and "--nope" not in accepted[module]


def test_each_readme_command_uses_only_its_entry_points_flags(accepted):
    commands = _commands(_readme())
    assert {module for module, _ in commands} >= {"tuning.task", "trainer.task", "evaluation.task",
                                                  "serving.server", "serving.batch", "evaluation.drift"}
    unknown = []
    for module, arguments in commands:
        # `evaluation.task --labels ...` is the live evaluation's command (evaluation/task.py hands it over).
        taker = "evaluation.live" if module == "evaluation.task" and "--labels" in arguments else module
        unknown += [f"{module} {flag}" for flag in FLAG.findall(arguments)
                    if flag not in OTHER_PROGRAMS and flag not in accepted[taker]]
    assert not unknown, f"README commands with flags their entry point does not take: {unknown}"


def test_every_flag_the_readme_names_is_taken_by_some_entry_point(accepted):
    every = set().union(*accepted.values())
    unknown = sorted(set(FLAG.findall(_readme())) - every - OTHER_PROGRAMS)
    assert not unknown, f"README names flags no entry point takes: {unknown}"


def test_every_make_target_the_readme_names_is_in_the_makefile():
    with open(os.path.join(ROOT, "Makefile")) as handle:
        targets = set(re.findall(r"^([a-z][\w-]*):", handle.read(), flags=re.MULTILINE))
    text = _readme()
    named = set(re.findall(r"(?:`|^)make (?:[A-Z]+=\S+ )*([a-z][\w-]*)", text, flags=re.MULTILINE))
    named |= set(re.findall(r"`(bench-[\w-]+)`", text))
    assert named and not named - targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
