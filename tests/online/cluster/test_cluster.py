"""The Redis Cluster store (``type: redis_cluster``) on real clusters of redis-servers: key
design, ``fsql verify`` and health, a master restarted, flushed or failed over mid-sync, config
errors. (tests/online/test_sync.py and test_http.py run on the session's cluster too, and the
killed-sync tests of tests/online/test_robustness.py on a cluster of their own.)

A run that cannot prove every master still holds every write it made, on the cluster it
started on, must fail (exit 4) without publishing or moving the watermark, and the next run
must repair the view; the final state is compared with the brute-force reference.
"""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import fsql
from fsql.errors import ConfigError
from tests.conftest import MakeProject, online_profile
from tests.online.scores import scores_project, write_scores
from tests.online.test_robustness import (
    assert_reference,
    control,
    meta,
    read_all,
    sync_writing,
    synced_v1,
    versioned,
    versions,
    wait_until,
)
from tests.redis_server import RedisClusterServers, RedisServer, free_port

N = 20_000


def keys_by_master(cluster: RedisClusterServers, pattern: str) -> dict[int, list[str]]:
    """The keys matching ``pattern`` on each master (by port)."""
    return {m.port: [k.decode() for k in m.client().scan_iter(match=pattern, count=5000)]
            for m in cluster.masters()}


# -- key design ------------------------------------------------------------------------------

def synced_shop(online_template: Path, tmp_path: Path, url: str) -> fsql.Project:
    """A private copy of the example project, its online store the cluster at ``url``,
    synced."""
    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", url))
    project = fsql.Project(root)
    project.sync()
    return project


def test_keys_spread_by_entity_views_of_an_entity_share_a_slot(
        online_template: Path, tmp_path: Path, redis_cluster: RedisClusterServers) -> None:
    project = synced_shop(online_template, tmp_path, redis_cluster.url)
    namespace = project.target.online.namespace
    values = keys_by_master(redis_cluster, f"{namespace}:v1:*")
    total = sum(len(v) for v in values.values())
    assert total > 5000
    for port, found in values.items():  # ~1/3 each (16384 slots over 3 masters)
        assert 0.25 < len(found) / total < 0.42, (port, len(found), total)
    tags: dict[str, set[int]] = {}
    views: Counter[str] = Counter()
    for port, found in values.items():
        for key in found:
            tag = key[key.index("{") + 1:key.index("}")]
            tags.setdefault(tag, set()).add(port)
            views[tag] += 1
    assert all(len(ports) == 1 for ports in tags.values())  # an entity's views: one master
    assert max(views.values()) >= 2  # (customers have several views)
    control_keys = keys_by_master(redis_cluster, f"{{{namespace}}}:*")
    assert [len(v) > 0 for v in control_keys.values()].count(True) == 1  # the control slot
    assert sum(len(v) for v in control_keys.values()) == len(
        [v for v in project.load().views.values() if v.online])  # metas; lock, counters gone


def test_verify_and_health_on_a_cluster(online_template: Path, tmp_path: Path,
                                        redis_cluster: RedisClusterServers) -> None:
    """The training value at t equals the online value at t (``fsql verify``'s check)."""
    project = synced_shop(online_template, tmp_path, redis_cluster.url)
    checks = project.verify(sample=300, seed=7)
    assert checks and all(c.mismatched == 0 for c in checks), [c.to_json() for c in checks]
    assert sum(c.matched for c in checks) > 300
    service = project.online_service()
    try:
        ok, body = service.health(2.0)
        assert ok and body == {"status": "ok"}, body
        assert set(service.sync_state(2.0) or {}) == {c.view for c in checks}
    finally:
        service.close()


# -- a master restarted, flushed or failed over mid-sync ------------------------------------

def restart(cluster: RedisClusterServers, victim: RedisServer) -> None:
    """kill -9 and restart (from its AOF: it lost nothing, but it is a new incarnation)."""
    victim.stop(kill=True)
    victim.start()
    cluster.wait_ok()


def flush(cluster: RedisClusterServers, victim: RedisServer) -> None:
    """FLUSHALL: same run_id, same slots; only the run's write counter there shows the loss."""
    victim.client().flushall()


def fail_over(cluster: RedisClusterServers, victim: RedisServer) -> None:
    """kill -9: its replica takes over its slots."""
    victim.stop(kill=True)
    wait_until(lambda: len(cluster.masters()) == 3, 30, "a replica to take over")
    cluster.wait_ok()


def fail_over_control(cluster: RedisClusterServers, victim: RedisServer) -> None:
    """``fail_over`` of the control slot's master (the lock, the metas) instead."""
    fail_over(cluster, victim)


