"""``fsql freshness``: is each view's data, and its online copy, younger than its SLA?

For every feature view with ``freshness: <duration>`` in its YAML:

* data age = now - the newest event timestamp in the view (at or before now);
* for online views, sync age = now - the last successful sync of that view, plus its watermark.

A view breaches when its data age, or (online) its sync age, exceeds the SLA. Rows whose
created or event time is after now are counted (``future_dated``): they do not breach, but a
clock or ingestion bug that dates rows ahead shows here (sync counts them the same way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from fsql.compile import CompiledProject
from fsql.definitions import FeatureView
from fsql.engines.base import Engine
from fsql.online.base import OnlineStore
from fsql.online.keys import iso_utc
from fsql.online.sync import layout_for, view_join
from fsql.output import duration
from fsql.pit import LatestPlan, common_instant, watermark_query


@dataclass(frozen=True, slots=True)
class Freshness:
    """One view's freshness against its SLA (ages in seconds)."""

    view: str
    sla_seconds: int
    newest_event: str | None
    data_age: float | None
    last_sync: str | None
    sync_age: float | None
    watermark: str | None
    breached: bool
    reason: str
    future_dated: int  # rows with a created/event time after now

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def _iso(micros: int | None) -> str | None:
    return None if micros is None else iso_utc(micros)


def check(project: CompiledProject, engine: Engine, store: OnlineStore | None,
          now: float | None = None) -> list[Freshness]:
    """Freshness of every view that declares an SLA."""
    import pyarrow as pa
    import pyarrow.compute as pc

    now_s = time.time() if now is None else now
    now_us = int(now_s * 1_000_000)
    results = []
    for node in sorted(project.nodes.values(), key=lambda n: n.name):
        view = node.definition
        if not isinstance(view, FeatureView) or view.freshness is None:
            continue
        join = view_join(node, project)
        ts, as_of = common_instant(join, now_us)
        newest_table = engine.fetch_arrow(
            exp.select(exp.alias_(exp.Max(this=ts), "newest", quoted=True))
            .from_(exp.to_table(node.relation, quoted=True))
            .where(exp.LTE(this=ts.copy(), expression=as_of)))
        future_dated = engine.fetch_arrow(watermark_query(LatestPlan(join, now_us))).column(
            "future_dated")[0].as_py() or 0
        column = newest_table.column(0).cast(pa.timestamp("us", tz="UTC"))
        newest = pc.cast(column, pa.int64())[0].as_py()
        data_age = None if newest is None else (now_us - newest) / 1e6
        sla = view.freshness.seconds
        reasons = []
        if data_age is None:
            reasons.append("the view has no rows")
        elif data_age > sla:
            reasons.append(f"newest event is {duration(data_age)} old")
        last_sync = watermark = sync_age = None
        if view.online and store is not None:
            meta = store.meta(layout_for(node, join, store.config.namespace))
            synced = int(meta["synced_at"]) if meta.get("synced_at") else None
            last_sync = _iso(synced)
            watermark = _iso(int(meta["watermark"])) if meta.get("watermark") else None
            sync_age = None if synced is None else (now_us - synced) / 1e6
            if sync_age is None:
                reasons.append("never synced")
            elif sync_age > sla:
                reasons.append(f"last sync was {duration(sync_age)} ago")
        results.append(Freshness(view.name, sla, _iso(newest), data_age, last_sync, sync_age,
                                 watermark, bool(reasons), "; ".join(reasons) or "ok",
                                 int(future_dated)))
    return results
