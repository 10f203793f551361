"""Time-window aggregations (README point-in-time rule 9) on Spark.

``fsql.windows.window_values`` frames each aggregation with ``RANGE BETWEEN <expression>
PRECEDING``, the distance back to the hop boundary before the window, which differs per row;
Spark takes only literal frame bounds ("Frame bound value must be a literal"). So here the
window of a point at ``t`` (key ``k``, tile ``n = floor(t / h)``, ``w / h`` = ``tiles``) is
split at its hop boundary, both parts with constant frames over the union of the stage's rows
and the view's rows (``engines.spark.union``):

- the whole tiles ``n - tiles .. n - 1``: ``PARTITION BY key ORDER BY tile RANGE BETWEEN
  tiles PRECEDING AND 1 PRECEDING``;
- tile ``n`` up to ``t``: ``PARTITION BY key, tile ORDER BY time, point ROWS BETWEEN
  UNBOUNDED PRECEDING AND CURRENT ROW`` (the point sorts after the rows of its time, or
  before them with the exclusive cutoff);

and the two partial aggregates are combined: counts and sums add, minimum and maximum take
``least``/``greatest`` (which skip nulls), ``avg`` divides the combined sum by the combined
count. ``last`` needs no split: ``fsql.windows.last_in_window`` uses a running frame only.
Every spine row is a point (duplicates included), so no join back is needed.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from fsql.definitions import Aggregation
from fsql.engines.spark.union import AT, POINT, Stage, col, partition, provided, spine_rows
from fsql.engines.spark.union import union as stage_union
from fsql.pit import PitPlan, ViewJoin, audit_column, common_time, input_column, window_source
from fsql.windows import CREATED_AT, MARK, floor_div, last_in_window

T = exp.DataType.Type


def _tile(hop: int) -> str:
    return f"__fsql_tile{hop}"


def _input(i: int) -> str:
    """The union's name of the ``i``-th aggregated column (view names may clash with the
    spine's)."""
    return f"__fsql_in{i}"


class _Frames:
    """The two frames of an aggregation's window, for wrapping aggregate calls."""

    def __init__(self, join: ViewJoin, agg: Aggregation) -> None:
        self.join, self.agg = join, agg

    def current(self, call: exp.Expr) -> exp.Window:
        """Over the point's own tile, up to the point."""
        return exp.Window(
            this=call, partition_by=[*partition(self.join), col(_tile(self.agg.hop_micros))],
            order=exp.Order(expressions=[exp.Ordered(this=col(AT)), exp.Ordered(this=col(POINT))]),
            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                end="CURRENT ROW"))

    def before(self, call: exp.Expr) -> exp.Window:
        """Over the whole tiles before the point's, back to the window's start."""
        return exp.Window(
            this=call, partition_by=partition(self.join),
            order=exp.Order(expressions=[exp.Ordered(this=col(_tile(self.agg.hop_micros)))]),
            spec=exp.WindowSpec(kind="RANGE", start=exp.Literal.number(self.agg.tiles),
                                start_side="PRECEDING", end=exp.Literal.number(1),
                                end_side="PRECEDING"))

    def both(self, call: exp.Expr) -> tuple[exp.Expr, exp.Expr]:
        return self.current(call.copy()), self.before(call.copy())


def _added(a: exp.Expr, b: exp.Expr) -> exp.Expr:
    """``a + b`` where a null (an empty part's sum) adds nothing; null when both are."""
    return exp.func("coalesce", exp.Add(this=a, expression=b), a.copy(), b.copy())


def _value(agg: Aggregation, join: ViewJoin, dtype: exp.DataType) -> exp.Expr:
    """Rule 9's value of ``agg`` (non-``last``) at each point of the union."""
    frames = _Frames(join, agg)
    column = col(agg.column) if agg.column else col(MARK)
    if agg.function == "count":
        return exp.Add(this=frames.current(exp.Count(this=column)),
                       expression=frames.before(exp.Count(this=column.copy())))
    if agg.function in ("min", "max"):
        call = exp.Min(this=column) if agg.function == "min" else exp.Max(this=column)
        pick = exp.Least if agg.function == "min" else exp.Greatest
        now, earlier = frames.both(call)
        return pick(this=now, expressions=[earlier])
    total = _added(*frames.both(exp.Sum(this=column)))
    if agg.function == "sum":
        return exp.cast(total, dtype)
    assert agg.function == "avg", agg.function
    count = exp.Add(this=frames.current(exp.Count(this=column.copy())),
                    expression=frames.before(exp.Count(this=column.copy())))
    return exp.Div(this=exp.cast(total, exp.DataType.build(T.DOUBLE)),
                   expression=exp.Nullif(this=count, expression=exp.Literal.number(0)))


def window_stage(plan: PitPlan, join: ViewJoin, stage: Stage
                 ) -> tuple[Stage, dict[tuple[str, str], str]]:
    """``stage`` with a view of aggregations attached: with ``plan.audit`` the greatest event
    time in its widest window (``audit_column``), then its features under their output names,
    then its on-demand inputs (``input_column``). Returns the new stage and, per (view,
    feature), the column holding its value."""
    view = join.view
    common = common_time(plan, join)
    features = provided(join)
    source = window_source(replace(join, features=features), common)
    inputs = {name: _input(i) for i, name in enumerate(source.columns)}
    own: dict[str, exp.Expr] = {MARK: exp.Literal.number(1)}
    if source.created is not None:
        own[CREATED_AT] = exp.func("unix_micros", exp.cast(
            source.created.copy(), exp.DataType.build(T.TIMESTAMPTZ)))
    own.update({renamed: col(name) for name, renamed in inputs.items()})
    aggs = {f.name: replace(f.aggregation, column=inputs[f.aggregation.column]
                            if f.aggregation.column else None)
            for f in features if f.aggregation is not None}
    hops = sorted({a.hop_micros for a in aggs.values()})
    tiled = exp.select("*", *[exp.alias_(floor_div(col(AT), hop), _tile(hop), quoted=True)
                              for hop in hops]).from_(
        stage_union(plan, [join], stage, [own]))
    columns: list[exp.Expr] = []
    if plan.audit:
        widest = max(aggs.values(), key=lambda a: a.window_micros + a.hop_micros)
        event = exp.Max(this=exp.Case(ifs=[exp.If(
            this=exp.EQ(this=col(MARK), expression=exp.Literal.number(1)), true=col(AT))]))
        now, earlier = _Frames(join, widest).both(event)
        columns.append(exp.alias_(
            exp.func("timestamp_micros", exp.Greatest(this=now, expressions=[earlier])),
            audit_column(view.name), quoted=True))
    names = {f.name: n for f, n in zip(join.features, join.output_names, strict=True)}
    added: dict[tuple[str, str], str] = {}
    for feature in features:
        agg = aggs[feature.name]
        value = (last_in_window(agg, source, partition(join), col(AT))
                 if agg.function == "last" else _value(agg, join, feature.dtype.sql))
        name = names.get(feature.name) or input_column(view.name, feature.name)
        added[(view.name, feature.name)] = name
        columns.append(exp.alias_(value, name, quoted=True))
    windowed = exp.select(*[col(c) for c in stage.columns], col(POINT), *columns).from_(
        tiled.subquery("t"))
    carried = (*stage.columns, *[c.alias_or_name for c in columns])
    select = spine_rows(exp.select(*[col(c) for c in carried]).from_(windowed.subquery("w")))
    return Stage(select, carried), added
