"""Golden tests: the SQL fsql compiles for small projects, checked for text and for meaning.

Each directory next to this file is a project (``fsql_project.yml``, ``models/``,
``features/``, ``macros/``, data from VALUES/``range()`` models or from ``data/**/*.sql``, each
query written as the Parquet file of the same name when the case is copied; the project
directory in compiled SQL reads ``<project>``) with

    expected/<kind>__<name>.sql   target/dev/compiled/<kind>/<name>.sql after ``compile()``
    rows/<training_set>.csv       that training set's rows, computed by hand
    README.md                     what the case is about

``pytest tests/golden --update-golden`` rewrites ``expected/`` from the current compiler (review
the diff before committing). ``rows/`` is never rewritten: besides matching it, every training
set must also match a brute-force reading of the point-in-time rules over the same data.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import math
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import fsql
from fsql.compile import CompiledProject
from tests.pit.window_reference import Agg, value_at

HERE = Path(__file__).resolve().parent
CASES = sorted(p.name for p in HERE.iterdir() if (p / "fsql_project.yml").is_file())
PROJECT_PARTS = ("fsql_project.yml", "models", "features", "macros")


def copy_case(name: str, dest: Path) -> fsql.Project:
    root = dest / name
    root.mkdir(parents=True)
    for part in PROJECT_PARTS:
        src = HERE / name / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        elif src.is_file():
            shutil.copy(src, root / part)
    with duckdb.connect() as con:
        for query in sorted((HERE / name / "data").rglob("*.sql")):
            parquet = root / query.relative_to(HERE / name).with_suffix(".parquet")
            parquet.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY ({query.read_text()}) TO '{parquet}' (FORMAT parquet)")
    return fsql.Project(root)


def compiled_files(project: fsql.Project) -> dict[str, str]:
    """``<kind>__<name>.sql`` -> text, for every file of the target's compiled SQL, with the
    project directory (in source file paths) replaced by ``<project>``."""
    root, base = project.root, project.paths.compiled
    out = {}
    for path in sorted(base.rglob("*.sql")):
        rel = path.relative_to(base)
        out[f"{rel.parent.as_posix()}__{rel.stem}.sql"] = path.read_text().replace(
            str(root), "<project>")
    return out


def test_every_case_is_complete() -> None:
    assert len(CASES) >= 7, CASES
    for name in CASES:
        assert (HERE / name / "expected").is_dir(), f"{name}: run with --update-golden"
        assert (HERE / name / "README.md").is_file(), name


@pytest.mark.parametrize("case", CASES)
def test_compiled_sql_matches_golden(case: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    project = copy_case(case, tmp_path)
    project.compile()
    actual = compiled_files(project)
    assert actual, "compile wrote nothing"
    expected_dir = HERE / case / "expected"
    if request.config.getoption("--update-golden"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir()
        for name, text in actual.items():
            (expected_dir / name).write_text(text)
        return
    expected = {p.name: p.read_text() for p in sorted(expected_dir.glob("*.sql"))}
    problems = []
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"new compiled file {name} (not in expected/)")
    for name in sorted(set(expected) - set(actual)):
        problems.append(f"expected/{name} was not compiled")
    for name in sorted(set(actual) & set(expected)):
        if actual[name] != expected[name]:
            problems.append("".join(difflib.unified_diff(
                expected[name].splitlines(keepends=True), actual[name].splitlines(keepends=True),
                f"expected/{name}", f"compiled/{name}")))
    assert not problems, (f"{case}: compiled SQL differs from the golden files (if intended, "
                          "rerun with --update-golden):\n" + "\n".join(problems))


# -- meaning: the training sets' rows ----------------------------------------------------------

def canon(value: Any) -> str:
    """One text per value, as written in rows/*.csv: null is empty, instants in UTC."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item"):  # numpy scalars
        return canon(value.item())
    return str(value)


def frame_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [[canon(v) for v in row] for row in frame.astype(object).itertuples(index=False)]


def instant(value: Any) -> dt.datetime | None:
    """A time value as an aware UTC datetime (naive means UTC; a date is its midnight)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise TypeError(f"not a time: {value!r}")


def relation_rows(con: duckdb.DuckDBPyConnection, relation: str) -> list[dict[str, Any]]:
    return con.sql(f'SELECT * FROM "{relation}"').to_arrow_table().to_pylist()


def brute_force(compiled: CompiledProject, name: str) -> tuple[list[str], list[list[str]]]:
    """The training set ``name`` by the README's point-in-time rules, row by row in Python,
    over the data of the compiled models and views (replayed in a fresh DuckDB)."""
    ts = compiled.training_sets[name]
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for node_id in compiled.graph.order:
            node = compiled.nodes.get(node_id)
            if node is not None:
                con.execute(f'CREATE VIEW "{node.relation}" AS {node.query.sql("duckdb")}')
        spine_name = ts.definition.spine.model
        spine_node = compiled.nodes.get(f"model:{spine_name}") or compiled.nodes[
            f"view:{spine_name}"]
        spine = relation_rows(con, spine_node.relation)
        views = {j.view.name: relation_rows(con, j.relation) for j in ts.plan.joins}
    finally:
        con.close()
    spine_ts = ts.definition.spine.timestamp
    exclusive = ts.definition.feature_cutoff == "exclusive"

    def before(event: dt.datetime, at: dt.datetime) -> bool:
        """Rule 1's upper bound: at or before the spine time, or strictly before (exclusive)."""
        return event < at if exclusive else event <= at

    columns = list(spine[0]) if spine else []
    header = [*columns]
    for join in ts.plan.joins:
        header += join.output_names
    out = []
    for row in spine:
        values = [row[c] for c in columns]
        at = instant(row[spine_ts])
        for join in ts.plan.joins:
            view = join.view
            if view.aggregations:  # rule 9, by tests/pit/window_reference.py
                key = [row[k] for k in join.keys]
                values += [value_at(window_agg(f), views[view.name], join.keys, key, at,
                                    view.timestamp, view.created_timestamp,
                                    ts.definition.feature_cutoff) for f in join.features]
                continue
            candidates = [
                r for r in views[view.name]
                if all(row[k] is not None and r[k] == row[k] for k in join.keys)
                and r[view.timestamp] is not None and at is not None
                and before(instant(r[view.timestamp]), at)  # type: ignore[arg-type]
            ]

            def order(r: dict[str, Any], view: Any = view) -> tuple[Any, ...]:
                created = instant(r[view.created_timestamp]) if view.created_timestamp else None
                return (instant(r[view.timestamp]), created is not None,
                        created or dt.datetime.min.replace(tzinfo=dt.UTC))

            chosen = max(candidates, key=order) if candidates else None
            if chosen is not None and view.ttl is not None and at is not None:
                age = at - instant(chosen[view.timestamp])  # type: ignore[operator]
                if age > dt.timedelta(seconds=view.ttl.seconds):
                    chosen = None
            values += [None if chosen is None else chosen[f.name] for f in join.features]
        out.append([canon(v) for v in values])
    return header, out


def window_agg(feature: Any) -> Agg:
    agg = feature.aggregation
    return Agg(feature.name, agg.function, agg.column, dt.timedelta(seconds=agg.window.seconds),
               dt.timedelta(seconds=agg.hop.seconds))


def expected_rows(case: str, name: str) -> tuple[list[str], list[list[str]]]:
    with (HERE / case / "rows" / f"{name}.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


TRAINING_SETS = [(case, p.stem) for case in CASES
                 for p in sorted((HERE / case / "rows").glob("*.csv"))]


def test_every_training_set_has_hand_computed_rows(tmp_path: Path) -> None:
    for case in CASES:
        declared = set(copy_case(case, tmp_path).load().training_sets)
        with_rows = {name for c, name in TRAINING_SETS if c == case}
        assert declared == with_rows, f"{case}: rows/ for {sorted(declared)}"


@pytest.mark.parametrize(("case", "name"), TRAINING_SETS,
                         ids=[f"{c}-{n}" for c, n in TRAINING_SETS])
def test_training_set_rows(case: str, name: str, tmp_path: Path) -> None:
    project = copy_case(case, tmp_path)
    frame = project.training_set(name, rebuild=True)
    header, rows = list(frame.columns), frame_rows(frame)
    want_header, want_rows = expected_rows(case, name)
    assert header == want_header
    assert rows == want_rows, "\n".join(
        [f"rows differ from rows/{name}.csv (got, then expected):",
         *[",".join(r) for r in rows], "--", *[",".join(r) for r in want_rows]])
    # the same answer from the rules themselves, independently of the SQL
    bf_header, bf_rows = brute_force(project.compile(write=False), name)
    assert bf_header == header
    assert sorted(bf_rows) == sorted(rows)
