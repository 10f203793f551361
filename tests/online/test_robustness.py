"""fsql sync when things go wrong: the process killed mid-write, Redis stopped or restarted
mid-sync, full refreshes under concurrent reads, entities deleted from the source.

Every entity's vector is derived from one version number (score = version * 10**6 + user,
label = "v{version}:{user}", event time = base + version minutes), so a read can tell an old
vector from a new one, and a vector mixing the two is caught. Final states are compared with the
brute-force reference (tests/online/reference.py). Each test that stops, pauses or restarts Redis
runs its own redis-server.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

import fsql
from fsql.online.keys import FORMAT, micros
from fsql.serve import OnlineResult, OnlineService
from tests.conftest import MakeProject, online_profile
from tests.online.reference import latest_rows
from tests.online.scores import Score, scores_project, utc_now, write_scores
from tests.redis_server import RedisClusterServers, RedisServer

FSQL = str(Path(sys.executable).parent / "fsql")
COLUMNS = ("user_id", "ts", "created", "score", "label")
TTL_SECONDS = 2 * 3600  # the scores view's ttl


# -- versioned data and checks -------------------------------------------------------------

def versioned(users: range | list[int], version: int, base: dt.datetime) -> list[Score]:
    at = base + dt.timedelta(minutes=version)
    return [(u, at, at, version * 1_000_000 + u, f"v{version}:{u}") for u in users]


def synced_v1(make_project: MakeProject, redis_url: str, tmp_path: Path, users: list[int],
              **online: object) -> tuple[fsql.Project, Path, dt.datetime, list[Score]]:
    """A scores project (source ``tmp_path / "scores.parquet"``, store at ``redis_url``,
    ``online`` profile options) whose first sync wrote version 1 of every user in ``users``:
    the project, its data file, the base time of the versions and the version-1 rows."""
    data = tmp_path / "scores.parquet"
    project = scores_project(make_project, data, redis_url, **online)
    base = utc_now() - dt.timedelta(minutes=30)
    v1 = versioned(users, 1, base)
    write_scores(data, v1)
    assert project.sync().views[0].written == len(users)
    return project, data, base, v1


def read_all(project: fsql.Project, users: list[int]) -> OnlineResult:
    service = project.online_service(max_entities=len(users))
    try:
        return service.get(["scores"], {"user_id": users})
    finally:
        service.store.close()


def versions(result: OnlineResult, base: dt.datetime) -> dict[int, int | None]:
    """user -> the version of its vector (None when missing), asserting every vector is whole:
    both features and the event time from one version."""
    seen: dict[int, int | None] = {}
    for i, user in enumerate(result.entities["user_id"]):
        statuses = {result.statuses["score"][i], result.statuses["label"][i]}
        if statuses == {"MISSING"}:
            seen[user] = None
            continue
        assert statuses == {"PRESENT"}, (user, statuses)
        score, label = result.values["score"][i], result.values["label"][i]
        version, rest = divmod(score, 1_000_000)
        assert rest == user and label == f"v{version}:{user}", (user, score, label)
        event = micros(base + dt.timedelta(minutes=version))
        assert result.event_timestamps["score"][i] == event, (user, version)
        assert result.event_timestamps["label"][i] == event, (user, version)
        seen[user] = version
    return seen


def assert_reference(result: OnlineResult, rows: list[Score]) -> None:
    """Every requested entity has exactly the brute-force latest row (or is missing if none)."""
    now = dt.datetime.now(dt.UTC)
    expected = latest_rows([dict(zip(COLUMNS, r, strict=True)) for r in rows], ["user_id"],
                           "ts", "created", TTL_SECONDS, now)
    for i, user in enumerate(result.entities["user_id"]):
        choices = expected.get((user,))
        got = (result.values["score"][i], result.values["label"][i])
        if choices is None:
            assert result.statuses["score"][i] == "MISSING" and got == (None, None), user
            continue
        assert len(choices) == 1 and result.statuses["score"][i] == "PRESENT", user
        assert got == (choices[0]["score"], choices[0]["label"]), (user, got, choices)


# -- the store, seen from the outside ------------------------------------------------------

Server = RedisServer | RedisClusterServers
Client = redis.Redis | redis.cluster.RedisCluster


def prefix(project: fsql.Project) -> str:
    """The prefix of the value keys."""
    return f"{project.target.online.namespace}:{FORMAT}"


def control(project: fsql.Project) -> str:
    """The prefix of the lock, the metas and the write counters (on a Redis Cluster, the
    control slot's hash tag; see fsql.online.cluster)."""
    if project.target.online.type == "redis_cluster":
        return "{" + str(project.target.online.namespace) + f"}}:{FORMAT}"
    return prefix(project)


def meta(client: Client, project: fsql.Project) -> dict[str, str]:
    raw = client.hgetall(f"{control(project)}:scores:meta")
    return {k.decode(): v.decode() for k, v in raw.items()}


def servers(client: Client) -> list[redis.Redis]:
    """The server ``client`` talks to, or each master of a cluster."""
    if isinstance(client, redis.cluster.RedisCluster):
        return [node.redis_connection for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client]


def count_keys(client: Client, pattern: str) -> int:
    return sum(1 for server in servers(client)
               for _ in server.scan_iter(match=pattern, count=5000))


def write_calls(client: Client) -> int:
    """Written batches since the last CONFIG RESETSTAT: one fenced script call each (guarded
    EVALSHA when incremental, EVAL for a full refresh), give or take a lock refresh. (On a
    cluster: a fence per master and batch, and one guard script per entity, over all
    masters.)"""
    total = 0
    for server in servers(client):
        stats = server.info("commandstats")
        total += sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
                     for c in ("evalsha", "eval"))
    return total


