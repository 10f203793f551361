"""DuckDB engine: the only module that imports duckdb.

The session time zone is pinned to UTC, so a naive TIMESTAMP compared with a TIMESTAMPTZ (or cast
to one) means UTC, whatever the machine's zone is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from sqlglot import exp

from fsql.config import OfflineConfig
from fsql.dtypes import engine_type
from fsql.engines.base import Column, Engine
from fsql.errors import EngineError

if TYPE_CHECKING:
    import pyarrow as pa

    from fsql.definitions import Source


class DuckDBEngine(Engine):
    """A connection to one DuckDB database file (or ``:memory:``)."""

    dialect = "duckdb"
    supports_asof = True

    def __init__(self, config: OfflineConfig, root_dir: str) -> None:
        database = str(config.path)
        if database != ":memory:":
            config.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(database)
        except duckdb.IOException as err:
            raise EngineError(
                f"cannot open DuckDB database {database}: {err}\n"
                "  hint: another fsql process may hold it; wait for it to finish."
            ) from None
        self.con.execute("SET TimeZone = 'UTC'")
        if config.threads:
            self.con.execute(f"SET threads = {int(config.threads)}")
        if config.memory_limit:
            self.con.execute("SET memory_limit = ?", [config.memory_limit])
        self._in_transaction = False
        self._kinds: dict[str, str] | None = None  # relation -> "view"/"table", until a
        # transaction ends (a rollback may restore what was replaced)

    # -- statements ----------------------------------------------------------------------
    def _run(self, expression: exp.Expr) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(self.sql(expression))
        except duckdb.Error as err:
            raise EngineError(f"DuckDB: {err}") from None

    def describe(self, query: exp.Query) -> list[Column]:
        try:
            rel = self.con.sql(self.sql(query))
        except duckdb.Error as err:
            raise EngineError(str(err)) from None
        return [Column(name, _column_type(str(t), self.dialect))
                for name, t in zip(rel.columns, rel.types, strict=True)]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            self._in_transaction = False
            self._kinds = None

    @contextmanager
    def rollback_only(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        finally:
            self.con.execute("ROLLBACK")
            self._in_transaction = False
            self._kinds = None

    def _existing_kind(self, name: str) -> str | None:
        if self._kinds is None:  # one catalog query for a whole compile, not one per relation
            rows = self.con.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = current_schema()").fetchall()
            self._kinds = {n: "view" if t == "VIEW" else "table" for n, t in rows}
        return self._kinds.get(name)

    def replace_relation(self, name: str, query: exp.Query, materialized: str) -> None:
        existing = self._existing_kind(name)
        table = exp.to_table(name)
        if existing is not None and existing != materialized:
            self._run(exp.Drop(tables=[table], kind=existing.upper(), exists=True))
        self._run(exp.Create(this=table, kind=materialized.upper(), replace=True,
                             expression=query))
        if self._kinds is not None:
            self._kinds[name] = materialized

    def source_query(self, source: Source, root: Path) -> exp.Query:
        if source.location is None:
            return exp.select("*").from_(exp.to_table(source.table or "", dialect=self.dialect))
        location = Path(source.location)
        full = location if location.is_absolute() else root / location
        if source.format == "parquet":
            return self.parquet_query(full)
        return exp.select("*").from_(exp.func("read_csv", exp.Literal.string(str(full))))

    def parquet_query(self, path: Path) -> exp.Query:
        return exp.select("*").from_(exp.func("read_parquet", exp.Literal.string(str(path))))

    def write_parquet(self, query: exp.Query, path: Path) -> None:
        self._run(exp.Copy(
            this=query.subquery(), kind=False, files=[exp.Literal.string(str(path))],
            params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("PARQUET"))],
        ))

    def fetch_arrow(self, query: exp.Query) -> pa.Table:
        try:
            return self.con.sql(self.sql(query)).to_arrow_table()
        except duckdb.Error as err:
            raise EngineError(f"DuckDB: {err}") from None

    def fetch_batches(self, query: exp.Query, batch_size: int) -> Iterator[pa.RecordBatch]:
        try:
            reader = self.con.sql(self.sql(query)).to_arrow_reader(batch_size)
        except duckdb.Error as err:
            raise EngineError(f"DuckDB: {err}") from None
        yield from reader

    def register(self, name: str, data: Any) -> None:
        self.con.register(name, data)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def close(self) -> None:
        self.con.close()


def _column_type(type_text: str, dialect: str) -> exp.DataType:
    """A DuckDB column type as sqlglot sees it. Two names DuckDB prints are not sqlglot types:
    ``TIMESTAMPTZ_NS`` (a zoned nanosecond timestamp, e.g. a pandas ``datetime64[ns, tz]``
    spine) and ``"NULL"`` (an untyped all-null column, e.g. an empty or all-None object column
    of a pandas spine)."""
    if type_text == "TIMESTAMPTZ_NS":
        # an instant like TIMESTAMPTZ, but not equal to it: compared columns get cast to
        # TIMESTAMPTZ (see pit._as), as TIMESTAMP_NS gets cast to TIMESTAMP
        return exp.DataType(this=exp.DataType.Type.TIMESTAMPTZ,
                            expressions=[exp.DataTypeParam(this=exp.Literal.number(9))])
    if type_text.strip('"') == "NULL":
        return exp.DataType(this=exp.DataType.Type.NULL)
    return engine_type(type_text, dialect)
