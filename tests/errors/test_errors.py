"""Every class of bad input ends in one ``FsqlError`` that names the file (and line) at fault.

Each case starts from ``BASE``, a small valid project (one entity, one Parquet source, two
models, one feature view, one training set), breaks exactly one thing, and checks the message a
user sees: ``str(err)`` names the right ``file:line`` and says what is wrong.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

import fsql
from fsql.errors import ConfigError, DefinitionError, ProjectErrors

FSQL = str(Path(sys.executable).parent / "fsql")

# -- the valid starting point --------------------------------------------------------------

PROJECT_YML = """\
name: errs
vars:
  horizon_days: 30
"""
SOURCES_YML = """\
sources:
  - name: shop
    tables:
      - name: customers
        path: data/customers.parquet
"""
ORDERS_SQL = """\
SELECT
    CAST(customer_id AS BIGINT) AS customer_id,
    CAST(order_ts AS TIMESTAMP) AS order_ts,
    CAST(amount AS DOUBLE) AS amount
FROM (VALUES
    (1, '2024-01-01 10:00:00', 10.0),
    (1, '2024-01-05 10:00:00', 20.0),
    (2, '2024-01-03 10:00:00', 5.0)
) AS t(customer_id, order_ts, amount)
"""
LABELS_SQL = """\
SELECT
    customer_id,
    signup_ts + {{ days(var('horizon_days')) }} AS label_ts,
    country = 'DE' AS churned
FROM {{ source('shop', 'customers') }}
"""
MACROS_SQL = """\
{% macro days(n) -%}
INTERVAL {{ n }} DAY
{%- endmacro %}
"""
ENTITIES_YML = """\
entities:
  - name: customer
    join_keys: [customer_id]
"""
VIEW_YML = """\
feature_view:
  name: customer_orders
  entities: [customer]
  timestamp: order_ts
  ttl: 30d
  features:
    - name: amount
      type: float64
    - name: orders_so_far
      type: int64
"""
VIEW_SQL = """\
SELECT
    customer_id,
    order_ts,
    amount,
    CAST(count(*) OVER (PARTITION BY customer_id ORDER BY order_ts) AS BIGINT) AS orders_so_far
FROM {{ ref('orders') }}
"""
TRAINING_YML = """\
training_sets:
  - name: churn
    spine:
      model: labels
      timestamp: label_ts
    features:
      - customer_orders
"""

V_YML = "features/customer_orders.yml"
V_SQL = "features/customer_orders.sql"
TS_YML = "features/training_sets.yml"
SRC_YML = "models/sources.yml"
LABELS = "models/labels.sql"
ORDERS = "models/orders.sql"
MACROS = "macros/util.sql"
ENT_YML = "features/entities.yml"

BASE: dict[str, str] = {
    "fsql_project.yml": PROJECT_YML,
    SRC_YML: SOURCES_YML,
    ORDERS: ORDERS_SQL,
    LABELS: LABELS_SQL,
    MACROS: MACROS_SQL,
    ENT_YML: ENTITIES_YML,
    V_YML: VIEW_YML,
    V_SQL: VIEW_SQL,
    TS_YML: TRAINING_YML,
}

# a second view whose feature 'amount' has the same output name as customer_orders.amount
REFUNDS_YML = """\
feature_view:
  name: customer_refunds
  entities: [customer]
  timestamp: refund_ts
  features:
    - name: amount
      type: float64
"""
REFUNDS_SQL = """\
SELECT customer_id, order_ts AS refund_ts, -amount AS amount
FROM {{ ref('orders') }}
"""


def sub(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if absent)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, marker: str) -> int:
    """1-based line of the only line of ``text`` containing ``marker``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, f"{marker!r} is on lines {hits}"
    return hits[0]


def write_customers(root: Path) -> None:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(
            "COPY (SELECT * FROM (VALUES (1::BIGINT, 'DE', TIMESTAMP '2023-12-20'), "
            "(2, 'FR', TIMESTAMP '2023-12-25')) AS t(customer_id, country, signup_ts)) "
            f"TO '{data / 'customers.parquet'}' (FORMAT PARQUET)")
    finally:
        con.close()


