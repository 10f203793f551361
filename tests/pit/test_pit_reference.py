"""fsql's point-in-time join == a brute-force reading of the rules, on randomized data.

Each test makes one small project (``make_project``) whose views read Parquet files; every
hypothesis example rewrites those files, asks fsql for features, and compares every output cell
with ``tests/pit/reference.py`` (plain loops, no SQL). Domains are tiny on purpose: a few
entities and timestamps on a 10-minute grid, nudged by one microsecond now and then, so equal
timestamps, ties, rows stamped exactly at the spine time and exact ttl edges (and one
microsecond past them) come up in most examples.

Rows that tie exactly on (event, created) time are unspecified (README rule 2): for those the
output must equal one of the tied rows as a whole.

Every property runs with both feature cutoffs (README rule 1): ``inclusive`` joins rows stamped
exactly at the spine time, ``exclusive`` (``feature_cutoff: exclusive``) only rows before it.

Failures are not shrunk by default (slow: every example runs DuckDB); to get a minimal example
run ``FSQL_PIT_SHRINK=1 pytest tests/pit``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fsql
from fsql.build import TrainingSetResult
from tests.conftest import MakeProject
from tests.pit.reference import UTC, ViewSpec, expected, instant

Row = dict[str, Any]

ZERO = dt.timedelta(0)
US = dt.timedelta(microseconds=1)
STEP = dt.timedelta(minutes=10)
BASE = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GRID = tuple(BASE + i * STEP for i in range(13))  # two hours
#: DST changes of America/New_York: 2024-03-10 07:00 UTC (02:00 EST -> 03:00 EDT) and
#: 2024-11-03 06:00 UTC (02:00 EDT -> 01:00 EST); four hours around each
DST_GRIDS = tuple(tuple(start + i * STEP for i in range(25)) for start in (
    dt.datetime(2024, 3, 10, 5, 0, tzinfo=UTC), dt.datetime(2024, 11, 3, 4, 0, tzinfo=UTC)))

#: Deterministic (derandomize) and CI-sized. Shrinking is off unless FSQL_PIT_SHRINK=1: each
#: example runs DuckDB, so shrinking a failure takes minutes; the failure message already names
#: the spine row, what came back, what was expected and that entity's rows.
CHECKS = settings(max_examples=60, deadline=None, derandomize=True, print_blob=True,
                  phases=[p for p in Phase
                          if p != Phase.shrink or os.environ.get("FSQL_PIT_SHRINK") == "1"],
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


# -- strategies ------------------------------------------------------------------------------

def event_times(grid: Sequence[dt.datetime], null: bool = True) -> st.SearchStrategy[Any]:
    """Grid instants (most often exact), one microsecond either side of them, now and then
    null (never matched)."""
    values: list[dt.datetime | None] = [*grid, *grid, *grid, *(t - US for t in grid),
                                        *(t + US for t in grid)]
    return st.sampled_from([*values, *[None] * (len(grid) // 4)] if null else values)


def spine_times(grid: Sequence[dt.datetime]) -> st.SearchStrategy[Any]:
    return st.sampled_from([*grid, None])


#: README rule 1 both ways: each property runs once per cutoff (a drawn cutoff would mostly come
#: out as the first one, derandomized), 40 examples each (80 in all, to keep the file fast)
BOTH_CUTOFFS = pytest.mark.parametrize("cutoff", ["inclusive", "exclusive"])
PER_CUTOFF = settings(CHECKS, max_examples=40)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


INT64 = maybe(st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1)))
FLOAT64 = maybe(st.floats(allow_nan=False))
TEXT = maybe(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=4))
BOOL = maybe(st.booleans())
STAMP = maybe(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1),
                           timezones=st.just(UTC)))


@st.composite
def view_rows(draw: st.DrawFn, row: st.SearchStrategy[Row], spec: ViewSpec,
              max_size: int = 20) -> list[Row]:
    """Rows of one view. A few extra rows copy the entity and event time of another row, so
    event times tie often (then the created time decides, or the tie is exact)."""
    rows = draw(st.lists(row, max_size=max_size))
    for _ in range(draw(st.integers(0, 6))):
        if not rows:
            break
        like = draw(st.sampled_from(rows))
        rows.insert(draw(st.integers(0, len(rows))),
                    {**draw(row), **{c: like[c] for c in (*spec.keys, spec.timestamp)}})
    return rows


@st.composite
def spine_rows(draw: st.DrawFn, free: st.SearchStrategy[Row],
               views: Sequence[tuple[ViewSpec, Sequence[Row]]], spine_ts: str,
               max_size: int = 12) -> list[Row]:
    """Spine rows: free ones, and ones aimed at a view row (its entity, at its event time, a
    microsecond either side, exactly at its ttl edge, a microsecond past it). Some rows are
    repeated verbatim (duplicates must stay duplicates)."""
    aims = [(spec, row) for spec, rows in views for row in rows]
    out: list[Row] = []
    for _ in range(draw(st.integers(0, max_size))):
        row = draw(free)
        if aims and draw(st.booleans()):
            spec, like = draw(st.sampled_from(aims))
            row.update({k: like[k] for k in spec.keys})
            offsets = [ZERO, -US, US, *((spec.ttl, spec.ttl - US, spec.ttl + US, STEP)
                                        if spec.ttl else (dt.timedelta(days=400),))]
            event = like[spec.timestamp]
            row[spine_ts] = None if event is None else event + draw(st.sampled_from(offsets))
        out.append(row)
    for _ in range(draw(st.integers(0, 3))):
        if out:
            out.insert(draw(st.integers(0, len(out))), dict(draw(st.sampled_from(out))))
    return out


def shuffled_index(draw: st.DrawFn, n: int) -> pd.Index:
    """A non-default index: the output must keep it (and the row order)."""
    return pd.Index(draw(st.permutations(range(n))), dtype="int64") * 7 + 100


# -- writing inputs --------------------------------------------------------------------------

def in_zone(value: dt.datetime | None, zone: str | None) -> dt.datetime | None:
    """The same instant as a wall time in ``zone`` (None: naive, meaning UTC)."""
    if value is None:
        return None
    if zone is None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value.astimezone(ZoneInfo(zone))


def arrow_column(values: Sequence[Any], dtype: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(dtype):
        if dtype.tz is None:  # naive means UTC
            values = [v if v is None or v.tzinfo is None else in_zone(v, None) for v in values]
        else:  # an instant: pyarrow stores it as UTC
            assert all(v is None or v.tzinfo is not None for v in values)
    return pa.array(values, dtype)


def write_parquet(path: Path, schema: pa.Schema, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({f.name: arrow_column([r[f.name] for r in rows], f.type) for f in schema},
                     schema=schema)
    pq.write_table(table, path)


def write_parts(directory: Path, schema: pa.Schema, rows: Sequence[Row]) -> None:
    """``rows`` as three Parquet files of ``directory`` (one of them empty): row numbers
    restart in each file."""
    cut = len(rows) // 2
    for i, part in enumerate((rows[:cut], [], rows[cut:])):
        write_parquet(directory / f"part-{i}.parquet", schema, part)


def time_column(values: Sequence[dt.datetime | None], zone: str | None,
                unit: str = "us") -> Any:
    """Instants as a pandas array in ``zone`` (None: naive UTC wall time); an array, not a
    Series, so a DataFrame with another index takes it by position."""
    utc = pd.Series(pd.to_datetime(list(values), utc=True)).astype(f"datetime64[{unit}, UTC]")
    return (utc.dt.tz_localize(None) if zone is None else utc.dt.tz_convert(zone)).array


def views_project(make_project: MakeProject, entities: str, views: dict[str, str],
                  tables: Sequence[str] = (), files: dict[str, str] | None = None,
                  globbed: Sequence[str] = (), through_model: Sequence[str] = ()
                  ) -> fsql.Project:
    """A project whose views (name -> feature_view YAML) each select everything from their
    own Parquet file ``data/<name>.parquet`` (source ``raw.<name>``); ``tables`` are more
    sources there, ``files`` more project files.

    A view selecting from its source has a row identity on DuckDB, so its features are fetched
    after the join (late materialization); one in ``through_model`` reads its source through
    a model, has none, and carries its features through the join. The source of one in
    ``globbed`` is every file of ``data/<name>/`` (``write_parts``)."""
    def path(t: str) -> str:
        return f"data/{t}/*.parquet" if t in globbed else f"data/{t}.parquet"

    entries = "".join(f"\n      - {{name: {t}, path: {path(t)}}}" for t in (*views, *tables))

    def reads(name: str) -> str:
        return f"ref('{name}_rows')" if name in through_model else f"source('raw', '{name}')"

    return make_project({
        "models/sources.yml": f"sources:\n  - name: raw\n    tables:{entries}\n",
        "features/entities.yml": entities,
        **{f"features/{name}.yml": yml for name, yml in views.items()},
        **{f"features/{name}.sql": f"SELECT * FROM {{{{ {reads(name)} }}}}\n" for name in views},
        **{f"models/{name}_rows.sql": f"SELECT * FROM {{{{ source('raw', '{name}') }}}}\n"
           for name in through_model},
        **(files or {}),
    })


def view_yml(spec: ViewSpec, entities: str | Sequence[str], types: dict[str, str]) -> str:
    """The feature_view YAML of the view ``spec`` describes to the reference, so that fsql and
    the reference read one declaration: ``entities`` one name (``entity:``) or a list
    (``entities:``), ``types`` feature -> type in declaration order, a ttl whole minutes."""
    assert set(types) == set(spec.features), (types, spec)
    lines = ["feature_view:",
             f"  entity: {entities}" if isinstance(entities, str)
             else f"  entities: [{', '.join(entities)}]",
             f"  timestamp: {spec.timestamp}"]
    if spec.created:
        lines.append(f"  created_timestamp: {spec.created}")
    if spec.ttl:
        minutes, rest = divmod(spec.ttl, dt.timedelta(minutes=1))
        assert not rest, spec.ttl
        lines.append(f"  ttl: {minutes // 60}h" if minutes % 60 == 0 else f"  ttl: {minutes}m")
    lines.append("  features:")
    lines += [f"    - {{name: {name}, type: {type_}}}" for name, type_ in types.items()]
    return "\n".join(lines) + "\n"


# -- reading and comparing outputs -----------------------------------------------------------

def py(value: Any) -> Any:
    """A pandas/numpy/arrow cell as a plain Python value (timestamps as UTC instants)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        assert value.nanosecond == 0
        return instant(value.to_pydatetime())
    if isinstance(value, dt.datetime):
        return instant(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def same(a: Any, b: Any) -> bool:
    """Exact equality, types included (an int64 value must not come back as a float or bool;
    timestamps compare as instants)."""
    a, b = py(a), py(b)
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and a == b
    return a == b


def assert_pit(actual: Sequence[Row], spine: Sequence[Row], spine_ts: str,
               views: Sequence[tuple[ViewSpec, Sequence[Row]]], cutoff: str) -> None:
    """Every output row (in spine order) holds, per view, one acceptable feature tuple."""
    assert len(actual) == len(spine)
    for spec, rows in views:
        wanted = expected(spec, rows, spine, spine_ts, cutoff)
        for i, (out, options) in enumerate(zip(actual, wanted, strict=True)):
            got = tuple(out[f] for f in spec.features)
            if not any(all(same(g, o) for g, o in zip(got, option, strict=True))
                       for option in options):
                keys = {k: spine[i][k] for k in spec.keys}
                relevant = [r for r in rows if all(r[k] == v for k, v in keys.items())]
                pytest.fail(f"spine row {i} {spine[i]} ({cutoff}): view on {spec.keys} gave "
                            f"{dict(zip(spec.features, got, strict=True))}, expected one of "
                            f"{options}\nrows of that entity: {relevant}")


def output_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[Row]:
    return [{c: frame[c].iloc[i] for c in columns} for i in range(len(frame))]


def check_frame(out: pd.DataFrame, spine: pd.DataFrame, features: dict[str, str]) -> None:
    """historical_features' shape: the spine untouched (rows, order, index, columns), then the
    features with exact dtypes."""
    assert list(out.columns) == [*spine.columns, *features]
    pd.testing.assert_frame_equal(out[list(spine.columns)], spine)
    for name, declared in features.items():
        dtype = out[name].dtype
        if declared == "int64":
            assert dtype == pd.Int64Dtype(), (name, dtype)
        elif declared == "bool":
            assert dtype == pd.BooleanDtype(), (name, dtype)
        elif declared == "float64":
            assert dtype == np.float64, (name, dtype)
        elif declared == "string":
            assert pd.api.types.is_string_dtype(dtype), (name, dtype)
        elif declared == "timestamp":
            assert isinstance(dtype, np.dtype) and dtype.kind == "M", (name, dtype)
        elif declared == "timestamptz":
            assert isinstance(dtype, pd.DatetimeTZDtype), (name, dtype)
        else:
            raise AssertionError(declared)


# -- (1) ttl + created timestamp + nullable features of every kind ---------------------------

V_FEATURES = {"i": "int64", "f": "float64", "s": "string", "b": "bool", "at": "timestamp"}
V_SCHEMA = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("us")),
                      ("created", pa.timestamp("us")), ("i", pa.int64()), ("f", pa.float64()),
                      ("s", pa.string()), ("b", pa.bool_()), ("at", pa.timestamp("us"))])
