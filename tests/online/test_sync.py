"""fsql sync + online retrieval against a real redis-server and a real Redis Cluster (the tests
taking ``store_url`` run on both), checked against brute force."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from fsql.errors import CheckFailed, LockHeldError, StaleDefinitionError
from tests.conftest import MakeProject, online_profile, raw_sources
from tests.online.reference import close, latest_rows, view_rows, window_rows
from tests.online.scores import (
    VIEW_FILES,
    Score,
    get_scores,
    scores_project,
    utc_now,
    write_scores,
)
from tests.redis_server import RedisServer

ONLINE_VIEWS = ["customer_orders", "customer_product", "customer_profile", "product_ratings"]


@pytest.fixture
def online_example(online_template: Path, tmp_path: Path, store_url: str) -> fsql.Project:
    """``tests.conftest.online_example``, on each store (``store_url``)."""
    import shutil

    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", store_url))
    return fsql.Project(root)


@pytest.mark.parametrize("view_name", ONLINE_VIEWS)
def test_sync_then_get_equals_brute_force(online_example: fsql.Project, view_name: str) -> None:
    now = time.time()
    result = online_example.sync(select=[view_name], now=now)
    assert [v.view for v in result.views] == [view_name]
    spec = online_example.load()
    view = spec.views[view_name]
    keys = [k for e in view.entities for k in spec.entities[e].join_keys]
    rows = view_rows(online_example, view_name)
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if view.aggregations:  # values at the sync and ten minutes later: the read is in between
        expected = window_rows(rows, view, keys, [moment, moment + dt.timedelta(minutes=10)])
    else:
        expected = latest_rows(rows, keys, view.timestamp, view.created_timestamp,
                               view.ttl.seconds if view.ttl else None, moment)
    entities = sorted({tuple(r[k] for k in keys) for r in rows if None not in
                       (r[k] for k in keys)})[:1500]
    entities.append(tuple(10**9 + i for i in range(len(keys))))  # never seen
    present = 0
    service = online_example.online_service(max_entities=5000)
    try:
        got = service.get([view_name], {k: [e[i] for e in entities] for i, k in enumerate(keys)})
    finally:
        service.store.close()
    names = [f.name for f in view.features]
    for i, entity in enumerate(entities):
        values = [got.values[n][i] for n in names]
        statuses = {got.statuses[n][i] for n in names}
        choices = expected.get(entity)
        if choices is None and view.aggregations:  # an empty window: a value like any other
            assert statuses == {"PRESENT"}, entity
            assert values == [0 if f.aggregation and f.aggregation.function == "count"
                              else None for f in view.features], entity
            continue
        if choices is None:
            assert values == [None] * len(names), entity
            assert statuses <= {"MISSING", "EXPIRED"}
            continue
        present += 1
        assert statuses == {"PRESENT"}, entity
        assert any(all(close(v, c[n]) for v, n in zip(values, names, strict=True))
                   for c in choices), (entity, values, choices)
    assert present > 0


def test_rerun_is_idempotent_and_incremental(online_example: fsql.Project) -> None:
    first = online_example.sync()
    assert {v.mode for v in first.views} == {"full"}
    second = online_example.sync()
    assert {v.mode for v in second.views} == {"incremental"}
    assert sum(v.written for v in second.views) == 0


def test_full_refresh_replaces_generation(online_example: fsql.Project) -> None:
    online_example.sync(select=["customer_profile"])
    before = online_example.online_features(["customer_profile"], {"customer_id": [1, 2, 3]})
    again = online_example.sync(select=["customer_profile"], full_refresh=True)
    assert again.views[0].mode == "full" and again.views[0].dropped == 2000
    after = online_example.online_features(["customer_profile"], {"customer_id": [1, 2, 3]})
    assert before.to_dict() == after.to_dict()


def test_lock_held_then_released(online_example: fsql.Project) -> None:
    store = online_example.store()
    try:
        token = store.acquire().value
        with pytest.raises(LockHeldError, match="another fsql sync is running"):
            online_example.sync()
        store.release_lock(token)
    finally:
        store.close()
    assert online_example.sync().views


def test_stale_lock_is_recovered_after_timeout(online_template: Path, tmp_path: Path,
                                               store_url: str) -> None:
    import shutil

    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", store_url, lock_timeout=30))
    project = fsql.Project(root)
    store = project.store()
    store.acquire()  # a run that "crashed": nobody releases it
    # the lock carries lock_timeout as its expiry, so it cannot outlive a crashed run by more
    assert 29_000 < store.client.pttl(store.lock_key) <= 30_000
    with pytest.raises(LockHeldError):
        project.sync(select=["customer_profile"])
    store.client.pexpire(store.lock_key, 1)  # 30 s later (without waiting for them)
    time.sleep(0.01)
    store.close()
    assert project.sync(select=["customer_profile"]).views[0].written == 2000


# -- a small project whose source we rewrite between syncs ----------------------------------

@pytest.fixture
def scores(make_project: MakeProject, store_url: str, tmp_path: Path
           ) -> tuple[fsql.Project, Path]:
    data = tmp_path / "scores.parquet"
    return scores_project(make_project, data, store_url, batch_size=7), data


def test_incremental_new_rows_and_late_rows(scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    t0 = utc_now() - dt.timedelta(minutes=30)
    base = [(u, t0, t0, u * 10, "v1") for u in range(1, 51)]
    write_scores(data, base)
    first = project.sync()
    assert (first.views[0].mode, first.views[0].written) == ("full", 50)
    # one newer row for user 1, and a late row for user 2 (older event, ingested now)
    t1 = t0 + dt.timedelta(minutes=10)
    late = (2, t0 - dt.timedelta(minutes=5), utc_now(), -1, "late")
    write_scores(data, base + [(1, t1, t1, 999, "v2"), late])
    second = project.sync().views[0]
    assert second.mode == "incremental"
    assert second.entities == 2  # only the two new rows were read
    assert second.written == 1 and second.stale == 1  # the late row lost to the newer value
    got = get_scores(project, [1, 2, 3])
    assert got["score"] == [999, 20, 30]
    assert got["label"] == ["v2", "v1", "v1"]


def test_correction_with_later_created_timestamp_wins(scores: tuple[fsql.Project, Path]
                                                      ) -> None:
    project, data = scores
    t0 = utc_now() - dt.timedelta(minutes=30)
    write_scores(data, [(1, t0, t0, 1, "first")])
    project.sync()
    fixed = t0 + dt.timedelta(minutes=1)
    write_scores(data, [(1, t0, t0, 1, "first"), (1, t0, fixed, 2, "fixed"),
                        (1, t0, None, 3, "no created ts loses")])
    assert project.sync().views[0].written == 1
    assert get_scores(project, [1])["label"] == ["fixed"]


def test_guard_never_writes_older_over_newer(scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    t0 = utc_now() - dt.timedelta(minutes=30)
    write_scores(data, [(1, t0, t0, 1, "new")])
    project.sync()
    # the source loses its newest row (say, a bad re-export): a full refresh writes a new
    # generation, but an incremental run must never move user 1 back in time
    write_scores(data, [(1, t0 - dt.timedelta(minutes=20), utc_now(), 0, "old")])
    view = project.sync().views[0]
    assert view.stale == 1 and view.written == 0
    assert get_scores(project, [1])["label"] == ["new"]


def test_ttl_expiry_with_controllable_clock(scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    now = utc_now()
    write_scores(data, [(1, now - dt.timedelta(minutes=119), now, 1, "fresh"),
                        (2, now - dt.timedelta(hours=3), now, 2, "too old")])
    synced = project.sync().views[0]
    assert synced.entities == 1  # user 2 is beyond the 2h ttl already: never written
    service = project.online_service()
    try:
        got = service.get(["scores"], {"user_id": [1, 2]})
        assert got.statuses["score"] == ["PRESENT", "MISSING"]
        service.clock = lambda: time.time() + 120  # two minutes later user 1 has expired
        later = service.get(["scores"], {"user_id": [1, 2]})
        assert later.statuses["score"] == ["EXPIRED", "MISSING"]
        assert later.values["score"] == [None, None]
        # and Redis drops the key itself a grace of min(ttl, 1 day) after event time + ttl
        layout = service._layouts["scores"]
        ttl_ms = service.store.client.pttl(service.store.entity_key(
            layout, service.store.meta(layout)["generation"], (1,)))
        assert 7_200_000 < ttl_ms <= 7_200_000 + 60_000 + 1000
    finally:
        service.store.close()


def test_definition_change_is_refused_then_refreshed(scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    t0 = utc_now() - dt.timedelta(minutes=30)
    write_scores(data, [(1, t0, t0, 7, "a")])
    project.sync()
    yml = project.root / "features" / "scores.yml"
    yml.write_text(yml.read_text().replace("{name: score, type: int64}",
                                           "{name: score, type: float64}"))
    sql = project.root / "features" / "scores.sql"
    sql.write_text(sql.read_text().replace("score,", "CAST(score AS DOUBLE) AS score,"))
    with pytest.raises(StaleDefinitionError, match="score of view 'scores' are not in the "
                       "online data with their defined type"):
        project.online_features(["scores"], {"user_id": [1]})
    with pytest.raises(fsql.CheckFailed,
                       match=r"(?s)breaking changes.*score: type int64 -> float64"):
        project.sync()
    assert project.sync(full_refresh=True).views[0].mode == "full"
    assert get_scores(project, [1])["score"] == [7.0]


def test_bad_requests(scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    write_scores(data, [(1, utc_now(), utc_now(), 7, "a")])
    project.sync()
    with pytest.raises(fsql.RequestError, match="must be an integer"):
        project.online_features(["scores"], {"user_id": ["1"]})
    with pytest.raises(fsql.RequestError, match="missing entity key column"):
        project.online_features(["scores"], {"customer_id": [1]})
    with pytest.raises(fsql.RequestError, match="has no feature 'nope'"):
        project.online_features(["scores.nope"], {"user_id": [1]})
    with pytest.raises(fsql.RequestError, match="too many entities"):
        project.online_features(["scores"], {"user_id": list(range(5000))})


def test_embedded_default_target(make_project: MakeProject, tmp_path: Path) -> None:
    data = tmp_path / "scores.parquet"
    project = make_project({**VIEW_FILES, "models/sources.yml": f"""
        sources:
          - name: raw
            tables:
              - name: scores
                path: {data}
        """})
    assert project.target.online.type == "embedded"
    write_scores(data, [(1, utc_now(), utc_now(), 5, "embedded")])
    assert project.sync().views[0].written == 1
    assert get_scores(project, [1])["label"] == ["embedded"]  # a new process would reconnect
    assert json.loads(json.dumps(project.online_features(["scores"], {"user_id": [1]})
                                 .to_json()))["metadata"]["feature_names"] == ["user_id",
                                                                               "score", "label"]


def test_rows_without_created_timestamp_are_seen_incrementally(
        scores: tuple[fsql.Project, Path]) -> None:
    project, data = scores
    t0 = utc_now() - dt.timedelta(minutes=30)
    rows: list[Score] = [(1, t0, t0, 1, "first")]
    write_scores(data, rows)
    project.sync()
    # a newer event whose created timestamp is unknown: the watermark falls back to event time
    write_scores(data, rows + [(1, t0 + dt.timedelta(minutes=5), None, 2, "no created ts")])
    view = project.sync().views[0]
    assert (view.mode, view.written) == ("incremental", 1)
    assert get_scores(project, [1])["label"] == ["no created ts"]


def test_the_gate_tests_only_the_views_with_something_to_write(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    scores_data, levels_data = tmp_path / "scores.parquet", tmp_path / "levels.parquet"
    project = make_project({
        **VIEW_FILES,
        "features/levels.yml": """
            feature_view:
              entity: user
              timestamp: ts
              online: true
              features:
                - {name: level, type: int64, tests: [{accepted_range: {min: 0}}]}
            """,
        "features/levels.sql": "SELECT user_id, ts, level FROM {{ source('raw', 'levels') }}\n",
        "models/sources.yml": raw_sources(scores=scores_data, levels=levels_data),
        "profiles.yml": online_profile("test", redis_server.url),
    })

    def write_levels(rows: list[tuple[int, dt.datetime, int]]) -> None:
        pq.write_table(pa.table({"user_id": pa.array([r[0] for r in rows], pa.int64()),
                                 "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
                                 "level": pa.array([r[2] for r in rows], pa.int64())}),
                       levels_data)

    t0 = utc_now() - dt.timedelta(minutes=30)
    t1 = t0 + dt.timedelta(minutes=10)
    write_scores(scores_data, [(1, t0, t0, 10, "a")])
    write_levels([(1, t0, -5)])  # fails its test
    with pytest.raises(CheckFailed, match="accepted_range"):
        project.sync()
    project.sync(test=False)
    write_scores(scores_data, [(1, t0, t0, 10, "a"), (1, t1, t1, 11, "b")])
    # levels has nothing new, so it changes nothing online: its failing test does not gate
    second = project.sync()
    assert {v.view: v.written for v in second.views} == {"levels": 0, "scores": 1}
    write_levels([(1, t0, -5), (2, t1, -6)])  # something to write again: gated again
    with pytest.raises(CheckFailed, match="accepted_range"):
        project.sync()
    assert get_scores(project, [1])["score"] == [11]
