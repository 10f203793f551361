"""``fsql sync``: latest row per entity, from the same compiled views, into the online store.

Per online view, under the sync lock:

1. A view never synced, or whose definition hash changed, or ``--full-refresh``: write a new
   generation with every entity's latest row, publish it atomically, delete the old one.
2. Otherwise incremental: only rows whose watermark column (created timestamp if declared, else
   event timestamp) is newer than the stored watermark are read; the latest of them per entity
   goes through the store's guard, which keeps whichever of the stored and the new row is newer.
   This is exact because the store always holds the latest row among the rows at or below the
   watermark: a late row (old event time, new created time) is refused as stale.
3. The watermark moves only after every batch of the view was written and the store was
   shown to still hold every write of the run (see redis_store), never past a row whose event
   is still to come and never past the sync's own as_of (a future-dated created time is
   counted, not trusted), so an interrupted, crashed or rolled-back sync is completed by the
   next run. Rows deleted from a source are only dropped online by a full refresh, which
   refuses to drop more than ``max_drop`` of a view's entities without ``--allow-drop``.
4. Data tests of the synced views that have something to write run first, as in ``fsql build``:
   a failure syncs nothing (a view with nothing new changes nothing online, so it is not tested).
   A view whose keys may have been evicted since its last sync is fully refreshed.

Rows stream from the engine in Arrow record batches, so memory stays bounded. They are
written where they are (``Engine.write_partitions``): by DuckDB's process, or by each Spark task
on its executor (``fsql.online.partition``); the driver only folds the tasks' write counts into
the run's, then publishes generations and watermarks as above.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from fsql.build import Progress
from fsql.compile import CompiledNode, CompiledProject, manifest
from fsql.definitions import FeatureView
from fsql.diff import breaking, diff, view_manifest
from fsql.engines.base import Engine
from fsql.errors import CheckFailed, OnlineStoreError, RequestError
from fsql.graph import Selectors
from fsql.online.base import Batch, OnlineStore, ServerState, SyncLock, WriteCounts
from fsql.online.keys import FORMAT, INT_KEY, STR_KEY, ViewLayout, encode_column, iso_utc
from fsql.online.partition import TaskWrites, ViewWriter
from fsql.online.tiles import encode_states, expiry
from fsql.pit import (
    CREATED,
    TS,
    LatestPlan,
    ViewJoin,
    common_instant,
    latest_rows_query,
    watermark_query,
    window_source,
)
from fsql.windows import LATEST as LATEST_AT

if TYPE_CHECKING:
    import pyarrow as pa

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT",
                  "UBIGINT"}
_STRING_TYPES = {"VARCHAR", "TEXT", "CHAR", "NVARCHAR", "NCHAR"}


@dataclass(frozen=True, slots=True)
class ViewSyncResult:
    """What one view's sync did."""

    view: str
    mode: str  # "full" | "incremental"
    entities: int  # latest rows computed
    written: int
    unchanged: int
    stale: int  # older than what the store already had: kept the newer value
    dropped: int  # keys of a replaced generation deleted
    watermark: str | None
    seconds: float
    full_reason: str | None = None  # why the view was fully refreshed
    future_dated: int = 0  # rows whose created/event time is after as_of (never in watermark)
    tasks: int = 1  # partitions of the latest rows written (by as many Spark tasks)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Summary of one ``fsql sync``."""

    views: tuple[ViewSyncResult, ...]
    as_of: str
    dry_run: bool
    seconds: float
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "dry_run": self.dry_run, "seconds": round(self.seconds, 3),
                "warnings": list(self.warnings),
                "views": [{**asdict(v), "seconds": round(v.seconds, 3)} for v in self.views]}


def view_join(node: CompiledNode, project: CompiledProject) -> ViewJoin:
    """The view's keys, features and timestamp types, as the point-in-time plan sees them."""
    view = node.definition
    assert isinstance(view, FeatureView)
    types = {c.name: c.dtype for c in node.columns}
    keys = tuple(k for e in view.entities for k in project.spec.entities[e].join_keys)
    created = types.get(view.created_timestamp) if view.created_timestamp else None
    return ViewJoin(view, node.relation, keys, view.features,
                    tuple(f.name for f in view.features), types[view.timestamp], created)


