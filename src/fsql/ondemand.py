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

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from fsql.definitions import FeatureRef, FeatureView, OnDemandFeature, OnDemandView
from fsql.errors import DefinitionError, did_you_mean

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
                 _T.BOOLEAN: "bool", _T.DATE: "date", _T.TIMESTAMP: "timestamp",
                 _T.TIMESTAMPNTZ: "timestamp"}

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
    _check_rewrites(tree, types)
    return types


_STRICT = (*_ARITH, *_COMPARE, exp.Neg, exp.Between, exp.In, exp.Nullif, exp.DPipe,
           exp.StartsWith, exp.Contains, exp.Abs, exp.Sign, exp.Round, exp.Floor, exp.Ceil,
           exp.Sqrt, exp.Ln, exp.Log, exp.Length, exp.Trim, exp.Cast, exp.TryCast)
_MOVABLE = (exp.Add, exp.Sub, exp.Mul, exp.Neg)


def _constant(node: exp.Expr) -> bool:
    return node.find(exp.Column) is None


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _check_rewrites(tree: exp.Expr, types: dict[int, str]) -> None:
    """Refuse the shapes DuckDB's optimizer rewrites in ways that skip an error the evaluator
    would raise (so the two paths could differ on an overflow or a division by zero): a
    strict operation with an operand that is always NULL (folded to NULL), a constant operand
    of AND/OR (``FALSE AND x`` becomes FALSE), a constant compared with arithmetic on a
    constant (``x + 1 = 3`` becomes ``x = 2``), and IS [NOT] NULL of anything but a name
    (``(x + 1) IS NULL`` becomes ``x IS NULL``)."""
    for node in tree.walk():
        if isinstance(node, exp.Is) and not isinstance(_unparen(node.this), exp.Column):
            raise UnsupportedError("IS [NOT] NULL applies to a request field or input name "
                                   f"only, not to {node.this.sql('duckdb')}")
        if isinstance(node, exp.And | exp.Or):
            for side in (node.this, node.expression):
                if _constant(side):
                    raise UnsupportedError(f"{side.sql('duckdb')} is a constant operand of "
                                           f"{node.key.upper()}; DuckDB simplifies it away: "
                                           "remove it")
        if isinstance(node, _COMPARE):
            for const, other in ((node.this, node.expression), (node.expression, node.this)):
                other = _unparen(other)
                if _constant(const) and isinstance(other, _MOVABLE) and (
                        isinstance(other, exp.Neg)
                        or any(_constant(c) for c in other.iter_expressions())):
                    raise UnsupportedError(
                        f"{node.sql('duckdb')} compares a constant with arithmetic on a "
                        "constant, which DuckDB rewrites (moving the constant across, so an "
                        "overflow of the arithmetic goes unseen); write the comparison "
                        "with the name alone on one side")
        if isinstance(node, _STRICT) and not (isinstance(node, exp.Cast | exp.TryCast)
                                              and isinstance(node.this, exp.Null)):
            for operand in node.iter_expressions():
                if (not isinstance(operand, exp.DataType | exp.Identifier)
                        and _always_null(operand, types)):
                    raise UnsupportedError(
                        f"{operand.sql('duckdb')} is always NULL, so DuckDB folds "
                        f"{node.sql('duckdb')} to NULL; write NULL (or drop it) instead")
    if _always_null(tree, types):
        raise UnsupportedError("the expression is always NULL")


def _always_null(node: exp.Expr, types: dict[int, str]) -> bool:
    """A constant whose value is NULL (a NULL literal, a cast of one, a CASE of only NULLs...)."""
    if types.get(id(node)) == "null" or isinstance(node, exp.Null):
        return True
    if not _constant(node):
        return False
    try:
        return compile_expr(node, types)({}) is None
    except (EvaluationError, ArithmeticError, ValueError):
        return False  # DuckDB does not fold what fails: it fails at run time, as fsql does


def _infer(node: exp.Expr, inputs: Mapping[str, str], types: dict[int, str]) -> str:
    children = [c for c in node.iter_expressions() if not isinstance(c, exp.DataType)]
    for child in children:
        if not isinstance(child, exp.Identifier):
            _infer(child, inputs, types)
    kind = _kind(node, inputs, types)
    types[id(node)] = kind
    return kind


