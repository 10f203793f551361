"""fsql sync when the store loses what it acknowledged: a Redis restored from a snapshot taken
mid-sync, a failover to a lagging replica, evictions under maxmemory, a FLUSHDB; restored locks
and orphan keys; the lock during long DuckDB queries; future-dated rows; empty or truncated
sources. Every drill runs real processes: its own redis-server(s), ``fsql sync`` as a
subprocess paused with SIGSTOP/SIGCONT, SIGKILLed servers restarted from their RDB file.

A run that cannot prove the store still holds every write it made must fail (exit 4) without
publishing or moving the watermark, and the next run must repair the view; the final state is
compared with the brute-force reference (tests/online/reference.py).
"""

from __future__ import annotations

import datetime as dt
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import fsql
from fsql.build import Silent
from fsql.errors import CheckFailed
from tests.conftest import MakeProject
from tests.online.scores import get_scores, scores_project, utc_now, write_scores
from tests.online.test_robustness import (
    assert_reference,
    count_keys,
    kill,
    meta,
    prefix,
    read_all,
    set_profile,
    start_sync,
    synced_v1,
    versioned,
    versions,
    wait_until,
)
from tests.redis_server import RedisServer, free_port

N = 50_000
BATCH = 100


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, with its own RDB directory."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(kill=True)


def missing(project: fsql.Project, users: list[int], version: int, base: dt.datetime) -> int:
    """Entities not served at ``version`` (absent or older)."""
    got = versions(read_all(project, users), base)
    return sum(1 for u in users if got[u] != version)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a resumed ``fsql sync``: its exit code and its stderr on one line."""
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        kill(proc)
    return proc.returncode, " ".join(err.split())


def batches(client: redis.Redis) -> int:
    """Batches of BATCH entities written since the last CONFIG RESETSTAT: the scores view has a
    ttl, so every entity written is one SET ... PXAT (inside the write script, which INFO
    commandstats counts too), in a full refresh and in an incremental sync alike."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0)) // BATCH


def more_batches(client: redis.Redis, proc: subprocess.Popen[str], count: int) -> None:
    done = batches(client)
    wait_until(lambda: batches(client) >= done + count, 60, f"{count} more batches", proc)


# -- item 1: acknowledged writes lost before publishing ------------------------------------

@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_snapshot_restored_mid_sync_fails_and_the_next_run_repairs(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path, mode: str) -> None:
    """SAVE mid-run, more writes, SIGSTOP the sync, kill -9 Redis, restart it from its RDB
    file (the run's lock comes back with it), SIGCONT: the writes after the snapshot are gone,
    so the run must neither publish (full) nor move the watermark (incremental)."""
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=5000)
    before = meta(own_redis.client(), project)
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    args = ["--full-refresh"] if mode == "full" else []
    proc = start_writing(project, own_redis, args, 60)
    client = own_redis.client()
    client.save()
    more_batches(client, proc, 40)
    proc.send_signal(signal.SIGSTOP)
    own_redis.stop(kill=True)
    own_redis.start()  # from dump.rdb: the lock and part of the writes
    proc.send_signal(signal.SIGCONT)
    code, err = finish(proc)
    assert code == 4, err
    assert "lost writes of this sync" in err or "lost the sync lock" in err, err
    after = meta(own_redis.client(), project)
    assert (after["generation"], after["watermark"]) == (before["generation"],
                                                        before["watermark"])
    again = project.sync().views[0]
    assert again.mode == "incremental"
    assert missing(project, users, 2, base) == 0
    assert_reference(read_all(project, users), v2)


def start_writing(project: fsql.Project, server: RedisServer, args: list[str], count: int,
                  url: str | None = None) -> subprocess.Popen[str]:
    """``fsql sync --json *args`` (batch_size BATCH) against ``server`` (through ``url`` if
    given), once it has written ``count`` batches."""
    set_profile(project, url or server.url, batch_size=BATCH)
    client = server.client()
    client.config_resetstat()
    proc = start_sync(project, *args)
    try:
        wait_until(lambda: batches(client) > count, 60, f"{count} batches", proc)
    except BaseException:
        kill(proc)
        raise
    return proc


