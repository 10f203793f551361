"""The on-demand expression language: one SQL expression, evaluated the same way by DuckDB
(offline, inside the point-in-time query) and by Python (online, without the engine).

Pipeline: ``parse`` (sqlglot, duckdb dialect; decimal literals become DOUBLE; anything outside
the subset is refused) -> ``infer`` (a static type per node, DuckDB's rules for the subset;
``typing_query`` lets the compiler check every node against DuckDB itself) -> ``compile_expr``
(one Python closure per node, built once; no sqlglot at request time).

The subset (README "On-demand features"): literals (integers, decimals as DOUBLE, strings,
TRUE/FALSE, NULL), column names, ``+ - * / // %``, unary minus, comparisons, AND/OR/NOT,
IS [NOT] NULL, BETWEEN, IN (a list), CASE (searched and simple), COALESCE, NULLIF, IF,
CAST/TRY_CAST (between integer types, integer and float64, bool and integer, integer or bool to
string), abs, sign, round, floor, ceil, least, greatest, sqrt, ln, log (base 10), length, trim,
concat, ``||``, starts_with, contains. Semantics are DuckDB's: NULL propagates, three-valued
logic, integer arithmetic in the operands' type raising on overflow, ``/`` is float division
(x/0 is +-inf or NaN), ``//`` and ``%`` on integers truncate toward zero and raise on a zero
divisor, NaN equals NaN and sorts above every other float.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from fsql.definitions import FeatureRef, FeatureView, OnDemandFeature, OnDemandView
from fsql.errors import DefinitionError

#: fsql kinds of expression values; the integer kinds carry their range
INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_WIDTH = {"int8": 0, "int16": 1, "int32": 2, "int64": 3}
_DUCK_NAMES = {"int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
               "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN", "date": "DATE",
               "timestamp": "TIMESTAMP", "null": "NULL"}
KINDS = tuple(k for k in _DUCK_NAMES if k != "null")
_T = exp.DataType.Type
_KIND_OF_TYPE = {_T.TINYINT: "int8", _T.SMALLINT: "int16", _T.INT: "int32", _T.BIGINT: "int64",
                 _T.DOUBLE: "float64", _T.VARCHAR: "string", _T.TEXT: "string",
                 _T.BOOLEAN: "bool", _T.DATE: "date", _T.TIMESTAMP: "timestamp",
                 _T.TIMESTAMPNTZ: "timestamp", _T.NULL: "null", _T.UNKNOWN: "null"}


def kind_of(dtype: exp.DataType) -> str | None:
    """The fsql kind of an engine column type, None when expressions have none for it."""
    return _KIND_OF_TYPE.get(dtype.this)
_CAST_TARGETS = {_T.TINYINT: "int8", _T.SMALLINT: "int16", _T.INT: "int32", _T.BIGINT: "int64",
                 _T.DOUBLE: "float64", _T.VARCHAR: "string", _T.TEXT: "string",
                 _T.BOOLEAN: "bool", _T.DATE: "date", _T.TIMESTAMP: "timestamp"}

ALLOWED = ("literals (integer, decimal as DOUBLE, string, TRUE/FALSE, NULL), column names, "
           "+ - * / // %, unary -, = <> < <= > >=, AND OR NOT, IS [NOT] NULL, BETWEEN, IN (...), "
           "CASE, COALESCE, NULLIF, IF, CAST/TRY_CAST, abs, sign, round, floor, ceil, least, "
           "greatest, sqrt, ln, log, length, trim, concat, ||, starts_with, contains")


class UnsupportedError(ValueError):
    """An expression outside the subset, or one fsql cannot type exactly as DuckDB does."""


class EvaluationError(ArithmeticError):
    """A value DuckDB would refuse at run time too (integer overflow, integer division by
    zero, a cast out of range)."""


def is_int(kind: str) -> bool:
    return kind in INT_RANGES


def is_numeric(kind: str) -> bool:
    return kind in INT_RANGES or kind == "float64"


def duck_type(kind: str) -> str:
    return _DUCK_NAMES[kind]


# -- parse -----------------------------------------------------------------------------------

_ARITH = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod)
_COMPARE = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
_NODES = (exp.Literal, exp.Boolean, exp.Null, exp.Column, exp.Identifier, exp.Paren, exp.Neg,
          *_ARITH, *_COMPARE, exp.And, exp.Or, exp.Not, exp.Is, exp.Between, exp.In, exp.Case,
          exp.If, exp.Coalesce, exp.Nullif, exp.Cast, exp.TryCast, exp.DataType, exp.Abs,
          exp.Sign, exp.Round, exp.Floor, exp.Ceil, exp.Least, exp.Greatest, exp.Sqrt, exp.Ln,
          exp.Log, exp.Length, exp.Trim, exp.Concat, exp.DPipe, exp.StartsWith, exp.Contains)


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return f"function {node.name}()"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name().lower()}()"
    return f"{type(node).__name__} ({node.sql('duckdb')[:40]})"


def parse(sql: str) -> exp.Expr:
    """The expression ``sql`` in the subset, decimal literals rewritten as ``CAST(x AS DOUBLE)``
    (so both paths compute in floats). Raises ``UnsupportedError``."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as err:
        raise UnsupportedError(f"cannot parse the expression: {err.errors[0]['description']}"
                               if err.errors else f"cannot parse the expression: {err}"
                               ) from None
    for node in tree.walk():
        if not isinstance(node, _NODES):
            raise UnsupportedError(f"{_describe(node)} is not in the on-demand subset")
        if isinstance(node, exp.Column) and node.table:
            raise UnsupportedError(f"write '{node.name}', not '{node.sql('duckdb')}': "
                                   "request fields and inputs are referred to by bare name")
        if isinstance(node, exp.Trim) and (node.args.get("expression") is not None
                                           or node.args.get("position")):
            raise UnsupportedError("trim() takes one argument (it removes spaces)")
        if isinstance(node, exp.Log) and node.args.get("expression") is not None:
            raise UnsupportedError("log() takes one argument (base 10); use ln() for e")
        if isinstance(node, exp.In) and (node.args.get("query") or node.args.get("unnest")
                                         or node.args.get("field")):
            raise UnsupportedError("IN takes a list of values, not a subquery")
        if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
            digits = _int_const(node.args["decimals"])
            if digits is None or not 0 <= digits <= 15:
                raise UnsupportedError("round(x, n): n must be an integer literal 0..15")
        if isinstance(node, exp.Cast | exp.TryCast) and node.to.this not in _CAST_TARGETS:
            raise UnsupportedError(f"CAST to {node.to.sql('duckdb')}: cast to one of "
                                   "int8, int16, int32, int64, float64, string, bool, date, "
                                   "timestamp (TINYINT SMALLINT INTEGER BIGINT DOUBLE VARCHAR "
                                   "BOOLEAN DATE TIMESTAMP)")
        if isinstance(node, exp.Literal) and not node.is_string:
            text = node.this
            if "." in text or "e" in text.lower():
                try:
                    float(text)
                except ValueError:
                    raise UnsupportedError(f"bad number {text}") from None
                double = exp.cast(exp.Literal.string(text), exp.DataType.build("DOUBLE"))
                if node is tree:
                    return double
                node.replace(double)
            elif int(text) > INT_RANGES["int64"][1]:
                raise UnsupportedError(f"integer literal {text} is beyond int64")
    return tree