V_SPEC = ViewSpec(keys=("user_id",), timestamp="ts", created="created",
                  ttl=dt.timedelta(minutes=30), features=tuple(V_FEATURES))
V_YML = view_yml(V_SPEC, "user", V_FEATURES)
USER = "entities: [{name: user, join_keys: [user_id]}]\n"

v_rows = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, None]),
    "ts": event_times(GRID),
    # a few created times only: equal (event, created) pairs happen, null created too
    "created": st.sampled_from([None, *GRID[:6]]),
    "i": INT64, "f": FLOAT64, "s": TEXT, "b": BOOL, "at": STAMP,
})
user_spine = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, 4, None]),  # 4 has no rows
    "ts": spine_times(GRID),
    "label": st.integers(0, 1),
})


@pytest.fixture
def single_view(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"v": V_YML})


@BOTH_CUTOFFS
@PER_CUTOFF
@given(data=st.data())
def test_ttl_and_created_timestamp(single_view: fsql.Project, data: st.DataObject,
                                   cutoff: str) -> None:
    rows = data.draw(view_rows(v_rows, V_SPEC, max_size=25), "v rows")
    spine = data.draw(spine_rows(user_spine, [(V_SPEC, rows)], "ts"), "spine")
    write_parquet(single_view.root / "data" / "v.parquet", V_SCHEMA, rows)
    frame = pd.DataFrame({"user_id": pd.array([r["user_id"] for r in spine], dtype="Int64"),
                          "ts": time_column([r["ts"] for r in spine], None),
                          "label": pd.array([r["label"] for r in spine], dtype="int64")},
                         index=pd.RangeIndex(len(spine))[::-1] * 3 + 5)
    out = single_view.historical_features(frame, ["v"], timestamp="ts", feature_cutoff=cutoff)
    check_frame(out, frame, V_FEATURES)
    assert_pit(output_rows(out, V_FEATURES), spine, "ts", [(V_SPEC, rows)], cutoff)


