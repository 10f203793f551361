"""The dbt-grade daily workflow through the real CLI: init, --version, completion, --vars,
selectors (--exclude, state:modified, intersection, depth, did-you-mean) and show."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.cli.test_cli import FSQL, run


def fsql(project: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, *args], capture_output=True, text=True, cwd=project,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200",
                                            "HOME": "/tmp", **(env or {})})


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def built(result: subprocess.CompletedProcess[str]) -> tuple[set[str], set[str]]:
    """The relations and training sets a ``build --json`` built."""
    payload = json.loads(ok(result).stdout)
    return ({r["node"] for r in payload["relations"]},
            {t["name"] for t in payload["training_sets"]})


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``fsql init`` (not built; tests that build use their own)."""
    project = tmp_path_factory.mktemp("starter") / "cards"
    ok(run("init", str(project)))
    return project


def test_init_builds_and_compiles_at_once(tmp_path: Path) -> None:
    project = tmp_path / "fraud"
    result = ok(run("init", str(project)))
    assert "Created project 'fraud'" in result.stdout and "fsql build" in result.stdout
    assert "fraud:" in (project / "profiles.yml").read_text()
    payload = json.loads(ok(fsql(project, "build", "--json")).stdout)
    assert {t["name"]: t["rows"] for t in payload["training_sets"]} == {"fraud_training": 5000}
    assert Path(project, payload["training_sets"][0]["output"]).is_file()
    ok(fsql(project, "compile"))
    assert (project / "target" / "dev" / "manifest.json").is_file()
    ok(fsql(project, "--target", "prod", "compile"))  # the prod target is valid too


def test_init_data_is_deterministic(tmp_path: Path, starter: Path) -> None:
    ok(run("init", str(tmp_path / "again")))
    for name in ("cards.csv", "transactions.csv"):
        assert (tmp_path / "again" / "data" / name).read_bytes() == \
            (starter / "data" / name).read_bytes()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = run("init", str(tmp_path))
    assert result.returncode == 2
    assert "is not empty (it holds notes.txt)" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "fsql_project.yml").exists()
    result = run("init", str(tmp_path / "notes.txt"))
    assert result.returncode == 2 and "it is a file" in result.stderr


def test_init_into_the_current_empty_directory(tmp_path: Path) -> None:
    result = ok(run("init", cwd=tmp_path))
    assert "Next: fsql build" in result.stdout
    assert (tmp_path / "fsql_project.yml").is_file()


def test_version() -> None:
    result = ok(run("--version"))
    assert result.stdout.strip() == f"fsql {version('fsql')}"


def test_shell_completion() -> None:
    assert "--install-completion" in ok(run("--help")).stdout
    script = ok(run("--show-completion", "bash")).stdout
    assert "_FSQL_COMPLETE" in script and "complete" in script


def test_vars_override_the_project_vars(starter: Path) -> None:
    def sql(*options: str) -> str:
        out = ok(fsql(starter, *options, "show", "card_activity", "--json")).stdout
        return str(json.loads(out)["compiled_sql"])

    assert ">= 200" in sql()
    assert ">= 50" in sql("--vars", "{large_amount: 50}")
    assert ">= 75" in sql("--vars", '{"large_amount": 75}')  # JSON is YAML too


@pytest.mark.parametrize("value", ["{large_amount: [1", "[1, 2]", "just text"])
def test_bad_vars_is_a_clear_error(starter: Path, value: str) -> None:
    result = fsql(starter, "--vars", value, "compile")
    assert result.returncode == 2
    assert "--vars" in result.stderr and "{label_horizon_days: 14}" in result.stderr
    assert "Traceback" not in result.stderr


def _with_vars(tmp_path: Path, line: str) -> Path:
    project = tmp_path / "p"
    ok(run("init", str(project)))
    config = project / "fsql_project.yml"
    config.write_text(config.read_text().replace("large_amount: 200", line))
    return project


def test_env_var_inside_vars(tmp_path: Path) -> None:
    project = _with_vars(tmp_path, "large_amount: \"{{ env_var('LARGE_AMOUNT', '300') }}\"")

    def sql(env: dict[str, str]) -> str:
        out = ok(fsql(project, "show", "card_activity", "--json", env=env)).stdout
        return str(json.loads(out)["compiled_sql"])

    assert ">= 300" in sql({})
    assert ">= 120" in sql({"LARGE_AMOUNT": "120"})


def test_env_var_inside_vars_unset_names_the_file(tmp_path: Path) -> None:
    project = _with_vars(tmp_path, "large_amount: \"{{ env_var('LARGE_AMOUNT') }}\"")
    result = fsql(project, "compile")
    assert result.returncode == 2
    assert "fsql_project.yml" in result.stderr and "LARGE_AMOUNT" in result.stderr


