"""Progress of the long steps: a bar with ETA on a terminal, plain lines in a log.

The data step, the search (trial n of N, best so far), each final fit and
TFMA report through `step(...)`. On a terminal (stderr is a TTY) each step is
a rich progress bar that stays on screen as one finished line; in a log file
or CI (no TTY) each advance with a note is one line on stdout, as
`[label] n of N: note`, and the step's end is one line with its duration, so
logs stay greppable and free of control characters.

    with progress.step("search", "trials", total=10) as advance:
        ...
        advance(note="val objective 0.9953, best so far 0.9953")

Entry points choose the display (`use_display`); library code only reports.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[..., None]


class PlainLines:
    """One line per noted advance and one at the end of a step (logs, CI, tests)."""

    def __init__(self, stream=None):
        self.stream = stream

    @contextlib.contextmanager
    def step(self, label: str, description: str, total: int | None) -> Iterator[Advance]:
        out = self.stream or sys.stdout
        done, calls, started = 0, 0, time.monotonic()

        def advance(steps: int = 1, note: str | None = None, completed: int | None = None) -> None:
            nonlocal done, calls
            done, calls = (completed if completed is not None else done + steps), calls + 1
            if note is None:
                return
            count, eta = f"{done}", ""
            if total:  # the mean time per advance so far, times what is left
                count += f" of {total}"
                eta = f", ETA {max(total - done, 0) * (time.monotonic() - started) / calls:.0f} s"
            print(f"[{label}] {description} {count}: {note}{eta}", file=out, flush=True)

        yield advance
        print(f"[{label}] done in {time.monotonic() - started:.1f} s", file=out, flush=True)


class Bars:
    """A rich progress bar per step, with ETA when the total is known."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def step(self, label: str, description: str, total: int | None) -> Iterator[Advance]:
        columns = [SpinnerColumn(), TextColumn(f"[bold]{label}[/bold]")]
        if total:
            columns += [BarColumn(bar_width=20), MofNCompleteColumn(), TextColumn(description), TimeRemainingColumn()]
        columns += [TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
        with Progress(*columns, console=self.console) as bar:
            task = bar.add_task(label, total=total, note="")

            def advance(steps: int = 1, note: str | None = None, completed: int | None = None) -> None:
                position = {"advance": steps} if completed is None else {"completed": completed}
                bar.update(task, **position, **({"note": note} if note is not None else {}))

            yield advance
            if total is None:
                bar.update(task, total=1, completed=1)


_display: PlainLines | Bars = PlainLines()


def use_display(display: PlainLines | Bars) -> None:
    """Where the steps report (entry points: `Bars()` on a terminal)."""
    global _display
    _display = display


def terminal_display() -> PlainLines | Bars:
    """Bars when stderr is a terminal, plain lines otherwise."""
    return Bars() if sys.stderr.isatty() else PlainLines()


def step(label: str, description: str = "", total: int | None = None) -> contextlib.AbstractContextManager[Advance]:
    """Reports one long step; the context yields `advance(steps=1, note=None, completed=None)`."""
    return _display.step(label, description, total)
