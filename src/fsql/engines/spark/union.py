"""What Spark's point-in-time stages share: the union of a stage's rows (the spine, with the
features attached so far) and the rows of one or more views on the same entity key,
partitioned by that key.

Both sides of the union have the same layout: the columns the stage carries (null on the view
side), the join keys under ``key_column`` names (spine and view column names may clash with
other spine columns), ``AT`` (the time in microseconds since the epoch, UTC), ``POINT`` (0 for
a view row; for a spine row 1 with the inclusive cutoff, -1 with the exclusive one, so that it
sorts after -- or before -- the view rows of its time), then the view side's own columns (null
on the spine side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from fsql.definitions import Feature
from fsql.pit import PitPlan, ViewJoin, as_instant, common_time, view_instant
from fsql.windows import AT, POINT

T = exp.DataType.Type
__all__ = ["AT", "POINT", "Stage", "col", "key_column", "micros", "partition", "provided",
           "spine_rows", "union"]


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table, quoted=True)


def key_column(i: int) -> str:
    """The name of the ``i``-th join key in a union."""
    return f"__fsql_key{i}"


def micros(instant: exp.Expr) -> exp.Expr:
    """An instant as microseconds since the epoch (``unix_micros`` reads a session-time-zone
    TIMESTAMP, so a naive value is cast first: with the session in UTC it means UTC)."""
    return exp.func("unix_micros", exp.cast(instant, exp.DataType.build(T.TIMESTAMPTZ)))


@dataclass(frozen=True, slots=True)
class Stage:
    """A query over a stage's rows and the columns it carries on (spine columns, then the
    features and audit columns of the views attached so far)."""

    query: exp.Expr
    columns: tuple[str, ...]

    def rows(self, alias: str) -> exp.Expr:
        if isinstance(self.query, exp.Query):
            return self.query.subquery(alias)
        return exp.alias_(self.query.copy(), alias, table=True)


def union(plan: PitPlan, joins: Sequence[ViewJoin], stage: Stage,
          own: Sequence[dict[str, exp.Expr]]) -> exp.Subquery:
    """The stage's rows and the rows with an event time and a full key of each view of
    ``joins`` (all on the same join keys), as subquery ``u``. ``own[i]``: the view side's own
    columns (name -> expression over the view's columns) of the ``i``-th view's rows; a column
    another view names is null in its rows (and in the spine's)."""
    names = list(dict.fromkeys(name for columns in own for name in columns))
    keys = [exp.alias_(col(k), key_column(i), quoted=True) for i, k in enumerate(joins[0].keys)]
    spine_at = micros(as_instant(col(plan.spine_ts), plan.spine_ts_type,
                                 common_time(plan, joins[0])))
    branches = [exp.select(
        *[col(c) for c in stage.columns], *[k.copy() for k in keys],
        exp.alias_(spine_at, AT, quoted=True),
        exp.alias_(exp.Literal.number(-1 if plan.exclusive else 1), POINT, quoted=True),
        *[exp.alias_(exp.Null(), name, quoted=True) for name in names]
    ).from_(stage.rows("s"))]
    for join, columns in zip(joins, own, strict=True):
        event = view_instant(join.view.timestamp, join.ts_type, common_time(plan, join))
        present = [event.copy().is_(exp.null()).not_(),
                   *[col(k).is_(exp.null()).not_() for k in join.keys]]
        branches.append(exp.select(
            *[exp.alias_(exp.Null(), c, quoted=True) for c in stage.columns],
            *[k.copy() for k in keys], exp.alias_(micros(event), AT, quoted=True),
            exp.alias_(exp.Literal.number(0), POINT, quoted=True),
            *[exp.alias_(columns.get(name, exp.Null()).copy(), name, quoted=True)
              for name in names]
        ).from_(exp.to_table(join.relation, quoted=True)).where(exp.and_(*present)))
    rows: exp.Query = branches[0]
    for branch in branches[1:]:
        rows = exp.union(rows, branch, distinct=False)
    return rows.subquery("u")


def provided(join: ViewJoin) -> tuple[Feature, ...]:
    """What a view's stage computes: its requested features, then its on-demand inputs."""
    return (*join.features, *(f for f in join.inputs if f not in join.features))


def partition(join: ViewJoin) -> list[exp.Column]:
    return [col(key_column(i)) for i in range(len(join.keys))]


def spine_rows(select: exp.Select) -> exp.Select:
    """Only the spine's rows of a windowed union."""
    return select.where(exp.NEQ(this=col(POINT), expression=exp.Literal.number(0)))
