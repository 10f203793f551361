"""Which feature views DuckDB can name the rows of (``Engine.row_identity``), and that the
name is a true identity: one distinct number per row of the view, the view's rows unchanged.

A view given an identity is joined by it and its features fetched afterwards (late
materialization, ``engines/duckdb/pit.py``); one wrongly given an identity would fetch another
row's features, so every shape that changes, multiplies or merges rows must get none. The
point-in-time results of both paths are checked against the brute-force reference in
``tests/pit/test_pit_reference.py``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from fsql.config import OfflineConfig
from fsql.engines.duckdb.engine import DuckDBEngine
from fsql.pit import ROW_IDENTITY

SOURCE = "raw__f"
COLUMNS = ("user_id", "ts", "score", "tags")


@pytest.fixture
def engine(tmp_path: Path) -> DuckDBEngine:
    """A DuckDB session with source ``raw__f``: three Parquet files (a glob) of 3, 0 and 2
    rows, whose row numbers restart in each file; and ``t``, a table, and ``tv``, a view."""
    for i, rows in enumerate(([1, 2, 2], [], [3, 1])):
        pq.write_table(pa.table({
            "user_id": pa.array(rows, pa.int64()),
            "ts": pa.array([10 * i + n for n in range(len(rows))], pa.int64()),
            "score": pa.array([float(n) for n in range(len(rows))], pa.float64()),
            "tags": pa.array([[f"t{n}"] * n for n in range(len(rows))], pa.list_(pa.string())),
        }), tmp_path / f"part-{i}.parquet")
    config = OfflineConfig("duckdb", Path(":memory:"), 1, None)
    duck = DuckDBEngine(config, str(tmp_path))
    duck.con.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)",
                     [str(tmp_path / "*.parquet")])
    duck.con.execute("CREATE VIEW tv AS SELECT * FROM t")
    return duck


def sources(engine: DuckDBEngine, tmp_path: Path, reads: str
            ) -> dict[str, tuple[exp.Query, tuple[str, ...]]]:
    query = {"parquet": engine.parquet_query(tmp_path / "*.parquet"),
             "table": exp.select("*").from_("t"),
             "view": exp.select("*").from_("tv"),
             "csv": exp.select("*").from_(exp.func("read_csv", exp.Literal.string("x.csv")))}
    return {SOURCE: (query[reads], COLUMNS)}


def identified(engine: DuckDBEngine, tmp_path: Path, sql: str, reads: str = "parquet"
               ) -> exp.Select | None:
    return engine.row_identity(sqlglot.parse_one(sql, "duckdb"),
                               sources(engine, tmp_path, reads))


ROW_WISE = [
    f"SELECT * FROM {SOURCE}",
    f"SELECT user_id, ts, score * 2 AS doubled FROM {SOURCE} WHERE score >= 0",
    f"SELECT s.user_id, s.ts, CAST(s.score AS INT) AS score FROM {SOURCE} AS s",
    f'SELECT "{SOURCE}".user_id, ts FROM "{SOURCE}" ORDER BY ts',
    f"SELECT user_id, ts, len(tags) AS n, coalesce(score, 0) AS score FROM {SOURCE}",
]


@pytest.mark.parametrize("reads", ["parquet", "table"])
@pytest.mark.parametrize("sql", ROW_WISE)
def test_a_projection_of_one_source_has_an_identity(engine: DuckDBEngine, tmp_path: Path,
                                                     sql: str, reads: str) -> None:
    rows = identified(engine, tmp_path, sql, reads)
    assert rows is not None
    with_identity = engine.con.sql(rows.sql("duckdb")).to_arrow_table()
    # the source as a view, as the compiler creates it
    source_sql = sources(engine, tmp_path, reads)[SOURCE][0].sql("duckdb")
    engine.con.execute(f"CREATE OR REPLACE VIEW {SOURCE} AS {source_sql}")
    view = engine.con.sql(sql).to_arrow_table()
    identity = with_identity.column(ROW_IDENTITY).to_pylist()
    assert len(set(identity)) == len(identity) == view.num_rows == 5
    assert None not in identity
    assert with_identity.drop_columns([ROW_IDENTITY]).sort_by(
        [(c, "ascending") for c in ("user_id", "ts")]).equals(
        view.sort_by([(c, "ascending") for c in ("user_id", "ts")]))


def test_the_identity_of_a_glob_tells_files_apart(engine: DuckDBEngine, tmp_path: Path) -> None:
    """Row numbers restart in every file: the file's index is part of the identity."""
    rows = identified(engine, tmp_path, f"SELECT user_id, ts FROM {SOURCE}")
    assert rows is not None
    got = engine.con.sql(f"SELECT ts, {ROW_IDENTITY} FROM ({rows.sql('duckdb')}) ORDER BY ts"
                         ).fetchall()
    assert got == [(0, 0), (1, 1), (2, 2), (20, 2 << 40), (21, (2 << 40) + 1)]