def wait_until(condition: Any, timeout: float, what: str, proc: subprocess.Popen[str] | None
               = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sync ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def start_sync(project: fsql.Project, *args: str) -> subprocess.Popen[str]:
    """``fsql sync`` as cron runs it: a separate process, reading profiles.yml afresh."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    return subprocess.Popen([FSQL, "--project-dir", str(project.root), "sync", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "COLUMNS": "400"})


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the run if it is still going (and reap it)."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def set_profile(project: fsql.Project, url: str, **online: object) -> None:
    """Rewrite profiles.yml (same namespace) for the next ``fsql sync`` process."""
    (project.root / "profiles.yml").write_text(
        online_profile("test", url, project.target.online.namespace, **online))


def sync_writing(project: fsql.Project, server: Server, *args: str, batches: int,
                 batch_size: int, **online: object) -> subprocess.Popen[str]:
    """``start_sync(project, *args)`` with the profile options ``batch_size`` and ``online``,
    returned once it has written more than ``batches`` batches (killed if it ends or times out
    first)."""
    set_profile(project, server.url, batch_size=batch_size, **online)
    client = server.client()
    for one in servers(client):
        one.config_resetstat()
    proc = start_sync(project, *args)
    try:
        wait_until(lambda: write_calls(client) > batches, 60,
                   f"it wrote {batches} batches", proc)
    except BaseException:
        kill(proc)
        raise
    return proc


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone (it gets paused, stopped, restarted)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(kill=True)


@pytest.fixture(params=["redis", "cluster"])
def own_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A redis-server, then a 3-master Redis Cluster, for this test alone."""
    server = (RedisClusterServers(tmp_path / "cluster") if request.param == "cluster"
              else RedisServer(tmp_path / "redis")).start()
    yield server
    server.stop(kill=True)


# -- a sync killed mid-way ------------------------------------------------------------------

N = 30_000


def test_killed_incremental_sync_leaves_whole_vectors_and_the_next_run_completes(
        make_project: MakeProject, own_store: Server, tmp_path: Path) -> None:
    users = list(range(N))
    project, data, base, v1 = synced_v1(make_project, own_store.url, tmp_path, users,
                                        batch_size=2000)
    client = own_store.client()
    before = meta(client, project)
    v2 = versioned(users, 2, base)
    write_scores(data, v1 + v2)
    # one entity per batch: the run makes 30k round trips, for (much) longer than lock_timeout
    lock = f"{control(project)}:lock"
    proc = sync_writing(project, own_store, batches=50, batch_size=1, lock_timeout=1)
    try:
        writing = time.monotonic()
        # a live run keeps its lock past lock_timeout: nobody else can take it meanwhile
        while time.monotonic() - writing < 1.4:
            assert proc.poll() is None, "the sync finished too soon for this test"
            assert not client.set(lock, "intruder", nx=True, px=60_000), \
                "the running sync lost its lock"
            time.sleep(0.05)
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert client.pttl(lock) > 0  # the dead run's lock is left behind...

    got = versions(read_all(project, users), base)
    mix = Counter(got.values())
    assert set(mix) == {1, 2}, mix  # killed mid-way: some entities old, some new, none lost
    after = meta(client, project)
    for field in ("watermark", "as_of", "synced_at", "generation"):
        assert after[field] == before[field], field  # the killed run moved nothing

    wait_until(lambda: not client.exists(lock), 5, "the dead run's lock to expire")
    again = project.sync().views[0]  # ...and taken over once it expired
    assert (again.mode, again.entities) == ("incremental", N)
    assert (again.written, again.unchanged, again.stale) == (mix[1], mix[2], 0)
    final = read_all(project, users)
    assert_reference(final, v1 + v2)
    assert set(versions(final, base).values()) == {2}
    assert meta(client, project)["watermark"] == str(micros(base + dt.timedelta(minutes=2)))


def test_killed_full_refresh_is_invisible_and_cleaned_up(
        make_project: MakeProject, own_store: Server, tmp_path: Path) -> None:
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_store.url, tmp_path, users,
                                       batch_size=2000)
    client = own_store.client()
    before = meta(client, project)
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    # ~1500 entities (on a cluster, each batch runs a fence on each master)
    proc = sync_writing(project, own_store, "--full-refresh",
                        batches=300 * len(servers(client)), batch_size=5, lock_timeout=1)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL

    pending = meta(client, project)
    assert pending["generation"] == before["generation"]
    new_keys = f"{prefix(project)}:scores:{pending['pending_generation']}:*"
    assert count_keys(client, new_keys) >= 1000  # partly written, and...
    assert set(versions(read_all(project, users), base).values()) == {1}  # ...invisible

    wait_until(lambda: not client.exists(f"{control(project)}:lock"), 5, "the lock to expire")
    # the dead run's write counter expires lock_timeout after its last batch, which may be a
    # little after the lock's last refresh: the key count below must not catch it
    # (on a cluster, the counters on masters other than the control slot's have their own
    # hash tag before the namespace)
    wait_until(lambda: count_keys(client, f"*{prefix(project)}:run:*") == 0, 5,
               "the dead run's write counter to expire")
    again = project.sync().views[0]  # the cron run after the crash: a plain sync
    assert (again.mode, again.written) == ("incremental", N)
    assert count_keys(client, new_keys) == 0
    assert "pending_generation" not in meta(client, project)  # not rescanned at every run
    assert count_keys(client, f"*{project.target.online.namespace}*") == N + 1  # values + meta,
    # nothing leaked
    assert_reference(read_all(project, users), v2)


