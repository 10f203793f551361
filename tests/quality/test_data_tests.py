"""Data tests run by great-expectations: each declared test can pass and can fail; a test
that raises is an error, never a pass; a failing test blocks publishing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fsql
from fsql.errors import CheckFailed
from tests.conftest import MakeProject

ENTITIES = """
entities:
  - name: user
    join_keys: [user_id]
"""


def scores_project(make_project: MakeProject, tmp_path: Path, feature_tests: str,
                   view_tests: str = "[]", training_tests: str = "[]") -> fsql.Project:
    data = tmp_path / "scores.parquet"
    return make_project({
        "features/entities.yml": ENTITIES,
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables:
                  - {{name: scores, path: {data}}}
                  - {{name: labels, path: {tmp_path / 'labels.parquet'}}}
            """,
        "features/scores.yml": f"""
            feature_view:
              entity: user
              timestamp: ts
              tests: {view_tests}
              features:
                - name: score
                  type: int64
                  tests: {feature_tests}
                - name: grade
                  type: string
            """,
        "features/scores.sql": "SELECT * FROM {{ source('raw', 'scores') }}\n",
        "features/training.yml": f"""
            training_sets:
              - name: train
                spine: {{source: raw.labels, timestamp: ts}}
                features: [scores]
                tests: {training_tests}
            """,
    })


def write(tmp_path: Path, users: list[int | None], scores: list[int | None],
          grades: list[str | None], same_ts: bool = False) -> None:
    n = len(users)
    ts = pa.array([1_700_000_000_000_000 + (0 if same_ts else i) for i in range(n)],
                  pa.timestamp("us"))
    pq.write_table(pa.table({"user_id": pa.array(users, pa.int64()), "ts": ts,
                             "score": pa.array(scores, pa.int64()),
                             "grade": pa.array(grades, pa.string())}),
                   tmp_path / "scores.parquet")
    pq.write_table(pa.table({"user_id": pa.array([1, 2], pa.int64()),
                             "ts": pa.array([1_800_000_000_000_000] * 2, pa.timestamp("us"))}),
                   tmp_path / "labels.parquet")


GOOD = dict(users=[1, 2, 3], scores=[5, 6, 7], grades=["a", "b", "c"])


def data(scores: list[int | None] | None = None, users: list[int] | None = None,
         grades: list[str | None] | None = None) -> dict[str, list]:
    return dict(users=users or GOOD["users"], scores=scores or GOOD["scores"],
                grades=grades or GOOD["grades"])


CASES = [
    # (tests on the score feature, tests on the view, bad data, failing count)
    ("[not_null]", "[]", data(scores=[5, None, 7]), 1),
    ("[{accepted_range: {min: 0, max: 7}}]", "[]", data(scores=[5, 6, 8]), 1),
    ("[{accepted_values: {values: [5, 6, 7]}}]", "[]", data(scores=[5, 6, 9]), 1),
    ("[{max_null_fraction: 0.34}]", "[]", data(scores=[None, None, 7]), 2),
    ("[{expect_column_values_to_be_between: {min_value: 5}}]", "[]", data(scores=[4, 6, 7]),
     1),
    ("[unique]", "[]", data(scores=[5, 5, 7]), 2),
    ("[]", "[unique]", data(users=[1, 1, 3]), 2),
    ("[]", "[{row_count: {max: 3}}]", data(users=[1, 2, 3, 4], scores=[1, 2, 3, 4],
                                            grades=["a"] * 4), None),
    ("[]", "[{unique: {columns: [grade]}}]", data(grades=["a", "a", "c"]), 2),
]


@pytest.mark.parametrize(("feature_tests", "view_tests", "bad", "failing"), CASES)
def test_each_test_passes_and_fails(make_project: MakeProject, tmp_path: Path,
                                    feature_tests: str, view_tests: str,
                                    bad: dict[str, list], failing: int | None) -> None:
    project = scores_project(make_project, tmp_path, feature_tests, view_tests)
    write(tmp_path, **GOOD)
    passed = project.test()
    assert [r.status for r in passed] == ["pass"], passed
    # users [1, 1, 3] at distinct timestamps are fine; at one timestamp they are duplicates
    write(tmp_path, **bad, same_ts=view_tests == "[unique]")
    failed = project.test()
    assert [r.status for r in failed] == ["fail"], failed
    assert failed[0].failing == failing
    assert project.paths.test_results.is_file()


def test_relationships(make_project: MakeProject, tmp_path: Path) -> None:
    project = scores_project(make_project, tmp_path,
                             "[{relationships: {to: allowed, field: score}}]")
    (project.root / "models" / "allowed.sql").write_text(
        "SELECT CAST(s AS BIGINT) AS score FROM range(5, 8) AS t(s)\n")
    write(tmp_path, **GOOD)
    assert [r.status for r in project.test()] == ["pass"]
    write(tmp_path, **data(scores=[5, 6, 99]))
    result = project.test()[0]
    assert (result.status, result.failing, result.examples) == ("fail", 1, [99])


def test_an_expectation_that_raises_is_an_error_not_a_pass(make_project: MakeProject,
                                                           tmp_path: Path) -> None:
    # comparing strings with a number: GX raises while computing the metric
    project = scores_project(
        make_project, tmp_path, "[]",
        view_tests="[{expect_column_values_to_be_between: {column: grade, min_value: 0}}]")
    write(tmp_path, **GOOD)
    result = project.test()[0]
    assert result.status == "error", result
    assert result.message


@pytest.mark.parametrize(("declaration", "message"), [
    ("[not_a_test]", "unknown test 'not_a_test'"),
    ("[{accepted_range: {low: 1}}]", "unknown argument(s) low"),
    ("[{accepted_range: {min: 'x'}}]", "must be numbers"),
    ("[{max_null_fraction: 2}]", "fraction between 0 and 1"),
    ("[{expect_column_values_to_be_between: {min_value: 1, bogus: 2}}]", "bad arguments"),
    ("[{relationships: {to: nowhere}}]", "names no model or feature view"),
])
def test_bad_declarations_are_compile_errors(make_project: MakeProject, tmp_path: Path,
                                             declaration: str, message: str) -> None:
    project = scores_project(make_project, tmp_path, declaration)
    write(tmp_path, **GOOD)
    with pytest.raises(fsql.DefinitionError) as err:
        project.compile()
    assert message in str(err.value)
    assert "features/scores.yml:" in str(err.value)


def test_failing_test_blocks_publishing(make_project: MakeProject, tmp_path: Path) -> None:
    project = scores_project(make_project, tmp_path, "[not_null]",
                             training_tests="[{row_count: {max: 2}}]")
    write(tmp_path, **GOOD)
    first = project.build().training_sets[0]
    before = first.output.read_bytes()
    write(tmp_path, **data(scores=[None, 6, 7]))
    with pytest.raises(CheckFailed, match=r"not_null\(score\) on view:scores"):
        project.build()
    assert first.output.read_bytes() == before
    assert project.build(test=False).training_sets[0].rows == 2  # --no-test publishes


def test_training_set_tests_run_on_the_staged_file(make_project: MakeProject,
                                                   tmp_path: Path) -> None:
    project = scores_project(make_project, tmp_path, "[]",
                             training_tests="[{row_count: {max: 1}}]")
    write(tmp_path, **GOOD)
    with pytest.raises(CheckFailed, match="row_count on training_set:train"):
        project.build()
    assert not (project.paths.training_sets / "train.parquet").exists()
