"""Data tests as a user acts on them, through the real `fsql` command: the failing rows' keys
and event times, stored failures, severity, progress, merged results, and a build that runs
view tests before it computes any training set."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli.test_cli import FSQL, run
from tests.conftest import online_profile, write_files
from tests.redis_server import RedisServer

TS0 = 1_700_000_000_000_000  # 2023-11-14 22:13:20 UTC, in microseconds


def project(root: Path, feature_tests: str = "[not_null]", label: str = "1",
            extra: dict[str, str] | None = None, redis_url: str | None = None) -> Path:
    """Entity ``user``; view ``scores`` (user_id, ts, score) with ``feature_tests`` on score,
    online (synced to the Redis at ``redis_url``) when that is given; training set ``train``
    on spine model ``spine``, whose label is ``CAST(label AS INTEGER)`` of the string
    ``label`` (a non-number makes it fail only when the training set is computed)."""
    write_files(root, {
        "fsql_project.yml": "name: t\n",
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables:
                  - {{name: scores, path: {root / 'scores.parquet'}}}
                  - {{name: labels, path: {root / 'labels.parquet'}}}
            """,
        "models/spine.sql": "SELECT user_id, ts, CAST(label AS INTEGER) AS label\n"
                            "FROM {{ source('raw', 'labels') }}\n",
        "features/entities.yml": "entities: [{name: user, join_keys: [user_id]}]\n",
        "features/scores.yml": f"""
            feature_view:
              entity: user
              timestamp: ts
              features:
                - name: score
                  type: int64
                  tests: {feature_tests}
              online: {redis_url is not None}
            """,
        **({"profiles.yml": online_profile("t", redis_url)} if redis_url else {}),
        "features/scores.sql": "SELECT * FROM {{ source('raw', 'scores') }}\n",
        "features/training.yml": """
            training_sets:
              - name: train
                spine: {model: spine, timestamp: ts}
                features: [scores]
            """,
        **(extra or {}),
    })
    scores(root, [5, 6, 7])
    pq.write_table(pa.table({"user_id": pa.array([1, 2], pa.int64()),
                             "ts": pa.array([TS0 + 10**9] * 2, pa.timestamp("us")),
                             "label": pa.array([label, "0"], pa.string())}),
                   root / "labels.parquet")
    return root


def scores(root: Path, values: list[int | None]) -> None:
    pq.write_table(pa.table({
        "user_id": pa.array(range(1, len(values) + 1), pa.int64()),
        "ts": pa.array([TS0 + i * 1_000_000 for i in range(len(values))], pa.timestamp("us")),
        "score": pa.array(values, pa.int64())}), root / "scores.parquet")


def test_a_failure_shows_the_failing_keys_and_count(tmp_path: Path) -> None:
    root = project(tmp_path)
    scores(root, [5, None, 7, None])
    result = run("test", "--json", cwd=root)
    assert result.returncode == 5, result.stderr
    [failed] = json.loads(result.stdout)
    assert failed["status"] == "fail" and failed["failing"] == 2
    assert failed["failing_keys"] == [{"user_id": 2, "ts": "2023-11-14 22:13:21"},
                                      {"user_id": 4, "ts": "2023-11-14 22:13:23"}]
    people = run("test", cwd=root)
    assert people.returncode == 5
    assert "user_id=2 ts=2023-11-14 22:13:21; user_id=4 ts=2023-11-14 22:13:23" in people.stdout


def test_the_sample_of_keys_is_capped_and_says_how_many_more(tmp_path: Path) -> None:
    root = project(tmp_path)
    scores(root, [None] * 8)
    [failed] = json.loads(run("test", "--json", cwd=root).stdout)
    assert failed["failing"] == 8 and len(failed["failing_keys"]) == 5
    assert "(+3 more)" in run("test", cwd=root).stdout


def test_store_failures_writes_the_failing_rows_and_removes_them_once_fixed(
        tmp_path: Path) -> None:
    root = project(tmp_path)
    scores(root, [5, None, 7])
    result = run("test", "--store-failures", cwd=root)
    assert result.returncode == 5
    stored = sorted((root / "target" / "dev" / "test_failures").glob("*.parquet"))
    assert [p.name for p in stored] == ["view_scores.not_null.score.7.parquet"]
    assert f"target/dev/test_failures/{stored[0].name}" in result.stdout
    rows = pq.read_table(stored[0]).to_pylist()
    assert [(r["user_id"], r["score"]) for r in rows] == [(2, None)]
    [record] = json.loads(run("test", "--store-failures", "--json", cwd=root).stdout)
    assert record["failures_file"] == str(stored[0])
    scores(root, [5, 6, 7])
    assert run("test", "--store-failures", cwd=root).returncode == 0
    assert not stored[0].exists()


def test_without_store_failures_nothing_is_written(tmp_path: Path) -> None:
    root = project(tmp_path)
    scores(root, [None])
    assert run("test", cwd=root).returncode == 5
    assert not (root / "target" / "dev" / "test_failures").exists()


