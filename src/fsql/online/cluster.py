"""The Redis Cluster online store (``type: redis_cluster``): ``RedisStore``'s guarantees on a
cluster of masters, with what a cluster cannot make atomic said precisely.

Keys (hash tags in braces; only the part inside the first ``{...}`` picks the slot)::

    {ns}:v1:lock                    the sync lock           \\
    {ns}:v1:{view}:meta             each view's meta hash    } one slot: the control slot
    {ns}:v1:run:{token}:writes      the run's writes there  /
    {tag}ns:v1:run:{token}:writes   the run's writes on each other master (``tag`` hashes to it)
    ...:writes:p<n>:a<m>            a Spark task attempt's writes there (folded into the run's)
    ns:v1:{view}:{generation}:{key} one entity's vector; ``{key}`` is the entity key, so every
                                    view of one entity is in one slot (spread evenly by entity)

What is atomic, and what is not:

* **Atomic** (one script or command on one slot): each vector write (a whole value, so an
  interrupted sync leaves each vector old or new); each guarded write (never older over newer,
  per key); taking, refreshing and releasing the lock; every meta update and the generation flip
  *together with* a check that the run still holds the lock and that the control slot's master
  still holds every write the run counted there.
* **Not atomic across masters**: a batch's writes land on each master separately (in a pipeline
  per master, sent to all masters before reading any reply), and a write on another master
  cannot check the lock: a run that lost its lock finds out at its next batch (the refresh
  thread's flag) or at its publish, which is refused. Its writes meanwhile are harmless: a full
  refresh writes a random generation nobody reads, and guarded writes never put an older value
  over a newer one.
* **Fencing per master**: each master's pipeline ends with a fence script that moves that
  master's write counter only if it still equals what the run was acknowledged there (``-2``
  otherwise). A master executes one connection's commands in order, and a snapshot, the AOF and
  replication all keep that order, so a counter that survived implies the writes before it did.
  Before every publish or watermark move the run checks every master's counter, and that the
  cluster is the one it started on: the same masters, each with the same run_id (so a restart,
  a failover to a replica, or a resharding makes the run fail; a re-run repairs). The control
  slot's counter and the lock are then checked again inside the publish script. What remains is
  one window: a master other than the control slot's failing over to a lagging replica between
  that check and the flip (one round trip) can publish a generation with holes on it, which
  stay until a full refresh (as on one server, only a store that can evict keys makes the next
  sync rewrite a view stamped with another server identity).
* **Reads**: the values of one request are read from each master they live on (a pipeline per
  master, sent together) and the views' meta from the control slot's master, in one round trip.
  A value found belongs to the generation it was read from; a value *missing* might be a retired
  generation deleted meanwhile, so when any is missing the meta is read once more, after the
  values: if it still names the generation, the value really was missing (``RedisStore``'s
  argument), else the read is repeated with the new generation. Every read touches the control
  slot's master (one HMGET per view).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fsql.config import OnlineConfig
from fsql.errors import OnlineStoreError
from fsql.online.base import Batch, ServerState, SyncLock
from fsql.online.keys import FORMAT, ViewLayout
from fsql.online.redis_store import _COUNT, _COUNTER_FENCE, GUARD, RedisStore, pack

if TYPE_CHECKING:
    import redis
    from redis.cluster import ClusterNode

# The fence of a master other than the control slot's: the write counter only (KEYS[2], which
# is also KEYS[1]: there is no lock on that master to check).
_NODE_COUNT = _COUNTER_FENCE + "return n"
# Guarded writes of one key (its vector, then value, pxat): the single-node loop, from KEYS[1].
_GUARD = GUARD.replace("FIRST", "1")
_GUARD_SHA = hashlib.sha1(_GUARD.encode()).hexdigest()
# replies saying the slot is served elsewhere now (MOVED, ASK), or not yet (a failover)
_REDIRECTS = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN")


class _Moved(Exception):
    """A read found slots served elsewhere: retried on the cluster's new layout."""


def _redirected(reply: Any) -> bool:
    """Whether ``reply`` is an error reply in ``_REDIRECTS`` (as redis-py's cluster parser
    names them, or as the plain parser leaves them)."""
    from redis.exceptions import AskError, ClusterDownError, TryAgainError

    return isinstance(reply, AskError | ClusterDownError | TryAgainError) or (
        isinstance(reply, Exception) and str(reply).startswith(_REDIRECTS))


