"""The fsql error tree. Every failure a user can cause is an ``FsqlError``.

    FsqlError                     exit 1   anything the user can fix
    ├── DefinitionError           exit 2   one problem in one project file (path, line, hint)
    ├── ProjectErrors             exit 2   many DefinitionErrors, reported together
    ├── ConfigError               exit 2   profiles.yml / fsql_project.yml / CLI arguments
    ├── RequestError              exit 2   a bad Python/CLI/HTTP request (unknown feature, bad key)
    │   └── OnDemandError         exit 2   an on-demand expression failed on the request's values
    ├── EngineError               exit 3   the offline engine failed while running valid SQL
    │   └── QueryFailed           exit 3   ... raised by the engine itself (not yet attributed)
    ├── OnlineStoreError          exit 4   the online store is unreachable or failed
    │   └── StaleDefinitionError  exit 4   online data written by another definition of a view
    ├── CheckFailed               exit 5   data tests failed, freshness SLA breached, skew found
    └── LockHeldError             exit 75  another sync holds the lock (cron: try again later)
        └── EngineBusyError       exit 75  another process holds the DuckDB file

The CLI maps each class to its exit code in one place (``cli.py``); anything that is not an
``FsqlError`` is a bug in fsql and is shown with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

MAX_REPORTED = 20


def did_you_mean(name: str, known: Iterable[str], shown: Callable[[str], str] = str) -> str:
    """``"did you mean 'x'? "`` for the known name closest to a mistyped one, else ``""``:
    the one suggestion helper of every lookup (definitions, CLI, HTTP). ``shown`` writes the
    match as the user would type it (``tag:x`` for a tag ``x``): compare bare names, since a
    shared prefix would make any two names look alike."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{shown(close[0])}'? " if close else ""


def known_names(name: str, known: Iterable[str]) -> str:
    """The did-you-mean and every name to choose from, for a name not found:
    ``"did you mean 'x'? known: x, y"``."""
    names = sorted(known)
    return f"{did_you_mean(name, names)}known: {', '.join(names) or 'none'}"


class FsqlError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is the whole user-facing message."""

    exit_code = 1


class DefinitionError(FsqlError):
    """One problem in one project file.

    Args:
        path: the file, relative to the project directory where possible.
        message: what is wrong.
        line: 1-based line in ``path`` where known.
        hint: how to fix it.
    """

    exit_code = 2

    def __init__(
        self,
        path: Path | str | None,
        message: str,
        *,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ProjectErrors(FsqlError):
    """Every problem found while validating a project, raised once (collect, then raise)."""

    exit_code = 2

    def __init__(self, errors: Sequence[DefinitionError]) -> None:
        self.errors = list(errors)
        shown = [e.render() for e in self.errors[:MAX_REPORTED]]
        more = len(self.errors) - len(shown)
        head = f"{len(self.errors)} problem{'s' if len(self.errors) != 1 else ''} in the project:"
        body = "\n".join(f"- {s}" for s in shown)
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(f"{head}\n{body}{tail}")


class ConfigError(FsqlError):
    """profiles.yml, fsql_project.yml or a command-line option is wrong."""

    exit_code = 2


class RequestError(FsqlError):
    """A request through the API or CLI names something that does not exist or is malformed."""

    exit_code = 2


class OnDemandError(RequestError):
    """An on-demand feature's expression failed on the values of a request (an integer
    overflow, an integer division by zero), as DuckDB fails offline. HTTP 422."""


class EngineError(FsqlError):
    """The offline engine failed while executing SQL that passed validation."""

    exit_code = 3


class QueryFailed(EngineError):
    """The engine raised while running a statement. Its message may name only fsql's
    generated SQL; when it failed ``on_data`` (a bad cast, an overflow, a division by zero),
    ``fsql.attribution`` turns it into an ``EngineError`` naming the failing node and its
    file."""

    def __init__(self, message: str, on_data: bool) -> None:
        super().__init__(message)
        self.on_data = on_data


class OnlineStoreError(FsqlError):
    """The online store (Redis) is unreachable, timed out or refused an operation."""

    exit_code = 4


class StaleDefinitionError(OnlineStoreError):
    """Online data was written by a definition that no longer matches the project."""


class CheckFailed(FsqlError):
    """A data check failed: data tests, a freshness SLA, online/offline skew, or a breaking
    definition change."""

    exit_code = 5


class LockHeldError(FsqlError):
    """Another ``fsql sync`` holds the lock. Exit code 75 (EX_TEMPFAIL) for cron."""

    exit_code = 75


class EngineBusyError(LockHeldError):
    """Another process holds the offline database file (``fsql build`` writing it, or a reader
    while a build wants it). Nothing was done; like a held sync lock, cron tries again later."""


class ErrorCollector:
    """Accumulates ``DefinitionError``s so validation can report every problem at once."""

    def __init__(self) -> None:
        self.errors: list[DefinitionError] = []

    def add(self, error: DefinitionError) -> None:
        self.errors.append(error)

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ProjectErrors(self.errors)
