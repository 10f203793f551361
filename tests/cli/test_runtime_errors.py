"""A query that is valid but fails on the data names the node and its file, through the real
`fsql` command (build, test, sync), never only fsql's generated SQL; the exit code stays 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.cli.test_data_test_cli import project
from tests.redis_server import RedisServer

SPINE = "models/spine.sql"
VIEW = "features/scores.sql"
#: the view's score fails to cast for user 3 (score 7)
BAD_CAST_VIEW = ("SELECT user_id, ts, CAST(CASE WHEN score > 6 THEN 'x' ELSE CAST(score AS "
                 "VARCHAR) END AS BIGINT) AS score\nFROM {{ source('raw', 'scores') }}\n")
#: an integer division by zero for user 2 (score 6)
DIVISION_VIEW = ("SELECT user_id, ts, score // (score - 6) AS score\n"
                 "FROM {{ source('raw', 'scores') }}\n")
TABLE_SPINE = ("{{ config(materialized='table') }}\nSELECT user_id, ts, CAST(label AS INTEGER)"
               " AS label\nFROM {{ source('raw', 'labels') }}\n")


def assert_names(stderr: str, node: str) -> None:
    assert f"{node} failed on its data" in stderr, stderr
    assert "__fsql" not in stderr and "LINE 1" not in stderr, stderr


@pytest.mark.parametrize("flags", [[], ["--no-test"]])
def test_build_names_a_view_model_that_fails_inside_the_training_set(
        tmp_path: Path, flags: list[str]) -> None:
    root = project(tmp_path, label="x")
    result = run("build", *flags, cwd=root)
    assert result.returncode == 3
    assert_names(result.stderr, f"model 'spine' ({SPINE})")
    assert "Could not convert string 'x' to INT32" in result.stderr


def test_build_names_a_table_model_that_fails_while_materialized(tmp_path: Path) -> None:
    root = project(tmp_path, label="x", extra={SPINE: TABLE_SPINE})
    result = run("build", cwd=root)
    assert result.returncode == 3
    assert_names(result.stderr, f"model 'spine' ({SPINE})")


@pytest.mark.parametrize(("sql", "error"), [(BAD_CAST_VIEW, "Conversion Error"),
                                             (DIVISION_VIEW, "Division by zero")])
@pytest.mark.parametrize("verb", [["build"], ["build", "--no-test"], ["test"]])
def test_a_failing_feature_view_is_named(tmp_path: Path, sql: str, error: str,
                                         verb: list[str]) -> None:
    root = project(tmp_path, extra={VIEW: sql})
    result = run(*verb, cwd=root)
    assert result.returncode == 3
    assert_names(result.stderr, f"feature view 'scores' ({VIEW})")
    assert error in result.stderr


def test_a_training_set_test_names_the_model_under_it(tmp_path: Path) -> None:
    root = project(tmp_path, label="x", extra={"features/training.yml": """
        training_sets:
          - name: train
            spine: {model: spine, timestamp: ts}
            features: [scores]
            tests: [{row_count: {min: 1}}]
        """})
    result = run("test", "-s", "train", cwd=root)
    assert result.returncode == 3
    assert_names(result.stderr, f"model 'spine' ({SPINE})")


@pytest.mark.parametrize("flags", [[], ["--no-test"]])
def test_sync_names_the_failing_online_view(tmp_path: Path, redis_server: RedisServer,
                                            flags: list[str]) -> None:
    root = project(tmp_path, extra={VIEW: BAD_CAST_VIEW}, redis_url=redis_server.url)
    result = run("sync", *flags, cwd=root)
    assert result.returncode == 3, result.stdout + result.stderr
    assert_names(result.stderr, f"feature view 'scores' ({VIEW})")
