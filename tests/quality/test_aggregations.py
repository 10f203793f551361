"""Views of aggregations through the rest of the workflow: compile errors that name the file
and line, data tests on their current values, breaking diffs, ``fsql verify`` at the current
time, and ``fsql get`` (a subprocess) reading values that decay without a sync."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest

import fsql
from fsql import quality
from fsql.errors import DefinitionError, ProjectErrors
from fsql.online.keys import HEADER
from tests.conftest import MakeProject, online_profile
from tests.pit.test_windows import VIEW_YML, finish, project_files, write
from tests.redis_server import RedisServer

M = dt.timedelta(minutes=1)


def rows_until_now() -> list[dict[str, Any]]:
    """Card 1: a row every 7 minutes over the last 3 hours; card 2: one row 2 minutes ago
    (inside its 10-minute windows, whose old end moves in 5-minute hops, for 13 minutes)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    rows = [{"card": 1, "ts": now - i * 7 * M, "created_after": 0, "f": 0.5 * i, "q": i,
             "p": Decimal("1.25"), "m": "abc"[i % 3], "at": None} for i in range(26)]
    rows.append({"card": 2, "ts": now - 2 * M, "created_after": None, "f": None, "q": 5,
                 "p": None, "m": None, "at": now})
    return finish(rows)


@pytest.fixture
def live(make_project: MakeProject, redis_server: RedisServer) -> fsql.Project:
    return live_project(make_project, redis_server.url)


def live_project(make_project: MakeProject, url: str, offline: str = "{type: duckdb}",
                 name: str = "test") -> fsql.Project:
    """The windows project on engine ``offline``, online in the Redis at ``url``, holding
    ``rows_until_now``."""
    project = make_project(project_files(), name=name)
    (project.root / "profiles.yml").write_text(online_profile(name, url, offline=offline))
    project = fsql.Project(project.root)  # with the profile just written
    write(project.root / "data" / "txns.parquet", rows_until_now())
    return project


def compile_error(make_project: MakeProject, yml: str) -> DefinitionError:
    project = make_project({**project_files(), "features/w.yml": yml})
    write(project.root / "data" / "txns.parquet", rows_until_now())
    with pytest.raises((DefinitionError, ProjectErrors)) as info:
        project.compile(write=False)
    err = info.value
    if isinstance(err, ProjectErrors):
        assert len(err.errors) == 1, err.errors
        err = err.errors[0]
    assert isinstance(err, DefinitionError)
    return err


BASE = ("feature_view:\n  entity: card\n  timestamp: ts\n  online: true\n"
        "  aggregations:\n")


@pytest.mark.parametrize(("entry", "line", "message"), [
    ("    - {name: x, function: median, column: q, window: 1h}\n", 6, "unknown function"),
    ("    - {name: x, function: sum, column: q, window: 1h, type: float64}\n", 6,
     "declared float64 but sum(q) gives int64"),
    ("    - {name: x, function: sum, column: nope, window: 1h, type: int64}\n", 6,
     "reads column 'nope'"),
    ("    - {name: x, function: sum, column: m, window: 1h, type: string}\n", 6,
     "sum does not apply to column 'm'"),
    ("    - {name: x, function: count, window: 1h, hop: 7m}\n", 6,
     "whole number of hops"),
    ("    - {name: x, function: max, column: q, window: 1h}\n", 6, "declare its 'type'"),
    ("    - {name: q, function: count, window: 1h}\n", 6, "has the name of a column"),
])
def test_bad_aggregations_name_file_and_line(make_project: MakeProject, entry: str, line: int,
                                             message: str) -> None:
    err = compile_error(make_project, BASE + entry)
    assert err.path == "features/w.yml" and err.line == line, (err.path, err.line, str(err))
    assert message in str(err), str(err)


def test_features_and_aggregations_together_are_refused(make_project: MakeProject) -> None:
    err = compile_error(make_project, BASE + "    - {name: x, function: count, window: 1h}\n"
                        "  features:\n    - {name: q, type: int64}\n")
    assert "either 'features'" in str(err) and err.path == "features/w.yml"
    err = compile_error(make_project, BASE.replace("  online", "  ttl: 1d\n  online")
                        + "    - {name: x, function: count, window: 1h}\n")
    assert "has no ttl" in str(err) and err.line == 4


