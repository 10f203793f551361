"""Rendering for people (rich tables on stdout, progress on stderr) and machines (``--json``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fsql.jsonvalues import json_safe
from fsql.secrets import redact

#: the width of a console that is not a terminal (a cron log, a pipe): wide enough that no
#: message, table cell or path is ever wrapped or folded mid-word
UNWRAPPED = 100_000


def _console(stream: TextIO, stderr: bool) -> Console:
    """A console on stdout or stderr: on a terminal it follows the terminal's width; anywhere
    else (cron, pipes, CI logs) lines are never wrapped, so each message stays on one line."""
    width = None if stream.isatty() else UNWRAPPED
    return Console(stderr=stderr, width=width, soft_wrap=True, highlight=False)


stdout = _console(sys.stdout, stderr=False)
stderr = _console(sys.stderr, stderr=True)


def print_json(payload: Any) -> None:
    """Exactly one JSON document on one line of stdout. Non-finite floats, which JSON cannot
    represent, become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``."""
    text = json.dumps(json_safe(payload), default=str, allow_nan=False)
    sys.stdout.write(redact(text) + "\n")



def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*[_cell(v) for v in row])
    stdout.print(out)


def _cell(value: Any) -> str:
    """A value for people: floats to 10 significant digits (``--json`` keeps them exact)."""
    if value is None:
        return ""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def shown_path(path: Path) -> str:
    """A path as people want to read it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def wall_seconds() -> float:
    """Seconds since this process started, interpreter start-up and imports included: the
    time a summary reports (what a user waited for, not only fsql's inner loop)."""
    import psutil

    started: float = psutil.Process().create_time()
    return max(0.0, time.time() - started)


def error(message: str) -> None:
    """``Error: message`` on stderr, secrets masked (``fsql.secrets.redact``)."""
    message = redact(message)
    stderr.print(Text.assemble(("Error:", "bold red"), " ", message), highlight=False)


class StepBar:
    """A rich progress bar on stderr implementing ``fsql.build.Progress``; steps that take a
    second or more are also logged with their time."""

    def __init__(self, enabled: bool) -> None:
        # only build and sync show one: rich.progress costs every other verb 0.1 s to import
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.enabled = enabled
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                            console=stderr, transient=True, disable=not enabled)
        self.task = self.bar.add_task("compiling", total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def step(self, label: str, seconds: float | None) -> None:
        if seconds is None:
            self.bar.update(self.task, description=label)
            return
        self.bar.advance(self.task)
        if seconds >= 1.0 and self.enabled:
            self.bar.console.print(f"  {label} [dim]{seconds:.1f}s[/]")


@contextmanager
def step_bar(enabled: bool = True) -> Iterator[StepBar]:
    bar = StepBar(enabled)
    with bar.bar:
        yield bar