def layout_for(node: CompiledNode, join: ViewJoin, namespace: str) -> ViewLayout:
    types = {c.name: c.dtype for c in node.columns}
    kinds = []
    for key in join.keys:
        name = types[key].this.name
        if name in _INTEGER_TYPES:
            kinds.append(INT_KEY)
        elif name in _STRING_TYPES:
            kinds.append(STR_KEY)
        else:
            raise RequestError(f"view '{node.name}': join key '{key}' has type "
                               f"{types[key].sql()}; online keys must be integers or strings")
    return ViewLayout(namespace, node.name, join.keys, tuple(kinds), join.view.features)


def _encode_batch(batch: pa.RecordBatch, join: ViewJoin, layout: ViewLayout) -> Batch:
    """Latest rows (Arrow) -> keys, encoded values and expiry instants, column by column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def instants(name: str) -> list[Any]:
        column = batch.column(name)
        as_us = column.cast(pa.timestamp("us", tz=getattr(column.type, "tz", None)))
        values: list[Any] = pc.cast(as_us, pa.int64()).to_pylist()
        return values

    suffixes = layout.key_suffixes([batch.column(k).to_pylist() for k in join.keys])
    events = instants(TS)
    created = instants(CREATED) if join.view.created_timestamp else [None] * batch.num_rows
    columns = [encode_column(batch.column(f.name).to_pylist(), f) for f in join.features]
    expiry = None
    if join.view.ttl is not None:  # Redis expires at ms: round up, readers check exactly
        ttl_us = join.view.ttl.seconds * 1_000_000
        # kept for a grace of min(ttl, 1 day) after expiry, so readers report EXPIRED, not MISSING
        keep_us = ttl_us + min(ttl_us, 86_400_000_000)
        expiry = [-(-(event + keep_us) // 1000) for event in events]
    return Batch(suffixes, layout.encode_rows(events, created, columns), expiry)


def _state_query(plan: LatestPlan, engine: Engine, node: CompiledNode) -> exp.Select:
    """A view of aggregations: the tile state of every entity with rows in some window from
    ``as_of`` on (incremental: of the entities with rows newer than the watermark), as the
    engine spells it (``Engine.tile_strategy``)."""
    join = plan.join
    entities = None
    if plan.changed_since is not None:  # rows still to come count when their time comes
        event, as_of = common_instant(join, plan.as_of)
        entities = exp.select(*[exp.column(k, quoted=True) for k in join.keys]).distinct(
        ).from_(plan.rows("c")).where(exp.LTE(this=event, expression=as_of))
    return engine.tile_strategy().state(
        window_source(join, plan.common), plan.as_of, {f.name: f.dtype.sql for f in join.features},
        entities, {c.name: c.dtype for c in node.columns})


def _encode_states(batch: pa.RecordBatch, join: ViewJoin, layout: ViewLayout, as_of: int
                   ) -> Batch:
    """Tile states (Arrow) -> keys, values and expiry instants. A value's header holds the
    entity's latest event and the sync's ``as_of``, so the store's guard keeps the state of
    the latest sync."""
    suffixes = layout.key_suffixes([batch.column(k).to_pylist() for k in join.keys])
    latest: list[int] = batch.column(LATEST_AT).to_pylist()
    values = layout.encode_rows(latest, [as_of] * len(latest),
                                encode_states(batch, join.features))
    return Batch(suffixes, values, expiry(latest, join.features))


def _watermark(engine: Engine, plan: LatestPlan) -> tuple[int | None, int, bool]:
    """The next watermark (microseconds; the current one if nothing newer is visible), how
    many rows are future-dated, and whether any row newer than the watermark is visible, i.e.
    whether this sync writes anything (see ``watermark_query``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = engine.fetch_arrow(watermark_query(plan))
    done, future = (pc.cast(table.column(n).cast(pa.timestamp("us", tz="UTC")),
                            pa.int64())[0].as_py() for n in ("done", "future"))
    future_dated = int(table.column("future_dated")[0].as_py() or 0)
    pending = done is not None or future_dated > 0
    if done is None:
        return plan.changed_since, future_dated, pending
    return ((int(done) if future is None else min(int(done), int(future) - 1)), future_dated,
            pending)


@dataclass(frozen=True, slots=True)
class ViewPlan:
    """What one view's sync will do, found before anything is written (``Syncer.plan``)."""

    node: CompiledNode
    join: ViewJoin
    layout: ViewLayout
    meta: dict[str, str]
    reason: str | None  # why a full refresh, None for an incremental sync
    latest: LatestPlan
    watermark: int | None
    future_dated: int
    writes: bool  # a full refresh, or rows newer than the watermark to write
    seconds: float  # spent finding all this


class Syncer:
    """Runs one sync of selected online views from an engine session into a store, under a
    held ``lock`` (None for a dry run, which writes nothing)."""

    def __init__(self, project: CompiledProject, engine: Engine, store: OnlineStore,
                 lock: SyncLock | None, progress: Progress, batch_size: int,
                 warn: Callable[[str], None] = lambda _: None) -> None:
        self.project, self.engine, self.store, self.lock = project, engine, store, lock
        self.progress = progress
        self.batch_size = batch_size
        self.warn = warn
        self.manifest = manifest(project)
        self.state = lock.state if lock is not None else store.server_state()

    def refuse_breaking(self, nodes: list[CompiledNode]) -> None:
        """Refuse to overwrite live online data with a breaking definition change (a feature
        removed or retyped, keys changed, a feature's computation changed): the model reading
        it was trained on the old meaning. ``--full-refresh`` overrides."""
        problems = []
        for node in nodes:
            join = view_join(node, self.project)
            meta = self.store.meta(layout_for(node, join, self.store.config.namespace))
            if "manifest" not in meta or meta.get("definition") == node.hash:
                continue
            current = view_manifest(self.manifest, node.name)
            problems += [f"- {c.object}: {c.what} {c.detail}"
                         for c in breaking(diff(json.loads(meta["manifest"]), current))]
        if problems:
            raise CheckFailed("breaking changes to live online views; nothing was synced:\n"
                              + "\n".join(problems) + "\n  hint: review with fsql diff; run "
                              "fsql sync --full-refresh to replace the online data")

    def online_nodes(self, selectors: Selectors) -> list[CompiledNode]:
        chosen = self.project.graph.select(selectors)
        nodes = [n for n in self.project.nodes.values()
                 if n.kind == "view" and n.id in chosen and isinstance(n.definition, FeatureView)
                 and n.definition.online]
        if not nodes:
            raise RequestError("no online feature views selected (set online: true on a view)")
        return sorted(nodes, key=lambda n: n.name)

    def warnings(self) -> list[str]:
        """What the operator should know before this sync writes anything."""
        found = []
        if self.lock is not None and self.lock.took_over is not None:
            holder = self.lock.took_over.rsplit("|", 1)[1]
            found.append(f"took over a sync lock of server run_id {holder} (this server is "
                         f"{self.state.run_id}): the online store was restored from a snapshot "
                         "or failed over since that run took it, so that run cannot publish")
        if self.state.can_evict:
            found.append(f"the online store can evict keys (maxmemory {self.state.maxmemory:,} "
                         f"bytes, maxmemory-policy {self.state.policy}): a sync during which "
                         "keys are evicted fails (exit 4) and the next one rewrites the view; "
                         "set maxmemory-policy noeviction for an online store")
        return found

    def run(self, selectors: Selectors, full_refresh: bool, dry_run: bool,
            now: float | None = None, test: bool = True, allow_drop: bool = False
            ) -> SyncResult:
        """Sync the selected online views. With ``test``, their data tests must pass first
        (nothing is written otherwise); a full refresh dropping more than the profile's
        ``max_drop`` share of a view's entities fails unless ``allow_drop``."""
        started = time.perf_counter()
        as_of = micros_now(now if now is not None else self.store.clock())
        nodes = self.online_nodes(selectors)
        warnings = self.warnings()
        for warning in warnings:
            self.warn(warning)
        plans = [self.plan(node, as_of, full_refresh) for node in nodes]
        writing = [p.node for p in plans if p.writes]
        if test and writing:  # the gate covers what is written: views with nothing new skip it
            self.require_tests(writing)
        if not full_refresh:
            self.refuse_breaking(nodes)
        self.progress.start(len(nodes))
        results = []
        for plan in plans:
            self.progress.step(f"sync {plan.node.name}", None)
            result = self.sync_view(plan, dry_run, allow_drop)
            self.progress.step(f"sync {plan.node.name}", result.seconds)
            results.append(result)
        return SyncResult(tuple(results), iso_utc(as_of), dry_run,
                          time.perf_counter() - started, tuple(warnings))

    def require_tests(self, nodes: list[CompiledNode]) -> None:
        """The views' data tests, as ``fsql build`` runs them: a failure syncs nothing."""
        from fsql import quality

        for warned in quality.require_passing(
                self.project, self.engine, quality.targets(self.project, [n.id for n in nodes]),
                "nothing was synced", "sync with --no-test"):
            self.warn(f"data test {warned.summary()}")

    def full_reason(self, node: CompiledNode, layout: ViewLayout, meta: dict[str, str],
                    as_of: int, full_refresh: bool) -> str | None:
        """Why this view needs a full refresh, or None for an incremental sync."""
        if full_refresh:
            return "--full-refresh"
        if "generation" not in meta:
            return "first sync"
        if meta.get("definition") != node.hash:
            return "definition changed"
        if meta.get("schema") != layout.schema_fingerprint or meta.get("format") != FORMAT:
            return "online layout changed"
        stamped = ServerState.stamped(meta)
        if stamped is not None:
            evicted = self.state.evicted_since(stamped)
            if evicted:
                return (f"{evicted:,} keys were evicted from the online store since the last "
                        f"sync (maxmemory-policy {self.state.policy})")
            if evicted is None and self.state.can_evict:
                return ("the online store restarted since the last sync and can evict keys "
                        f"(maxmemory-policy {self.state.policy})")
        if meta.get("watermark") and int(meta["watermark"]) > as_of:
            return (f"the stored watermark {iso_utc(int(meta['watermark']))} is after this "
                    "sync's as_of (moved by a future-dated row before fsql capped it)")
        return None

    def plan(self, node: CompiledNode, as_of: int, full_refresh: bool) -> ViewPlan:
        """One view's sync, before anything is written: full or incremental, the next
        watermark, and whether it writes anything at all."""
        started = time.perf_counter()
        join = view_join(node, self.project)
        layout = layout_for(node, join, self.store.config.namespace)
        meta = self.store.meta(layout)
        reason = self.full_reason(node, layout, meta, as_of, full_refresh)
        changed = None if reason is not None or not meta.get("watermark") \
            else int(meta["watermark"])
        latest = LatestPlan(join, as_of, changed)
        watermark, future_dated, pending = _watermark(self.engine, latest)
        return ViewPlan(node, join, layout, meta, reason, latest, watermark, future_dated,
                        reason is not None or pending, time.perf_counter() - started)

    def sync_view(self, view: ViewPlan, dry_run: bool, allow_drop: bool = False
                  ) -> ViewSyncResult:
        started = time.perf_counter() - view.seconds
        node, join, layout, meta, plan = view.node, view.join, view.layout, view.meta, view.latest
        reason, watermark, as_of = view.reason, view.watermark, plan.as_of
        lock = self.lock
        if not dry_run:
            # a full refresh that died before publishing (its keys were never visible), or
            # after publishing but before deleting the generation it replaced
            for stale in ("pending_generation", "retired_generation"):
                if stale in meta:
                    self.store.drop_generation(layout, meta[stale], forget=stale)
        full = reason is not None
        encode: Callable[[pa.RecordBatch, ViewJoin, ViewLayout], Batch] = _encode_batch
        query = latest_rows_query(plan)
        if join.view.aggregations:
            query = _state_query(plan, self.engine, node)
            encode = partial(_encode_states, as_of=as_of)
        generation = meta.get("generation", "")
        if full and lock is not None:
            generation = self.store.new_generation(layout, lock)
        # a full refresh fills a generation nobody reads yet: no guard needed
        writer = ViewWriter(self.store.config, layout, join, generation,
                            None if lock is None else (lock.value, lock.state), not full, encode,
                            lock)
        # an embedded store is a redis-server this process started: only it writes there
        write = (self.engine.write_in_process if self.store.config.type == "embedded"
                 else self.engine.write_partitions)
        published = False
        try:
            tasks = write(query, self.batch_size, writer)
            counts, entities = self.collect(tasks)
            if full and not allow_drop:
                self.refuse_drop(layout, meta, entities)
            dropped = 0
            # entities online: those published, plus those incremental syncs created since
            online = entities if full else _online_entities(meta) + counts.created
            fields = {"watermark": "" if watermark is None else str(watermark),
                      "as_of": str(as_of), "synced_at": str(micros_now(time.time())),
                      "last_entities": str(entities), "online_entities": str(online)}
            if lock is not None and full:
                retired = meta.get("generation")
                self.store.publish(layout, {**fields, "generation": generation,
                                            "definition": node.hash,
                                            "schema": layout.schema_fingerprint,
                                            "format": FORMAT,
                                            "features": layout.stored_features,
                                            "key_kinds": json.dumps(layout.key_kinds),
                                            "manifest": json.dumps(view_manifest(self.manifest,
                                                                                 node.name))},
                                   lock, retired)
                published = True
                if retired is not None:
                    dropped = self.store.drop_generation(layout, retired,
                                                         forget="retired_generation")
            elif lock is not None:
                self.store.set_meta(layout, fields, lock)
        except BaseException:
            if full and lock is not None and not published:
                # best effort: this run's own generation, never published, never reused
                with contextlib.suppress(OnlineStoreError):
                    self.store.drop_generation(layout, generation, forget="pending_generation")
            raise
        return ViewSyncResult(node.name, "full" if full else "incremental", entities,
                              counts.written, counts.unchanged, counts.stale, dropped,
                              None if watermark is None else iso_utc(watermark),
                              time.perf_counter() - started, reason, view.future_dated,
                              len(tasks))

    def collect(self, tasks: list[TaskWrites]) -> tuple[WriteCounts, int]:
        """The writes of a view's tasks, summed, once every task succeeded: a task's store
        error is raised as it is; each task's counters are folded into the run's (so the
        publish checks every task's writes; see ``partition``)."""
        for task in tasks:
            if task.error is not None:
                raise OnlineStoreError(task.error)
        counts = WriteCounts()
        for task in tasks:
            if self.lock is not None and task.counters:
                self.store.fold(self.lock, task.scope, dict(task.counters))
            counts.add((task.written, task.unchanged, task.stale, task.created))
        return counts, sum(task.entities for task in tasks)

    def refuse_drop(self, layout: ViewLayout, meta: dict[str, str], entities: int) -> None:
        """A full refresh may not drop more than ``max_drop`` of the entities the view had
        online (an empty or truncated source would wipe it)."""
        before = _online_entities(meta)
        limit = self.store.config.max_drop
        if "generation" not in meta or before == 0 or (before - entities) / before <= limit:
            return
        raise CheckFailed(
            f"view '{layout.view}': this full refresh would drop {before - entities:,} of the "
            f"{before:,} entities online ({(before - entities) / before:.0%}, more than "
            f"max_drop {limit:.0%}); nothing was published, the previous data is still served.\n"
            "  hint: check the view's source (empty or truncated?); if the drop is intended, "
            "run fsql sync --allow-drop (or raise max_drop in the profile's online section)")


def _online_entities(meta: dict[str, str]) -> int:
    """How many entities a view has online, as its meta records it (data synced by older
    versions: the entities of its last sync)."""
    return int(meta.get("online_entities") or meta.get("last_entities") or 0)


def micros_now(seconds: float) -> int:
    return int(round(seconds * 1_000_000))