def columns(tree: exp.Expr) -> list[str]:
    """The names an expression refers to, in order of first use."""
    return list(dict.fromkeys(c.name for c in tree.find_all(exp.Column)))


# -- types -----------------------------------------------------------------------------------

def _int_const(node: exp.Expr) -> int | None:
    """The value of an integer literal, possibly negated or in parentheses."""
    if isinstance(node, exp.Paren):
        return _int_const(node.this)
    if isinstance(node, exp.Neg):
        inner = _int_const(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string:
        return int(node.this)
    return None


def _fits(value: int, kind: str) -> bool:
    lo, hi = INT_RANGES[kind]
    return lo <= value <= hi


def _wider(a: str, b: str) -> str:
    return a if _WIDTH[a] >= _WIDTH[b] else b


def _common(nodes: list[exp.Expr], types: dict[int, str], what: str) -> str:
    """DuckDB's common type of several values: integer constants take the type of the other
    integers when they fit it; any float makes float64; NULL is absorbed."""
    kinds = [types[id(n)] for n in nodes]
    real = [k for k in kinds if k != "null"]
    if not real:
        return "null"
    if all(is_numeric(k) for k in real):
        if "float64" in real:
            return "float64"
        consts = [(n, types[id(n)]) for n in nodes if _int_const(n) is not None]
        others = [types[id(n)] for n in nodes
                  if _int_const(n) is None and types[id(n)] != "null"]
        if not others:
            result = real[0]
            for k in real[1:]:
                result = _wider(result, k)
            return result
        result = others[0]
        for k in others[1:]:
            result = _wider(result, k)
        for node, kind in consts:
            value = _int_const(node)
            assert value is not None
            if not _fits(value, result):
                result = _wider(result, kind)
        return result
    if len(set(real)) == 1:
        return real[0]
    raise UnsupportedError(f"{what} mixes {' and '.join(sorted(set(real)))} values; CAST them "
                           "to one type")


def infer(tree: exp.Expr, inputs: Mapping[str, str]) -> dict[int, str]:
    """The kind of every node (by ``id``), following DuckDB's typing rules for the subset.
    ``inputs``: name -> kind. Raises ``UnsupportedError`` for mixed or unsupported types."""
    types: dict[int, str] = {}
    _infer(tree, inputs, types)
    return types


def _infer(node: exp.Expr, inputs: Mapping[str, str], types: dict[int, str]) -> str:
    children = [c for c in node.iter_expressions() if not isinstance(c, exp.DataType)]
    for child in children:
        if not isinstance(child, exp.Identifier):
            _infer(child, inputs, types)
    kind = _kind(node, inputs, types)
    types[id(node)] = kind
    return kind


def _need(node: exp.Expr, kinds: list[str], ok: Callable[[str], bool], what: str) -> None:
    for k in kinds:
        if k != "null" and not ok(k):
            raise UnsupportedError(f"{_describe(node)} needs {what}, not a {k} value")


def _kind(node: exp.Expr, inputs: Mapping[str, str], types: dict[int, str]) -> str:
    def t(child: exp.Expr | None) -> str:
        return "null" if child is None else types[id(child)]

    if isinstance(node, exp.Literal):
        if node.is_string:
            return "string"
        return "int32" if _fits(int(node.this), "int32") else "int64"
    if isinstance(node, exp.Boolean):
        return "bool"
    if isinstance(node, exp.Null):
        return "null"
    if isinstance(node, exp.Column):
        if node.name not in inputs:
            raise UnsupportedError(f"unknown name '{node.name}'")
        return inputs[node.name]
    if isinstance(node, exp.Paren):
        return t(node.this)
    if isinstance(node, exp.Neg):
        _need(node, [t(node.this)], is_numeric, "a number")
        return t(node.this)
    if isinstance(node, exp.Div):
        _need(node, [t(node.this), t(node.expression)], is_numeric, "numbers")
        return "float64"
    if isinstance(node, _ARITH):
        pair = [node.this, node.expression]
        _need(node, [t(n) for n in pair], is_numeric, "numbers")
        kind = _common(pair, types, _describe(node))
        if isinstance(node, exp.IntDiv) and kind == "float64":
            raise UnsupportedError("// is for integers; use / and floor() for floats")
        return kind
    if isinstance(node, (*_COMPARE, exp.Between)):
        operands = [node.this, *(node.args[k] for k in ("expression", "low", "high")
                                 if node.args.get(k) is not None)]
        _common(operands, types, _describe(node))
        return "bool"
    if isinstance(node, exp.In):
        _common([node.this, *node.expressions], types, "IN")
        return "bool"
    if isinstance(node, exp.And | exp.Or):
        _need(node, [t(node.this), t(node.expression)], lambda k: k == "bool", "booleans")
        return "bool"
    if isinstance(node, exp.Not):
        _need(node, [t(node.this)], lambda k: k == "bool", "a boolean")
        return "bool"
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise UnsupportedError("IS is only for IS [NOT] NULL")
        return "bool"
    if isinstance(node, exp.Case):
        if node.this is not None:
            for branch in node.args["ifs"]:
                _common([node.this, branch.this], types, "CASE")
        else:
            _need(node, [t(b.this) for b in node.args["ifs"]], lambda k: k == "bool",
                  "boolean WHEN conditions")
        values = [b.args["true"] for b in node.args["ifs"]]
        if node.args.get("default") is not None:
            values.append(node.args["default"])
        return _common(values, types, "CASE")
    if isinstance(node, exp.If) and isinstance(node.parent, exp.Case):
        return t(node.args["true"])  # a WHEN branch: the CASE checks it
    if isinstance(node, exp.If):
        _need(node, [t(node.this)], lambda k: k == "bool", "a boolean condition")
        values = [node.args["true"]]
        if node.args.get("false") is not None:
            values.append(node.args["false"])
        return _common(values, types, "IF")
    if isinstance(node, exp.Coalesce | exp.Least | exp.Greatest):
        values = [node.this, *node.expressions]
        kind = _common(values, types, _describe(node))
        if isinstance(node, exp.Least | exp.Greatest) and kind in ("bool", "null"):
            raise UnsupportedError(f"{_describe(node)} needs numbers, strings or times")
        return kind
    if isinstance(node, exp.Nullif):
        _common([node.this, node.expression], types, "NULLIF")
        return t(node.this)
    if isinstance(node, exp.Cast | exp.TryCast):
        target = _CAST_TARGETS[node.to.this]
        if (target == "float64" and isinstance(node.this, exp.Literal) and node.this.is_string
                and _is_number(node.this.this)):
            return target  # a decimal literal, made DOUBLE by ``parse``
        return _cast_kind(t(node.this), target)
    if isinstance(node, exp.Abs | exp.Round):
        _need(node, [t(node.this)], is_numeric, "a number")
        return t(node.this)
    if isinstance(node, exp.Sign):
        _need(node, [t(node.this)], is_numeric, "a number")
        return "int8"
    if isinstance(node, exp.Floor | exp.Ceil | exp.Sqrt | exp.Ln | exp.Log):
        _need(node, [t(node.this)], is_numeric, "a number")
        if isinstance(node, exp.Floor | exp.Ceil) and node.args.get("decimals") is not None:
            raise UnsupportedError(f"{_describe(node)} takes one argument")
        return "float64"
    if isinstance(node, exp.Length):
        _need(node, [t(node.this)], lambda k: k == "string", "a string")
        return "int64"
    if isinstance(node, exp.Trim):
        _need(node, [t(node.this)], lambda k: k == "string", "a string")
        return "string"
    if isinstance(node, exp.Concat):
        _need(node, [t(e) for e in node.expressions], lambda k: k == "string", "strings")
        return "string"
    if isinstance(node, exp.DPipe | exp.StartsWith | exp.Contains):
        _need(node, [t(node.this), t(node.expression)], lambda k: k == "string", "strings")
        return "string" if isinstance(node, exp.DPipe) else "bool"
    raise UnsupportedError(f"{_describe(node)} is not in the on-demand subset")


_CASTS = {("bool", "int"), ("int", "bool"), ("int", "int"), ("int", "float64"),
          ("float64", "int"), ("int", "string"), ("bool", "string"), ("date", "timestamp")}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "infinity", "-inf", "-infinity", "+inf")


