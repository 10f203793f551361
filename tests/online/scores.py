"""A small online project whose source (one Parquet file) tests rewrite between syncs: view
``scores`` of entity ``user`` (key ``user_id``), created timestamp, 2h ttl. Shared by the online
test modules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import fsql
from tests.conftest import MakeProject, online_profile

VIEW_FILES = {
    "features/entities.yml": """
        entities:
          - name: user
            join_keys: [user_id]
        """,
    "features/scores.yml": """
        feature_view:
          entity: user
          timestamp: ts
          created_timestamp: created
          ttl: 2h
          online: true
          features:
            - {name: score, type: int64}
            - {name: label, type: string}
        """,
    "features/scores.sql":
        "SELECT user_id, ts, created, score, label FROM {{ source('raw', 'scores') }}\n",
}


Score = tuple[int, dt.datetime, dt.datetime | None, int | None, str]


def write_scores(path: Path, rows: list[Score]) -> None:
    table = pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int64()),
        "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
        "created": pa.array([r[2] for r in rows], pa.timestamp("us")),
        "score": pa.array([r[3] for r in rows], pa.int64()),
        "label": pa.array([r[4] for r in rows], pa.string()),
    })
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def scores_project(make_project: MakeProject, data: Path, redis_url: str,
                   name: str = "test", **online: object) -> fsql.Project:
    """The project, reading ``data``, its online store in a fresh namespace at ``redis_url``
    (``online`` adds profile options: batch_size, lock_timeout...)."""
    return make_project({
        **VIEW_FILES,
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables:
                  - name: scores
                    path: {data}
            """,
        "profiles.yml": online_profile(name, redis_url, **online),
    }, name=name)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def get_scores(project: fsql.Project, users: list[int]) -> dict[str, list[Any]]:
    return project.online_features(["scores"], {"user_id": users}).to_dict()
