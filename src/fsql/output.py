"""Rendering for people (rich tables on stdout, progress on stderr) and machines (``--json``)."""

from __future__ import annotations

import json
import os
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

#: the width of a console that is not a terminal (a cron log, a pipe) and has no COLUMNS:
#: wide enough that no message, table cell or path is ever wrapped or folded mid-word
UNWRAPPED = 100_000


def _console(stream: TextIO, stderr: bool) -> Console:
    """A console on stdout or stderr: on a terminal, or wherever COLUMNS is set (CI, cron mail
    at ``COLUMNS=80``), tables fit that width; anywhere else (cron, pipes) lines are never
    wrapped. Messages are never wrapped (``soft_wrap``), so each stays on one line."""
    width = None if stream.isatty() or os.environ.get("COLUMNS") else UNWRAPPED
    return Console(stderr=stderr, width=width, soft_wrap=True, highlight=False)


stdout = _console(sys.stdout, stderr=False)
stderr = _console(sys.stderr, stderr=True)


def print_json(payload: Any) -> None:
    """Exactly one JSON document on one line of stdout. Non-finite floats, which JSON cannot
    represent, become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``."""
    text = json.dumps(json_safe(payload), default=str, allow_nan=False)
    sys.stdout.write(redact(text) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table that fits the console: cells wrap between words. When the columns cannot all
    fit even so (80 columns, many fields), each row becomes a block of ``field  value`` lines
    instead; a word too long for its cell is cut with an ellipsis, never broken in two."""
    cells = [[human(v) for v in row] for row in rows]
    out = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):  # names and paths (no spaces) keep their width
        out.add_column(column, overflow="ellipsis",
                       no_wrap=not any(" " in row[i] or "\n" in row[i] for row in cells))
    for row in cells:
        out.add_row(*map(Text, row))  # plain text: a "[x]" in a value is not markup
    if stdout.measure(out, options=stdout.options.update_width(UNWRAPPED)).minimum > stdout.width:
        out = Table(title=title, title_justify="left", show_header=False)
        out.add_column(style="bold", no_wrap=True)
        out.add_column(overflow="ellipsis")
        for line in cells:
            for i, (column, cell) in enumerate(zip(columns, line, strict=True)):
                out.add_row(column, Text(cell), end_section=i == len(columns) - 1)
    stdout.print(out)


def human(value: Any) -> str:
    """A value for people: floats to 10 significant digits, so ``20599.330000000005`` reads
    ``20599.33`` (``--json`` keeps them exact); booleans as ``yes``/``no``; None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(human, value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {human(v)}" for k, v in value.items())
    return str(value)


#: (unit, seconds in it, largest count shown in it before the next unit)
_UNITS = (("s", 1, 120), ("m", 60, 120), ("h", 3600, 48), ("d", 86400, None))


def duration(seconds: float | None) -> str:
    """A duration in the unit its size calls for: ``45s``, ``10m``, ``26h``, ``3.5d``."""
    if seconds is None:
        return ""
    sign, left = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size, most in _UNITS:
        if most is None or left < size * most:
            count = f"{left / size:.1f}".removesuffix(".0")
            return f"{sign}{count}{unit}"
    raise AssertionError("the last unit has no bound")


def plural(count: int, noun: str) -> str:
    """``1 training set``, ``3 training sets``, ``1,200 entities``."""
    if count == 1:
        return f"1 {noun}"
    many = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count:,} {many}"


def shown_path(path: Path) -> str:
    """A path as people want to read it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def wall_seconds() -> float:
    """Seconds since this process started, interpreter start-up and imports included: the
    time a summary reports (what a user waited for, not only fsql's inner loop).

    On Linux both ends are counted from boot, to the clock tick (psutil's ``create_time`` adds
    the boot time, which the kernel gives in whole seconds: up to a second off)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the (command name)
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, in ticks
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, AttributeError, IndexError, ValueError):  # not Linux
        import psutil

        created: float = psutil.Process().create_time()
        return max(0.0, time.time() - created)


def wall_time() -> str:
    """``1.23s (wall time)``: how a summary ends."""
    return f"{wall_seconds():.2f}s (wall time)"


def wall_time_json() -> dict[str, float]:
    """``{"wall_seconds": 1.234}``: what a ``--json`` summary adds."""
    return {"wall_seconds": round(wall_seconds(), 3)}


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
        # the step count shows once the number of steps is known (never ``0/None``)
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                            console=stderr, transient=True, disable=not enabled)
        self.task = self.bar.add_task("compiling", total=None, count="")
        self.done = 0

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, count=f"0/{total}")

    def step(self, label: str, seconds: float | None) -> None:
        if seconds is None:
            self.bar.update(self.task, description=label)
            return
        self.done += 1
        total = self.bar.tasks[0].total
        self.bar.update(self.task, advance=1, count="" if total is None else
                        f"{self.done}/{total:.0f}")
        if seconds >= 1.0 and self.enabled:
            self.bar.console.print(f"  {label} [dim]{seconds:.1f}s[/]")


@contextmanager
def step_bar(enabled: bool = True) -> Iterator[StepBar]:
    bar = StepBar(enabled)
    with bar.bar:
        yield bar
