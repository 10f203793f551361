"""Time-window aggregations (README point-in-time rule 9) == the brute-force reference, on
randomized data, offline and online.

Rows sit on a 5-minute grid over three hours, nudged a microsecond either side now and then, so
rows exactly at a window's start, at the spine time, and a microsecond outside either edge come
up in most examples; a few keys only, so one entity is often hot. Values are chosen so that
float sums are exact (quarter multiples): every value, floats included, must then match the
reference to the bit. ``test_float_sums_agree_to_rounding`` covers arbitrary floats, which the
two paths add in different orders.

Online, the store is read with a controllable clock: after a sync at ``as_of``, the value read
at any ``t >= as_of`` equals the training value at ``t`` (and the reference) over the rows known
at the sync, through a full and then an incremental sync.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fsql
from fsql.serve import PRESENT, OnlineService
from tests.conftest import MakeProject, online_profile
from tests.pit.test_pit_reference import CHECKS, py, same
from tests.pit.window_reference import Agg, micros, value_at

M = dt.timedelta(minutes=1)
US = dt.timedelta(microseconds=1)
# in the future, so that the online store's expiry (real time) never drops what a test reads
# at its own clock
BASE = (dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        + dt.timedelta(days=1))
GRID = tuple(BASE + i * 5 * M for i in range(37))

AGGS = (
    Agg("n_10m", "count", None, 10 * M, 5 * M),
    Agg("nq_15m", "count", "q", 15 * M, 5 * M),
    Agg("s_30m", "sum", "f", 30 * M, 10 * M),
    Agg("q_1h", "sum", "q", 60 * M, 5 * M),
    Agg("a_30m", "avg", "f", 30 * M, 10 * M),
    Agg("aq_20m", "avg", "q", 20 * M, 20 * M),
    Agg("ap_1h", "avg", "p", 60 * M, 30 * M),
    Agg("sp_1h", "sum", "p", 60 * M, 60 * M),
    Agg("mn_20m", "min", "q", 20 * M, 20 * M),
    Agg("mx_2h", "max", "f", 120 * M, 60 * M),
    Agg("mp_45m", "max", "p", 45 * M, 15 * M),
    Agg("lm_30m", "last", "m", 30 * M, 5 * M),
    Agg("la_1h", "last", "at", 60 * M, 5 * M),
)
TYPES = {"count": "int64", "avg": "float64"}
COLUMN_TYPES = {"f": "float64", "q": "int64", "p": "decimal(10,2)", "m": "string",
                "at": "timestamp"}
SCHEMA = pa.schema([("card", pa.int64()), ("ts", pa.timestamp("us")),
                    ("created", pa.timestamp("us")), ("f", pa.float64()), ("q", pa.int64()),
                    ("p", pa.decimal128(10, 2)), ("m", pa.string()), ("at", pa.timestamp("us"))])


def _minutes(delta: dt.timedelta) -> str:
    return f"{delta // M}m"


def _type(agg: Agg) -> str:
    if agg.function in TYPES:
        return TYPES[agg.function]
    assert agg.column is not None
    column = COLUMN_TYPES[agg.column]
    return "decimal(38,2)" if agg.function == "sum" and column.startswith("decimal") else column


VIEW_YML = "feature_view:\n  entity: card\n  timestamp: ts\n  created_timestamp: created\n" \
    "  online: true\n  aggregations:\n" + "".join(
        f"    - {{name: {a.name}, function: {a.function}, "
        + (f"column: {a.column}, " if a.column else "")
        + f"window: {_minutes(a.window)}, hop: {_minutes(a.hop)}, type: '{_type(a)}'}}\n"
        for a in AGGS)
NAMES = [a.name for a in AGGS]


def times(null: bool = True) -> st.SearchStrategy[Any]:
    nudged = [*GRID, *GRID, *(t - US for t in GRID), *(t + US for t in GRID)]
    return st.sampled_from([*nudged, None] if null else nudged)


ROW = st.fixed_dictionaries({
    "card": st.sampled_from([1, 1, 1, 2, 3, None]),  # card 1 is hot
    "ts": times(),
    "created_after": st.sampled_from([None, 0, 0, 1, 7]),  # minutes after ts (None: null)
    "f": st.sampled_from([None, -2.5, -0.25, 0.0, 0.75, 1.5, 3.25, 1048576.5]),
    "q": st.one_of(st.none(), st.integers(-3, 3), st.just(2**40)),
    "p": st.sampled_from([None, Decimal("1.25"), Decimal("-3.10"), Decimal("0.00"),
                          Decimal("99999999.99")]),
    "m": st.sampled_from([None, "a", "b", "ü"]),
    "at": st.sampled_from([None, GRID[0], GRID[5], GRID[5] + US]),
})


def finish(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their created time (minutes after the event, or null)."""
    out = []
    for row in rows:
        after = row.pop("created_after")
        row["created"] = None if after is None or row["ts"] is None else row["ts"] + after * M
        out.append(row)
    return out


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({f.name: pa.array([r[f.name] for r in rows], f.type)
                             for f in SCHEMA}, schema=SCHEMA), path)


