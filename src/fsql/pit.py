"""Point-in-time joins, built as sqlglot expressions.

The rules (the product; README "Point-in-time rules" documents them for users). For every spine
row and every requested feature view:

1. Candidate rows: same entity key (all join keys equal, none null) and a non-null event
   timestamp ``<=`` the spine timestamp. A row stamped exactly at the spine time is included,
   unless the plan's ``feature_cutoff`` is ``exclusive``: then the event timestamp must be
   ``<`` the spine timestamp (event spines whose label is known at the event).
2. Of the candidates, take the one with the greatest event timestamp; ties are broken by the
   greater created timestamp when the view declares one (a null created timestamp loses).
3. ttl: the chosen row counts only if ``spine_ts - ttl <= event_ts``; otherwise every feature of
   that view is null. No ttl means no lower bound.
4. The chosen row's values are used as they are: a null stays null (no reaching back).
5. Every spine row appears exactly once; duplicates stay duplicates; no match means nulls.
6. Timestamps are compared as instants: naive means UTC, zoned values are converted.

``PitPlan`` is engine-independent. A ``PitStrategy`` turns it into SQL; each engine names its own
(``Engine.pit_strategy``): ``engines.duckdb.pit.AsofJoin`` uses DuckDB's ASOF JOIN. Another
engine gets another strategy (e.g. a window-function join) without touching planning or
validation. The helpers below (``qualified``, ``as_instant``, ``view_instant``, ``ts_pair``,
``window_join``) are shared by the strategies.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlglot import exp

from fsql.definitions import Feature, FeatureCutoff, FeatureView
from fsql.dtypes import normalize
from fsql.engines.base import Column
from fsql.windows import AT, WindowSource, micros, window_values
from fsql.windows import LATEST as LATEST_AT

T = exp.DataType.Type
ROW_ID = "__fsql_row"
#: a feature view row's identity (``Engine.row_identity``)
ROW_IDENTITY = "__fsql_rowid"
TS = "__fsql_ts"
CREATED = "__fsql_created"
KEY = "__fsql_key"
SPINE = "spine"
GUARDED = "__fsql_guarded"
INSTANT = "__fsql_instant"  # the spine time of ``window_values_at``


@dataclass(frozen=True, slots=True)
class ViewJoin:
    """One feature view's part of a training set."""

    view: FeatureView
    relation: str
    keys: tuple[str, ...]
    features: tuple[Feature, ...]
    output_names: tuple[str, ...]
    ts_type: exp.DataType
    created_type: exp.DataType | None
    #: features joined only as inputs of on-demand features (not output), under
    #: ``input_column`` names
    inputs: tuple[Feature, ...] = ()
    #: the view's rows with a ``ROW_IDENTITY`` column, when the engine can name them
    #: (``Engine.row_identity``): a strategy may join on it and fetch the features after
    rows: exp.Select | None = None


def input_column(view: str, feature: str) -> str:
    """The internal name of a feature joined only as an on-demand input."""
    return f"__fsql_in__{view}__{feature}"


@dataclass(frozen=True, slots=True)
class OnDemandJoin:
    """An on-demand view's part of a training set: each expression (bare names) with what
    each name stands for in the point-in-time query."""

    name: str
    #: (output column, expression over bare names)
    features: tuple[tuple[str, exp.Expr], ...]
    #: request field -> (spine column, its type, the field's type)
    request: tuple[tuple[str, exp.DataType, exp.DataType], ...]
    #: input name -> (view, feature)
    inputs: tuple[tuple[str, str, str], ...]
    #: the file declaring the on-demand view (for messages)
    path: str = ""

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)


