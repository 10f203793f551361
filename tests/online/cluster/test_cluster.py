"""The Redis Cluster store (``type: redis_cluster``) on a real 3-master cluster."""

from __future__ import annotations

from pathlib import Path

import fsql
from tests.conftest import MakeProject
from tests.online.test_robustness import assert_reference, read_all, synced_v1
from tests.redis_server import RedisClusterServers


def test_smoke(make_project: MakeProject, redis_cluster: RedisClusterServers,
               tmp_path: Path) -> None:
    users = list(range(3000))
    project, data, base, v1 = synced_v1(make_project, redis_cluster.url, tmp_path, users)
    assert_reference(read_all(project, users + [10**6]), v1)
    assert isinstance(project, fsql.Project)
