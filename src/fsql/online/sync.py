"""``fsql sync``: latest row per entity, from the same compiled views, into the online store.

Per online view, under the sync lock:

1. A view never synced, or whose definition hash changed, or ``--full-refresh``: write a new
   generation with every entity's latest row, publish it atomically, delete the old one.
2. Otherwise incremental: only rows whose watermark column (created timestamp if declared, else
   event timestamp) is newer than the stored watermark are read; the latest of them per entity
   goes through the store's guard, which keeps whichever of the stored and the new row is newer.
   This is exact because the store always holds the latest row among the rows at or below the
   watermark: a late row (old event time, new created time) is refused as stale.
3. The watermark moves only after every batch of the view was written, and never past a
   future-dated row, so an interrupted or crashed sync is completed by the next run. Rows
   deleted from a source are only dropped online by ``--full-refresh``.

Rows stream from the engine in Arrow record batches, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fsql.build import Progress
from fsql.compile import CompiledNode, CompiledProject, manifest
from fsql.definitions import FeatureView
from fsql.diff import breaking, diff, view_manifest
from fsql.engines.base import Engine
from fsql.errors import CheckFailed, OnlineStoreError, RequestError
from fsql.online.keys import FORMAT, INT_KEY, STR_KEY, ViewLayout, encode_column, iso_utc
from fsql.online.redis_store import Batch, RedisStore, WriteCounts
from fsql.pit import CREATED, TS, LatestPlan, ViewJoin, latest_rows_query, watermark_query

if TYPE_CHECKING:
    import pyarrow as pa

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT",
                  "UBIGINT"}
_STRING_TYPES = {"VARCHAR", "TEXT", "CHAR", "NVARCHAR", "NCHAR"}
LOCK_REFRESH_SECONDS = 10.0  # at most; a third of lock_timeout when that is shorter


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


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Summary of one ``fsql sync``."""

    views: tuple[ViewSyncResult, ...]
    as_of: str
    dry_run: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "dry_run": self.dry_run, "seconds": round(self.seconds, 3),
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


def _watermark(engine: Engine, plan: LatestPlan) -> int | None:
    """The next watermark (microseconds), or the current one if nothing newer is visible."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = engine.fetch_arrow(watermark_query(plan))
    done, future = (pc.cast(table.column(n).cast(pa.timestamp("us", tz="UTC")),
                            pa.int64())[0].as_py() for n in ("done", "future"))
    if done is None:
        return plan.changed_since
    return int(done) if future is None else min(int(done), int(future) - 1)


class Syncer:
    """Runs one sync of selected online views from an engine session into a store."""

    def __init__(self, project: CompiledProject, engine: Engine, store: RedisStore,
                 progress: Progress, batch_size: int) -> None:
        self.project, self.engine, self.store = project, engine, store
        self.progress = progress
        self.batch_size = batch_size
        self.manifest = manifest(project)
        self._token: str | None = None
        self._lock_refreshed = 0.0
        self._lock_refresh = min(LOCK_REFRESH_SECONDS, store.config.lock_timeout / 3)

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

    def online_nodes(self, selectors: Iterable[str]) -> list[CompiledNode]:
        chosen = self.project.graph.select(list(selectors))
        nodes = [n for n in self.project.nodes.values()
                 if n.kind == "view" and n.id in chosen and isinstance(n.definition, FeatureView)
                 and n.definition.online]
        if not nodes:
            raise RequestError("no online feature views selected (set online: true on a view)")
        return sorted(nodes, key=lambda n: n.name)

    def run(self, selectors: Iterable[str], full_refresh: bool, dry_run: bool,
            now: float | None = None) -> SyncResult:
        started = time.perf_counter()
        as_of = micros_now(now if now is not None else self.store.clock())
        nodes = self.online_nodes(selectors)
        self.progress.start(len(nodes))
        results = []
        if not dry_run:
            self._token = self.store.acquire_lock()
            self._lock_refreshed = time.monotonic()
        try:
            if not full_refresh:
                self.refuse_breaking(nodes)
            for node in nodes:
                self.progress.step(f"sync {node.name}", None)
                result = self.sync_view(node, as_of, full_refresh, dry_run)
                self.progress.step(f"sync {node.name}", result.seconds)
                results.append(result)
        except BaseException:
            # the error that stopped the run is the one to report: releasing the lock of a
            # store that went away fails too (the lock then expires after lock_timeout)
            with contextlib.suppress(OnlineStoreError):
                self._release_lock()
            raise
        self._release_lock()
        return SyncResult(tuple(results), iso_utc(as_of), dry_run, time.perf_counter() - started)

    def _release_lock(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            self.store.release_lock(token)

    def _keep_lock(self) -> None:
        if self._token is not None and time.monotonic() - self._lock_refreshed > \
                self._lock_refresh:
            self.store.refresh_lock(self._token)
            self._lock_refreshed = time.monotonic()

    def sync_view(self, node: CompiledNode, as_of: int, full_refresh: bool,
                  dry_run: bool) -> ViewSyncResult:
        started = time.perf_counter()
        join = view_join(node, self.project)
        layout = layout_for(node, join, self.store.config.namespace)
        meta = self.store.meta(layout)
        if not dry_run:
            # a full refresh that died before publishing (its keys were never visible), or
            # after publishing but before deleting the generation it replaced
            for stale in ("pending_generation", "retired_generation"):
                if stale in meta:
                    self.store.drop_generation(layout, int(meta[stale]), forget=stale)
                    self._keep_lock()
        full = (full_refresh or "generation" not in meta
                or meta.get("definition") != node.hash
                or meta.get("schema") != layout.schema_fingerprint
                or meta.get("format") != FORMAT)
        changed = None if full or not meta.get("watermark") else int(meta["watermark"])
        plan = LatestPlan(join, as_of, changed)
        watermark = _watermark(self.engine, plan)
        generation = (int(meta["generation"]) if not full else
                      (0 if dry_run else self.store.new_generation(layout)))
        counts, entities = WriteCounts(), 0
        for batch in self.engine.fetch_batches(latest_rows_query(plan), self.batch_size):
            encoded = _encode_batch(batch, join, layout)
            entities += len(encoded.values)
            if not dry_run:
                # a full refresh fills a generation nobody reads yet: no guard needed
                self.store.write(layout, generation, encoded, counts, guarded=not full)
                self._keep_lock()
        dropped = 0
        fields = {"watermark": "" if watermark is None else str(watermark),
                  "as_of": str(as_of), "synced_at": str(micros_now(time.time())),
                  "last_entities": str(entities)}
        if not dry_run and full:
            assert self._token is not None
            retired = int(meta["generation"]) if "generation" in meta else None
            self.store.publish(layout, {**fields, "generation": str(generation),
                                        "definition": node.hash,
                                        "schema": layout.schema_fingerprint, "format": FORMAT,
                                        "features": layout.stored_features,
                                        "key_kinds": json.dumps(layout.key_kinds),
                                        "manifest": json.dumps(view_manifest(self.manifest,
                                                                             node.name))},
                               self._token, retired)
            if retired is not None:
                dropped = self.store.drop_generation(layout, retired,
                                                     forget="retired_generation")
        elif not dry_run:
            assert self._token is not None
            self.store.set_meta(layout, fields, self._token)
        return ViewSyncResult(node.name, "full" if full else "incremental", entities,
                              counts.written, counts.unchanged, counts.stale, dropped,
                              None if watermark is None else iso_utc(watermark),
                              time.perf_counter() - started)


def micros_now(seconds: float) -> int:
    return int(round(seconds * 1_000_000))
