"""``fsql serve``'s HTTP API (fsql.http) against a real redis-server: responses checked value by
value against the brute-force reference, bad requests, /health, /metrics, a Redis outage, and
one end-to-end run of the ``fsql serve`` command."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

import fsql
from fsql.http import create_app
from fsql.loader import ProjectSpec
from tests.conftest import MakeProject, online_profile
from tests.online.reference import as_utc, close, latest_rows, view_rows, window_rows
from tests.online.scores import get_scores, scores_project, utc_now, write_scores
from tests.online.served import FSQL, URL, assert_documented, outcomes, scrape, serving
from tests.redis_server import RedisServer

with warnings.catch_warnings():  # starlette >= 1.x asks for httpx2 (not installed) at import
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

MISSING_ID = 10**9


# -- the example project, synced once for the module, and its brute-force reference ---------

@dataclass
class Shop:
    project: fsql.Project
    spec: ProjectSpec
    expected: dict[str, dict[tuple[Any, ...], list[dict[str, Any]]]]  # view -> key -> rows

    def keys(self, view: str) -> list[str]:
        return [k for e in self.spec.views[view].entities
                for k in self.spec.entities[e].join_keys]


@pytest.fixture(scope="module", params=["redis", "cluster"])
def shop(online_template: Path, request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """The example project synced to the session's redis-server, then to its Redis Cluster."""
    server = request.getfixturevalue("redis_cluster" if request.param == "cluster"
                                     else "redis_server")
    root = tmp_path_factory.mktemp("http") / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", server.url))
    project = fsql.Project(root)
    now = time.time()
    project.sync(now=now)
    spec = project.load()
    expected = {}
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    for name, view in spec.views.items():
        if view.online and view.aggregations:
            # the values read during the module's tests: from the sync to an hour later
            keys = [k for e in view.entities for k in spec.entities[e].join_keys]
            expected[name] = window_rows(view_rows(project, name), view, keys,
                                         [moment, moment + dt.timedelta(hours=1)])
        elif view.online:
            keys = [k for e in view.entities for k in spec.entities[e].join_keys]
            expected[name] = latest_rows(view_rows(project, name), keys, view.timestamp,
                                         view.created_timestamp,
                                         view.ttl.seconds if view.ttl else None, moment)
    return Shop(project, spec, expected)


Client = Callable[..., TestClient]


@pytest.fixture
def client(shop: Shop) -> Iterator[Client]:
    """``client(max_entities=...)``: a TestClient on a fresh app (fresh metrics)."""
    services = []

    def make(max_entities: int | None = None) -> TestClient:
        service = shop.project.online_service(max_entities=max_entities)
        services.append(service)
        return TestClient(create_app(service), raise_server_exceptions=False)

    yield make
    for service in services:
        service.store.close()


