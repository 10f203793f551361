"""The build's leakage guard checks the joined result itself, so it catches a join strategy
that leaks future (or expired) rows, whatever strategy produced them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

import fsql
from fsql.build import build
from fsql.compile import Compiler
from fsql.engines import connect
from fsql.engines.duckdb.pit import AsofJoin
from fsql.errors import EngineError
from fsql.pit import PitPlan, ViewJoin
from tests.conftest import MakeProject, raw_sources, score_project

DAY = 86_400_000_000


class FutureLeakingJoin(AsofJoin):
    """A broken strategy: matches rows up to a day *after* the spine time."""

    @staticmethod
    def _condition(join: ViewJoin, alias: str, spine_ts: exp.Expr, common: exp.DataType,
                   exclusive: bool) -> exp.Expr:
        shifted = exp.Add(this=spine_ts, expression=exp.Interval(
            this=exp.Literal.string("1"), unit=exp.var("DAY")))
        return AsofJoin._condition(join, alias, shifted, common, exclusive)


class TtlIgnoringJoin(AsofJoin):
    """A broken strategy: forgets the ttl."""

    def query(self, plan: PitPlan) -> exp.Select:
        joins = tuple(replace(j, view=replace(j.view, ttl=None)) for j in plan.joins)
        return super().query(replace(plan, joins=joins))


@pytest.fixture
def project(make_project: MakeProject, tmp_path: Path) -> fsql.Project:
    ts = pa.timestamp("us")
    return score_project(make_project, tmp_path, pa.table({
        "user_id": pa.array([1, 1], pa.int64()), "ts": pa.array([10 * DAY, 12 * DAY], ts),
        "score": pa.array([1, 2], pa.int64())}), pa.table({
        "user_id": pa.array([1], pa.int64()), "ts": pa.array([11 * DAY + 1], ts)}))


@pytest.mark.parametrize("strategy", [FutureLeakingJoin, TtlIgnoringJoin])
def test_guard_fails_the_build_and_publishes_nothing(project: fsql.Project,
                                                     strategy: type[AsofJoin]) -> None:
    # the guard fails the write itself; its message, without the engine's prefix
    assert failed_build(project, strategy()) == (
        "training set 't': the leakage guard found rows joined outside [spine time - ttl, "
        "spine time] in view 'v'; nothing was published")


def failed_build(project: fsql.Project, strategy: AsofJoin) -> str:
    """The message of the build of ``project`` with ``strategy``; nothing was published."""
    engine = connect(project.target.offline, str(project.root))
    try:
        with engine.rollback_only():
            compiled = Compiler(project.load(), engine, strategy, paths=project.paths).compile()
        with pytest.raises(EngineError) as failed:
            build(compiled, engine)
    finally:
        engine.close()
    out = project.paths.training_sets
    assert not out.exists() or not any(out.iterdir())
    return str(failed.value)


def test_correct_build_records_the_guard(project: fsql.Project) -> None:
    import json

    result = project.build().training_sets[0]
    guard = json.loads(result.record.read_text())["leakage_guard"]
    assert guard == {"checked_rows": 1, "violations": {"v": 0},
                     "rule": "every joined row has spine_ts - ttl <= event_ts <= spine_ts"}


def test_guard_checks_every_row_and_names_the_leaking_view(make_project: MakeProject,
                                                           tmp_path: Path) -> None:
    """Many spine rows (several vectors for DuckDB); only the last one in the output's order,
    and only through view ``w`` (the one with a ttl), joins a row the strategy should not."""
    n = 5000
    ts = pa.timestamp("us")
    pq.write_table(pa.table({"user_id": pa.array([1, 2], pa.int64()),
                             "ts": pa.array([0, 0], ts),
                             "score": pa.array([1, 2], pa.int64())}), tmp_path / "f.parquet")
    # user 1: every spine time within the ttl of its row at 0, except the last one (user 2)
    pq.write_table(pa.table({"user_id": pa.array([1] * (n - 1) + [2], pa.int64()),
                             "ts": pa.array(list(range(1, n)) + [DAY], ts)}),
                   tmp_path / "s.parquet")
    view = """
        feature_view:
          entity: user
          timestamp: ts
          {ttl}
          features: [{{name: score, type: int64}}]
        """
    project = make_project({
        "models/sources.yml": raw_sources(f=tmp_path / "f.parquet", s=tmp_path / "s.parquet"),
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.yml": view.format(ttl=""),
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/w.yml": view.format(ttl="ttl: 1h"),
        "features/w.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/t.yml": """
            training_sets:
              - {name: t, spine: {source: raw.s, timestamp: ts}, features: [v, w],
                 naming: prefixed}
            """,
    })
    assert failed_build(project, TtlIgnoringJoin()).endswith(
        "joined outside [spine time - ttl, spine time] in view 'w'; nothing was published")
    # the same project with the real strategy builds, and its guard checked every row
    result = project.build().training_sets[0]
    assert result.rows == n
    assert pq.read_table(result.output).column("w__score").to_pylist() == [1] * (n - 1) + [None]