class ClusterStore(RedisStore):
    """One ``RedisCluster`` client (and its pool per master) to the online store."""

    def __init__(self, config: OnlineConfig, clock: Callable[[], float]) -> None:
        self._tags: dict[str, str] = {}  # master name -> a hash tag of one of its slots
        self._loaded: set[str] = set()  # masters known to have the guard script
        super().__init__(config, clock)

    def _open(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, int(port))  # type: ignore[no-untyped-call]
                 for host, _, port in
                 (node.rpartition(":") for node in self.config.startup_nodes)]
        return RedisCluster(startup_nodes=nodes, password=self.config.password,
                            socket_timeout=self.config.socket_timeout,
                            socket_connect_timeout=self.config.socket_timeout,
                            max_connections=self.config.pool_size)

    def failures(self) -> tuple[type[Exception], ...]:
        from redis.exceptions import RedisClusterException

        return (*super().failures(), RedisClusterException)

    # -- keys --------------------------------------------------------------------------------
    @property
    def control(self) -> str:
        """The hash tag of the control slot: the lock, the metas, the run's counter there."""
        return "{" + self.config.namespace + "}"

    def meta_key(self, layout: ViewLayout) -> str:
        return f"{self.control}:{FORMAT}:{layout.view}:meta"

    def value_keys(self, prefix: str, suffixes: Sequence[str]) -> list[str]:
        return [f"{prefix}{{{suffix}}}" for suffix in suffixes]

    def _master(self, key: str) -> ClusterNode:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        nodes = self.client.nodes_manager.slots_cache.get(slot)
        if not nodes:
            raise OnlineStoreError(f"online store ({self.where}): no master serves slot "
                                   f"{slot} (is the cluster down?)")
        node: ClusterNode = nodes[0]
        return node

    def _node_counter(self, lock_value: str, node: ClusterNode, scope: str = "") -> str:
        """The key counting the run's writes on master ``node`` (a task attempt's: ``scope``
        appended, same slot)."""
        from redis.crc import key_slot

        if self._master(self.lock_key).name == node.name:
            return self.counter_key(lock_value) + scope
        tag = self._tags.get(node.name)
        if tag is None or self._master("{" + tag + "}").name != node.name:
            slots = self.client.nodes_manager.slots_cache
            tag = next(t for t in map(str, range(1 << 20))
                       if slots.get(key_slot(t.encode()), [node])[0].name == node.name)
            self._tags[node.name] = tag
        token = lock_value.split("|", 1)[0]
        return f"{{{tag}}}{self.config.namespace}:{FORMAT}:run:{token}:writes{scope}"

    # -- the cluster's state, the lock and its counters --------------------------------------
    def server_state(self) -> ServerState:
        """The cluster's identity (a digest of each master's name, run_id and slots: it
        changes when any master restarts, fails over or gains or loses slots) and eviction
        figures summed over its masters."""
        digest = hashlib.sha1()
        evicted, maxmemory, policy = 0, 0, "noeviction"
        with self.errors("reading the masters' INFO"):
            slots = self.client.nodes_manager.slots_cache
            for node in sorted(self.client.get_primaries(), key=lambda n: n.name):
                info = node.redis_connection.info()
                if info.get("role") != "master":
                    raise OnlineStoreError(
                        f"online store ({self.where}): node {node.name} is no longer a master "
                        "(failed over?); run the command again")
                owned = [s for s, nodes in slots.items() if nodes[0].name == node.name]
                digest.update(f"{node.name}={info['run_id']}:{min(owned, default=-1)}-"
                              f"{max(owned, default=-1)}/{len(owned)};".encode())
                evicted += int(info.get("evicted_keys", 0))
                state = ServerState("", 0, int(info.get("maxmemory", 0)),
                                    str(info.get("maxmemory_policy", "noeviction")))
                if state.can_evict:
                    maxmemory, policy = state.maxmemory, state.policy
        return ServerState(digest.hexdigest(), evicted, maxmemory, policy)

    def durable_state(self, lock: SyncLock, when: str) -> ServerState:
        """``RedisStore.durable_state``, and the cluster is the one the run started on (same
        masters, run_ids and slots), and every master still holds every write the run was
        acknowledged there (the control slot's counter is checked again by the publish)."""
        state = super().durable_state(lock, when)
        if state.run_id != lock.state.run_id:
            raise self.changed(when)
        others = [key for key in lock.counts if key != lock.counter_key]
        with self.errors("checking the writes of this sync"):
            held = [int(v or 0) for v in self.client.mget_nonatomic(others)] if others else []
        if any(h != lock.counts[key] for h, key in zip(held, others, strict=True)):
            raise self.lost_writes(lock, sum(held) + lock.counts.get(lock.counter_key, 0), when)
        return state

    def changed(self, when: str) -> OnlineStoreError:
        return OnlineStoreError(
            f"the Redis Cluster changed during this sync (a master restarted, failed over or "
            f"gained or lost slots); stopping {when} without publishing or moving the "
            "watermark: run fsql sync again to rewrite what it may have lost")

    def refresh_lock(self, lock: SyncLock) -> bool:
        if not super().refresh_lock(lock):
            return False
        with self.errors("refreshing the sync lock"):
            for key in tuple(lock.counts):  # (the main thread may add one meanwhile)
                if key != lock.counter_key:
                    self.client.pexpire(key, int(self.config.lock_timeout * 1000))
        return True

    def release_lock(self, value: str) -> None:
        super().release_lock(value)
        with self.errors("releasing the sync lock"):
            for node in self.client.get_primaries():
                self.client.delete(self._node_counter(value, node))

    # -- generations -------------------------------------------------------------------------
    def data_clients(self) -> list[redis.Redis]:
        return [node.redis_connection for node in self.client.get_primaries()]

    def unlink(self, client: redis.Redis, keys: list[bytes]) -> int:
        pipe = client.pipeline(transaction=False)  # one UNLINK per key: keys of many slots
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in pipe.execute())

    def meta_client(self) -> redis.Redis:
        client: redis.Redis = self._master(self.lock_key).redis_connection
        return client

    # -- writes ------------------------------------------------------------------------------
    def _send_batch(self, keys: list[str], batch: Batch, lock: SyncLock, guarded: bool
                    ) -> list[tuple[Any, str, int]]:
        """Each master's share of the batch in one pipeline (guarded: the guard script per
        key; else plain SETs), ending with its fence; all pipelines sent before any reply is
        read. Retried once after a connection error, on the cluster's new layout (a fence
        counts a share that was applied after all once, and a master that lost writes makes
        its fence fail)."""
        import redis

        try:
            return self._send_shares(keys, batch, lock, guarded)
        except (redis.ConnectionError, redis.TimeoutError):
            self.client.nodes_manager.initialize()
            return self._send_shares(keys, batch, lock, guarded)

    def _send_shares(self, keys: list[str], batch: Batch, lock: SyncLock, guarded: bool
                     ) -> list[tuple[Any, str, int]]:
        from redis.exceptions import NoScriptError

        shares: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, key in enumerate(keys):
            node = self._master(key)
            shares.setdefault(node.name, (node, []))[1].append(i)
        control = self._master(self.lock_key).name
        expiry = batch.expire_at_ms
        work: dict[str, tuple[ClusterNode, list[tuple[Any, ...]]]] = {}
        counters: dict[str, tuple[str, int]] = {}
        for name, (node, index) in shares.items():
            counter = self._node_counter(lock.value, node, lock.scope)
            fence = self.fence(lock, counter, len(index))
            at = [0] * len(index) if expiry is None else [expiry[i] for i in index]
            writes: list[tuple[Any, ...]]
            if guarded:
                self._load_guard(node)
                writes = [("EVALSHA", _GUARD_SHA, 1, keys[i], batch.values[i], pxat)
                          for i, pxat in zip(index, at, strict=True)]
            else:
                writes = [("SET", keys[i], batch.values[i], "PXAT", pxat) if pxat else
                          ("SET", keys[i], batch.values[i])
                          for i, pxat in zip(index, at, strict=True)]
            fenced = (("EVAL", _COUNT, 2, *fence) if name == control else
                      ("EVAL", _NODE_COUNT, 2, counter, *fence[1:]))
            work[name] = (node, [*writes, fenced])
            counters[name] = (counter, len(index))
        replies = self._pipelines(work)
        outcomes: list[tuple[Any, str, int]] = []
        for name, found in replies.items():
            failed = [r for r in found if isinstance(r, Exception)]
            if any(isinstance(r, NoScriptError) for r in failed):  # a master lost its scripts
                self._loaded.discard(name)
                raise self.changed("while writing")
            if any(map(_redirected, failed)):  # slots moved: a new layout
                self.client.nodes_manager.initialize()
                raise self.changed("while writing")
            if failed:  # a write refused: the run fails
                raise failed[0]
            counter, n = counters[name]
            fence_reply = found[-1]
            if fence_reply in (-1, -2, -3) or not guarded:
                outcomes.append((fence_reply, counter, n))
            else:
                outcomes.append(([sum(c[i] for c in found[:-1]) for i in range(4)], counter, n))
        return outcomes

    def _load_guard(self, node: ClusterNode) -> None:
        if node.name not in self._loaded:
            node.redis_connection.script_load(_GUARD)
            self._loaded.add(node.name)

    def _pipelines(self, work: dict[str, tuple[ClusterNode, list[tuple[Any, ...]]]]
                   ) -> dict[str, list[Any]]:
        """Send each master its commands (one write each), then read every reply: one round
        trip in all, however many masters. Error replies come back as exceptions in the
        lists; a connection that failed is closed, never reused with unread replies."""
        import redis

        taken: list[tuple[str, Any, Any, int]] = []
        try:
            for name, (node, commands) in work.items():
                pool = node.redis_connection.connection_pool
                connection = pool.get_connection()
                taken.append((name, pool, connection, len(commands)))
                connection.send_packed_command(pack(connection, commands))
            replies: dict[str, list[Any]] = {}
            for name, _, connection, count in taken:
                found = []
                for _ in range(count):
                    try:
                        found.append(connection.read_response())
                    except redis.ResponseError as err:
                        found.append(err)
                replies[name] = found
            return replies
        except BaseException:
            for _, _, connection, _ in taken:
                connection.disconnect()
            raise
        finally:
            for _, pool, connection, _ in taken:
                pool.release(connection)

    # -- reads -------------------------------------------------------------------------------
    def _fetch(self, keys: list[str], meta_keys: list[str], fields: Sequence[str]
               ) -> tuple[list[bytes | None], list[list[bytes | None]]]:
        """A GET of each value on its master and the metas on the control slot's master, in
        one round trip; the metas once more (after the values) when a value is missing (see
        the module docstring)."""
        import redis

        with self.errors("reading features"):
            try:
                return self._fetch_once(keys, meta_keys, fields)
            except (redis.ConnectionError, redis.TimeoutError, _Moved):
                # a master failed over or slots moved: once more, on the cluster's new layout
                self.client.nodes_manager.initialize()
                return self._fetch_once(keys, meta_keys, fields)

    def _fetch_once(self, keys: list[str], meta_keys: list[str], fields: Sequence[str]
                    ) -> tuple[list[bytes | None], list[list[bytes | None]]]:
        work: dict[str, tuple[ClusterNode, list[tuple[Any, ...]]]] = {}
        order: list[tuple[str, int]] = []
        for key in keys:
            node = self._master(key)
            commands = work.setdefault(node.name, (node, []))[1]
            order.append((node.name, len(commands)))
            commands.append(("GET", key))
        control = self._master(self.lock_key)
        meta_commands = [("HMGET", key, *fields) for key in meta_keys]
        mine = work.setdefault(control.name, (control, []))[1]
        start = len(mine)
        mine += meta_commands
        replies = self._pipelines(work)
        metas = replies[control.name][start:]
        values = [replies[name][i] for name, i in order]
        if any(v is None for v in values):
            metas = self._pipelines({control.name: (control, meta_commands)})[control.name]
        for reply in (*values, *metas):
            if _redirected(reply):
                raise _Moved(str(reply))
            if isinstance(reply, Exception):
                raise reply
        return values, metas
