"""Shared fixtures: throwaway projects written from dicts (dbt functional style)."""

from __future__ import annotations

import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import fsql
from tests.example import copy_example
from tests.redis_server import RedisClusterServers, RedisServer

if TYPE_CHECKING:
    import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent

MakeProject = Callable[..., fsql.Project]


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def raw_sources(**tables: Path) -> str:
    """``models/sources.yml`` declaring source ``raw`` with one table per Parquet file."""
    lines = "".join(f"      - {{name: {name}, path: {path}}}\n" for name, path in tables.items())
    return f"sources:\n  - name: raw\n    tables:\n{lines}"


def score_project(make_project: MakeProject, data: Path, view: pa.Table, spine: pa.Table
                  ) -> fsql.Project:
    """View ``v`` (entity ``user``, ttl 1h, feature ``score`` int64) selecting everything from
    source ``raw.f``, the rows ``view``; training set ``t`` on the spine source ``raw.s``, the
    rows ``spine``. Both are written as Parquet files to ``data``."""
    import pyarrow.parquet as pq

    pq.write_table(view, data / "f.parquet")
    pq.write_table(spine, data / "s.parquet")
    return make_project({
        "models/sources.yml": raw_sources(f=data / "f.parquet", s=data / "s.parquet"),
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.yml": """
            feature_view:
              entity: user
              timestamp: ts
              ttl: 1h
              features: [{name: score, type: int64}]
            """,
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/t.yml": """
            training_sets:
              - {name: t, spine: {source: raw.s, timestamp: ts}, features: [v]}
            """,
    })


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """``make_project({"features/x.yml": "...", ...})`` -> an ``fsql.Project`` in tmp_path.

    ``fsql_project.yml`` is added unless given; there is no profiles.yml, so the project runs on
    the embedded default (a DuckDB file under its target/).
    """

    def make(files: dict[str, str], name: str = "test") -> fsql.Project:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        write_files(root, {"fsql_project.yml": f"name: {name}\n", **files})
        return fsql.Project(root)

    return make


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with demo data, made once per session."""
    return copy_example(tmp_path_factory.mktemp("example") / "shop")


@pytest.fixture
def example_dir(example_template: Path, tmp_path: Path) -> Path:
    """A private copy of the example project for one test (safe to modify)."""
    root = tmp_path / "shop"
    shutil.copytree(example_template, root, ignore=shutil.ignore_patterns("target"))
    return root


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server started for this test session on a free loopback port. Tests share it
    through unique namespaces, so nothing is flushed."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster started for this test session (shared like ``redis_server``,
    through unique namespaces)."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["redis", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The session's redis-server, then its Redis Cluster (``online_profile`` takes either)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


def online_profile(project_name: str, url: str, namespace: str | None = None,
                   offline: str = "{type: duckdb}", **online: object) -> str:
    """profiles.yml text for a project whose online store is the Redis at ``url`` (and whose
    offline engine is ``offline``, a YAML flow mapping)."""
    extra = "".join(f"\n        {k}: {v}" for k, v in online.items())
    store = (f"type: redis\n        url: {url}" if not url.startswith("redis-cluster://") else
             f"type: redis_cluster\n        startup_nodes: [{url.split('//', 1)[1]}]")
    return (f"{project_name}:\n  target: dev\n  outputs:\n    dev:\n"
            f"      offline: {offline}\n"
            f"      online:\n        {store}\n"
            f"        namespace: {namespace or 'test-' + uuid.uuid4().hex[:12]}{extra}\n")


@pytest.fixture(scope="session")
def online_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with demo data ending today (online values are fresh)."""
    return copy_example(tmp_path_factory.mktemp("online-example") / "shop", end=None)


@pytest.fixture
def online_example(online_template: Path, tmp_path: Path, redis_server: RedisServer
                   ) -> fsql.Project:
    """A private copy of the example project, its online store in its own namespace of the
    session's redis-server."""
    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", redis_server.url))
    return fsql.Project(root)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*/expected/ from the current compiled SQL "
                     "instead of comparing with it")
