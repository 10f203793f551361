"""Sync from a Spark target into a real redis-server (started by the tests): the online values
equal those synced from DuckDB, and ``verify`` finds every online value equal to the training
path's."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import fsql
from fsql.errors import RequestError
from tests.redis_server import RedisServer
from tests.spark.test_project import FILES, _project

ONLINE = {"features/customer_orders.yml": FILES["features/customer_orders.yml"].replace(
    "freshness: 30d\n", "freshness: 30d\n          online: true\n")}


def _profile(root: Path, url: str, offline: str) -> None:
    (root / "profiles.yml").write_text(
        f"sparky:\n  target: dev\n  outputs:\n    dev:\n      offline: {offline}\n"
        f"      online: {{type: redis, url: '{url}', namespace: t-{uuid.uuid4().hex[:10]}}}\n")


def _synced(root: Path, url: str, offline: str, files: dict[str, str] | None = None
            ) -> tuple[fsql.Project, dict[str, Any]]:
    project = _project(root, {**ONLINE, **(files or {})}, profile=False)
    _profile(root, url, offline)
    project = fsql.Project(root)
    result = project.sync(now=1_800_000_000)
    [view] = result.views
    assert view.entities == 7 and view.written == 7
    values = project.online_features(["customer_orders"],
                                     {"customer_id": list(range(8))}).to_dict()
    return project, values


def test_sync_from_spark_equals_sync_from_duckdb(spark: Any, tmp_path: Path,
                                                 redis_server: RedisServer) -> None:
    _, from_spark = _synced(tmp_path / "s", redis_server.url,
                            "{type: spark, master: 'local[2]'}")
    _, from_duck = _synced(tmp_path / "d", redis_server.url, "{type: duckdb}")
    assert from_spark == from_duck
    assert any(v is not None for v in from_spark["amount"])


def test_sync_of_a_view_with_a_created_timestamp_equals_duckdb(
        spark: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    # the latest-row query orders by (event, created) with null created times losing (half
    # the customers have none)
    files = {"features/customer_orders.yml": ONLINE["features/customer_orders.yml"].replace(
        "timestamp: order_ts\n", "timestamp: order_ts\n          created_timestamp: order_day\n"),
        "features/customer_orders.sql": FILES["features/customer_orders.sql"].replace(
        "amount_bucket\n",
        "amount_bucket, CASE WHEN customer_id % 2 = 0 THEN order_day END AS order_day\n")}
    _, from_spark = _synced(tmp_path / "s", redis_server.url,
                            "{type: spark, master: 'local[2]'}", files)
    _, from_duck = _synced(tmp_path / "d", redis_server.url, "{type: duckdb}", files)
    assert from_spark == from_duck
    assert any(v is not None for v in from_spark["amount"])


def test_an_aggregation_view_is_refused_by_sync_and_test_on_spark(
        spark: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    # its values at one instant (online tiles, data tests) are DuckDB SQL: refused by name and
    # file before anything is written or tested
    files = {"features/order_windows.yml": """
        feature_view:
          name: order_windows
          entities: [customer]
          timestamp: order_ts
          online: true
          aggregations:
            - name: orders_7d
              function: count
              window: 7d
              tests: [not_null]
        """, "features/order_windows.sql": """
        SELECT customer_id, order_ts FROM {{ ref('orders_enriched') }}
        """}
    project = _project(tmp_path, {**ONLINE, **files}, profile=False)
    _profile(tmp_path, redis_server.url, "{type: spark, master: 'local[2]'}")
    project = fsql.Project(tmp_path)
    with pytest.raises(RequestError, match=r"order_windows\.yml:\d+: view 'order_windows' has "
                       r"time-window aggregations.*nothing was synced"):
        project.sync(now=1_800_000_000)
    with pytest.raises(RequestError, match=r"order_windows\.yml:\d+: .*nothing was tested"):
        project.test(select=["order_windows"])
    assert project.sync(now=1_800_000_000, select=["customer_orders"]).views[0].written == 7


def test_verify_on_spark(spark: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    project, _ = _synced(tmp_path / "s", redis_server.url, "{type: spark, master: 'local[2]'}")
    [check] = project.verify(sample=None)
    assert (check.entities, check.matched, check.mismatched) == (7, 7, 0)
