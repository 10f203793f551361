"""The on-demand evaluator (Python, online) against DuckDB (offline) on the same expression and
inputs: identical values (same type, same bits; NULL == NULL; any NaN == NaN) or both raise.

Expressions come from the whole subset, built at random over typed inputs (hypothesis) and
from a fixed list of templates run on edge values (int64 limits, zeros, NaN, infinities,
signed zeros, unicode). An expression fsql refuses at compile (a type DuckDB gives otherwise)
never reaches the evaluator, as in a project."""

from __future__ import annotations

import datetime as dt
import math
import os
import struct
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from fsql.ondemand import (
    INT_RANGES,
    EvaluationError,
    UnsupportedError,
    compile_expr,
    duck_type,
    first_mismatch,
    infer,
    parse,
    typing_query,
)

INPUTS = {"i1": "int64", "i2": "int64", "n": "int32", "t": "int8", "f1": "float64",
          "f2": "float64", "s1": "string", "s2": "string", "b1": "bool", "d1": "date",
          "ts1": "timestamp"}
LO, HI = INT_RANGES["int64"]
#: shrinking a failure takes minutes here: only with FSQL_ONDEMAND_SHRINK=1
PHASES = (list(Phase) if os.environ.get("FSQL_ONDEMAND_SHRINK") == "1"
          else [Phase.explicit, Phase.reuse, Phase.generate])
_CON = duckdb.connect()
_CON.execute("SET TimeZone = 'UTC'")


def _ints(kind: str) -> st.SearchStrategy[int]:
    lo, hi = INT_RANGES[kind]
    return st.one_of(st.sampled_from([0, 1, -1, 2, -7, 7, lo, hi, lo + 1, hi - 1]),
                     st.integers(lo, hi), st.integers(max(lo, -1000), min(hi, 1000)))


FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 2.5, math.nan, math.inf,
                                    -math.inf, 1e308, -1e308, 5e-324, 9.223372036854776e18]),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(-1e6, 1e6))
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=8) | st.sampled_from(["", " a ", "Ελλάδα", "e\u0301", "🦆x", "A"])


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy, strategy)


DATES = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))
TIMESTAMPS = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31))
ROWS = st.fixed_dictionaries({
    "d1": _nullable(DATES), "ts1": _nullable(TIMESTAMPS),
    "i1": _nullable(_ints("int64")), "i2": _nullable(_ints("int64")),
    "n": _nullable(_ints("int32")), "t": _nullable(_ints("int8")),
    "f1": _nullable(FLOATS), "f2": _nullable(FLOATS),
    "s1": _nullable(TEXT), "s2": _nullable(TEXT), "b1": _nullable(st.booleans())})

# -- random expressions ------------------------------------------------------------------

INT_LITERALS = st.sampled_from(["0", "1", "2", "-1", "7", "-3", "127", "2147483647",
                                "3000000000", "9223372036854775807"])
FLOAT_LITERALS = st.sampled_from(["0.0", "1.5", "-2.5", "1e308", "0.1", "100.0"])
STRING_LITERALS = st.sampled_from(["''", "'a'", "' x '", "'Ελ'", "'🦆'"])


