"""The `fsql` command as a user runs it: a real subprocess, exit codes, --json, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fsql.cli import app

FSQL = str(Path(sys.executable).parent / "fsql")
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands
                  if c.callback is not None)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp"})


def test_every_command_has_help() -> None:
    assert {"build", "compile", "ls", "show"} <= set(COMMANDS)
    for command in COMMANDS:
        result = run(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout
        doc = next(c.callback.__doc__ for c in app.registered_commands
                   if (c.name or c.callback.__name__) == command)
        assert doc and doc.split("\n")[0].split()[0] in result.stdout


def test_top_level_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_build_json(example_dir: Path) -> None:
    result = run("--project-dir", str(example_dir), "build", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = {t["name"]: t["rows"] for t in payload["training_sets"]}
    assert rows["churn_training"] == 22000
    assert Path(payload["training_sets"][0]["output"]).is_file()


def test_build_human_output_and_selection(example_dir: Path) -> None:
    result = run("build", "-s", "purchase_training", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    assert "purchase_training" in result.stdout
    assert "churn_training" not in result.stdout


@pytest.mark.parametrize("kind", [None, "views", "features", "entities", "training_sets"])
def test_ls_json(example_dir: Path, kind: str | None) -> None:
    args = ["--project-dir", str(example_dir), "ls", "--json"] + (["-k", kind] if kind else [])
    result = run(*args)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    if kind:
        assert list(payload) == [kind] and payload[kind]
    else:
        names = {v["name"] for v in payload["views"]}
        assert names == {"customer_orders", "customer_profile", "product_ratings",
                         "customer_product"}
        ttl = {v["name"]: v["ttl"] for v in payload["views"]}
        assert ttl["customer_product"] == 180 * 86400 and ttl["customer_profile"] is None
        windows = {f["feature"]: f["window"] for f in payload["features"]}
        assert windows["customer_orders.orders_30d"] == 30 * 86400  # an aggregation


def test_ls_people_table(example_dir: Path) -> None:
    result = run("ls", "-k", "features", cwd=example_dir)
    assert result.returncode == 0
    assert "customer_orders.orders_30d" in result.stdout and "int64" in result.stdout


def test_show_json_has_sql(example_dir: Path) -> None:
    result = run("--project-dir", str(example_dir), "show", "churn_training", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "training_set"
    assert "ASOF LEFT JOIN" in info["compiled_sql"]


def test_compile_json_is_the_manifest(example_dir: Path) -> None:
    result = run("--project-dir", str(example_dir), "compile", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(
        (example_dir / "target" / "dev" / "manifest.json").read_text())


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--target", "nope", "build"], 2, "no target 'nope'"),
    (["build", "-s", "does_not_exist"], 2, "matches nothing"),
    (["show", "does_not_exist"], 2, "nothing named 'does_not_exist'"),
    (["ls", "-k", "colours"], 2, "unknown kind"),
    (["frobnicate"], 2, "No such command"),
])
def test_errors_exit_codes_without_traceback(example_dir: Path, args: list[str], code: int,
                                             message: str) -> None:
    (example_dir / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      offline: {type: duckdb}\n")
    result = run(*args, cwd=example_dir)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_project(tmp_path: Path) -> None:
    result = run("ls", cwd=tmp_path)
    assert result.returncode == 2
    assert "not an fsql project" in result.stderr


def test_engine_failure_exit_code_3(example_dir: Path) -> None:
    sql = example_dir / "features" / "customer_profile.sql"
    sql.write_text(sql.read_text().replace(
        "s.credit_limit,",
        "CAST(CAST(s.credit_limit AS VARCHAR) || 'x' AS BIGINT) AS credit_limit,"))
    result = run("build", cwd=example_dir)
    assert result.returncode == 3
    assert "Conversion Error" in result.stderr
    assert "Traceback" not in result.stderr
