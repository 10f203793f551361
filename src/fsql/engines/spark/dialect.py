"""Models and feature SQL on Spark: written in DuckDB's dialect, run with DuckDB's meaning.

sqlglot transpiles DuckDB SQL to Spark SQL, but some constructs come out unchanged or with
another meaning (an ASOF JOIN is emitted verbatim; ``CAST(2.5 AS INT)`` rounds in DuckDB and
truncates in Spark; ``x / 0`` is inf in DuckDB and an error in ANSI Spark; ``epoch()`` is a
double in DuckDB and whole seconds in Spark; QUALIFY becomes a subquery whose helper column
leaks through ``SELECT *``). So a query is accepted only if every node of it is on an
allow-list of constructs checked to mean the same on both engines (each one is executed on both
by ``tests/spark/test_dialect.py``), after the rewrites below; anything else is refused at
compile time, naming the construct, its line and the fix.

Rewrites (each one DuckDB's definition, spelled in Spark):

* ``a / b``: DuckDB divides as DOUBLE and gives +-inf or NaN for a zero divisor (the sign of a
  zero divisor counts, as in IEEE): ``CASE WHEN b = 0 THEN a * sign(atan2(b, -1)) * inf ...``;
* ``CAST(x AS <integer>)`` rounds: half to even for DOUBLE/FLOAT (``bround``), half away from
  zero for DECIMAL (``round``);
* ``date_trunc(unit, t)`` of a naive timestamp stays naive (Spark's is zoned);
* ``epoch(t)``: seconds with the microseconds as a fraction,
  ``CAST(unix_micros(t) AS DOUBLE) / 1e6``.

Some constructs mean the same only for some operand types (casts, rounding, integer division,
averages). Their operand types come from sqlglot's type annotation over the columns the engine
reported for the upstream relations; when a type cannot be told, the construct is refused with
the fix (an explicit CAST).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from fsql.engines.base import DialectError

T = exp.DataType.Type
INTEGRAL = {T.TINYINT, T.SMALLINT, T.INT, T.BIGINT}
FLOATING = {T.FLOAT, T.DOUBLE}
TEXT = {T.VARCHAR, T.TEXT, T.CHAR}
TIMES = {T.TIMESTAMP, T.TIMESTAMPNTZ, T.TIMESTAMPTZ, T.TIMESTAMPLTZ}

#: structure, operators and functions that mean the same on both engines as they are
ALLOWED: frozenset[type[exp.Expr]] = frozenset({
    exp.Select, exp.From, exp.Where, exp.Group, exp.Having, exp.Order, exp.Ordered,
    exp.Limit, exp.Subquery, exp.TableAlias, exp.Table, exp.Identifier, exp.Column, exp.Star,
    exp.Alias, exp.With, exp.CTE, exp.Union, exp.Join, exp.Paren, exp.Literal, exp.Boolean,
    exp.Null, exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.Is, exp.In, exp.Between, exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Case, exp.If,
    exp.Coalesce, exp.Nullif, exp.Greatest, exp.Least, exp.Abs, exp.Lower, exp.Upper,
    exp.Length, exp.Concat, exp.DPipe, exp.Count, exp.Sum, exp.Min, exp.Max, exp.Distinct,
    exp.Window, exp.WindowSpec, exp.RowNumber, exp.Rank, exp.DenseRank, exp.Lag, exp.Lead,
    exp.Var, exp.DataType, exp.DataTypeParam, exp.Year, exp.Month, exp.Day, exp.Exists,
})
#: allowed, with the checks or rewrites of ``_CHECKS``
CHECKED: frozenset[type[exp.Expr]] = frozenset({
    exp.Div, exp.IntDiv, exp.Mod, exp.Cast, exp.Round, exp.Avg, exp.TimeToUnix, exp.Like,
    exp.ILike, exp.TimestampTrunc, exp.Interval})

#: why some common constructs are refused, and what to write instead
_REFUSED_HINTS: dict[type[exp.Expr], tuple[str, str]] = {
    exp.Qualify: ("Spark has no QUALIFY (sqlglot rewrites it into a subquery whose helper "
                  "column leaks through SELECT *)", "filter the window function's result in an "
                  "outer query: SELECT * FROM (SELECT ..., row_number() OVER (...) AS rn "
                  "FROM ...) WHERE rn = 1"),
    exp.CurrentTimestamp: ("the current time differs between runs and engines",
                           "pass the time in as a var: {{ var('as_of') }}"),
    exp.Ceil: ("CEIL of a DOUBLE is a DOUBLE in DuckDB and a BIGINT in Spark",
               "CAST(ROUND(x + 0.5) ...) or compute it in a DuckDB-only model"),
    exp.Floor: ("FLOOR of a DOUBLE is a DOUBLE in DuckDB and a BIGINT in Spark",
                "use an integer cast of a rounded value"),
}
_TRUNC_UNITS = {"SECOND", "MINUTE", "HOUR", "DAY", "MONTH", "YEAR"}
_INTERVAL_UNITS = {"SECOND", "MINUTE", "HOUR", "DAY"}
_INF = exp.cast(exp.Literal.string("Infinity"), T.DOUBLE)

Types = Mapping[int, exp.DataType | None]  # id(node) -> its type (None: unknown)


@dataclass(frozen=True, slots=True)
class _Refusal:
    node: exp.Expr
    reason: str
    hint: str


def to_spark(query: exp.Query, schema: Mapping[str, Mapping[str, exp.DataType]]
             ) -> exp.Query:
    """``query`` (parsed as DuckDB SQL) rewritten to mean on Spark what it means on DuckDB;
    ``DialectError`` for the first construct that cannot (``schema``: the upstream relations'
    columns, for operand types)."""
    query = query.copy()  # the rewrites below replace nodes in place; types are by node id
    types = _operand_types(query, schema)
    # constructs refused outright first: an unknown function also hides its result's type
    nodes = sorted(query.walk(), key=lambda n: type(n) in CHECKED)
    for node in nodes:
        refusal = _check(node, types)
        if refusal is not None:
            raise DialectError(f"on Spark, {refusal.reason}", line=_line(refusal.node),
                               hint=refusal.hint)
    rewritten = query.transform(lambda node: _rewrite(node, types), copy=False)
    assert isinstance(rewritten, exp.Query)
    return rewritten


def _name(node: exp.Expr) -> str:
    """How the construct reads in the project's SQL: ``EPOCH_MS(t)``, ``QUALIFY``."""
    if isinstance(node, exp.Func):
        text = node.sql("duckdb")
        return text if len(text) <= 60 else text[:57] + "..."
    return node.key.upper()


