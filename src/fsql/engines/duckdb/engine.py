"""DuckDB engine: the only module that imports duckdb.

The session time zone is pinned to UTC, so a naive TIMESTAMP compared with a TIMESTAMPTZ (or cast
to one) means UTC, whatever the machine's zone is.

Only a ``writable`` session (``fsql build``) opens the project's database file, and then
read-write. Every other session (compile, test, freshness, verify, diff, sync, notebooks) runs
on an in-memory database: compiling creates each model and view as a view in a rolled-back
transaction, over sources that are files. The project file is attached, read-only, only when a
source is declared as a table of it, and only until that session's transaction ends. DuckDB
lets any number of processes read a file or one process write it, so reading sessions never
block each other, and a session that finds the file held gets ``EngineBusyError`` (exit 75).
An in-memory session spills to ``<file>.tmp.<pid>`` beside the file (not the working
directory, DuckDB's default), which DuckDB removes when the session closes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from sqlglot import exp

from fsql.config import OfflineConfig
from fsql.dtypes import engine_type
from fsql.engines.base import Column, Engine
from fsql.errors import EngineBusyError, EngineError, QueryFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from fsql.definitions import Source
    from fsql.pit import PitStrategy
    from fsql.windows import TileStrategy


class DuckDBEngine(Engine):
    """A session on one DuckDB database file (or ``:memory:``); see the module docstring for
    when the file is opened, and how."""

    dialect = "duckdb"

    def __init__(self, config: OfflineConfig, root_dir: str, writable: bool = False) -> None:
        database = str(config.path)
        self.file = None if database == ":memory:" else config.path
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
        self.con = _open(self.file if writable else None)
        self.con.execute("SET TimeZone = 'UTC'")
        if self.file is not None and not writable:
            # spill beside the project file, not in the working directory (DuckDB's default
            # for an in-memory database); one directory per process, removed on close
            spill = self.file.with_name(f"{self.file.name}.tmp.{os.getpid()}")
            self.con.execute("SET temp_directory = ?", [str(spill)])
        if config.threads:
            self.con.execute(f"SET threads = {int(config.threads)}")
        if config.memory_limit:
            self.con.execute("SET memory_limit = ?", [config.memory_limit])
        self._in_transaction = False
        self._kinds: dict[str, str] | None = None  # relation -> "view"/"table", until a
        # transaction ends (a rollback may restore what was replaced)
        #: the catalog that source tables live in: the project file's, as DuckDB names it
        #: when it opens the file (so ``fsql.main.t`` works in both kinds of session)
        self.catalog = None if self.file is None else self.file.stem
        #: a reading session attaches the file on first need, read-only; the attachment ends
        #: with the transaction (DuckDB detaches on rollback)
        self._attach = self.file is not None and not writable
        self._attached = False

    def pit_strategy(self) -> PitStrategy:
        from fsql.engines.duckdb.pit import AsofJoin

        return AsofJoin()

    def row_identity(self, query: exp.Query,
                     sources: Mapping[str, tuple[exp.Query, tuple[str, ...]]]
                     ) -> exp.Select | None:
        from fsql.engines.duckdb.rows import identified

        rows = identified(query, sources)
        if rows is None:
            return None
        try:  # the identity binds (a source table that is really a view has no rowid)
            self.describe(rows)
        except EngineError:
            return None
        return rows

    def tile_strategy(self) -> TileStrategy:
        from fsql.engines.duckdb.tiles import ListTiles

        return ListTiles()

    # -- statements ----------------------------------------------------------------------
    def _run(self, expression: exp.Expr) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(self.sql(expression))
        except duckdb.Error as err:
            raise _failed(err) from None

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
            self._attached = False

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
            self._attached = False

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
            return exp.select("*").from_(self._project_table(source.table or ""))
        location = Path(source.location)
        full = location if location.is_absolute() else root / location
        if source.format == "parquet":
            return self.parquet_query(full)
        return exp.select("*").from_(exp.func("read_csv", exp.Literal.string(str(full))))

    def _project_table(self, name: str) -> exp.Table:
        """A table of the project's database, qualified with its catalog in a reading session
        (which attaches the file read-only for it)."""
        table = exp.to_table(name, dialect=self.dialect)
        if not self._attach:
            return table
        assert self.file is not None and self.catalog is not None
        if not self._attached and self.file.exists():  # absent: the table is missing anyway
            attach = exp.Attach(
                this=exp.alias_(exp.Literal.string(str(self.file)), self.catalog, quoted=True),
                exists=True, expressions=[exp.AttachOption(this=exp.var("READ_ONLY"))])
            with _busy(self.file):
                self.con.execute(self.sql(attach))
            self._attached = True
        if table.db == self.catalog and not table.catalog:  # written as catalog.table
            table.set("catalog", table.args["db"])
            table.set("db", None)
        table.set("catalog", table.args.get("catalog") or exp.to_identifier(self.catalog))
        table.set("db", table.args.get("db") or exp.to_identifier("main"))
        return table

    def raise_error(self, message: str) -> exp.Expr:
        from fsql.engines.duckdb.pit import fail

        return fail(message)

    def parquet_query(self, path: Path) -> exp.Query:
        return exp.select("*").from_(exp.func("read_parquet", exp.Literal.string(str(path))))

    def write_parquet(self, query: exp.Query, path: Path) -> None:
        with self._unchanged_files(query):
            self._run(exp.Copy(
                this=query.subquery(), kind=False, files=[exp.Literal.string(str(path))],
                params=[exp.CopyParameter(this=exp.var("FORMAT"),
                                          expression=exp.var("PARQUET"))],
            ))

    def fetch_arrow(self, query: exp.Query) -> pa.Table:
        with self._unchanged_files(query):
            try:
                return self.con.sql(self.sql(query)).to_arrow_table()
            except duckdb.Error as err:
                raise _failed(err) from None

    @contextmanager
    def _unchanged_files(self, query: exp.Query) -> Iterator[None]:
        """Fail the statement if a Parquet file it reads more than once (late
        materialization: ``rows.reread_files``) was added, removed or rewritten while it ran,
        since its two reads may then disagree on which row is which."""
        from fsql.engines.duckdb.rows import reread_files

        paths = reread_files(query)
        before = self._file_states(paths)
        yield
        if self._file_states(paths) != before:
            raise EngineError(f"a source file changed while the query read it "
                              f"({', '.join(paths)}); nothing was written: run it again "
                              "once the files are no longer being written")

    def _file_states(self, paths: tuple[str, ...]) -> list[tuple[str, int, int, int, int]]:
        """Each file the globs ``paths`` match as DuckDB lists them, with its identity,
        size and modification time."""
        states = []
        for pattern in paths:
            for (name,) in self.con.execute("SELECT file FROM glob(?)", [pattern]).fetchall():
                try:
                    stat = os.stat(name)
                except OSError:
                    states.append((name, -1, -1, -1, -1))
                    continue
                states.append((name, stat.st_dev, stat.st_ino, stat.st_size,
                               stat.st_mtime_ns))
        return states

    def fetch_batches(self, query: exp.Query, batch_size: int) -> Iterator[pa.RecordBatch]:
        try:
            reader = self.con.sql(self.sql(query)).to_arrow_reader(batch_size)
        except duckdb.Error as err:
            raise _failed(err) from None
        try:
            yield from reader
        except OSError as err:  # DuckDB's error, as Arrow's reader passes it on
            raise _failed(err) from None

    def register(self, name: str, data: Any) -> None:
        self.con.register(name, data)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def close(self) -> None:
        self.con.close()


#: how DuckDB's messages of errors on the data begin
_DATA_ERRORS = ("Conversion Error", "Out of Range Error", "Invalid Input Error")


def _failed(err: Exception) -> QueryFailed:
    """A DuckDB error as ``QueryFailed``, ``on_data`` for conversion and range errors and
    invalid input (an integer division by zero)."""
    return QueryFailed(f"DuckDB: {err}", str(err).startswith(_DATA_ERRORS))


def _open(file: Path | None) -> duckdb.DuckDBPyConnection:
    """The project's database file read-write, or (``None``) an in-memory database."""
    if file is None:
        return duckdb.connect(":memory:")
    with _busy(file):
        con = duckdb.connect(str(file))
    return con