def _when(node: exp.Expr) -> bool:
    """A WHEN branch of a CASE (sqlglot's ``If`` under ``Case.ifs``), not an IF() call (which
    may also sit in a CASE: as its subject, a condition, a value or its ELSE)."""
    return (isinstance(node, exp.If) and isinstance(node.parent, exp.Case)
            and node.arg_key == "ifs")


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
    if _when(node):
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
        and not _when(n)]


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

_NAMES: dict[type, str] = {exp.Add: "addition", exp.Sub: "subtraction",
                           exp.Mul: "multiplication"}


def _float_key(v: float) -> tuple[int, float]:
    """DuckDB orders floats with NaN equal to NaN and above everything else."""
    return (1, 0.0) if v != v else (0, v)


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
    """A function computing ``tree`` for one row (a mapping name -> value); raises
    ``EvaluationError`` where DuckDB raises. The same generated code as ``compile_batch``."""
    names = columns(tree)
    batch = compile_batch(tree, types, names)
    return lambda row: batch([[row[n]] for n in names], 1)[0]


Batch = Callable[[Sequence[Sequence[Any]], int], list[Any]]


def compile_batch(tree: exp.Expr, types: Mapping[int, str], names: Sequence[str]) -> Batch:
    """A Python function ``f(columns, n) -> values``: ``tree`` evaluated on ``n`` rows given as
    columns (in the order of ``names``). Generated once as Python source (one statement per
    node, no call per node and row), so evaluation costs little per row."""
    gen = _Gen(types, {name: i for i, name in enumerate(names)})
    body: list[str] = []
    result = gen.emit(tree, body, 2)
    loads = [f"        v{i} = c{i}[i]" for i in sorted(gen.used)]
    unpack = [f"    c{i} = columns[{i}]" for i in sorted(gen.used)]
    source = "\n".join(["def evaluate(columns, n):", *unpack, "    out = [None] * n",
                        "    for i in range(n):", *loads, *body,
                        f"        out[i] = {result}", "    return out"])
    namespace = dict(gen.constants)
    exec(compile(source, "<on-demand expression>", "exec"), namespace)  # noqa: S102
    function: Batch = namespace["evaluate"]
    return function


_PY_OP = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.EQ: "==", exp.NEQ: "!=",
          exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}


def _overflow(kind: str, what: str, value: int) -> None:
    raise EvaluationError(f"Out of Range Error: overflow in {what} of {duck_type(kind)} "
                          f"({value})")


def _int_div(a: int, b: int, kind: str) -> int:
    if b == 0:
        raise EvaluationError("Invalid Input Error: Division by zero")
    q = abs(a) // abs(b)
    q = -q if (a < 0) != (b < 0) else q
    lo, hi = INT_RANGES[kind]
    if not lo <= q <= hi:
        _overflow(kind, "division", q)
    return q


def _int_mod(a: int, b: int) -> int:
    if b == 0:
        raise EvaluationError("Invalid Input Error: Division by zero")
    q = abs(a) // abs(b)
    return a - b * (-q if (a < 0) != (b < 0) else q)


def _in(x: Any, options: list[Any], key: Callable[[Any], Any]) -> Any:
    if x is None:
        return None
    kx, unknown = key(x), False
    for o in options:
        if o is None:
            unknown = True
        elif key(o) == kx:
            return True
    return None if unknown else False


def _extreme(values: list[Any], pick: Callable[..., Any], key: Callable[[Any], Any]) -> Any:
    present = [v for v in values if v is not None]
    return pick(present, key=key) if present else None


def _identity(value: Any) -> Any:
    return value