def _check(node: exp.Expr, types: Types) -> _Refusal | None:
    kind = type(node)
    if kind in _REFUSED_HINTS:
        reason, hint = _REFUSED_HINTS[kind]
        return _Refusal(node, f"{_name(node)} is refused: {reason}", hint)
    if kind in CHECKED:
        return _CHECKS[kind](node, types)
    if kind is exp.Join:
        return _check_join(node)
    if kind is exp.Star and any(node.args.get(k) for k in ("except_", "replace", "rename")):
        return _Refusal(node, "SELECT * EXCLUDE/REPLACE is refused", "list the columns")
    if kind not in ALLOWED:
        return _Refusal(node, f"{_name(node)} is refused: it is not on fsql's list of "
                        "constructs checked to mean the same on DuckDB and Spark",
                        "rewrite it with the allowed constructs (see the README, 'Scaling "
                        "out: Spark'), or build this project on DuckDB")
    return None


def _check_join(node: exp.Expr) -> _Refusal | None:
    method = (node.args.get("method") or "").upper()
    kind = (node.args.get("kind") or "").upper()
    if method == "ASOF":
        return _Refusal(node, "ASOF JOIN is refused: Spark has no AS OF join (sqlglot "
                        "emits it verbatim)", "declare a feature view and let the training "
                        "set join it point-in-time")
    if method or kind not in ("", "INNER", "OUTER", "CROSS"):
        return _Refusal(node, f"{method or kind} JOIN is refused: not checked on Spark",
                        "use an INNER, LEFT, RIGHT, FULL or CROSS join")
    return None


def _type_of(node: exp.Expr, types: Types) -> exp.DataType | None:
    return types.get(id(node))


