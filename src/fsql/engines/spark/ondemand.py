"""On-demand expressions with DuckDB's semantics (``fsql.ondemand``), written for Spark.

sqlglot transpiles the syntax; where Spark's semantics differ from DuckDB's the node is
rewritten here, using the kind ``ondemand.infer`` gives every node (DuckDB's typing):

- integer results are cast back to DuckDB's type (DuckDB keeps ``int8 * literal`` an int8;
  Spark widens), so an overflow raises where DuckDB's does (Spark runs with ANSI mode on);
- ``/`` by zero gives +-inf or NaN, float ``%`` by zero NaN (Spark raises);
- ``log`` is base 10 (Spark's is natural), ``ln``/``log`` of 0 is -inf and of a negative
  number NaN (Spark: null);
- ``floor``/``ceil``/``round`` of a float stay floats with DuckDB's signed zeros (Spark's
  floor and ceil return integers); ``round(x, d)`` is DuckDB's ``round(x * 10^d) / 10^d``;
- ``sign`` is an int8 and 0 for NaN; a float cast to an integer rounds half to even;
- a NULL-typed condition (NULL, coalesce(NULL, NULL)...) is a NULL boolean.

``engines.spark.pit`` applies it before substituting the point-in-time values for the names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlglot import exp

from fsql.ondemand import duck_type, infer, kind_of
from fsql.pit import OnDemandJoin, ViewJoin

KIND = "fsql_kind"
_INT_KINDS = ("int8", "int16", "int32", "int64")
_ARITH = (exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.IntDiv, exp.Mod, exp.Abs, exp.Round)


def _double(text: str) -> exp.Expr:
    return exp.cast(exp.Literal.string(text), exp.DataType.build("DOUBLE"))


def _as_double(node: exp.Expr) -> exp.Expr:
    return exp.cast(node, exp.DataType.build("DOUBLE"))


def _negative(node: exp.Expr) -> exp.Expr:
    """True for a float below zero or equal to -0.0 (its text starts with '-'; NaN's doesn't)."""
    return exp.Like(this=exp.cast(node, exp.DataType.build("VARCHAR")),
                    expression=exp.Literal.string("-%"))


def _case(*branches: tuple[exp.Expr, exp.Expr], default: exp.Expr | None = None) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=c, true=v) for c, v in branches], default=default)


def _signed_zero(result: exp.Expr, x: exp.Expr) -> exp.Expr:
    """``result``, but -0.0 where it is zero and ``x`` is negative (C's floor/ceil/round)."""
    return _case((exp.and_(exp.EQ(this=result.copy(), expression=exp.Literal.number(0)),
                           _negative(x)), _double("-0.0")), default=result)


def _whole(call: exp.Expr, x: exp.Expr) -> exp.Expr:
    """A float rounded to a whole float by ``call`` (Spark's floor/ceil/round of ``x``), with
    NaN, infinities and floats too large to have a fraction left as they are."""
    big = exp.GTE(this=exp.Abs(this=x.copy()), expression=_double("4503599627370496"))
    return _case((exp.or_(exp.func("isnan", x.copy()), big), x.copy()),
                 default=_signed_zero(_as_double(call), x))


def _rewrite_float(node: exp.Expr, kids: list[exp.Expr]) -> exp.Expr | None:
    if isinstance(node, exp.Div):
        a, b = _as_double(kids[0]), _as_double(kids[1])
        infinite = _case((exp.GT(this=a.copy(), expression=exp.Literal.number(0)),
                          _double("Infinity")), default=_double("-Infinity"))
        flipped = _case((exp.GT(this=a.copy(), expression=exp.Literal.number(0)),
                         _double("-Infinity")), default=_double("Infinity"))
        at_zero = _case((exp.or_(exp.func("isnan", a.copy()),
                                 exp.EQ(this=a.copy(), expression=exp.Literal.number(0))),
                         _double("NaN")),
                        (_negative(b.copy()), flipped), default=infinite)
        return _case((exp.and_(exp.EQ(this=b.copy(), expression=exp.Literal.number(0)),
                               a.copy().is_(exp.null()).not_()), at_zero),
                     default=exp.Div(this=a, expression=b))
    if isinstance(node, exp.Mod):
        a, b = _as_double(kids[0]), _as_double(kids[1])
        return _case((exp.and_(exp.EQ(this=b.copy(), expression=exp.Literal.number(0)),
                               a.copy().is_(exp.null()).not_()), _double("NaN")),
                     default=exp.Mod(this=a, expression=b))
    if isinstance(node, (exp.Ln, exp.Log)):
        x = _as_double(kids[0])
        # LOG10 by name: sqlglot writes log10(x) as Spark's LOG(10, x), ln(x) / ln(10)
        call = (exp.Ln(this=x.copy()) if isinstance(node, exp.Ln)
                else exp.Anonymous(this="LOG10", expressions=[x.copy()]))
        return _case((exp.EQ(this=x.copy(), expression=exp.Literal.number(0)),
                      _double("-Infinity")),
                     (exp.LT(this=x.copy(), expression=exp.Literal.number(0)), _double("NaN")),
                     default=call)
    if isinstance(node, (exp.Floor, exp.Ceil)):
        x = _as_double(kids[0])
        return _whole(type(node)(this=x.copy()), x)
    if isinstance(node, exp.Round):
        x = _as_double(kids[0])
        digits = int(node.args["decimals"].name) if node.args.get("decimals") else 0
        if digits == 0:
            return _whole(exp.Round(this=x.copy()), x)
        scale = _double(f"1e{digits}")
        rounded = exp.Div(this=exp.Round(this=exp.Mul(this=x.copy(), expression=scale)),
                          expression=scale.copy())
        return _case((exp.or_(exp.func("isnan", rounded.copy()),
                              exp.EQ(this=exp.Abs(this=rounded.copy()),
                                     expression=_double("Infinity"))), x.copy()),
                     default=_signed_zero(rounded, x))
    return None


def _rewrite(node: exp.Expr, kind: str | None, kids: list[exp.Expr],
             kinds: Mapping[int, str | None]) -> exp.Expr:
    """``node`` (its children already rewritten: ``kids``) for Spark."""
    # a NULL-typed value where Spark wants a boolean (it has no implicit VOID -> BOOLEAN there): the
    # conditions of a searched CASE (a simple CASE's WHENs are values) and of IF(), AND, OR, NOT
    conditions: list[exp.Expr] = [node] if isinstance(node, (exp.And, exp.Or, exp.Not)) else []
    if isinstance(node, exp.Case) and node.this is None:
        conditions += node.args.get("ifs") or []
    elif not isinstance(node, exp.Case):
        conditions += [kid for kid in kids if isinstance(kid, exp.If)]  # IF(): a call
    for condition in conditions:
        for key in ("this", "expression") if not isinstance(condition, exp.If) else ("this",):
            child = condition.args.get(key)
            if isinstance(child, exp.Null) or (child is not None
                                               and kinds.get(id(child)) == "null"):
                # NULL itself, or an expression typed NULL (e.g. coalesce(NULL, NULL))
                condition.set(key, exp.cast(child, exp.DataType.build("BOOLEAN")))
    if kind == "float64":
        rewritten = _rewrite_float(node, kids)
        if rewritten is not None:
            return rewritten
    if isinstance(node, exp.Sign):
        x = kids[0]
        value = _case((exp.GT(this=x.copy(), expression=exp.Literal.number(0)),
                       exp.Literal.number(1)),
                      (exp.LT(this=x.copy(), expression=exp.Literal.number(0)),
                       exp.Literal.number(-1)),
                      (x.copy().is_(exp.null()).not_(), exp.Literal.number(0)))
        if kinds.get(id(node.this)) == "float64":
            value = _case((exp.func("isnan", x.copy()), exp.Literal.number(0)), default=value)
        return exp.cast(value, exp.DataType.build("TINYINT"))
    if isinstance(node, (exp.Cast, exp.TryCast)) and kind in _INT_KINDS and \
            kinds.get(id(node.this)) == "float64":
        node.set("this", exp.func("bround", kids[0]))
        return node
    if kind in _INT_KINDS and isinstance(node, _ARITH):
        return exp.cast(node, exp.DataType.build(duck_type(kind), dialect="duckdb"))
    return node


def spark_expression(tree: exp.Expr, types: Mapping[int, str]) -> exp.Expr:
    """``tree`` (bare names; ``types`` from ``ondemand.infer`` on it) with DuckDB's semantics
    in Spark SQL."""
    kinds: dict[int, str | None] = {}

    def walk(node: exp.Expr) -> exp.Expr:
        copy = node.copy()
        kids: list[exp.Expr] = []
        for key, value in node.args.items():
            if isinstance(value, exp.Expr):
                new = walk(value)
                copy.set(key, new)
                kinds[id(new)] = types.get(id(value))
                kids.append(new)
            elif isinstance(value, list):
                items = [walk(v) if isinstance(v, exp.Expr) else v for v in value]
                copy.set(key, items)
                kids += [v for v in items if isinstance(v, exp.Expr)]
        return _rewrite(copy, types.get(id(node)), kids, kinds)

    return walk(tree)


def for_spark(od: OnDemandJoin, joins: Sequence[ViewJoin]) -> OnDemandJoin:
    """``od`` with each expression rewritten by ``spark_expression`` (typed from its request
    fields and the features of ``joins`` it reads)."""
    names: dict[str, str] = {}
    for field, _, dtype in od.request:
        names[field] = kind_of(dtype) or "null"
    for name, view, feature in od.inputs:
        join = next(j for j in joins if j.view.name == view)
        declared = join.view.feature(feature)
        assert declared is not None, (view, feature)
        names[name] = kind_of(declared.dtype.sql) or "null"
    return replace(od, features=tuple((output, spark_expression(tree, infer(tree, names)))
                                      for output, tree in od.features))
