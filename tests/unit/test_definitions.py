from __future__ import annotations

import pytest

from fsql.definitions import Entity, FeatureRef, FeatureView, TrainingSet, Ttl
from fsql.dtypes import FeatureType, engine_type
from fsql.errors import DefinitionError
from fsql.yamlio import load_text


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 90 * 60), ("45s", 45), ("2w", 14 * 86400),
    (" 7d ", 7 * 86400),
])
def test_ttl_parses_units(text: str, seconds: int) -> None:
    assert Ttl.parse(text).seconds == seconds


@pytest.mark.parametrize("text", ["30 days", "0d", "-1h", "1y", "d", "1.5h", ""])
def test_ttl_rejects_bad_strings(text: str) -> None:
    with pytest.raises(ValueError, match="invalid ttl"):
        Ttl.parse(text)


@pytest.mark.parametrize(("declared", "engine", "ok"), [
    ("int64", "BIGINT", True), ("int64", "HUGEINT", False), ("int32", "INTEGER", True),
    ("float64", "DOUBLE", True), ("float32", "DOUBLE", False), ("string", "VARCHAR", True),
    ("bool", "BOOLEAN", True), ("timestamp", "TIMESTAMP", True),
    ("timestamp", "TIMESTAMP WITH TIME ZONE", False),
    ("timestamptz", "TIMESTAMP WITH TIME ZONE", True),
    ("decimal(18,2)", "DECIMAL(18,2)", True), ("decimal(18,2)", "DECIMAL(18,3)", False),
    ("date", "DATE", True),
])
def test_feature_type_matches_engine_types(declared: str, engine: str, ok: bool) -> None:
    assert FeatureType.parse(declared).matches(engine_type(engine, "duckdb")) is ok


def test_unknown_type_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="did you mean 'int64'.*use one of: .*int64"):
        FeatureType.parse("integer64")


@pytest.mark.parametrize(("engine", "declared"), [("bigint", "int64"), ("double", "float64"),
                                                  ("boolean", "bool"), ("varchar", "string")])
def test_engine_spellings_are_refused_with_the_declared_name(engine: str, declared: str) -> None:
    with pytest.raises(ValueError, match=f"unknown type '{engine}'; did you mean '{declared}'"):
        FeatureType.parse(engine)


def _view(yaml_text: str) -> FeatureView:
    raw = load_text(yaml_text, "features/v.yml")
    return FeatureView.from_raw(raw["feature_view"], "features/v.yml", "features/v.sql", "v")


def test_feature_view_defaults_and_entity_alias() -> None:
    view = _view("""
feature_view:
  entity: customer
  timestamp: ts
  features:
    - {name: a, type: int64}
""")
    assert view.name == "v"
    assert view.entities == ("customer",)
    assert view.ttl is None and view.online is False and view.materialized == "view"


def test_unknown_key_names_line_and_allowed_keys() -> None:
    with pytest.raises(DefinitionError) as err:
        _view("""
feature_view:
  entity: customer
  timestamp: ts
  tll: 30d
  features:
    - {name: a, type: int64}
""")
    assert err.value.line == 5
    assert "unknown key 'tll'" in str(err.value)
    assert "ttl" in (err.value.hint or "")


def test_duplicate_feature_points_at_second_declaration() -> None:
    with pytest.raises(DefinitionError, match="declared twice") as err:
        _view("""
feature_view:
  entity: customer
  timestamp: ts
  features:
    - {name: a, type: int64}
    - {name: a, type: string}
""")
    assert err.value.line == 7


def test_entity_needs_join_keys() -> None:
    raw = load_text("name: customer\njoin_keys: []\n", "e.yml")
    with pytest.raises(DefinitionError, match="at least one column"):
        Entity.from_raw(raw, "e.yml")


def test_training_set_feature_refs() -> None:
    raw = load_text("""
name: t
spine: {model: labels, timestamp: ts}
features: [view_a, view_b.f1]
""", "t.yml")
    ts = TrainingSet.from_raw(raw, "t.yml")
    assert ts.features == (FeatureRef("view_a", None, 4), FeatureRef("view_b", "f1", 4))
    assert ts.naming == "plain"


def test_training_set_spine_needs_exactly_one_relation() -> None:
    raw = load_text("name: t\nspine: {model: a, source: s.b, timestamp: ts}\nfeatures: [v]\n",
                    "t.yml")
    with pytest.raises(DefinitionError, match="exactly one of 'model' or 'source'"):
        TrainingSet.from_raw(raw, "t.yml")


def test_yaml_duplicate_keys_are_rejected() -> None:
    with pytest.raises(DefinitionError, match="duplicate key 'name'") as err:
        load_text("name: a\nname: b\n", "x.yml")
    assert err.value.line == 2
