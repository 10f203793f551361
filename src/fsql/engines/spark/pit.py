"""Spark's point-in-time strategy: a union and one running window per entity key, no ASOF join.

Generated from the engine-independent ``PitPlan`` (``fsql.pit``) as sqlglot expressions in
the Spark dialect. Views are attached in stages, each reading the previous one (the spine,
then the spine with the features so far); the latest-row views on the same join keys share a
stage, so they cost one shuffle and one sort together. A stage

1. unions its rows with the rows of its views that have an event time and a full key
   (``engines.spark.union``), each view row carrying its whole feature row as ONE struct
   (``ROW{i}`` for the i-th view; null in the spine's rows and the other views');
2. orders each entity's rows by (time, spine rows after the view rows of the same time -- or
   before them with the exclusive cutoff --, created time with a null created time first) and
   takes ``last(ROW{i}, true)`` over ``ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW``:
   the latest row of the view at or before each spine row (rules 1-2), as a whole, so a null
   feature value never brings back an older one (rule 4);
3. keeps the spine rows and applies each view's ttl as a CASE on the chosen row's time, in
   microseconds, not calendar intervals (rule 3).

The spine rows themselves pass through every stage, so each comes out exactly once and
duplicates stay duplicates (rule 5) without a row id or a join back. A spine row with a null
key lands in a partition without view rows; one with a null time sorts before every view row
of its entity: both match nothing (rule 1). Views of time-window aggregations take
``engines.spark.windows.window_stage`` instead, over the same kind of union.

Times are compared as ``unix_micros`` of instants, so the session time zone must be UTC (a
naive value then means UTC, rule 6).
"""

from __future__ import annotations

from sqlglot import exp

from fsql import pit
from fsql.engines.spark.ondemand import for_spark
from fsql.engines.spark.union import (
    AT,
    POINT,
    Stage,
    col,
    micros,
    partition,
    provided,
    spine_rows,
    union,
)
from fsql.engines.spark.windows import window_stage
from fsql.pit import SPINE, PitPlan, PitStrategy, ViewJoin, qualified

CREATED = "__fsql_created"  # a view row's created time, microseconds (null for spine rows)
ROW = "__fsql_row_struct"  # ROW{i}: a row of the i-th view: its times and features
CHOSEN = "__fsql_chosen"  # CHOSEN{i}: the last non-null ROW{i} (the chosen row)


def _field(feature: str) -> str:
    return f"f_{feature}"


class UnionWindowJoin(PitStrategy):
    """Per entity key, the union of spine and view rows with ``last(struct, true)`` over a
    running window partitioned by that key (see the module docstring)."""

    def query(self, plan: PitPlan) -> exp.Select:
        stage = Stage(plan.spine, tuple(c.name for c in plan.spine_columns))
        values: dict[tuple[str, str], exp.Expr] = {}  # (view, feature) -> its column
        for group in _groups(plan.joins):
            if group[0].view.aggregations:
                stage, added = window_stage(plan, group[0], stage)
            else:
                stage, added = attach_views(plan, group, stage)
            for (view, feature), name in added.items():
                values[(view, feature)] = qualified(name, SPINE)
        outputs = [name for join in plan.joins for name in _outputs(plan, join)]
        select = exp.select(*[qualified(c, SPINE) for c in (*plan.output_spine, *outputs)]
                            ).from_(stage.rows(SPINE))
        for od in plan.on_demand:
            for name, tree in pit.on_demand_columns(for_spark(od, plan.joins), values):
                select = select.select(exp.alias_(tree, name, quoted=True), copy=False)
        return select.order_by(*[qualified(c, SPINE) for c in plan.order_by], copy=False)


def _groups(joins: tuple[ViewJoin, ...]) -> list[list[ViewJoin]]:
    """The stages: the latest-row views on the same join keys share one (one union, one
    shuffle, one sort for all of them); each view of aggregations has its own."""
    groups: dict[tuple[str, ...], list[ViewJoin]] = {}
    out: list[list[ViewJoin]] = []
    for join in joins:
        if join.view.aggregations:
            out.append([join])
        elif join.keys in groups:
            groups[join.keys].append(join)
        else:
            groups[join.keys] = [join]
            out.append(groups[join.keys])
    return out


