"""A small project on a Spark target, through ``fsql.Project`` and the real CLI: compile,
refusals with file and line, build (models, tables, views, data tests), freshness, diff, and
the same relation contents as on DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from tests.conftest import write_files
from tests.spark.conftest import spark_profile

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123_456)


def _data(root: Path) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    orders = pa.table({
        "order_id": pa.array(range(1, 41), pa.int64()),
        "customer_id": pa.array([n % 7 for n in range(40)], pa.int64()),
        "order_ts": pa.array([T0 + dt.timedelta(hours=5 * n, microseconds=n) for n in range(40)],
                             pa.timestamp("us")),
        "amount": pa.array([None if n % 9 == 0 else n * 2.5 for n in range(40)], pa.float64()),
        "quantity": pa.array([n % 4 for n in range(40)], pa.int32()),
    })
    customers = pa.table({
        "customer_id": pa.array(range(7), pa.int64()),
        "country": pa.array(["DE", "FR", None, "US", "DE", "PL", "FR"]),
        "signup_ts": pa.array([dt.datetime(2023, 1, n + 1, tzinfo=dt.UTC) for n in range(7)],
                              pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(orders, root / "data" / "orders.parquet")
    pq.write_table(customers, root / "data" / "customers.parquet")


FILES = {
    "models/sources.yml": """
        sources:
          - name: shop
            tables:
              - {name: orders, path: data/orders.parquet}
              - {name: customers, path: data/customers.parquet}
        """,
    "models/orders_enriched.sql": """
        {{ config(materialized='table') }}
        SELECT o.order_id, o.customer_id, o.order_ts, o.amount, o.quantity, c.country,
               CAST(o.amount / 4 AS BIGINT) AS amount_bucket,
               epoch(o.order_ts) AS order_epoch,
               date_trunc('day', o.order_ts) AS order_day
        FROM {{ source('shop', 'orders') }} AS o
        LEFT JOIN {{ source('shop', 'customers') }} AS c USING (customer_id)
        """,
    "features/entities.yml": """
        entities:
          - name: customer
            join_keys: [customer_id]
        """,
    "features/customer_orders.yml": """
        feature_view:
          name: customer_orders
          entities: [customer]
          timestamp: order_ts
          freshness: 30d
          features:
            - name: amount
              type: float64
              tests: [{max_null_fraction: 0.5}]
            - name: country
              type: string
            - name: amount_bucket
              type: int64
        """,
    "features/customer_orders.sql": """
        SELECT customer_id, order_ts, amount, country, amount_bucket
        FROM {{ ref('orders_enriched') }}
        """,
}


def _project(root: Path, files: dict[str, str] | None = None, profile: bool = True
             ) -> fsql.Project:
    _data(root)
    write_files(root, {"fsql_project.yml": "name: sparky\n", **FILES, **(files or {})})
    if profile:
        write_files(root, {"profiles.yml": spark_profile("sparky")})
    return fsql.Project(root)


def test_compile_on_spark_writes_spark_sql(spark: Any, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    compiled = project.compile()
    assert compiled.dialect == "spark"
    node = compiled.nodes["model:orders_enriched"]
    assert {c.name: c.dtype.sql("duckdb") for c in node.columns} == {
        "order_id": "BIGINT", "customer_id": "BIGINT", "order_ts": "TIMESTAMP",
        "amount": "DOUBLE", "quantity": "INT", "country": "TEXT", "amount_bucket": "BIGINT",
        "order_epoch": "DOUBLE", "order_day": "TIMESTAMP"}
    text = node.query.sql("spark")
    assert "BROUND" in text.upper() and "UNIX_MICROS" in text.upper()


def test_model_contents_equal_duckdb(spark: Any, tmp_path: Path) -> None:
    """The same model, compiled and run on both engines, gives the same rows and types."""
    on_spark = _project(tmp_path / "s")
    on_duck = _project(tmp_path / "d", profile=False)
    tables = [p.preview("orders_enriched", 100) for p in (on_spark, on_duck)]
    assert tables[0]["columns"] == tables[1]["columns"]
    rows = [sorted(json.dumps(r, default=repr) for r in t["rows"]) for t in tables]
    assert rows[0] == rows[1]
    assert len(rows[0]) == 40


@pytest.mark.parametrize("line,sql,named", [
    (3, "SELECT customer_id, order_ts\nFROM {{ ref('orders_enriched') }}\n"
        "QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY order_ts) = 1",
     "QUALIFY"),
    (2, "SELECT customer_id,\n  round(amount, 1) AS r\nFROM {{ ref('orders_enriched') }}",
     "ROUND of a DOUBLE"),
])
def test_refused_construct_names_file_and_line(spark: Any, tmp_path: Path, line: int, sql: str,
                                               named: str) -> None:
    project = _project(tmp_path / "p", {"models/bad.sql": sql})
    with pytest.raises(fsql.DefinitionError) as info:
        project.compile()
    message = str(info.value)
    assert f"models/bad.sql:{line}" in message, message
    assert named in message and "on Spark" in message


def test_build_publishes_relations_and_runs_data_tests(spark: Any, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    result = project.build()
    assert {n for n, _, _ in result.relations} == {
        "source:shop.orders", "source:shop.customers", "model:orders_enriched",
        "view:customer_orders"}
    assert dict((n, m) for n, m, _ in result.relations)["model:orders_enriched"] == "table"
    results = project.test()
    assert results and all(r.status == "pass" for r in results)
    # the table's Parquet copy is the only one left in the warehouse after the build
    copies = list((tmp_path / "p" / "target" / "spark-warehouse" / "fsql_tables").iterdir())
    assert [c.name.rsplit("-", 1)[0] for c in copies] == ["orders_enriched"]


def test_failing_data_test_fails_the_build(spark: Any, tmp_path: Path) -> None:
    files = {"features/customer_orders.yml": FILES["features/customer_orders.yml"].replace(
        "max_null_fraction: 0.5", "max_null_fraction: 0.01")}
    project = _project(tmp_path / "p", files)
    with pytest.raises(fsql.FsqlError) as info:
        project.build()
    assert "customer_orders" in str(info.value)
    assert not project.paths.build_manifest.exists()


def test_freshness_and_diff(spark: Any, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    [fresh] = project.freshness(now=dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp())
    assert fresh.view == "customer_orders"
    last = T0 + dt.timedelta(hours=5 * 39, microseconds=39)
    assert fresh.newest_event == last.replace(tzinfo=dt.UTC).isoformat()  # to the microsecond
    assert not fresh.breached
    project.build()
    assert project.diff().get("build") == []
    sql = tmp_path / "p" / "features" / "customer_orders.sql"
    sql.write_text(sql.read_text().replace("amount_bucket", "amount_bucket + 1 AS "
                                           "amount_bucket"))
    changed = project.diff()["build"]
    assert any("customer_orders" in str(c) for c in changed)


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FSQL_PROFILES_DIR": str(root)}
    return subprocess.run([str(Path(sys.executable).parent / "fsql"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_cli_build_then_refusal(tmp_path: Path) -> None:
    """The real CLI in its own process (its own JVM): a build succeeds, then a refused
    construct fails compile with one clear line naming the file and line, no traceback."""
    root = tmp_path / "p"
    _project(root)
    done = _cli(root, "build")
    assert done.returncode == 0, done.stderr[-2000:]
    bad = root / "models" / "bad.sql"
    bad.write_text("SELECT customer_id,\n  now() AS at\nFROM {{ ref('orders_enriched') }}\n")
    done = _cli(root, "compile")
    assert done.returncode != 0
    assert "models/bad.sql:2" in done.stderr and "NOW()" in done.stderr
    assert "Traceback" not in done.stderr