# -- (2) no ttl, no created timestamp --------------------------------------------------------

W_SCHEMA = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("us")),
                      ("n", pa.int64()), ("tag", pa.string())])
W_SPEC = ViewSpec(keys=("user_id",), timestamp="ts", features=("n", "tag"))
W_YML = view_yml(W_SPEC, "user", {"n": "int64", "tag": "string"})
#: rows from long ago up to the grid: with no ttl, any age counts
W_TIMES = (BASE - dt.timedelta(days=400), BASE - dt.timedelta(days=1), *GRID[:7])
w_rows = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, None]), "ts": event_times(W_TIMES),
    "n": INT64, "tag": TEXT})
late_spine = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, 4, None]),
    "ts": spine_times((*W_TIMES, BASE + dt.timedelta(days=30), BASE - dt.timedelta(days=500))),
})


@pytest.fixture
def no_ttl_view(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"w": W_YML})


@BOTH_CUTOFFS
@PER_CUTOFF
@given(data=st.data())
def test_no_ttl_and_event_time_ties(no_ttl_view: fsql.Project, data: st.DataObject,
                                    cutoff: str) -> None:
    rows = data.draw(view_rows(w_rows, W_SPEC), "w rows")
    spine = data.draw(spine_rows(late_spine, [(W_SPEC, rows)], "ts"), "spine")
    write_parquet(no_ttl_view.root / "data" / "w.parquet", W_SCHEMA, rows)
    frame = pd.DataFrame({"ts": time_column([r["ts"] for r in spine], None),
                          "user_id": pd.array([r["user_id"] for r in spine], dtype="Int64")},
                         index=shuffled_index(data.draw, len(spine)))
    out = no_ttl_view.historical_features(frame, ["w.tag", "w.n"], timestamp="ts",
                                          feature_cutoff=cutoff)
    # features come in the order asked for
    check_frame(out, frame, {"tag": "string", "n": "int64"})
    assert_pit(output_rows(out, ["n", "tag"]), spine, "ts", [(W_SPEC, rows)], cutoff)


