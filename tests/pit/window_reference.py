"""Brute-force reference for time-window aggregations (README point-in-time rule 9), in plain
Python loops, independent of fsql: no SQL, no tiles, no sorting tricks.

The value at instant ``t`` of an aggregation with window ``w`` and hop ``h``: its function over
the rows with the same key (none null) and an event time ``e`` with
``floor(t / h) * h - w <= e <= t`` (``e < t`` with the exclusive cutoff), in microseconds since
the epoch. Functions skip null values; ``count`` without a column counts rows; ``last`` is the
non-null value of the greatest (event, created, value), a null created time the oldest; an
empty window gives count 0 and None for the rest. Sums are exact (integers, decimals, and
``fractions`` for floats, rounded once), so a float sum is the correctly rounded one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tests.pit.reference import instant

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def micros(value: Any) -> int:
    moment = instant(value)
    assert moment is not None
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Agg:
    name: str
    function: str
    column: str | None
    window: dt.timedelta
    hop: dt.timedelta


def value_at(agg: Agg, rows: Sequence[dict[str, Any]], keys: Sequence[str],
             key: Sequence[Any], at: Any, timestamp: str, created: str | None,
             cutoff: str = "inclusive") -> Any:
    """The aggregation's value for entity ``key`` at instant ``at``."""
    if at is None or any(k is None for k in key):
        chosen: list[dict[str, Any]] = []
    else:
        t = micros(at)
        hop, window = agg.hop // dt.timedelta(microseconds=1), agg.window // dt.timedelta(
            microseconds=1)
        start = (t // hop) * hop - window
        chosen = []
        for row in rows:
            if any(row[k] != v for k, v in zip(keys, key, strict=True)):
                continue
            if row[timestamp] is None:
                continue
            e = micros(row[timestamp])
            if start <= e and (e < t if cutoff == "exclusive" else e <= t):
                chosen.append(row)
    if agg.function == "count":
        return len([r for r in chosen if agg.column is None or r[agg.column] is not None])
    assert agg.column is not None
    values = [r[agg.column] for r in chosen if r[agg.column] is not None]
    if not values:
        return None
    if agg.function == "sum":
        return _exact_sum(values)
    if agg.function == "avg":
        total = _exact_sum(values)
        return float(Fraction(total) / len(values)) if isinstance(total, float) else (
            float(total) / len(values))
    if agg.function == "min":
        return min(values)
    if agg.function == "max":
        return max(values)
    assert agg.function == "last"
    best = None
    for row in chosen:
        if row[agg.column] is None:
            continue
        order = (micros(row[timestamp]),
                 micros(row[created]) if created and row[created] is not None else -(2**63),
                 row[agg.column])
        if best is None or order > best:
            best = order
    assert best is not None
    return best[2]


def _exact_sum(values: list[Any]) -> Any:
    if isinstance(values[0], float):
        return float(sum((Fraction(v) for v in values), Fraction(0)))
    if isinstance(values[0], Decimal):
        total = Decimal(0)
        for v in values:
            total = total + v
        return total
    return sum(values)
