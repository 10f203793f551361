"""Fixtures shared by the quality tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import fsql
from tests.conftest import MakeProject, online_profile
from tests.redis_server import RedisServer

OnlineViewProject = Callable[[str], fsql.Project]


@pytest.fixture
def online_view_project(make_project: MakeProject, tmp_path: Path, redis_server: RedisServer
                        ) -> OnlineViewProject:
    """``online_view_project(view_yml)``: a project with entity ``user`` (key ``user_id``) and
    one view ``v`` declared by ``view_yml``, selecting everything from the Parquet file
    ``tmp_path / "f.parquet"`` (source ``raw.f``), its online store in a fresh namespace of
    the session's Redis."""

    def make(view_yml: str) -> fsql.Project:
        return make_project({
            "models/sources.yml": f"""
                sources:
                  - name: raw
                    tables: [{{name: f, path: {tmp_path / 'f.parquet'}}}]
                """,
            "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
            "features/v.yml": view_yml,
            "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
            "profiles.yml": online_profile("test", redis_server.url),
        })

    return make