# -- (3) composite keys, three views on different entities, duplicate spine rows -------------

ENTITIES = """
    entities:
      - {name: user, join_keys: [user_id]}
      - {name: item, join_keys: [shop, sku]}
    """
STOCK_SCHEMA = pa.schema([("shop", pa.string()), ("sku", pa.int64()),
                          ("ts", pa.timestamp("us")), ("loaded", pa.timestamp("us")),
                          ("qty", pa.int64()), ("price", pa.float64())])
UI_SCHEMA = pa.schema([("sku", pa.int64()), ("user_id", pa.int64()), ("shop", pa.string()),
                       ("ts", pa.timestamp("us")), ("clicks", pa.int64()),
                       ("note", pa.string())])
ACT_SCHEMA = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("us")),
                        ("score", pa.float64()), ("active", pa.bool_())])
STOCK_SPEC = ViewSpec(("shop", "sku"), "ts", ("price", "qty"), "loaded",
                      dt.timedelta(minutes=40))
UI_SPEC = ViewSpec(("user_id", "shop", "sku"), "ts", ("clicks", "note"),
                   ttl=dt.timedelta(hours=1))
ACT_SPEC = ViewSpec(("user_id",), "ts", ("score", "active"))
STOCK_YML = view_yml(STOCK_SPEC, "item", {"qty": "int64", "price": "float64"})
UI_YML = view_yml(UI_SPEC, ["user", "item"], {"clicks": "int64", "note": "string"})
ACT_YML = view_yml(ACT_SPEC, "user", {"score": "float64", "active": "bool"})
SHOPS = st.sampled_from(["a", "b", "a", "b", None])
SKUS = st.sampled_from([1, 2, 1, 2, None])
USERS = st.sampled_from([1, 2, 1, 2, None])
stock_rows = st.fixed_dictionaries({
    "shop": SHOPS, "sku": SKUS, "ts": event_times(GRID),
    "loaded": maybe(event_times(GRID, null=False)), "qty": INT64, "price": FLOAT64})