class _Gen:
    """Emits Python statements for an expression tree: each node assigns one local ``t<n>``
    (or is a constant), following DuckDB's semantics (see the module docstring)."""

    def __init__(self, types: Mapping[int, str], index: dict[str, int]) -> None:
        self.types, self.index = types, index
        self.used: set[int] = set()
        self.count = 0
        self.constants: dict[str, Any] = {
            "_div": _div, "_fmod": _fmod, "_round": _round, "_sign": _sign, "_floor": _floor,
            "_ceil": _ceil, "_sqrt": _sqrt, "_ln": _ln, "_log10": _log10, "_fkey": _float_key,
            "_overflow": _overflow, "_int_div": _int_div, "_int_mod": _int_mod, "_in": _in,
            "_extreme": _extreme, "_id": _identity, "min": min, "max": max, "abs": abs,
            "len": len, "float": float}

    def temp(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def constant(self, value: Any) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def as_kind(self, var: str, source: str, target: str) -> str:
        """``var`` (of kind ``source``) as a value of kind ``target`` (ints to floats)."""
        if target == "float64" and is_int(source):
            return f"(None if {var} is None else float({var}))"
        return var

    def key(self, var: str, kind: str) -> str:
        """An ordering/equality key: floats with NaN equal to NaN and above all numbers."""
        return f"_fkey({var})" if kind == "float64" else var

    def check(self, out: str, kind: str, what: str, pad: str) -> list[str]:
        lo, hi = INT_RANGES[kind]
        return [f"{pad}if {out} is not None and not ({lo} <= {out} <= {hi}): "
                f"_overflow({kind!r}, {what!r}, {out})"]

    def emit(self, node: exp.Expr, lines: list[str], depth: int) -> str:  # noqa: C901
        """Statements computing ``node`` into ``lines`` (indented ``depth`` levels); returns
        the Python expression (a local or a constant) holding its value."""
        kind = self.types[id(node)]
        pad = "    " * depth
        if kind == "null":  # only NULLs flow into it: DuckDB gives NULL too
            return "None"
        if isinstance(node, exp.Literal):  # a name, not a literal: ``1 is None`` warns
            return self.constant(node.this if node.is_string else int(node.this))
        if isinstance(node, exp.Boolean):
            return self.constant(bool(node.this))
        if isinstance(node, exp.Column):
            i = self.index[node.name]
            self.used.add(i)
            if kind == "float64":
                out = self.temp()
                lines.append(f"{pad}{out} = v{i} if v{i} is None or type(v{i}) is float "
                             f"else float(v{i})")
                return out
            return f"v{i}"
        if isinstance(node, exp.Paren):
            return self.emit(node.this, lines, depth)

        def sub(child: exp.Expr, into: list[str] = lines, at: int = depth) -> str:
            return self.emit(child, into, at)

        def kind_of(child: exp.Expr) -> str:
            return self.types[id(child)]

        out = self.temp()
        if isinstance(node, exp.Neg):
            a = sub(node.this)
            lines.append(f"{pad}{out} = None if {a} is None else -{a}")
            if is_int(kind):
                lines += self.check(out, kind, "negation", pad)
            return out
        if isinstance(node, _ARITH):
            a, b = sub(node.this), sub(node.expression)
            fa = self.as_kind(a, kind_of(node.this), "float64")
            fb = self.as_kind(b, kind_of(node.expression), "float64")
            none = f"None if {a} is None or {b} is None else "
            if isinstance(node, exp.Div):
                lines.append(f"{pad}{out} = {none}_div({fa}, {fb})")
            elif kind == "float64":
                if isinstance(node, exp.Mod):
                    lines.append(f"{pad}{out} = {none}_fmod({fa}, {fb})")
                else:
                    lines.append(f"{pad}{out} = {none}{fa} {_PY_OP[type(node)]} {fb}")
            elif isinstance(node, exp.IntDiv):
                lines.append(f"{pad}{out} = {none}_int_div({a}, {b}, {kind!r})")
            elif isinstance(node, exp.Mod):
                lines.append(f"{pad}{out} = {none}_int_mod({a}, {b})")
            else:
                lines.append(f"{pad}{out} = {none}{a} {_PY_OP[type(node)]} {b}")
                lines += self.check(out, kind, _NAMES[type(node)], pad)
            return out
        if isinstance(node, _COMPARE):
            common = _common([node.this, node.expression], dict(self.types), "comparison")
            a, b = sub(node.this), sub(node.expression)
            ca = self.as_kind(a, kind_of(node.this), common)
            cb = self.as_kind(b, kind_of(node.expression), common)
            op = _PY_OP[type(node)]
            if common == "float64":
                test = (f"({ca} {op} {cb}) if ({a} == {a} and {b} == {b}) "
                        f"else (_fkey({ca}) {op} _fkey({cb}))")
            else:
                test = f"{ca} {op} {cb}"
            lines.append(f"{pad}{out} = None if {a} is None or {b} is None else ({test})")
            return out
        if isinstance(node, exp.Between):
            parts = [node.this, node.args["low"], node.args["high"]]
            common = _common(parts, dict(self.types), "BETWEEN")
            x, lo, hi = (self.as_kind(sub(p), kind_of(p), common) for p in parts)
            kx, klo, khi = (self.key(v, common) for v in (x, lo, hi))
            low, high = self.temp(), self.temp()
            lines.append(f"{pad}{low} = None if {x} is None or {lo} is None else {kx} >= {klo}")
            lines.append(f"{pad}{high} = None if {x} is None or {hi} is None else "
                         f"{kx} <= {khi}")
            lines.append(f"{pad}{out} = False if {low} is False or {high} is False else "
                         f"(None if {low} is None or {high} is None else True)")
            return out
        if isinstance(node, exp.In):
            parts = [node.this, *node.expressions]
            common = _common(parts, dict(self.types), "IN")
            values = [self.as_kind(sub(p), kind_of(p), common) for p in parts]
            key = "_fkey" if common == "float64" else "_id"
            lines.append(f"{pad}{out} = _in({values[0]}, [{', '.join(values[1:])}], {key})")
            return out
        if isinstance(node, exp.And | exp.Or):
            a, b = sub(node.this), sub(node.expression)
            strong, weak = ("False", "True") if isinstance(node, exp.And) else ("True", "False")
            lines.append(f"{pad}{out} = {strong} if {a} is {strong} or {b} is {strong} else "
                         f"(None if {a} is None or {b} is None else {weak})")
            return out
        if isinstance(node, exp.Not):
            a = sub(node.this)
            lines.append(f"{pad}{out} = None if {a} is None else not {a}")
            return out
        if isinstance(node, exp.Is):
            a = sub(node.this)
            lines.append(f"{pad}{out} = {a} is None")
            return out
        if isinstance(node, exp.Case | exp.If):
            self._branches(node, kind, out, lines, depth)
            return out
        if isinstance(node, exp.Coalesce):
            parts = [node.this, *node.expressions]
            at, into = depth, lines
            for i, part in enumerate(parts):
                value = self.as_kind(self.emit(part, into, at), kind_of(part), kind)
                into.append(f"{'    ' * at}{out} = {value}")
                if i < len(parts) - 1:
                    into.append(f"{'    ' * at}if {out} is None:")
                    at += 1
            return out
        if isinstance(node, exp.Nullif):
            common = _common([node.this, node.expression], dict(self.types), "NULLIF")
            a, b = sub(node.this), sub(node.expression)
            ka = self.key(self.as_kind(a, kind_of(node.this), common), common)
            kb = self.key(self.as_kind(b, kind_of(node.expression), common), common)
            lines.append(f"{pad}{out} = None if {a} is not None and {b} is not None and "
                         f"{ka} == {kb} else {a}")
            return out
        if isinstance(node, exp.Least | exp.Greatest):
            parts = [node.this, *node.expressions]
            values = [self.as_kind(sub(p), kind_of(p), kind) for p in parts]
            pick = "min" if isinstance(node, exp.Least) else "max"
            key = "_fkey" if kind == "float64" else "_id"
            lines.append(f"{pad}{out} = _extreme([{', '.join(values)}], {pick}, {key})")
            return out
        if isinstance(node, exp.Cast | exp.TryCast):
            a = sub(node.this)
            cast = self.constant(_cast_fn(kind_of(node.this), kind,
                                          isinstance(node, exp.TryCast)))
            lines.append(f"{pad}{out} = None if {a} is None else {cast}({a})")
            return out
        if isinstance(node, exp.Abs):
            a = sub(node.this)
            lines.append(f"{pad}{out} = None if {a} is None else abs({a})")
            if is_int(kind):
                lines += self.check(out, kind, "abs", pad)
            return out
        if isinstance(node, exp.Round):
            a = sub(node.this)
            if is_int(kind):
                return a
            digits = _int_const(node.args["decimals"]) if node.args.get("decimals") else 0
            lines.append(f"{pad}{out} = None if {a} is None else _round({a}, {digits})")
            return out
        unary: dict[type, str] = {
            exp.Sign: "_sign({})", exp.Floor: "_floor({})", exp.Ceil: "_ceil({})",
            exp.Sqrt: "_sqrt({})", exp.Ln: "_ln({})", exp.Log: "_log10({})",
            exp.Length: "len({})", exp.Trim: "{}.strip(' ')"}
        if type(node) in unary:
            a = self.as_kind(sub(node.this), kind_of(node.this),
                             "float64" if kind == "float64" else kind_of(node.this))
            call = unary[type(node)].format(a)
            lines.append(f"{pad}{out} = None if {a} is None else {call}")
            return out
        if isinstance(node, exp.Concat):
            parts = [sub(e) for e in node.expressions]
            lines.append(f"{pad}{out} = ''.join([v for v in ({', '.join(parts)},) "
                         "if v is not None])")
            return out
        if isinstance(node, exp.DPipe | exp.StartsWith | exp.Contains):
            a, b = sub(node.this), sub(node.expression)
            test = (f"{a} + {b}" if isinstance(node, exp.DPipe) else
                    f"{a}.startswith({b})" if isinstance(node, exp.StartsWith) else f"{b} in {a}")
            lines.append(f"{pad}{out} = None if {a} is None or {b} is None else {test}")
            return out
        raise UnsupportedError(f"{_describe(node)} is not in the on-demand subset")

    def _branches(self, node: exp.Case | exp.If, kind: str, out: str, lines: list[str],
                  depth: int) -> None:
        """CASE (searched or simple) and IF: each branch's value is computed only when it is
        taken, as DuckDB does (so an error in a branch not taken never raises)."""
        if isinstance(node, exp.If):
            branches = [(node.this, node.args["true"])]
            default = node.args.get("false")
            subject = None
        else:
            branches = [(b.this, b.args["true"]) for b in node.args["ifs"]]
            default = node.args.get("default")
            subject = node.this
        at = depth
        x = self.emit(subject, lines, at) if subject is not None else None
        for condition, value in branches:
            pad = "    " * at
            test_var = self.emit(condition, lines, at)
            if x is None or subject is None:
                test = f"{test_var}"
            else:
                common = _common([subject, condition], dict(self.types), "CASE")
                cx = self.key(self.as_kind(x, self.types[id(subject)], common), common)
                cw = self.key(self.as_kind(test_var, self.types[id(condition)], common), common)
                test = f"{x} is not None and {test_var} is not None and {cx} == {cw}"
            lines.append(f"{pad}if {test}:")
            taken = self.emit(value, lines, at + 1)
            lines.append(f"{pad}    {out} = {self.as_kind(taken, self.types[id(value)], kind)}")
            lines.append(f"{pad}else:")
            at += 1
        pad = "    " * at
        if default is None:
            lines.append(f"{pad}{out} = None")
        else:
            value = self.emit(default, lines, at)
            lines.append(f"{pad}{out} = {self.as_kind(value, self.types[id(default)], kind)}")


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
    #: the names the expression uses, and it compiled for columns of them (``compile_batch``)
    uses: tuple[str, ...] = ()
    batch: Batch | None = None


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
                                  hint=did_you_mean(ref.view, list(views))
                                  + f"feature views: {', '.join(sorted(views)) or 'none'}.")
        feature = source.feature(ref.feature or "")
        if feature is None:
            names = [f.name for f in source.features]
            raise DefinitionError(path, f"on-demand view '{view.name}': view '{ref.view}' has "
                                  f"no feature '{ref.feature}'", line=ref.line,
                                  hint=did_you_mean(ref.feature or "", names)
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
                    line=od_feature.line, hint=did_you_mean(unknown[0], list(kinds))
                    + f"the names it may use: {', '.join(kinds) or 'none'}.")
            types = infer(tree, kinds)
            uses = tuple(columns(tree))
            batch = compile_batch(tree, types, uses)
            evaluate = compile_expr(tree, types)
        except UnsupportedError as err:
            raise DefinitionError(path, f"{what}: {err}", line=od_feature.line,
                                  hint=f"the on-demand subset: {ALLOWED}.") from None
        kind = types[id(tree)]
        if kind != "null" and kind != od_feature.dtype.name:
            raise DefinitionError(path, f"{what} is declared {od_feature.dtype.name} but its "
                                  f"expression is {kind}", line=od_feature.line,
                                  hint=f"declare type: {kind}, or CAST the expression.")
        bound.append(BoundFeature(od_feature, tree, kind, evaluate, uses, batch))
    return BoundView(view, inputs, kinds, tuple(bound))