def _kind(node: exp.Expr, types: Types) -> str:
    """The operand's type family: int, float, decimal, text, bool, date, time, or unknown."""
    dtype = _type_of(node, types)
    if dtype is None:
        return "unknown"
    this = dtype.this
    for family, members in (("int", INTEGRAL), ("float", FLOATING), ("text", TEXT),
                            ("time", TIMES)):
        if this in members:
            return family
    return {T.DECIMAL: "decimal", T.BOOLEAN: "bool", T.DATE: "date"}.get(this, "unknown")


def _unknown_type(node: exp.Expr, what: str) -> _Refusal:
    return _Refusal(node, f"{what}: fsql cannot tell the type of "
                    f"{node.sql('duckdb')}, and the result depends on it",
                    f"CAST it to the type it has first, e.g. CAST({node.sql('duckdb')} AS "
                    "DOUBLE)")


#: operand families a CAST may convert from, per target family, with the same result
_CASTS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "float", "decimal", "bool"}),
    "float": frozenset({"int", "float", "decimal", "text"}),
    "decimal": frozenset({"int", "decimal"}),
    "text": frozenset({"int", "decimal", "text", "bool", "date"}),
    "bool": frozenset({"int", "bool"}),
    "date": frozenset({"date", "time", "text"}),
    "time": frozenset({"date", "time", "text"}),
}


def _target_family(dtype: exp.DataType) -> str | None:
    this = dtype.this
    if this in INTEGRAL:
        return "int"
    if this in FLOATING:
        return "float"
    if this in TEXT:
        return "text"
    if this in TIMES:
        return "time"
    return {T.DECIMAL: "decimal", T.BOOLEAN: "bool", T.DATE: "date"}.get(this)


def _check_cast(node: exp.Expr, types: Types) -> _Refusal | None:
    assert isinstance(node, exp.Cast)
    target = node.to
    family = _target_family(target)
    shown = target.sql("duckdb")
    if family is None:
        return _Refusal(node, f"CAST to {shown} is refused: not checked on Spark",
                        "cast to BIGINT, INTEGER, DOUBLE, DECIMAL(p, s), VARCHAR, BOOLEAN, "
                        "DATE, TIMESTAMP or TIMESTAMPTZ")
    source = _kind(node.this, types)
    if source == "unknown":
        if isinstance(node.this, exp.Literal | exp.Null):
            return None  # a literal has the same type on both engines
        return _unknown_type(node.this, f"CAST(... AS {shown})")
    if source not in _CASTS[family]:
        dtype = _type_of(node.this, types)
        assert dtype is not None  # a known family
        return _Refusal(node, f"CAST from {dtype.sql('duckdb')} to {shown} is refused: the "
                        "engines convert it differently",
                        "cast through a type both engines convert the same way (e.g. "
                        "DECIMAL), or keep the source type")
    return None


def _check_div(node: exp.Expr, types: Types) -> _Refusal | None:
    return None  # rewritten: always DOUBLE division, IEEE results for a zero divisor


def _check_integer_operands(node: exp.Expr, types: Types) -> _Refusal | None:
    for side in (node.this, node.expression):
        kind = _kind(side, types)
        if kind != "int" and not (kind == "unknown" and side.is_int):
            what = "//" if isinstance(node, exp.IntDiv) else "%"
            dtype = _type_of(side, types)
            shown = dtype.sql("duckdb") if dtype is not None else "of unknown type"
            return _Refusal(node, f"{what} is allowed on integers only (DuckDB and Spark "
                            f"differ on other types); {side.sql('duckdb')} is {shown}",
                            "CAST both operands to BIGINT first")
    return None


def _check_round(node: exp.Expr, types: Types) -> _Refusal | None:
    digits = node.args.get("decimals")
    kind = _kind(node.this, types)
    if kind in ("int", "decimal") or (kind == "float" and (digits is None or (
            digits.is_int and int(digits.name) == 0))):
        return None
    if kind == "float":
        return _Refusal(node, "ROUND of a DOUBLE to decimal places is refused: Spark rounds "
                        "the shortest decimal text of the double (0.285 -> 0.29), DuckDB the "
                        "binary value (0.28)", "ROUND(CAST(x AS DECIMAL(p, s)), n)")
    return _unknown_type(node.this, "ROUND")