def _family(kind: str) -> str:
    return "int" if is_int(kind) else kind


def _cast_kind(source: str, target: str) -> str:
    if source in ("null", target) or (_family(source), _family(target)) in _CASTS:
        return target
    raise UnsupportedError(f"CAST from {source} to {target} is not in the on-demand subset "
                           "(casts: between integer types, integer <-> float64, bool <-> "
                           "integer, integer or bool -> string, date -> timestamp)")


def typed_nodes(tree: exp.Expr) -> list[exp.Expr]:
    """The nodes whose DuckDB type the compiler checks: all but literals (whose type depends
    on their context) and identifiers."""
    return [n for n in tree.walk() if not isinstance(
        n, exp.Literal | exp.Null | exp.Identifier | exp.DataType | exp.Boolean)
        and _int_const(n) is None
        and not (isinstance(n, exp.If) and isinstance(n.parent, exp.Case))]


def typing_query(tree: exp.Expr, inputs: Mapping[str, str]) -> tuple[exp.Select,
                                                                     list[exp.Expr]]:
    """``SELECT <node> AS c0, ... FROM (SELECT CAST(NULL AS <type>) AS <input>, ...)``: DESCRIBE
    it to learn DuckDB's type of each checked node."""
    nodes = typed_nodes(tree)
    fields: list[exp.Expr] = [
        exp.alias_(exp.cast(exp.null(), exp.DataType.build(duck_type(k))), name, quoted=True)
        for name, k in inputs.items()]
    row = exp.select(*(fields or [exp.alias_(exp.Literal.number(1), "_")]))
    query = exp.select(*[exp.alias_(n.copy(), f"c{i}") for i, n in enumerate(nodes)]).from_(
        row.subquery("request"))
    return query, nodes


