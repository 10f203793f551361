"""Brute-force reference for the point-in-time join, in plain Python loops.

Deliberately independent of fsql: no SQL, no pandas, no sorting tricks. It implements the rules
of README "Point-in-time rules" literally, one spine row at a time:

1. candidates: rows of the view whose join-key values all equal the spine row's (a null key on
   either side never matches) and whose event timestamp is non-null and ``<=`` the spine time
   (``<`` with the ``exclusive`` feature cutoff);
2. the latest candidate wins: greatest event timestamp, ties broken by the greater created
   timestamp when the view declares one (a null created timestamp loses to any non-null one);
3. ttl: the winner counts only if ``spine_ts - ttl <= event_ts``, else every feature is null;
4. the winner's values are used as they are (a null stays null);
5. one output per spine row (a null spine time or key matches nothing).

Timestamps are compared as instants: naive values mean UTC.

Rows that tie exactly on the ordering key are unspecified by the rules (any one of them, as a
whole row), so ``lookup`` returns every acceptable feature tuple.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

UTC = dt.UTC


def instant(value: Any) -> dt.datetime | None:
    """A timestamp as an aware UTC datetime (naive means UTC; a date is midnight UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")


@dataclass(frozen=True)
class ViewSpec:
    """What the reference needs to know about one feature view."""

    keys: tuple[str, ...]
    timestamp: str
    features: tuple[str, ...]
    created: str | None = None
    ttl: dt.timedelta | None = None


def _same_entity(spec: ViewSpec, row: dict[str, Any], spine_row: dict[str, Any]) -> bool:
    for key in spec.keys:
        mine, theirs = row[key], spine_row[key]
        if mine is None or theirs is None or mine != theirs:
            return False
    return True


def _precedes(spec: ViewSpec, a: dict[str, Any], b: dict[str, Any]) -> int:
    """-1, 0 or 1: how candidate ``a`` orders against ``b`` (greater = later = preferred)."""
    ta, tb = instant(a[spec.timestamp]), instant(b[spec.timestamp])
    assert ta is not None and tb is not None
    if ta != tb:
        return -1 if ta < tb else 1
    if spec.created is None:
        return 0
    ca, cb = instant(a[spec.created]), instant(b[spec.created])
    if ca is None and cb is None:
        return 0
    if ca is None:  # a null created timestamp loses to any non-null one
        return -1
    if cb is None:
        return 1
    if ca == cb:
        return 0
    return -1 if ca < cb else 1


def lookup(spec: ViewSpec, rows: Sequence[dict[str, Any]], spine_row: dict[str, Any],
           spine_ts: str, cutoff: str = "inclusive") -> list[tuple[Any, ...]]:
    """Every acceptable feature tuple for one spine row (one tuple unless rows tie exactly).
    ``cutoff``: ``inclusive`` takes rows stamped at the spine time, ``exclusive`` does not."""
    assert cutoff in ("inclusive", "exclusive"), cutoff
    nothing = [tuple(None for _ in spec.features)]
    when = instant(spine_row[spine_ts])
    if when is None:
        return nothing
    best: list[dict[str, Any]] = []
    for row in rows:
        event = instant(row[spec.timestamp])
        if event is None or not _same_entity(spec, row, spine_row):
            continue
        if event > when or (cutoff == "exclusive" and event == when):
            continue
        if not best:
            best = [row]
            continue
        order = _precedes(spec, row, best[0])
        if order > 0:
            best = [row]
        elif order == 0:
            best.append(row)
    if not best:
        return nothing
    if spec.ttl is not None:
        event = instant(best[0][spec.timestamp])
        assert event is not None
        if event < when - spec.ttl:
            return nothing
    return [tuple(row[f] for f in spec.features) for row in best]


def expected(spec: ViewSpec, rows: Sequence[dict[str, Any]], spine: Sequence[dict[str, Any]],
             spine_ts: str, cutoff: str = "inclusive") -> list[list[tuple[Any, ...]]]:
    """``lookup`` for every spine row, in spine order."""
    return [lookup(spec, rows, spine_row, spine_ts, cutoff) for spine_row in spine]
