"""Time-window aggregations: their types, and the SQL of both paths, as sqlglot expressions.

Point-in-time rule 9 (the README states it for users). An aggregation with window ``w`` and hop
``h`` has, at instant ``t``, the value of its function over the view's rows with the same
entity key (none null) whose event time ``e`` satisfies::

    floor(t / h) * h - w  <=  e  <=  t        (e < t with feature_cutoff: exclusive)

with times in microseconds since the epoch (UTC) and the floor toward minus infinity: the window
reaches back to a hop boundary, so it covers between ``w`` and ``w + h`` of time and moves in
steps of ``h`` at its old end, while its new end is exact. Every row counts (rows with equal
times are separate events); functions skip null values, as SQL aggregates do; ``count`` with no
column counts rows; ``last`` is the non-null value of the row with the greatest (event time,
created time, value), a null created time being the oldest. An empty window gives count 0 and
null for every other function.

Offline (``window_values``), the rule is evaluated at each distinct (key, spine time) by one
window function per aggregation over the union of those points and the view's rows, its frame
reaching back to the window's start: ``RANGE BETWEEN t - start PRECEDING AND CURRENT ROW``
(``last``: the newest non-null value of a running frame, kept when it is in the window). The
cost grows with the rows and points, never with their product, whatever one entity holds.

Online (``TileStrategy.state``), a sync stores per entity and aggregation the partial
aggregate of each hop ("tile") that some window from the sync's ``as_of`` on can still need; a
reader combines the tiles of the window at its own clock (``online.tiles``). The query's shape
is the same on every engine; each engine spells its three non-portable constructs (times in
microseconds, an ordered list aggregate, ``avg``'s typed partial sums) in its own
``TileStrategy`` (``Engine.tile_strategy``), so that every engine stores the same values. Both
paths follow the same rule, so a value read at ``t >= as_of`` equals the training value at
``t`` over the rows known at the sync. Sums and averages of floats add the same numbers in
another order, so they agree to floating-point rounding, not always to the bit; every other
function and type is exact.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from fsql.definitions import Aggregation, Feature
from fsql.dtypes import normalize

T = exp.DataType.Type
INTEGERS = {T.TINYINT, T.SMALLINT, T.INT, T.BIGINT, T.UTINYINT, T.USMALLINT, T.UINT}
FLOATS = {T.FLOAT, T.DOUBLE}
POINT = "__fsql_point"  # 1 for the points asked about, 0 for the view's rows
MARK = "__fsql_mark"  # 1 for the view's rows (what count(*) counts)
AT = "__fsql_at"  # the instant, microseconds since the epoch
CREATED_AT = "__fsql_created_at"
LATEST = "__fsql_latest"  # greatest event time in the window (the leakage guard's audit)
TILE = "__fsql_tile"
OLDEST = -(2**63) + 1  # stands for a null created time in ``last``'s ordering


def result_type(function: str, column: exp.DataType | None) -> exp.DataType | None:
    """The type ``function`` gives over a column of type ``column`` (None: it does not apply)."""
    if function == "count":
        return exp.DataType.build(T.BIGINT)
    assert column is not None
    column = normalize(column)
    numeric = column.this in INTEGERS or column.this in FLOATS or column.this == T.DECIMAL
    if function == "avg":
        return exp.DataType.build(T.DOUBLE) if numeric else None
    if function == "sum":
        if column.this in INTEGERS:
            return exp.DataType.build(T.BIGINT)
        if column.this in FLOATS:
            return exp.DataType.build(T.DOUBLE)
        if column.this == T.DECIMAL and len(column.expressions) == 2:
            return exp.DataType.build(f"DECIMAL(38, {column.expressions[1].this.this})")
        return None
    return column  # min, max, last


def floor_div(value: exp.Expr, divisor: int) -> exp.Expr:
    """``floor(value / divisor)`` on integers, toward minus infinity (``//`` truncates)."""
    return exp.IntDiv(this=exp.paren(exp.Sub(this=value, expression=_mod(value.copy(),
                                                                          divisor))),
                      expression=exp.Literal.number(divisor))


def _mod(value: exp.Expr, divisor: int) -> exp.Expr:
    """``value mod divisor`` in ``[0, divisor)`` (SQL's ``%`` takes the dividend's sign)."""
    d = exp.Literal.number(divisor)
    inner = exp.Mod(this=exp.paren(value), expression=d)
    return exp.paren(exp.Mod(this=exp.paren(exp.Add(this=inner, expression=d.copy())),
                             expression=d.copy()))


def micros(value: exp.Expr) -> exp.Expr:
    return exp.func("epoch_us", value)


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table, quoted=True)


