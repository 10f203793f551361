"""Training sets on Spark through ``fsql.Project``: the build publishes a Parquet directory
atomically with its build record and leakage guard, equal to DuckDB's output, a failed
rebuild leaves the previous output intact, and ``historical_features`` equals DuckDB's."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import fsql
from tests.spark.test_project import FILES, T0, _project

TRAINING = {
    "models/labels.sql": """
        SELECT customer_id, order_ts + INTERVAL 1 HOUR AS label_ts, quantity > 1 AS label
        FROM {{ ref('orders_enriched') }}
        """,
    "features/training_sets.yml": """
        training_sets:
          - name: orders_training
            spine: {model: labels, timestamp: label_ts}
            features: [customer_orders]
        """,
}


def _rows(path: Path) -> list[str]:
    table = pq.read_table(path)
    return sorted(json.dumps(r, default=str) for r in table.to_pylist())


def test_build_equals_duckdb_and_publishes_a_directory(spark: Any, tmp_path: Path) -> None:
    on_spark = _project(tmp_path / "s", TRAINING)
    on_duck = _project(tmp_path / "d", TRAINING, profile=False)
    [built] = on_spark.build().training_sets
    [reference] = on_duck.build().training_sets
    assert built.output.is_dir() and reference.output.is_file()
    assert built.rows == reference.rows == 40
    assert pq.read_table(built.output).schema.types == pq.read_table(
        reference.output).schema.types
    assert _rows(built.output) == _rows(reference.output)
    record = json.loads(built.record.read_text())
    assert record["rows"] == 40 and record["leakage_guard"]["checked_rows"] == 40
    assert not any(record["leakage_guard"]["violations"].values())
    assert sorted(p.name for p in built.output.parent.iterdir()) == [
        "orders_training.build.json", "orders_training.parquet"]
    assert on_spark.training_set("orders_training").shape == (40, 6)


def test_failed_rebuild_keeps_previous_directory(spark: Any, tmp_path: Path) -> None:
    project = _project(tmp_path / "p", TRAINING)
    [first] = project.build().training_sets
    before = _rows(first.output), first.record.read_text()
    sql = tmp_path / "p" / "features" / "customer_orders.sql"
    sql.write_text(FILES["features/customer_orders.sql"].replace(
        "amount_bucket", "amount_bucket * 4611686018427387904 AS amount_bucket"))  # overflows
    with pytest.raises(fsql.EngineError):
        project.build()
    assert (_rows(first.output), first.record.read_text()) == before
    assert sorted(p.name for p in first.output.parent.iterdir()) == [
        "orders_training.build.json", "orders_training.parquet"]


def test_historical_features_equal_duckdb(spark: Any, tmp_path: Path) -> None:
    spine = pd.DataFrame({
        "customer_id": pd.array([0, 3, 3, 6, 99, None], "Int64"),
        "at": [T0 + dt.timedelta(hours=h) for h in (0, 16, 200, 11, 5, 5)],
    })
    frames = [_project(tmp_path / name, profile=name == "s").historical_features(
        spine, ["customer_orders"], timestamp="at") for name in ("s", "d")]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0]["amount"].notna().sum() >= 2
