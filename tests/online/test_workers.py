"""``fsql serve --workers N`` as a real process: every worker answers, /metrics sums them all,
SIGHUP reaches each, a killed worker is replaced, SIGTERM stops them all (exit 0)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from tests.conftest import MakeProject
from tests.online.served import URL, scrape, serving, wait_until
from tests.online.test_serving_hardening import SCORES, keep_mtime, scores_synced, values
from tests.redis_server import RedisServer


def test_two_workers_share_the_port_the_metrics_and_the_signals(
        make_project: MakeProject, redis_server: RedisServer, tmp_path: Path) -> None:
    project = scores_synced(make_project, redis_server.url, tmp_path)
    yml = project.root / "features" / "scores.yml"
    with serving(project.root, "--workers", "2") as server:
        parent = psutil.Process(server.proc.pid)
        wait_until(lambda: len(parent.children()) == 2, 30, "two workers")
        workers = {child.pid for child in parent.children()}

        # every request on a new connection: the kernel hands them to both workers
        answered: dict[int, int] = {}
        features = 0
        while set(answered) != workers:
            assert features < 500, f"only workers {set(answered)} of {workers} answered"
            health = server.get("/health")
            assert health.status_code == 200
            pid = int(health.headers["fsql-worker"])
            answered[pid] = answered.get(pid, 0) + 1
            assert values(server.post(SCORES))["score"][0] == [10, 20, None]
            features += 1

        # any worker's scrape counts the requests of both
        for _ in range(6):
            samples = scrape(server.get("/metrics").text)
            requests = samples["fsql_http_requests_total"]
            assert requests[(("code", "200"), ("endpoint", "/health"), ("service", ""))] \
                == sum(answered.values())
            assert requests[(("code", "200"), ("endpoint", URL), ("service", "adhoc"))] \
                == features
            assert samples["fsql_http_request_duration_seconds_count"][
                (("endpoint", URL), ("service", "adhoc"))] == features
            assert {dict(labels)["view"] for labels in
                    samples["fsql_view_last_sync_timestamp_seconds"]} == {"scores"}

        # SIGHUP reaches every worker: a change only a reload can see (same mtime and size)
        keep_mtime(yml, yml.read_text().replace("ttl: 2h", "ttl: 1s"))
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: all(values(server.post(SCORES))["score"][1]
                               == ["EXPIRED", "EXPIRED", "MISSING"] for _ in range(40)),
                   15, "every worker to reload")

        # a worker that dies is replaced; the other one keeps serving meanwhile
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: len(parent.children()) == 2
                   and killed not in {c.pid for c in parent.children()}, 15, "a new worker")
        # the new worker, forked from the parent, reloads the definitions SIGHUP changed
        wait_until(lambda: all(values(server.post(SCORES))["score"][1]
                               == ["EXPIRED", "EXPIRED", "MISSING"] for _ in range(40)),
                   15, "the new worker to reload")
        current = [psutil.Process(c.pid) for c in parent.children()]

        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)
    assert server.proc.returncode == 0, server.stderr
    assert time.monotonic() - started < 10
    gone, alive = psutil.wait_procs(current, timeout=5)
    assert not alive, "a worker outlived fsql serve"
    # one reload per worker on SIGHUP, and one by the new worker
    assert server.stderr.count("reloaded the definitions") == 3, server.stderr
    assert f"worker {killed} was killed by SIGKILL; starting another" in server.stderr
    assert "Traceback" not in server.stderr