@dataclass(frozen=True, slots=True)
class WindowSource:
    """One view's rows as the aggregations read them: key columns, the event (and created)
    time as instants of one type, and the aggregated columns."""

    relation: str
    keys: tuple[str, ...]
    event: exp.Expr  # the event time as an instant (see pit.view_instant)
    created: exp.Expr | None
    features: tuple[Feature, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The view columns the aggregations read, once each."""
        return tuple(dict.fromkeys(f.aggregation.column for f in self.features
                                   if f.aggregation and f.aggregation.column))

    def rows(self, where: Sequence[exp.Expr] = (),
             micros: Callable[[exp.Expr], exp.Expr] = micros) -> exp.Select:
        """Keys, ``AT``, ``CREATED_AT`` (with a created time; both in microseconds by
        ``micros``) and the aggregated columns of the view's rows with an event time and a
        full key."""
        select = exp.select(*[_col(k) for k in self.keys],
                            exp.alias_(micros(self.event.copy()), AT, quoted=True))
        if self.created is not None:
            select = select.select(exp.alias_(micros(self.created.copy()), CREATED_AT,
                                              quoted=True))
        select = select.select(*[_col(c) for c in self.columns])
        conditions = [self.event.copy().is_(exp.null()).not_(),
                      *[_col(k).is_(exp.null()).not_() for k in self.keys], *where]
        return select.from_(exp.to_table(self.relation, quoted=True)).where(
            exp.and_(*conditions))


def _last_key(source: WindowSource, column: str) -> exp.Expr:
    """``last``'s ordering: (event time, created time, value), null when the value is null so
    that the row is skipped."""
    fields = [exp.PropertyEQ(this=exp.to_identifier("t"), expression=_col(AT))]
    if source.created is not None:
        fields.append(exp.PropertyEQ(this=exp.to_identifier("c"), expression=exp.func(
            "coalesce", _col(CREATED_AT), exp.Literal.number(OLDEST))))
    fields.append(exp.PropertyEQ(this=exp.to_identifier("v"), expression=_col(column)))
    return exp.Case(ifs=[exp.If(this=_col(column).is_(exp.null()).not_(),
                                true=exp.Struct(expressions=fields))])


def _combined(agg: Aggregation, source: WindowSource, dtype: exp.DataType,
              over: exp.Expr | None) -> exp.Expr:
    """The value of ``agg`` over the rows selected by ``over`` (a window spec; None: a plain
    GROUP BY), as one expression of type ``dtype``."""
    def with_over(call: exp.Expr) -> exp.Expr:
        if over is None:
            return call
        window = over.copy()
        window.set("this", call)
        return window

    column = _col(agg.column) if agg.column else _col(MARK)
    if agg.function == "count":
        return exp.func("coalesce", with_over(exp.Count(this=column)), exp.Literal.number(0))
    if agg.function == "sum":
        return exp.cast(with_over(exp.Sum(this=column)), dtype)
    if agg.function == "avg":
        total = exp.cast(with_over(exp.Sum(this=column)), exp.DataType.build(T.DOUBLE))
        return exp.Div(this=total, expression=exp.Nullif(
            this=with_over(exp.Count(this=column.copy())), expression=exp.Literal.number(0)))
    if agg.function in ("min", "max"):
        call = exp.Min(this=column) if agg.function == "min" else exp.Max(this=column)
        return with_over(call)
    assert agg.function == "last" and agg.column is not None
    return with_over(exp.ArgMax(this=column, expression=_last_key(source, agg.column)))


def window_values(source: WindowSource, points: exp.Select, exclusive: bool,
                  types: dict[str, exp.DataType], latest: bool = False) -> exp.Select:
    """Rule 9 at every point of ``points`` (key columns and ``AT``, distinct): its key
    columns, ``AT``, each aggregation under its feature name, and with ``latest`` the
    greatest event time in the widest window (``LATEST``, for the leakage guard)."""
    # POINT: 0 for the view's rows; for the points 1 (inclusive: after the rows of their
    # instant in ``last``'s running order) or -1 (exclusive: before them)
    rows = source.rows().select(exp.alias_(exp.Literal.number(1), MARK, quoted=True),
                                exp.alias_(exp.Literal.number(0), POINT, quoted=True))
    width = len(rows.selects)
    asked = points.select(*[exp.Null() for _ in range(width - len(points.selects) - 2)],
                          exp.alias_(exp.Null(), MARK, quoted=True),
                          exp.alias_(exp.Literal.number(-1 if exclusive else 1), POINT,
                                     quoted=True))
    union = exp.union(rows, asked, distinct=False).subquery("u")
    at = _col(AT)
    order = exp.Order(expressions=[exp.Ordered(this=at.copy())])
    partition = [_col(k) for k in source.keys]

    def frame(reach: exp.Expr) -> exp.Expr:
        return exp.Window(partition_by=[p.copy() for p in partition], order=order.copy(),
                          spec=exp.WindowSpec(
                              kind="RANGE", start=reach, start_side="PRECEDING",
                              end=exp.Literal.number(1) if exclusive else "CURRENT ROW",
                              end_side="PRECEDING" if exclusive else None))

    select = exp.select(*[_col(k) for k in source.keys], at.copy())
    widest: Aggregation | None = None
    for feature in source.features:
        agg = feature.aggregation
        assert agg is not None
        if widest is None or _reach_max(agg) > _reach_max(widest):
            widest = agg
        value = (last_in_window(agg, source, partition, at) if agg.function == "last" else
                 _combined(agg, source, types[feature.name], frame(reach(agg, at.copy()))))
        select = select.select(exp.alias_(value, feature.name, quoted=True))
    assert widest is not None
    if latest:
        greatest = frame(reach(widest, at.copy()))
        greatest.set("this", exp.Max(this=exp.Case(ifs=[exp.If(
            this=exp.EQ(this=_col(MARK), expression=exp.Literal.number(1)), true=at.copy())])))
        select = select.select(exp.alias_(greatest, LATEST, quoted=True))
    return select.from_(union).qualify(exp.NEQ(this=_col(POINT),
                                               expression=exp.Literal.number(0)))


def last_in_window(agg: Aggregation, source: WindowSource, partition: list[exp.Column],
          at: exp.Column) -> exp.Expr:
    """``last`` without a windowed ``arg_max`` over structs (slow): the newest non-null value
    up to the point, in a running frame ordered by (event time, point, created time, value),
    counts when its event time is in the window. The same row as rule 9's greatest (event,
    created, value): the newest non-null value at or before the point is in the window if any
    is."""
    assert agg.column is not None
    value = _col(agg.column)
    order = [exp.Ordered(this=at.copy()), exp.Ordered(this=_col(POINT))]
    if source.created is not None:
        order.append(exp.Ordered(this=_col(CREATED_AT), nulls_first=True))
    order.append(exp.Ordered(this=value.copy(), nulls_first=True))

    def running(call: exp.Expr) -> exp.Window:
        return exp.Window(this=call, partition_by=[p.copy() for p in partition],
                          order=exp.Order(expressions=[o.copy() for o in order]),
                          spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED",
                                              start_side="PRECEDING", end="CURRENT ROW"))

    newest = running(exp.Max(this=exp.Case(ifs=[exp.If(this=value.copy().is_(exp.null()).not_(),
                                                       true=at.copy())])))
    start = exp.Sub(this=at.copy(), expression=reach(agg, at.copy()))
    return exp.Case(ifs=[exp.If(this=exp.GTE(this=newest, expression=start),
                                true=running(exp.IgnoreNulls(this=exp.LastValue(
                                    this=value.copy()))))])


def reach(agg: Aggregation, at: exp.Expr) -> exp.Expr:
    """How far before ``at`` the window starts: ``at - (floor(at / h) * h - w)``."""
    return exp.paren(exp.Add(this=_mod(at, agg.hop_micros),
                             expression=exp.Literal.number(agg.window_micros)))


def _reach_max(agg: Aggregation) -> int:
    return agg.window_micros + agg.hop_micros


# -- the online state: partial aggregates per tile --------------------------------------------

def hop_groups(features: Sequence[Feature]) -> dict[int, list[Feature]]:
    """Aggregation features by hop (microseconds), in declared order."""
    groups: dict[int, list[Feature]] = {}
    for feature in features:
        assert feature.aggregation is not None
        groups.setdefault(feature.aggregation.hop_micros, []).append(feature)
    return groups


def partial_columns(feature: Feature) -> tuple[str, ...]:
    """The columns of a feature's state: tile numbers, then its partial aggregates (``avg``:
    sums and counts)."""
    name = feature.name
    extra = (f"{name}__n",) if feature.aggregation and feature.aggregation.function == "avg" else ()
    return (f"{name}__k", f"{name}__p", *extra)


def _partials(feature: Feature, source: WindowSource, dtype: exp.DataType,
              strategy: TileStrategy, inputs: Mapping[str, exp.DataType]) -> list[exp.Expr]:
    """One tile's partial aggregate(s) of ``feature`` (GROUP BY key and tile)."""
    agg = feature.aggregation
    assert agg is not None
    if agg.function == "avg":
        assert agg.column is not None
        return [strategy.partial_sum(_col(agg.column), inputs.get(agg.column)),
                exp.Count(this=_col(agg.column))]
    if agg.function == "sum":
        return [exp.cast(exp.Sum(this=_col(agg.column or MARK)), dtype)]
    return [_combined(agg, source, dtype, None)]