def reference(rows: list[dict[str, Any]], card: Any, at: Any, cutoff: str = "inclusive"
              ) -> dict[str, Any]:
    return {a.name: value_at(a, rows, ["card"], [card], at, "ts", "created", cutoff)
            for a in AGGS}


def project_files() -> dict[str, str]:
    return {
        "models/sources.yml": "sources:\n  - name: raw\n    tables:\n"
                              "      - {name: txns, path: data/txns.parquet}\n",
        "features/entities.yml": "entities: [{name: card, join_keys: [card]}]\n",
        "features/w.yml": VIEW_YML,
        "features/w.sql": "SELECT * FROM {{ source('raw', 'txns') }}\n",
    }


def training(project: fsql.Project, points: list[tuple[Any, Any]], cutoff: str
             ) -> list[dict[str, Any]]:
    spine = pd.DataFrame({"card": pd.array([c for c, _ in points], "Int64"),
                          "t": pd.Series([t for _, t in points], dtype="datetime64[us]")})
    out = project.historical_features(spine, ["w"], timestamp="t", feature_cutoff=cutoff)
    return [{n: out[n].iloc[i] for n in NAMES} for i in range(len(out))]


def assert_same(got: dict[str, Any], wanted: dict[str, Any], what: str,
                rows: list[dict[str, Any]]) -> None:
    bad = {n: (py(got[n]), wanted[n]) for n in NAMES if not same(got[n], wanted[n])}
    assert not bad, f"{what}: (got, expected) {bad}\nrows: {rows}"


@pytest.fixture
def windows_project(make_project: MakeProject) -> fsql.Project:
    return make_project(project_files())


@pytest.mark.parametrize("cutoff", ["inclusive", "exclusive"])
@settings(CHECKS, max_examples=40)
@given(rows=st.lists(ROW, max_size=25),
       points=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, None]), times()), min_size=1,
                       max_size=12))
def test_training_values_equal_the_reference(windows_project: fsql.Project, cutoff: str,
                                              rows: list[dict[str, Any]],
                                              points: list[tuple[Any, Any]]) -> None:
    rows = finish([dict(r) for r in rows])
    write(windows_project.root / "data" / "txns.parquet", rows)
    for i, (got, (card, at)) in enumerate(zip(training(windows_project, points, cutoff), points,
                                              strict=True)):
        assert_same(got, reference(rows, card, at, cutoff), f"point {i} ({card}, {at}, "
                    f"{cutoff})", rows)


#: n_10m at the points of ``edge_case``, by cutoff
EDGE_COUNTS = {"inclusive": [0, 1, 1, 1, 0], "exclusive": [0, 0, 1, 1, 0]}


def edge_case(project: fsql.Project) -> list[tuple[Any, Any]]:
    """One row at 12:00 (written), and the points to ask at: 11:59:59.999999, 12:00, 12:10,
    12:14:59.999999, 12:15."""
    noon = GRID[12]
    write(project.root / "data" / "txns.parquet", finish([{
        "card": 1, "ts": noon, "created_after": None, "f": 1.5, "q": 2, "p": None, "m": "a",
        "at": None}]))
    return [(1, noon - US), (1, noon), (1, noon + 10 * M), (1, noon + 15 * M - US),
            (1, noon + 15 * M)]


def test_window_edges_by_hand(windows_project: fsql.Project) -> None:
    """n_10m (10 min, hop 5): at t the window starts at floor(t, 5m) - 10m. One row at
    12:00; asked at 12:10 (inside, at the start), 12:14:59.999999 (still), 12:15 (out), and at
    11:59:59.999999 (before the row)."""
    points = edge_case(windows_project)
    got = [row["n_10m"] for row in training(windows_project, points, "inclusive")]
    assert got == EDGE_COUNTS["inclusive"]
    got = [row["n_10m"] for row in training(windows_project, points, "exclusive")]
    assert got == EDGE_COUNTS["exclusive"]


ARBITRARY = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(CHECKS, max_examples=25)
@given(values=st.lists(st.tuples(times(null=False), ARBITRARY), min_size=1, max_size=30),
       at=times(null=False))
