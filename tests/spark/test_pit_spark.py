"""Spark's ``UnionWindowJoin`` == DuckDB's ``AsofJoin`` == the brute-force reference
(tests/pit/reference.py), on the randomized data of tests/pit/test_pit_reference.py: ttl and
created-timestamp ties, event-time ties without a created time, composite keys over several
views, time zones around DST changes, both feature cutoffs, duplicate spine rows, null keys and
times. Every cell is compared: integers exactly, timestamps as instants to the microsecond,
nulls as nulls. The leakage guard, run on Spark's audited output, finds no violation.

Few examples per property (each runs Spark on small frames); the DuckDB suite covers the rules
in depth, this one that Spark gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fsql
from tests.conftest import MakeProject
from tests.pit.reference import ViewSpec
from tests.pit.test_pit_reference import (
    ACT_SCHEMA,
    ACT_YML,
    CHECKS,
    ENTITIES,
    NAIVE_SCHEMA,
    NAIVE_SPEC,
    NAIVE_YML,
    STOCK_SCHEMA,
    STOCK_YML,
    UI_SCHEMA,
    UI_YML,
    V_SCHEMA,
    V_SPEC,
    V_YML,
    W_SCHEMA,
    W_SPEC,
    W_YML,
    ZONED_SCHEMA,
    ZONED_SPEC,
    ZONED_YML,
    Row,
    assert_pit,
    late_spine,
    multi_case,
    same,
    spine_rows,
    user_spine,
    v_rows,
    view_rows,
    views_project,
    w_rows,
    write_parquet,
    write_parts,
    zoned_case,
    zoned_inputs,
)
from tests.spark.harness import Outputs, run_both

BOTH_CUTOFFS = pytest.mark.parametrize("cutoff", ["inclusive", "exclusive"])
SPARK_CHECKS = settings(CHECKS, max_examples=12)


def spine_table(rows: Sequence[Row], types: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in rows], dtype)
                     for name, dtype in types.items()})


def check(out: Outputs, spine: Sequence[Row], spine_ts: str,
          views: Sequence[tuple[ViewSpec, Sequence[Row]]], cutoff: str) -> None:
    """Spark's rows == DuckDB's rows cell by cell (where the rules leave no choice), Spark's
    rows satisfy the reference, and the leakage guard finds nothing."""
    assert len(out.spark) == len(out.duckdb) == len(spine)
    assert [r["__fsql_row"] for r in out.spark] == list(range(len(spine)))
    assert_pit(out.spark, spine, spine_ts, views, cutoff)
    assert all(not v for v in out.violations.values()), out.violations
    exact_ties = {name for spec, rows in views if _has_exact_ties(spec, rows)
                  for name in spec.features}
    for i, (a, b) in enumerate(zip(out.spark, out.duckdb, strict=True)):
        for column in a:
            if column not in exact_ties:  # tied rows: any one, as a whole (reference checks)
                assert same(a[column], b[column]), (i, column, a[column], b[column], out.spark_sql)


def _has_exact_ties(spec: ViewSpec, rows: Sequence[Row]) -> bool:
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = (*(row[k] for k in spec.keys), row[spec.timestamp],
               row[spec.created] if spec.created else None)
        if key in seen:
            return True
        seen.add(key)
    return False


#: every view of tests/pit/test_pit_reference.py, in one project: name -> (YAML, schema)
VIEWS = {"v": (V_YML, V_SCHEMA), "w": (W_YML, W_SCHEMA), "stock": (STOCK_YML, STOCK_SCHEMA),
         "ui": (UI_YML, UI_SCHEMA), "act": (ACT_YML, ACT_SCHEMA),
         "zoned": (ZONED_YML, ZONED_SCHEMA), "naive": (NAIVE_YML, NAIVE_SCHEMA)}


@pytest.fixture
def project(make_project: MakeProject) -> fsql.Project:
    """A project with all of ``VIEWS`` (entities user and item), each file empty until a test
    writes it; ``ui`` is a glob of files, as ``multi_case`` writes it."""
    made = views_project(make_project, ENTITIES, {n: yml for n, (yml, _) in VIEWS.items()},
                         globbed=["ui"])
    for name, (_, schema) in VIEWS.items():
        if name == "ui":
            write_parts(made.root / "data" / name, schema, [])
        else:
            write_parquet(made.root / "data" / f"{name}.parquet", schema, [])
    return made


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(data=st.data())
def test_ttl_created_ties_and_no_ttl(project: fsql.Project, spark: Any, data: st.DataObject,
                                     cutoff: str) -> None:
    v = data.draw(view_rows(v_rows, V_SPEC, max_size=25), "v rows")
    w = data.draw(view_rows(w_rows, W_SPEC), "w rows")
    views = [(V_SPEC, v), (W_SPEC, w)]
    spine = data.draw(spine_rows(user_spine, views, "ts"), "spine")
    write_parquet(project.root / "data" / "v.parquet", V_SCHEMA, v)
    write_parquet(project.root / "data" / "w.parquet", W_SCHEMA, w)
    table = spine_table(spine, {"user_id": pa.int64(), "ts": pa.timestamp("us"),
                                "label": pa.int64()})
    out = run_both(project, spark, table, ["v", "w"], "ts", cutoff)
    check(out, spine, "ts", views, cutoff)
    # v and w are on the same key: one stage, one union of spine, v and w rows
    assert out.spark_sql.count(" UNION ALL ") == 2, out.spark_sql


@SPARK_CHECKS
@given(data=st.data())
def test_no_ttl_any_age(project: fsql.Project, spark: Any, data: st.DataObject) -> None:
    w = data.draw(view_rows(w_rows, W_SPEC), "w rows")
    spine = data.draw(spine_rows(late_spine, [(W_SPEC, w)], "ts"), "spine")
    write_parquet(project.root / "data" / "w.parquet", W_SCHEMA, w)
    table = spine_table(spine, {"ts": pa.timestamp("us"), "user_id": pa.int64()})
    out = run_both(project, spark, table, ["w.tag", "w.n"], "ts")
    check(out, spine, "ts", [(W_SPEC, w)], "inclusive")


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(data=st.data())
def test_composite_keys_and_several_views(project: fsql.Project, spark: Any,
                                          data: st.DataObject, cutoff: str) -> None:
    views, spine = multi_case(project, data)
    table = spine_table(spine, {"sku": pa.int64(), "ts": pa.timestamp("us"),
                                "shop": pa.string(), "user_id": pa.int64()})
    out = run_both(project, spark, table, ["ui", "stock", "act"], "ts", cutoff)
    check(out, spine, "ts", views, cutoff)


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(case=zoned_case(),
       zone=st.sampled_from(["America/New_York", None, "Asia/Kolkata"]))
def test_time_zones_and_dst(project: fsql.Project, spark: Any,
                            case: tuple[list[Row], ...], zone: str | None, cutoff: str) -> None:
    zoned, naive, spine = zoned_inputs(project, case, zone)
    table = spine_table(spine, {"user_id": pa.int64(), "at": pa.timestamp("us", tz=zone)})
    out = run_both(project, spark, table, ["zoned", "naive"], "at", cutoff)
    check(out, spine, "at", [(ZONED_SPEC, zoned), (NAIVE_SPEC, naive)], cutoff)
