"""On-demand expressions on Spark (``engines.spark.ondemand``) == DuckDB, value for value:
same type, same bits (NULL == NULL, any NaN == NaN, signed zeros), or both raise. The fixed
templates of tests/ondemand/test_equivalence.py on its edge values (int64 limits, zeros, NaN,
infinities, signed zeros, unicode), then random expressions over the whole subset; then on-demand
features inside Spark's point-in-time join."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings

from fsql.engines.spark.ondemand import spark_expression
from fsql.engines.spark.pit import UnionWindowJoin
from tests.conftest import MakeProject
from tests.ondemand.project import OVERFLOW, TXN_RISK_YML, cards_project
from tests.ondemand.test_equivalence import (
    ANY_EXPRESSION,
    EDGE_ROWS,
    INPUTS,
    PHASES,
    ROWS,
    TEMPLATES,
    Refused,
    _bits,
    _compile,
    _duckdb,
)
from tests.spark.harness import load_plan, run_both

ARROW = {"int64": pa.int64(), "int32": pa.int32(), "int8": pa.int8(), "float64": pa.float64(),
         "string": pa.string(), "bool": pa.bool_(), "date": pa.date32(),
         "timestamp": pa.timestamp("us")}


def _spark_values(spark: Any, sql: str, rows: list[dict[str, Any]]) -> list[Any]:
    """``sql`` over a table of ``rows`` in Spark: one value per row, or the exception."""
    table = pa.table({name: pa.array([r[name] for r in rows], ARROW[kind])
                      for name, kind in INPUTS.items()})
    table = table.append_column("__i", pa.array(range(len(rows)), pa.int64()))
    spark.createDataFrame(table).createOrReplaceTempView("request")
    try:
        return [r[0] for r in spark.sql(f"SELECT {sql} FROM request ORDER BY __i").collect()]
    except Exception:  # one row raises: find which, row by row
        if len(rows) == 1:
            return [_Raised()]
        return [v for row in rows for v in _spark_values(spark, sql, [row])]


class _Raised:
    """Spark raised for this row."""


def _plain(value: Any) -> Any:
    """Spark's aware UTC datetimes as DuckDB's naive UTC ones."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def check_on_spark(spark: Any, sql: str, rows: list[dict[str, Any]]) -> None:
    tree, types, offline_sql = _compile(sql)
    spark_sql = spark_expression(tree, types).sql(dialect="spark")
    for row, got in zip(rows, _spark_values(spark, spark_sql, rows), strict=True):
        context = f"{offline_sql} -> Spark {spark_sql} on {row}"
        try:
            expected: Any = _duckdb(offline_sql, row)
        except Exception:
            assert isinstance(got, _Raised), f"{context}: DuckDB raises, Spark {got!r}"
            continue
        assert not isinstance(got, _Raised), f"{context}: Spark raises, DuckDB {expected!r}"
        got = _plain(got)
        assert type(got) is type(expected), f"{context}: DuckDB {expected!r}, Spark {got!r}"
        assert _bits(got) == _bits(expected), f"{context}: DuckDB {expected!r}, Spark {got!r}"


@pytest.mark.parametrize("sql", TEMPLATES)
def test_templates_agree_on_edge_values(spark: Any, sql: str) -> None:
    check_on_spark(spark, sql, EDGE_ROWS)


@settings(max_examples=120, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(sql=ANY_EXPRESSION, row=ROWS)
def test_random_expressions_agree(spark: Any, sql: str, row: dict[str, Any]) -> None:
    try:
        check_on_spark(spark, sql, [row])
    except Refused:
        assume(False)


# -- through the point-in-time join ----------------------------------------------------------

def test_on_demand_features_in_the_point_in_time_join(make_project: MakeProject,
                                                      spark: Any) -> None:
    """The card project of tests/ondemand: request fields from the spine, inputs from a view
    (one of them joined only as an input), nulls and -0.0 among them: Spark == DuckDB."""
    project = cards_project(make_project)
    spine = pq.read_table(project.root / "data" / "txns.parquet")
    out = run_both(project, spark, spine, ["txn_risk", "card_activity.country"], "ts")
    assert [r["risk_band"] for r in out.spark] == ["mid", "low", "high", "low", "low"]
    assert [r["abroad"] for r in out.spark] == [False, True, None, False, None]
    for a, b in zip(out.spark, out.duckdb, strict=True):
        assert {c: _bits(v) for c, v in a.items() if c != "ts"} == {
            c: _bits(v) for c, v in b.items() if c != "ts"}


def test_overflow_fails_on_spark_too(make_project: MakeProject, spark: Any) -> None:
    """txns_24h + 1 overflows int64 for card 4: DuckDB raises (tests/ondemand/test_paths.py),
    so must Spark (ANSI mode) rather than wrap around."""
    project = cards_project(make_project, **{"features/txn_risk.yml": TXN_RISK_YML + OVERFLOW})
    spine = pq.read_table(project.root / "data" / "txns.parquet")
    plan, _ = load_plan(project, spark, spine, ["txn_risk"], "ts", duckdb=False)
    with pytest.raises(Exception, match="(?i)overflow"):
        spark.sql(UnionWindowJoin().query(plan).sql(dialect="spark")).collect()