def first_mismatch(nodes: list[exp.Expr], types: Mapping[int, str],
                   actual: list[exp.DataType]) -> tuple[exp.Expr, str] | None:
    """The first node of ``typing_query`` whose DuckDB type (``actual``, in order) is not the
    kind fsql gives it, with that kind: then the two paths could compute differently."""
    for node, dtype in zip(nodes, actual, strict=True):
        if kind_of(dtype) != types[id(node)]:
            return node, types[id(node)]
    return None


# -- evaluate --------------------------------------------------------------------------------

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]

_NAMES: dict[type, str] = {exp.Add: "addition", exp.Sub: "subtraction", exp.Mul: "multiplication",
          exp.IntDiv: "division", exp.Mod: "modulo", exp.Neg: "negation", exp.Abs: "abs"}


def _checked(kind: str, what: str) -> Callable[[int], int]:
    lo, hi = INT_RANGES[kind]

    def check(value: int) -> int:
        if lo <= value <= hi:
            return value
        raise EvaluationError(f"Out of Range Error: overflow in {what} of {duck_type(kind)} "
                              f"({value})")
    return check


def _to(kind: str) -> Callable[[Any], Any]:
    """A value of another member of ``kind``'s family as ``kind`` (ints to float)."""
    if kind == "float64":
        return lambda v: None if v is None else float(v)
    return lambda v: v