def test_float_sums_agree_to_rounding(windows_project: fsql.Project,
                                      values: list[tuple[dt.datetime, float]],
                                      at: dt.datetime) -> None:
    """Arbitrary floats: the sum is the exact one up to the rounding of adding ``n`` doubles
    (``n * eps * sum(|x|)``)."""
    rows = finish([{"card": 1, "ts": t, "created_after": None, "f": f, "q": None, "p": None,
                    "m": None, "at": None} for t, f in values])
    write(windows_project.root / "data" / "txns.parquet", rows)
    [got] = training(windows_project, [(1, at)], "inclusive")
    wanted = reference(rows, 1, at)
    start = (micros(at) // (10 * 60_000_000)) * 10 * 60_000_000 - 30 * 60_000_000
    used = [r["f"] for r in rows if start <= micros(r["ts"]) <= micros(at)]
    bound = len(used) * 2.3e-16 * sum(abs(v) for v in used)
    for name in ("s_30m", "a_30m"):
        if wanted[name] is None:
            assert py(got[name]) is None
        else:
            scale = 1 if name == "s_30m" else len(used)
            assert math.isclose(py(got[name]), wanted[name], rel_tol=0,
                                abs_tol=bound / scale + 1e-300), (name, got[name], wanted[name])


# -- online: the value read at t equals the training value at t ------------------------------

OFFSETS = st.sampled_from([dt.timedelta(0), US, 5 * M - US, 5 * M, 10 * M, 20 * M + US,
                           30 * M, 60 * M - US, 60 * M, 61 * M, 2 * 60 * M, 3 * 60 * M])
#: from one sync to the next
GAPS = st.sampled_from([US, 5 * M, 35 * M, 3 * 60 * M])


@pytest.fixture
def online_windows(make_project: MakeProject, store_url: str) -> fsql.Project:
    """The windows project, its online store a redis-server, then a Redis Cluster."""
    project = make_project(project_files())
    (project.root / "profiles.yml").write_text(online_profile("test", store_url))
    project = fsql.Project(project.root)  # with the profile just written
    return project


def read_at(project: fsql.Project, at: dt.datetime) -> list[dict[str, Any]]:
    service = OnlineService(project.load(), project.store(), project.target.paths,
                            clock=lambda: micros(at) / 1_000_000)
    try:
        result = service.get(["w"], {"card": [1, 2, 3, 4]})
    finally:
        service.store.close()
    assert all(s == PRESENT for n in NAMES for s in result.statuses[n])
    return [{n: result.values[n][i] for n in NAMES} for i in range(4)]


def check_online(project: fsql.Project, rows: list[dict[str, Any]], as_of: dt.datetime,
                 offsets: list[dt.timedelta]) -> None:
    for offset in offsets:
        at = as_of + offset
        online = read_at(project, at)
        offline = training(project, [(card, at) for card in (1, 2, 3, 4)], "inclusive")
        for card, got, trained in zip((1, 2, 3, 4), online, offline, strict=True):
            what = f"card {card} at as_of {as_of} + {offset}"
            assert_same(got, reference(rows, card, at), f"online vs reference, {what}", rows)
            assert_same(got, trained, f"online vs training, {what}", rows)


@settings(CHECKS, max_examples=25)
@given(first=st.lists(ROW, max_size=20), more=st.lists(ROW, max_size=10),
       as_of=times(null=False), gap=GAPS,
       offsets=st.lists(OFFSETS, min_size=1, max_size=4))
def test_online_value_at_t_equals_training_value_at_t(
        online_windows: fsql.Project, first: list[dict[str, Any]], more: list[dict[str, Any]],
        as_of: dt.datetime, gap: dt.timedelta, offsets: list[dt.timedelta]) -> None:
    sync_and_check(online_windows, first, more, as_of, gap, offsets)


def sync_and_check(project: fsql.Project, first: list[dict[str, Any]],
                   more: list[dict[str, Any]], as_of: dt.datetime, gap: dt.timedelta,
                   offsets: list[dt.timedelta]) -> None:
    """A full sync at ``as_of`` of the rows of ``first`` known then, then an incremental one
    at ``as_of + gap`` with the rows of ``more`` arrived since: after each, the values read
    at each offset equal the training values and the reference (``check_online``)."""
    path = project.root / "data" / "txns.parquet"
    # the rows known at the first sync: events up to as_of
    known = [r for r in finish([dict(r) for r in first]) if r["ts"] is None or r["ts"] <= as_of]
    write(path, known)
    result = project.sync(now=micros(as_of) / 1_000_000, full_refresh=True, allow_drop=True)
    assert result.views[0].mode == "full"
    check_online(project, known, as_of, offsets)

    # rows arriving after it (events after as_of, so newer than its watermark), then an
    # incremental sync
    second = as_of + gap
    later = [r for r in finish([dict(r) for r in more])
             if r["ts"] is not None and as_of < r["ts"] <= second]
    write(path, known + later)
    result = project.sync(now=micros(second) / 1_000_000)
    assert result.views[0].mode == "incremental"
    check_online(project, known + later, second, offsets)
