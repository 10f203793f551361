"""``fsql sync`` from a Spark target writes from the executors: every partition of the latest
rows is written by its own Spark task (a Python worker, not the driver), counted in that task
attempt's own counters, which the driver folds into the run's before publishing.

Real parts only: the tests' local Spark session, redis-servers and a 3-master Redis Cluster
started by the tests. Online values are compared with the same sync from DuckDB and with the
brute-force reference (tests/online/reference.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fsql
from fsql.engines.spark.engine import SparkEngine
from fsql.online.partition import TaskWrites
from tests.conftest import MakeProject, online_profile
from tests.online.scores import VIEW_FILES, Score, get_scores, utc_now, write_scores
from tests.online.test_robustness import (
    assert_reference,
    control,
    meta,
    read_all,
    versioned,
    versions,
)
from tests.redis_server import RedisClusterServers, RedisServer

SPARK = "offline: {type: spark, master: 'local[2]'}"
ROOT = Path(__file__).resolve().parents[2]


def scores(make_project: MakeProject, data: Path, url: str, name: str, offline: str = SPARK,
           **online: object) -> fsql.Project:
    """The scores project (tests/online/scores.py) reading ``data``, on ``offline``."""
    return make_project({
        **VIEW_FILES,
        "models/sources.yml": f"sources:\n  - name: raw\n    tables:\n"
                              f"      - {{name: scores, path: {data}}}\n",
        "profiles.yml": online_profile(name, url, **online).replace(
            "offline: {type: duckdb}", offline)}, name=name)


def twins(make_project: MakeProject, tmp_path: Path, url: str, users: list[int],
          **online: object) -> tuple[Path, dt.datetime, list[Score], fsql.Project, fsql.Project]:
    """Version 1 of ``users`` in a scores file, and two scores projects reading it with their
    store at ``url`` (own namespaces): on Spark and on DuckDB. (data, base time, rows, the
    Spark project, the DuckDB project.)"""
    data = tmp_path / "scores.parquet"
    base = utc_now() - dt.timedelta(minutes=30)
    v1 = versioned(users, 1, base)
    write_scores(data, v1)
    return (data, base, v1, scores(make_project, data, url, "spark", SPARK, **online),
            scores(make_project, data, url, "duck", "offline: {type: duckdb}", **online))


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> list[TaskWrites]:
    """Every task result the Spark engine hands back to the sync (observed, not altered); the
    driver may not collect the rows themselves (``fetch_batches``)."""
    seen: list[TaskWrites] = []
    write = SparkEngine.write_partitions

    def observed(self: SparkEngine, *args: Any) -> list[Any]:
        results: list[Any] = write(self, *args)
        seen.extend(results)
        return results

    def refused(*_: Any) -> Iterator[Any]:
        raise AssertionError("the driver collected the rows to write")

    monkeypatch.setattr(SparkEngine, "write_partitions", observed)
    monkeypatch.setattr(SparkEngine, "fetch_batches", refused)
    return seen


def test_partitions_are_written_by_executor_tasks_and_equal_duckdb(
        spark: Any, make_project: MakeProject, tmp_path: Path, redis_server: RedisServer,
        tasks: list[TaskWrites]) -> None:
    users = list(range(400))
    data, base, v1, on_spark, on_duck = twins(make_project, tmp_path, redis_server.url, users,
                                              batch_size=50)

    first = on_spark.sync().views[0]
    assert (first.mode, first.entities, first.written) == ("full", 400, 400)
    # a task per partition (spark.sql.shuffle.partitions, not coalesced), in Python workers,
    # each writing its partition's share; none in this process
    assert first.tasks == len(tasks) == int(spark.conf.get("spark.sql.shuffle.partitions")) > 1
    assert all(t.pid != os.getpid() and t.error is None for t in tasks)
    assert all(t.entities > 0 and t.counters for t in tasks)
    assert sum(t.entities for t in tasks) == 400
    assert sum(n for t in tasks for _, n in t.counters) == 400
    on_duck.sync()
    assert get_scores(on_spark, users) == get_scores(on_duck, users)
    assert_reference(read_all(on_spark, users), v1)
    # folded: no task counter is left behind
    client = redis_server.client()
    assert not list(client.scan_iter(match=f"{control(on_spark)}:run:*"))

    # incremental, through the guard, from the executors too
    v2 = versioned(users[::3], 2, base)
    write_scores(data, v1 + v2)
    tasks.clear()
    again = on_spark.sync().views[0]
    assert (again.mode, again.written, again.unchanged) == ("incremental", len(v2), 0)
    assert again.tasks == len(tasks) > 1 and all(t.pid != os.getpid() for t in tasks)
    on_duck.sync()
    assert get_scores(on_spark, users) == get_scores(on_duck, users)
    assert_reference(read_all(on_spark, users), v1 + v2)


def test_a_failing_task_publishes_nothing_and_the_next_run_repairs(
        spark: Any, make_project: MakeProject, tmp_path: Path,
        redis_server: RedisServer) -> None:
    # the view's score fails to cast for one row: that task (so the job) fails in Spark
    data = tmp_path / "scores.parquet"
    project = make_project({
        **VIEW_FILES, "features/scores.sql":
        "SELECT user_id, ts, created, CAST(CAST(score AS INTEGER) AS BIGINT) AS score, label "
        "FROM {{ source('raw', 'scores') }}\n",
        "models/sources.yml": f"sources:\n  - name: raw\n    tables:\n"
                              f"      - {{name: scores, path: {data}}}\n",
        "profiles.yml": online_profile("test", redis_server.url, batch_size=20).replace(
            "offline: {type: duckdb}", SPARK)})
    users = list(range(100))
    base = utc_now() - dt.timedelta(minutes=30)
    v1 = versioned(users, 1, base)
    write_scores(data, v1)
    assert project.sync().views[0].written == 100
    client = redis_server.client()
    before = meta(client, project)

    v2 = versioned(users, 2, base)
    bad = [(7, v2[7][1], v2[7][2], 10**12, "too big")]  # event time as v2: the latest row
    write_scores(data, v1 + v2[:7] + bad + v2[8:])
    # full refresh: the old generation is still served, the new one was dropped
    for full_refresh in (True, False):
        with pytest.raises(fsql.FsqlError, match=r"CAST_OVERFLOW|overflow") as failed:
            project.sync(full_refresh=full_refresh)
        assert "Traceback" not in str(failed.value)
        after = meta(client, project)
        assert (after["watermark"], after["generation"]) == (before["watermark"],
                                                             before["generation"])
        assert "pending_generation" not in after
        # incremental: whole vectors, old or new (the watermark did not move)
        assert set(versions(read_all(project, users), base).values()) <= (
            {1} if full_refresh else {1, 2})

    write_scores(data, v1 + v2)
    again = project.sync().views[0]
    assert again.mode == "incremental" and again.written + again.unchanged == 100
    assert_reference(read_all(project, users), v1 + v2)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone (it gets restarted)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(kill=True)


def test_redis_restarted_under_the_executors_writes_publishes_nothing(
        spark: Any, make_project: MakeProject, tmp_path: Path, own_redis: RedisServer) -> None:
    """The tasks' clients reconnect to the restarted, empty Redis: their fenced writes find the
    lock gone, the tasks report it, the driver raises it (exit 4) and publishes nothing."""
    data = tmp_path / "scores.parquet"
    users = list(range(6000))
    base = utc_now() - dt.timedelta(minutes=30)
    write_scores(data, versioned(users, 1, base))
    project = scores(make_project, data, own_redis.url, "test", batch_size=5)
    client = own_redis.client()
    restarted = threading.Event()

    def restart_once_writing() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.dbsize() > 600:  # the executors are writing
                    own_redis.stop(kill=True)
                    own_redis.start()  # same port, empty
                    restarted.set()
                    return
            except Exception:  # noqa: BLE001 - polling a server that is being restarted
                pass
            time.sleep(0.005)

    watcher = threading.Thread(target=restart_once_writing, daemon=True)
    watcher.start()
    with pytest.raises(fsql.OnlineStoreError, match=r"lost the sync lock|online store .* failed"):
        project.sync()
    watcher.join(timeout=10)
    assert restarted.is_set()
    assert "generation" not in meta(client, project)  # nothing published
    again = project.sync().views[0]
    assert (again.mode, again.entities, again.written) == ("full", 6000, 6000)
    assert_reference(read_all(project, users[::50]), versioned(users[::50], 1, base))


def test_a_retried_task_is_counted_once(make_project: MakeProject, tmp_path: Path,
                                        redis_server: RedisServer) -> None:
    """On ``local[2,3]`` (a failed task is retried), partition 0's first attempt fails after
    writing one batch; the sync publishes with the retry's counts only, and the failed
    attempt's counter is left to expire, never folded. Runs in its own process: the tests'
    shared session cannot retry tasks."""
    data = tmp_path / "scores.parquet"
    users = list(range(300))
    base = utc_now() - dt.timedelta(minutes=30)
    v1 = versioned(users, 1, base)
    write_scores(data, v1)
    project = scores(make_project, data, redis_server.url, "test",
                     "offline: {type: spark, master: 'local[2,3]'}", batch_size=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSQL_", "PYSPARK_"))}
    run = subprocess.run([sys.executable, "-m", "tests.spark.flaky_sync", str(project.root)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    view = result["views"][0]
    assert (view["entities"], view["written"]) == (300, 300)
    # the attempts that succeeded: partition 0's second, every other's first
    assert result["scopes"] == sorted([":p0:a1"] + [f":p{p}:a0" for p in range(1, view["tasks"])])
    client = redis_server.client()
    failed = [k.decode() for k in client.scan_iter(match=f"{control(project)}:run:*")]
    assert len(failed) == 1 and failed[0].endswith(":writes:p0:a0"), failed
    assert int(client.get(failed[0]) or 0) == 10  # its one batch, never folded
    assert 0 < client.pttl(failed[0]) <= 86_400_000
    assert_reference(read_all(project, users), v1)


def test_executors_write_into_a_cluster_equal_to_duckdb(
        spark: Any, make_project: MakeProject, tmp_path: Path,
        redis_cluster: RedisClusterServers, tasks: list[TaskWrites]) -> None:
    users = list(range(300))
    data, base, v1, on_spark, on_duck = twins(make_project, tmp_path, redis_cluster.url, users,
                                              batch_size=40)
    first = on_spark.sync().views[0]
    assert (first.entities, first.written) == (300, 300) and first.tasks == len(tasks) > 1
    # each task counted its writes on every master (a counter per master and attempt)
    assert all(len(t.counters) == 3 for t in tasks)
    on_duck.sync()
    assert get_scores(on_spark, users) == get_scores(on_duck, users)

    v2 = versioned(users[::4], 2, base)
    write_scores(data, v1 + v2)
    again = on_spark.sync().views[0]
    assert (again.mode, again.written) == ("incremental", len(v2))
    on_duck.sync()
    assert get_scores(on_spark, users) == get_scores(on_duck, users)
    assert_reference(read_all(on_spark, users), v1 + v2)