def test_data_tests_run_on_the_values_now(live: fsql.Project) -> None:
    data_tests_now(live)


def data_tests_now(project: fsql.Project) -> list[quality.TestResult]:
    """A failing then a passing range test on ``n_10m`` now: their results."""
    yml = project.root / "features" / "w.yml"
    yml.write_text(VIEW_YML.replace(
        "{name: n_10m, function: count, window: 10m, hop: 5m, type: 'int64'}",
        "{name: n_10m, function: count, window: 10m, hop: 5m, type: 'int64', "
        "tests: [{accepted_range: {max: 1}}]}"))
    # card 1 has 2-3 rows in any 10-15 minute window now, card 2 one: the test fails on card 1
    [failing] = [r for r in project.test() if r.object == "view:w"]
    assert failing.status == "fail" and failing.failing == 1, failing
    yml.write_text(VIEW_YML.replace(
        "{name: n_10m, function: count, window: 10m, hop: 5m, type: 'int64'}",
        "{name: n_10m, function: count, window: 10m, hop: 5m, type: 'int64', "
        "tests: [{accepted_range: {max: 3}}]}"))
    [passing] = [r for r in project.test() if r.object == "view:w"]
    assert passing.status == "pass", passing
    return [failing, passing]


def test_window_change_is_breaking(live: fsql.Project) -> None:
    live.sync()
    yml = live.root / "features" / "w.yml"
    yml.write_text(VIEW_YML.replace("{name: q_1h, function: sum, column: q, window: 60m",
                                    "{name: q_1h, function: sum, column: q, window: 120m"))
    changes = {f"{c.object}:{c.what}": c for c in live.diff()["online"]}
    change = changes["view:w.q_1h:type"]
    assert change.breaking and "over 120m" in change.detail, change
    # readers refuse the old state until a sync rewrites it
    with pytest.raises(fsql.errors.StaleDefinitionError):
        live.online_features(["w.q_1h"], {"card": [1]})


def test_verify_checks_aggregations_now(live: fsql.Project) -> None:
    verify_aggregations_now(live)


def verify_aggregations_now(live: fsql.Project) -> None:
    """After a sync, ``fsql verify`` matches both cards, and finds a tampered state."""
    live.sync()
    [check] = live.verify(sample=None)
    assert (check.entities, check.matched, check.mismatched) == (2, 2, 0), check
    # a state written by another definition's sync is reported, not trusted: rewrite card 1's
    # state with its tiles shifted an hour back
    service = live.online_service()
    try:
        service.get(["w"], {"card": [1]})
        layout = service._layouts["w"]
        store = service.store
        generation = store.meta(layout)["generation"]
        key = layout.key(generation, (1,))
        raw = store.client.get(key)
        states = msgpack.unpackb(raw[HEADER:])
        states[0] = [[k - 12 for k in states[0][0]], states[0][1]]
        store.client.set(key, raw[:HEADER] + msgpack.packb(states))
    finally:
        service.close()
    [check] = live.verify(sample=None)
    assert check.mismatched == 1 and check.by_feature == {"n_10m": 1}, check


def test_cli_get_reads_windows_at_the_current_time(live: fsql.Project) -> None:
    live.sync()
    out = subprocess.run([str(Path(sys.executable).with_name("fsql")), "get",
                          "w.n_10m,w.q_1h,w.lm_30m",
                          "-e", "card=1", "-e", "card=2", "-e", "card=3", "--json"],
                         cwd=live.root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    names = body["metadata"]["feature_names"]
    values = {n: r["values"] for n, r in zip(names, body["results"], strict=True)}
    statuses = {n: r["statuses"] for n, r in zip(names, body["results"], strict=True)}
    assert values["n_10m"][1:] == [1, 0]       # card 2: its row 2 minutes ago; card 3: none
    assert values["q_1h"][1:] == [5, None]
    assert values["lm_30m"][0] == "a"           # card 1's latest row (i = 0) has m = 'a'
    assert all(s == "PRESENT" for n in names for s in statuses[n])