def _float_key(v: float) -> tuple[int, float]:
    """DuckDB orders floats with NaN equal to NaN and above everything else."""
    return (1, 0.0) if v != v else (0, v)


def _key(kind: str) -> Callable[[Any], Any]:
    return _float_key if kind == "float64" else (lambda v: v)


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: a == b, exp.NEQ: lambda a, b: a != b, exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b, exp.GT: lambda a, b: a > b, exp.GTE: lambda a, b: a >= b}


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _fmod(a: float, b: float) -> float:
    if math.isinf(a) or b == 0 or a != a or b != b:
        return math.nan
    return math.fmod(a, b)


def _round_half_away(x: float) -> float:
    if math.isinf(x) or x != x:
        return x
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:
        t += math.copysign(1.0, x)
    return math.copysign(t, x) if t == 0 else t


def _round(x: float, digits: int) -> float:
    if digits == 0:
        return _round_half_away(x)
    modifier = 10.0 ** digits
    rounded = _round_half_away(x * modifier) / modifier
    return x if math.isinf(rounded) or rounded != rounded else rounded


def _floor(x: float) -> float:
    if math.isinf(x) or x != x:
        return x
    f = float(math.floor(x))
    return math.copysign(f, x) if f == 0 else f


def _ceil(x: float) -> float:
    if math.isinf(x) or x != x:
        return x
    c = float(math.ceil(x))
    return math.copysign(c, x) if c == 0 else c


def _ln(x: float) -> float:
    if x != x or x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    return math.log(x) if not math.isinf(x) else x


def _log10(x: float) -> float:
    if x != x or x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    return math.log10(x) if not math.isinf(x) else x


def _sqrt(x: float) -> float:
    if x != x or x < 0:
        return math.nan
    return math.sqrt(x)


def _sign(x: Any) -> int:
    return 0 if x != x or x == 0 else (1 if x > 0 else -1)


def _cast_fn(source: str, target: str, safe: bool) -> Callable[[Any], Any]:
    def fail(value: Any) -> Any:
        if safe:
            return None
        raise EvaluationError(f"Conversion Error: cannot cast {value!r} to {duck_type(target)}")

    if source in ("null", target):
        return lambda v: v
    if is_int(target):
        lo, hi = INT_RANGES[target]
        if source == "float64":
            def from_float(v: float) -> Any:
                if math.isinf(v) or v != v:
                    return fail(v)
                r = round(v)  # DuckDB rounds half to even (nearbyint)
                return r if lo <= r <= hi else fail(v)
            return from_float
        if source == "bool":
            return lambda v: int(v)
        return lambda v: v if lo <= v <= hi else fail(v)
    if target == "float64":
        return float  # from an integer, or the text of a decimal literal
    if target == "bool":
        return lambda v: v != 0
    if target == "string":
        return (lambda v: "true" if v else "false") if source == "bool" else str
    if target == "timestamp":
        import datetime as dt

        return lambda v: dt.datetime(v.year, v.month, v.day)
    raise UnsupportedError(f"CAST from {source} to {target}")


def compile_expr(tree: exp.Expr, types: Mapping[int, str]) -> Fn:
    """One closure computing ``tree`` for a row (a mapping name -> value); raises
    ``EvaluationError`` where DuckDB raises."""
    return _compile(tree, types)


