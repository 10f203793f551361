"""The online store seam: what ``fsql sync``, ``serve``, ``get``, ``verify``, ``freshness`` and
``diff`` need from an online store (``OnlineStore``), the values they exchange with it, and
``connect``, which picks the store a target's config names. Nothing above this module knows
which store it has: ``RedisStore`` (one Redis server, ``redis_store.py``) or ``ClusterStore``
(a Redis Cluster, ``cluster.py``)."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from fsql.config import OnlineConfig
from fsql.errors import OnlineStoreError
from fsql.online.keys import ViewLayout

LOCK_REFRESH_SECONDS = 10.0  # at most; a third of lock_timeout when that is shorter
#: how long the write counters of one task attempt (``TaskLock``) live at least: the driver's
#: lock refresher does not know them, and a failed attempt's are never folded, so they expire
TASK_COUNTER_SECONDS = 86_400.0

@dataclass
class WriteCounts:
    """Outcome of guarded writes."""

    written: int = 0
    unchanged: int = 0
    stale: int = 0
    created: int = 0  # of the written: keys that did not exist (new entities, or expired)

    def add(self, other: Sequence[int]) -> None:
        self.written += int(other[0])
        self.unchanged += int(other[1])
        self.stale += int(other[2])
        self.created += int(other[3])


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded latest values of some entities of one view, ready to write: each entity's key
    suffix (``ViewLayout.key_suffixes``), value (``ViewLayout.encode_rows``) and, for a view
    with a ttl, the instant its key expires (ms since the epoch)."""

    suffixes: list[str]
    values: list[bytes]
    expire_at_ms: list[int] | None


@dataclass(frozen=True, slots=True)
class ServerState:
    """What a sync must know of the Redis server it writes to (from INFO)."""

    run_id: str  # changes at every restart; a promoted replica has its own
    evicted_keys: int  # since the start (or CONFIG RESETSTAT)
    maxmemory: int
    policy: str  # maxmemory-policy

    @property
    def can_evict(self) -> bool:
        return self.maxmemory > 0 and self.policy != "noeviction"

    def evicted_since(self, earlier: ServerState) -> int | None:
        """Keys evicted since ``earlier`` (counted from 0 if the stats were reset since);
        None when ``earlier`` was another server incarnation (no way to tell)."""
        if earlier.run_id != self.run_id:
            return None
        if self.evicted_keys >= earlier.evicted_keys:
            return self.evicted_keys - earlier.evicted_keys
        return self.evicted_keys

    def stamp(self) -> dict[str, str]:
        """The meta fields recording this state with a view's published data."""
        return {"server_run_id": self.run_id, "evicted_keys": str(self.evicted_keys)}

    @classmethod
    def stamped(cls, meta: dict[str, str]) -> ServerState | None:
        """The state ``stamp`` recorded in a view's meta, if any."""
        if "server_run_id" not in meta:
            return None
        return cls(meta["server_run_id"], int(meta.get("evicted_keys") or 0), 0, "")