ui_rows = st.fixed_dictionaries({
    "sku": SKUS, "user_id": USERS, "shop": SHOPS, "ts": event_times(GRID),
    "clicks": INT64, "note": TEXT})
act_rows = st.fixed_dictionaries({
    "user_id": USERS, "ts": event_times(GRID), "score": FLOAT64, "active": BOOL})
multi_spine = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, None]), "shop": st.sampled_from(["a", "b", "c", None]),
    "sku": st.sampled_from([1, 2, 3, None]), "ts": spine_times(GRID)})


@pytest.fixture
def multi_view(make_project: MakeProject) -> fsql.Project:
    """Both join paths in one query: ``stock`` (one file) and ``ui`` (a glob) have a row
    identity on DuckDB, ``act`` (through a model) has none."""
    project = views_project(make_project, ENTITIES,
                            {"stock": STOCK_YML, "ui": UI_YML, "act": ACT_YML},
                            globbed=["ui"], through_model=["act"])
    write_multi(project, [], [], [])
    nodes = project.compile(write=False).nodes
    assert [nodes[f"view:{n}"].rows is not None for n in ("stock", "ui", "act")] == [
        True, True, False]
    return project


def write_multi(project: fsql.Project, stock: Sequence[Row], ui: Sequence[Row],
                act: Sequence[Row]) -> None:
    """The files of ``multi_view``'s three views (``ui``'s as parts of a glob)."""
    write_parquet(project.root / "data" / "stock.parquet", STOCK_SCHEMA, stock)
    write_parts(project.root / "data" / "ui", UI_SCHEMA, ui)
    write_parquet(project.root / "data" / "act.parquet", ACT_SCHEMA, act)