_PID = re.compile(r"\(PID (\d+)\)")


@contextmanager
def _busy(file: Path) -> Iterator[None]:
    """Turn DuckDB's "another process holds this file" into ``EngineBusyError`` (exit 75)."""
    try:
        yield
    except duckdb.IOException as err:
        if "Could not set lock on file" not in str(err):
            raise EngineError(f"cannot open DuckDB database {file}: {err}") from None
        pid = _PID.search(str(err))
        who = f"another process (PID {pid.group(1)})" if pid else "another process"
        raise EngineBusyError(
            f"DuckDB database {file} is in use by {who}: fsql build needs it alone, and a "
            "verb reading it needs no build running; nothing was done\n"
            "  hint: try again when that process finishes (from cron: the next run will)"
        ) from None


def _column_type(type_text: str, dialect: str) -> exp.DataType:
    """A DuckDB column type as sqlglot sees it. Two names DuckDB prints are not sqlglot types:
    ``TIMESTAMPTZ_NS`` (a zoned nanosecond timestamp, e.g. a pandas ``datetime64[ns, tz]``
    spine) and ``"NULL"`` (an untyped all-null column, e.g. an empty or all-None object column
    of a pandas spine)."""
    if type_text == "TIMESTAMPTZ_NS":
        # an instant like TIMESTAMPTZ, but not equal to it: compared columns get cast to
        # TIMESTAMPTZ (see pit.as_instant), as TIMESTAMP_NS gets cast to TIMESTAMP
        return exp.DataType(this=exp.DataType.Type.TIMESTAMPTZ,
                            expressions=[exp.DataTypeParam(this=exp.Literal.number(9))])
    if type_text.strip('"') == "NULL":
        return exp.DataType(this=exp.DataType.Type.NULL)
    return engine_type(type_text, dialect)