class SyncLock:
    """The sync lock, held by one run: its value (``<token>|<server run_id>``), the count of
    writes the store acknowledged under it (compared with the store's own count before
    publishing), the server's state when it was taken, and a daemon thread that refreshes it
    every ``min(10 s, lock_timeout / 3)`` on its own pooled connection -- so a long DuckDB query
    does not let it expire. The main thread learns of a lost lock at its next write or publish
    (``check``, and the fence in every script)."""

    def __init__(self, store: OnlineStore, value: str, state: ServerState,
                 took_over: str | None) -> None:
        self.store, self.value, self.state, self.took_over = store, value, state, took_over
        self.counter_key = store.counter_key(value)
        #: appended to every counter key of this lock's writes ("" for the run's own counters)
        self.scope = ""
        self.counts: dict[str, int] = {}  # counter key -> writes acknowledged under it
        self.lost = False  # set by the refresher when the lock is no longer ours
        self._stop = threading.Event()
        interval = min(LOCK_REFRESH_SECONDS, store.config.lock_timeout / 3)
        self._thread = threading.Thread(target=self._keep, args=(interval,), daemon=True,
                                        name="fsql-sync-lock")

    @property
    def acknowledged(self) -> int:
        """Writes the store acknowledged under this lock, over all its counters."""
        return sum(self.counts.values())

    def counter_ms(self) -> int:
        """How long a write keeps its counter alive (ms): the lock's timeout (the refresher
        extends both)."""
        return int(self.store.config.lock_timeout * 1000)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def check(self, when: str) -> None:
        if self.lost:
            raise self.store.lost_lock(self, when)

    def _keep(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                if not self.store.refresh_lock(self):
                    self.lost = True
                    return
            except OnlineStoreError:
                continue  # a blip: the fenced writes and publish find out if the lock survived


class TaskLock(SyncLock):
    """The run's lock as one writer task attempt holds it (``fsql.online.partition``): the same
    value, so each of its writes is fenced by the run's lock, but its writes are counted in
    counters of its own (each run counter's key plus ``scope``, in the same slot), since
    concurrent tasks cannot share one fenced counter. The driver folds a successful attempt's
    counters into the run's (``OnlineStore.fold``). Never refreshed (the driver holds the lock):
    its counters live ``max(lock_timeout, TASK_COUNTER_SECONDS)``."""

    def __init__(self, store: OnlineStore, value: str, state: ServerState, scope: str) -> None:
        super().__init__(store, value, state, None)
        self.scope = scope
        self.counter_key = store.counter_key(value) + scope

    def counter_ms(self) -> int:
        return int(max(self.store.config.lock_timeout, TASK_COUNTER_SECONDS) * 1000)



class OnlineStore(ABC):
    """One connection to the online store of a target (close it when done). The guarantees
    (whole vectors, never older over newer, atomic full refresh, nothing published without the
    lock or over lost writes) are each store's to keep: see its module docstring."""

    #: the meta fields readers need ('definition': to tell a training set its views changed)
    READ_META = ("generation", "key_kinds", "schema", "features", "definition")

    config: OnlineConfig
    clock: Callable[[], float]
    #: the redis-py client (``redis.Redis`` or ``RedisCluster``, both taking single-key
    #: commands), for tests and operators; nothing above this seam uses it
    client: Any

    @property
    def where(self) -> str:
        """The store for messages and logs, its password masked."""
        return self.config.display

    @abstractmethod
    def close(self) -> None:
        """Release the connections (and an embedded server)."""

    # -- the sync lock -----------------------------------------------------------------------
    @abstractmethod
    def server_state(self) -> ServerState:
        """The server's (or cluster's) identity and eviction figures."""

    @abstractmethod
    def counter_key(self, lock_value: str) -> str:
        """The key counting the writes made under one lock value."""

    @abstractmethod
    def acquire(self) -> SyncLock:
        """Take the sync lock (not yet refreshed: use ``locked``) or raise ``LockHeldError``."""

    @abstractmethod
    def locked(self) -> AbstractContextManager[SyncLock]:
        """Hold the sync lock for a block, refreshed in the background, released after."""

    @abstractmethod
    def refresh_lock(self, lock: SyncLock) -> bool:
        """Extend the lock (and its counters); False if it is not ours."""

    @abstractmethod
    def release_lock(self, value: str) -> None:
        """Release the lock of value ``value`` (if still held) and its counters."""

    @abstractmethod
    def lost_lock(self, lock: SyncLock, when: str) -> OnlineStoreError:
        """The error for a run that lost its lock."""

    @abstractmethod
    def fold(self, lock: SyncLock, scope: str, counters: dict[str, int]) -> None:
        """Move the writes one task attempt counted (its counter keys, ending with ``scope``,
        -> the counts it was acknowledged) into the run's counters, each only if the store
        still holds exactly that count, and while ``lock`` is held."""

    # -- meta and writes ---------------------------------------------------------------------
    @abstractmethod
    def meta(self, layout: ViewLayout) -> dict[str, str]:
        """A view's whole meta hash."""

    @abstractmethod
    def set_meta(self, layout: ViewLayout, fields: dict[str, str], lock: SyncLock) -> None:
        """Update a view's meta while ``lock`` is held and nothing it wrote was lost."""

    @abstractmethod
    def new_generation(self, layout: ViewLayout, lock: SyncLock) -> str:
        """A fresh generation id for a full refresh, recorded as pending."""

    @abstractmethod
    def publish(self, layout: ViewLayout, fields: dict[str, str], lock: SyncLock,
                retired: str | None = None) -> None:
        """Switch readers to a new generation, atomically with its meta."""

    @abstractmethod
    def drop_generation(self, layout: ViewLayout, generation: str,
                        forget: str | None = None) -> int:
        """Delete every key of one generation; then forget the meta field naming it."""

    @abstractmethod
    def write(self, layout: ViewLayout, generation: str, batch: Batch, counts: WriteCounts,
              lock: SyncLock, guarded: bool = True) -> None:
        """Write one batch, fenced by ``lock``; ``guarded``: never older over newer."""

    # -- reads -------------------------------------------------------------------------------
    @abstractmethod
    def entity_key(self, layout: ViewLayout, generation: str, key: tuple[Any, ...]) -> str:
        """The key holding one entity's vector of one view and generation (for operators and
        tests looking at the store from outside)."""

    @abstractmethod
    def read(self, requests: Sequence[tuple[ViewLayout, Sequence[tuple[Any, ...]]]]
             ) -> list[tuple[dict[str, str], list[bytes | None]]]:
        """Meta (``READ_META``) and raw values for each (view, entity key tuples)."""

    @abstractmethod
    def read_keys(self, requests: Sequence[tuple[ViewLayout, Sequence[str]]]
                  ) -> list[tuple[dict[str, str], list[bytes | None]]]:
        """Meta (``READ_META``) and raw values for each (view, key suffixes)."""

    @abstractmethod
    def read_metas(self, layouts: Sequence[ViewLayout], fields: Sequence[str],
                   timeout: float) -> list[dict[str, str]]:
        """``fields`` of each layout's meta, on a connection of its own whose every operation
        times out after ``timeout`` seconds (for health checks; touches no state of reads).
        Raises ``OnlineStoreError`` when the store does not answer."""


def connect(config: OnlineConfig, clock: Callable[[], float] = time.time) -> OnlineStore:
    """The online store ``config`` names, connected."""
    if config.type == "redis_cluster":
        from fsql.online.cluster import ClusterStore

        return ClusterStore(config, clock)
    from fsql.online.redis_store import RedisStore

    return RedisStore(config, clock)