def expressions(kind: str, depth: int = 3) -> st.SearchStrategy[str]:
    leaves = {
        "int": st.one_of(st.sampled_from(["i1", "i2", "n", "t"]), INT_LITERALS),
        "float": st.one_of(st.sampled_from(["f1", "f2"]), FLOAT_LITERALS),
        "string": st.one_of(st.sampled_from(["s1", "s2"]), STRING_LITERALS),
        "bool": st.sampled_from(["b1", "TRUE", "FALSE"]),
        "time": st.sampled_from(["ts1", "CAST(d1 AS TIMESTAMP)"]),
    }[kind]
    if depth == 0:
        return leaves | st.just("NULL")
    sub = {k: st.deferred(lambda k=k: expressions(k, depth - 1))
           for k in ("int", "float", "string", "bool", "time")}
    num = st.one_of(sub["int"], sub["float"])

    def f(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(*parts).map(lambda xs: template.format(*xs))

    common = [f("coalesce({}, {})", sub[kind], sub[kind]),
              f("CASE WHEN {} THEN {} ELSE {} END", sub["bool"], sub[kind], sub[kind]),
              f("CASE WHEN {} THEN {} END", sub["bool"], sub[kind]),
              f("if({}, {}, {})", sub["bool"], sub[kind], sub[kind]),
              f("nullif({}, {})", sub[kind], sub[kind])]
    options: list[st.SearchStrategy[str]] = {
        "int": [f("({} {} {})", sub["int"], st.sampled_from(["+", "-", "*", "//", "%"]),
                  sub["int"]),
                f("(-{})", sub["int"]), f("abs({})", sub["int"]), f("sign({})", num),
                f("round({})", sub["int"]), f("length({})", sub["string"]),
                f("least({}, {})", sub["int"], sub["int"]),
                f("greatest({}, {}, {})", sub["int"], sub["int"], sub["int"]),
                f("{}({} AS {})", st.sampled_from(["CAST", "TRY_CAST"]), num,
                  st.sampled_from(["BIGINT", "INTEGER", "SMALLINT", "TINYINT"])),
                f("CAST({} AS INTEGER)", sub["bool"]),
                f("CASE {} WHEN {} THEN {} ELSE {} END", sub["int"], sub["int"], sub["int"],
                  sub["int"])],
        "float": [f("({} {} {})", num, st.sampled_from(["+", "-", "*", "/", "%"]), num),
                  f("({} / {})", sub["int"], sub["int"]),
                  f("(-{})", sub["float"]), f("abs({})", sub["float"]),
                  f("round({})", sub["float"]),
                  f("round({}, {})", sub["float"], st.sampled_from(["0", "1", "2", "5"])),
                  f("{}({})", st.sampled_from(["floor", "ceil", "sqrt", "ln", "log"]), num),
                  f("least({}, {})", num, sub["float"]),
                  f("greatest({}, {})", sub["float"], num),
                  f("CAST({} AS DOUBLE)", sub["int"])],
        "string": [f("({} || {})", sub["string"], sub["string"]),
                   f("concat({}, {}, {})", sub["string"], sub["string"], sub["string"]),
                   f("trim({})", sub["string"]),
                   f("CAST({} AS VARCHAR)", st.one_of(sub["int"], sub["bool"])),
                   f("least({}, {})", sub["string"], sub["string"])],
        "bool": [f("({} {} {})", num, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), num),
                 f("({} {} {})", sub["string"], st.sampled_from(["=", "<>", "<", ">="]),
                   sub["string"]),
                 f("({} {} {})", sub["bool"], st.sampled_from(["AND", "OR", "=", "<"]),
                   sub["bool"]),
                 f("(NOT {})", sub["bool"]),
                 f("({} IS {}NULL)", st.one_of(num, sub["string"]),
                   st.sampled_from(["", "NOT "])),
                 f("({} BETWEEN {} AND {})", num, num, num),
                 f("({} IN ({}, {}, {}))", num, num, num, num),
                 f("({} NOT IN ({}, {}))", sub["string"], sub["string"], sub["string"]),
                 f("starts_with({}, {})", sub["string"], sub["string"]),
                 f("contains({}, {})", sub["string"], sub["string"]),
                 f("CAST({} AS BOOLEAN)", sub["int"]),
                 f("({} {} {})", sub["time"], st.sampled_from(["=", "<", ">="]), sub["time"]),
                 f("(d1 {} d1)", st.sampled_from(["=", "<>", "<="]))],
        "time": [f("greatest({}, {})", sub["time"], sub["time"])],
    }[kind]
    return st.one_of(leaves, *options, *common)


ANY_EXPRESSION = st.sampled_from(["int", "float", "string", "bool"]).flatmap(
    lambda k: expressions(k, 3))

# -- the two paths ---------------------------------------------------------------------------


class Refused(Exception):
    """fsql refuses the expression at compile."""


def _compile(sql: str) -> tuple[Any, dict[int, str], str]:
    try:
        tree = parse(sql)
        types = infer(tree, INPUTS)
    except UnsupportedError as err:
        raise Refused(str(err)) from None
    query, nodes = typing_query(tree, INPUTS)
    if nodes:
        try:
            described = _CON.execute("DESCRIBE " + query.sql("duckdb")).fetchall()
        except duckdb.Error as err:
            raise Refused(str(err)) from None
        actual = [exp.DataType(this=exp.DataType.Type.NULL) if row[1].strip('"') == "NULL"
                  else exp.DataType.build(row[1], dialect="duckdb") for row in described]
        if first_mismatch(nodes, types, actual) is not None:
            raise Refused("typed otherwise by DuckDB")
    return tree, types, tree.sql("duckdb")


def _duckdb(sql: str, row: dict[str, Any]) -> Any:
    """``sql`` over a one-row table holding ``row``: columns, as offline, not constants (DuckDB
    would fold an expression over constant parameters, skipping what a column would run)."""
    inputs = ", ".join(f"CAST(${name} AS {duck_type(kind)}) AS {name}"
                       for name, kind in INPUTS.items())
    _CON.execute(f"CREATE OR REPLACE TEMP TABLE request AS SELECT {inputs}", row)
    return _CON.execute(f"SELECT {sql} FROM request").fetchone()[0]  # type: ignore[index]