class Failover:
    """A TCP forwarder standing for the store's address (a floating IP, a sentinel-aware
    proxy): clients keep connecting to ``port`` while the server behind it changes."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.backend))
            except OSError:
                if self.listener.fileno() < 0:
                    return
                continue
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _hang_up(sock)

    def switch(self, backend: int) -> None:
        """Send new connections to ``backend``; drop the current ones."""
        self.backend = backend
        for sock in self.sockets:
            _hang_up(sock)
        self.sockets = []

    def close(self) -> None:
        self.listener.close()
        self.switch(self.backend)


def _hang_up(sock: socket.socket) -> None:
    """Close both ways (wakes a thread blocked reading it, unlike close alone)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def test_failover_to_a_lagging_replica_fails_and_the_next_run_repairs(
        make_project: MakeProject, tmp_path: Path) -> None:
    """The sync writes through one address; mid-run the replica stops following (a
    partition), the primary dies, the replica is promoted (REPLICAOF NO ONE) and the address
    moves to it. The run's lock was replicated, part of its writes were not."""
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica").start()
    failover = Failover(primary.port)
    try:
        replica.client().replicaof("127.0.0.1", primary.port)
        users = list(range(N))
        project, data, base, _ = synced_v1(make_project, failover.url, tmp_path, users,
                                           batch_size=5000)
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up"
                   and replica.client().dbsize() == primary.client().dbsize(), 30,
                   "the replica to catch up")
        before = meta(primary.client(), project)
        v2 = versioned(users, 2, base)
        write_scores(data, v2)
        proc = start_writing(project, primary, ["--full-refresh"], 60, url=failover.url)
        # cut the replication link (a partition: the replica keeps its data and retries a
        # primary that never answers); pausing the replica would not do, the kernel buffers
        # what the primary sends meanwhile
        replica.client().replicaof("127.0.0.1", free_port())
        more_batches(primary.client(), proc, 40)
        proc.send_signal(signal.SIGSTOP)
        primary.stop(kill=True)
        replica.client().replicaof("NO", "ONE")  # promoted, lagging
        failover.switch(replica.port)
        proc.send_signal(signal.SIGCONT)
        code, err = finish(proc)
        assert code == 4, err
        assert "lost writes of this sync" in err, err
        assert meta(replica.client(), project)["generation"] == before["generation"]
        again = project.sync().views[0]  # through the failover address, now the replica
        assert again.mode == "incremental"
        assert missing(project, users, 2, base) == 0
        assert_reference(read_all(project, users), v2)
    finally:
        failover.close()
        primary.stop(kill=True)
        replica.stop(kill=True)


def test_eviction_fails_the_sync_and_the_next_run_refreshes_the_view(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    """Under maxmemory with an evicting policy, a full refresh that needs more memory than is
    left evicts keys (the old generation's, the new one's): the run fails, and the next run,
    seeing evicted_keys grew since the view's last publish, refreshes the view in full."""
    users = list(range(30_000))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=1000)
    client = own_redis.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "volatile-random")  # keys with a ttl: values, lock
    client.config_set("maxmemory", used + 2_000_000)  # a second generation needs ~4 MB more
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    proc = start_sync(project, "--full-refresh")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, (out, err)
    err = " ".join(err.split())
    assert err.startswith("Warning: the online store can evict keys"), err
    assert "maxmemory-policy volatile-random" in err.split("Error:")[1], err
    assert int(client.info("stats")["evicted_keys"]) > 0
    assert missing(project, users, 1, base) > 0  # the live generation lost keys too
    client.config_set("maxmemory", 0)
    again = project.sync().views[0]
    assert again.mode == "full" and again.full_reason is not None
    assert "evicted" in again.full_reason, again.full_reason
    assert_reference(read_all(project, users), v2)


