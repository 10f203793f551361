"""The engine seam: what fsql needs from an offline SQL engine.

Statements are handed over as sqlglot expressions and generated in ``Engine.dialect``; an
engine adds only what the dialect cannot express (connections, catalogs, file writes).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlglot import exp

if TYPE_CHECKING:
    import pyarrow as pa

    from fsql.definitions import Source
    from fsql.pit import PitStrategy
    from fsql.windows import TileStrategy

#: the dialect models and feature SQL are written in, whatever the engine
PROJECT_DIALECT = "duckdb"


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a query result as the engine types it."""

    name: str
    dtype: exp.DataType


@dataclass(frozen=True, slots=True)
class Task:
    """Which partition of a result a writer is given, and which attempt at it this is (an
    engine may run a failed partition again: each attempt must keep its effects apart)."""

    partition: int
    attempt: int


R = TypeVar("R")
#: one partition's rows as Arrow record batches, and the task -> a small picklable result
PartitionWriter = Callable[[Iterator["pa.RecordBatch"], Task], R]


class DialectError(Exception):
    """A construct of a model or view query the engine cannot run with the meaning it has in
    the project dialect; ``line`` is its line in the rendered SQL, if known."""

    def __init__(self, message: str, line: int | None, hint: str) -> None:
        super().__init__(message)
        self.line, self.hint = line, hint


class Engine(abc.ABC):
    """An offline SQL engine connection."""

    dialect: str = ""
    @abc.abstractmethod
    def pit_strategy(self) -> PitStrategy:
        """How this engine turns a ``PitPlan`` into SQL (``fsql.pit``)."""

    @abc.abstractmethod
    def tile_strategy(self) -> TileStrategy:
        """How this engine spells the online tile state of aggregation views
        (``fsql.windows.TileStrategy``)."""

    def adapt(self, query: exp.Query, schema: dict[str, dict[str, exp.DataType]]
              ) -> exp.Query:
        """A model or view query, parsed in ``PROJECT_DIALECT``, as this engine runs it with
        the same meaning; ``DialectError`` for a construct it cannot. ``schema`` holds the
        columns of the relations compiled so far. The project dialect's own engine runs the
        query as it is."""
        return query

    def row_identity(self, query: exp.Query,
                     sources: Mapping[str, tuple[exp.Query, tuple[str, ...]]]
                     ) -> exp.Select | None:
        """A feature view's ``query`` plus a column ``fsql.pit.ROW_IDENTITY`` naming each of
        its rows for the length of a statement, or None when the engine cannot tell its rows
        apart. A point-in-time strategy may then join only keys, times and that identity,
        and fetch the chosen rows' features afterwards (late materialization). ``sources``
        maps each source's relation to its query and its column names."""
        return None

    @abc.abstractmethod
    def describe(self, query: exp.Query) -> list[Column]:
        """Output columns of ``query`` without running it."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Commit on success, roll back on any exception."""

    @abc.abstractmethod
    def rollback_only(self) -> AbstractContextManager[None]:
        """A transaction that is always rolled back: validation that leaves no trace."""

    @abc.abstractmethod
    def replace_relation(self, name: str, query: exp.Query, materialized: str) -> None:
        """Create or replace ``name`` as a view or table of ``query``."""

    @abc.abstractmethod
    def source_query(self, source: Source, root: Path) -> exp.Query:
        """The query that reads a declared source (files or an existing table)."""

    @abc.abstractmethod
    def parquet_query(self, path: Path) -> exp.Query:
        """The query that reads Parquet file(s) at ``path`` (globs allowed)."""

    @abc.abstractmethod
    def write_parquet(self, query: exp.Query, path: Path) -> None:
        """Write the result of ``query`` to a Parquet file at ``path`` (overwriting it)."""

    @abc.abstractmethod
    def fetch_arrow(self, query: exp.Query) -> pa.Table:
        """Run ``query`` and return all rows as an Arrow table."""

    @abc.abstractmethod
    def fetch_batches(self, query: exp.Query, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Run ``query`` and stream its rows as Arrow record batches (bounded memory)."""

    def write_partitions(self, query: exp.Query, batch_size: int,
                         writer: PartitionWriter[R]) -> list[R]:
        """Run ``query`` and hand each partition of its result to ``writer`` where the rows
        are (an engine with executors runs it there, once per partition, so it must pickle);
        the writers' results, one per partition. Any exception a writer raises fails the
        whole call. An in-process engine has one partition: ``write_in_process``."""
        return self.write_in_process(query, batch_size, writer)

    def write_in_process(self, query: exp.Query, batch_size: int,
                         writer: PartitionWriter[R]) -> list[R]:
        """``writer`` run here, on every row of ``query`` as one partition (``fetch_batches``):
        for a sink only this process can reach. The rows' stream is closed however the writer
        ends (it may stop early: an open result would keep the engine busy)."""
        batches = self.fetch_batches(query, batch_size)
        try:
            return [writer(batches, Task(0, 0))]
        finally:
            if isinstance(batches, Generator):
                batches.close()

    @abc.abstractmethod
    def register(self, name: str, data: Any) -> None:
        """Expose an in-memory Arrow table or pandas DataFrame as relation ``name``."""

    @abc.abstractmethod
    def unregister(self, name: str) -> None:
        """Remove a relation added by ``register``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def raise_error(self, message: str) -> exp.Expr:
        """An expression that fails the running query with ``message`` when it is evaluated
        (Spark SQL's ``raise_error``; an engine that spells it otherwise overrides this)."""
        return exp.func("raise_error", exp.Literal.string(message))

    def sql(self, expression: exp.Expr, pretty: bool = False) -> str:
        """Generate SQL text for this engine."""
        return expression.sql(dialect=self.dialect, pretty=pretty)
