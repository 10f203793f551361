"""What cron logs and scripts get from `fsql`: one-line JSON, no wrapping off a terminal, and
`get -e` values holding commas."""

from __future__ import annotations

import json
import re
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


# -- output polish at 80 columns (cron mail, CI logs): COLUMNS=80, no terminal --------------

NARROW_ENV = {**LOG_ENV, "COLUMNS": "80"}


def narrow(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**NARROW_ENV, **env})


def test_tables_fit_80_columns_without_breaking_words(example_dir: Path) -> None:
    done = narrow("ls", cwd=example_dir)
    assert done.returncode == 0, done.stderr
    assert max(map(len, done.stdout.splitlines())) <= 80
    listing = json.loads(fsql_run("ls", "--json", cwd=example_dir).stdout)
    words = {w for section in listing.values() for row in section for value in row.values()
             if isinstance(value, str) for w in value.split()}
    missing = sorted(w for w in words if w not in done.stdout)
    assert not missing  # every name and every word of a description is shown whole
    assert "…" not in done.stdout


def test_help_reads_well_at_80_columns() -> None:
    from fsql.cli import app

    commands = [c.name or c.callback.__name__ for c in app.registered_commands
                if c.callback is not None]
    for args in [[], *([c] for c in commands)]:
        done = narrow(*args, "--help")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert max(map(len, lines)) <= 80
        assert "<bool>" not in done.stdout and "BOOLEAN" not in done.stdout
        # every option names what it takes (typer's bare <str>/<int>/<path> say nothing)
        options = [line for line in lines if line.lstrip("│ ").startswith("-")]
        assert not [line for line in options if re.search(r"<(str|int|path|int range)>", line)]
        # the text above the panels is re-wrapped: no line ends where the next line's first
        # word would still have fit (a hard line break from the docstring)
        text = [line.strip() for line in lines[:next(i for i, s in enumerate(lines)
                                                      if s.startswith("╭"))]]
        for line, after in zip(text, text[1:], strict=False):
            if line and after[:1].isalnum() and not line.startswith("Usage:"):
                assert len(line) + 1 + len(after.split()[0]) > 78, (args, line, after)


def test_ls_json_has_real_types(example_dir: Path) -> None:
    done = fsql_run("ls", "--json", cwd=example_dir)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    views = {v["name"]: v for v in listing["views"]}
    assert views["customer_product"]["entities"] == ["customer", "product"]
    assert views["customer_product"]["ttl"] == 180 * 86400
    assert views["customer_orders"]["ttl"] is None
    assert views["customer_orders"]["freshness"] == 26 * 3600
    assert views["customer_orders"]["online"] is True
    assert views["customer_orders"]["features"] == 4
    features = {f["feature"]: f for f in listing["features"]}
    assert features["customer_orders.orders_30d"]["window"] == 30 * 86400
    assert features["purchase_context.price_vs_avg_order"]["on_demand"] is True
    assert {e["name"]: e["join_keys"] for e in listing["entities"]}["customer"] == ["customer_id"]
    table = narrow("ls", "-k", "views", cwd=example_dir).stdout
    assert "180d" in table and "26h" in table and "15552000" not in table


def test_did_you_mean_in_lookups(example_dir: Path) -> None:
    kind = narrow("ls", "--kind", "view", cwd=example_dir)
    assert kind.returncode == 2 and "did you mean 'views'?" in kind.stderr
    show = narrow("show", "custmer_orders", cwd=example_dir)
    assert show.returncode == 2 and "did you mean 'customer_orders'?" in show.stderr
    assert "Traceback" not in kind.stderr + show.stderr
    model = example_dir / "models" / "churn_labels.sql"
    model.write_text(model.read_text().replace("ref('orders_enriched')", "ref('orders_enrich')"))
    ref = narrow("compile", cwd=example_dir)
    assert ref.returncode == 2 and "models/churn_labels.sql:" in ref.stderr
    assert "hint: did you mean 'orders_enriched'?" in ref.stderr


def test_build_progress_counts_its_steps(example_dir: Path) -> None:
    done = narrow("build", cwd=example_dir, TTY_COMPATIBLE="1")  # rich draws its progress bar
    assert done.returncode == 0, done.stderr
    counts = [tuple(map(int, m)) for m in re.findall(r"\b(\d+)/(\d+)\b", done.stderr)]
    assert counts and all(step <= total for step, total in counts)
    assert max(counts) == (counts[-1][1],) * 2  # it ends at total/total
    assert "None" not in done.stderr
    assert "Built 12 relations and 2 training sets" in done.stdout
    one = narrow("build", "-s", "purchase_training", cwd=example_dir)
    assert "and 1 training set in" in one.stdout


