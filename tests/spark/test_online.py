"""Sync from a Spark target into a real redis-server (started by the tests): the online values
equal those synced from DuckDB, and ``verify`` finds every online value equal to the training
path's. Views of time-window aggregations too: the tile states a Spark sync stores are DuckDB's,
byte for byte, the values read at ``t`` equal the training values at ``t`` (built on Spark) and
the brute-force reference, and their data tests and ``verify`` run on Spark as on DuckDB."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fsql
from tests.conftest import MakeProject, online_profile
from tests.pit.test_pit_reference import CHECKS
from tests.pit.test_windows import (
    GAPS,
    GRID,
    OFFSETS,
    ROW,
    US,
    M,
    finish,
    project_files,
    read_at,
    sync_and_check,
    times,
    write,
)
from tests.pit.window_reference import micros
from tests.quality.test_aggregations import data_tests_now, live_project, verify_aggregations_now
from tests.redis_server import RedisServer
from tests.spark.test_project import FILES, _project

ONLINE = {"features/customer_orders.yml": FILES["features/customer_orders.yml"].replace(
    "freshness: 30d\n", "freshness: 30d\n          online: true\n")}


def _profile(root: Path, url: str, offline: str) -> None:
    (root / "profiles.yml").write_text(
        f"sparky:\n  target: dev\n  outputs:\n    dev:\n      offline: {offline}\n"
        f"      online: {{type: redis, url: '{url}', namespace: t-{uuid.uuid4().hex[:10]}}}\n")


def _synced(root: Path, url: str, offline: str, files: dict[str, str] | None = None
            ) -> tuple[fsql.Project, dict[str, Any]]:
    project = _project(root, {**ONLINE, **(files or {})}, profile=False)
    _profile(root, url, offline)
    project = fsql.Project(root)
    result = project.sync(now=1_800_000_000)
    [view] = result.views
    assert view.entities == 7 and view.written == 7
    values = project.online_features(["customer_orders"],
                                     {"customer_id": list(range(8))}).to_dict()
    return project, values


def test_sync_from_spark_equals_sync_from_duckdb(spark: Any, tmp_path: Path,
                                                 redis_server: RedisServer) -> None:
    _, from_spark = _synced(tmp_path / "s", redis_server.url,
                            "{type: spark, master: 'local[2]'}")
    _, from_duck = _synced(tmp_path / "d", redis_server.url, "{type: duckdb}")
    assert from_spark == from_duck
    assert any(v is not None for v in from_spark["amount"])


def test_sync_of_a_view_with_a_created_timestamp_equals_duckdb(
        spark: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    # the latest-row query orders by (event, created) with null created times losing (half
    # the customers have none)
    files = {"features/customer_orders.yml": ONLINE["features/customer_orders.yml"].replace(
        "timestamp: order_ts\n", "timestamp: order_ts\n          created_timestamp: order_day\n"),
        "features/customer_orders.sql": FILES["features/customer_orders.sql"].replace(
        "amount_bucket\n",
        "amount_bucket, CASE WHEN customer_id % 2 = 0 THEN order_day END AS order_day\n")}
    _, from_spark = _synced(tmp_path / "s", redis_server.url,
                            "{type: spark, master: 'local[2]'}", files)
    _, from_duck = _synced(tmp_path / "d", redis_server.url, "{type: duckdb}", files)
    assert from_spark == from_duck
    assert any(v is not None for v in from_spark["amount"])


# -- views of time-window aggregations: their values at one instant ----------------------------

SPARK = "{type: spark, master: 'local[2]'}"
CARDS = (1, 2, 3, 4)


def _windows(make_project: MakeProject, url: str, offline: str, name: str) -> fsql.Project:
    """The windows project of tests/pit/test_windows.py on engine ``offline``, online in the
    Redis at ``url`` (a namespace of its own)."""
    project = make_project(project_files(), name=name)
    (project.root / "profiles.yml").write_text(online_profile(name, url, offline=offline))
    return fsql.Project(project.root)


@pytest.fixture
def engines(make_project: MakeProject, spark: Any, redis_server: RedisServer
            ) -> tuple[fsql.Project, fsql.Project]:
    """The windows project on Spark and on DuckDB."""
    return (_windows(make_project, redis_server.url, SPARK, "onspark"),
            _windows(make_project, redis_server.url, "{type: duckdb}", "onduck"))


def _raw_states(project: fsql.Project) -> list[bytes | None]:
    """The stored value (header and tile states) of each card, as Redis holds it."""
    service = project.online_service()
    try:
        service.get(["w"], {"card": [1]})  # loads the view's layout
        layout = service._layouts["w"]
        [(_, raws)] = service.store.read([(layout, [(card,) for card in CARDS])])
    finally:
        service.close()
    return raws


#: every aggregation with values in its windows at GRID[20] (cards 1 and 2), nulls among them
#: (card 2's every third row), an entity with rows only outside every window (card 3)
BUSY = [{"card": card, "ts": GRID[i] + (US if i % 4 == 0 else dt.timedelta(0)),
         "created_after": i % 2,
         "f": None if card == 2 and i % 3 == 0 else 0.25 * i,
         "q": None if card == 2 and i % 3 == 0 else i - 10,
         "p": None if card == 2 and i % 3 == 0 else Decimal(i) / 4,
         "m": None if card == 2 and i % 3 == 0 else "ab"[i % 2],
         "at": None if card == 2 and i % 3 == 0 else GRID[i % 5]}
        for i in range(8, 21) for card in (1, 2)] + [
    {"card": 3, "ts": GRID[0], "created_after": None, "f": 1.5, "q": 1, "p": None, "m": "a",
     "at": None}]


@settings(CHECKS, max_examples=6)
@given(rows=st.lists(ROW, max_size=25), as_of=times(null=False),
       offsets=st.lists(OFFSETS, min_size=1, max_size=3))
@example(rows=BUSY, as_of=GRID[20], offsets=[dt.timedelta(0), 7 * M, 65 * M])
def test_aggregation_sync_from_spark_stores_the_same_bytes_as_from_duckdb(
        engines: tuple[fsql.Project, fsql.Project], rows: list[dict[str, Any]],
        as_of: dt.datetime, offsets: list[dt.timedelta]) -> None:
    # every function over int64, float64 (quarter multiples: exact sums in any order),
    # decimal, string and timestamp columns, several hops (the groups' outer join), null
    # values in some tiles, entities whose tiles all fell out of the windows
    known = [r for r in finish([dict(r) for r in rows]) if r["ts"] is None or r["ts"] <= as_of]
    for project in engines:
        write(project.root / "data" / "txns.parquet", known)
        result = project.sync(now=micros(as_of) / 1_000_000, full_refresh=True,
                              allow_drop=True)
        assert result.views[0].mode == "full"
    on_spark, on_duck = engines
    assert _raw_states(on_spark) == _raw_states(on_duck), known
    for offset in offsets:
        assert read_at(on_spark, as_of + offset) == read_at(on_duck, as_of + offset), offset


@pytest.fixture
def spark_windows(make_project: MakeProject, spark: Any, redis_server: RedisServer
                  ) -> fsql.Project:
    return _windows(make_project, redis_server.url, SPARK, "onspark")


@settings(CHECKS, max_examples=8)
@given(first=st.lists(ROW, max_size=20), more=st.lists(ROW, max_size=10),
       as_of=times(null=False), gap=GAPS, offsets=st.lists(OFFSETS, min_size=1, max_size=2))
def test_online_value_at_t_equals_training_value_at_t_on_spark(
        spark_windows: fsql.Project, first: list[dict[str, Any]], more: list[dict[str, Any]],
        as_of: dt.datetime, gap: dt.timedelta, offsets: list[dt.timedelta]) -> None:
    # synced from Spark (full, then incremental), read at t: the training value at t built
    # on Spark, and the brute-force reference
    sync_and_check(spark_windows, first, more, as_of, gap, offsets)


def test_data_tests_of_an_aggregation_view_on_spark_equal_duckdb(
        make_project: MakeProject, spark: Any, redis_server: RedisServer) -> None:
    on_spark = data_tests_now(live_project(make_project, redis_server.url, SPARK, "onspark"))
    on_duck = data_tests_now(live_project(make_project, redis_server.url, name="onduck"))
    assert ([(r.status, r.failing, r.failing_keys, r.examples) for r in on_spark]
            == [(r.status, r.failing, r.failing_keys, r.examples) for r in on_duck])


def test_verify_of_an_aggregation_view_on_spark(make_project: MakeProject, spark: Any,
                                                redis_server: RedisServer) -> None:
    verify_aggregations_now(live_project(make_project, redis_server.url, SPARK, "onspark"))


def test_verify_on_spark(spark: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    project, _ = _synced(tmp_path / "s", redis_server.url, "{type: spark, master: 'local[2]'}")
    [check] = project.verify(sample=None)
    assert (check.entities, check.matched, check.mismatched) == (7, 7, 0)