def multi_case(project: fsql.Project, data: st.DataObject
               ) -> tuple[list[tuple[ViewSpec, list[Row]]], list[Row]]:
    """Rows of the three views of ``multi_view`` (written to their files) and a spine aimed
    at them."""
    views = [(STOCK_SPEC, data.draw(view_rows(stock_rows, STOCK_SPEC), "stock rows")),
             (UI_SPEC, data.draw(view_rows(ui_rows, UI_SPEC), "ui rows")),
             (ACT_SPEC, data.draw(view_rows(act_rows, ACT_SPEC, max_size=12), "act rows"))]
    write_multi(project, *(rows for _, rows in views))
    return views, data.draw(spine_rows(multi_spine, views, "ts", max_size=15), "spine")


@BOTH_CUTOFFS
@PER_CUTOFF
@given(data=st.data())
def test_composite_keys_and_several_views(multi_view: fsql.Project, data: st.DataObject,
                                          cutoff: str) -> None:
    views, spine = multi_case(multi_view, data)
    (_, stock), (_, ui), (_, act) = views
    frame = pd.DataFrame({
        "sku": pd.array([r["sku"] for r in spine], dtype="Int64"),
        "ts": time_column([r["ts"] for r in spine], None),
        "shop": pd.array([r["shop"] for r in spine], dtype="str"),
        "user_id": pd.array([r["user_id"] for r in spine], dtype="Int64"),
    }, index=shuffled_index(data.draw, len(spine)))
    out = multi_view.historical_features(
        frame, ["ui", "stock.price", "act.score", "stock.qty"], timestamp="ts",
        feature_cutoff=cutoff)
    # features grouped by view, views and features in the order first asked for
    check_frame(out, frame, {"clicks": "int64", "note": "string", "price": "float64",
                             "qty": "int64", "score": "float64"})
    requested = [(STOCK_SPEC, stock), (UI_SPEC, ui), (replace(ACT_SPEC, features=("score",)), act)]
    assert_pit(output_rows(out, ["clicks", "note", "price", "qty", "score"]), spine, "ts",
               requested, cutoff)


# -- (4) time zones: a DST spine, zoned and naive sources ------------------------------------

#: the event time is zoned (Asia/Kolkata, +05:30), its created time naive (UTC)
ZONED_SCHEMA = pa.schema([("user_id", pa.int64()),
                          ("ts", pa.timestamp("us", tz="Asia/Kolkata")),
                          ("created", pa.timestamp("us")), ("amount", pa.int64()),
                          ("seen", pa.timestamp("us", tz="Australia/Lord_Howe"))])
NAIVE_SCHEMA = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("us")),
                          ("flag", pa.bool_())])
ZONED_SPEC = ViewSpec(("user_id",), "ts", ("amount", "seen"), "created",
                      dt.timedelta(minutes=30))
NAIVE_SPEC = ViewSpec(("user_id",), "ts", ("flag",), ttl=dt.timedelta(minutes=20))
ZONED_YML = view_yml(ZONED_SPEC, "user", {"amount": "int64", "seen": "timestamptz"})
NAIVE_YML = view_yml(NAIVE_SPEC, "user", {"flag": "bool"})


@pytest.fixture
def zoned_views(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"zoned": ZONED_YML, "naive": NAIVE_YML})


@st.composite
def zoned_case(draw: st.DrawFn) -> tuple[list[Row], list[Row], list[Row]]:
    grid = draw(st.sampled_from(DST_GRIDS))
    zoned = draw(view_rows(st.fixed_dictionaries({
        "user_id": st.sampled_from([1, 2, None]), "ts": event_times(grid),
        "created": st.sampled_from([None, grid[0], grid[1]]), "amount": INT64,
        "seen": STAMP}), ZONED_SPEC, max_size=25))
    naive = draw(view_rows(st.fixed_dictionaries({
        "user_id": st.sampled_from([1, 2, None]), "ts": event_times(grid),
        "flag": BOOL}), NAIVE_SPEC))
    spine = draw(spine_rows(st.fixed_dictionaries({
        "user_id": st.sampled_from([1, 2, 3, None]), "at": spine_times(grid)}),
        [(ZONED_SPEC, zoned), (NAIVE_SPEC, naive)], "at"))
    return zoned, naive, spine