@pytest.mark.parametrize(("disrupt", "mode", "message"), [
    (restart, "full", "Redis Cluster changed during this sync"),
    (restart, "incremental", "Redis Cluster changed during this sync"),
    (flush, "full", "lost writes of this sync"),
    (fail_over, "full", "Redis Cluster changed during this sync"),
    (fail_over_control, "incremental", "Redis Cluster changed during this sync"),
], ids=["restart-full", "restart-incremental", "flush-full", "failover-full",
        "failover-control-incremental"])
def test_a_master_disrupted_mid_sync_fails_the_run_and_the_next_run_repairs(
        make_project: MakeProject, tmp_path: Path, disrupt: Callable[..., None], mode: str,
        message: str) -> None:
    """SIGSTOP the sync mid-way, disrupt a master (not the control slot's unless the drill
    says so), SIGCONT: the run cannot show that the cluster still holds its writes, so it fails
    (exit 4) and neither publishes (full) nor moves the watermark (incremental); a full refresh
    then repairs."""
    cluster = RedisClusterServers(tmp_path / "cluster", persistent=True,
                                  replicas=0 if disrupt in (restart, flush) else 1).start()
    try:
        users = list(range(N))
        project, data, base, _ = synced_v1(make_project, cluster.url, tmp_path, users,
                                           batch_size=2000)
        before = meta(cluster.client(), project)
        v2 = versioned(users, 2, base)
        write_scores(data, v2)
        service = project.online_service(max_entities=N)  # serving through the disruption
        service.get(["scores"], {"user_id": users[:10]})
        proc = sync_writing(project, cluster, *(["--full-refresh"] if mode == "full" else []),
                            batches=300, batch_size=50)
        lock_master = cluster.master_of(f"{control(project)}:lock")
        victim = lock_master if disrupt is fail_over_control else next(
            m for m in cluster.masters() if m is not lock_master)
        proc.send_signal(signal.SIGSTOP)
        disrupt(cluster, victim)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 4, err
        assert message in " ".join(err.split()), err
        after = meta(cluster.client(), project)
        assert (after["generation"], after["watermark"]) == (before["generation"],
                                                            before["watermark"])
        if disrupt is not flush:  # (a flushed master lost version 1 there too)
            served = service.get(["scores"], {"user_id": users})  # on the new layout
            assert set(versions(served, base).values()) <= {1, 2}
            assert None not in versions(served, base).values()
        service.close()
        project.sync(full_refresh=True)
        assert_reference(read_all(project, users), v2)
    finally:
        cluster.stop()


# -- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize(("online", "message"), [
    ("type: redis_cluster", "needs startup_nodes"),
    ("type: redis_cluster\n        startup_nodes: [localhost]", "must be host:port"),
    ("type: redis_cluster\n        startup_nodes: ['a:1']\n        url: redis://a:1",
     "takes startup_nodes, not url"),
    ("type: redis_cluster\n        startup_nodes: ['a:1']\n        namespace: x{y}",
     "must not contain"),
    ("type: redis\n        url: redis://a:1\n        startup_nodes: ['a:1']",
     "for type redis_cluster only"),
])
def test_bad_cluster_config_is_one_clear_error(make_project: MakeProject, tmp_path: Path,
                                               online: str, message: str) -> None:
    profile = (f"test:\n  target: dev\n  outputs:\n    dev:\n      offline: {{type: duckdb}}\n"
               f"      online:\n        {online}\n")
    project = scores_project(make_project, tmp_path / "x.parquet", "redis://127.0.0.1:1/0")
    (project.root / "profiles.yml").write_text(profile)
    with pytest.raises(ConfigError, match=message) as err:
        fsql.Project(project.root)
    assert "profiles.yml" in str(err.value)


def test_password_is_never_shown(make_project: MakeProject, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Nor in the error for a cluster that does not answer (nothing listens there)."""
    monkeypatch.setenv("FSQL_ENV_SECRET_CLUSTER", "hunter2-cluster")
    project = scores_project(make_project, tmp_path / "x.parquet",
                             f"redis-cluster://127.0.0.1:{free_port()}",
                             password="\"{{ env_var('FSQL_ENV_SECRET_CLUSTER') }}\"",
                             socket_timeout=1)
    assert project.target.online.password == "hunter2-cluster"
    assert "hunter2" not in project.target.online.display
    assert "hunter2" not in repr(project.target.online)
    with pytest.raises(fsql.OnlineStoreError, match="cannot reach the online store") as err:
        project.store()
    assert "hunter2" not in str(err.value)