def _bits(value: Any) -> Any:
    if isinstance(value, float):
        return "NaN" if value != value else struct.pack("<d", value)
    return value


def check(sql: str, row: dict[str, Any]) -> None:
    tree, types, offline_sql = _compile(sql)
    evaluate = compile_expr(tree, types)
    try:
        expected: Any = _duckdb(offline_sql, row)
        duck_error = None
    except duckdb.Error as err:
        duck_error = err
    try:
        got: Any = evaluate(row)
        py_error = None
    except EvaluationError as err:
        py_error = err
    context = f"{offline_sql} on {row}"
    if duck_error is not None or py_error is not None:
        assert duck_error is not None and py_error is not None, (
            f"{context}: DuckDB {duck_error or repr(expected)}, Python {py_error or repr(got)}")
        return
    assert type(got) is type(expected), f"{context}: DuckDB {expected!r}, Python {got!r}"
    assert _bits(got) == _bits(expected), f"{context}: DuckDB {expected!r}, Python {got!r}"


@settings(max_examples=300, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(ANY_EXPRESSION, ROWS)
def test_random_expressions_agree(sql: str, row: dict[str, Any]) -> None:
    try:
        check(sql, row)
    except Refused:
        assume(False)


# -- fixed templates on edge values: each must compile ----------------------------------------

TEMPLATES = [
    "i1 + i2", "i1 - i2", "i1 * i2", "i1 // i2", "i1 % i2", "-i1", "abs(i1)", "n + 1",
    "t * 2", "t + 200", "n * 3000000000", "i1 / i2", "f1 / f2", "f1 % f2", "f1 + i1",
    "round(f1)", "round(f1, 2)", "floor(f1)", "ceil(f1)", "sqrt(f1)", "ln(f1)", "log(f1)",
    "sign(f1)", "sign(i1)", "abs(f1)", "CAST(f1 AS BIGINT)", "TRY_CAST(f1 AS INTEGER)",
    "CAST(i1 AS INTEGER)", "CAST(i1 AS DOUBLE)", "CAST(b1 AS INTEGER)", "CAST(i1 AS BOOLEAN)",
    "CAST(i1 AS VARCHAR)", "CAST(b1 AS VARCHAR)", "f1 = f2", "f1 < f2", "f1 = i1",
    "i1 = i2", "s1 < s2", "s1 = s2", "b1 AND f1 > 0", "b1 OR f1 > 0", "NOT b1",
    "f1 IS NULL", "s1 IS NOT NULL", "f1 BETWEEN f2 AND 1.5", "i1 IN (1, 2, i2)",
    "s1 NOT IN ('a', s2)", "CASE WHEN f1 > 0 THEN 'pos' WHEN f1 < 0 THEN 'neg' END",
    "CASE i1 WHEN 1 THEN f1 WHEN i2 THEN 0.5 ELSE -1 END", "coalesce(i1, n, 0)",
    "coalesce(f1, i1)", "nullif(f1, 0.0)", "nullif(i1, 0)", "if(b1, i1, n)",
    "least(f1, f2, i1)", "greatest(f1, f2)", "least(s1, s2)", "greatest(i1, n, t)",
    "length(s1)", "trim(s1)", "concat(s1, s2)", "s1 || s2", "starts_with(s1, s2)",
    "contains(s1, s2)", "amount_like / nullif(f2, 0)".replace("amount_like", "f1"),
    "coalesce(i1, 0) = 0", "(i1 // 2) * 2 + i1 % 2",
    "coalesce(ts1, CAST(d1 AS TIMESTAMP))", "d1 < d1", "ts1 >= CAST(d1 AS TIMESTAMP)",
    "ts1 IS NULL", "CASE WHEN b1 THEN ts1 END", "greatest(ts1, CAST(d1 AS TIMESTAMP))",
    "least(d1, d1)", "nullif(d1, d1)", "if(b1, d1, NULL)",
    # IF() inside a CASE (as its ELSE, subject and condition) is a call, not a WHEN branch
    "CASE WHEN f1 > 0 THEN i1 ELSE if(NULL, NULL, i2) END",
    "CASE if(b1, 1, 2) WHEN 2 THEN i2 END",
    "CASE WHEN coalesce(NULL, NULL) THEN i1 / 7 ELSE f1 END",  # a NULL-typed condition
    "CASE WHEN if(b1, f1 > 0, FALSE) THEN 1 ELSE 2 END",
]
EDGE_ROWS = [
    {"i1": LO, "i2": -1, "n": 2**31 - 1, "t": -128, "f1": math.nan, "f2": -0.0, "s1": "",
     "s2": " ", "b1": None, "d1": dt.date(1, 1, 1), "ts1": dt.datetime(2024, 2, 29, 23, 59)},
    {"i1": HI, "i2": 0, "n": -(2**31), "t": 127, "f1": math.inf, "f2": 0.0, "s1": " é ",
     "s2": "é", "b1": True, "d1": dt.date(2024, 2, 29), "ts1": dt.datetime(2024, 2, 29)},
    {"i1": -7, "i2": 2, "n": 3, "t": -1, "f1": -2.5, "f2": 2.5, "s1": "Ελλάδα", "s2": "Ελ",
     "b1": False, "d1": dt.date(9999, 12, 31), "ts1": dt.datetime(1970, 1, 1)},
    {"i1": None, "i2": None, "n": None, "t": None, "f1": None, "f2": None, "s1": None,
     "s2": None, "b1": None, "d1": None, "ts1": None},
    {"i1": 2**53 + 1, "i2": 3, "n": 0, "t": 0, "f1": 9007199254740992.0, "f2": -1e308,
     "s1": "🦆 ", "s2": "🦆", "b1": True, "d1": dt.date(1970, 1, 1),
     "ts1": dt.datetime(9999, 12, 31, 23, 59, 59, 999999)},
    {"i1": 1, "i2": HI, "n": 1, "t": 64, "f1": 1.005, "f2": 0.49999999999999994,
     "s1": "a", "s2": "", "b1": False, "d1": dt.date(2000, 1, 1), "ts1": None},
]


@pytest.mark.parametrize("sql", TEMPLATES)
def test_templates_agree_on_edge_values(sql: str) -> None:
    _compile(sql)  # every template is in the subset (raises Refused otherwise)
    for row in EDGE_ROWS:
        check(sql, row)


@pytest.mark.parametrize(("sql", "message"), [
    ("upper(s1)", r"function upper\(\) is not in the on-demand subset"),
    ("i1 + s1", "needs numbers"),
    ("CAST(f1 AS VARCHAR)", "CAST from float64 to string"),
    ("f1 // f2", "// is for integers"),
    ("round(f1, i1)", "integer literal"),
    ("x.i1 + 1", "bare name"),
    ("(SELECT 1)", "not in the on-demand subset"),
    # shapes DuckDB's optimizer rewrites so that an error goes unseen (checked below)
    ("(i1 // i2) + NULL", "is always NULL, so DuckDB folds"),
    ("(i1 // i2) + CAST(NULL AS BIGINT)", "is always NULL"),
    ("CASE WHEN b1 THEN NULL END + (i1 // i2)", "is always NULL"),
    ("(1 = 2) AND (i1 // i2 = 1)", "constant operand of AND"),
    ("i1 + 1 = 3", "compares a constant with arithmetic on a constant"),
    ("3 > -i1", "compares a constant with arithmetic on a constant"),
    ("(i1 + 1) IS NULL", "IS .NOT. NULL applies to a request field or input name"),
    ("NULL", "always NULL"),
])
def test_outside_the_subset_is_refused(sql: str, message: str) -> None:
    with pytest.raises(Refused, match=message):
        _compile(sql)


@pytest.mark.parametrize("sql", ["(i1 // i2) + NULL", "FALSE AND (i1 // i2 = 1)",
                                 "i1 + 1 = 3", "(i1 + 1) IS NULL"])
def test_refused_shapes_do_hide_errors_in_duckdb(sql: str) -> None:
    """Why those shapes are refused: DuckDB answers where the operation inside fails."""
    row = {**EDGE_ROWS[1], "i2": 0}  # i1 is the largest int64: i1 + 1 overflows, i1 // 0 fails
    with pytest.raises(duckdb.Error):
        _duckdb("i1 // i2 + i1 + 1", row)
    assert _duckdb(sql, row) is not None or "NULL" in sql


def test_the_duckdb_type_check_finds_a_node_typed_otherwise() -> None:
    """The compiler's backstop (``first_mismatch`` over ``typing_query``): every node fsql
    types as DuckDB does passes; a node typed otherwise is the one reported. (No expression of
    the subset is known to reach it: the static rules agree with DuckDB on every template and
    every random expression; the check stays so that a rule gone wrong is a compile error,
    never a value computed differently.)"""
    tree = parse("coalesce(t + 1, n) * 2")
    types = infer(tree, INPUTS)
    query, nodes = typing_query(tree, INPUTS)
    described = _CON.execute("DESCRIBE " + query.sql("duckdb")).fetchall()
    actual = [exp.DataType.build(row[1], dialect="duckdb") for row in described]
    assert first_mismatch(nodes, types, actual) is None
    inner = next(n for n in nodes if n.sql("duckdb") == "t + 1")
    wrong = {**types, id(inner): "int64"}
    assert first_mismatch(nodes, wrong, actual) == (inner, "int64")
