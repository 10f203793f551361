"""Processes, not functions: `fsql` stopped by real signals, and verbs run side by side against
one project (a real DuckDB file held by another process, a real redis-server)."""

from __future__ import annotations

import datetime as dt
import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from tests.conftest import MakeProject, online_profile, raw_sources
from tests.redis_server import RedisServer

FSQL = str(Path(sys.executable).parent / "fsql")
ENTITIES = 400_000  # a full sync of this many entities takes a second or more
SPINE_ROWS = 3_000_000  # and a build of a training set this long


def fsql_run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(root), *args], capture_output=True,
                          text=True, timeout=timeout)


def fsql_start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([FSQL, "--project-dir", str(root), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str],
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"fsql exited ({process.returncode}) before {what}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    """Send ``signum``; return the exit code and stderr, after checking no child outlives it."""
    kids = children(process.pid)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert not [k for k in kids if Path(f"/proc/{k}").exists()], "orphan child process"
    return process.returncode, stderr


@pytest.fixture
def big(make_project: MakeProject, tmp_path: Path, redis_server: RedisServer) -> fsql.Project:
    """An online view of ENTITIES users and a training set of SPINE_ROWS rows over it."""
    now = np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "us")
    ids = np.arange(ENTITIES, dtype=np.int64)
    pq.write_table(pa.table({"user_id": ids, "ts": now - (ids % 3600) * np.timedelta64(1, "s"),
                             "score": ids * 3, "ratio": ids / 7}), tmp_path / "f.parquet")
    rows = np.arange(SPINE_ROWS, dtype=np.int64)
    pq.write_table(pa.table({"user_id": rows % ENTITIES,
                             "label_ts": now - (rows % 7200) * np.timedelta64(1, "s")}),
                   tmp_path / "spine.parquet")
    return make_project({
        "models/sources.yml": raw_sources(f=tmp_path / "f.parquet",
                                          spine=tmp_path / "spine.parquet"),
        "models/spine.sql": "SELECT * FROM {{ source('raw', 'spine') }}\n",
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.yml": """
            feature_view:
              entity: user
              timestamp: ts
              online: true
              features:
                - {name: score, type: int64}
                - {name: ratio, type: float64}
            """,
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/training_sets.yml": """
            training_sets:
              - name: big_training
                spine: {model: spine, timestamp: label_ts}
                features: [v]
            """,
        "profiles.yml": online_profile("test", redis_server.url),
    })


def online_state(project: fsql.Project) -> tuple[dict[str, str], object]:
    store = project.store()
    try:
        meta = store.client.hgetall(meta_key(project))
    finally:
        store.close()
    values = project.online_features(["v"], {"user_id": [0, 1, ENTITIES - 1]}).to_json()
    return ({k.decode(): v.decode() for k, v in meta.items()
             if k not in (b"next_generation",)}, values)


def meta_key(project: fsql.Project) -> str:
    return f"{project.target.online.namespace}:v1:v:meta"


def lock_held(project: fsql.Project) -> bool:
    store = project.store()
    try:
        return bool(store.client.exists(store.lock_key))
    finally:
        store.close()


def test_sigterm_stops_sync_cleanly(big: fsql.Project) -> None:
    assert fsql_run(big.root, "sync").returncode == 0
    before = online_state(big)
    store = big.store()
    try:
        sync = fsql_start(big.root, "sync", "--full-refresh")
        # mid-run: the new generation is being written (lock held, nothing published yet)
        wait_for(lambda: store.client.hexists(meta_key(big), "pending_generation"),
                 "the full refresh started writing", sync)
        returncode, stderr = stop(sync, signal.SIGTERM)
        assert returncode == 143, stderr
        assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
        assert not store.client.exists(store.lock_key), "the lock outlived the sync"
    finally:
        store.close()
    after = online_state(big)
    assert after[1] == before[1]  # readers still see the previous generation
    assert {k: v for k, v in after[0].items() if k != "pending_generation"} == before[0]
    again = fsql_run(big.root, "sync")
    assert again.returncode == 0, again.stderr  # not 75: no lock left behind


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_sighup_and_sigint_stop_sync_cleanly(big: fsql.Project, signum: int, code: int) -> None:
    store = big.store()
    try:
        sync = fsql_start(big.root, "sync")
        wait_for(lambda: store.client.hexists(meta_key(big), "pending_generation"),
                 "the first sync started writing", sync)
        returncode, stderr = stop(sync, signum)
        assert returncode == code, stderr
        assert f"interrupted by {signal.Signals(signum).name}" in stderr
        assert not store.client.exists(store.lock_key)
        assert not store.client.hexists(meta_key(big), "generation")  # nothing published
    finally:
        store.close()


def test_sigterm_stops_build_cleanly(big: fsql.Project) -> None:
    assert fsql_run(big.root, "build", "--no-test").returncode == 0
    out = big.paths.training_sets
    published = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert "big_training.parquet" in published
    build = fsql_start(big.root, "build", "--no-test")
    wait_for(lambda: any(p.name.endswith(".tmp") for p in out.iterdir()),
             "the build started writing", build)
    returncode, stderr = stop(build, signal.SIGTERM)
    assert returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} \
        == published  # previous outputs untouched, no temporary file left
    assert fsql_run(big.root, "build", "--no-test").returncode == 0  # the file is free


def test_overlapping_syncs_one_waits_for_the_next_run(big: fsql.Project) -> None:
    first = fsql_start(big.root, "sync")
    wait_for(lambda: lock_held(big), "the first sync took the lock", first)
    second = fsql_run(big.root, "sync")
    assert second.returncode == 75, second.stderr  # the lock, not the DuckDB file (exit 3)
    assert "another fsql sync" in second.stderr.lower() or "lock" in second.stderr
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr


@contextmanager
def holding(database: Path, read_only: bool) -> Iterator[None]:
    """Another process with ``database`` open (read-write: what `fsql build` does)."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
            "print('open', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(database),
                               "ro" if read_only else "rw"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        yield
    finally:
        holder.communicate("", timeout=30)


def test_read_verbs_run_while_a_build_holds_the_file(big: fsql.Project) -> None:
    root = big.root
    sql = root / "models" / "spine.sql"  # a short training set: this test is about the file
    sql.write_text(sql.read_text().rstrip() + " LIMIT 10\n")
    assert fsql_run(root, "build", "--no-test").returncode == 0
    assert fsql_run(root, "sync").returncode == 0
    database = big.target.offline.path
    with holding(database, read_only=False):
        verbs = [["compile"], ["test"], ["freshness"], ["verify", "--sample", "100"], ["diff"],
                 ["sync"]]
        running = [(verb, fsql_start(root, *verb)) for verb in verbs]  # side by side, too
        for verb, process in running:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, (verb, stderr)  # they never open the file
        build = fsql_run(root, "build", "--no-test")
        assert build.returncode == 75, build.stderr
        assert f"DuckDB database {database} is in use" in build.stderr
        assert "try again" in build.stderr


def table_source_project(make_project: MakeProject, table: str) -> fsql.Project:
    """A view over ``table``, a table of the project's DuckDB file (``target/test.duckdb``),
    which holds one row."""
    import duckdb

    project = make_project({
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables: [{{name: f, table: {table}}}]
            """,
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.yml": """
            feature_view:
              entity: user
              timestamp: ts
              features: [{name: score, type: int64}]
            """,
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
    })
    database = project.target.offline.path
    database.parent.mkdir(parents=True)
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE raw_f AS SELECT 1::BIGINT AS user_id, "
                    "TIMESTAMP '2024-01-01' AS ts, 7::BIGINT AS score")
    return project


@pytest.mark.parametrize("table", ["raw_f", "main.raw_f", "test.raw_f", "test.main.raw_f"])
def test_table_source_names_mean_the_same_when_reading(make_project: MakeProject,
                                                       table: str) -> None:
    project = table_source_project(make_project, table)
    project.compile(write=False)  # binds the view's SQL to the attached table
    project.build()  # and the same name in the read-write session


def test_table_source_is_read_through_a_read_only_attachment(make_project: MakeProject
                                                             ) -> None:
    import duckdb

    project = table_source_project(make_project, "main.raw_f")
    database = project.target.offline.path
    assert fsql_run(project.root, "test").returncode == 0
    with holding(database, read_only=True):  # readers share the file
        assert fsql_run(project.root, "compile").returncode == 0
        build = fsql_run(project.root, "build")  # the writer waits for the readers
        assert build.returncode == 75, build.stderr
    with holding(database, read_only=False):
        done = fsql_run(project.root, "test")
        assert done.returncode == 75, done.stderr
        assert f"DuckDB database {database} is in use" in done.stderr
        assert "Traceback" not in done.stderr
    assert fsql_run(project.root, "build").returncode == 0
    with duckdb.connect(str(database), read_only=True) as con:  # build wrote it
        assert con.sql("SELECT count(*) FROM v").fetchall() == [(1,)]
