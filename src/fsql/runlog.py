"""The log file of a target: one record per step of every CLI run, for cron forensics.

Each run of the CLI writes to ``target/<target>/logs/fsql.log`` (``TargetPaths.log_file``):
its start with the command line, the key steps, its outcome, exit code and wall time. The file
rotates at ``MAX_BYTES`` and keeps ``BACKUPS`` old files. Every record passes through
``fsql.secrets.redact``, so a password of the profile or an ``FSQL_ENV_SECRET_*`` value never
reaches the file. The target is only known once the profile is read, so ``begin`` holds the
records in memory until ``attach`` names the file (a run that never gets that far, such as
``--help`` or a broken profile, writes no log).
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from logging.handlers import MemoryHandler, RotatingFileHandler
from pathlib import Path

from fsql.secrets import redact

LOGGER = "fsql"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 5
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(LOGGER)
_run: dict[str, float] = {}  # "started": the run's start (time.monotonic())


class _Redacting(logging.Formatter):
    """A formatter that masks every known secret in the finished line (tracebacks too)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def begin(argv: list[str]) -> None:
    """Start a CLI run: buffer its records until ``attach`` knows the file."""
    _run["started"] = time.monotonic()
    log.setLevel(logging.INFO)
    log.addHandler(MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1))
    command = shlex.join(["fsql", *argv])
    log.info("start: %s (cwd %s, fsql pid %d)", command, os.getcwd(), os.getpid())


def attach(path: Path) -> None:
    """Write this run's records (the buffered ones first) to the rotating file ``path``."""
    buffers = [h for h in log.handlers if isinstance(h, MemoryHandler)]
    if not buffers:  # not a CLI run, or already attached
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                  encoding="utf-8")
    handler.setFormatter(_Redacting(FORMAT))
    for buffer in buffers:
        buffer.setTarget(handler)
        buffer.flush()
        log.removeHandler(buffer)
        buffer.close()
    log.addHandler(handler)


def finish(code: int | str | None, error: BaseException | None, traceback: bool) -> None:
    """Log the outcome of the run: the error that ended it, if any (with its ``traceback``
    for a bug in fsql), the exit code and wall time; then close the file."""
    status = code if isinstance(code, int) else (0 if code is None else 1)
    seconds = time.monotonic() - _run.get("started", time.monotonic())
    if error is not None and status != 0:
        log.error("%s: %s", type(error).__name__, error, exc_info=error if traceback else None)
    outcome = "ok" if status == 0 else "failed"
    log.info("end: %s, exit code %d, %.2fs wall", outcome, status, seconds)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