@dataclass(frozen=True, slots=True)
class PitPlan:
    """What to join: a spine relation, its columns, and the views to attach."""

    spine: exp.Expr
    spine_columns: tuple[Column, ...]
    spine_ts: str
    joins: tuple[ViewJoin, ...]
    #: spine columns carried into the output (in order)
    output_spine: tuple[str, ...]
    #: spine columns the output is sorted by
    order_by: tuple[str, ...]
    #: also output each view's chosen event time (``audit_column``), for the leakage guard
    audit: bool = False
    #: rule 1's upper bound: event time ``<=`` (inclusive) or ``<`` (exclusive) the spine time
    feature_cutoff: FeatureCutoff = "inclusive"
    #: on-demand features, computed in the same SELECT from spine columns and joined features
    on_demand: tuple[OnDemandJoin, ...] = ()

    @property
    def exclusive(self) -> bool:
        return self.feature_cutoff == "exclusive"

    @property
    def spine_ts_type(self) -> exp.DataType:
        return next(c.dtype for c in self.spine_columns if c.name == self.spine_ts)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return (*(name for j in self.joins for name in j.output_names),
                *(name for od in self.on_demand for name in od.output_names))


def audit_column(view: str) -> str:
    return f"__fsql_event__{view}"


def audit_created_column(view: str) -> str:
    """The chosen row's created time (views with a created timestamp; ``fsql verify``)."""
    return f"__fsql_created__{view}"


def common_time(plan: PitPlan, join: ViewJoin) -> exp.DataType:
    return _common_time_type([plan.spine_ts_type, join.ts_type,
                              *([join.created_type] if join.created_type else [])])


def leakage_checks(plan: PitPlan) -> list[tuple[str, exp.Expr]]:
    """Per view, the condition over an audited point-in-time result's output columns
    (``plan.audit``) that a row leaks, independently of the strategy that produced it: the
    chosen row is stamped after the spine time (at or after it with ``feature_cutoff:
    exclusive``), or a feature is non-null from a row older than the ttl."""
    spine = exp.column(plan.spine_ts, quoted=True)
    checks: list[tuple[str, exp.Expr]] = []
    for join in plan.joins:
        common = common_time(plan, join)
        spine_ts = as_instant(spine.copy(), plan.spine_ts_type, common)
        event = exp.column(audit_column(join.view.name), quoted=True)
        bad: exp.Expr = (exp.GTE if plan.exclusive else exp.GT)(this=event, expression=spine_ts)
        if join.view.ttl is not None:
            horizon = exp.Sub(this=spine_ts.copy(), expression=exp.Interval(
                this=exp.Literal.string(str(join.view.ttl.seconds)), unit=exp.var("SECOND")))
            served = exp.or_(*[exp.column(n, quoted=True).is_(exp.null()).not_()
                               for n in join.output_names])
            bad = exp.or_(bad, exp.and_(exp.LT(this=event.copy(), expression=horizon),
                                        exp.paren(served)))
        checks.append((join.view.name, bad))
    return checks


def guarded_query(plan: PitPlan, audited: exp.Select,
                  fail: Callable[[str], exp.Expr]) -> exp.Select:
    """The training set cut from its audited query (``plan.audit``) in the same pass that
    checks it: output columns only, in the plan's order, every row through the leakage guard
    (``leakage_checks``) first. A leaking row makes the query fail with ``fail(view)``, an
    expression that raises (the engine's own error function), so nothing leaking is ever
    written; the audit columns are dropped before the sort and the write."""
    inner = audited.copy()
    inner.set("order", None)
    columns = [*plan.output_spine, *plan.feature_columns]
    query = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(
        inner.subquery(GUARDED), copy=False)
    if checks := leakage_checks(plan):
        query = query.where(exp.Case(ifs=[exp.If(this=bad, true=fail(view))
                                          for view, bad in checks], default=exp.true()),
                            copy=False)
    return query.order_by(*[exp.column(c, quoted=True) for c in plan.order_by], copy=False)


def default_order(spine_ts: str, keys: Sequence[str], columns: Sequence[str]) -> tuple[str, ...]:
    """The documented output order of a training set: spine timestamp, then the join keys,
    then every other spine column (so even duplicate rows come out in a fixed order)."""
    first = [spine_ts, *[k for k in keys if k != spine_ts]]
    return tuple(dict.fromkeys([*first, *columns]))


def _common_time_type(types: Sequence[exp.DataType]) -> exp.DataType:
    """Compare as instants: TIMESTAMPTZ if any side is zoned (naive means UTC), else TIMESTAMP."""
    if any(t.this == T.TIMESTAMPTZ for t in types):
        return exp.DataType.build(T.TIMESTAMPTZ)
    return exp.DataType.build(T.TIMESTAMP)


