"""The online state of aggregation views: what ``fsql sync`` stores per entity and aggregation,
and the value a reader computes from it at its own clock (README point-in-time rule 9; the SQL
that makes the tiles is ``windows.tile_state``).

Each aggregation's stored value is ``[tiles, partials]`` (``avg``: ``[tiles, sums, counts]``):
the numbers of the hops ("tiles") holding rows, ascending, and the partial aggregate of each.
At instant ``t`` the window holds tiles ``floor(t / h) - w / h`` to ``floor(t / h)``; tiles
after ``t`` cannot be there when ``t`` is at or after the sync's ``as_of``. A later push API can
update the same state: add a row to its tile's partials and drop tiles no window can reach.
"""

from __future__ import annotations

import decimal
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fsql.definitions import Aggregation, Feature
from fsql.online.keys import encode_column

if TYPE_CHECKING:
    import pyarrow as pa

_EXACT = decimal.Context(prec=100)  # decimal sums are exact (DuckDB: DECIMAL(38, s))


def partial_columns(feature: Feature) -> tuple[str, ...]:
    """The columns ``windows.tile_state`` gives for a feature: tiles, partials (and counts)."""
    from fsql.windows import partial_columns as columns

    return columns(feature)


def encode_states(batch: pa.RecordBatch, features: Sequence[Feature]) -> list[list[Any]]:
    """``tile_state`` rows -> one column per feature of msgpack-ready states."""
    columns = []
    for feature in features:
        parts = [batch.column(name).to_pylist() for name in partial_columns(feature)]
        encoders = [_encoder(feature, i) for i in range(len(parts))]
        states: list[Any] = []
        for row in zip(*parts, strict=True):
            if row[0] is None:  # no rows in any of this feature's tiles
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


def well_formed(state: Any, agg: Aggregation) -> bool:
    """Whether a stored value has the shape of ``agg``'s state."""
    width = 3 if agg.function == "avg" else 2
    return (type(state) is list and len(state) == width
            and all(type(part) is list for part in state)
            and len({len(part) for part in state}) == 1)


def window_value(feature: Feature, state: list[list[Any]], now: int) -> Any:
    """The value of an aggregation at ``now`` (microseconds since the epoch) from its state, as
    msgpack-ready data (the feature's converter makes the Python value). Raises ``ValueError``
    or ``TypeError`` on a state that cannot be read."""
    agg = feature.aggregation
    assert agg is not None
    tiles = state[0]
    top = now // agg.hop_micros
    lo, hi = bisect_left(tiles, top - agg.tiles), bisect_right(tiles, top)
    parts = state[1][lo:hi]
    function = agg.function
    if function == "count":
        return sum(parts)
    present = [p for p in parts if p is not None]
    if function == "avg":
        counts = sum(state[2][lo:hi])
        if not counts:
            return None
        return float(_total(present)) / counts
    if not present:
        return None
    if function == "last":
        return present[-1]
    decimals = feature.dtype.name.startswith("decimal")
    if function == "sum":
        total = _total(present)
        return str(total) if decimals else total
    values = [Decimal(p) for p in present] if decimals else present
    chosen = _extreme(values, function == "max")
    return str(chosen) if decimals else chosen


def _total(values: list[Any]) -> Any:
    """Partial sums added in tile order (decimal: exactly)."""
    if values and isinstance(values[0], (Decimal, str)):
        total = Decimal(0)
        for value in values:
            total = _EXACT.add(total, Decimal(value))
        return total
    total_value = values[0] if values else 0
    for value in values[1:]:
        total_value += value
    return total_value


def _extreme(values: list[Any], largest: bool) -> Any:
    """min or max as DuckDB orders values: NaN is the greatest float."""
    if type(values[0]) is float and any(math.isnan(v) for v in values):
        if largest:
            return math.nan
        values = [v for v in values if not math.isnan(v)] or [math.nan]
    return max(values) if largest else min(values)