def raised(call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raises (any type, so a raw one is reported, not propagated)."""
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the point is to see what escapes
        return err
    pytest.fail("no error was raised")


def flat(text: str) -> str:
    return " ".join(text.split())


# -- the cases -----------------------------------------------------------------------------

ANY_LINE = "*"
MAYBE_LINE = "?"


@dataclass(frozen=True)
class Case:
    """``files`` override ``BASE`` (``None`` deletes a file); ``where`` is the expected
    location: (path, marker) -> ``path:<line of marker in that file>``, (path, None) -> the
    path without a line, (path, ANY_LINE) -> the path with some line, (path, MAYBE_LINE) ->
    the path with or without a line. An ``expect`` item starting with ``re:`` is a regex."""

    id: str
    files: dict[str, str | None]
    where: tuple[str, str | None]
    expect: tuple[str, ...]
    raw: dict[str, bytes] = field(default_factory=dict)

    def merged(self) -> dict[str, str]:
        files = {**BASE, **self.files}
        return {k: v for k, v in files.items() if v is not None}

    def location(self) -> str | None:
        path, marker = self.where
        if marker in (None, ANY_LINE, MAYBE_LINE):
            return path
        return f"{path}:{line_of(self.merged()[path], marker)}"


def case(id: str, files: dict[str, str | None], where: tuple[str, str | None],
         *expect: str, raw: dict[str, bytes] | None = None) -> Case:
    return Case(id, files, where, expect, raw=raw or {})


def view(old: str, new: str) -> dict[str, str | None]:
    return {V_YML: sub(VIEW_YML, old, new)}


def view_sql(old: str, new: str) -> dict[str, str | None]:
    return {V_SQL: sub(VIEW_SQL, old, new)}


def training(old: str, new: str) -> dict[str, str | None]:
    return {TS_YML: sub(TRAINING_YML, old, new)}


def labels(old: str, new: str) -> dict[str, str | None]:
    return {LABELS: sub(LABELS_SQL, old, new)}


YAML_CASES = [
    case("yaml_bad_indentation", view("  timestamp: order_ts", "   timestamp: order_ts"),
         (V_YML, "timestamp:"), "invalid YAML"),
    case("yaml_bad_indentation_in_list", view("      type: int64", "     type: int64"),
         (V_YML, "type: int64"), "invalid YAML"),
    case("yaml_unclosed_quote", view("name: customer_orders", 'name: "customer_orders'),
         (V_YML, '"customer_orders'), "invalid YAML"),
    case("yaml_tab_indentation", view("  ttl: 30d", "\tttl: 30d"),
         (V_YML, "ttl:"), "invalid YAML", "\\t"),
    case("yaml_duplicate_key", view("  ttl: 30d\n", "  ttl: 30d\n  ttl: 7d\n"),
         (V_YML, "ttl: 7d"), "duplicate key 'ttl'", "first defined on line 5"),
    case("yaml_duplicate_key_in_entity",
         {ENT_YML: ENTITIES_YML + "    join_keys: [id]\n"},
         (ENT_YML, "[id]"), "duplicate key 'join_keys'", "line 3"),
    case("yaml_top_level_list", {ENT_YML: "- name: customer\n  join_keys: [customer_id]\n"},
         (ENT_YML, "- name"), "expected a mapping at the top of the file"),
    case("yaml_unknown_top_level_key", {V_YML: sub(VIEW_YML, "feature_view:", "feature_views:")},
         (V_YML, "feature_views:"), "unknown top-level key 'feature_views'", "feature_view"),
    case("yaml_non_string_key", view("  ttl: 30d", "  30: ttl"),
         (V_YML, "30: ttl"), "keys must be strings"),
]

UNKNOWN_KEY_CASES = [
    case("unknown_key_view", view("  ttl: 30d", "  tll: 30d"),
         (V_YML, "tll:"), "unknown key 'tll'", "ttl"),
    case("unknown_key_feature", view("      type: int64", "      type: int64\n      descrption: x"),
         (V_YML, "descrption"), "unknown key 'descrption'", "description"),
    case("unknown_key_entity",
         {ENT_YML: ENTITIES_YML + "    descripton: a customer\n"},
         (ENT_YML, "descripton"), "unknown key 'descripton'", "description"),
    case("unknown_key_training_set", training("    features:", "    nameing: prefixed\n"
                                                             "    features:"),
         (TS_YML, "nameing"), "unknown key 'nameing'", "naming"),
    case("unknown_key_spine", training("      timestamp: label_ts",
                                       "      timestamp: label_ts\n      where: x > 1"),
         (TS_YML, "where:"), "unknown key 'where'"),
    case("unknown_key_source_table",
         {SRC_YML: SOURCES_YML + "        fromat: parquet\n"},
         (SRC_YML, "fromat"), "unknown key 'fromat'", "format"),
    case("unknown_key_source",
         {SRC_YML: sub(SOURCES_YML, "  - name: shop\n", "  - name: shop\n    owner: me\n")},
         (SRC_YML, "owner"), "unknown key 'owner'"),
    case("unknown_key_model_properties",
         {"models/props.yml": "models:\n  - name: orders\n    materialised: table\n"},
         ("models/props.yml", "materialised"), "unknown key 'materialised'"),
]

TYPE_CASES = [
    case("online_is_a_string", view("  ttl: 30d", '  ttl: 30d\n  online: "yes"'),
         (V_YML, "online"), "'online' must be a bool", "'yes'"),
    case("features_not_a_list", {V_YML: VIEW_YML.split("  features:")[0]
                                 + "  features: amount\n"},
         (V_YML, "features: amount"), "'features' must be a list"),
    case("feature_item_is_a_string", {V_YML: VIEW_YML.split("  features:")[0]
                                      + "  features:\n    - amount\n"},
         (V_YML, "features:"), "feature must be a mapping", "str"),
    case("ttl_is_a_number", view("ttl: 30d", "ttl: 30"),
         (V_YML, "ttl:"), "'ttl' must be a str", "30"),
    case("entities_is_a_number", view("entities: [customer]", "entities: 5"),
         (V_YML, "entities:"), "'entities' must be a list or str", "5"),
    case("training_features_not_strings", training("      - customer_orders",
                                                   "      - {customer_orders: all}"),
         (TS_YML, "features:"), "'view' or 'view.feature'"),
    case("spine_is_a_string", training("    spine:\n      model: labels\n"
                                       "      timestamp: label_ts\n", "    spine: labels\n"),
         (TS_YML, "spine:"), "'spine' must be a dict", "labels"),
    case("join_keys_not_names",
         {ENT_YML: sub(ENTITIES_YML, "[customer_id]", "[customer id]")},
         (ENT_YML, "join_keys"), "'join_keys' entries must be names", "customer id"),
    case("tests_not_a_list", view("  ttl: 30d", "  ttl: 30d\n  tests: unique"),
         (V_YML, "tests:"), "'tests' must be a list"),
]

TTL_CASES = [
    case(f"bad_ttl[{text}]", view("ttl: 30d", f"ttl: {text}"), (V_YML, "ttl:"),
         f"invalid ttl '{text}'", "'30d'")
    for text in ("30 days", "0d", "-1h", "1y", "1.5h")
] + [
    # parses, but no engine interval holds it: must fail at compile, not when the set is built
    case("bad_ttl[999999999w]", view("ttl: 30d", "ttl: 999999999w"), (V_YML, "ttl:"),
         "ttl", "999999999w"),
    case("bad_freshness", view("ttl: 30d", "freshness: 2 days"), (V_YML, "freshness:"),
         "invalid duration '2 days'"),
]

DECLARATION_CASES = [
    case("unknown_feature_type", view("type: int64", "type: integer"),
         (V_YML, "type: integer"), "unknown type 'integer'", "int64", "float64"),
    case("bad_decimal", view("type: int64", "type: decimal(40,2)"),
         (V_YML, "decimal(40,2)"), "decimal precision must be 1..38"),
    case("invalid_view_name", view("name: customer_orders", "name: customer-orders"),
         (V_YML, "customer-orders"), "'customer-orders' is not a valid name"),
    case("view_without_entities", view("  entities: [customer]\n", ""),
         (V_YML, "name: customer_orders"), "declare its 'entities'"),
    case("view_without_timestamp", view("  timestamp: order_ts\n", ""),
         (V_YML, "name: customer_orders"), "missing required key 'timestamp'"),
    case("view_without_features", {V_YML: VIEW_YML.split("  features:")[0]
                                   + "  features: []\n"},
         (V_YML, "features: []"), "declare at least one feature"),
    case("feature_declared_twice", view("      type: int64", "      type: int64\n"
                                                              "    - name: amount  # again\n"
                                                              "      type: float64"),
         (V_YML, "# again"), "feature 'amount' is declared twice", "first on line 7"),
    case("bad_materialized", view("  ttl: 30d", "  ttl: 30d\n  materialized: tabel"),
         (V_YML, "materialized"), "materialized must be 'view' or 'table'"),
    case("entity_without_join_keys", {ENT_YML: sub(ENTITIES_YML, "[customer_id]", "[]")},
         (ENT_YML, "name: customer"), "'join_keys' needs at least one column"),
    case("bad_naming", training("    features:", "    naming: prefix\n    features:"),
         (TS_YML, "naming:"), "naming must be 'plain'", "'prefixed'"),
    case("bad_feature_cutoff",
         training("    features:", "    feature_cutoff: strict\n    features:"),
         (TS_YML, "feature_cutoff:"), "feature_cutoff must be 'inclusive' or 'exclusive'",
         "not 'strict'", "label is known at the event"),
    case("bad_feature_ref", training("- customer_orders", "- customer_orders.amount.x"),
         (TS_YML, "features:"), "'customer_orders.amount.x' is not 'view' or 'view.feature'"),
    case("empty_training_features", training("    features:\n      - customer_orders\n",
                                             "    features: []\n"),
         (TS_YML, "features:"), "request at least one feature"),
    case("spine_model_and_source", training("      model: labels",
                                            "      model: labels\n      source: shop.customers"),
         (TS_YML, "model: labels"), "exactly one of 'model' or 'source'"),
    case("source_path_and_table", {SRC_YML: SOURCES_YML + "        table: main.customers\n"},
         (SRC_YML, "name: customers"), "give exactly one of 'path' or 'table'"),
    case("source_unknown_format", {SRC_YML: sub(SOURCES_YML, ".parquet", ".json")},
         (SRC_YML, "path:"), "cannot tell the file format", "format: parquet"),
    case("properties_for_missing_model",
         {"models/props.yml": "models:\n  - name: ordrs\n    description: typo\n"},
         ("models/props.yml", "name: ordrs"), "model 'ordrs'", "models/ordrs.sql"),
    case("project_unknown_key", {"fsql_project.yml": PROJECT_YML + "profil: dev\n"},
         ("fsql_project.yml", "profil"), "unknown key 'profil'", "profile"),
    case("project_bad_yaml", {"fsql_project.yml": "name: errs\nvars: [a\n"},
         ("fsql_project.yml", ANY_LINE), "invalid YAML"),
    case("project_without_name", {"fsql_project.yml": "vars: {}\n"},
         ("fsql_project.yml", "vars"), "needs a 'name:'"),
    case("project_profile_not_a_string", {"fsql_project.yml": PROJECT_YML + "profile: [dev]\n"},
         ("fsql_project.yml", "profile"), "'profile'"),
]

TEMPLATE_CASES = [
    case("unknown_ref", view_sql("ref('orders')", "ref('orderz')"),
         (V_SQL, "orderz"), "ref('orderz') names no model or feature view", "orders"),
    case("unknown_source", labels("'customers'", "'custmers'"),
         (LABELS, "custmers"), "source('shop', 'custmers') is not declared", "shop.customers"),
    case("jinja_syntax_error", view_sql("ref('orders') }}", "ref('orders' }}"),
         (V_SQL, "ref('orders'"), "Jinja syntax error"),
    case("jinja_unclosed_block", view_sql("FROM", "{% if true %}\nFROM"),
         (V_SQL, ANY_LINE), "Jinja syntax error", "endif"),
    case("jinja_syntax_error_in_macro", {MACROS: sub(MACROS_SQL, "(n) -%}", "(n) -%")},
         (MACROS, ANY_LINE), "Jinja syntax error"),
    case("undefined_macro", labels("days(var", "dayz(var"),
         (LABELS, "dayz"), "'dayz' is undefined"),
    case("undefined_variable", view_sql("    amount,", "    amount * {{ rate }} AS amount,"),
         (V_SQL, "rate"), "'rate' is undefined"),
    case("undefined_inside_macro", {MACROS: sub(MACROS_SQL, "{{ n }} DAY", "{{ n }} {{ unit }}")},
         (MACROS, "unit"), "'unit' is undefined"),
    case("var_not_set", labels("var('horizon_days')", "var('horizon_dayz')"),
         (LABELS, "horizon_dayz"), "var('horizon_dayz') is not set", "vars:"),
    case("bad_config", {ORDERS: "{{ config(materialized='tabel') }}\n" + ORDERS_SQL},
         (ORDERS, "config("), "materialized must be 'view' or 'table'", "tabel"),
    case("unknown_config_option", {ORDERS: "{{ config(schema='x') }}\n" + ORDERS_SQL},
         (ORDERS, "config("), "config() got unknown option 'schema'"),
    case("env_var_not_set",
         labels("'DE'", "'{{ env_var('FSQL_TEST_SURELY_NOT_SET_123') }}'"),
         (LABELS, "env_var"), "FSQL_TEST_SURELY_NOT_SET_123", "not set"),
    case("template_raises", view_sql("    amount,", "    amount * {{ 1 / 0 }} AS amount,"),
         (V_SQL, "1 / 0"), "ZeroDivisionError"),
]

SQL_CASES = [
    case("sql_syntax_error", view_sql("    amount,\n", "    amount AS AS x,\n"),
         (V_SQL, "AS AS"), "SQL syntax error"),
    case("sql_unbalanced_paren", view_sql("BY order_ts) AS BIGINT)", "BY order_ts AS BIGINT)"),
         (V_SQL, ANY_LINE), "SQL syntax error"),
    case("sql_not_a_select", {ORDERS: "CREATE TABLE x AS " + ORDERS_SQL},
         (ORDERS, None), "expected exactly one SELECT query", "CREATE"),
    case("sql_two_statements", {ORDERS: ORDERS_SQL + ";\nSELECT 1\n"},
         (ORDERS, None), "expected exactly one SELECT query", "2 statements"),
    case("sql_empty", {ORDERS: "-- nothing yet\n"},
         (ORDERS, None), "expected exactly one SELECT query", "nothing"),
    case("engine_unknown_column", view_sql("    amount,", "    amout,"),
         (V_SQL, None), "the engine rejected the SQL", "amout"),
    case("engine_unknown_function", view_sql("    amount,", "    no_such_fn(amount) AS amount,"),
         (V_SQL, None), "the engine rejected the SQL", "no_such_fn"),
    case("engine_unknown_table", {LABELS: "SELECT * FROM customers_raw\n"},
         (LABELS, None), "the engine rejected the SQL", "customers_raw"),
    case("sql_not_utf8", {}, (V_SQL, MAYBE_LINE), "UTF-8",
         raw={V_SQL: VIEW_SQL.replace("SELECT", "-- caf\xe9\nSELECT", 1).encode("latin-1")}),
    case("yaml_not_utf8", {}, (V_YML, MAYBE_LINE), "UTF-8",
         raw={V_YML: VIEW_YML.replace("  ttl: 30d", "  description: caf\xe9\n  ttl: 30d")
              .encode("latin-1")}),
]

COLUMN_CASES = [
    case("feature_not_selected",
         view("      type: int64", "      type: int64\n    - name: lifetime_value\n"
                                   "      type: float64"),
         (V_YML, "lifetime_value"), "feature 'lifetime_value' is declared but", V_SQL,
         "does not select it"),
    case("missing_join_key", view_sql("    customer_id,", "    customer_id AS cust_id,"),
         (V_YML, "name: customer_orders"), "'customer_id'", "does not select it", "cust_id"),
    case("missing_timestamp", view("timestamp: order_ts", "timestamp: order_time"),
         (V_YML, "name: customer_orders"), "timestamp 'order_time' is declared but",
         "does not select it"),
    case("missing_created_timestamp",
         view("  ttl: 30d", "  ttl: 30d\n  created_timestamp: ingested_at"),
         (V_YML, "name: customer_orders"), "created_timestamp 'ingested_at' is declared"),
    case("timestamp_not_a_timestamp",
         view_sql("    order_ts,", "    CAST(order_ts AS VARCHAR) AS order_ts,"),
         (V_YML, "name: customer_orders"),
         "re:timestamp column 'order_ts' has type (VARCHAR|TEXT) ",
         "must be a timestamp or date", "CAST(order_ts AS TIMESTAMP)"),
    case("type_mismatch_hugeint",
         view_sql("CAST(count(*) OVER (PARTITION BY customer_id ORDER BY order_ts) AS BIGINT)",
                  "sum(customer_id) OVER (PARTITION BY customer_id ORDER BY order_ts)"),
         (V_YML, "name: orders_so_far"), "feature 'orders_so_far' is declared int64 but",
         "re:produces (HUGEINT|INT128)", "CAST(... AS BIGINT)"),
    case("type_mismatch_count_declared_int32", view("type: int64", "type: int32"),
         (V_YML, "name: orders_so_far"), "declared int32 but", "BIGINT",
         "CAST(... AS INT)", "declare type: int64"),
    case("type_mismatch_decimal", view_sql("    amount,", "    CAST(amount AS DECIMAL(10, 2)) "
                                                         "AS amount,"),
         (V_YML, "name: amount"), "feature 'amount' is declared float64", "DECIMAL(10, 2)",
         "decimal(10,2)"),
    # the view itself is wrong (whatever uses it): reported at the feature, not at a
    # training set, and not as an output-name clash whose hint (naming: prefixed) cannot fix it
    case("feature_is_its_key", view("    - name: amount\n      type: float64",
                                     "    - name: customer_id\n      type: int64"),
         (V_YML, "name: customer_id"), "feature 'customer_id'", "key"),
    case("feature_is_its_timestamp", view("    - name: amount\n      type: float64",
                                           "    - name: order_ts\n      type: timestamp"),
         (V_YML, "name: order_ts"), "feature 'order_ts'", "timestamp"),
]

REFERENCE_CASES = [
    case("unknown_entity", view("entities: [customer]", "entities: [custmer]"),
         (V_YML, "name: customer_orders"), "unknown entity 'custmer'", "customer"),
    case("view_without_sql_file", {V_SQL: None},
         (V_YML, "feature_view:"), "no SQL file", V_SQL),
    case("training_unknown_view", training("- customer_orders", "- customer_ordrs"),
         (TS_YML, "features:"), "unknown feature view 'customer_ordrs'", "customer_orders"),
    case("training_unknown_feature", training("- customer_orders", "- customer_orders.amout"),
         (TS_YML, "features:"), "view 'customer_orders' has no feature 'amout'",
         "amount, orders_so_far"),
    case("training_label_not_a_spine_column",
         training("    features:", "    label: churnd\n    features:"),
         (TS_YML, "label: churnd"), "label 'churnd' is not a column of the spine labels",
         "churned"),
    case("training_label_not_a_name", training("    features:", "    label: {a: 1}\n    features:"),
         (TS_YML, "label:"), "'label' must be"),
    case("training_allow_label_lineage_not_a_feature",
         training("    features:", "    label: churned\n"
                  "    allow_label_lineage: [customer_orders.amout]\n    features:"),
         (TS_YML, "allow_label_lineage:"), "allow_label_lineage names customer_orders.amout",
         "customer_orders"),
    case("training_allow_label_lineage_bad_entry",
         training("    features:", "    allow_label_lineage: [customer_orders]\n    features:"),
         (TS_YML, "allow_label_lineage:"), "entries are 'view.feature' strings"),
    case("training_unknown_spine_model", training("model: labels", "model: lables"),
         (TS_YML, "model: lables"), "spine model 'lables' does not exist", "labels"),
    case("training_unknown_spine_source", training("model: labels", "source: shop.custmers"),
         (TS_YML, "source: shop.custmers"), "spine source 'shop.custmers' is not declared",
         "shop.customers"),
    case("spine_missing_timestamp", training("timestamp: label_ts", "timestamp: label_time"),
         (TS_YML, "name: churn"), "spine has no timestamp column 'label_time'", "label_ts"),
    case("spine_timestamp_not_a_timestamp", training("timestamp: label_ts",
                                                     "timestamp: churned"),
         (TS_YML, "name: churn"), "spine timestamp 'churned' has type BOOLEAN"),
    case("spine_missing_join_key", labels("    customer_id,", "    customer_id AS cid,"),
         (TS_YML, "name: churn"), "spine has no column 'customer_id'",
         "join key of view 'customer_orders'"),
    case("join_key_type_mismatch",
         labels("    customer_id,", "    CAST(customer_id AS VARCHAR) AS customer_id,"),
         (TS_YML, "name: churn"),
         "re:join key 'customer_id' is (VARCHAR|TEXT) in the spine but BIGINT"),
    case("output_column_collision",
         {"features/customer_refunds.yml": REFUNDS_YML,
          "features/customer_refunds.sql": REFUNDS_SQL,
          **training("      - customer_orders", "      - customer_orders\n"
                                                "      - customer_refunds")},
         (TS_YML, "name: churn"), "output column 'amount'", "collides with",
         "naming: prefixed"),
    case("output_collides_with_spine", labels("    country = 'DE' AS churned",
                                              "    country = 'DE' AS churned,\n"
                                              "    0.0 AS amount"),
         (TS_YML, "name: churn"), "output column 'amount'", "collides with the spine",
         "naming: prefixed"),
    case("dependency_cycle",
         {"models/a.sql": "SELECT * FROM {{ ref('b') }}\n",
          "models/b.sql": "SELECT * FROM {{ ref('a') }}\n"},
         ("models/*.sql", None), "dependency cycle"),
    case("dependency_self_cycle", view_sql("ref('orders')", "ref('customer_orders')"),
         (V_SQL, None), "dependency cycle: view:customer_orders -> view:customer_orders"),
]

DUPLICATE_CASES = [
    case("duplicate_view_in_two_files",
         {"features/copy.yml": VIEW_YML, "features/copy.sql": VIEW_SQL},
         ("features/customer_orders.yml", "name: customer_orders"),
         "'customer_orders' is defined twice", "features/copy.yml"),
    case("duplicate_model_and_view", {"models/customer_orders.sql": "SELECT 1 AS x\n"},
         ("models/customer_orders.sql", None), "'customer_orders' is defined twice", V_YML),
    case("duplicate_entity", {"features/more_entities.yml": ENTITIES_YML},
         ("features/more_entities.yml", "name: customer"), "entity 'customer' is defined twice",
         ENT_YML),
    case("duplicate_training_set", {"features/more_training.yml": TRAINING_YML},
         ("features/training_sets.yml", "name: churn"),
         "training set 'churn' is defined twice", "features/more_training.yml"),
    case("duplicate_source_table",
         {SRC_YML: SOURCES_YML + "      - name: customers  # again\n"
                                 "        path: data/other.parquet\n"},
         (SRC_YML, "# again"), "source table 'shop.customers' is defined twice",
         f"{SRC_YML}:4"),
    case("duplicate_macro", {"macros/more.sql": MACROS_SQL},
         (MACROS, MAYBE_LINE), "macro 'days' is also defined in macros/more.sql"),
    case("training_set_named_like_a_model", training("name: churn", "name: orders"),
         (TS_YML, "name: orders"), "training set 'orders' has the same name as the model",
         ORDERS),
    case("training_set_named_like_a_view", training("name: churn", "name: customer_orders"),
         (TS_YML, "name: customer_orders"), "has the same name as the feature view", V_YML),
    # sources live in the engine as <source>__<table>: a model of that name would silently
    # replace the source for everything that reads it
    case("model_named_like_a_source_relation",
         {"models/shop__customers.sql": "SELECT 99::BIGINT AS customer_id, 'XX' AS country, "
                                        "TIMESTAMP '2020-01-01' AS signup_ts\n"},
         ("models/shop__customers.sql", MAYBE_LINE), "shop__customers", "shop.customers"),
]

SOURCE_CASES = [
    case("source_file_missing", {SRC_YML: sub(SOURCES_YML, "customers.parquet",
                                              "nothing_here.parquet")},
         (SRC_YML, "name: customers"), "source 'shop.customers' cannot be read",
         "nothing_here.parquet"),
    case("source_glob_matches_nothing", {SRC_YML: sub(SOURCES_YML, "customers.parquet",
                                                      "parts/*.parquet")},
         (SRC_YML, "name: customers"), "source 'shop.customers' cannot be read",
         "parts/*.parquet"),
    case("source_table_missing", {SRC_YML: sub(SOURCES_YML, "path: data/customers.parquet",
                                               "table: main.no_such_table")},
         (SRC_YML, "name: customers"), "source 'shop.customers' cannot be read",
         "no_such_table"),
]

CASES = (YAML_CASES + UNKNOWN_KEY_CASES + TYPE_CASES + TTL_CASES + DECLARATION_CASES
         + TEMPLATE_CASES + SQL_CASES + COLUMN_CASES + REFERENCE_CASES + DUPLICATE_CASES
         + SOURCE_CASES)


def build(tmp_path: Path, files: dict[str, str], raw: dict[str, bytes] | None = None) -> Path:
    """Write the project and its Parquet file; returns its directory."""
    root = tmp_path / "errs"
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
    for rel, data in (raw or {}).items():
        (root / rel).write_bytes(data)
    write_customers(root)
    return root


def check_location(message: str, c: Case) -> None:
    path, marker = c.where
    if "*" in path:
        pattern = re.escape(path).replace(r"\*", r"[^:\s]+")
        assert re.search(rf"(^|\n- ){pattern}(:\d+)?: ", message), message
        return
    if marker in (ANY_LINE, MAYBE_LINE):
        line = r":\d+" if marker == ANY_LINE else r"(:\d+)?"
        assert re.search(rf"(^|\n- ){re.escape(path)}{line}: ", message), (
            f"expected {path}{':<line>' if marker == ANY_LINE else ''} in:\n{message}")
        return
    location = c.location()
    assert message.startswith(f"{location}: ") or f"\n- {location}: " in message, (
        f"expected the location {location} in:\n{message}")


def test_base_project_is_valid(tmp_path: Path) -> None:
    root = build(tmp_path, BASE)
    frame = fsql.Project(root).training_set("churn", rebuild=True)
    assert list(frame.columns) == ["customer_id", "label_ts", "churned", "amount",
                                   "orders_so_far"]
    assert frame["amount"].tolist() == [20.0, 5.0]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_reported(tmp_path: Path, c: Case) -> None:
    root = build(tmp_path, c.merged(), c.raw)

    err = raised(lambda: fsql.Project(root).compile())
    assert isinstance(err, fsql.FsqlError), f"a raw {type(err).__name__} escaped: {err!r}"
    assert isinstance(err, DefinitionError), f"expected a DefinitionError, got {err!r}"
    message = str(err)
    assert "Traceback" not in message
    check_location(message, c)
    for text in c.expect:
        if text.startswith("re:"):
            assert re.search(text[3:], message), f"expected /{text[3:]}/ in:\n{message}"
        else:
            assert text in message, f"expected {text!r} in:\n{message}"


def test_dependency_cycle_lists_the_path(tmp_path: Path) -> None:
    files = {**BASE, "models/a.sql": "SELECT * FROM {{ ref('b') }}\n",
             "models/b.sql": "SELECT * FROM {{ ref('c') }}\n",
             "models/c.sql": "SELECT * FROM {{ ref('a') }}\n"}
    err = raised(fsql.Project(build(tmp_path, files)).compile)
    assert isinstance(err, DefinitionError), repr(err)
    m = re.search(r"dependency cycle: (model:\w+(?: -> model:\w+)+)", str(err))
    assert m, str(err)
    path = m.group(1).split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == ["model:a", "model:b", "model:c"]
    # each step follows a ref(): a -> b -> c -> a read as "depends on", or its reverse
    order = [p.split(":")[1] for p in path]
    pairs = set(zip(order, order[1:], strict=False))
    assert pairs in ({("a", "b"), ("b", "c"), ("c", "a")}, {("b", "a"), ("c", "b"), ("a", "c")})
    assert re.match(r"models/[abc]\.sql: ", str(err)), str(err)


# -- several problems at once --------------------------------------------------------------

def test_definition_problems_are_reported_together(tmp_path: Path) -> None:
    files = {
        **BASE,
        V_YML: sub(VIEW_YML, "ttl: 30d", "ttl: 30 days"),
        TS_YML: sub(TRAINING_YML, "  - name: churn", "  - name: churn\n   oops"),
        "features/more_entities.yml": ENTITIES_YML,
    }
    err = raised(fsql.Project(build(tmp_path, files)).compile)
    assert isinstance(err, ProjectErrors), repr(err)
    message = str(err)
    assert message.startswith("3 problems in the project:"), message
    assert len(err.errors) == 3
    assert {e.path for e in err.errors} == {V_YML, TS_YML, "features/more_entities.yml"}
    assert f"{V_YML}:5: " in message and "invalid ttl" in message
    assert "invalid YAML" in message
    assert "entity 'customer' is defined twice" in message


def test_template_and_reference_problems_are_reported_together(
        tmp_path: Path) -> None:
    files = {
        **BASE,
        V_SQL: sub(VIEW_SQL, "ref('orders')", "ref('orderz')"),
        LABELS: sub(LABELS_SQL, "var('horizon_days')", "var('horizon_dayz')"),
        TS_YML: sub(TRAINING_YML, "- customer_orders", "- customer_orders.amout"),
    }
    err = raised(fsql.Project(build(tmp_path, files)).compile)
    assert isinstance(err, ProjectErrors), repr(err)
    message = str(err)
    assert message.startswith("3 problems in the project:"), message
    assert sorted(e.location for e in err.errors) == sorted([
        f"{V_SQL}:6", f"{LABELS}:3", f"{TS_YML}:6"])
    for text in ("ref('orderz')", "var('horizon_dayz')", "no feature 'amout'"):
        assert text in message


def test_column_problems_in_two_views_are_reported_together(
        tmp_path: Path) -> None:
    files = {
        **BASE,
        V_SQL: sub(VIEW_SQL, "    amount,", "    CAST(amount AS INTEGER) AS amount,"),
        "features/customer_refunds.yml": sub(REFUNDS_YML, "refund_ts", "refunded_at"),
        "features/customer_refunds.sql": REFUNDS_SQL,
    }
    err = raised(fsql.Project(build(tmp_path, files)).compile)
    assert isinstance(err, ProjectErrors), repr(err)
    assert len(err.errors) == 2
    assert {e.path for e in err.errors} == {V_YML, "features/customer_refunds.yml"}
    assert "declared float64 but" in str(err) and "'refunded_at'" in str(err)


# -- project and profile configuration ----------------------------------------------------

def test_missing_project_file(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    err = raised(lambda: fsql.Project(tmp_path))
    assert isinstance(err, ConfigError), repr(err)
    assert "fsql_project.yml not found" in str(err) and str(tmp_path) in str(err)


PROFILES = """\
errs:
  target: dev
  outputs:
    dev:
      offline: {type: duckdb, path: target/dev.duckdb}
"""


@pytest.mark.parametrize(("profiles", "target", "expect"), [
    (None, "prod", ["target 'prod' requested", "profiles.yml"]),
    (PROFILES, "prod", ["profile 'errs' has no target 'prod'", "available: dev"]),
    (PROFILES.replace("errs:", "other:"), None, ["no profile named 'errs'"]),
    (PROFILES.replace("    dev:", "    dev:\n      online: {type: memcached}"), None,
     ["type must be 'embedded', 'redis' or 'redis_cluster'", "memcached"]),
    (PROFILES.replace("type: duckdb,", "type: duckdb, thread: 2,"), None,
     ["unknown key(s) thread"]),
    (PROFILES.replace("target/dev.duckdb", "\"{{ env_var('FSQL_TEST_SURELY_NOT_SET_123') }}\""),
     None, ["FSQL_TEST_SURELY_NOT_SET_123", "not set"]),
    (PROFILES.replace("offline: {type: duckdb, path: target/dev.duckdb}", "offline: duckdb"),
     None, ["offline", "mapping"]),
    (PROFILES.replace("offline: {type: duckdb, path: target/dev.duckdb}", "online: embedded"),
     None, ["online", "mapping"]),
], ids=["no_profiles_file", "unknown_target", "missing_profile", "bad_online_type",
        "unknown_offline_key", "env_var_not_set", "offline_not_a_mapping",
        "online_not_a_mapping"])
def test_bad_target_or_profile(tmp_path: Path, profiles: str | None,
                               target: str | None, expect: list[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FSQL_TARGET", raising=False)
    monkeypatch.delenv("FSQL_PROFILES_DIR", raising=False)
    root = build(tmp_path, BASE)
    if profiles is not None:
        (root / "profiles.yml").write_text(profiles)
    err = raised(lambda: fsql.Project(root, target=target))
    assert isinstance(err, ConfigError), repr(err)
    for text in expect:
        assert text in str(err), str(err)


def test_profiles_yaml_syntax_error(tmp_path: Path) -> None:
    root = build(tmp_path, BASE)
    (root / "profiles.yml").write_text("errs:\n  target: dev\n  outputs: {dev: [\n")
    err = raised(lambda: fsql.Project(root))
    assert isinstance(err, fsql.FsqlError), repr(err)
    assert re.search(r"profiles\.yml:\d+: invalid YAML", str(err)), str(err)


# -- the command line ------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "COLUMNS": "200"}
    return subprocess.run([FSQL, *args], capture_output=True, text=True, timeout=60, env=env)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expect: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
    stderr = flat(result.stderr)
    for text in expect:
        assert flat(text) in stderr, f"expected {text!r} on stderr:\n{result.stderr}"


def test_cli_compile_reports_a_definition_error(tmp_path: Path) -> None:
    files = {**BASE, V_YML: sub(VIEW_YML, "ttl: 30d", "tll: 30d")}
    root = build(tmp_path, files)
    result = run_cli("--project-dir", str(root), "compile")
    assert_clean_failure(result, f"{V_YML}:5: feature_view: unknown key 'tll'", "allowed keys")


def test_cli_compile_shows_yaml_context_verbatim(tmp_path: Path) -> None:
    # the YAML excerpt holds "[customer]": it must be printed as is, not eaten as rich markup
    files = {**BASE, V_YML: sub(VIEW_YML, "  timestamp: order_ts", "   timestamp: order_ts")}
    root = build(tmp_path, files)
    result = run_cli("--project-dir", str(root), "compile")
    assert_clean_failure(result, f"{V_YML}:", "invalid YAML", "entities: [customer]")


def test_cli_compile_survives_markup_like_text(tmp_path: Path) -> None:
    # the SQL excerpt of a syntax error holds '[/]', which rich would read as a closing tag
    files = {**BASE, V_SQL: sub(VIEW_SQL, "    amount,", "    amount AS AS x,\n"
                                                      "    regexp_matches('a/b', '[/]') AS s,")}
    root = build(tmp_path, files)
    result = run_cli("--project-dir", str(root), "compile")
    assert_clean_failure(result, f"{V_SQL}:4: SQL syntax error", "'[/]'")


def test_cli_compile_reports_every_problem(tmp_path: Path) -> None:
    files = {**BASE, V_SQL: sub(VIEW_SQL, "ref('orders')", "ref('orderz')"),
             LABELS: sub(LABELS_SQL, "var('horizon_days')", "var('horizon_dayz')")}
    root = build(tmp_path, files)
    result = run_cli("--project-dir", str(root), "compile")
    assert_clean_failure(result, "2 problems in the project", f"{V_SQL}:6:",
                         f"{LABELS}:3:", "var('horizon_dayz') is not set")


def test_cli_unknown_target(tmp_path: Path) -> None:
    root = build(tmp_path, BASE)
    result = run_cli("--project-dir", str(root), "--target", "prod", "compile")
    assert_clean_failure(result, "target 'prod'")


def test_cli_missing_project_file(tmp_path: Path) -> None:
    result = run_cli("--project-dir", str(tmp_path), "compile")
    assert_clean_failure(result, "fsql_project.yml not found")
