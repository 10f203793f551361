"""``feature_cutoff: exclusive`` at its edges, written out by hand (the randomized properties in
test_pit_reference.py cover both cutoffs broadly; these name each edge once).

One user, one view with a created timestamp and a 1h ttl. Spine rows sit exactly on a view row,
a microsecond either side of it, and exactly at the ttl edge, so each cutoff's answer differs
where the rule says it should.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

import fsql
from fsql.build import build
from fsql.compile import Compiler
from fsql.engines import connect
from fsql.engines.duckdb.pit import AsofJoin
from fsql.errors import EngineError, RequestError
from fsql.pit import ViewJoin
from tests.conftest import MakeProject, raw_sources

NOON = dt.datetime(2024, 5, 1, 12, 0)
US = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)

#: (ts, created, score): two rows at noon tie on event time (the greater created time, 2, wins),
#: one at 11:00, one a microsecond after noon with no created time, one at 14:00
ROWS = [(NOON - HOUR, NOON - HOUR, 0), (NOON, NOON - HOUR, 1), (NOON, NOON, 2),
        (NOON + US, None, 3), (NOON + 2 * HOUR, None, 4)]
#: spine time -> score (inclusive, exclusive)
EXPECTED = {
    NOON - US: (0, 0),                # the 11:00 row, a microsecond inside its ttl
    NOON: (2, 0),                     # the noon tie, by created time / the 11:00 row exactly
                                      # at the ttl edge (spine - ttl == event counts)
    NOON + US: (3, 2),                # the row at the spine time (null created) / the noon tie
    NOON + HOUR + US: (3, 3),         # the 12:00:00.000001 row, exactly at the ttl edge
    NOON + HOUR + 2 * US: (None, None),  # the latest row is past the ttl: nothing
    NOON + 2 * HOUR: (4, None),       # the row at the spine time / the one before it is past
                                      # the ttl, and an older row is never used instead
}

TRAINING_YML = """
    training_sets:
      - {name: t_in, spine: {source: raw.s, timestamp: ts}, features: [v]}
      - name: t_ex
        spine: {source: raw.s, timestamp: ts}
        features: [v]
        feature_cutoff: exclusive
    """


@pytest.fixture
def project(make_project: MakeProject, tmp_path: Path) -> fsql.Project:
    ts = pa.timestamp("us")
    pq.write_table(pa.table({
        "user_id": pa.array([1] * len(ROWS), pa.int64()),
        "ts": pa.array([r[0] for r in ROWS], ts), "created": pa.array([r[1] for r in ROWS], ts),
        "score": pa.array([r[2] for r in ROWS], pa.int64())}), tmp_path / "f.parquet")
    pq.write_table(pa.table({"user_id": pa.array([1] * len(EXPECTED), pa.int64()),
                             "ts": pa.array(list(EXPECTED), ts)}), tmp_path / "s.parquet")
    return make_project({
        "models/sources.yml": raw_sources(f=tmp_path / "f.parquet",
                                          s=tmp_path / "s.parquet"),
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.yml": """
            feature_view:
              entity: user
              timestamp: ts
              created_timestamp: created
              ttl: 1h
              features: [{name: score, type: int64}]
            """,
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/t.yml": TRAINING_YML,
    })


def scores(frame: pd.DataFrame) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in frame["score"]]


def spine() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1] * len(EXPECTED),
                         "ts": pd.Series(list(EXPECTED)).astype("datetime64[us]")})


@pytest.mark.parametrize(("cutoff", "column"), [("inclusive", 0), ("exclusive", 1)])
def test_edges_by_historical_features(project: fsql.Project, cutoff: str, column: int) -> None:
    out = project.historical_features(spine(), ["v"], timestamp="ts",
                                      feature_cutoff=cutoff)  # type: ignore[arg-type]
    assert scores(out) == [e[column] for e in EXPECTED.values()]


def test_training_set_cutoff_is_the_default_and_can_be_overridden(project: fsql.Project) -> None:
    assert scores(project.historical_features(spine(), "t_ex")) == [
        e[1] for e in EXPECTED.values()]
    assert scores(project.historical_features(spine(), "t_in")) == [
        e[0] for e in EXPECTED.values()]
    assert scores(project.historical_features(spine(), "t_ex", feature_cutoff="inclusive")) == [
        e[0] for e in EXPECTED.values()]


def test_bad_cutoff_argument_is_a_request_error(project: fsql.Project) -> None:
    with pytest.raises(RequestError, match="feature_cutoff must be 'inclusive' or 'exclusive', "
                                           "not 'before'"):
        project.historical_features(spine(), ["v"], timestamp="ts",
                                    feature_cutoff="before")  # type: ignore[arg-type]


def test_build_writes_both_and_records_the_cutoff(project: fsql.Project) -> None:
    results = {r.name: r for r in project.build().training_sets}
    for name, column, cutoff, upper in [("t_in", 0, "inclusive", "<="),
                                        ("t_ex", 1, "exclusive", "<")]:
        table = pq.read_table(results[name].output).to_pydict()
        assert table["score"] == [e[column] for e in EXPECTED.values()], name
        record = json.loads(results[name].record.read_text())
        assert record["feature_cutoff"] == cutoff
        assert record["leakage_guard"] == {
            "checked_rows": len(EXPECTED), "violations": {"v": 0},
            "rule": f"every joined row has spine_ts - ttl <= event_ts {upper} spine_ts"}


def test_manifest_names_the_cutoff(project: fsql.Project) -> None:
    project.compile()
    manifest = json.loads(project.paths.manifest.read_text())
    assert {name: ts["feature_cutoff"] for name, ts in manifest["training_sets"].items()} == {
        "t_in": "inclusive", "t_ex": "exclusive"}


class CutoffIgnoringJoin(AsofJoin):
    """A broken strategy: always joins inclusively, whatever the plan says."""

    @staticmethod
    def _condition(join: ViewJoin, alias: str, spine_ts: exp.Expr, common: exp.DataType,
                   exclusive: bool) -> exp.Expr:
        return AsofJoin._condition(join, alias, spine_ts, common, False)


def test_guard_catches_a_row_at_the_spine_time_in_an_exclusive_set(
        project: fsql.Project) -> None:
    engine = connect(project.target.offline, str(project.root))
    try:
        with engine.rollback_only():
            compiled = Compiler(project.load(), engine, CutoffIgnoringJoin(),
                                paths=project.paths).compile()
        with pytest.raises(EngineError, match=r"'t_ex': the leakage guard found rows joined "
                                              r"outside \[spine time - ttl, spine time\) "
                                              r"in view 'v'; nothing was published"):
            build(compiled, engine)
    finally:
        engine.close()
    out = project.paths.training_sets
    assert not (out / "t_ex.parquet").exists()