NOT_ROW_WISE = {
    "join": f"SELECT a.user_id, a.ts FROM {SOURCE} AS a JOIN {SOURCE} AS b USING (user_id)",
    "aggregate": f"SELECT user_id, max(ts) AS ts FROM {SOURCE} GROUP BY user_id",
    "window": f"SELECT user_id, ts, row_number() OVER (ORDER BY ts) AS n FROM {SOURCE}",
    "distinct": f"SELECT DISTINCT user_id, ts FROM {SOURCE}",
    "limit": f"SELECT user_id, ts FROM {SOURCE} LIMIT 2",
    "unnest": f"SELECT user_id, ts, unnest(tags) AS tag FROM {SOURCE}",
    "random": f"SELECT user_id, ts, random() AS r FROM {SOURCE}",
    "uuid": f"SELECT user_id, ts, uuid() AS r FROM {SOURCE}",
    "subquery": f"SELECT user_id, ts FROM {SOURCE} WHERE ts > (SELECT min(ts) FROM {SOURCE})",
    "cte": f"WITH x AS (SELECT * FROM {SOURCE}) SELECT user_id, ts FROM x",
    "union": f"SELECT user_id, ts FROM {SOURCE} UNION ALL SELECT user_id, ts FROM {SOURCE}",
    "nested": f"SELECT user_id, ts FROM (SELECT * FROM {SOURCE})",
    "qualify": f"SELECT user_id, ts FROM {SOURCE} QUALIFY ts = max(ts) OVER ()",
    "other relation": "SELECT user_id, ts FROM some_model",
    "qualified relation": f"SELECT user_id, ts FROM main.{SOURCE}",
}


@pytest.mark.parametrize("sql", NOT_ROW_WISE.values(), ids=NOT_ROW_WISE.keys())
def test_what_changes_multiplies_or_merges_rows_has_none(engine: DuckDBEngine, tmp_path: Path,
                                                         sql: str) -> None:
    assert identified(engine, tmp_path, sql) is None
    assert identified(engine, tmp_path, sql, "table") is None


@pytest.mark.parametrize("reads", ["view", "csv"])
def test_sources_without_row_numbers_have_none(engine: DuckDBEngine, tmp_path: Path,
                                               reads: str) -> None:
    """A database view has no ``rowid`` (found by binding the query); a CSV file no row
    numbers."""
    assert identified(engine, tmp_path, f"SELECT * FROM {SOURCE}", reads) is None


@pytest.mark.parametrize("column", ["file_row_number", "file_index", "rowid", "FileName",
                                    ROW_IDENTITY])
def test_a_source_with_a_column_named_like_a_row_number_has_none(
        engine: DuckDBEngine, tmp_path: Path, column: str) -> None:
    """Its own column would stand in for DuckDB's virtual one, which might not be unique, or
    clash with the identity's."""
    query, columns = sources(engine, tmp_path, "parquet")[SOURCE]
    rows = engine.row_identity(sqlglot.parse_one(f"SELECT * FROM {SOURCE}", "duckdb"),
                               {SOURCE: (query, (*columns, column))})
    assert rows is None
    aliased = f'SELECT user_id, ts, score AS "{column}" FROM {SOURCE}'
    assert identified(engine, tmp_path, aliased) is None