class TileStrategy(abc.ABC):
    """How an engine spells the tile state's SQL (``Engine.tile_strategy``): the query shape
    is ``state``'s, for every engine; an engine gives the three constructs that differ."""

    @abc.abstractmethod
    def micros(self, instant: exp.Expr) -> exp.Expr:
        """An instant as microseconds since the epoch (UTC)."""

    @abc.abstractmethod
    def ordered_list(self, value: exp.Expr, order: exp.Expr, where: exp.Expr) -> exp.Expr:
        """The aggregate list of ``value`` over the group's rows where ``where`` holds,
        ascending by ``order`` (unique in the group), null values kept; null or empty for no
        such rows (``online.tiles.encode_states`` reads both as no tiles)."""

    @abc.abstractmethod
    def partial_sum(self, column: exp.Column, dtype: exp.DataType | None) -> exp.Expr:
        """``avg``'s partial sum of ``column`` (of type ``dtype``, None if unknown) typed as
        DuckDB's ``sum`` types it (integers: DECIMAL(38, 0)), so that the values stored online
        are the same whichever engine synced them."""

    def state(self, source: WindowSource, as_of: int, types: dict[str, exp.DataType],
              entities: exp.Select | None = None,
              inputs: Mapping[str, exp.DataType] | None = None) -> exp.Select:
        """Per entity with rows in some window from ``as_of`` on: for each aggregation, the
        tiles those windows can still need (``floor(as_of / h) - w / h`` to ``floor(as_of /
        h)``) as parallel lists of tile numbers and partial aggregates (``partial_columns``),
        and ``LATEST`` (the greatest event time among them). Rows with an event after
        ``as_of`` are left out. ``entities`` (key columns) limits it to those entities (an
        incremental sync); ``inputs`` holds the types of the view's columns."""
        per_group: list[exp.Select] = []
        for hop, features in hop_groups(source.features).items():
            top = as_of // hop
            oldest = top - max(f.aggregation.tiles for f in features if f.aggregation)
            at = _col(AT)
            event = self.micros(source.event.copy())
            rows = source.rows([exp.LTE(this=event, expression=exp.Literal.number(as_of)),
                                exp.GTE(this=event.copy(),
                                        expression=exp.Literal.number(oldest * hop))],
                               micros=self.micros)
            rows = rows.select(exp.alias_(exp.Literal.number(1), MARK, quoted=True))
            if entities is not None:
                rows = rows.join(entities.subquery("changed"),
                                 using=[exp.to_identifier(k, quoted=True) for k in source.keys])
            tiles = exp.select(*[_col(k) for k in source.keys],
                               exp.alias_(floor_div(at.copy(), hop), TILE, quoted=True),
                               exp.alias_(exp.Max(this=at.copy()), LATEST, quoted=True))
            for feature in features:
                names = partial_columns(feature)[1:]
                partials = _partials(feature, source, types[feature.name], self, inputs or {})
                for name, partial in zip(names, partials, strict=True):
                    tiles = tiles.select(exp.alias_(partial, name, quoted=True))
            tiles = tiles.from_(rows.subquery("r")).group_by(
                *[_col(k) for k in source.keys], exp.column(TILE, quoted=True))
            state = exp.select(*[_col(k) for k in source.keys],
                               exp.alias_(exp.Max(this=_col(LATEST)), LATEST, quoted=True))
            for feature in features:
                agg = feature.aggregation
                assert agg is not None
                # the tiles some window from as_of on can reach, and that hold something for
                # it (a tile whose values are all null adds nothing: readers never see it)
                partial = _col(partial_columns(feature)[-1])
                holds = (exp.GT(this=partial, expression=exp.Literal.number(0))
                         if agg.function in ("count", "avg") else partial.is_(exp.null()).not_())
                needed = exp.and_(exp.GTE(this=_col(TILE),
                                          expression=exp.Literal.number(top - agg.tiles)), holds)
                for name in partial_columns(feature):
                    value = _col(TILE) if name.endswith("__k") else _col(name)
                    listed = self.ordered_list(value, _col(TILE), needed.copy())
                    state = state.select(exp.alias_(listed, name, quoted=True))
            per_group.append(state.from_(tiles.subquery("t")).group_by(
                *[_col(k) for k in source.keys]))
        if len(per_group) == 1:
            return per_group[0]
        return _outer_join(per_group, source.keys)


