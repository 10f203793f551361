"""Spark tests: one local-mode SparkSession for the whole run (local[2], 2 shuffle partitions,
no UI, session time zone UTC: naive timestamps mean UTC; ANSI mode, which on-demand overflow
errors need), shared by every engine the tests open (``SparkEngine`` leaves a session it did
not start running), and the ``spark`` marker on each test under tests/spark/. pyspark comes
with the ``spark`` extra, which ``make install`` installs: a missing pyspark fails these tests
rather than skipping them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.spark)
            # py4j leaves its gateway sockets to the garbage collector
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:Exception ignored in. <socket.socket:"
                "pytest.PytestUnraisableExceptionWarning"))
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:unclosed <socket.socket:ResourceWarning"))


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """local[2], two shuffle partitions, no UI, UTC, ANSI on: what ``SparkEngine`` pins."""
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (SparkSession.builder.master("local[2]").appName("fsql-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "2")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.ansi.enabled", "true")
               .config("spark.sql.warehouse.dir", str(warehouse))
               .config("spark.driver.memory", "1g")
               .getOrCreate())
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


def spark_profile(name: str, **offline: str) -> str:
    """profiles.yml text for a project on local Spark (sharing the tests' session)."""
    extra = "".join(f", {k}: {v}" for k, v in offline.items())
    return (f"{name}:\n  target: dev\n  outputs:\n    dev:\n"
            f"      offline: {{type: spark, master: 'local[2]'{extra}}}\n")
