"""Spark's point-in-time strategy: a union and one running window per view, no ASOF join.

Generated from the engine-independent ``PitPlan`` (``fsql.pit``) as sqlglot expressions in
the Spark dialect. Views are attached one after another; each stage reads the previous one
(the spine, then the spine with the features so far) and

1. unions its rows with the view's rows that have an event time and a full key
   (``engines.spark.union``), each view row carrying its whole feature row as ONE struct
   (only spine rows have a null struct);
2. orders each entity's rows by (time, spine rows after the view's rows of the same time -- or
   before them with the exclusive cutoff --, created time with a null created time first) and
   takes ``last(struct, true)`` over ``ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW``:
   the latest row at or before each spine row (rules 1-2), as a whole, so a null feature
   value never brings back an older one (rule 4);
3. keeps the spine rows and applies the ttl as a CASE on the chosen row's time, in
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
from fsql.engines.spark.union import AT, POINT, Stage, col, micros, partition, spine_rows, union
from fsql.engines.spark.windows import window_stage
from fsql.pit import SPINE, PitPlan, PitStrategy, ViewJoin, qualified

CREATED = "__fsql_created"  # a view row's created time, microseconds (null for spine rows)
ROW = "__fsql_row_struct"  # a view row: its event time, created time and features
CHOSEN = "__fsql_chosen"  # the row chosen for a spine row: the last non-null ROW


def _field(feature: str) -> str:
    return f"f_{feature}"


class UnionWindowJoin(PitStrategy):
    """Per view, the union of spine and view rows with ``last(struct, true)`` over a running
    window partitioned by the entity key (see the module docstring)."""

    def query(self, plan: PitPlan) -> exp.Select:
        stage = Stage(plan.spine, tuple(c.name for c in plan.spine_columns))
        values: dict[tuple[str, str], exp.Expr] = {}  # (view, feature) -> its column
        outputs: list[str] = []
        for join in plan.joins:
            attach = window_stage if join.view.aggregations else attach_view
            before = len(stage.columns)
            stage, columns = attach(plan, join, stage)
            for feature, name in columns.items():
                values[(join.view.name, feature)] = qualified(name, SPINE)
            hidden = {pit.input_column(join.view.name, f.name) for f in join.inputs}
            outputs += [c for c in stage.columns[before:] if c not in hidden]
        select = exp.select(*[qualified(c, SPINE) for c in (*plan.output_spine, *outputs)]
                            ).from_(stage.rows(SPINE))
        for od in plan.on_demand:
            for name, tree in pit.on_demand_columns(for_spark(od, plan.joins), values):
                select = select.select(exp.alias_(tree, name, quoted=True), copy=False)
        return select.order_by(*[qualified(c, SPINE) for c in plan.order_by], copy=False)


def attach_view(plan: PitPlan, join: ViewJoin, stage: Stage) -> tuple[Stage, dict[str, str]]:
    """``stage`` with one (latest-row) view attached: its audit columns (``plan.audit``), its
    features under their output names, then its on-demand inputs (``input_column``). Returns
    the new stage and, per feature, the column holding its point-in-time value."""
    view = join.view
    common = pit.common_time(plan, join)
    event = micros(pit.view_instant(view.timestamp, join.ts_type, common))
    fields = [exp.PropertyEQ(this=exp.to_identifier("t"), expression=event)]
    created: exp.Expr = exp.Null()
    if view.created_timestamp and join.created_type is not None:
        created = micros(pit.view_instant(view.created_timestamp, join.created_type, common))
        fields.append(exp.PropertyEQ(this=exp.to_identifier("c"), expression=created.copy()))
    features = (*join.features, *(f for f in join.inputs if f not in join.features))
    fields += [exp.PropertyEQ(this=exp.to_identifier(_field(f.name), quoted=True),
                              expression=col(f.name)) for f in features]
    rows = union(plan, join, stage, common, [exp.alias_(created, CREATED, quoted=True),
                                             exp.alias_(exp.Struct(expressions=fields), ROW,
                                                        quoted=True)])
    order = exp.Order(expressions=[exp.Ordered(this=col(AT), nulls_first=True),
                                   exp.Ordered(this=col(POINT)),
                                   exp.Ordered(this=col(CREATED), nulls_first=True)])
    chosen = exp.Window(this=exp.func("last", col(ROW), exp.true()), partition_by=partition(join),
                        order=order, spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED",
                                                         start_side="PRECEDING",
                                                         end="CURRENT ROW"))
    windowed = exp.select(*[col(c) for c in stage.columns], col(AT), col(POINT),
                          exp.alias_(chosen, CHOSEN, quoted=True)).from_(rows)

    def part(name: str) -> exp.Expr:
        return exp.Dot(this=col(CHOSEN), expression=exp.to_identifier(name, quoted=True))

    columns: list[exp.Expr] = []
    if plan.audit:
        columns.append(exp.alias_(exp.func("timestamp_micros", part("t")),
                                  pit.audit_column(view.name), quoted=True))
        if join.created_type is not None:
            columns.append(exp.alias_(exp.func("timestamp_micros", part("c")),
                                      pit.audit_created_column(view.name), quoted=True))
    names = {f.name: n for f, n in zip(join.features, join.output_names, strict=True)}
    added: dict[str, str] = {}
    for feature in features:
        value: exp.Expr = part(_field(feature.name))
        if view.ttl is not None:  # rule 3, inclusive, in microseconds
            horizon = exp.Sub(this=col(AT),
                              expression=exp.Literal.number(view.ttl.seconds * 1_000_000))
            value = exp.Case(ifs=[exp.If(this=exp.GTE(this=part("t"), expression=horizon),
                                         true=value)])
        added[feature.name] = names.get(feature.name, pit.input_column(view.name, feature.name))
        columns.append(exp.alias_(value, added[feature.name], quoted=True))
    select = spine_rows(exp.select(*[col(c) for c in stage.columns], *columns).from_(
        windowed.subquery("w")))
    return Stage(select, (*stage.columns, *[c.alias_or_name for c in columns])), added