def as_instant(expression: exp.Expr, dtype: exp.DataType, target: exp.DataType,
        view_side: bool = False) -> exp.Expr:
    """``expression`` (of type ``dtype``) as an instant of the ``target`` type.

    Engines round nanosecond timestamps to the nearest microsecond; rounding could let a row
    stamped a nanosecond after the spine time through. So nanoseconds go the safe way: spine
    times down, view times (``view_side``) up."""
    if normalize(dtype) == target:
        return expression
    cast = exp.cast(expression, target)
    if not _is_nanos(dtype):
        return cast
    # compared with the original in its own family (naive or zoned), at full precision
    family = _micros_family(dtype)
    same_family = cast.copy() if target == family else exp.cast(cast.copy(), family)
    step = exp.Interval(this=exp.Literal.string("1"), unit=exp.var("MICROSECOND"))
    if view_side:
        rounded_wrong: exp.Expr = exp.LT(this=same_family, expression=expression.copy())
        fixed: exp.Expr = exp.Add(this=cast.copy(), expression=step)
    else:
        rounded_wrong = exp.GT(this=same_family, expression=expression.copy())
        fixed = exp.Sub(this=cast.copy(), expression=step)
    return exp.Case(ifs=[exp.If(this=rounded_wrong, true=fixed)], default=cast)


def _micros_family(dtype: exp.DataType) -> exp.DataType:
    """The microsecond type of the same family (naive or zoned) as a nanosecond ``dtype``."""
    return exp.DataType.build(T.TIMESTAMP if dtype.this == T.TIMESTAMP_NS else T.TIMESTAMPTZ)


def _is_nanos(dtype: exp.DataType) -> bool:
    if dtype.this == T.TIMESTAMP_NS:
        return True
    return dtype.this == T.TIMESTAMPTZ and [e.name for e in dtype.expressions] == ["9"]


def qualified(name: str, table: str) -> exp.Column:
    return exp.column(name, table, quoted=True)


class PitStrategy(abc.ABC):
    """Turns a ``PitPlan`` into one query."""

    @abc.abstractmethod
    def query(self, plan: PitPlan) -> exp.Select:
        """The point-in-time query for ``plan``."""


def ts_pair(ts: exp.Expr, created: exp.Expr) -> exp.Struct:
    """The (event time, created time) ordering key of a view with a created timestamp."""
    return exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("t"), expression=ts),
        exp.PropertyEQ(this=exp.to_identifier("c"), expression=created)])


def window_source(join: ViewJoin, common: exp.DataType) -> WindowSource:
    """The view's rows as its aggregations read them, times as instants of type ``common``."""
    view = join.view
    created = (view_instant(view.created_timestamp, join.created_type, common)
               if view.created_timestamp and join.created_type is not None else None)
    event = view_instant(view.timestamp, join.ts_type, common)
    return WindowSource(join.relation, join.keys, event, created, join.features)


