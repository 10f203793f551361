"""Offline engines: the only place where engine-specific code lives."""

from __future__ import annotations

from fsql.config import OfflineConfig
from fsql.engines.base import Column, Engine
from fsql.errors import ConfigError

__all__ = ["Column", "Engine", "connect"]


def connect(config: OfflineConfig, root_dir: str, writable: bool = False) -> Engine:
    """Open the engine a target's ``offline:`` block describes. Only ``writable`` sessions
    (``fsql build``) may change the project's database; the others read it, if at all."""
    if config.type == "duckdb":
        from fsql.engines.duckdb.engine import DuckDBEngine

        return DuckDBEngine(config, root_dir, writable)
    if config.type == "spark":
        try:
            from fsql.engines.spark.engine import SparkEngine
        except ImportError as err:
            raise ConfigError(f"offline engine 'spark' needs pyspark ({err}); install it with "
                              "pip install 'fsql[spark]'") from None
        return SparkEngine(config, root_dir, writable)
    raise ConfigError(f"unsupported offline engine '{config.type}'")