def _compile(node: exp.Expr, types: Mapping[int, str]) -> Fn:  # noqa: C901
    kind = types[id(node)]
    if kind == "null":  # only NULLs flow into it: DuckDB gives NULL too
        return lambda row: None

    def sub(child: exp.Expr) -> Fn:
        return _compile(child, types)

    if isinstance(node, exp.Literal):
        value: Any = node.this if node.is_string else int(node.this)
        return lambda row: value
    if isinstance(node, exp.Boolean):
        flag = bool(node.this)
        return lambda row: flag
    if isinstance(node, exp.Null):
        return lambda row: None
    if isinstance(node, exp.Column):
        name = node.name
        if kind == "float64":
            return lambda row: None if row[name] is None else float(row[name])
        return lambda row: row[name]
    if isinstance(node, exp.Paren):
        return sub(node.this)
    if isinstance(node, exp.Neg):
        f = sub(node.this)
        if kind == "float64":
            return lambda row: None if (v := f(row)) is None else -float(v)
        check = _checked(kind, "negation")
        return lambda row: None if (v := f(row)) is None else check(-v)
    if isinstance(node, _ARITH):
        return _arith(node, kind, sub(node.this), sub(node.expression))
    if isinstance(node, _COMPARE):
        common = _common([node.this, node.expression], dict(types), "comparison")
        conv, key, op = _to(common), _key(common), _CMP[type(node)]
        fa, fb = sub(node.this), sub(node.expression)

        def compare(row: Row) -> Any:
            a, b = fa(row), fb(row)
            if a is None or b is None:
                return None
            return op(key(conv(a)), key(conv(b)))
        return compare
    if isinstance(node, exp.Between):
        common = _common([node.this, node.args["low"], node.args["high"]], dict(types),
                         "BETWEEN")
        conv, key = _to(common), _key(common)
        fx, flo, fhi = sub(node.this), sub(node.args["low"]), sub(node.args["high"])

        def between(row: Row) -> Any:
            x, lo, hi = fx(row), flo(row), fhi(row)
            low = None if x is None or lo is None else key(conv(x)) >= key(conv(lo))
            high = None if x is None or hi is None else key(conv(x)) <= key(conv(hi))
            return _and(low, high)
        return between
    if isinstance(node, exp.In):
        common = _common([node.this, *node.expressions], dict(types), "IN")
        conv, key = _to(common), _key(common)
        fx, options = sub(node.this), [sub(e) for e in node.expressions]

        def within(row: Row) -> Any:
            x, values = fx(row), [option(row) for option in options]  # all, as DuckDB does
            if x is None:
                return None
            kx, unknown = key(conv(x)), False
            for o in values:
                if o is None:
                    unknown = True
                elif key(conv(o)) == kx:
                    return True
            return None if unknown else False
        return within
    if isinstance(node, exp.And | exp.Or):
        fa, fb = sub(node.this), sub(node.expression)
        combine = _and if isinstance(node, exp.And) else _or
        return lambda row: combine(fa(row), fb(row))
    if isinstance(node, exp.Not):
        f = sub(node.this)
        return lambda row: None if (v := f(row)) is None else not v
    if isinstance(node, exp.Is):
        f = sub(node.this)
        return lambda row: f(row) is None
    if isinstance(node, exp.Case):
        return _case(node, kind, types, sub)
    if isinstance(node, exp.If):
        cond, yes = sub(node.this), sub(node.args["true"])
        no = sub(node.args["false"]) if node.args.get("false") is not None else None
        conv = _to(kind)

        def if_(row: Row) -> Any:
            if cond(row):
                return conv(yes(row))
            return conv(no(row)) if no is not None else None
        return if_
    if isinstance(node, exp.Coalesce):
        parts, conv = [sub(node.this), *[sub(e) for e in node.expressions]], _to(kind)

        def coalesce(row: Row) -> Any:
            for part in parts:
                v = part(row)
                if v is not None:
                    return conv(v)
            return None
        return coalesce
    if isinstance(node, exp.Nullif):
        common = _common([node.this, node.expression], dict(types), "NULLIF")
        cconv, key = _to(common), _key(common)
        fa, fb = sub(node.this), sub(node.expression)

        def nullif(row: Row) -> Any:
            a, b = fa(row), fb(row)
            if a is not None and b is not None and key(cconv(a)) == key(cconv(b)):
                return None
            return a
        return nullif
    if isinstance(node, exp.Least | exp.Greatest):
        parts, conv, key = ([sub(node.this), *[sub(e) for e in node.expressions]], _to(kind),
                            _key(kind))
        pick = min if isinstance(node, exp.Least) else max

        def extreme(row: Row) -> Any:
            values = [conv(v) for p in parts if (v := p(row)) is not None]
            return pick(values, key=key) if values else None
        return extreme
    if isinstance(node, exp.Cast | exp.TryCast):
        f = sub(node.this)
        cast = _cast_fn(types[id(node.this)], kind, isinstance(node, exp.TryCast))
        return lambda row: None if (v := f(row)) is None else cast(v)
    if isinstance(node, exp.Abs):
        f = sub(node.this)
        if kind == "float64":
            return lambda row: None if (v := f(row)) is None else abs(float(v))
        check = _checked(kind, "abs")
        return lambda row: None if (v := f(row)) is None else check(abs(v))
    if isinstance(node, exp.Round):
        f = sub(node.this)
        if is_int(kind):
            return f
        digits = _int_const(node.args["decimals"]) if node.args.get("decimals") else 0
        assert digits is not None
        return lambda row: None if (v := f(row)) is None else _round(float(v), digits)
    unary: dict[type, Callable[[Any], Any]] = {
        exp.Sign: _sign, exp.Floor: _floor, exp.Ceil: _ceil, exp.Sqrt: _sqrt, exp.Ln: _ln,
        exp.Log: _log10, exp.Length: len, exp.Trim: lambda s: s.strip(" ")}
    if type(node) in unary:
        fn, f = unary[type(node)], sub(node.this)
        source = types[id(node.this)]
        if kind == "float64" and source != "float64":
            return lambda row: None if (v := f(row)) is None else fn(float(v))
        return lambda row: None if (v := f(row)) is None else fn(v)
    if isinstance(node, exp.Concat):
        parts = [sub(e) for e in node.expressions]
        return lambda row: "".join(v for p in parts if (v := p(row)) is not None)
    if isinstance(node, exp.DPipe | exp.StartsWith | exp.Contains):
        fa, fb = sub(node.this), sub(node.expression)
        op2: Callable[[str, str], Any] = (
            (lambda a, b: a + b) if isinstance(node, exp.DPipe) else
            (lambda a, b: a.startswith(b)) if isinstance(node, exp.StartsWith) else
            (lambda a, b: b in a))

        def strings(row: Row) -> Any:
            a, b = fa(row), fb(row)
            return None if a is None or b is None else op2(a, b)
        return strings
    raise UnsupportedError(f"{_describe(node)} is not in the on-demand subset")


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _arith(node: exp.Expr, kind: str, fa: Fn, fb: Fn) -> Fn:
    if isinstance(node, exp.Div):
        def divide(row: Row) -> Any:
            a, b = fa(row), fb(row)
            return None if a is None or b is None else _div(float(a), float(b))
        return divide
    if kind == "float64":
        ops: dict[type, Callable[[Any, Any], Any]] = {
            exp.Add: lambda a, b: a + b, exp.Sub: lambda a, b: a - b,
            exp.Mul: lambda a, b: a * b, exp.Mod: _fmod}
        op = ops[type(node)]

        def floats(row: Row) -> Any:
            a, b = fa(row), fb(row)
            return None if a is None or b is None else op(float(a), float(b))
        return floats
    check = _checked(kind, _NAMES[type(node)])
    if isinstance(node, exp.IntDiv | exp.Mod):
        modulo = isinstance(node, exp.Mod)

        def divmod_(row: Row) -> Any:
            a, b = fa(row), fb(row)
            if a is None or b is None:
                return None
            if b == 0:
                raise EvaluationError("Invalid Input Error: Division by zero")
            q = abs(a) // abs(b)
            if (a < 0) != (b < 0):
                q = -q
            return a - b * q if modulo else check(q)
        return divmod_
    iops: dict[type, Callable[[int, int], int]] = {exp.Add: lambda a, b: a + b,
                                                   exp.Sub: lambda a, b: a - b,
                                                   exp.Mul: lambda a, b: a * b}
    iop = iops[type(node)]

    def ints(row: Row) -> Any:
        a, b = fa(row), fb(row)
        return None if a is None or b is None else check(iop(a, b))
    return ints