def window_join(plan: PitPlan, join: ViewJoin, alias: str, select: exp.Select,
                values: dict[tuple[str, str], exp.Expr]) -> exp.Select:
    """Attach a view of aggregations (rule 9): its values at each distinct (key, spine time),
    computed once (``windows.window_values``) and joined on both. Each feature's value goes
    into ``values`` too (on-demand inputs, output or not)."""
    features = (*join.features, *(f for f in join.inputs if f not in join.features))
    common = common_time(plan, join)
    spine_at = micros(as_instant(exp.column(plan.spine_ts, quoted=True), plan.spine_ts_type,
                                 common))
    present = [exp.column(c, quoted=True).is_(exp.null()).not_()
               for c in (*join.keys, plan.spine_ts)]
    points = exp.select(*[exp.column(k, quoted=True) for k in join.keys],
                        exp.alias_(spine_at, AT, quoted=True)).distinct().from_(
        plan.spine.copy().subquery("s") if isinstance(plan.spine, exp.Query)
        else plan.spine.copy()).where(exp.and_(*present))
    computed = window_values(window_source(replace(join, features=features), common), points,
                             plan.exclusive, {f.name: f.dtype.sql for f in features},
                             latest=plan.audit)
    on = [exp.EQ(this=qualified(k, SPINE), expression=qualified(k, alias)) for k in join.keys]
    spine_ts = as_instant(qualified(plan.spine_ts, SPINE), plan.spine_ts_type, common)
    on.append(exp.EQ(this=micros(spine_ts), expression=qualified(AT, alias)))
    select = select.join(computed.subquery(alias), join_type="left", on=exp.and_(*on),
                         copy=False)
    if plan.audit:
        latest: exp.Expr = exp.func("make_timestamp", qualified(LATEST_AT, alias))
        if common.this == T.TIMESTAMPTZ:
            latest = exp.cast(latest, common)
        select = select.select(exp.alias_(latest, audit_column(join.view.name), quoted=True),
                               copy=False)
    outputs = {f.name: name for f, name in zip(join.features, join.output_names, strict=True)}
    for feature in features:
        value: exp.Expr = qualified(feature.name, alias)
        if feature.aggregation is not None and feature.aggregation.function == "count":
            value = exp.func("coalesce", value, exp.Literal.number(0))  # no point: empty
        values.setdefault((join.view.name, feature.name), value)
        if feature.name in outputs:
            select = select.select(exp.alias_(value.copy(), outputs[feature.name],
                                              quoted=True), copy=False)
    return select


def window_values_at(join: ViewJoin, as_of: int, strategy: PitStrategy,
                     types: Mapping[str, exp.DataType], relation: str | None = None
                     ) -> exp.Select:
    """A view of aggregations at one instant ``as_of`` (microseconds, UTC): key columns and
    every feature of ``join``, for each entity with rows in some of its windows then (what a
    reader of the online store gets at ``as_of``; data tests and ``fsql verify`` check it).
    Those entities at ``as_of`` are a spine, joined by the engine's own point-in-time
    ``strategy``: the value at one instant is the training value at that instant, whatever
    the engine. ``types``: the view's column types; ``relation`` reads another relation with
    the view's columns (verify: the rows known at the last sync)."""
    if relation is not None:
        join = replace(join, relation=relation)
    common = LatestPlan(join, as_of).common
    source = window_source(join, common)
    start = min((as_of // f.aggregation.hop_micros) * f.aggregation.hop_micros
                - f.aggregation.window_micros for f in join.features if f.aggregation)
    event, instant = source.event.copy(), _instant_literal(as_of, common)
    keys = [exp.column(k, quoted=True) for k in join.keys]
    points = exp.select(*keys, exp.alias_(instant.copy(), INSTANT, quoted=True)).distinct(
    ).from_(exp.to_table(join.relation, quoted=True)).where(exp.and_(
        exp.GTE(this=event, expression=_instant_literal(start, common)),
        exp.LTE(this=event.copy(), expression=instant),
        *[k.copy().is_(exp.null()).not_() for k in keys]))
    plan = PitPlan(points.subquery(), (*[Column(k, types[k]) for k in join.keys],
                                        Column(INSTANT, common)),
                   INSTANT, (replace(join, output_names=tuple(f.name for f in join.features),
                                     inputs=()),),
                   join.keys, join.keys)
    values = strategy.query(plan)
    values.set("order", None)
    return exp.select(*[exp.column(c, quoted=True) for c in (*join.keys,
                                                             *(f.name for f in join.features))]
                      ).from_(values.subquery("w"))


def on_demand_columns(od: OnDemandJoin, values: dict[tuple[str, str], exp.Expr]
                      ) -> list[tuple[str, exp.Expr]]:
    """Each on-demand expression with its bare names replaced: a request field by its spine
    column (cast to the field's type when the spine's differs), an input by its point-in-time
    value (``values``: (view, feature) -> the expression the query selects for it)."""
    names: dict[str, exp.Expr] = {}
    for field_name, spine_type, field_type in od.request:
        column: exp.Expr = qualified(field_name, SPINE)
        if normalize(spine_type) != normalize(field_type):
            column = exp.cast(column, field_type)
        names[field_name] = column
    for name, view, feature in od.inputs:
        names[name] = exp.paren(values[(view, feature)].copy())
    out: list[tuple[str, exp.Expr]] = []
    for output, tree in od.features:
        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Column) and node.name in names:
                return names[node.name].copy()
            return node
        out.append((output, exp.paren(tree.copy().transform(swap))))
    return out