def test_flushdb_mid_sync_fails_and_the_next_run_rewrites_everything(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=5000)
    v2 = versioned(users, 2, base)
    write_scores(data, v2)
    proc = start_writing(project, own_redis, [], 60)
    own_redis.client().flushdb()  # someone else's FLUSHDB: the lock and the run's count go
    code, err = finish(proc)
    assert code == 4, err
    assert "lost the sync lock" in err, err
    assert count_keys(own_redis.client(), f"{prefix(project)}:*") <= 100  # a batch in flight
    again = project.sync().views[0]
    assert (again.mode, again.full_reason) == ("full", "first sync")
    assert_reference(read_all(project, users), v2)


# -- item 17: restored locks, orphan keys ---------------------------------------------------

def test_a_restored_lock_of_a_dead_run_is_taken_over(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    users = list(range(100))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       lock_timeout=600)
    client = own_redis.client()
    dead = f"{uuid.uuid4().hex}|{client.info('server')['run_id']}"
    client.set(f"{prefix(project)}:lock", dead, px=600_000)  # a run holding it at the SAVE
    client.save()
    own_redis.stop(kill=True)
    own_redis.start()
    assert own_redis.client().get(f"{prefix(project)}:lock") == dead.encode()
    write_scores(data, versioned(users, 2, base))
    result = project.sync()  # at once, not lock_timeout later
    assert any("took over a sync lock" in w for w in result.warnings), result.warnings
    assert result.views[0].written == 100
    assert own_redis.client().get(f"{prefix(project)}:lock") is None


