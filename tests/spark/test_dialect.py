"""Executed dialect golden tests: every allowed construct, run on DuckDB as written and on Spark
as ``fsql.engines.spark.dialect`` transpiles it, over the same Parquet fixture, must give the
same values (int64 exact, timestamps to the microsecond, nulls, inf/NaN) and the same types
(up to the integer widths listed per case)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from fsql.config import OfflineConfig
from fsql.engines.base import DialectError
from fsql.engines.spark.engine import SparkEngine
from fsql.errors import QueryFailed

UTC = dt.UTC
SCHEMA = pa.schema([
    ("k", pa.int64()), ("i", pa.int64()), ("j", pa.int32()), ("d", pa.float64()),
    ("m", pa.decimal128(10, 2)), ("s", pa.string()), ("t", pa.timestamp("us")),
    ("tz", pa.timestamp("us", tz="UTC")), ("b", pa.bool_()), ("dt", pa.date32()),
])
T0 = dt.datetime(2024, 1, 31, 23, 59, 59, 999_999)
FIXED: list[dict[str, Any]] = [
    {"k": 0, "i": 9_007_199_254_740_993, "j": 0, "d": 2.5, "m": Decimal("2.50"), "s": "apple",
     "t": T0, "tz": T0.replace(tzinfo=UTC), "b": True, "dt": dt.date(2024, 2, 29)},
    {"k": 1, "i": -7, "j": 2, "d": -2.5, "m": Decimal("-2.50"), "s": "Apfel", "t":
     dt.datetime(1969, 12, 31, 23, 59, 59, 1), "tz": dt.datetime(1970, 1, 1, tzinfo=UTC),
     "b": False, "dt": dt.date(1969, 12, 31)},
    {"k": 2, "i": None, "j": None, "d": None, "m": None, "s": None, "t": None, "tz": None,
     "b": None, "dt": None},
    {"k": 3, "i": 0, "j": -3, "d": 0.0, "m": Decimal("0.00"), "s": "", "t":
     dt.datetime(2024, 3, 10, 1, 30, 0, 500_000), "tz": dt.datetime(2024, 3, 31, 1, 0,
                                                                     tzinfo=UTC),
     "b": True, "dt": dt.date(2000, 1, 1)},
    {"k": 4, "i": 3, "j": 5, "d": 3.5, "m": Decimal("3.55"), "s": "a_b%c", "t":
     dt.datetime(2024, 12, 31, 12, 0), "tz": dt.datetime(2024, 6, 1, 12, 0, 0, 123_456,
                                                           tzinfo=UTC),
     "b": False, "dt": dt.date(2024, 12, 31)},
    {"k": 5, "i": -9_223_372_036_854_775_000, "j": 7, "d": -0.5, "m": Decimal("-0.05"),
     "s": "ÄÖü", "t": dt.datetime(2024, 1, 1), "tz": dt.datetime(2023, 12, 31, 23, 0,
                                                                     tzinfo=UTC),
     "b": None, "dt": dt.date(2024, 1, 1)},
    {"k": 6, "i": 1, "j": 0, "d": 1e18, "m": Decimal("99999999.99"), "s": "Apple pie",
     "t": dt.datetime(2024, 1, 1, 0, 0, 0, 1), "tz": None, "b": True, "dt": None},
    {"k": 7, "i": 2, "j": 1, "d": -1e-300, "m": Decimal("0.01"), "s": "apple", "t":
     dt.datetime(2024, 1, 1, 0, 0, 0, 1), "tz": dt.datetime(2024, 2, 29, tzinfo=UTC),
     "b": False, "dt": dt.date(2024, 2, 29)},
]

#: (DuckDB expression over the fixture ``fx``, integer widths may differ)
EXPRESSIONS: list[tuple[str, bool]] = [
    ("j + 1", False), ("i - k", False), ("k * 3", False), ("-j", False), ("d + 1", False),
    ("d / 2", False), ("k / j", False), ("d / (d - d)", False), ("d / j", False),
    ("m / 4", False), ("m * 2", False), ("k // 3", False), ("j % 3", False),
    ("-k // 2", False), ("(k - 5) % 3", False), ("CAST(d AS BIGINT)", False),
    ("CAST(m AS INTEGER)", False), ("CAST(d / 3 AS BIGINT)", False),
    ("CAST(j / 4 AS INTEGER)", False),
    ("CAST(k AS DOUBLE)", False), ("CAST(m AS DOUBLE)", False),
    ("CAST(i AS VARCHAR)", False), ("CAST(m AS VARCHAR)", False),
    ("CAST(b AS VARCHAR)", False), ("CAST(dt AS VARCHAR)", False),
    ("CAST(t AS DATE)", False), ("CAST(dt AS TIMESTAMP)", False),
    ("CAST(tz AS TIMESTAMP)", False), ("CAST(t AS TIMESTAMPTZ)", False),
    ("CAST(tz AS DATE)", False), ("CAST(k AS DECIMAL(12, 3))", False),
    ("CAST(b AS INTEGER)", False), ("CAST(j AS BOOLEAN)", False),
    ("round(d)", False), ("round(m, 1)", True), ("round(m)", True), ("round(k)", False),
    ("epoch(t)", False), ("epoch(tz)", False), ("epoch(dt)", False),
    ("date_trunc('hour', t)", False), ("date_trunc('day', tz)", False),
    ("date_trunc('month', t)", False), ("date_trunc('year', tz)", False),
    ("date_trunc('second', t)", False),
    ("t + INTERVAL 3 DAY", False), ("t - INTERVAL 90 MINUTE", False),
    ("tz + INTERVAL '36' HOUR", False), ("CAST(dt AS TIMESTAMP) + INTERVAL 1 DAY", False),
    ("year(t)", True), ("month(tz)", True), ("day(dt)", True),
    ("coalesce(i, j)", False), ("nullif(k, j)", False), ("greatest(k, j)", False),
    ("least(i, j)", False), ("abs(j)", False), ("lower(s)", False), ("upper(s)", False),
    ("length(s)", True), ("concat(s, '-', s)", False), ("concat(s, NULL)", False),
    ("s || 'x'", False),
    ("CASE WHEN i > 0 THEN 'p' WHEN i < 0 THEN 'n' END", False), ("IF(b, k, j)", False),
    ("k IN (1, 2, 3)", False), ("i BETWEEN -5 AND 5", False), ("i IS NULL", False),
    ("NOT b", False), ("b AND i > 0", False), ("b OR i > 0", False),
    ("s LIKE 'a%'", False), ("s ILIKE 'A%'", False), ("s NOT LIKE '%_b%'", False),
    ("t > TIMESTAMP '2024-01-01 00:00:00'", False), ("tz <= t", False),
    ("CAST(d > 0 AS INTEGER)", False), ("d = d", False), ("m >= 2.5", False),
]

QUERIES: list[str] = [
    "SELECT count(*) AS n, count(i) AS ni, sum(k) AS sk, min(t) AS mt, max(s) AS ms, "
    "avg(j) AS aj, count(DISTINCT j) AS dj, min(tz) AS mtz, max(m) AS mm FROM fx",
    "SELECT j, count(*) AS n, sum(k) AS s FROM fx GROUP BY j HAVING count(*) > 0 ORDER BY j",
    "SELECT k, row_number() OVER (PARTITION BY j ORDER BY t, k) AS rn, "
    "lag(i) OVER (PARTITION BY j ORDER BY k) AS prev, "
    "lead(s) OVER (ORDER BY k) AS nxt, rank() OVER (ORDER BY b) AS r, "
    "dense_rank() OVER (ORDER BY j DESC) AS dr, "
    "sum(k) OVER (PARTITION BY b ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    " AS run, count(*) OVER (PARTITION BY b) AS cnt FROM fx ORDER BY k",
    "SELECT k FROM fx ORDER BY i, k", "SELECT k FROM fx ORDER BY t DESC, k",
    "SELECT k, s FROM fx ORDER BY s NULLS FIRST, k",
    "WITH a AS (SELECT k, i FROM fx WHERE k < 5) SELECT a.k, b.j FROM a JOIN fx AS b "
    "ON a.k = b.k ORDER BY a.k",
    "SELECT a.k, b.s FROM fx AS a LEFT JOIN fx AS b ON a.j = b.k ORDER BY a.k, b.s",
    "SELECT a.k, b.k AS k2 FROM fx AS a FULL JOIN fx AS b ON a.j = b.i ORDER BY a.k, k2",
    "SELECT k, s FROM fx JOIN (SELECT k, j AS jj FROM fx) AS x USING (k) ORDER BY k",
    "SELECT k FROM fx WHERE k < 3 UNION ALL SELECT j FROM fx WHERE j > 2 ORDER BY k",
    "SELECT k FROM fx UNION SELECT j FROM fx ORDER BY k",
    "SELECT k FROM fx AS o WHERE NOT EXISTS (SELECT 1 FROM fx AS p WHERE p.s = o.s "
    "AND p.k < o.k) ORDER BY k",
    "SELECT DISTINCT b FROM fx ORDER BY b",
    "SELECT k, t FROM fx ORDER BY t, k LIMIT 3",
    "SELECT * FROM fx WHERE b ORDER BY k",
    "SELECT fx.*, k * 2 AS k2 FROM fx ORDER BY k",
]


@pytest.fixture(scope="module")
def engine(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("dialect")
    config = OfflineConfig("spark", root, None, None, "local[2]", (), root / "warehouse")
    eng = SparkEngine(config, str(root))
    yield eng
    eng.close()


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def _duck(query: str, path: Path) -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE VIEW fx AS SELECT * FROM read_parquet('{path}')")
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def _spark(engine: SparkEngine, query: str, path: Path) -> pa.Table:
    columns = {f.name: exp.DataType.build(t, dialect="duckdb") for f, t in zip(
        SCHEMA, ["BIGINT", "BIGINT", "INTEGER", "DOUBLE", "DECIMAL(10, 2)", "VARCHAR",
                 "TIMESTAMP", "TIMESTAMPTZ", "BOOLEAN", "DATE"], strict=True)}
    with engine.rollback_only():
        engine.replace_relation("fx", engine.parquet_query(path), "view")
        parsed = sqlglot.parse_one(query, read="duckdb")
        assert isinstance(parsed, exp.Query)
        return engine.fetch_arrow(engine.adapt(parsed, {"fx": columns}))


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # -0.0 and 0.0 are equal in SQL (round(-1e-300) is -0.0 in DuckDB, 0.0 in Spark);
        # infinities keep their sign
        return (math.isnan(a) and math.isnan(b)) or a == b
    return type(a) is type(b) and a == b


def _integer_width(t: pa.DataType) -> pa.DataType:
    return pa.int64() if pa.types.is_integer(t) else t


def assert_same(duck: pa.Table, spark: pa.Table, widths: list[bool], what: list[str]
                ) -> None:
    """Same rows, values and Arrow types; ``widths[i]``: column i may differ in integer
    width; ``what[i]`` names column i in messages."""
    assert duck.num_rows == spark.num_rows, what
    for i, (d, s) in enumerate(zip(duck.columns, spark.columns, strict=True)):
        dtype, stype = d.type, s.type
        if widths[i]:
            dtype, stype = _integer_width(dtype), _integer_width(stype)
        if pa.types.is_decimal(dtype) and pa.types.is_decimal(stype):
            dtype = stype  # precision differs by engine rules, values compared exactly
        assert dtype == stype, f"{what[i]}: {dtype} vs {stype}"
        for row, (x, y) in enumerate(zip(d.to_pylist(), s.to_pylist(), strict=True)):
            assert _same_value(x, y), f"{what[i]}: row {row}: duckdb {x!r} != spark {y!r}"


def _expression_query(expressions: list[tuple[str, bool]]) -> str:
    return "SELECT " + ", ".join(f"{e} AS c{n}" for n, (e, _) in enumerate(expressions)) + \
        " FROM fx ORDER BY k"


def test_every_expression_means_the_same(engine: SparkEngine, tmp_path: Path) -> None:
    """All allowed expressions in one query (one Spark job) over the fixed rows; a mismatch
    names its expression."""
    path = _write(FIXED, tmp_path / "fx.parquet")
    query = _expression_query(EXPRESSIONS)
    assert_same(_duck(query, path), _spark(engine, query, path), [w for _, w in EXPRESSIONS],
                [e for e, _ in EXPRESSIONS])


@pytest.mark.parametrize("query", QUERIES)
def test_query_means_the_same(engine: SparkEngine, tmp_path: Path, query: str) -> None:
    path = _write(FIXED, tmp_path / "fx.parquet")
    duck = _duck(query, path)
    duck = duck.cast(pa.schema([pa.field(f.name, pa.int64()) if str(f.type) == "decimal128(38, 0)"
                                else f for f in duck.schema]))
    # integer widths: DuckDB's sum(BIGINT) is HUGEINT (128 bits), Spark's BIGINT; the values
    # agree (Spark raises past int64 under ANSI mode, where DuckDB continues)
    columns = duck.num_columns
    assert_same(duck, _spark(engine, query, path), ["sum(" in query] * columns, [query] * columns)


def _rows() -> st.SearchStrategy[list[dict[str, Any]]]:
    halves = st.integers(-2000, 2000).map(lambda n: n / 2)
    times = st.datetimes(dt.datetime(1960, 1, 1), dt.datetime(2100, 1, 1))
    row = st.fixed_dictionaries({
        "i": st.one_of(st.none(), st.integers(-(2**62), 2**62)),
        "j": st.one_of(st.none(), st.integers(-50, 50)),
        "d": st.one_of(st.none(), halves, st.floats(-1e6, 1e6, allow_nan=False)),
        "m": st.one_of(st.none(), st.integers(-10**6, 10**6).map(lambda n: Decimal(n) / 100)),
        "s": st.one_of(st.none(), st.text(alphabet="aAbB_% é", max_size=6)),
        "t": st.one_of(st.none(), times),
        "tz": st.one_of(st.none(), times.map(lambda t: t.replace(tzinfo=UTC))),
        "b": st.one_of(st.none(), st.booleans()),
        "dt": st.one_of(st.none(), st.dates(dt.date(1960, 1, 1), dt.date(2100, 1, 1))),
    })
    return st.lists(row, min_size=1, max_size=12).map(
        lambda rows: [{"k": n, **r} for n, r in enumerate(rows)])


RANDOMIZED = [(e, w) for e, w in EXPRESSIONS if "//" not in e and "%" not in e]


@settings(max_examples=8, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=_rows())
def test_expressions_on_random_rows(engine: SparkEngine, tmp_path: Path,
                                    rows: list[dict[str, Any]]) -> None:
    """Every allowed expression at once (one Spark job per example) on random rows: halves
    for rounding, int64 beyond 2**53, microsecond timestamps before and after 1970."""
    path = _write(rows, tmp_path / "random.parquet")
    query = _expression_query(RANDOMIZED)
    try:
        duck = _duck(query, path)
    except duckdb.Error:  # e.g. an overflow DuckDB refuses: Spark must refuse it too
        with pytest.raises(QueryFailed):
            _spark(engine, query, path)
        return
    assert_same(duck, _spark(engine, query, path), [True] * len(RANDOMIZED),
                [f"random rows, {e}" for e, _ in RANDOMIZED])


REFUSED: list[tuple[str, str]] = [
    ("SELECT a.k FROM fx AS a ASOF JOIN fx AS b ON a.k = b.k AND a.t >= b.t", "ASOF JOIN"),
    ("SELECT k FROM fx QUALIFY row_number() OVER (ORDER BY k) = 1", "QUALIFY"),
    ("SELECT CAST(s AS INTEGER) AS x FROM fx", "CAST from TEXT to INT"),
    ("SELECT CAST(d AS VARCHAR) AS x FROM fx", "CAST from DOUBLE to TEXT"),
    ("SELECT round(d, 2) AS x FROM fx", "ROUND of a DOUBLE"),
    ("SELECT avg(m) AS x FROM fx", "AVG of a DECIMAL"),
    ("SELECT ceil(d) AS x FROM fx", "CEIL"),
    ("SELECT d // 2 AS x FROM fx", "// is allowed on integers only"),
    ("SELECT s LIKE 'a\\_%' AS x FROM fx", "LIKE needs a literal pattern"),
    ("SELECT t + INTERVAL 1 MONTH AS x FROM fx", "INTERVAL"),
    ("SELECT dt + INTERVAL 1 DAY AS x FROM fx", "timestamps only"),
    ("SELECT now() AS x", "NOW()"), ("SELECT current_timestamp AS x", "CURRENT_TIMESTAMP"),
    ("SELECT epoch_ms(t) AS x FROM fx", "EPOCH_MS(t)"),
    ("SELECT list_value(k, i) AS x FROM fx", "[k, i]"),
    ("SELECT * EXCLUDE (k) FROM fx", "EXCLUDE"),
    ("SELECT a.k FROM fx AS a SEMI JOIN fx AS b ON a.k = b.k", "SEMI JOIN"),
]


@pytest.mark.parametrize("query,named", REFUSED, ids=[n for _, n in REFUSED])
def test_refused_construct_names_itself(engine: SparkEngine, query: str, named: str) -> None:
    columns = {"k": "BIGINT", "i": "BIGINT", "d": "DOUBLE", "m": "DECIMAL(10, 2)",
               "s": "VARCHAR", "t": "TIMESTAMP", "dt": "DATE"}
    parsed = sqlglot.parse_one("\n\n" + query, read="duckdb")
    assert isinstance(parsed, exp.Query)
    with pytest.raises(DialectError) as info:
        engine.adapt(parsed, {"fx": {c: exp.DataType.build(t, dialect="duckdb")
                                     for c, t in columns.items()}})
    assert named.lower() in str(info.value).lower()
    assert str(info.value).startswith("on Spark, ")
    assert info.value.line == 3  # the two blank lines above the query
    assert info.value.hint