# -- the online twin: latest row per entity --------------------------------------------------

LATEST = "__fsql_latest"


def _instant_literal(micros_utc: int, common: exp.DataType) -> exp.Expr:
    """A literal of type ``common`` for a UTC instant given in microseconds since the epoch
    (a naive TIMESTAMP literal holds the UTC wall time: naive means UTC)."""
    import datetime as dt

    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros_utc)
    text = moment.isoformat() + ("+00:00" if common.this == T.TIMESTAMPTZ else "")
    return exp.cast(exp.Literal.string(text), common)


@dataclass(frozen=True, slots=True)
class LatestPlan:
    """The latest row per entity of one view as of an instant (rules 1-4, for serving)."""

    join: ViewJoin
    as_of: int  # microseconds since the epoch, UTC
    changed_since: int | None = None  # only rows whose basis is newer (incremental sync)

    def basis(self) -> exp.Expr:
        """What a watermark follows: the created timestamp if declared (the event time for a
        row without one), else the event time."""
        join, view, common = self.join, self.join.view, self.common
        ts = view_instant(view.timestamp, join.ts_type, common)
        if view.created_timestamp and join.created_type is not None:
            created = view_instant(view.created_timestamp, join.created_type, common)
            return exp.func("coalesce", created, ts)
        return ts

    @property
    def common(self) -> exp.DataType:
        """Compare as instants: TIMESTAMPTZ if any timestamp column is zoned, else naive UTC."""
        join = self.join
        return _common_time_type([join.ts_type, *([join.created_type]
                                                  if join.created_type else [])])

    def rows(self, alias: str) -> exp.Expr:
        """The view's rows to consider, as ``alias``: all of them, or (``changed_since``) those
        whose basis is newer. That filter is written one column at a time -- created time newer,
        or no created time and event time newer, in a UNION ALL of disjoint halves -- so the
        engine can skip whole files and row groups by their min/max statistics, which a filter
        on ``coalesce(created, event)`` defeats (seen with DuckDB over several Parquet files)."""
        table = exp.to_table(self.join.relation, quoted=True)
        if self.changed_since is None:
            return table.as_(alias)
        join, view, common = self.join, self.join.view, self.common
        since = _instant_literal(self.changed_since, common)
        ts = view_instant(view.timestamp, join.ts_type, common)
        if not (view.created_timestamp and join.created_type is not None):
            return exp.select("*").from_(table).where(
                exp.GT(this=ts, expression=since)).subquery(alias)
        created = view_instant(view.created_timestamp, join.created_type, common)
        newer = exp.select("*").from_(table.copy()).where(
            exp.GT(this=created.copy(), expression=since.copy()))
        undated = exp.select("*").from_(table.copy()).where(exp.and_(
            created.is_(exp.null()), exp.GT(this=ts, expression=since)))
        return exp.union(newer, undated, distinct=False).subquery(alias)


def view_instant(column: str, dtype: exp.DataType, common: exp.DataType,
             table: str | None = None) -> exp.Expr:
    return as_instant(exp.column(column, table, quoted=True), dtype, common, view_side=True)


def common_instant(join: ViewJoin, micros_utc: int) -> tuple[exp.Expr, exp.Expr]:
    """The view's event time and an instant literal, in one comparable type."""
    plan = LatestPlan(join, micros_utc)
    return (view_instant(join.view.timestamp, join.ts_type, plan.common),
            _instant_literal(micros_utc, plan.common))