def _check_avg(node: exp.Expr, types: Types) -> _Refusal | None:
    kind = _kind(node.this, types)
    if kind in ("int", "float"):
        return None
    if kind == "decimal":
        return _Refusal(node, "AVG of a DECIMAL is refused: a DOUBLE in DuckDB, a DECIMAL "
                        "rounded to 4 more places in Spark", "AVG(CAST(x AS DOUBLE))")
    return _unknown_type(node.this, "AVG")


def _check_epoch(node: exp.Expr, types: Types) -> _Refusal | None:
    if node.args.get("format") is not None or _kind(node.this, types) not in ("time", "date"):
        return _unknown_type(node.this, "epoch()")
    return None


def _check_like(node: exp.Expr, types: Types) -> _Refusal | None:
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string) or "\\" in pattern.name:
        return _Refusal(node, "LIKE needs a literal pattern without backslashes on Spark "
                        "(Spark treats \\ as an escape character, DuckDB does not)",
                        "write the pattern as a string literal; match a backslash with "
                        "strpos() in a DuckDB-only model")
    return None


def _check_trunc(node: exp.Expr, types: Types) -> _Refusal | None:
    unit = node.text("unit").upper()
    if unit not in _TRUNC_UNITS:
        return _Refusal(node, f"date_trunc('{unit.lower()}', ...) is refused: not checked "
                        "on Spark", f"use one of: {', '.join(sorted(_TRUNC_UNITS)).lower()}")
    if _kind(node.this, types) != "time":
        return _unknown_type(node.this, "date_trunc")
    return None


def _check_interval(node: exp.Expr, types: Types) -> _Refusal | None:
    unit = node.text("unit").upper()
    if unit.rstrip("S") not in _INTERVAL_UNITS or not node.this.is_string:
        return _Refusal(node, f"INTERVAL {node.sql('duckdb')} is refused: only whole "
                        "seconds, minutes, hours or days are checked on Spark",
                        "write e.g. INTERVAL 90 DAY (months differ in length)")
    try:
        int(node.this.name)
    except ValueError:
        return _Refusal(node, f"INTERVAL '{node.this.name}' is refused: not one number",
                        "write e.g. INTERVAL 2 HOUR")
    parent = node.parent
    if not isinstance(parent, exp.Add | exp.Sub) or parent.expression is not node:
        return _Refusal(node, "an INTERVAL is allowed only added to or subtracted from a "
                        "timestamp", "write ts + INTERVAL 3 DAY")
    if _kind(parent.this, types) != "time":
        return _Refusal(node, f"{parent.this.sql('duckdb')} + INTERVAL is allowed on "
                        "timestamps only (a DATE plus days is a TIMESTAMP in DuckDB and a "
                        "DATE in Spark)", f"CAST({parent.this.sql('duckdb')} AS TIMESTAMP) + "
                        "INTERVAL ...")
    return None


_CHECKS: dict[type[exp.Expr], Callable[[exp.Expr, Types], _Refusal | None]] = {
    exp.Cast: _check_cast, exp.Div: _check_div, exp.IntDiv: _check_integer_operands,
    exp.Mod: _check_integer_operands, exp.Round: _check_round, exp.Avg: _check_avg,
    exp.TimeToUnix: _check_epoch, exp.Like: _check_like, exp.ILike: _check_like,
    exp.TimestampTrunc: _check_trunc, exp.Interval: _check_interval,
}


def _double(node: exp.Expr) -> exp.Expr:
    return exp.cast(node.copy(), T.DOUBLE)