def zoned_inputs(project: fsql.Project, case: tuple[list[Row], ...], zone: str | None
                 ) -> tuple[list[Row], list[Row], list[Row]]:
    """A ``zoned_case`` as the inputs hold it -- wall times in their zones, what the reference
    sees -- with both views written to their files: (zoned rows, naive rows, spine)."""
    zoned = [{**r, "ts": in_zone(r["ts"], "Asia/Kolkata"), "created": in_zone(r["created"], None)}
             for r in case[0]]
    naive = [{**r, "ts": in_zone(r["ts"], None)} for r in case[1]]
    write_parquet(project.root / "data" / "zoned.parquet", ZONED_SCHEMA, zoned)
    write_parquet(project.root / "data" / "naive.parquet", NAIVE_SCHEMA, naive)
    return zoned, naive, [{**r, "at": in_zone(r["at"], zone)} for r in case[2]]


@BOTH_CUTOFFS
@PER_CUTOFF
@given(case=zoned_case(),
       zone=st.sampled_from(["America/New_York", "America/New_York", None, "Asia/Kolkata"]),
       unit=st.sampled_from(["us", "ns"]))
def test_time_zones_and_dst(zoned_views: fsql.Project, case: tuple[list[Row], ...],
                            zone: str | None, unit: str, cutoff: str) -> None:
    zoned, naive, spine = zoned_inputs(zoned_views, case, zone)
    frame = pd.DataFrame({"user_id": pd.array([r["user_id"] for r in spine], dtype="Int64"),
                          "at": time_column([r["at"] for r in spine], zone, unit)})
    out = zoned_views.historical_features(frame, ["zoned", "naive"], timestamp="at",
                                          feature_cutoff=cutoff)
    check_frame(out, frame, {"amount": "int64", "seen": "timestamptz", "flag": "bool"})
    assert_pit(output_rows(out, ["amount", "seen", "flag"]), spine, "at",
               [(ZONED_SPEC, zoned), (NAIVE_SPEC, naive)], cutoff)


# -- (5) fsql build of a declared training set == reference == historical_features -----------

TRAIN_YML = """
    training_sets:
      - name: train
        spine: {source: raw.spine, timestamp: label_ts}
        features: [v, w.n]
      - name: train_exclusive
        spine: {source: raw.spine, timestamp: label_ts}
        features: [v, w.n]
        feature_cutoff: exclusive
    """
#: the training sets above and their cutoffs
TRAIN_CUTOFFS = {"train": "inclusive", "train_exclusive": "exclusive"}
SPINE_SCHEMA = pa.schema([("row_id", pa.int64()), ("user_id", pa.int64()),
                          ("label_ts", pa.timestamp("us")), ("label", pa.bool_())])
TRAIN_FEATURES = {**V_FEATURES, "n": "int64"}
train_spine = st.fixed_dictionaries({
    "user_id": st.sampled_from([1, 2, 3, 4, None]), "label_ts": spine_times(GRID),
    "label": BOOL})


@pytest.fixture
def declared_training_set(make_project: MakeProject) -> fsql.Project:
    return views_project(make_project, USER, {"v": V_YML, "w": W_YML}, tables=["spine"],
                         files={"features/training_sets.yml": TRAIN_YML})


def build_order(row: Row) -> tuple[Any, ...]:
    """README rule 8: spine time, then the join keys, then the other spine columns (nulls
    last, DuckDB's default)."""
    def last(value: Any) -> tuple[bool, Any]:
        return (value is None, value if value is not None else 0)

    return (last(instant(row["label_ts"])), last(row["user_id"]), last(row["row_id"]),
            last(row["label"]))


@settings(CHECKS, max_examples=40)
@given(data=st.data())
def test_build_equals_reference_and_historical_features(
        declared_training_set: fsql.Project, data: st.DataObject) -> None:
    project = declared_training_set
    v = data.draw(view_rows(v_rows, V_SPEC), "v rows")
    w = data.draw(view_rows(w_rows, W_SPEC, max_size=12), "w rows")
    views = [(V_SPEC, v), (replace(W_SPEC, features=("n",)), w)]
    spine = data.draw(spine_rows(train_spine, views, "label_ts"), "spine")
    spine = [{"row_id": i, **r} for i, r in enumerate(spine)]  # to find rows after sorting
    write_parquet(project.root / "data" / "v.parquet", V_SCHEMA, v)
    write_parquet(project.root / "data" / "w.parquet", W_SCHEMA, w)
    write_parquet(project.root / "data" / "spine.parquet", SPINE_SCHEMA, spine)

    result = project.build()
    assert sorted(b.name for b in result.training_sets) == sorted(TRAIN_CUTOFFS)
    for built in result.training_sets:
        check_built(project, built, spine, views, TRAIN_CUTOFFS[built.name])


