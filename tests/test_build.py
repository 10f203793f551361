"""`fsql build` end to end on the example project: outputs, build record, atomicity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql


@pytest.fixture
def project(example_dir: Path) -> fsql.Project:
    return fsql.Project(example_dir)


def test_build_writes_parquet_record_and_view(project: fsql.Project) -> None:
    result = project.build()
    names = {t.name for t in result.training_sets}
    assert names == {"churn_training", "purchase_training"}
    churn = next(t for t in result.training_sets if t.name == "churn_training")
    table = pq.read_table(churn.output)
    assert table.num_rows == churn.rows == 2000 * 11  # customers x months
    assert table.column_names == ["customer_id", "label_ts", "churned", "orders_30d",
                                  "spend_30d", "avg_amount_30d", "last_category", "segment",
                                  "credit_limit"]
    record = json.loads(churn.record.read_text())
    assert record["rows"] == churn.rows
    assert record["training_set"] == "churn_training"
    assert set(record["definitions"]) >= {"view:customer_orders", "view:customer_profile",
                                          "model:churn_labels", "model:orders_enriched"}
    assert "ASOF LEFT JOIN" in record["compiled_sql"]
    assert record["spine"]["time_range"] == ["2024-02-01 00:00:00", "2024-12-01 00:00:00"]
    # the DuckDB view over the published file answers like the file
    import duckdb

    con = duckdb.connect(str(project.target.offline.path), read_only=True)
    try:
        count = con.execute("SELECT count(*) FROM churn_training").fetchone()
    finally:
        con.close()
    assert count == (churn.rows,)


def test_built_file_equals_training_set_api(project: fsql.Project) -> None:
    result = project.build(select=["churn_training"])
    assert [t.name for t in result.training_sets] == ["churn_training"]
    built = pq.read_table(result.training_sets[0].output)
    fresh = project.training_set_arrow("churn_training", rebuild=True)
    assert built.schema.types == fresh.schema.types  # nullability flags may differ
    # window sums of floats add the same numbers, grouped as each plan's row order has them:
    # equal to rounding (README rule 9), every other value exactly
    floats = {f.name for f in built.schema if pa.types.is_floating(f.type)}
    assert floats == {"spend_30d", "avg_amount_30d"}
    got, wanted = built.to_pydict(), fresh.to_pydict()
    assert {k: v for k, v in got.items() if k not in floats} == \
        {k: v for k, v in wanted.items() if k not in floats}
    for name in floats:
        assert [v is None for v in got[name]] == [v is None for v in wanted[name]]
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in
                   zip(got[name], wanted[name], strict=True) if a is not None)


def test_output_is_sorted_by_spine_time_then_keys(project: fsql.Project) -> None:
    frame = project.build(select=["purchase_training"]).training_sets[0]
    df = pq.read_table(frame.output).to_pandas()
    keys = ["label_ts", "customer_id", "product_id", "purchased"]
    assert df[keys].equals(df[keys].sort_values(keys, kind="stable").reset_index(drop=True))


def test_failed_build_leaves_previous_outputs_intact(project: fsql.Project) -> None:
    first = project.build()
    churn = next(t for t in first.training_sets if t.name == "churn_training")
    before = churn.output.read_bytes(), churn.record.read_text()
    # Valid SQL that fails only while running: the cast errors on real rows.
    sql = project.root / "features" / "customer_profile.sql"
    sql.write_text(sql.read_text().replace(
        "s.credit_limit,", "CAST(CAST(s.credit_limit AS VARCHAR) || 'x' AS BIGINT) "
        "AS credit_limit,"))
    with pytest.raises(fsql.EngineError):
        project.build()
    assert (churn.output.read_bytes(), churn.record.read_text()) == before
    leftovers = [p.name for p in churn.output.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # the engine's views still hold the previous, working definitions
    import duckdb

    con = duckdb.connect(str(project.target.offline.path), read_only=True)
    try:
        assert con.execute("SELECT count(credit_limit) FROM customer_profile").fetchone()[0] > 0
    finally:
        con.close()


def test_build_is_deterministic(project: fsql.Project) -> None:
    first = pq.read_table(project.build(select=["churn_training"]).training_sets[0].output)
    second = pq.read_table(project.build(select=["churn_training"]).training_sets[0].output)
    assert first.equals(second)


def test_compile_writes_manifest_and_sql(project: fsql.Project) -> None:
    project.compile()
    target = project.paths.base
    manifest = json.loads(project.paths.manifest.read_text())
    assert manifest["project"] == "shop"
    assert manifest["nodes"]["view:customer_orders"]["features"]["orders_30d"] == (
        "int64 = count(*) over 30d hop 1d")
    assert manifest["nodes"]["view:customer_orders"]["aggregated"]["spend_30d"] == "amount"
    assert manifest["nodes"]["view:customer_profile"]["features"]["segment"] == "string"
    assert (target / "compiled" / "training_set" / "churn_training.sql").read_text().startswith(
        "SELECT")
    assert (target / "compiled" / "view" / "customer_orders.sql").is_file()
