"""The DuckDB engine (the embedded default) and its point-in-time strategy."""

from fsql.engines.duckdb.engine import DuckDBEngine
from fsql.engines.duckdb.pit import AsofJoin

__all__ = ["AsofJoin", "DuckDBEngine"]
