"""Time-window aggregations on Spark (``engines.spark.windows``) == DuckDB's
``windows.window_values`` == the brute-force reference (tests/pit/window_reference.py), on the
randomized rows of tests/pit/test_windows.py: every function (count, sum, avg, min, max, last)
over int64, float64 (quarter multiples: exact sums), decimal, string and timestamp columns,
windows from 10 minutes to 2 hours with several hops, created-time ties in ``last``, rows one
microsecond either side of the window's edges, both cutoffs, a hot entity, null keys and times,
duplicate points."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fsql
from tests.conftest import MakeProject
from tests.pit.test_pit_reference import CHECKS, same
from tests.pit.test_windows import (
    EDGE_COUNTS,
    NAMES,
    ROW,
    assert_same,
    edge_case,
    finish,
    project_files,
    reference,
    times,
    write,
)
from tests.spark.harness import Outputs, run_both


@pytest.fixture
def windows_project(make_project: MakeProject) -> fsql.Project:
    return make_project(project_files())


def both(project: fsql.Project, spark: Any, points: list[tuple[Any, Any]],
         cutoff: str) -> Outputs:
    spine = pa.table({"card": pa.array([c for c, _ in points], pa.int64()),
                      "t": pa.array([t for _, t in points], pa.timestamp("us"))})
    out = run_both(project, spark, spine, ["w"], "t", cutoff)
    assert all(not v for v in out.violations.values()), out.violations
    for i, (a, b) in enumerate(zip(out.spark, out.duckdb, strict=True)):
        bad = {c: (a[c], b[c]) for c in a if not same(a[c], b[c])}
        assert not bad, f"point {i} {points[i]}: spark vs duckdb {bad}\n{out.spark_sql}"
    return out


@pytest.mark.parametrize("cutoff", ["inclusive", "exclusive"])
@settings(CHECKS, max_examples=12)
@given(rows=st.lists(ROW, max_size=25),
       points=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, None]), times()), min_size=1,
                       max_size=12))
def test_spark_windows_equal_duckdb_and_the_reference(
        windows_project: fsql.Project, spark: Any, cutoff: str, rows: list[dict[str, Any]],
        points: list[tuple[Any, Any]]) -> None:
    rows = finish([dict(r) for r in rows])
    write(windows_project.root / "data" / "txns.parquet", rows)
    points += points[:2]  # duplicate points stay duplicates
    out = both(windows_project, spark, points, cutoff)
    for i, (got, (card, at)) in enumerate(zip(out.spark, points, strict=True)):
        assert_same({n: got[n] for n in NAMES}, reference(rows, card, at, cutoff),
                    f"point {i} ({card}, {at}, {cutoff})", rows)


def test_window_edges_by_hand(windows_project: fsql.Project, spark: Any) -> None:
    """n_10m (10 min, hop 5) as in tests/pit/test_windows.py: one row at 12:00, asked just
    before it, at it, at the window's start, one microsecond before leaving, and after."""
    points = edge_case(windows_project)
    for cutoff, counts in EDGE_COUNTS.items():
        out = both(windows_project, spark, points, cutoff)
        assert [row["n_10m"] for row in out.spark] == counts, cutoff