def _outer_join(parts: list[exp.Select], keys: tuple[str, ...]) -> exp.Select:
    """The per-group states side by side, one row per entity found in any of them."""
    aliases = [f"g{i}" for i in range(len(parts))]
    select = exp.select(*[exp.alias_(exp.func("coalesce", *[_col(k, a) for a in aliases]), k,
                                     quoted=True) for k in keys])
    present = [exp.func("coalesce", _col(LATEST, a), exp.Literal.number(OLDEST))
               for a in aliases]  # DuckDB's greatest() is null when any argument is
    latest = exp.Greatest(this=present[0], expressions=present[1:])
    select = select.select(exp.alias_(latest, LATEST, quoted=True))
    for part, alias in zip(parts, aliases, strict=True):
        select = select.select(*[_col(e.alias_or_name, alias) for e in part.selects
                                 if e.alias_or_name not in (*keys, LATEST)])
    select = select.from_(parts[0].subquery(aliases[0]))
    for part, alias in zip(parts[1:], aliases[1:], strict=True):
        condition = exp.and_(*[exp.EQ(this=_col(k, alias), expression=exp.func(
            "coalesce", *[_col(k, a) for a in aliases[:aliases.index(alias)]])) for k in keys])
        select = select.join(part.subquery(alias), on=condition, join_type="full outer")
    return select