def _case(node: exp.Case, kind: str, types: Mapping[int, str],
          sub: Callable[[exp.Expr], Fn]) -> Fn:
    conv = _to(kind)
    branches = [(sub(b.this), sub(b.args["true"])) for b in node.args["ifs"]]
    default = sub(node.args["default"]) if node.args.get("default") is not None else None
    if node.this is None:
        def searched(row: Row) -> Any:
            for cond, value in branches:
                if cond(row):
                    return conv(value(row))
            return conv(default(row)) if default is not None else None
        return searched
    subject = sub(node.this)
    keys = []
    for b in node.args["ifs"]:
        common = _common([node.this, b.this], dict(types), "CASE")
        keys.append((_to(common), _key(common)))

    def simple(row: Row) -> Any:
        x = subject(row)
        for (cond, value), (cv, key) in zip(branches, keys, strict=True):
            w = cond(row)
            if x is not None and w is not None and key(cv(x)) == key(cv(w)):
                return conv(value(row))
        return conv(default(row)) if default is not None else None
    return simple


def request_value(kind: str, value: Any, from_text: bool = False) -> Any:
    """A request value as the evaluator takes it for a field of ``kind``; raises ValueError.
    Integers pass for float64 fields (as floats); ``from_text`` parses text (the CLI)."""
    import datetime as dt

    if value is None:
        return None
    if from_text and isinstance(value, str):
        if kind == "string":
            return value
        if value.lower() in ("", "null"):
            return None
        if is_int(kind):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        elif kind == "float64":
            value = float(value)
        elif kind == "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{value!r} is not true or false")
            return value.lower() == "true"
    if is_int(kind):
        if type(value) is not int:
            raise ValueError(f"{value!r} is not an integer")
        lo, hi = INT_RANGES[kind]
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of the range of {kind}")
        return value
    if kind == "float64":
        if type(value) not in (int, float):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if kind == "bool":
        if type(value) is not bool:
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if kind == "string":
        if type(value) is not str:
            raise ValueError(f"{value!r} is not a string")
        return value
    if kind == "date":
        if isinstance(value, str):
            return dt.date.fromisoformat(value)
        if type(value) is not dt.date:
            raise ValueError(f"{value!r} is not a date")
        return value
    if kind == "timestamp":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            raise ValueError(f"{value!r} is not a timestamp")
        if value.tzinfo is not None:  # an instant; naive timestamps mean UTC
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    raise ValueError(f"request fields of type {kind} are not supported")