def test_secret_in_vars_is_refused(tmp_path: Path) -> None:
    project = _with_vars(tmp_path, "large_amount: \"{{ env_var('FSQL_ENV_SECRET_X', '1') }}\"")
    result = fsql(project, "compile", env={"FSQL_ENV_SECRET_X": "hunter2"})
    assert result.returncode == 2
    assert "vars are written into compiled SQL" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_selector_intersection_depth_and_exclude(starter: Path) -> None:
    def build(*selection: str) -> tuple[set[str], set[str]]:
        return built(fsql(starter, "build", "--no-test", "--json", *selection))

    relations, sets = build("-s", "tag:card,view:card_profile")  # comma: both
    assert relations == {"source:raw.cards", "view:card_profile"} and not sets
    relations, sets = build("-s", "card_profile card_activity")  # space: either
    assert {"view:card_profile", "view:card_activity"} <= relations and not sets
    assert build("-s", "fraud_labels")[1] == set()
    assert build("-s", "fraud_labels+1")[1] == {"fraud_training"}  # one level down
    assert build("-s", "raw.transactions+1")[1] == set()  # the training set is two down
    assert build("-s", "raw.transactions+2")[1] == {"fraud_training"}
    assert build("-s", "tag:card+", "--exclude", "fraud_training")[1] == set()
    relations, sets = build("--exclude", "training_set:fraud_training")
    assert "view:card_activity" in relations and not sets
    assert build("-s", "1+fraud_training")[1] == {"fraud_training"}


def test_state_modified(tmp_path: Path) -> None:
    project = tmp_path / "p"
    ok(run("init", str(project)))
    before = fsql(project, "build", "-s", "state:modified")
    assert before.returncode == 2 and "run fsql build first" in before.stderr
    ok(fsql(project, "build", "--no-test"))
    assert built(fsql(project, "build", "--no-test", "--json", "-s", "state:modified")) == \
        (set(), set())
    profile = project / "features" / "card_profile.sql"
    profile.write_text(profile.read_text().replace("credit_limit\n",
                                                   "credit_limit * 2 AS credit_limit\n"))
    # a view's change changes the hash of the training set reading it, so exclude that
    assert built(fsql(project, "build", "--no-test", "--json", "-s", "state:modified",
                      "--exclude", "training_set:fraud_training")) == \
        ({"source:raw.cards", "view:card_profile"}, set())
    activity = project / "features" / "card_activity.sql"
    activity.write_text(activity.read_text().replace("    amount,\n",
                                                     "    amount * 1.0 AS amount,\n"))
    relations, sets = built(fsql(project, "build", "--no-test", "--json",
                                 "-s", "state:modified"))
    assert "view:card_activity" in relations and sets == {"fraud_training"}
    assert built(fsql(project, "build", "--no-test", "--json", "-s", "state:modified")) == \
        (set(), set())


@pytest.mark.parametrize(("selector", "suggestion"), [
    ("card_profle", "did you mean 'card_profile'?"),
    ("tag:crd", "did you mean 'tag:card'?"),
    ("view:card_activty", "did you mean 'view:card_activity'?"),
    ("stat:modified", "did you mean 'state:modified'?"),
])
def test_unknown_selector_suggests(starter: Path, selector: str, suggestion: str) -> None:
    result = fsql(starter, "build", "--no-test", "--exclude", selector)
    assert result.returncode == 2
    assert suggestion in result.stderr


def test_show_limit_previews_rows(starter: Path) -> None:
    payload = json.loads(ok(fsql(starter, "show", "fraud_training", "--limit", "3",
                                 "--json")).stdout)
    assert len(payload["rows"]) == 3
    assert {"transaction_id", "is_fraud", "spend_7d", "country"} <= set(payload["columns"])
    assert set(payload["rows"][0]) == set(payload["columns"])
    for name in ("card_profile", "fraud_labels", "raw.cards"):
        rows = json.loads(ok(fsql(starter, "show", name, "-n", "2", "--json")).stdout)["rows"]
        assert len(rows) == 2
    table = ok(fsql(starter, "show", "card_profile", "--limit", "2")).stdout
    assert "card_profile (first 2 rows)" in table and "credit_limit" in table
    assert len([line for line in table.splitlines() if line.startswith("│")]) == 2


def test_show_feature_and_downstream(starter: Path) -> None:
    info = json.loads(ok(fsql(starter, "show", "card_activity.spend_7d", "--json")).stdout)
    assert info["kind"] == "feature" and info["type"] == "float64"
    assert info["aggregation"]["function"] == "sum" and info["aggregation"]["window"] == "7d"
    assert info["training_sets"] == ["fraud_training"]
    assert "Amount spent" in info["description"]
    text = ok(fsql(starter, "show", "card_profile.country")).stdout
    assert "fraud_training" in text and "string" in text


def test_show_entity(starter: Path) -> None:
    info = json.loads(ok(fsql(starter, "show", "entity:card", "--json")).stdout)
    assert info["join_keys"] == ["card_id"]
    assert info["views"] == ["card_activity", "card_profile"]
    assert info["training_sets"] == ["fraud_training"]


@pytest.mark.parametrize(("name", "suggestion"), [
    ("entity:crd", "did you mean 'card'?"),
    ("card_activity.spnd_7d", "did you mean 'spend_7d'?"),
    ("fraud_trainin", "did you mean 'fraud_training'?"),
])
def test_show_unknown_suggests(starter: Path, name: str, suggestion: str) -> None:
    result = fsql(starter, "show", name)
    assert result.returncode == 2 and suggestion in result.stderr


def test_show_on_example_views_usage(example_dir: Path) -> None:
    info = json.loads(ok(fsql(example_dir, "show", "customer_orders.orders_30d",
                              "--json")).stdout)
    assert info["training_sets"] == ["churn_training", "purchase_training"]
    assert info["on_demand_views"] == ["purchase_context"]
    info = json.loads(ok(fsql(example_dir, "show", "entity:product", "--json")).stdout)
    assert "product_ratings" in info["views"] and "purchase_training" in info["training_sets"]
