"""Brute-force reference for the online path: the latest row per entity as of an instant,
within ttl, written with plain loops (independent of fsql's SQL), from a view's rows."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

import duckdb

import fsql

UTC = dt.UTC


def as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)


def latest_rows(rows: list[dict[str, Any]], keys: list[str], ts: str, created: str | None,
                ttl_seconds: int | None, now: dt.datetime) -> dict[tuple[Any, ...],
                                                                 list[dict[str, Any]]]:
    """entity key -> the acceptable latest rows (several only for exact ties)."""
    by_entity: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = tuple(row[k] for k in keys)
        event = as_utc(row[ts])
        if any(k is None for k in key) or event is None or event > now:
            continue
        if ttl_seconds is not None and event < now - dt.timedelta(seconds=ttl_seconds):
            continue
        by_entity[key].append(row)
    result = {}
    for key, candidates in by_entity.items():
        def order(row: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
            made = as_utc(row[created]) if created else None
            return as_utc(row[ts]), made or dt.datetime.min.replace(tzinfo=UTC)  # type: ignore[return-value]

        best = max(order(r) for r in candidates)
        result[key] = [r for r in candidates if order(r) == best]
    return result


def view_rows(project: fsql.Project, view: str) -> list[dict[str, Any]]:
    """Every row of a feature view, as built offline (the input of ``latest_rows``)."""
    project.build(select=[view])
    con = duckdb.connect(str(project.target.offline.path), read_only=True)
    try:
        return con.sql(f'SELECT * FROM "{view}"').to_arrow_table().to_pylist()
    finally:
        con.close()


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def close(a: Any, b: Any) -> bool:
    """``same``, floats within a relative 1e-9 (float sums of an aggregation are added in
    another order online: README rule 9)."""
    if isinstance(a, float) and isinstance(b, float):
        return same(a, b) or math.isclose(a, b, rel_tol=1e-9)
    return same(a, b)


def window_rows(rows: list[dict[str, Any]], view: Any, keys: list[str],
                moments: list[dt.datetime]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """A view of aggregations as a reader sees it: entity key -> one expected row per moment
    (its latest event time, and each aggregation's value at that moment by
    ``tests/pit/window_reference.py``), for the entities that have online state at the
    first moment (rows in some window's reach); others read as empty windows."""
    from tests.pit.window_reference import Agg, micros, value_at

    aggs = [Agg(f.name, f.aggregation.function, f.aggregation.column,
                dt.timedelta(seconds=f.aggregation.window.seconds),
                dt.timedelta(seconds=f.aggregation.hop.seconds)) for f in view.features]
    first = micros(moments[0])
    reach = min((first // (a.hop // dt.timedelta(microseconds=1)))
                * (a.hop // dt.timedelta(microseconds=1)) - a.window // dt.timedelta(
                    microseconds=1) for a in aggs)
    by_entity: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = tuple(row[k] for k in keys)
        if None not in key and row[view.timestamp] is not None:
            by_entity[key].append(row)
    out = {}
    for key, own in by_entity.items():
        known = [r for r in own if micros(r[view.timestamp]) <= first]
        if not known or max(micros(r[view.timestamp]) for r in known) < reach:
            continue
        latest = max(as_utc(r[view.timestamp]) for r in known)  # type: ignore[type-var]
        out[key] = [{view.timestamp: latest,
                     **{a.name: value_at(a, known, keys, key, at, view.timestamp,
                                         view.created_timestamp) for a in aggs}}
                    for at in moments]
    return out
