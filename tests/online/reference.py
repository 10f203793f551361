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
