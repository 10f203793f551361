"""DuckDB's point-in-time strategy: one ``ASOF LEFT JOIN`` per view.

Generated from the engine-independent ``PitPlan`` (``fsql.pit``); views of time-window
aggregations join their values computed once per (key, spine time) (``pit.window_join``).
"""

from __future__ import annotations

from sqlglot import exp

from fsql.pit import (
    KEY,
    ROW_IDENTITY,
    SPINE,
    TS,
    PitPlan,
    PitStrategy,
    ViewJoin,
    as_instant,
    audit_column,
    audit_created_column,
    common_time,
    input_column,
    on_demand_columns,
    qualified,
    ts_pair,
    view_instant,
    window_join,
)


def fail(message: str) -> exp.Expr:
    """DuckDB's ``error(message)``: evaluated, it fails the statement."""
    return exp.Anonymous(this="error", expressions=[exp.Literal.string(message)])


class AsofJoin(PitStrategy):
    """``ASOF LEFT JOIN`` per view, ordered on the ``{t: event_ts, c: created_ts}`` struct when
    the view has a created timestamp, so the tie-break happens inside the join without a dedupe
    pass. The struct is one column built on the view side (cheaper to carry through the join's
    sort than two columns plus a struct built in the condition).

    A view with a row identity (``ViewJoin.rows``, ``engines/duckdb/rows.py``) carries only
    its keys, its time and ``ROW_IDENTITY`` through the join; the chosen rows' features are
    fetched after every join by a hash join on that identity (late materialization), so a
    larger-than-memory build spills no feature values. A ttl nulls the chosen identity. A
    chosen row the fetch does not find fails the query (the engine also fails a statement
    during which a file it reads twice changed: ``rows.reread_files``)."""

    def query(self, plan: PitPlan) -> exp.Select:
        # built in place (copy=False): every builder call would otherwise copy the whole query
        select = exp.select(*[qualified(c, SPINE) for c in plan.output_spine]).from_(
            exp.alias_(plan.spine, SPINE, table=True), copy=False)
        values: dict[tuple[str, str], exp.Expr] = {}  # (view, feature) -> its value
        fetches: list[tuple[exp.Select, str, exp.Expr]] = []  # (rows, alias, join condition)
        for i, join in enumerate(plan.joins):
            alias = f"v{i}"
            if join.view.aggregations:
                select = window_join(plan, join, alias, select, values)
                continue
            common = common_time(plan, join)
            spine_ts = as_instant(qualified(plan.spine_ts, SPINE), plan.spine_ts_type, common)
            select = select.join(self._view_side(join, common), join_type="asof left",
                                 join_alias=alias, copy=False,
                                 on=self._condition(join, alias, spine_ts, common,
                                                    plan.exclusive))
            event = (qualified(TS, alias) if join.created_type is None else
                     exp.Dot(this=qualified(KEY, alias), expression=exp.to_identifier("t")))
            if plan.audit:
                select = select.select(exp.alias_(event.copy(), audit_column(join.view.name),
                                                  quoted=True), copy=False)
                if join.created_type is not None:  # -infinity stands for a null created time
                    created = exp.Nullif(
                        this=exp.Dot(this=qualified(KEY, alias), expression=exp.to_identifier("c")),
                        expression=exp.cast(exp.Literal.string("-infinity"), common))
                    select = select.select(exp.alias_(
                        created, audit_created_column(join.view.name), quoted=True), copy=False)
            hidden = [input_column(join.view.name, f.name) for f in join.inputs]
            if join.rows is not None:  # late materialization: fetch the chosen row's values
                fetched = f"f{i}"
                chosen = self._within_ttl(join, qualified(ROW_IDENTITY, alias), event,
                                          spine_ts)
                fetches.append((join.rows, fetched, exp.EQ(
                    this=qualified(ROW_IDENTITY, fetched), expression=chosen)))
                lost = exp.If(this=exp.and_(qualified(ROW_IDENTITY, fetched).is_(exp.null()),
                                            chosen.copy().is_(exp.null()).not_()),
                              true=fail(f"feature view '{join.view.name}': a row the "
                                        "point-in-time join chose was not there when its "
                                        "features were read; nothing was written"))
            for feature, name in zip((*join.features, *join.inputs),
                                     (*join.output_names, *hidden), strict=True):
                if join.rows is None:
                    value = self._within_ttl(join, qualified(name, alias), event, spine_ts)
                else:
                    value = exp.Case(ifs=[lost.copy()],
                                     default=qualified(feature.name, fetched))
                values.setdefault((join.view.name, feature.name), value)
                if name not in hidden:
                    select = select.select(exp.alias_(value.copy(), name, quoted=True),
                                           copy=False)
        for rows, fetched, same_row in fetches:
            select = select.join(rows.subquery(fetched), join_type="left", copy=False,
                                 on=same_row)
        for od in plan.on_demand:
            for name, tree in on_demand_columns(od, values):
                select = select.select(exp.alias_(tree, name, quoted=True), copy=False)
        return select.order_by(*[qualified(c, SPINE) for c in plan.order_by], copy=False)

    @staticmethod
    def _within_ttl(join: ViewJoin, value: exp.Expr, event: exp.Expr, spine_ts: exp.Expr
                    ) -> exp.Expr:
        """``value`` of the chosen row, null when the row is older than the view's ttl."""
        if join.view.ttl is None:
            return value
        horizon = exp.Sub(this=spine_ts.copy(), expression=exp.Interval(
            this=exp.Literal.string(str(join.view.ttl.seconds)), unit=exp.var("SECOND")))
        return exp.Case(ifs=[exp.If(this=exp.GTE(this=event.copy(), expression=horizon),
                                    true=value)])

    @staticmethod
    def _view_side(join: ViewJoin, common: exp.DataType) -> exp.Subquery:
        view = join.view
        columns: list[exp.Expr] = [exp.column(k, quoted=True) for k in join.keys]
        ts = view_instant(view.timestamp, join.ts_type, common)
        if view.created_timestamp and join.created_type is not None:
            created = view_instant(view.created_timestamp, join.created_type, common)
            lowest = exp.cast(exp.Literal.string("-infinity"), common)
            columns.append(exp.alias_(ts_pair(ts, exp.func("coalesce", created, lowest)), KEY,
                                      quoted=True))
        else:
            columns.append(exp.alias_(ts, TS, quoted=True))
        if join.rows is not None:  # the features are fetched by identity after the join
            columns.append(exp.column(ROW_IDENTITY, quoted=True))
            relation: exp.Expr = join.rows.subquery()
        else:
            for feature, name in zip(join.features, join.output_names, strict=True):
                column = exp.column(feature.name, quoted=True)
                columns.append(column if name == feature.name else exp.alias_(column, name,
                                                                              quoted=True))
            for feature in join.inputs:
                columns.append(exp.alias_(exp.column(feature.name, quoted=True),
                                          input_column(view.name, feature.name), quoted=True))
            relation = exp.to_table(join.relation, quoted=True)
        inner = (exp.select(*columns).from_(relation)
                 .where(exp.column(view.timestamp, quoted=True).is_(exp.null()).not_()))
        return inner.subquery()

    @staticmethod
    def _condition(join: ViewJoin, alias: str, spine_ts: exp.Expr, common: exp.DataType,
                   exclusive: bool) -> exp.Expr:
        """Keys equal and the view row not after the spine time: ``spine >= row``, or
        ``spine > row`` when exclusive (DuckDB's ASOF takes either)."""
        keys = [exp.EQ(this=qualified(k, SPINE), expression=qualified(k, alias)) for k in join.keys]
        compare = exp.GT if exclusive else exp.GTE
        if join.created_type is None:
            inequality = compare(this=spine_ts, expression=qualified(TS, alias))
        else:
            # A null spine timestamp must match nothing; a struct holding a null would
            # compare as the largest value, so the whole key is nulled instead. The spine
            # side pairs its time with +infinity (inclusive: every row stamped at the spine
            # time is <=) or -infinity (exclusive: none of them is <, a null created time
            # being -infinity too).
            bound = "-infinity" if exclusive else "infinity"
            spine_key = exp.Case(ifs=[exp.If(
                this=spine_ts.copy().is_(exp.null()).not_(),
                true=ts_pair(spine_ts, exp.cast(exp.Literal.string(bound), common)))])
            inequality = compare(this=spine_key, expression=qualified(KEY, alias))
        return exp.and_(*keys, inequality)
