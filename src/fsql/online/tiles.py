"""The online state of aggregation views: what ``fsql sync`` stores per entity and aggregation,
and the value a reader computes from it at its own clock (README point-in-time rule 9; the SQL
that makes the tiles is ``windows.TileStrategy.state``).

Each aggregation's stored value is ``[tiles, partials]`` (``avg``: ``[tiles, sums, counts]``):
the numbers of the hops ("tiles") holding rows, ascending, and the partial aggregate of each.
At instant ``t`` the window holds tiles ``floor(t / h) - w / h`` to ``floor(t / h)``; tiles
after ``t`` cannot be there when ``t`` is at or after the sync's ``as_of``. A later push API can
update the same state: add a row to its tile's partials and drop tiles no window can reach.
"""

from __future__ import annotations

import decimal
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fsql.definitions import Feature
from fsql.online.keys import encode_column

if TYPE_CHECKING:
    import pyarrow as pa

_EXACT = decimal.Context(prec=100)  # decimal sums are exact (DuckDB: DECIMAL(38, s))


def partial_columns(feature: Feature) -> tuple[str, ...]:
    """The columns ``windows.TileStrategy.state`` gives for a feature: tiles, partials (and
    counts)."""
    from fsql.windows import partial_columns as columns

    return columns(feature)


def encode_states(batch: pa.RecordBatch, features: Sequence[Feature]) -> list[list[Any]]:
    """Tile state rows (``windows.TileStrategy.state``, from any engine) -> one column per
    feature of msgpack-ready states."""
    columns = []
    for feature in features:
        parts = [batch.column(name).to_pylist() for name in partial_columns(feature)]
        encoders = [_encoder(feature, i) for i in range(len(parts))]
        states: list[Any] = []
        for row in zip(*parts, strict=True):
            if not row[0]:  # no rows in any of this feature's tiles (DuckDB: null, Spark: [])
                states.append([[] for _ in row])
            else:
                states.append([encode(list(values)) for encode, values
                               in zip(encoders, row, strict=True)])
        columns.append(states)
    return columns


def _encoder(feature: Feature, part: int) -> Callable[[list[Any]], list[Any]]:
    """How part ``part`` of a feature's state is stored: tile numbers and counts as they are,
    partial values the way the feature's values are stored (decimal sums as text)."""
    agg = feature.aggregation
    assert agg is not None
    if part == 0 or (agg.function == "avg" and part == 2) or agg.function == "count":
        return lambda values: values
    if agg.function == "avg":  # sums of the column: decimals as text, numbers as they are
        return lambda values: [str(v) if isinstance(v, Decimal) else v for v in values]
    return lambda values: encode_column(values, feature)


def expiry(latest: Sequence[int], features: Sequence[Feature]) -> list[int]:
    """When each entity's state can go (Unix milliseconds, rounded up): once no window of its
    features reaches its latest row (``latest``, microseconds)."""
    reach = [(f.aggregation.hop_micros, f.aggregation.tiles) for f in features
             if f.aggregation is not None]
    out = []
    for event in latest:
        gone = max(((event // hop) + tiles + 1) * hop for hop, tiles in reach)
        out.append(-(-gone // 1000))
    return out


_BAD_STATE = (TypeError, ValueError, IndexError, ArithmeticError)


def window_values(feature: Feature, states: Sequence[Any], now: int
                  ) -> tuple[list[Any], list[int]]:
    """The value of an aggregation at ``now`` (microseconds since the epoch) for each stored
    state (None: no state, an empty window), as msgpack-ready data (the feature's converter
    makes the Python value), and the positions of states that cannot be read (their value is
    None). Column-wise: the window's tiles are found once per request, each state costs two
    bisections and one slice."""
    agg = feature.aggregation
    assert agg is not None
    top = now // agg.hop_micros
    low = top - agg.tiles
    width = 3 if agg.function == "avg" else 2
    combine = _combiner(feature)
    empty = 0 if agg.function == "count" else None

    def one(state: Any) -> Any:
        if state is None:
            return empty
        tiles = state[0]
        if len(state) != width or len(tiles) != len(state[1]) or type(tiles) is not list:
            raise ValueError("not a tile state")
        lo = bisect_left(tiles, low)
        hi = bisect_right(tiles, top, lo)
        return empty if lo == hi else combine(state, lo, hi)

    try:  # the usual case: every state well formed
        return [one(state) for state in states], []
    except _BAD_STATE:
        pass
    values: list[Any] = []
    bad: list[int] = []
    for i, state in enumerate(states):  # again one by one, to tell which cannot be read
        try:
            values.append(one(state))
        except _BAD_STATE:
            values.append(None)
            bad.append(i)
    return values, bad


def window_value(feature: Feature, state: Any, now: int) -> Any:
    """``window_values`` of one state; raises ``ValueError`` when it cannot be read."""
    [value], bad = window_values(feature, [state], now)
    if bad:
        raise ValueError("not a tile state")
    return value


def _combiner(feature: Feature) -> Callable[[list[Any], int, int], Any]:
    """The function combining tiles ``lo:hi`` of a state (never empty; a stored tile always
    holds something: ``windows.TileStrategy.state``) into the aggregation's value."""
    agg = feature.aggregation
    assert agg is not None
    function = agg.function
    decimals = feature.dtype.name.startswith("decimal")
    if function == "count":
        return lambda state, lo, hi: sum(state[1][lo:hi])
    if function == "last":
        return lambda state, lo, hi: state[1][hi - 1]
    if function == "avg":
        return lambda state, lo, hi: float(_total(state[1][lo:hi])) / sum(state[2][lo:hi])
    if function == "sum":
        if decimals:
            return lambda state, lo, hi: str(_total(state[1][lo:hi]))
        return lambda state, lo, hi: _total(state[1][lo:hi])
    largest = function == "max"
    if decimals:
        return lambda state, lo, hi: str(_extreme([Decimal(p) for p in state[1][lo:hi]],
                                                  largest))
    return lambda state, lo, hi: _extreme(state[1][lo:hi], largest)


def _total(values: list[Any]) -> Any:
    """Partial sums added in tile order (decimal: exactly)."""
    if type(values[0]) is str:
        total = Decimal(0)
        for value in values:
            total = _EXACT.add(total, Decimal(value))
        return total
    return sum(values[1:], values[0])  # left to right, from the first (keeps -0.0)


def _extreme(values: list[Any], largest: bool) -> Any:
    """min or max as DuckDB orders values: NaN is the greatest float."""
    chosen = max(values) if largest else min(values)
    if type(chosen) is float and sum(values) != sum(values):  # a NaN (or inf - inf) in there
        nans = [v for v in values if v != v]
        if nans:
            return nans[0] if largest else min([v for v in values if v == v] or nans)
    return chosen