def test_full_refresh_killed_after_publishing_leaves_no_old_generation(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=2000, lock_timeout=1)
    client = own_redis.client()
    old = meta(client, project)["generation"]
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    proc = start_sync(project, "--full-refresh")
    try:
        # the moment the new generation is published, freeze writes (the deletion of the old
        # generation is UNLINKs) and kill the run: it dies between publishing and deleting
        wait_until(lambda: client.hget(f"{prefix(project)}:scores:meta", "generation")
                   != old.encode(), 60, "the new generation to be published", proc)
        client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        try:
            kill(proc)
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    old_keys = f"{prefix(project)}:scores:{old}:*"
    assert count_keys(client, old_keys) > N // 2  # the dead run deleted (almost) nothing
    assert set(versions(read_all(project, users), base).values()) == {2}

    wait_until(lambda: not client.exists(f"{prefix(project)}:lock"), 5, "the lock to expire")
    # the dead run's write counter expires lock_timeout after its last batch, which may be a
    # little after the lock's last refresh: the key count below must not catch it
    wait_until(lambda: count_keys(client, f"{prefix(project)}:run:*") == 0, 5,
               "the dead run's write counter to expire")
    again = project.sync().views[0]
    assert (again.mode, again.written, again.unchanged) == ("incremental", 0, 0)
    assert count_keys(client, old_keys) == 0
    assert count_keys(client, f"{prefix(project)}:*") == N + 1
    assert_reference(read_all(project, users), v2)


# -- Redis stopped or restarted mid-sync ----------------------------------------------------

@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "aof"])
def test_redis_stopped_mid_sync_fails_clearly_then_rerun_completes(
        make_project: MakeProject, tmp_path: Path, persistent: bool) -> None:
    server = RedisServer(tmp_path / "redis", persistent=persistent).start()
    try:
        users = list(range(N))
        project, data, base, v1 = synced_v1(make_project, server.url, tmp_path, users,
                                            batch_size=2000, lock_timeout=1)
        v2 = versioned(users, 2, base)
        write_scores(data, v1 + v2)
        proc = sync_writing(project, server, batches=300, batch_size=5, lock_timeout=1)
        try:
            server.stop(kill=True)
            out, err = proc.communicate(timeout=60)
        finally:
            kill(proc)
        message = " ".join(err.split())
        assert proc.returncode == 4, (out, err)
        # the operation that failed, not the lock release that failed after it (rarely the
        # lock refresh between two batches)
        assert re.search(rf"Error: online store \({re.escape(server.url)}\) failed while "
                         r"(writing view 'scores'|refreshing the sync lock): ", message), message
        assert out == ""

        server.start()  # same port
        client = server.client()
        if not persistent:
            assert client.dbsize() == 0  # data, watermark and lock are gone
            again = project.sync().views[0]
            assert (again.mode, again.written) == ("full", N)  # so everything is rewritten
        else:
            mix = Counter(versions(read_all(project, users), base).values())
            assert set(mix) == {1, 2}, mix
            wait_until(lambda: not client.exists(f"{prefix(project)}:lock"), 5,
                       "the dead run's lock to expire")
            again = project.sync().views[0]
            assert (again.mode, again.written, again.unchanged) == ("incremental", mix[1],
                                                                    mix[2])
        assert_reference(read_all(project, users), v1 + v2)
    finally:
        server.stop(kill=True)


