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
    ACT_SPEC,
    ACT_YML,
    CHECKS,
    ENTITIES,
    NAIVE_SCHEMA,
    NAIVE_SPEC,
    NAIVE_YML,
    STOCK_SCHEMA,
    STOCK_SPEC,
    STOCK_YML,
    UI_SCHEMA,
    UI_SPEC,
    UI_YML,
    USER,
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
    act_rows,
    assert_pit,
    in_zone,
    late_spine,
    multi_spine,
    same,
    spine_rows,
    stock_rows,
    ui_rows,
    user_spine,
    v_rows,
    view_rows,
    views_project,
    w_rows,
    write_parquet,
    zoned_case,
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


@pytest.fixture
def single_view(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"v": V_YML, "w": W_YML})


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(data=st.data())
def test_ttl_created_ties_and_no_ttl(single_view: fsql.Project, spark: Any, data: st.DataObject,
                                     cutoff: str) -> None:
    v = data.draw(view_rows(v_rows, V_SPEC, max_size=25), "v rows")
    w = data.draw(view_rows(w_rows, W_SPEC), "w rows")
    views = [(V_SPEC, v), (W_SPEC, w)]
    spine = data.draw(spine_rows(user_spine, views, "ts"), "spine")
    write_parquet(single_view.root / "data" / "v.parquet", V_SCHEMA, v)
    write_parquet(single_view.root / "data" / "w.parquet", W_SCHEMA, w)
    table = spine_table(spine, {"user_id": pa.int64(), "ts": pa.timestamp("us"),
                                "label": pa.int64()})
    out = run_both(single_view, spark, table, ["v", "w"], "ts", cutoff)
    check(out, spine, "ts", views, cutoff)


@pytest.fixture
def late_view(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"w": W_YML})


@SPARK_CHECKS
@given(data=st.data())
def test_no_ttl_any_age(late_view: fsql.Project, spark: Any, data: st.DataObject) -> None:
    w = data.draw(view_rows(w_rows, W_SPEC), "w rows")
    spine = data.draw(spine_rows(late_spine, [(W_SPEC, w)], "ts"), "spine")
    write_parquet(late_view.root / "data" / "w.parquet", W_SCHEMA, w)
    table = spine_table(spine, {"ts": pa.timestamp("us"), "user_id": pa.int64()})
    out = run_both(late_view, spark, table, ["w.tag", "w.n"], "ts")
    check(out, spine, "ts", [(W_SPEC, w)], "inclusive")


@pytest.fixture
def multi_view(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, ENTITIES,
                         {"stock": STOCK_YML, "ui": UI_YML, "act": ACT_YML})


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(data=st.data())
def test_composite_keys_and_several_views(multi_view: fsql.Project, spark: Any,
                                          data: st.DataObject, cutoff: str) -> None:
    stock = data.draw(view_rows(stock_rows, STOCK_SPEC), "stock rows")
    ui = data.draw(view_rows(ui_rows, UI_SPEC), "ui rows")
    act = data.draw(view_rows(act_rows, ACT_SPEC, max_size=12), "act rows")
    views = [(STOCK_SPEC, stock), (UI_SPEC, ui), (ACT_SPEC, act)]
    spine = data.draw(spine_rows(multi_spine, views, "ts", max_size=15), "spine")
    for name, schema, rows in (("stock", STOCK_SCHEMA, stock), ("ui", UI_SCHEMA, ui),
                               ("act", ACT_SCHEMA, act)):
        write_parquet(multi_view.root / "data" / f"{name}.parquet", schema, rows)
    table = spine_table(spine, {"sku": pa.int64(), "ts": pa.timestamp("us"),
                                "shop": pa.string(), "user_id": pa.int64()})
    out = run_both(multi_view, spark, table, ["ui", "stock", "act"], "ts", cutoff)
    check(out, spine, "ts", views, cutoff)


@pytest.fixture
def zoned_views(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"zoned": ZONED_YML, "naive": NAIVE_YML})


@BOTH_CUTOFFS
@SPARK_CHECKS
@given(case=zoned_case(),
       zone=st.sampled_from(["America/New_York", None, "Asia/Kolkata"]))
def test_time_zones_and_dst(zoned_views: fsql.Project, spark: Any,
                            case: tuple[list[Row], ...], zone: str | None, cutoff: str) -> None:
    zoned = [{**r, "ts": in_zone(r["ts"], "Asia/Kolkata"), "created": in_zone(r["created"], None)}
             for r in case[0]]
    naive = [{**r, "ts": in_zone(r["ts"], None)} for r in case[1]]
    spine = [{**r, "at": in_zone(r["at"], zone)} for r in case[2]]
    write_parquet(zoned_views.root / "data" / "zoned.parquet", ZONED_SCHEMA, zoned)
    write_parquet(zoned_views.root / "data" / "naive.parquet", NAIVE_SCHEMA, naive)
    table = spine_table(spine, {"user_id": pa.int64(), "at": pa.timestamp("us", tz=zone)})
    out = run_both(zoned_views, spark, table, ["zoned", "naive"], "at", cutoff)
    check(out, spine, "at", [(ZONED_SPEC, zoned), (NAIVE_SPEC, naive)], cutoff)