def test_refused_type_alias_and_duplicate_feature(make_project: MakeProject) -> None:
    files = {
        "models/sources.yml": "sources: [{name: raw, tables: [{name: f, path: f.parquet}]}]\n",
        "models/spine.sql": "SELECT 1 AS user_id, now() AS label_ts\n",
        "features/e.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/v.yml": "feature_view:\n  entity: user\n  timestamp: ts\n  features:\n"
                          "    - {name: score, type: double}\n",
    }
    root = make_project(files).root
    done = narrow("compile", cwd=root)
    assert done.returncode == 2
    assert "features/v.yml:5" in done.stderr
    assert "unknown type 'double'; did you mean 'float64'?" in done.stderr
    (root / "features/v.yml").write_text(files["features/v.yml"].replace("double", "float64"))
    (root / "features/ts.yml").write_text(
        "training_sets:\n  - name: t\n    spine: {model: spine, timestamp: label_ts}\n"
        "    features: [v.score, v]\n")
    twice = narrow("compile", cwd=root)
    assert twice.returncode == 2
    assert "features/ts.yml:4" in twice.stderr
    assert "'v.score' is listed twice: on its own and through its view 'v'" in twice.stderr


@pytest.fixture
def floats(make_project: MakeProject, tmp_path: Path, redis_server: RedisServer) -> Path:
    """An online view with a float that prints long (0.1 + 0.2) and a 10 minute SLA."""
    import datetime as dt

    pq.write_table(pa.table({"card_id": pa.array([1, 2], pa.int64()),
                             "ts": [dt.datetime(2024, 1, 1)] * 2,
                             "amount": [20599.330000000005, 0.1 + 0.2]}),
                   tmp_path / "f.parquet")
    project = make_project({
        "models/sources.yml": f"sources: [{{name: raw, tables: [{{name: f, path: "
                              f"{tmp_path / 'f.parquet'}}}]}}]\n",
        "features/e.yml": "entities: [{name: card, join_keys: [card_id]}]\n",
        "features/v.sql": "SELECT * FROM {{ source('raw', 'f') }}\n",
        "features/v.yml": "feature_view:\n  entity: card\n  timestamp: ts\n  online: true\n"
                          "  freshness: 10m\n  features:\n    - {name: amount, type: float64}\n",
        "profiles.yml": online_profile("test", redis_server.url),
    })
    return project.root


def test_sync_get_and_freshness_wording(floats: Path) -> None:
    dry = narrow("sync", "--dry-run", cwd=floats)
    assert dry.returncode == 0, dry.stderr
    assert "Would sync 1 view in" in dry.stdout and "Synced" not in dry.stdout
    done = narrow("sync", cwd=floats)
    assert "Synced 1 view in" in done.stdout
    got = narrow("get", "v", "-e", "card_id=1", "-e", "card_id=2", cwd=floats)
    assert got.returncode == 0, got.stderr
    assert "20599.33 " in got.stdout and "0.3 " in got.stdout
    assert "20599.330000000005" not in got.stdout and "0.30000000000000004" not in got.stdout
    exact = json.loads(narrow("get", "v", "-e", "card_id=1", "-e", "card_id=2", "--json",
                              cwd=floats).stdout)
    assert exact["results"][1]["values"] == [20599.330000000005, 0.1 + 0.2]
    fresh = narrow("freshness", cwd=floats)
    assert fresh.returncode == 5
    assert "10m" in fresh.stdout and "0.2h" not in fresh.stdout
    assert re.search(r"newest event is \d+(\.\d)?d old", fresh.stdout)


def test_get_suggests_and_refuses_a_feature_twice(floats: Path) -> None:
    narrow("sync", cwd=floats)
    key = narrow("get", "v", "-e", "cardid=1", cwd=floats)
    assert key.returncode == 2
    assert "got 'cardid': did you mean 'card_id'?" in key.stderr
    view = narrow("get", "vv", "-e", "card_id=1", cwd=floats)
    assert "unknown feature view 'vv'; did you mean 'v'?" in view.stderr
    feature = narrow("get", "v.amont", "-e", "card_id=1", cwd=floats)
    assert "has no feature 'amont'; did you mean 'amount'?" in feature.stderr
    twice = narrow("get", "v.amount,v.amount", "-e", "card_id=1", cwd=floats)
    assert twice.returncode == 2 and "'v.amount' is listed twice" in twice.stderr


def test_cells_are_plain_text(make_project: MakeProject) -> None:
    root = make_project({"features/e.yml": "entities: [{name: user, join_keys: [user_id], "
                                           "description: 'new users [beta] only'}]\n"}).root
    done = narrow("ls", "-k", "entities", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "new users [beta] only" in done.stdout  # not read as rich markup
