"""Spark engine (``offline: {type: spark}``): the only module that starts a SparkSession.

Models and feature SQL stay in DuckDB's dialect; ``adapt`` turns each into Spark SQL with the
same meaning, or refuses it (``fsql.engines.spark.dialect``). The session runs in UTC with ANSI
mode on (an overflow or a bad cast fails, as in DuckDB). Types map as DuckDB's: Spark's
TIMESTAMP_NTZ is DuckDB's TIMESTAMP (naive, meaning UTC), Spark's TIMESTAMP is TIMESTAMPTZ.

Spark has no transactions. Every relation fsql creates is a temporary view of this session
(a ``table`` is a temporary view over a Parquet copy under the warehouse directory), so the
engine keeps their definitions and undoes its own changes: a failed ``transaction`` and every
``rollback_only`` block restore the views as they were and delete the copies they wrote. Nothing
outside the session changes before ``fsql build`` publishes its training sets.

A session this engine started is stopped by ``close``; one that was already running (a
notebook's, or the test suite's) is left running, with this engine's views dropped.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.errors import PySparkException, PythonException
from pyspark.sql import DataFrame, SparkSession
from sqlglot import exp

from fsql.config import OfflineConfig
from fsql.engines.base import Column, Engine, PartitionWriter, R, Task
from fsql.engines.spark import dialect
from fsql.errors import ConfigError, DefinitionError, EngineError, QueryFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from fsql.definitions import Source
    from fsql.pit import PitStrategy
    from fsql.windows import TileStrategy

#: settings of every session fsql starts; a target's ``conf:`` may override the first group
_DEFAULTS = {"spark.app.name": "fsql", "spark.ui.enabled": "false",
             "spark.ui.showConsoleProgress": "false",
             "spark.sql.shuffle.partitions": "8"}
#: settings fsql's semantics depend on (``config.SPARK_PINNED``, refused in ``conf:``): set on
#: the session, even on one already running
_PINNED = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true",
           "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
           # zoned times as Parquet TIMESTAMP(isAdjustedToUTC) micros, not legacy INT96
           # (which DuckDB and pyarrow read as naive)
           "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
           "spark.sql.execution.arrow.pyspark.enabled": "true"}
# pyspark warns on every Arrow conversion that it is not tested with pandas 3; fsql hands Spark
# Arrow tables (never pandas frames), so the warning is noise in every command's output
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                        category=FutureWarning)
#: Spark error conditions that are errors on the data (``QueryFailed.on_data``)
_DATA_ERRORS = ("DIVIDE_BY_ZERO", "CAST_INVALID_INPUT", "CAST_OVERFLOW", "ARITHMETIC_OVERFLOW",
                "NUMERIC_VALUE_OUT_OF_RANGE", "INVALID_FRACTION_OF_SECOND", "DATETIME_")


class SparkEngine(Engine):
    """A Spark session (local mode or a cluster's ``master``); see the module docstring."""

    dialect = "spark"

    def __init__(self, config: OfflineConfig, root_dir: str, writable: bool = False) -> None:
        #: the views this engine made: name -> (SQL, Parquet copy of a ``table`` or None)
        self.views: dict[str, tuple[str, Path | None]] = {}
        self._saved: dict[str, tuple[str, Path | None]] | None = None  # at transaction start
        self.owned = SparkSession.getActiveSession() is None
        assert config.warehouse is not None
        self.warehouse = config.warehouse
        builder = SparkSession.builder.master(config.master)
        quiet = Path(__file__).with_name("log4j2.properties")  # the JVM's start-up chatter
        settings = {**_DEFAULTS, "spark.sql.warehouse.dir": str(self.warehouse),
                    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{quiet}",
                    **dict(config.conf), **_PINNED}
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            self.spark = builder.getOrCreate()
        except Exception as err:  # a JVM that cannot start: Java missing or too old
            raise EngineError(f"cannot start Spark (master {config.master}): {err}; Spark "
                              "needs Java 17 or later on PATH or in JAVA_HOME") from None
        for key, value in _PINNED.items():
            self.spark.conf.set(key, value)
        self.spark.sparkContext.setLogLevel("FATAL")  # failures reach the user as fsql errors
        context = self.spark.sparkContext
        if (context.master or "").startswith("local") and "PYSPARK_PYTHON" not in os.environ:
            # the Python workers (which run sync's writers) are this interpreter, which has
            # fsql; a cluster's executors need fsql installed (see README, Scaling out)
            context.pythonExec = sys.executable
        if config.database != "default":
            try:
                self.spark.catalog.setCurrentDatabase(config.database)
            except PySparkException as err:
                self.close()
                raise ConfigError(f"offline database '{config.database}' cannot be used: "
                                  f"{_message(err)}; create it or fix 'database:'") from None

    def pit_strategy(self) -> PitStrategy:
        from fsql.engines.spark.pit import UnionWindowJoin

        return UnionWindowJoin()

    def tile_strategy(self) -> TileStrategy:
        from fsql.engines.spark.tiles import CollectTiles

        return CollectTiles()

    def adapt(self, query: exp.Query, schema: dict[str, dict[str, exp.DataType]]
              ) -> exp.Query:
        return dialect.to_spark(query, schema)

    # -- statements ----------------------------------------------------------------------
    def _frame(self, query: exp.Expr) -> DataFrame:
        try:
            return self.spark.sql(self.sql(query))
        except PySparkException as err:
            raise EngineError(f"Spark: {_message(err)}") from None

    def _run(self, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except PySparkException as err:
            condition = err.getCondition() or ""
            raise QueryFailed(f"Spark: {_message(err)}",
                              condition.startswith(_DATA_ERRORS)) from None

    def describe(self, query: exp.Query) -> list[Column]:
        return [Column(f.name, spark_type(f.dataType.simpleString()))
                for f in self._frame(query).schema.fields]

    # -- transactions: undo of this session's own views ------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._saved is not None:
            yield
            return
        self._saved = dict(self.views)
        try:
            yield
        except BaseException:
            self._restore()
            raise
        else:
            kept = {copy for _, copy in self.views.values()}
            self._delete(copy for _, copy in self._saved.values() if copy not in kept)
        finally:
            self._saved = None

    @contextmanager
    def rollback_only(self) -> Iterator[None]:
        outer, self._saved = self._saved, dict(self.views)
        try:
            yield
        finally:
            self._restore()
            self._saved = outer

    def _restore(self) -> None:
        """Put every view back as it was when the transaction began."""
        assert self._saved is not None
        saved = self._saved
        for name, (text, copy) in list(self.views.items()):
            if saved.get(name) == (text, copy):
                continue
            self.spark.catalog.dropTempView(name)
            if copy is not None:
                self._delete([copy])
            del self.views[name]
        for name, (text, copy) in saved.items():
            if name not in self.views:
                self.spark.sql(text)
                self.views[name] = (text, copy)

    @staticmethod
    def _delete(copies: Any) -> None:
        for copy in copies:
            if copy is not None:
                shutil.rmtree(copy, ignore_errors=True)

    def replace_relation(self, name: str, query: exp.Query, materialized: str) -> None:
        copy = None
        if materialized == "table":
            copy = self.warehouse / "fsql_tables" / f"{name}-{uuid.uuid4().hex[:12]}"
            self.write_parquet(query, copy)
            query = self.parquet_query(copy)
        create = exp.Create(this=exp.to_table(name, dialect=self.dialect), kind="VIEW",
                            replace=True, expression=query, properties=exp.Properties(
                                expressions=[exp.TemporaryProperty()]))
        text = self.sql(create)
        previous = self.views.get(name)
        try:
            self._run(self.spark.sql, text)
        except EngineError:
            self._delete([copy])
            raise
        self.views[name] = (text, copy)
        if self._saved is None and previous is not None:
            self._delete([previous[1]])  # outside a transaction nothing can need it again

    def source_query(self, source: Source, root: Path) -> exp.Query:
        if source.location is None:
            return exp.select("*").from_(exp.to_table(source.table or "", dialect="spark"))
        location = Path(source.location)
        full = location if location.is_absolute() else root / location
        if source.format != "parquet":
            raise DefinitionError(
                source.path, f"source '{source.name}' is {source.format}: on Spark, sources "
                "are Parquet files or catalog tables (Spark infers CSV column types "
                "differently from DuckDB)", line=source.line,
                hint="convert the file to Parquet, e.g. COPY (FROM 'x.csv') TO 'x.parquet' in "
                "DuckDB")
        return self.parquet_query(full)

    def parquet_query(self, path: Path) -> exp.Query:
        return exp.select("*").from_(exp.Table(this=exp.to_identifier(str(path), quoted=True),
                                               db=exp.to_identifier("parquet")))

    def write_parquet(self, query: exp.Query, path: Path) -> None:
        """Write a Parquet directory at ``path`` (one file per partition), replacing it."""
        frame = self._frame(query)
        self._run(frame.write.mode("overwrite").parquet, str(path))

    def fetch_arrow(self, query: exp.Query) -> pa.Table:
        return self._run(self._frame(query).toArrow)

    def fetch_batches(self, query: exp.Query, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The rows as Arrow batches. The result is collected on the driver first (bounded by
        the driver's memory, not by ``batch_size``)."""
        yield from self.fetch_arrow(query).to_batches(batch_size)

    def write_partitions(self, query: exp.Query, batch_size: int,
                         writer: PartitionWriter[R]) -> list[R]:
        """``writer`` runs on the executors, once per partition of the result (``mapInArrow``,
        in record batches of at most ``batch_size`` rows), with the task's partition and
        attempt; each task sends back one row: its pickled result. Only those results reach
        the driver. A writer that raises fails its task (Spark may retry it), and a job that
        fails raises ``QueryFailed`` naming the writer's error."""
        frame = self._frame(query)

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            import pickle

            import pyarrow as pa
            from pyspark import TaskContext

            context = TaskContext.get()
            assert context is not None
            result = writer(batches, Task(context.partitionId(), context.attemptNumber()))
            yield pa.record_batch([pa.array([pickle.dumps(result)], pa.binary())],
                                  names=["result"])

        import pickle

        # the writers' parallelism is spark.sql.shuffle.partitions: AQE would coalesce a small
        # result (a few MB of latest rows) into one partition, i.e. one writer
        with self._settings({"spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_size),
                             "spark.sql.adaptive.coalescePartitions.enabled": "false"}):
            with warnings.catch_warnings():  # mapInArrow checks pandas, which it does not use
                warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas",
                                        FutureWarning)
                mapped = frame.mapInArrow(run, "result binary")
            rows = self._run(mapped.collect)
        return [pickle.loads(row.result) for row in rows]

    @contextmanager
    def _settings(self, settings: dict[str, str]) -> Iterator[None]:
        """The session's ``settings`` for the block, restored after."""
        before: dict[str, str | None] = {key: self.spark.conf.get(key, None)
                                         for key in settings}
        for key, value in settings.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, old in before.items():
                if old is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, old)

    def register(self, name: str, data: Any) -> None:
        import pyarrow as pa

        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(
            data, preserve_index=False)
        frame = self._run(self.spark.createDataFrame, table)
        naive = [f.name for f in table.schema
                 if pa.types.is_timestamp(f.type) and f.type.tz is None]
        if naive:  # Spark reads a naive Arrow time as a zoned one: make it naive again (UTC)
            frame = frame.withColumns({c: frame[c].cast("timestamp_ntz") for c in naive})
        frame.createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def close(self) -> None:
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.views.clear()
        if self.owned:
            self.spark.stop()


def spark_type(text: str) -> exp.DataType:
    """A Spark column type (``simpleString``) as fsql types it, in DuckDB's terms:
    timestamp_ntz -> TIMESTAMP, timestamp -> TIMESTAMPTZ."""
    if text == "void":
        return exp.DataType.build("NULL", dialect="duckdb")
    spark = exp.DataType.build(text, dialect="spark")
    return exp.DataType.build(spark.sql("duckdb"), dialect="duckdb")


def _message(err: PySparkException) -> str:
    """The first line of Spark's message: its condition and what failed, not the plan; for
    an error raised in Python on an executor, that error's own line (the traceback's last)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if isinstance(err, PythonException):
        raised = [line for line in lines if not line.startswith((" ", "\t", "Traceback"))]
        if len(raised) > 1:
            return f"{raised[0]} {raised[-1].strip()}"
    return lines[0]
