"""The read path's fast forms (bulk key text, ISO timestamps, column-wise decode, to_json)
give exactly what the straightforward per-value forms give."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from fsql.definitions import Feature
from fsql.dtypes import FeatureType
from fsql.online.keys import (
    INT_KEY,
    STR_KEY,
    ViewLayout,
    converter,
    from_micros,
    iso_utc,
    stored_types,
)
from fsql.online.vectors import unpack
from fsql.serve import OnlineResult, _decode, _ViewRequest

MIN_US = -62_135_596_800_000_000  # 0001-01-01
MAX_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999

FEATURES = (Feature("n", FeatureType.parse("int64"), "", 0),
            Feature("x", FeatureType.parse("float64"), "", 0),
            Feature("s", FeatureType.parse("string"), "", 0),
            Feature("at", FeatureType.parse("timestamp"), "", 0),
            Feature("atz", FeatureType.parse("timestamptz"), "", 0),
            Feature("d", FeatureType.parse("date"), "", 0),
            Feature("m", FeatureType.parse("decimal(10,2)"), "", 0))
LAYOUT = ViewLayout("ns", "v", ("k",), (INT_KEY,), FEATURES)


@given(st.integers(MIN_US, MAX_US))
@settings(max_examples=2000)
def test_iso_utc_equals_isoformat(micros: int) -> None:
    assert iso_utc(micros) == from_micros(micros, zoned=True).isoformat()


def test_iso_utc_whole_seconds_and_edges() -> None:
    for micros in (0, -1, 1, 1_000_000, 86_400_000_000 - 1, MIN_US, MAX_US):
        assert iso_utc(micros) == from_micros(micros, zoned=True).isoformat()


keys_text = st.text(st.characters(codec="utf-8"), max_size=8)


@given(st.lists(st.tuples(st.integers(-2**70, 2**70), keys_text), max_size=20))
def test_key_suffixes_equal_key_suffix(rows: list[tuple[int, str]]) -> None:
    layout = ViewLayout("ns", "v", ("a", "b"), (INT_KEY, STR_KEY), FEATURES)
    columns = [[a for a, _ in rows], [b for _, b in rows]]
    assert layout.key_suffixes(columns) == [layout.key_suffix(row) for row in rows]
    assert [layout.key("3", row) for row in rows] == [
        f"ns:v1:v:3:{a}|{quote(b, safe='')}".encode() for a, b in rows]
    single = ViewLayout("ns", "v", ("b",), (STR_KEY,), FEATURES)
    assert single.key_suffixes([columns[1]]) == [quote(b, safe="") for b in columns[1]]


def _old_decode(layout: ViewLayout, positions: list[int], raws: list[bytes | None], now: int,
                ttl: int | None) -> tuple[list[list[Any]], list[str], list[int | None]]:
    """The per-value decode the column-wise one replaced."""
    columns: list[list[Any]] = [[] for _ in positions]
    statuses, stamps = [], []
    for raw in raws:
        if raw is None:
            status, event, values = "MISSING", None, None
        else:
            event, _, decoded = layout.decode(raw)
            expired = ttl is not None and event is not None and now > event + ttl
            status, values = ("EXPIRED", None) if expired else ("PRESENT", decoded)
        for i, pos in enumerate(positions):
            columns[i].append(None if values is None else values[pos])
        statuses.append(status)
        stamps.append(event)
    return columns, statuses, stamps


#: how to_json must write a non-null decoded value, by declared feature type: times and dates
#: as ISO text, decimals as text, infinities as protobuf's JSON strings; a type not listed
#: here is written as it is
JSON_FORM: dict[str, Callable[[Any], Any]] = {
    "timestamp": lambda v: v.isoformat(),
    "timestamptz": lambda v: v.isoformat(),
    "date": lambda v: v.isoformat(),
    "decimal(10,2)": str,
    "float64": lambda v: {math.inf: "Infinity", -math.inf: "-Infinity"}.get(v, v),
}


stored_row = st.tuples(
    st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.integers(MIN_US, MAX_US)),
    st.one_of(st.none(), st.integers(MIN_US, MAX_US)),
    st.one_of(st.none(), st.integers(-719_162, 2_932_896)),
    st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=2,
                                     min_value=-10**7, max_value=10**7).map(str)))


@given(rows=st.lists(st.one_of(st.none(), st.tuples(
    st.one_of(st.none(), st.integers(0, 2_000_000_000_000_000)), stored_row)), max_size=12),
    positions=st.lists(st.integers(0, len(FEATURES) - 1), min_size=1, max_size=4, unique=True),
    ttl=st.one_of(st.none(), st.integers(1, 10**15)),
    now=st.integers(0, 2_000_000_000_000_000))
def test_column_wise_decode_and_json_equal_per_value(
        rows: list[tuple[int | None, tuple[Any, ...]] | None], positions: list[int],
        ttl: int | None, now: int) -> None:
    layout = ViewLayout("ns", "v", ("k",), (INT_KEY,), FEATURES)
    raws = [None if row is None else layout.encode(row[0], None, list(row[1])) for row in rows]
    names = tuple(f"c{p}" for p in positions)
    request = _ViewRequest(SimpleNamespace(features=FEATURES), ("k",),  # type: ignore[arg-type]
                           tuple(FEATURES[p] for p in positions), names, ttl,
                           tuple(converter(FEATURES[p]) for p in positions),
                           tuple(stored_types(FEATURES[p]) for p in positions))
    result = OnlineResult({"k": list(range(len(rows)))}, {})
    _decode(request, tuple(positions), len(FEATURES), raws, now, result)
    columns, statuses, stamps = _old_decode(layout, positions, raws, now, ttl)
    assert list(result.values) == list(names)
    for name, column in zip(names, columns, strict=True):
        assert result.values[name] == column
        assert result.statuses[name] == statuses
        assert result.event_timestamps[name] == stamps
    got = result.to_json()
    assert got["metadata"]["feature_names"] == ["k", *names]
    assert got["results"][0] == {"values": list(range(len(rows))),
                                 "statuses": ["PRESENT"] * len(rows),
                                 "event_timestamps": [None] * len(rows)}
    for item, column, pos in zip(got["results"][1:], columns, positions, strict=True):
        form = JSON_FORM.get(str(FEATURES[pos].dtype), lambda v: v)
        assert item["values"] == [None if v is None else form(v) for v in column]
        assert item["statuses"] == statuses
        assert item["event_timestamps"] == [
            None if s is None else from_micros(s, zoned=True).isoformat() for s in stamps]


def test_to_json_of_a_hand_made_result_converts_values() -> None:
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    result = OnlineResult({"k": [1, 2]}, {"a": [at, None], "b": [Decimal("1.50"), math.inf]},
                          {"a": ["PRESENT", "MISSING"], "b": ["PRESENT", "PRESENT"]},
                          {"a": [0, None], "b": [0, 1]})
    got = result.to_json()["results"]
    assert got[1] == {"values": [at.isoformat(), None], "statuses": ["PRESENT", "MISSING"],
                      "event_timestamps": ["1970-01-01T00:00:00+00:00", None]}
    assert got[2]["values"] == ["1.50", "Infinity"]
    assert got[2]["event_timestamps"] == ["1970-01-01T00:00:00+00:00",
                                          "1970-01-01T00:00:00.000001+00:00"]


@given(raws=st.lists(st.one_of(st.none(), st.binary(max_size=60),
                               stored_row.map(lambda row: LAYOUT.encode(0, None, list(row)))),
                     max_size=10))
def test_unpack_never_fails_and_marks_what_it_cannot_decode(raws: list[bytes | None]) -> None:
    """Any bytes at all: good values decode as ``ViewLayout.decode`` does, the rest are
    reported by position (with empty vectors), and nothing raises."""
    vectors, events, corrupt = unpack(raws, len(FEATURES))
    assert len(vectors) == len(events) == len(raws)
    for i, raw in enumerate(raws):
        if raw is None or i in corrupt:
            assert vectors[i] == [None] * len(FEATURES) and events[i] is None
            continue
        event, _, _ = LAYOUT.decode(raw)
        assert (events[i], vectors[i]) == (event, msgpack.unpackb(raw[40:]))