# -- binding a view --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BoundFeature:
    """One checked feature: its expression (as run offline), its kind and its evaluator."""

    feature: OnDemandFeature
    tree: exp.Expr
    kind: str
    evaluate: Fn


@dataclass(frozen=True, slots=True)
class BoundView:
    """An on-demand view with its names resolved and its expressions compiled."""

    view: OnDemandView
    #: bare name -> the feature view feature it reads
    inputs: Mapping[str, FeatureRef]
    #: every name an expression may use -> its kind (request fields and inputs)
    kinds: Mapping[str, str]
    features: tuple[BoundFeature, ...]

    def feature(self, name: str) -> BoundFeature | None:
        return next((f for f in self.features if f.feature.name == name), None)


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def bind(view: OnDemandView, views: Mapping[str, FeatureView]) -> BoundView:
    """Resolve ``view``'s inputs against ``views`` and compile its expressions; raises
    ``DefinitionError`` naming the file and line of the first problem."""
    path = view.path
    kinds: dict[str, str] = {}
    for request in view.request:
        if request.dtype.name not in KINDS:
            raise DefinitionError(path, f"on-demand view '{view.name}': request field "
                                  f"'{request.name}' has type {request.dtype.name}, which "
                                  "expressions do not support", line=request.line,
                                  hint=f"use one of: {', '.join(KINDS)}.")
        kinds[request.name] = request.dtype.name
    inputs: dict[str, FeatureRef] = {}
    for ref in view.inputs:
        source = views.get(ref.view)
        if source is None:
            raise DefinitionError(path, f"on-demand view '{view.name}': input {ref} names no "
                                  f"feature view '{ref.view}'", line=ref.line,
                                  hint=_did_you_mean(ref.view, list(views))
                                  + f"feature views: {', '.join(sorted(views)) or 'none'}.")
        feature = source.feature(ref.feature or "")
        if feature is None:
            names = [f.name for f in source.features]
            raise DefinitionError(path, f"on-demand view '{view.name}': view '{ref.view}' has "
                                  f"no feature '{ref.feature}'", line=ref.line,
                                  hint=_did_you_mean(ref.feature or "", names)
                                  + f"its features: {', '.join(names)}.")
        name = feature.name
        if name in kinds:
            other = ("request field" if name in {r.name for r in view.request}
                     else f"input {inputs[name]}")
            raise DefinitionError(path, f"on-demand view '{view.name}': input {ref} is "
                                  f"called '{name}' in expressions, like the {other}",
                                  line=ref.line, hint="expressions refer to inputs by bare "
                                  "feature name, so the names must differ; rename one.")
        if feature.dtype.name not in KINDS:
            raise DefinitionError(path, f"on-demand view '{view.name}': input {ref} has type "
                                  f"{feature.dtype.name}, which expressions do not support",
                                  line=ref.line, hint=f"supported: {', '.join(KINDS)}.")
        kinds[name] = feature.dtype.name
        inputs[name] = ref
    bound: list[BoundFeature] = []
    for od_feature in view.features:
        what = f"on-demand feature {view.name}.{od_feature.name}"
        try:
            tree = parse(od_feature.sql)
            unknown = [c for c in columns(tree) if c not in kinds]
            if unknown:
                raise DefinitionError(
                    path, f"{what}: '{unknown[0]}' is neither a request field nor an input",
                    line=od_feature.line, hint=_did_you_mean(unknown[0], list(kinds))
                    + f"the names it may use: {', '.join(kinds) or 'none'}.")
            types = infer(tree, kinds)
            evaluate = compile_expr(tree, types)
        except UnsupportedError as err:
            raise DefinitionError(path, f"{what}: {err}", line=od_feature.line,
                                  hint=f"the on-demand subset: {ALLOWED}.") from None
        kind = types[id(tree)]
        if kind != "null" and kind != od_feature.dtype.name:
            raise DefinitionError(path, f"{what} is declared {od_feature.dtype.name} but its "
                                  f"expression is {kind}", line=od_feature.line,
                                  hint=f"declare type: {kind}, or CAST the expression.")
        bound.append(BoundFeature(od_feature, tree, kind, evaluate))
    return BoundView(view, inputs, kinds, tuple(bound))
