"""fsql freshness: data age and sync age against each view's SLA."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from tests.quality.conftest import OnlineViewProject


def write(path: Path, ages_hours: list[float]) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    pq.write_table(pa.table({
        "user_id": pa.array(range(len(ages_hours)), pa.int64()),
        "ts": pa.array([now - dt.timedelta(hours=h) for h in ages_hours], pa.timestamp("us")),
        "score": pa.array([1] * len(ages_hours), pa.int64())}), path)


@pytest.fixture
def project(online_view_project: OnlineViewProject) -> fsql.Project:
    return online_view_project("""
        feature_view:
          entity: user
          timestamp: ts
          online: true
          freshness: 2h
          features: [{name: score, type: int64}]
        """)


def test_fresh_data_but_never_synced_breaches(project: fsql.Project, tmp_path: Path) -> None:
    write(tmp_path / "f.parquet", [5, 1])
    [result] = project.freshness()
    assert result.breached and result.reason == "never synced"
    assert result.data_age is not None and 3500 < result.data_age < 3700


def test_synced_and_fresh_is_ok_until_time_passes(project: fsql.Project, tmp_path: Path
                                                  ) -> None:
    write(tmp_path / "f.parquet", [1])
    project.sync()
    [ok] = project.freshness()
    assert not ok.breached and ok.reason == "ok" and ok.last_sync is not None
    [later] = project.freshness(now=time.time() + 3 * 3600)
    assert later.breached
    assert "newest event is 4h old" in later.reason and "last sync was 3h ago" in later.reason


def test_stale_data_breaches_and_cli_exits_5(project: fsql.Project, tmp_path: Path) -> None:
    write(tmp_path / "f.parquet", [3, 5])
    project.sync()
    fsql_bin = str(Path(sys.executable).parent / "fsql")
    done = subprocess.run([fsql_bin, "--project-dir", str(project.root), "freshness"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert "freshness SLA breached: v" in done.stderr
    assert "BREACH" in done.stdout
    as_json = subprocess.run([fsql_bin, "--project-dir", str(project.root), "freshness",
                              "--json"], capture_output=True, text=True, timeout=60)
    import json

    [row] = json.loads(as_json.stdout)
    assert row["breached"] is True and row["sla_seconds"] == 7200
