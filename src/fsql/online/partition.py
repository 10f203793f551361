"""One view's online writes, one partition of its latest rows at a time, wherever the rows are:
in this process (DuckDB) or in a Spark task on an executor (``Engine.write_partitions``).

A ``ViewWriter`` is a picklable value: the store's config, the view's layout and join, the
generation, the run's lock value and the encode function. Shipped to an executor, it connects a
store of its own (``online.base.connect``, so the executors must reach the store, and the store's
password travels inside the task). There its writes are fenced by the run's lock and counted
in counters of the task attempt's own (``TaskLock``): the driver folds the counters of the
attempts that succeeded into the run's (``Syncer`` via ``OnlineStore.fold``), so an attempt
that failed (and was retried) is never counted and a publish still proves that nothing
acknowledged was lost. Run in-process, it writes through the driver's store under the driver's
lock itself, counting straight into the run's counters (as one writer, nothing to fold).

A store error in a task (lost lock, lost writes, an unreachable store) comes back as the task's
result and is raised on the driver as the same ``OnlineStoreError``; anything else fails the
task, and so the job: nothing is published.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsql.config import OnlineConfig
from fsql.engines.base import Task
from fsql.errors import OnlineStoreError
from fsql.online.base import (
    Batch,
    OnlineStore,
    ServerState,
    SyncLock,
    TaskLock,
    WriteCounts,
    connect,
)
from fsql.online.keys import ViewLayout
from fsql.pit import ViewJoin

if TYPE_CHECKING:
    import pyarrow as pa

Encode = Callable[["pa.RecordBatch", ViewJoin, ViewLayout], Batch]


@dataclass(frozen=True, slots=True)
class TaskWrites:
    """What one task attempt did: its counters (key -> writes acknowledged, each ending with
    ``scope``), the latest rows it read, the guarded-write outcomes, the process it ran in, and
    the store error that stopped it, if any (its message names the store, password masked)."""

    scope: str
    counters: tuple[tuple[str, int], ...]
    entities: int
    written: int
    unchanged: int
    stale: int
    created: int
    pid: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ViewWriter:
    """Writes partitions of one view's latest rows (or tile states) into a generation, under
    the run's lock (``lock``: its value and the server state when taken; None for a dry run,
    which only counts). ``held`` is the driver's lock itself (and so its store), used when run
    in-process; it is never pickled (``__reduce__``), so a task connects its own store."""

    config: OnlineConfig
    layout: ViewLayout
    join: ViewJoin
    generation: str
    lock: tuple[str, ServerState] | None
    guarded: bool
    encode: Encode
    held: SyncLock | None = field(default=None, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ViewWriter, (self.config, self.layout, self.join, self.generation, self.lock,
                             self.guarded, self.encode))

    def __call__(self, batches: Iterator[pa.RecordBatch], task: Task) -> TaskWrites:
        scope = f":p{task.partition}:a{task.attempt}"
        counts, entities = WriteCounts(), 0
        store: OnlineStore | None = None
        lock: SyncLock | None = None
        if self.held is not None:
            store, lock = self.held.store, self.held
        error = None
        try:
            for batch in batches:
                encoded = self.encode(batch, self.join, self.layout)
                entities += len(encoded.values)
                if self.lock is None or not encoded.values:
                    continue
                if store is None:
                    store = connect(self.config)
                if lock is None:
                    lock = TaskLock(store, self.lock[0], self.lock[1], scope)
                store.write(self.layout, self.generation, encoded, counts, lock, self.guarded)
        except OnlineStoreError as err:
            error = str(err)
        finally:
            if self.held is None and store is not None:
                with contextlib.suppress(OnlineStoreError):
                    store.close()
        counters = tuple(lock.counts.items()) if isinstance(lock, TaskLock) else ()
        return TaskWrites(scope, counters,
                          entities, counts.written, counts.unchanged, counts.stale,
                          counts.created, os.getpid(), error)
