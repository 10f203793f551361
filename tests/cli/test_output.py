"""What cron logs and scripts get from `fsql`: one-line JSON, no wrapping off a terminal, and
`get -e` values holding commas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsql import output
from fsql.cli import entity_pairs
from fsql.errors import RequestError
from tests.conftest import MakeProject, online_profile
from tests.redis_server import RedisServer

FSQL = str(Path(sys.executable).parent / "fsql")
LOG_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # what cron gives: no COLUMNS, no tty


def fsql_run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env=LOG_ENV)


@pytest.mark.parametrize("args", [["ls", "--json"], ["compile", "--json"],
                                  ["show", "customer_orders", "--json"]])
def test_json_is_one_document_on_one_line(example_dir: Path, args: list[str]) -> None:
    done = fsql_run(*args, cwd=example_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1
    json.loads(done.stdout)


def test_non_finite_floats_are_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_json({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]})

    def strict(constant: str) -> None:
        raise AssertionError(f"bare {constant} is not JSON")

    assert json.loads(capsys.readouterr().out, parse_constant=strict) == {
        "a": "NaN", "b": ["Infinity", "-Infinity", 1.5]}


def test_long_messages_and_cells_are_not_wrapped_off_a_terminal(example_dir: Path) -> None:
    name = "a_view_name_long_enough_" * 6
    done = fsql_run("show", name, cwd=example_dir)
    assert done.returncode == 2
    [line] = [s for s in done.stderr.splitlines() if "nothing named" in s]
    assert name in line  # whole, on one line (was folded at 80 columns)
    listing = fsql_run("ls", "--kind", "views", cwd=example_dir)
    assert ("Latest known profile of a customer. Corrections re-use snapshot_ts with a later "
            "ingested_at.") in listing.stdout  # a table cell is not folded mid-word either


@pytest.mark.parametrize(("item", "pairs"), [
    ("customer_id=1", [("customer_id", "1")]),
    ("customer_id=1,product_id=2", [("customer_id", "1"), ("product_id", "2")]),
    ('name="a,b"', [("name", "a,b")]),
    ('name="say ""hi"", twice",n=3', [("name", 'say "hi", twice'), ("n", "3")]),
    ('name="",n=', [("name", ""), ("n", "")]),
    ("expr=a=b", [("expr", "a=b")]),
])
def test_entity_pairs(item: str, pairs: list[tuple[str, str]]) -> None:
    assert entity_pairs(item) == pairs


@pytest.mark.parametrize("item", ['name="a,b', 'name="a"b', "name", "=1", "a=1,", 'na"me=1',
                                  "a=1,,b=2"])
def test_malformed_entity_is_one_clear_error(item: str) -> None:
    with pytest.raises(RequestError, match='quoting a value that holds a comma: name="a,b"'):
        entity_pairs(item)


def test_get_a_string_key_holding_a_comma(make_project: MakeProject, tmp_path: Path,
                                          redis_server: RedisServer) -> None:
    import datetime as dt

    pq.write_table(pa.table({"name": ["a,b", "a", "b"], "ts": [dt.datetime(2024, 1, 1)] * 3,
                             "score": pa.array([1, 2, 3], pa.int64())}), tmp_path / "f.parquet")
    project = make_project({
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables: [{{name: f, path: {tmp_path / 'f.parquet'}}}]
            """,
        "features/e.yml": "entities: [{name: person, join_keys: [name]}]\n",
        "features/v.yml": """
            feature_view:
              entity: person
              timestamp: ts
              online: true
              features: [{name: score, type: int64}]
            """,
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "profiles.yml": online_profile("test", redis_server.url),
    })
    project.sync()
    root = str(project.root)
    done = fsql_run("--project-dir", root, "get", "v", "-e", 'name="a,b"', "-e", "name=b",
                    "--json")
    assert done.returncode == 0, done.stderr
    names, score = json.loads(done.stdout)["results"]  # Feast's shape: one entry per column
    assert (names["values"], score["values"]) == (["a,b", "b"], [1, 3])
    assert score["statuses"] == ["PRESENT", "PRESENT"]
    bad = fsql_run("--project-dir", root, "get", "v", "-e", 'name="a,b')
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--entity 'name=\"a,b'" in bad.stderr