def _rewrite(node: exp.Expr, types: Types) -> exp.Expr:
    if isinstance(node, exp.Div):
        a, b = _double(node.this), _double(node.expression)
        zero = exp.EQ(this=b.copy(), expression=exp.Literal.number(0))
        # a zero divisor: +-inf (its sign from the sign bit of the zero) or NaN for 0/0
        sign = exp.func("sign", exp.func("atan2", b.copy(), exp.Literal.number(-1)))
        infinite = exp.Mul(this=exp.Mul(this=exp.paren(a.copy()), expression=sign),
                           expression=_INF.copy())
        return exp.Case(ifs=[exp.If(this=zero, true=infinite)],
                        default=exp.Div(this=a, expression=b))
    if isinstance(node, exp.Cast) and node.to.this in INTEGRAL:
        kind = _kind(node.this, types)
        if kind in ("float", "decimal"):
            rounded = exp.func("bround" if kind == "float" else "round", node.this.copy())
            return exp.Cast(this=rounded, to=node.to.copy())
    naive = (T.TIMESTAMP, T.TIMESTAMPNTZ)
    if isinstance(node, exp.TimestampTrunc) and getattr(_type_of(node.this, types), "this",
                                                        None) in naive:
        return exp.cast(node, T.TIMESTAMPNTZ)  # Spark truncates a naive time to a zoned one
    if isinstance(node, exp.TimeToUnix):
        return _epoch(node.this, _type_of(node.this, types))
    return node


def _epoch(value: exp.Expr, dtype: exp.DataType | None) -> exp.Expr:
    """DuckDB's ``epoch()``: micros / 1e6 for a TIMESTAMP or DATE; for a TIMESTAMPTZ (its
    ICU path) whole milliseconds / 1e3 plus the rest / 1e6 (a different rounding)."""
    micros = exp.func("unix_micros", exp.cast(value.copy(), T.TIMESTAMPTZ))

    def over(numerator: exp.Expr, scale: int) -> exp.Expr:
        return exp.Div(this=exp.cast(numerator, T.DOUBLE),
                       expression=exp.cast(exp.Literal.number(scale), T.DOUBLE))

    if dtype is None or dtype.this not in (T.TIMESTAMPTZ, T.TIMESTAMPLTZ):
        return over(micros, 1_000_000)
    rest = exp.func("pmod", micros.copy(), exp.Literal.number(1000))
    millis = exp.IntDiv(this=exp.paren(exp.Sub(this=micros, expression=rest.copy())),
                        expression=exp.Literal.number(1000))
    return exp.Add(this=over(millis, 1000), expression=over(rest, 1_000_000))


def _operand_types(query: exp.Query, schema: Mapping[str, Mapping[str, exp.DataType]]
                   ) -> dict[int, exp.DataType | None]:
    """The type of every node of ``query`` that sqlglot can annotate, keyed by the id of the
    node in ``query``; empty when the query cannot be qualified against ``schema``."""
    plain: dict[str, object] = {name: {c: t.sql("duckdb") for c, t in cols.items()}
                                for name, cols in schema.items()}
    try:
        typed = qualify(query.copy(), schema=plain, dialect="duckdb", expand_stars=False,
                        validate_qualify_columns=False, quote_identifiers=False,
                        identify=False)
        annotate_types(typed, schema=plain, dialect="duckdb")
    except SqlglotError:
        return {}
    wanted = tuple(CHECKED)
    mine = [n for n in query.walk() if isinstance(n, wanted)]
    theirs = [n for n in typed.walk() if isinstance(n, wanted)]
    if [type(n) for n in mine] != [type(n) for n in theirs]:
        return {}
    types: dict[int, exp.DataType | None] = {}
    for a, b in zip(mine, theirs, strict=True):
        sides = [(a.this, b.this), (a.args.get("expression"), b.args.get("expression"))]
        if isinstance(a.parent, exp.Add | exp.Sub) and isinstance(b.parent, exp.Add | exp.Sub):
            sides.append((a.parent.this, b.parent.this))  # what an INTERVAL is added to
        for side_a, side_b in sides:
            if isinstance(side_a, exp.Expr) and isinstance(side_b, exp.Expr):
                known = side_b.type
                types[id(side_a)] = (None if known is None or known.this is T.UNKNOWN
                                     else known)
    return types


def _line(node: exp.Expr) -> int | None:
    """The line of ``node`` in the SQL it was parsed from: its own, else its first child's
    that has one, else its parent's."""
    for candidate in node.walk():
        line = candidate.meta.get("line") if candidate.meta else None
        if line is not None:
            return int(line)
    return None if node.parent is None else _line(node.parent)
