"""Late materialization reads a view twice in one statement: once for the join (keys, times,
row identity) and once to fetch the chosen rows' features. If the two reads could disagree (a
source file rewritten between them), the query must fail, never hand over another row's values.

Both join paths giving the brute-force reference's values is checked in
``tests/pit/test_pit_reference.py``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

import fsql
from fsql.build import build
from fsql.compile import Compiler
from fsql.engines import connect
from fsql.engines.duckdb.engine import DuckDBEngine
from fsql.errors import EngineError
from fsql.pit import PitPlan
from tests.conftest import MakeProject, score_project

ROWS = 20
START = dt.datetime(2024, 5, 1)


@pytest.fixture
def project(make_project: MakeProject, tmp_path: Path) -> fsql.Project:
    """One entity with a row a minute (score = its minute), and a spine of one label after
    each row."""
    minutes = [START + dt.timedelta(minutes=m) for m in range(ROWS)]
    return score_project(make_project, tmp_path, pa.table({
        "user_id": pa.array([1] * ROWS, pa.int64()), "ts": pa.array(minutes, pa.timestamp("us")),
        "score": pa.array(range(ROWS), pa.int64())}), pa.table({
        "user_id": pa.array([1] * ROWS, pa.int64()),
        "ts": pa.array([m + dt.timedelta(seconds=30) for m in minutes], pa.timestamp("us"))}))


def with_rows(plan: PitPlan, identity: str) -> PitPlan:
    """``plan`` with view ``v`` read with ``identity`` as its row identity."""
    (join,) = plan.joins
    assert join.rows is not None  # a projection of a Parquet source: late materialization
    rows = join.rows.copy()
    rows.expressions[-1].set("this", sqlglot.parse_one(identity, "duckdb"))
    return replace(plan, joins=(replace(join, rows=rows),))


def test_a_chosen_row_the_second_read_does_not_find_fails_the_query(
        project: fsql.Project) -> None:
    """The second read numbers the rows afresh (a sequence): no chosen identity is found."""
    engine = connect(project.target.offline, str(project.root))
    assert isinstance(engine, DuckDBEngine)
    try:
        with engine.rollback_only():
            compiled = Compiler(project.load(), engine, paths=project.paths).compile()
            plan = compiled.training_sets["t"].plan
            strategy = engine.pit_strategy()
            # the real identity: each label gets the row of the minute before it
            out = engine.fetch_arrow(strategy.query(plan)).column("score").to_pylist()
            assert out == list(range(ROWS))
            engine.con.execute("CREATE SEQUENCE numbers")
            with pytest.raises(EngineError, match=(
                    "feature view 'v': a row the point-in-time join chose was not there when "
                    "its features were read; nothing was written")):
                engine.fetch_arrow(strategy.query(with_rows(plan, "nextval('numbers')")))
    finally:
        engine.close()


def test_a_source_file_rewritten_during_the_query_fails_it(project: fsql.Project,
                                                          tmp_path: Path) -> None:
    """A file replaced while the statement runs (the spine calls a function that replaces
    it, with its rows in reverse order: every row number then names another row) fails the
    query, in a notebook and in a build, and the build publishes nothing."""
    source = tmp_path / "f.parquet"
    original = pq.read_table(source)

    def replace_file() -> int:
        if pq.read_table(source).equals(original):
            pq.write_table(original.take(list(reversed(range(ROWS)))), tmp_path / "new.parquet")
            os.replace(tmp_path / "new.parquet", source)
        return 0

    engine = connect(project.target.offline, str(project.root))
    assert isinstance(engine, DuckDBEngine)
    engine.con.create_function("replace_file", replace_file, [], "BIGINT", side_effects=True)
    try:
        changed = "a source file changed while the query read it"
        with engine.rollback_only():
            compiled = Compiler(project.load(), engine, paths=project.paths).compile()
            ts = compiled.training_sets["t"]
            spine = exp.select("*").from_(ts.plan.spine.copy()).where("replace_file() = 0")
            ts = replace(ts, plan=replace(ts.plan, spine=spine.subquery()))
            ts = replace(ts, audit_query=engine.pit_strategy().query(
                replace(ts.plan, audit=True)))
            with pytest.raises(EngineError, match=changed):
                engine.fetch_arrow(engine.pit_strategy().query(ts.plan))
        pq.write_table(original, source)
        with pytest.raises(EngineError, match=changed):
            build(replace(compiled, training_sets=MappingProxyType({"t": ts})), engine)
    finally:
        engine.close()
    assert not (project.paths.training_sets / "t.parquet").exists()