def test_redis_restarted_under_a_paused_full_refresh_publishes_nothing(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    """The client reconnects transparently to the restarted, empty Redis and writes the rest:
    publishing that generation would serve a view missing the entities written before the
    restart, and the watermark would keep every later run from ever rewriting them."""
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=2000)
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    proc = sync_writing(project, own_redis, "--full-refresh", batches=300, batch_size=5)
    try:
        proc.send_signal(signal.SIGSTOP)  # a long GC pause, a descheduled VM...
        own_redis.stop()
        own_redis.start()
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        kill(proc)
    assert proc.returncode == 4, (out, err)
    assert "lost the sync lock" in " ".join(err.split())
    client = own_redis.client()
    assert "generation" not in meta(client, project)  # nothing published
    with pytest.raises(fsql.OnlineStoreError, match="no online data yet"):
        read_all(project, users[:1])
    again = project.sync().views[0]
    assert (again.mode, again.entities) == ("full", N)
    assert_reference(read_all(project, users), v2)


# -- full refreshes under concurrent reads -------------------------------------------------

def test_full_refresh_under_concurrent_reads(make_project: MakeProject,
                                             redis_server: RedisServer,
                                             tmp_path: Path) -> None:
    """A reader looping during full refreshes sees, at every read, one whole generation (old
    or new, never older than the last it saw); a long-lived reader idle during a whole refresh
    (flip and deletion of the generation it knew) reads the new one."""
    users = list(range(3000))
    project, data, base, _ = synced_v1(make_project, redis_server.url, tmp_path, users,
                                       batch_size=100)
    sample = users[::10] + [10**9]  # and one user that never exists

    def read_version(service: OnlineService) -> int:
        got = versions(service.get(["scores"], {"user_id": sample}), base)
        assert got.pop(10**9) is None
        seen = set(got.values())
        assert len(seen) == 1, Counter(got.values())  # one whole generation per read
        (version,) = seen
        assert version is not None  # never a missing view or entity
        return version

    reads: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        service = project.online_service()
        try:
            while not stop.is_set():
                version = read_version(service)
                assert not reads or version >= reads[-1], (reads[-1], version)
                reads.append(version)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)
        finally:
            service.store.close()

    idle = project.online_service()
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(2, 6):
            assert read_version(idle) == version - 1
            write_scores(data, versioned(users, version, base))
            result = project.sync(full_refresh=True).views[0]
            assert (result.mode, result.written, result.dropped) == ("full", 3000, 3000)
            assert read_version(idle) == version
            assert not errors, errors
            time.sleep(0.05)
        wait_until(lambda: errors or reads[-1] == 5, 10, "a read of the last refresh")
    finally:
        stop.set()
        thread.join(timeout=30)
        idle.store.close()
    assert not errors, errors
    assert len(set(reads)) >= 3, Counter(reads)  # the reader really overlapped the refreshes
    assert reads[-1] == 5
    assert_reference(read_all(project, users), versioned(users, 5, base))


# -- entities deleted from the source -------------------------------------------------------

def test_entities_deleted_from_the_source_disappear_only_with_full_refresh(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    users = list(range(1, 101))
    project, data, base, _ = synced_v1(make_project, redis_server.url, tmp_path, users,
                                       batch_size=7)
    kept = versioned(users[:60], 2, base)
    write_scores(data, kept)  # users 61..100 are gone from the source
    incremental = project.sync().views[0]
    assert (incremental.mode, incremental.written) == ("incremental", 60)
    got = versions(read_all(project, users), base)
    assert [got[u] for u in users] == [2] * 60 + [1] * 40  # documented: still served

    full = project.sync(full_refresh=True).views[0]
    assert (full.mode, full.written, full.dropped) == ("full", 60, 100)
    result = read_all(project, users)
    assert_reference(result, kept)
    assert [versions(result, base)[u] for u in users] == [2] * 60 + [None] * 40
    client = redis_server.client()
    assert count_keys(client, f"{prefix(project)}:*") == 60 + 1
