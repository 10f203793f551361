"""``fsql serve --workers N``: N pre-forked worker processes answering on one listening socket.

The parent binds the socket, loads the project and connects to the store once, then forks the
workers; each runs its own event loop over the shared socket (the kernel hands each new
connection to one of them). The parent only supervises:

* SIGTERM or SIGINT: each worker gets SIGTERM and stops gracefully (requests in flight
  finish); the parent returns once all have exited (``fsql serve`` then exits 0).
* SIGHUP: passed to every worker (each reloads the definitions).
* a worker that dies otherwise is replaced (after a second if it lived less than one, so a
  worker that cannot start does not spin); ``work(True)`` tells the replacement that what it
  inherited may be stale (definitions reloaded since the parent loaded them).

Workers ignore SIGINT (a Ctrl-C reaches the whole process group; the parent relays it as
SIGTERM) and leave with ``os._exit``, so the parent's exit handlers (the embedded
redis-server's shutdown) run in the parent only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from types import FrameType

from fsql.secrets import redact

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read when prometheus_client is imported
RESTART_DELAY = 1.0  # seconds before replacing a worker that lived less than this
HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # the signals the parent handles


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[None]:
    """A temporary directory where the workers' metrics meet (prometheus_client multiprocess
    mode), set in the environment for the block; enter it before prometheus_client is
    imported."""
    with tempfile.TemporaryDirectory(prefix="fsql-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


class Supervisor:
    """Forks ``count`` workers running ``work`` and keeps them running until SIGTERM/SIGINT."""

    def __init__(self, count: int, work: Callable[[bool], None]) -> None:
        self.count, self.work = count, work
        self.workers: dict[int, float] = {}  # pid -> when it started
        self.stopping = False

    def run(self) -> None:
        handlers = {signal.SIGTERM: self._stop, signal.SIGINT: self._stop,
                    signal.SIGHUP: self._relay_hangup}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            for _ in range(self.count):
                self._fork(replacement=False)
            while self.workers:
                pid, status = os.wait()  # retried after each signal handler (PEP 475)
                started = self.workers.pop(pid, None)
                if started is None or self.stopping:
                    continue
                _log(f"worker {pid} {_ended(status)}; starting another")
                if time.monotonic() - started < RESTART_DELAY:
                    time.sleep(RESTART_DELAY)
                if not self.stopping:
                    self._fork(replacement=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _fork(self, replacement: bool) -> None:
        # held across the fork: the parent's handlers see every worker, the worker's never run
        signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
            raise
        if pid:
            self.workers[pid] = time.monotonic()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
            return
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
            self.work(replacement)
            code = 0
        except BaseException:  # noqa: BLE001 - log it: the parent starts another worker
            sys.stderr.write(redact(traceback.format_exc()))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _relay_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        self._signal_all(signal.SIGHUP)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _log(message: str) -> None:
    print(f"fsql serve: {message}", file=sys.stderr, flush=True)