def check_built(project: fsql.Project, built: TrainingSetResult, spine: Sequence[Row],
                views: Sequence[tuple[ViewSpec, Sequence[Row]]], cutoff: str) -> None:
    """One built training set == the reference with its cutoff == ``training_set`` ==
    ``historical_features`` by its name (whose cutoff is then the default)."""
    columns = [*SPINE_SCHEMA.names, *TRAIN_FEATURES]
    assert built.rows == len(spine)
    table = pq.read_table(built.output)
    assert table.column_names == columns
    assert [str(t) for t in table.schema.types] == [
        "int64", "int64", "timestamp[us]", "bool",
        "int64", "double", "string", "bool", "timestamp[us]", "int64"]
    rows = table.to_pylist()
    assert [r["row_id"] for r in rows] == [r["row_id"] for r in sorted(spine, key=build_order)]
    by_id = sorted(rows, key=lambda r: r["row_id"])
    for r, s in zip(by_id, spine, strict=True):
        assert all(same(r[c], s[c]) for c in SPINE_SCHEMA.names), (r, s)
    assert_pit(by_id, spine, "label_ts", views, cutoff)

    # the training set API, recomputed: the same query, nothing written
    fresh = project.training_set(built.name, rebuild=True)
    assert list(fresh.columns) == columns
    fresh_rows = output_rows(fresh, columns)
    assert len(fresh_rows) == len(rows)
    for a, b in zip(fresh_rows, rows, strict=True):
        assert all(same(a[c], b[c]) for c in columns), (a, b)

    # historical_features on the same spine, by the training set's name: same values
    frame = pd.DataFrame({
        "row_id": pd.array([r["row_id"] for r in spine], dtype="int64"),
        "user_id": pd.array([r["user_id"] for r in spine], dtype="Int64"),
        "label_ts": time_column([r["label_ts"] for r in spine], None),
        "label": pd.array([r["label"] for r in spine], dtype="boolean")})
    out = project.historical_features(frame, built.name)
    check_frame(out, frame, TRAIN_FEATURES)
    hist_rows = output_rows(out, columns)
    for a, b in zip(hist_rows, by_id, strict=True):
        assert all(same(a[c], b[c]) for c in columns), (a, b)


# -- nanoseconds: compared at microseconds, rounded the safe way -----------------------------

@pytest.mark.parametrize("zone", [None, "America/New_York"])
def test_nanosecond_times_never_leak_a_later_row(no_ttl_view: fsql.Project,
                                                 zone: str | None) -> None:
    """Engines round nanosecond timestamps to the nearest microsecond, which would join a row
    stamped up to half a microsecond after the spine time. fsql rounds spine times down and
    view times up: a sub-microsecond difference may hide a row, never leak one."""
    noon = pd.Timestamp("2024-05-01 12:00:00")
    ns = pd.Timedelta(nanoseconds=1)
    events = [(1, noon, 1), (2, noon + 400 * ns, 2), (3, noon - 2000 * ns, 3)]
    schema = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("ns")),
                        ("n", pa.int64()), ("tag", pa.string())])
    (no_ttl_view.root / "data").mkdir(exist_ok=True)
    pq.write_table(pa.table({"user_id": [u for u, _, _ in events],
                             "ts": pa.array([t.value for _, t, _ in events], pa.timestamp("ns")),
                             "n": [n for _, _, n in events], "tag": ["x"] * 3}, schema),
                   no_ttl_view.root / "data" / "w.parquet")
    spine_ts = pd.Series([noon - ns, noon, noon - 500 * ns]).astype("datetime64[ns]")
    if zone is not None:
        spine_ts = spine_ts.dt.tz_localize("UTC").dt.tz_convert(zone)
    spine = pd.DataFrame({"ts": spine_ts, "user_id": [1, 2, 3]})
    out = no_ttl_view.historical_features(spine, ["w.n"], timestamp="ts")
    # 1: stamped 1 ns after the spine time; 2: 400 ns after; 3: 1.5 us before -> joined
    assert [py(v) for v in out["n"]] == [None, None, 3]