def test_severity_warn_reports_but_neither_fails_nor_gates(tmp_path: Path) -> None:
    root = project(tmp_path, "[{not_null: {severity: warn}}, {accepted_range: {min: 0}}]")
    scores(root, [5, None, 7])
    result = run("test", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN" in result.stdout and "1 data test passed, 1 warned" in result.stdout
    statuses = {r["test"]: (r["status"], r["severity"])
                for r in json.loads(run("test", "--json", cwd=root).stdout)}
    assert statuses == {"not_null(score)": ("warn", "warn"),
                        "accepted_range(score)": ("pass", "error")}
    build = run("build", cwd=root)
    assert build.returncode == 0, build.stderr
    assert (root / "target" / "dev" / "training_sets" / "train.parquet").is_file()
    assert ("Warning: data test warn: not_null(score) on view:scores (features/scores.yml:7)"
            " e.g. [nan] at user_id=2 ts=2023-11-14 22:13:21") in build.stderr
    payload = json.loads(run("build", "--json", cwd=root).stdout)
    assert payload["warnings"] == [build.stderr.split("Warning: ", 1)[1].strip()]


def test_sync_warns_about_a_failing_warn_test_and_syncs(tmp_path: Path,
                                                        redis_server: RedisServer) -> None:
    root = project(tmp_path, "[{not_null: {severity: warn}}]", redis_url=redis_server.url)
    scores(root, [5, None, 7])
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "Warning: data test warn: not_null(score) on view:scores" in result.stderr
    assert "user_id=2" in result.stderr


def test_severity_error_still_fails(tmp_path: Path) -> None:
    root = project(tmp_path, "[{not_null: {severity: error}}]")
    scores(root, [None])
    assert run("test", cwd=root).returncode == 5


def test_a_bad_severity_is_a_definition_error_with_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, "[{not_null: {severity: fatal}}]")
    result = run("compile", cwd=root)
    assert result.returncode == 2
    assert "features/scores.yml:7" in result.stderr
    assert "severity must be warn or error, not 'fatal'" in result.stderr


def test_progress_names_each_test_on_a_terminal(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp", "TTY_COMPATIBLE": "1"}
    shown = subprocess.run([FSQL, "test"], capture_output=True, text=True, cwd=root,
                           timeout=120, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "view:scores: not_null(score)" in shown.stderr
    quiet = subprocess.run([FSQL, "test", "--json"], capture_output=True, text=True,
                           cwd=root, timeout=120, env=env)
    assert "not_null(score)" not in quiet.stderr


def test_selecting_some_tests_merges_into_the_results_file(tmp_path: Path) -> None:
    root = project(tmp_path, extra={"models/spine.yml": """
        models:
          - name: spine
            columns: {user_id: [not_null]}
        """})
    scores(root, [5, None])
    assert run("test", cwd=root).returncode == 5
    results = root / "target" / "dev" / "test_results.json"
    before = {r["object"]: r["status"] for r in json.loads(results.read_text())}
    assert before == {"model:spine": "pass", "view:scores": "fail"}
    scores(root, [5, 6])
    assert run("test", "-s", "scores", cwd=root).returncode == 0
    after = {r["object"]: r["status"] for r in json.loads(results.read_text())}
    assert after == {"model:spine": "pass", "view:scores": "pass"}


def test_build_runs_view_tests_before_computing_training_sets(tmp_path: Path) -> None:
    # the spine's label is not a number: computing the training set would fail (exit 3);
    # the failing view test must stop the build first (exit 5)
    root = project(tmp_path, label="x")
    scores(root, [5, None, 7])
    result = run("build", cwd=root)
    assert result.returncode == 5, result.stderr
    assert "not_null(score) on view:scores" in result.stderr
    assert "user_id=2" in result.stderr
    assert not list((root / "target").rglob("train*.parquet"))
    assert not list((root / "target").rglob(".train*"))


@pytest.mark.parametrize("flag", [[], ["--no-test"]])
def test_build_reaches_the_training_set_once_view_tests_pass(tmp_path: Path,
                                                             flag: list[str]) -> None:
    root = project(tmp_path, label="x")
    if flag:
        scores(root, [5, None, 7])
    result = run("build", *flag, cwd=root)
    assert result.returncode == 3, result.stderr


def test_results_file_survives_an_unreadable_previous_one(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "target" / "dev").mkdir(parents=True, exist_ok=True)
    (root / "target" / "dev" / "test_results.json").write_text("{\"not\": \"a list\"}")
    assert run("test", "-s", "scores", cwd=root).returncode == 0
    assert [r["object"] for r in json.loads(
        (root / "target" / "dev" / "test_results.json").read_text())] == ["view:scores"]
    assert os.path.getsize(root / "target" / "dev" / "test_results.json") > 0