def _outputs(plan: PitPlan, join: ViewJoin) -> list[str]:
    """A view's output columns in the order of DuckDB's strategy: its audit columns
    (``plan.audit``), then its features."""
    audit = [pit.audit_column(join.view.name)] if plan.audit else []
    if plan.audit and join.created_type is not None and not join.view.aggregations:
        audit.append(pit.audit_created_column(join.view.name))
    return [*audit, *join.output_names]


def _row(join: ViewJoin, common: exp.DataType) -> tuple[exp.Expr, exp.Expr]:
    """A view row's created time in microseconds (null without one) and its struct: ``t``
    (event time, microseconds), ``c`` (created time) and every feature it provides."""
    view = join.view
    event = micros(pit.view_instant(view.timestamp, join.ts_type, common))
    fields = [exp.PropertyEQ(this=exp.to_identifier("t"), expression=event)]
    created: exp.Expr = exp.Null()
    if view.created_timestamp and join.created_type is not None:
        created = micros(pit.view_instant(view.created_timestamp, join.created_type, common))
        fields.append(exp.PropertyEQ(this=exp.to_identifier("c"), expression=created.copy()))
    fields += [exp.PropertyEQ(this=exp.to_identifier(_field(f.name), quoted=True),
                              expression=col(f.name)) for f in provided(join)]
    return created, exp.Struct(expressions=fields)


def attach_views(plan: PitPlan, joins: list[ViewJoin], stage: Stage
                 ) -> tuple[Stage, dict[tuple[str, str], str]]:
    """``stage`` with latest-row views on the same join keys attached: per view its audit
    columns (``plan.audit``), its features under their output names, then its on-demand
    inputs (``input_column``). Returns the new stage and, per (view, feature), the column
    holding its point-in-time value."""
    own: list[dict[str, exp.Expr]] = []
    for i, join in enumerate(joins):
        created, row = _row(join, pit.common_time(plan, join))
        own.append({CREATED: created, f"{ROW}{i}": row})
    order = exp.Order(expressions=[exp.Ordered(this=col(AT), nulls_first=True),
                                   exp.Ordered(this=col(POINT)),
                                   exp.Ordered(this=col(CREATED), nulls_first=True)])
    chosen = [exp.alias_(exp.Window(
        this=exp.func("last", col(f"{ROW}{i}"), exp.true()), partition_by=partition(joins[0]),
        order=order.copy(), spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED",
                                                start_side="PRECEDING", end="CURRENT ROW")),
        f"{CHOSEN}{i}", quoted=True) for i in range(len(joins))]
    windowed = exp.select(*[col(c) for c in stage.columns], col(AT), col(POINT), *chosen
                          ).from_(union(plan, joins, stage, own))
    columns: list[exp.Expr] = []
    added: dict[tuple[str, str], str] = {}
    for i, join in enumerate(joins):
        view = join.view

        def part(name: str, i: int = i) -> exp.Expr:
            return exp.Dot(this=col(f"{CHOSEN}{i}"),
                           expression=exp.to_identifier(name, quoted=True))

        if plan.audit:
            columns.append(exp.alias_(exp.func("timestamp_micros", part("t")),
                                      pit.audit_column(view.name), quoted=True))
            if join.created_type is not None:
                columns.append(exp.alias_(exp.func("timestamp_micros", part("c")),
                                          pit.audit_created_column(view.name), quoted=True))
        names = {f.name: n for f, n in zip(join.features, join.output_names, strict=True)}
        for feature in provided(join):
            value: exp.Expr = part(_field(feature.name))
            if view.ttl is not None:  # rule 3, inclusive, in microseconds
                horizon = exp.Sub(this=col(AT), expression=exp.Literal.number(
                    view.ttl.seconds * 1_000_000))
                value = exp.Case(ifs=[exp.If(this=exp.GTE(this=part("t"), expression=horizon),
                                             true=value)])
            name = names.get(feature.name) or pit.input_column(view.name, feature.name)
            added[(view.name, feature.name)] = name
            columns.append(exp.alias_(value, name, quoted=True))
    select = spine_rows(exp.select(*[col(c) for c in stage.columns], *columns).from_(
        windowed.subquery("w")))
    return Stage(select, (*stage.columns, *[c.alias_or_name for c in columns])), added