def json_form(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def assert_view_columns(shop: Shop, body: dict[str, Any], view: str,
                        columns: dict[str, str]) -> None:
    """The response columns ``columns`` (output name -> feature of ``view``) hold, for every
    requested entity, one reference row of ``view`` (or null/MISSING when it has none)."""
    names = body["metadata"]["feature_names"]
    results = dict(zip(names, body["results"], strict=True))
    keys = shop.keys(view)
    ts = shop.spec.views[view].timestamp
    count = len(results[keys[0]]["values"])
    for i in range(count):
        key = tuple(results[k]["values"][i] for k in keys)
        got = {f: results[n]["values"][i] for n, f in columns.items()}
        statuses = {results[n]["statuses"][i] for n in columns}
        stamps = {results[n]["event_timestamps"][i] for n in columns}
        choices = shop.expected[view].get(key)
        windows = {f.name: f for f in shop.spec.views[view].aggregations}
        if choices is None and windows:  # an empty window: count 0, the others null
            assert statuses == {"PRESENT"} and stamps == {None}, (view, key, got)
            assert got == {f: 0 if windows[f].aggregation.function == "count"  # type: ignore[union-attr]
                           else None for f in got}, (view, key, got)
            continue
        if choices is None:
            assert statuses == {"MISSING"} and stamps == {None}, (view, key, got)
            assert set(got.values()) == {None}, (view, key, got)
            continue
        assert statuses == {"PRESENT"}, (view, key)
        assert any(all(close(got[f], json_form(row[f])) for f in got)
                   and stamps == {as_utc(row[ts]).isoformat()}  # type: ignore[union-attr]
                   for row in choices), (view, key, got, stamps, choices)


def customers(shop: Shop) -> list[int]:
    """Customers with recent orders, customers with a profile only, one never seen."""
    ordered = sorted(k[0] for k in shop.expected["customer_orders"])
    profile_only = sorted(k[0] for k in shop.expected["customer_profile"]
                          if k not in shop.expected["customer_orders"])
    return ordered[:40] + profile_only[:10] + [MISSING_ID]


# -- reading ---------------------------------------------------------------------------------

def test_features_by_name_equal_the_reference(shop: Shop, client: Client) -> None:
    ids = customers(shop)
    response = client().post(URL, json={
        "features": ["customer_orders.orders_30d", "customer_orders.last_category",
                     "customer_profile"],
        "entities": {"customer_id": ids}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["metadata"]["feature_names"] == [
        "customer_id", "orders_30d", "last_category", "segment", "credit_limit", "country"]
    key_column = body["results"][0]
    assert key_column == {"values": ids, "statuses": ["PRESENT"] * len(ids),
                          "event_timestamps": [None] * len(ids)}
    assert_view_columns(shop, body, "customer_orders",
                        {"orders_30d": "orders_30d", "last_category": "last_category"})
    assert_view_columns(shop, body, "customer_profile", {
        "segment": "segment", "credit_limit": "credit_limit", "country": "country"})
    # aggregations are values for every entity (an empty window too); the profile is not
    assert body["results"][1]["statuses"] == ["PRESENT"] * len(ids)
    assert body["results"][1]["values"][-1] == 0 and body["results"][2]["values"][-1] is None
    assert body["results"][3]["statuses"].count("PRESENT") == 50


def test_feature_service_with_a_composite_key_equals_the_reference(shop: Shop,
                                                                   client: Client) -> None:
    pairs = sorted(shop.expected["customer_product"])[:30]
    products = sorted(k[0] for k in shop.expected["product_ratings"])
    pairs += [(pairs[0][0], MISSING_ID), (MISSING_ID, products[0])]
    prices = [5.0 + 3 * i for i in range(len(pairs))]  # the request data of purchase_context
    response = client().post(URL, json={
        "feature_service": "purchase_training",
        "entities": {"customer_id": [c for c, _ in pairs], "product_id": [p for _, p in pairs]},
        "request_data": {"list_price": prices}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["feature_names"] == [
        "customer_id", "product_id", "orders_30d", "reviews_90d", "avg_rating_90d",
        "times_bought", "last_quantity", "price_vs_avg_order", "no_order_30d", "price_band"]
    results = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    # the on-demand features, from the request's price and the served inputs
    assert results["price_band"]["values"] == [
        "high" if p > 60 else "mid" if p > 20 else "low" for p in prices]
    assert results["no_order_30d"]["values"] == [
        n == 0 for n in results["orders_30d"]["values"]]
    for i, (customer, _) in enumerate(pairs):
        got = results["price_vs_avg_order"]["values"][i]
        averages = [row["avg_amount_30d"] for row in
                    shop.expected["customer_orders"].get((customer,), [{"avg_amount_30d": None}])]
        assert any((got is None and a in (None, 0)) or (
            got is not None and a and math.isclose(got, prices[i] / a, rel_tol=1e-9))
            for a in averages), (customer, got, averages)
    assert_view_columns(shop, body, "customer_orders", {"orders_30d": "orders_30d"})
    assert_view_columns(shop, body, "product_ratings", {"reviews_90d": "reviews_90d",
                                                        "avg_rating_90d": "avg_rating_90d"})
    assert_view_columns(shop, body, "customer_product", {"times_bought": "times_bought",
                                                         "last_quantity": "last_quantity"})
    times = body["results"][5]["statuses"]
    assert times == ["PRESENT"] * 30 + ["MISSING", "MISSING"]
    assert body["results"][3]["statuses"][-1] == "PRESENT"  # the product has ratings


def test_http_answers_what_the_python_api_answers(shop: Shop, client: Client) -> None:
    ids = customers(shop)
    response = client().post(URL, json={"feature_service": "churn_training",
                                        "entities": {"customer_id": ids}})
    assert response.status_code == 200, response.text
    api = shop.project.online_features("churn_training", {"customer_id": ids}).to_json()
    assert response.json() == json.loads(json.dumps(api))
    assert response.json()["metadata"]["feature_names"] == [
        "customer_id", "orders_30d", "spend_30d", "avg_amount_30d", "last_category",
        "segment", "credit_limit"]


def test_zero_entities(client: Client) -> None:
    response = client().post(URL, json={"features": ["customer_orders.orders_30d"],
                                        "entities": {"customer_id": []}})
    assert response.status_code == 200
    empty = {"values": [], "statuses": [], "event_timestamps": []}
    assert response.json() == {"metadata": {"feature_names": ["customer_id", "orders_30d"]},
                               "results": [empty, empty]}


# -- health and metrics ----------------------------------------------------------------------

def test_health_and_metrics(shop: Shop, client: Client) -> None:
    http = client()
    health = http.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert health.headers["fsql-worker"] == str(os.getpid())  # TestClient: in this process
    fresh = http.get("/metrics")
    assert fresh.headers["content-type"].startswith("text/plain; version=")
    assert outcomes(fresh.text) == {"ok": 0, "client_error": 0, "server_error": 0}
    good = {"features": ["customer_orders", "customer_profile"],
            "entities": {"customer_id": customers(shop)}}
    answers = [http.post(URL, json=good) for _ in range(3)]
    answers.append(http.post(URL, json={"feature_service": "churn_training",
                                        "entities": {"customer_id": [1]}}))
    assert [a.status_code for a in answers] == [200] * 4
    for bad in ({"features": ["nope"], "entities": {"customer_id": [1]}}, {"features": []},
                {"feature_service": "no_such_set", "entities": {"customer_id": [1]}}):
        assert http.post(URL, json=bad).status_code == 400
    assert http.get("/nope").status_code == 404
    samples = scrape(http.get("/metrics").text)
    requests = {tuple(v for _, v in labels): value
                for labels, value in samples["fsql_http_requests_total"].items()}
    # labels sorted by name: code, endpoint, service; a body that fails to parse names no
    # service ("unknown"), like a training set that does not exist
    assert requests == {("200", "/health", ""): 1, ("200", "/metrics", ""): 2,
                        ("200", URL, "adhoc"): 3, ("200", URL, "churn_training"): 1,
                        ("400", URL, "adhoc"): 1, ("400", URL, "unknown"): 2,
                        ("404", "other", ""): 1}
    count = samples["fsql_http_request_duration_seconds_count"]
    assert count[(("endpoint", URL), ("service", "adhoc"))] == 4
    buckets = samples["fsql_http_request_duration_seconds_bucket"]
    assert buckets[(("endpoint", URL), ("le", "+Inf"), ("service", "adhoc"))] == 4
    assert 0 < samples["fsql_http_request_duration_seconds_sum"][
        (("endpoint", URL), ("service", "adhoc"))] < 10
    assert samples["fsql_online_store_errors_total"] == {(): 0}
    # feature values by status, as the answers gave them (the entity column aside)
    counted: Counter[tuple[str, str]] = Counter()
    for service, answer in zip(["adhoc"] * 3 + ["churn_training"], answers, strict=True):
        body = answer.json()
        for name, column in zip(body["metadata"]["feature_names"], body["results"],
                                strict=True):
            if name != "customer_id":
                counted.update((service, status) for status in column["statuses"])
    assert {status for _, status in counted} >= {"PRESENT", "MISSING"}
    assert samples["fsql_feature_values_total"] == {
        (("service", service), ("status", status)): count
        for (service, status), count in counted.items()}
    # the sync results, read from the store's sync metadata
    synced = samples["fsql_view_last_sync_timestamp_seconds"]
    online = {name for name, view in shop.spec.views.items() if view.online}
    assert {dict(labels)["view"] for labels in synced} == online
    assert all(time.time() - 3600 < at <= time.time() for at in synced.values())
    entities = samples["fsql_view_online_entities"]
    assert entities[(("view", "customer_orders"),)] == len(shop.expected["customer_orders"])
    assert samples["fsql_view_last_sync_entities"][(("view", "customer_orders"),)] > 0


# -- the OpenAPI description -----------------------------------------------------------------

def test_responses_match_the_openapi_description(shop: Shop, client: Client) -> None:
    http = client(max_entities=10)
    served = http.get("/openapi.json")
    spec = served.json()
    assert spec["openapi"].startswith("3.1")
    assert_documented(spec, "/openapi.json", "get", served)
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    request_schema = jsonschema.Draft202012Validator(
        {**spec["components"]["schemas"]["GetOnlineFeaturesRequest"],
         "components": spec["components"]})
    ids = customers(shop)[:9]
    accepted = [{"features": ["customer_orders", "customer_profile.segment"],
                 "entities": {"customer_id": ids}},
                {"feature_service": "churn_training", "entities": {"customer_id": ids}},
                {"features": ["customer_orders"], "entities": {"customer_id": []}}]
    for body in accepted:  # requests the description allows: answered 200, as described
        request_schema.validate(body)
        response = http.post(URL, json=body)
        assert response.status_code == 200, response.text
        assert_documented(spec, URL, "post", response)
    refused = [{"features": ["customer_orders"]},  # no entities
               {"features": ["customer_orders"], "feature_service": "churn_training",
                "entities": {"customer_id": [1]}},
               {"features": ["customer_orders"], "entities": {"customer_id": [1]}, "x": 1},
               {"features": "customer_orders", "entities": {"customer_id": [1]}}]
    for body in refused:  # requests the description forbids: answered 400, as described
        assert not request_schema.is_valid(body)
        response = http.post(URL, json=body)
        assert response.status_code == 400, response.text
        assert_documented(spec, URL, "post", response)
    for body in ({"features": ["nope"], "entities": {"customer_id": [1]}},
                 {"features": ["customer_orders"], "entities": {"customer_id": list(range(11))}}):
        assert_documented(spec, URL, "post", http.post(URL, json=body))  # valid shape, 400
    too_large = http.post(URL, content=b"[" * (2 << 20),
                          headers={"content-type": "application/json"})
    assert too_large.status_code == 413
    assert_documented(spec, URL, "post", too_large)
    no_such_path = http.post(URL + "z", json=accepted[0])
    assert no_such_path.status_code == 404
    assert_documented(spec, URL, "post", no_such_path)
    wrong_method = http.get(URL)
    assert wrong_method.status_code == 405
    assert_documented(spec, URL, "post", wrong_method)
    assert_documented(spec, "/health", "get", http.get("/health"))
    assert_documented(spec, "/metrics", "get", http.get("/metrics"))
    with pytest.raises(jsonschema.ValidationError):  # the check can fail: a body of another shape
        jsonschema.Draft202012Validator(
            {**spec["components"]["schemas"]["GetOnlineFeaturesResponse"],
             "components": spec["components"]}).validate({"results": []})


# -- bad requests: 400 with a message, and the server keeps serving --------------------------

ONE = {"customer_id": [1]}
BAD_REQUESTS: dict[str, tuple[bytes | Any, str]] = {
    "malformed json": (b'{"features": [', "the body must be JSON"),
    "empty body": (b"", "the body must be JSON"),
    "not utf-8": (b"\xff\xfe{}", "the body must be JSON"),
    "not an object": ([1, 2], "the body must be a JSON object"),
    "unknown field": ({"features": ["customer_orders"], "entities": ONE, "spine": 1},
                      "unknown field(s): spine"),
    "no features": ({"entities": ONE}, "give exactly one of 'features'"),
    "both features and service": ({"features": ["customer_orders"],
                                   "feature_service": "churn_training", "entities": ONE},
                                  "give exactly one of 'features'"),
    "features not a list": ({"features": "customer_orders", "entities": ONE},
                            "'features' must be a list of strings"),
    "feature not a string": ({"features": [["customer_orders"]], "entities": ONE},
                             "'features' must be a list of strings"),
    "service not a string": ({"feature_service": ["churn_training"], "entities": ONE},
                             "'feature_service' must be a string"),
    "empty feature list": ({"features": [], "entities": ONE}, "request at least one feature"),
    "malformed feature name": ({"features": ["a.b.c"], "entities": ONE},
                               "'a.b.c' is not 'view' or 'view.feature'"),
    "unknown feature": ({"features": ["customer_orders.nope"], "entities": ONE},
                        "feature view 'customer_orders' has no feature 'nope'"),
    "unknown view": ({"features": ["nope.orders_30d"], "entities": ONE},
                     "unknown feature view 'nope'"),
    "unknown feature service": ({"feature_service": "nope", "entities": ONE},
                                "'nope' is not a training set"),
    "entities missing": ({"features": ["customer_orders"]}, "'entities' must be an object"),
    "entities not an object": ({"features": ["customer_orders"], "entities": [1]},
                               "'entities' must be an object"),
    "missing key column": ({"features": ["customer_orders"], "entities": {"product_id": [1]}},
                           "missing entity key column(s): customer_id"),
    "missing one of two keys": ({"features": ["customer_product"], "entities": ONE},
                                "missing entity key column(s): product_id (this request "
                                "needs: customer_id, product_id)"),
    "unexpected key column": ({"features": ["customer_orders"],
                               "entities": {"customer_id": [1], "product_id": [1]}},
                              "unexpected entity key column(s): product_id"),
    "key values not a list": ({"features": ["customer_orders"], "entities": {"customer_id": 1}},
                              "entity key 'customer_id' must be a list of values"),
    "key values a string": ({"features": ["customer_orders"],
                             "entities": {"customer_id": "12"}},
                            "entity key 'customer_id' must be a list of values"),
    "string for an int key": ({"features": ["customer_orders"],
                               "entities": {"customer_id": [1, "2"]}},
                              "key 'customer_id' of view 'customer_orders' must be an integer, "
                              "got '2'"),
    "bool for an int key": ({"features": ["customer_orders"],
                             "entities": {"customer_id": [True]}},
                            "must be an integer, got True"),
    "float for an int key": ({"features": ["customer_orders"],
                              "entities": {"customer_id": [1.5]}},
                             "must be an integer, got 1.5"),
    "null key": ({"features": ["customer_orders"], "entities": {"customer_id": [None]}},
                 "must be an integer, got None"),
    "keys of unequal length": ({"features": ["customer_product"],
                                "entities": {"customer_id": [1, 2], "product_id": [1]}},
                               "entity key columns must have the same length"),
    "too many entities": ({"features": ["customer_orders"],
                           "entities": {"customer_id": list(range(11))}},
                          "too many entities: 11 (limit 10 per request)"),
    # lone surrogates are not Unicode text: JSON with them is refused as a whole
    "surrogate in a service name": (json.dumps({"feature_service": "\ud800",
                                                "entities": ONE}).encode(),
                                    "the body must be JSON"),
    "surrogate in a feature name": (json.dumps({"features": ["customer_orders.\udfff"],
                                                "entities": ONE}).encode(),
                                    "the body must be JSON"),
    "surrogate in a key": (json.dumps({"features": ["customer_orders"],
                                       "entities": {"customer_id": ["\ud800"]}}).encode(),
                           "the body must be JSON"),
    "key nested 1000 deep": (b'{"features": ["customer_orders"], "entities": {"customer_id": ['
                             + b"[" * 1000 + b"1" + b"]" * 1000 + b"]}}",
                             "must be an integer, got [[[[[[[...]]]]]]]"),
    "key nested too deep for the parser": (
        b'{"features": ["customer_orders"], "entities": {"customer_id": ['
        + b"[" * 2000 + b"1" + b"]" * 2000 + b"]}}", "depth limit exceeded"),
    "non-finite number": (b'{"features": ["customer_orders"], "entities": '
                          b'{"customer_id": [NaN]}}', "the body must be JSON"),
    # a name not found comes with the nearest known one; a feature asked for twice is refused
    "misspelt field": ({"feature": ["customer_orders"], "entities": ONE},
                       "unknown field(s): feature; did you mean 'features'?"),
    "misspelt view": ({"features": ["customer_ordrs.orders_30d"], "entities": ONE},
                      "unknown feature view 'customer_ordrs'; did you mean 'customer_orders'?"),
    "misspelt feature": ({"features": ["customer_orders.orders_3d"], "entities": ONE},
                         "has no feature 'orders_3d'; did you mean 'orders_30d'?"),
    "misspelt feature service": ({"feature_service": "churn_trainin", "entities": ONE},
                                 "did you mean 'churn_training'?"),
    "misspelt key column": ({"features": ["customer_orders"], "entities": {"customerid": [1]}},
                            "missing entity key column(s): customer_id (this request needs: "
                            "customer_id); got 'customerid': did you mean 'customer_id'?"),
    "feature twice": ({"features": ["customer_orders.orders_30d", "customer_orders.orders_30d"],
                       "entities": ONE}, "'customer_orders.orders_30d' is listed twice"),
    "feature twice through its view": (
        {"features": ["customer_orders", "customer_orders.spend_30d"], "entities": ONE},
        "'customer_orders.spend_30d' is listed twice: on its own and through its view"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400_with_a_message(shop: Shop, client: Client, case: str) -> None:
    body, message = BAD_REQUESTS[case]
    http = client(max_entities=10)
    if isinstance(body, bytes):
        response = http.post(URL, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(URL, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert set(response.json()) == {"error"}
    after = http.post(URL, json={"features": ["customer_orders.orders_30d"],
                                 "entities": {"customer_id": customers(shop)[:10]}})
    assert after.status_code == 200
    assert_view_columns(shop, after.json(), "customer_orders", {"orders_30d": "orders_30d"})
    assert outcomes(http.get("/metrics").text) == {"ok": 1, "client_error": 1,
                                                       "server_error": 0}


def test_wrong_method_or_path(client: Client) -> None:
    http = client()
    assert http.get(URL).status_code == 405
    assert http.post("/health").status_code == 405
    assert http.put("/metrics").status_code == 405
    assert http.post("/nope", json={}).status_code == 404
    assert http.get("/health").status_code == 200


def test_deeply_nested_json_is_400(shop: Shop, client: Client) -> None:
    http = client()
    response = http.post(URL, content=b"[" * 100_000)
    assert response.status_code == 400, response.text
    assert "JSON" in response.json()["error"]


# lone surrogates included: JSON text can carry them as escapes
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=16)
_names = st.sampled_from(["customer_orders", "customer_orders.orders_30d", "product_ratings",
                          "customer_product", "customer_profile.segment", "churn_training",
                          "purchase_training", "a.b.c", ""]) | _text
_entities = st.dictionaries(st.sampled_from(["customer_id", "product_id"]) | _text,
                            st.lists(st.integers(-5, 2**64) | _json, max_size=4)
                            | _json, max_size=3)
_requests = st.fixed_dictionaries({"features": st.lists(_names, max_size=4) | _json,
                                   "entities": _entities}) | st.fixed_dictionaries(
    {"feature_service": _names | _json, "entities": _entities | _json})


def _nested(depth: int) -> bytes:
    return (b'{"features": ["customer_orders"], "entities": {"customer_id": ['
            + b"[" * depth + b"1" + b"]" * depth + b"]}}")


_bodies = (st.binary(max_size=200) | (_json | _requests).map(lambda v: json.dumps(v).encode())
           | st.integers(1, 1500).map(_nested))


def test_fuzzed_requests_get_4xx_never_5xx_and_are_all_counted(client: Client) -> None:
    """Arbitrary bytes, arbitrary JSON, requests with random names and keys (lone surrogates,
    huge integers, NaN, nesting to past the parser's limit): each gets 200 or a 4xx with a
    JSON error, and /metrics counts every one."""
    http = client()
    sent: list[int] = []

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=_bodies)
    def check(body: bytes) -> None:
        response = http.post(URL, content=body, headers={"content-type": "application/json"})
        sent.append(response.status_code)
        assert response.status_code == 200 or 400 <= response.status_code < 500, (
            body[:300], response.text[:300])
        if response.status_code != 200:
            assert set(response.json()) == {"error"}

    check()
    counts = outcomes(http.get("/metrics").text)
    assert counts == {"ok": sent.count(200), "client_error": len(sent) - sent.count(200),
                      "server_error": 0}


def test_non_finite_feature_values_are_protobuf_json_strings(make_project: MakeProject,
                                                             redis_server: RedisServer,
                                                             tmp_path: Path) -> None:
    """JSON has no NaN or Infinity: HTTP and ``fsql get --json`` both write them as the strings
    "NaN", "Infinity", "-Infinity" (protobuf's JSON mapping), status PRESENT, in strict JSON;
    the Python API keeps the floats."""
    data = tmp_path / "m.parquet"
    at = utc_now() - dt.timedelta(minutes=5)
    pq.write_table(pa.table({"user_id": [1, 2, 3, 4],
                             "ts": pa.array([at] * 4, pa.timestamp("us")),
                             "x": [math.nan, math.inf, -math.inf, 1.5]}), data)
    project = make_project({
        "features/m.yml": """
            entities:
              - name: user
                join_keys: [user_id]
            feature_view:
              name: m
              entity: user
              timestamp: ts
              online: true
              features:
                - {name: x, type: float64}
            """,
        "features/m.sql": "SELECT user_id, ts, x FROM {{ source('raw', 'm') }}\n",
        "models/sources.yml": f"""
            sources:
              - name: raw
                tables:
                  - name: m
                    path: {data}
            """,
        "profiles.yml": online_profile("test", redis_server.url)})
    project.sync()
    service = project.online_service()

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    try:
        http = TestClient(create_app(service), raise_server_exceptions=False)
        response = http.post(URL, json={"features": ["m"],
                                        "entities": {"user_id": [1, 2, 3, 4]}})
        assert response.status_code == 200, response.text
        body = json.loads(response.text, parse_constant=strict)
        assert body["results"][1]["statuses"] == ["PRESENT"] * 4
        assert body["results"][1]["values"] == ["NaN", "Infinity", "-Infinity", 1.5]
        assert outcomes(http.get("/metrics").text)["ok"] == 1
        python = service.get(["m"], {"user_id": [1, 2, 3, 4]}).values["x"]
        assert math.isnan(python[0]) and python[1:] == [math.inf, -math.inf, 1.5]
    finally:
        service.store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    cli = subprocess.run([FSQL, "--project-dir", str(project.root), "get", "m", "-e", "user_id=1",
                          "-e", "user_id=2", "-e", "user_id=3", "-e", "user_id=4", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout, parse_constant=strict) == body


# -- a Redis outage ----------------------------------------------------------------------------

def test_redis_outage_is_503_and_serving_recovers(make_project: MakeProject,
                                                  tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        data = tmp_path / "scores.parquet"
        project = scores_project(make_project, data, server.url)
        at = utc_now() - dt.timedelta(minutes=10)
        write_scores(data, [(u, at, at, u * 10, f"u{u}") for u in range(1, 6)])
        project.sync()
        service = project.online_service()
        http = TestClient(create_app(service), raise_server_exceptions=False)
        request = {"features": ["scores.score", "scores.label"],
                   "entities": {"user_id": [1, 5, 6]}}
        before = http.post(URL, json=request)
        assert before.status_code == 200
        assert before.json()["results"][1]["values"] == [10, 50, None]
        assert before.json()["results"][2]["values"] == ["u1", "u5", None]

        server.stop(kill=True)
        down = http.post(URL, json=request)
        assert down.status_code == 503, down.text
        assert_documented(http.get("/openapi.json").json(), URL, "post", down)
        assert down.json()["error"].startswith(f"online store ({server.url}) failed while "
                                               "reading features")
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"

        server.start()  # same port, data back from the append-only file
        assert http.get("/health").json() == {"status": "ok"}
        assert http.post(URL, json=request).json() == before.json()

        server.client().flushall()  # the data is gone (say, restarted without persistence)
        empty = http.post(URL, json=request)
        assert empty.status_code == 503
        assert empty.json() == {"error": "feature view 'scores' has no online data yet; run: "
                                         "fsql sync"}
        project.sync()
        assert http.post(URL, json=request).json() == before.json()
        metrics = http.get("/metrics").text
        assert outcomes(metrics) == {"ok": 3, "client_error": 0, "server_error": 2}
        assert scrape(metrics)["fsql_online_store_errors_total"] == {(): 2}
        assert get_scores(project, [5])["label"] == ["u5"]
        service.store.close()
    finally:
        server.stop(kill=True)


# -- the real command --------------------------------------------------------------------------

def test_fsql_serve_end_to_end(shop: Shop, client: Client) -> None:
    with serving(shop.project.root, "--max-entities", "60") as server:
        assert server.get("/health").json() == {"status": "ok"}
        request = {"feature_service": "churn_training",
                   "entities": {"customer_id": customers(shop)}}
        served = server.post(request)
        assert served.status_code == 200, served.text
        assert served.json() == client().post(URL, json=request).json()
        assert_view_columns(shop, served.json(), "customer_orders", {
            "orders_30d": "orders_30d", "spend_30d": "spend_30d",
            "avg_amount_30d": "avg_amount_30d", "last_category": "last_category"})
        assert_view_columns(shop, served.json(), "customer_profile", {
            "segment": "segment", "credit_limit": "credit_limit"})
        too_many = server.post({"feature_service": "churn_training",
                                "entities": {"customer_id": list(range(61))}})
        assert too_many.status_code == 400
        assert "limit 60 per request" in too_many.json()["error"]
        assert outcomes(server.get("/metrics").text)["ok"] == 1
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(timeout=20)
    assert server.proc.returncode == 0
    assert f"on http://127.0.0.1:{server.port}" in " ".join(server.stderr.split())
