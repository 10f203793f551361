"""fsql verify: online values against the training path, on real DuckDB and Redis."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from fsql.online.keys import ViewLayout
from tests.quality.conftest import OnlineViewProject


@pytest.fixture
def project(online_view_project: OnlineViewProject, tmp_path: Path) -> fsql.Project:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    n = 200
    pq.write_table(pa.table({
        "user_id": pa.array([i % 50 for i in range(n)], pa.int64()),
        "ts": pa.array([now - dt.timedelta(minutes=n - i) for i in range(n)],
                       pa.timestamp("us")),
        "created": pa.array([now - dt.timedelta(minutes=n - i) for i in range(n)],
                            pa.timestamp("us")),
        "score": pa.array([i if i % 7 else None for i in range(n)], pa.int64()),
        "ratio": pa.array([i / 3 for i in range(n)], pa.float64()),
        "grade": pa.array([f"g{i % 5}" for i in range(n)], pa.string())}),
        tmp_path / "f.parquet")
    return online_view_project("""
        feature_view:
          entity: user
          timestamp: ts
          created_timestamp: created
          ttl: 1d
          online: true
          features:
            - {name: score, type: int64}
            - {name: ratio, type: float64}
            - {name: grade, type: string}
        """)


def test_synced_store_matches_training_path(project: fsql.Project) -> None:
    project.sync()
    [check] = project.verify(sample=None)
    assert (check.entities, check.matched, check.mismatched) == (50, 50, 0)


def tamper(project: fsql.Project, user: int, position: int, value: object) -> None:
    service = project.online_service()
    try:
        service.get(["v"], {"user_id": [user]})  # learns the layout
        layout: ViewLayout = service._layouts["v"]
        store = service.store
        key = layout.key(store.meta(layout)["generation"], (user,))
        event, created, values = layout.decode(store.client.get(key))
        values[position] = value
        store.client.set(key, layout.encode(event, created, values), keepttl=True)
    finally:
        service.store.close()


@pytest.mark.parametrize(("position", "value", "feature"), [
    (0, 123456, "score"),      # a different value
    (0, 1.0, "score"),         # right value shape, wrong type (float for int64)
    (1, None, "ratio"),        # a null where the training path has a value
    (2, "g9", "grade"),
])
def test_tampered_value_is_reported(project: fsql.Project, position: int, value: object,
                                    feature: str) -> None:
    project.sync()
    tamper(project, 7, position, value)
    [check] = project.verify(sample=None)
    assert check.mismatched == 1 and check.matched == 49
    assert check.by_feature == {feature: 1}
    assert check.examples[0]["entity"] == [7]


def test_missing_online_value_is_reported_and_cli_exits_5(project: fsql.Project) -> None:
    project.sync()
    service = project.online_service()
    try:
        service.get(["v"], {"user_id": [3]})
        layout = service._layouts["v"]
        service.store.client.delete(layout.key(service.store.meta(layout)["generation"],
                                               (3,)))
    finally:
        service.store.close()
    done = subprocess.run([str(Path(sys.executable).parent / "fsql"), "--project-dir",
                           str(project.root), "verify", "--all"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert "(missing online)" in done.stdout
    assert "online values differ from the training path in: v" in done.stderr


def test_retyped_feature_is_an_error_not_a_silent_pass(project: fsql.Project) -> None:
    project.sync()
    yml = project.root / "features" / "v.yml"
    yml.write_text(yml.read_text().replace("{name: score, type: int64}",
                                           "{name: score, type: float64}"))
    sql = project.root / "features" / "v.sql"
    sql.write_text("SELECT * REPLACE (CAST(score AS DOUBLE) AS score) "
                   "FROM {{ source('raw', 'f') }}\n")
    with pytest.raises(fsql.errors.OnlineStoreError, match="written by another definition"):
        project.verify()


FSQL = str(Path(sys.executable).parent / "fsql")


def fsql_verify(project: fsql.Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(project.root), "verify", *args],
                          capture_output=True, text=True, timeout=60)


def stored(project: fsql.Project) -> tuple[ViewLayout, str]:
    """The view's layout and published generation, as a reader learns them."""
    service = project.online_service()
    try:
        service.get(["v"], {"user_id": [0]})
        layout: ViewLayout = service._layouts["v"]
        return layout, service.store.meta(layout)["generation"]
    finally:
        service.store.close()


def test_undecodable_value_is_skew_not_a_crash(project: fsql.Project) -> None:
    project.sync()
    layout, generation = stored(project)
    with closing(project.store()) as store:
        store.client.set(layout.key(generation, (5,)), b"garbage", keepttl=True)
    done = fsql_verify(project, "--all", "--json")
    assert done.returncode == 5, done.stderr  # was 70 (a ValueError in decode)
    assert "Traceback" not in done.stderr
    [check] = json.loads(done.stdout)
    assert (check["matched"], check["mismatched"]) == (49, 1)
    assert check["mismatches_by_feature"] == {"(corrupt value)": 1}
    assert check["examples"][0]["entity"] == [5]


@pytest.mark.parametrize(("field", "shift", "what"), [
    (0, dt.timedelta(days=365), "(event timestamp)"),   # future-dated: would block updates
    (1, dt.timedelta(seconds=1), "(created timestamp)"),
])
def test_tampered_header_is_skew(project: fsql.Project, field: int, shift: dt.timedelta,
                                 what: str) -> None:
    project.sync()
    layout, generation = stored(project)
    key = layout.key(generation, (7,))
    with closing(project.store()) as store:
        *header, values = layout.decode(store.client.get(key))
        header[field] += int(shift.total_seconds() * 1_000_000)
        store.client.set(key, layout.encode(*header, values), keepttl=True)  # same features
    [check] = project.verify(sample=None)
    assert (check.matched, check.mismatched, check.by_feature) == (49, 1, {what: 1})
    done = fsql_verify(project, "--all")
    assert done.returncode == 5, done.stderr
    assert f"v [7] {what}" in done.stdout


def test_each_run_samples_afresh_and_the_seed_repeats_a_sample(project: fsql.Project) -> None:
    project.sync()
    layout, generation = stored(project)
    with closing(project.store()) as store:
        for user in range(50):  # every entity differs: the examples show what was sampled
            key = layout.key(generation, (user,))
            event, created, values = layout.decode(store.client.get(key))
            store.client.set(key, layout.encode(event, created, [-1, *values[1:]]),
                             keepttl=True)

    def sampled(*args: str) -> tuple[int, list[object]]:
        done = fsql_verify(project, "--sample", "10", "--json", *args)
        assert done.returncode == 5, done.stderr
        [check] = json.loads(done.stdout)
        assert check["entities"] == check["mismatched"] == 10
        return check["seed"], [e["entity"] for e in check["examples"]]

    seed, first = sampled()
    other_seed, second = sampled()
    assert (other_seed, second) != (seed, first)  # a fixed sample would never see the rest
    assert sampled("--seed", str(seed)) == (seed, first)
    table = fsql_verify(project, "--sample", "10", "--seed", str(seed))
    assert f"│ {seed} " in table.stdout  # the table shows the seed too
