"""``SparkEngine`` against the engine seam: exact types and values through Arrow, Parquet
directories, undo of its own views on rollback, errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from fsql.config import SPARK_PINNED, OfflineConfig
from fsql.definitions import Source
from fsql.engines import connect
from fsql.engines.spark.engine import _PINNED, SparkEngine
from fsql.errors import ConfigError, DefinitionError, EngineError, QueryFailed

ROWS = pa.table({
    "big": pa.array([2**63 - 1, -(2**63), None, 9_007_199_254_740_993], pa.int64()),
    "naive": pa.array([dt.datetime(1969, 12, 31, 23, 59, 59, 999_999), None,
                       dt.datetime(2024, 2, 29, 12, 0, 0, 1), dt.datetime(1, 1, 1)],
                      pa.timestamp("us")),
    "zoned": pa.array([dt.datetime(2024, 3, 31, 1, 0, 0, 5, tzinfo=dt.UTC), None,
                       dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                       dt.datetime(2262, 4, 11, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
    "money": pa.array([Decimal("1.10"), None, Decimal("-0.01"), Decimal("99999999.99")],
                      pa.decimal128(10, 2)),
    "text": pa.array(["é", None, "", "x"]),
    "flag": pa.array([True, None, False, True]),
    "day": pa.array([dt.date(2024, 1, 1), None, dt.date(1900, 3, 1), dt.date(9999, 12, 31)]),
    "real": pa.array([0.1, None, float("inf"), -0.0], pa.float64()),
})


@pytest.fixture
def engine(spark: Any, tmp_path: Path) -> Any:
    config = OfflineConfig("spark", tmp_path, None, None, "local[2]", (),
                           tmp_path / "warehouse")
    eng = connect(config, str(tmp_path))
    assert isinstance(eng, SparkEngine)
    yield eng
    eng.close()


def _all(name: str) -> exp.Select:
    return exp.select("*").from_(name)


def test_arrow_round_trip_is_exact(engine: SparkEngine) -> None:
    engine.register("rows", ROWS)
    try:
        back = engine.fetch_arrow(_all("rows"))
    finally:
        engine.unregister("rows")
    assert back.schema.types == ROWS.schema.types
    assert back.to_pylist() == ROWS.to_pylist()


def test_describe_types_as_duckdb_does(engine: SparkEngine, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(ROWS, path)
    spark_types = [c.dtype.sql("duckdb") for c in engine.describe(engine.parquet_query(path))]
    con = duckdb.connect()
    duck_types = [str(t) for t in con.sql(f"SELECT * FROM read_parquet('{path}')").types]
    con.close()
    assert spark_types == ["BIGINT", "TIMESTAMP", "TIMESTAMPTZ", "DECIMAL(10, 2)", "TEXT",
                           "BOOLEAN", "DATE", "DOUBLE"]
    assert [t.replace("WITH TIME ZONE", "TZ").replace("TIMESTAMP TZ", "TIMESTAMPTZ")
            .replace("VARCHAR", "TEXT").replace(",", ", ") for t in duck_types] == spark_types


def test_write_parquet_writes_a_directory_duckdb_reads(engine: SparkEngine,
                                                       tmp_path: Path) -> None:
    engine.register("rows", ROWS)
    out = tmp_path / "out.parquet"
    try:
        engine.write_parquet(_all("rows"), out)
        engine.write_parquet(_all("rows"), out)  # overwrite, not append
    finally:
        engine.unregister("rows")
    assert out.is_dir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    read = con.sql(f"SELECT * FROM read_parquet('{out}/*.parquet')").to_arrow_table()
    con.close()
    assert sorted(map(str, read.to_pylist())) == sorted(map(str, ROWS.to_pylist()))
    assert engine.fetch_arrow(exp.select(exp.func("count", exp.Star())).from_(
        engine.parquet_query(out).subquery())).column(0)[0].as_py() == 4


def test_fetch_batches_streams_every_row(engine: SparkEngine) -> None:
    engine.register("rows", ROWS)
    try:
        batches = list(engine.fetch_batches(_all("rows"), 3))
    finally:
        engine.unregister("rows")
    assert all(0 < b.num_rows <= 3 for b in batches)
    assert pa.Table.from_batches(batches).to_pylist() == ROWS.to_pylist()


def _one(value: int) -> exp.Select:
    return exp.select(exp.alias_(exp.Literal.number(value), "v"))


def _views(engine: SparkEngine) -> dict[str, int]:
    return {n: engine.fetch_arrow(_all(n)).column(0)[0].as_py() for n in sorted(engine.views)}


def test_failed_transaction_restores_views_and_deletes_copies(engine: SparkEngine,
                                                              tmp_path: Path) -> None:
    engine.replace_relation("a", _one(1), "view")
    engine.replace_relation("t", _one(10), "table")
    before = sorted((tmp_path / "warehouse" / "fsql_tables").iterdir())
    with pytest.raises(RuntimeError), engine.transaction():
        engine.replace_relation("a", _one(2), "table")
        engine.replace_relation("t", _one(20), "table")
        engine.replace_relation("new", _one(3), "view")
        assert _views(engine) == {"a": 2, "new": 3, "t": 20}
        raise RuntimeError("a later step failed")
    assert _views(engine) == {"a": 1, "t": 10}
    assert sorted((tmp_path / "warehouse" / "fsql_tables").iterdir()) == before
    assert "new" not in [t.name for t in engine.spark.catalog.listTables()]


def test_committed_transaction_keeps_new_and_drops_replaced_copies(engine: SparkEngine,
                                                                   tmp_path: Path) -> None:
    engine.replace_relation("t", _one(10), "table")
    with engine.transaction():
        engine.replace_relation("t", _one(20), "table")
    assert _views(engine) == {"t": 20}
    assert len(list((tmp_path / "warehouse" / "fsql_tables").iterdir())) == 1


def test_rollback_only_leaves_no_trace(engine: SparkEngine, tmp_path: Path) -> None:
    with engine.rollback_only():
        engine.replace_relation("x", _one(1), "table")
        assert _views(engine) == {"x": 1}
    assert engine.views == {}
    assert list((tmp_path / "warehouse" / "fsql_tables").iterdir()) == []


def test_close_drops_views_but_leaves_a_shared_session(spark: Any, tmp_path: Path) -> None:
    config = OfflineConfig("spark", tmp_path, None, None, "local[2]", (), tmp_path / "w")
    eng = SparkEngine(config, str(tmp_path))
    eng.replace_relation("mine", _one(1), "view")
    eng.close()
    assert not eng.owned
    assert "mine" not in [t.name for t in spark.catalog.listTables()]
    assert spark.sql("SELECT 1").collect()[0][0] == 1  # still running


def test_errors_on_data_and_on_plans(engine: SparkEngine) -> None:
    with pytest.raises(QueryFailed) as info:
        engine.fetch_arrow(exp.select(exp.cast(exp.Literal.string("x"), "BIGINT")))
    assert info.value.on_data and "CAST_INVALID_INPUT" in str(info.value)
    with pytest.raises(EngineError) as plan:
        engine.describe(_all("no_such_table"))
    assert "no_such_table" in str(plan.value) and "\n" not in str(plan.value)


def test_csv_source_is_refused_with_the_fix(engine: SparkEngine, tmp_path: Path) -> None:
    source = Source(source_name="raw", table_name="events", location="data/e.csv",
                    table=None, format="csv", description="", path="models/sources.yml",
                    line=4)
    with pytest.raises(DefinitionError) as info:
        engine.source_query(source, tmp_path)
    assert "models/sources.yml:4" in str(info.value) and "Parquet" in str(info.value)


def test_pinned_settings_are_the_configs(engine: SparkEngine) -> None:
    assert set(_PINNED) == set(SPARK_PINNED)
    assert {k: engine.spark.conf.get(k) for k in _PINNED} == _PINNED


def test_missing_database_is_a_config_error(spark: Any, tmp_path: Path) -> None:
    config = OfflineConfig("spark", tmp_path, None, None, "local[2]", (), tmp_path / "w",
                           "no_such_db")
    with pytest.raises(ConfigError) as info:
        SparkEngine(config, str(tmp_path))
    assert "no_such_db" in str(info.value) and "database:" in str(info.value)


def test_sources_from_globs_and_catalog_tables(engine: SparkEngine, spark: Any,
                                               tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for n in range(3):
        pq.write_table(ROWS.slice(n, 1), data / f"part-{n}.parquet")
    files = Source(source_name="raw", table_name="rows", location="data/part-*.parquet",
                   table=None, format="parquet", description="", path="s.yml", line=1)
    assert engine.fetch_arrow(engine.source_query(files, tmp_path)).num_rows == 3
    spark.createDataFrame(ROWS.slice(0, 2).select(["big", "text"])).write.saveAsTable(
        "fsql_catalog_rows")
    try:
        table = Source(source_name="raw", table_name="cat", location=None,
                       table="default.fsql_catalog_rows", format="parquet", description="",
                       path="s.yml", line=1)
        got = engine.fetch_arrow(engine.source_query(table, tmp_path))
        assert sorted(got.column("big").to_pylist()) == [-(2**63), 2**63 - 1]
    finally:
        spark.sql("DROP TABLE IF EXISTS fsql_catalog_rows")