def test_a_run_that_lost_its_lock_to_an_empty_restart_leaves_no_keys(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    """The run resumes against an empty server: its fenced writes fail at once and it deletes
    what it wrote there (nothing, or a batch), instead of filling a generation that a later
    refresh could take for its own."""
    users = list(range(N))
    project, data, base, _ = synced_v1(make_project, own_redis.url, tmp_path, users,
                                       batch_size=5000)
    write_scores(data, versioned(users, 2, base))
    proc = start_writing(project, own_redis, ["--full-refresh"], 60)
    proc.send_signal(signal.SIGSTOP)
    own_redis.stop(kill=True)
    (own_redis.directory / "dump.rdb").unlink(missing_ok=True)
    own_redis.start()  # empty
    proc.send_signal(signal.SIGCONT)
    code, err = finish(proc)
    assert code == 4, err
    assert count_keys(own_redis.client(), "*") == 0


# -- item 16: the lock during long DuckDB queries -------------------------------------------

SLOW_SQL = ("SELECT user_id, ts, created, score, label FROM {{ source('raw', 'scores') }}\n"
            "WHERE (SELECT count(*) FROM range(200000000) t(i) WHERE i % 7 = 3) > 0\n")


def test_the_lock_is_refreshed_during_long_queries(make_project: MakeProject,
                                                    own_redis: RedisServer,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "scores.parquet"
    project = scores_project(make_project, data, own_redis.url, lock_timeout=0.3)
    (project.root / "features" / "scores.sql").write_text(SLOW_SQL)
    now = utc_now()
    write_scores(data, [(u, now, now, u, f"v1:{u}") for u in range(100)])
    started = time.monotonic()
    result = project.sync()
    assert time.monotonic() - started > 0.9  # 3 x lock_timeout, in two queries
    assert result.views[0].written == 100
    assert not [t for t in threading.enumerate() if t.name == "fsql-sync-lock"]


class _Interrupt(Silent):
    def step(self, label: str, seconds: float | None) -> None:
        raise KeyboardInterrupt  # what SIGINT (or SIGTERM, in cli.main) raises mid-run


def test_any_base_exception_releases_the_lock_and_stops_its_thread(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    project, _, _, _ = synced_v1(make_project, own_redis.url, tmp_path, list(range(10)))
    with pytest.raises(KeyboardInterrupt):
        project.sync(progress=_Interrupt())
    assert own_redis.client().get(f"{prefix(project)}:lock") is None
    assert not [t for t in threading.enumerate() if t.name == "fsql-sync-lock"]


# -- item 14 (part): overlapping syncs ------------------------------------------------------

def test_an_overlapping_sync_exits_75_before_touching_duckdb(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    project, _, _, _ = synced_v1(make_project, own_redis.url, tmp_path, list(range(10)))
    client = own_redis.client()
    client.set(f"{prefix(project)}:lock", f"{uuid.uuid4().hex}|{client.info('server')['run_id']}",
               px=600_000)  # a running sync...
    holder = subprocess.Popen(  # ...which has the DuckDB file open
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); time.sleep(60)", str(project.target.offline.path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        proc = start_sync(project)
        out, err = proc.communicate(timeout=60)
    finally:
        holder.kill()
        holder.communicate()
    assert proc.returncode == 75, (out, err)
    assert "another fsql sync is running" in " ".join(err.split())


# -- item 2: future-dated rows ----------------------------------------------------------------

def test_a_future_dated_row_never_moves_the_watermark_past_as_of(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    data = tmp_path / "scores.parquet"
    project = scores_project(make_project, data, own_redis.url)
    yml = project.root / "features" / "scores.yml"
    yml.write_text(yml.read_text().replace("online: true", "online: true\n  freshness: 26h"))
    now = utc_now()
    ahead = now + dt.timedelta(days=365)  # an ingestion clock a year off
    early = now - dt.timedelta(minutes=10)
    rows = [(1, now - dt.timedelta(minutes=5), ahead, 1, "future-dated"),
            (3, early, early, 3, "early")]
    write_scores(data, rows)
    first = project.sync()
    view = first.views[0]
    assert view.watermark is not None and view.watermark <= first.as_of
    assert (view.written, view.future_dated) == (2, 1)
    rows.append((2, now - dt.timedelta(minutes=1), now, 2, "real"))
    write_scores(data, rows)
    second = project.sync().views[0]
    assert get_scores(project, [1, 2, 3])["label"] == ["future-dated", "real", "early"]
    assert (second.mode, second.written, second.future_dated) == ("incremental", 1, 1)
    (fresh,) = project.freshness()
    assert fresh.future_dated == 1
    # a watermark that an older fsql moved a year ahead is repaired by a full refresh
    own_redis.client().hset(f"{prefix(project)}:scores:meta", "watermark",
                            str(int(ahead.replace(tzinfo=dt.UTC).timestamp() * 1e6)))
    repaired = project.sync().views[0]
    assert repaired.mode == "full" and "watermark" in (repaired.full_reason or "")


# -- item 3: empty or truncated sources -------------------------------------------------------

def test_failing_data_tests_or_a_large_drop_publish_nothing(
        make_project: MakeProject, own_redis: RedisServer, tmp_path: Path) -> None:
    users = list(range(1000))
    project, data, base, v1 = synced_v1(make_project, own_redis.url, tmp_path, users)
    yml = project.root / "features" / "scores.yml"
    yml.write_text(yml.read_text().replace("online: true",
                                           "online: true\n  tests:\n    - row_count: {min: 1}"))
    current = v1[10:] + versioned(users[:10], 2, base)
    write_scores(data, current)
    assert project.sync().views[0].entities == 10  # incremental: 10 changed, 1000 online
    client = own_redis.client()
    keys = count_keys(client, "*")
    before = meta(client, project)

    write_scores(data, [])  # an empty source
    proc = start_sync(project, "--full-refresh")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, (out, err)
    assert "row_count" in err and "nothing was synced" in " ".join(err.split())
    with pytest.raises(CheckFailed, match="would drop 1,000 of the 1,000 entities"):
        project.sync(full_refresh=True, test=False)
    write_scores(data, current[:400])  # a truncated one: 60% gone
    with pytest.raises(CheckFailed, match="more than max_drop 50%"):
        project.sync(full_refresh=True)
    assert meta(client, project)["generation"] == before["generation"]
    assert count_keys(client, "*") == keys  # the refused generations were deleted
    assert_reference(read_all(project, users), current)

    allowed = project.sync(full_refresh=True, allow_drop=True).views[0]
    assert (allowed.entities, allowed.dropped) == (400, 1000)
    assert_reference(read_all(project, users), current[:400])