def latest_rows_query(plan: LatestPlan) -> exp.Select:
    """Keys, ``__fsql_ts``/``__fsql_created`` and features of the latest row per entity with
    ``event_ts <= as_of`` and within ttl; entities without one are absent. With
    ``changed_since``, only rows whose basis is newer are considered: the latest of those, which
    the store's guard then compares with the value it holds (see online/sync.py).

    Same rules as the training path: greatest event time, ties by greater created time (null
    lowest), ttl inclusive, values as they are. One ARG_MAX aggregate, no window or dedupe pass.
    """
    join, view, common = plan.join, plan.join.view, plan.common
    ts = view_instant(view.timestamp, join.ts_type, common)
    as_of = _instant_literal(plan.as_of, common)
    fields = [exp.PropertyEQ(this=exp.to_identifier(TS), expression=ts)]
    order: exp.Expr = ts.copy()
    if view.created_timestamp and join.created_type is not None:
        created = view_instant(view.created_timestamp, join.created_type, common)
        fields.append(exp.PropertyEQ(this=exp.to_identifier(CREATED), expression=created))
        # (event, has created, created): a null created time loses to any other at the same
        # event time; no "-infinity" stand-in, which is not a timestamp on every engine (Spark)
        order = exp.Struct(expressions=[
            exp.PropertyEQ(this=exp.to_identifier("t"), expression=ts.copy()),
            exp.PropertyEQ(this=exp.to_identifier("n"),
                           expression=created.copy().is_(exp.null()).not_()),
            exp.PropertyEQ(this=exp.to_identifier("c"), expression=created.copy())])
    fields += [exp.PropertyEQ(this=exp.to_identifier(f.name),
                              expression=exp.column(f.name, quoted=True)) for f in join.features]
    conditions: list[exp.Expr] = [ts.copy().is_(exp.null()).not_()]
    conditions += [exp.column(k, quoted=True).is_(exp.null()).not_() for k in join.keys]
    conditions.append(exp.LTE(this=ts.copy(), expression=as_of))
    if view.ttl is not None:
        conditions.append(exp.GTE(this=ts.copy(), expression=exp.Sub(
            this=as_of.copy(), expression=exp.Interval(
                this=exp.Literal.string(str(view.ttl.seconds)), unit=exp.var("SECOND")))))
    latest = exp.ArgMax(this=exp.Struct(expressions=fields), expression=order)
    inner = (exp.select(*[exp.column(k, quoted=True) for k in join.keys],
                        exp.alias_(latest, LATEST, quoted=True))
             .from_(plan.rows("v"))
             .where(exp.and_(*conditions))
             .group_by(*[exp.column(k, quoted=True) for k in join.keys]))
    names = [TS] + ([CREATED] if view.created_timestamp else []) + [f.name for f in join.features]
    return exp.select(
        *[exp.column(k, quoted=True) for k in join.keys],
        *[exp.alias_(exp.Dot(this=exp.column(LATEST, quoted=True),
                             expression=exp.to_identifier(n, quoted=True)), n, quoted=True)
          for n in names],
    ).from_(inner.subquery("l"))


def watermark_query(plan: LatestPlan) -> exp.Select:
    """For rows newer than the watermark: ``done``, the greatest basis among rows already
    visible (event_ts <= as_of) whose basis is not after as_of either; ``future``, the smallest
    basis among rows whose event is still to come, which must stay above the next watermark so
    they are picked up once their time comes; and ``future_dated``, how many rows have a basis
    after as_of (a created or event time in the future).

    So the next watermark never passes as_of: a row created "a year from now" is synced (its
    event is visible) but cannot move the watermark past the rows that really arrive meanwhile;
    being newer than every watermark, it is seen (and counted) again by each sync until its
    time comes."""
    join, view, common = plan.join, plan.join.view, plan.common
    basis = plan.basis()
    ts = view_instant(view.timestamp, join.ts_type, common)
    as_of = _instant_literal(plan.as_of, common)
    visible = exp.and_(exp.LTE(this=ts, expression=as_of),
                       exp.LTE(this=basis.copy(), expression=as_of.copy()))

    def when(condition: exp.Expr, then: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=condition, true=then)])

    return exp.select(
        exp.alias_(exp.Max(this=when(visible, basis.copy())), "done", quoted=True),
        exp.alias_(exp.Min(this=when(exp.GT(this=ts.copy(), expression=as_of.copy()),
                                     basis.copy())), "future", quoted=True),
        exp.alias_(exp.Count(this=when(exp.GT(this=basis.copy(), expression=as_of.copy()),
                                       exp.Literal.number(1))), "future_dated", quoted=True),
    ).from_(plan.rows("v")).where(basis.copy().is_(exp.null()).not_())
