"""On-demand features end to end: the value a training set holds at t is the value served
online for the same stored inputs and request data (build + sync + get, real DuckDB and Redis),
and an expression that fails fails on both paths."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import fsql
from fsql.errors import EngineError, OnDemandError, RequestError
from tests.conftest import MakeProject, online_profile
from tests.ondemand.project import DAY, OVERFLOW, TXN_RISK_YML, cards_project
from tests.online.served import FSQL, serving
from tests.redis_server import RedisServer

FEATURES = ["amount_vs_avg", "first_txn_today", "abroad", "risk_band", "txns_2x"]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(root), *args], text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def synced(make_project: MakeProject, redis_server: RedisServer) -> fsql.Project:
    project = cards_project(make_project, online_profile("cards", redis_server.url))
    project.build(test=False)
    project.sync()
    return project


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a) and b is None):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (a != a and b != b)
    return type(a) is type(b) and a == b


def _training_rows(project: fsql.Project) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(project.paths.training_sets / "fraud_training.parquet")
    return table.to_pylist()  # type: ignore[no-any-return]


def test_training_value_equals_online_value(synced: fsql.Project) -> None:
    rows = _training_rows(synced)
    assert [r["card_id"] for r in rows] == [1, 2, 3, 4, 5]
    # spot checks of the offline semantics: x / nullif(0, 0) is NULL, -0.0 / -2.5 is 0.0
    by_card = {r["card_id"]: r for r in rows}
    assert by_card[1]["amount_vs_avg"] == 2.5 and by_card[2]["amount_vs_avg"] is None
    assert by_card[3]["first_txn_today"] is True and by_card[3]["abroad"] is None
    assert by_card[3]["risk_band"] == "high" and by_card[5]["txns_2x"] == -1
    cards = [r["card_id"] for r in rows]
    request = {"amount": [r["amount"] for r in rows],
               "merchant_country": [r["merchant_country"] for r in rows]}
    online = synced.online_features("fraud_training", {"card_id": cards}, request_data=request)
    assert list(online.values) == ["country", *FEATURES]  # inputs not listed stay hidden
    for i, row in enumerate(rows):
        for name in FEATURES:
            assert _same(row[name], online.values[name][i]), (name, row, online.values[name][i])
            assert online.statuses[name][i] == "PRESENT"
    # a single feature by name, and the view by name
    one = synced.online_features(["txn_risk.amount_vs_avg"], {"card_id": [1]},
                                 request_data={"amount": [125.0], "merchant_country": ["FR"]})
    assert one.values == {"amount_vs_avg": [2.5]}


def test_historical_features_computes_on_demand_features(synced: fsql.Project) -> None:
    spine = pd.DataFrame({"card_id": [1, 2], "ts": [DAY, DAY],
                          "amount": [100, 5],  # integers stand for a float64 field
                          "merchant_country": ["FR", "FR"]})
    df = synced.historical_features(spine, ["txn_risk.amount_vs_avg", "txn_risk.abroad"],
                                    timestamp="ts")
    assert df["amount_vs_avg"].tolist()[0] == 2.0 and pd.isna(df["amount_vs_avg"][1])
    assert df["abroad"].tolist() == [False, True]
    with pytest.raises(RequestError, match="request field 'merchant_country'"):
        synced.historical_features(spine.drop(columns="merchant_country"),
                                   ["txn_risk.abroad"], timestamp="ts")


def test_request_data_errors(synced: fsql.Project) -> None:
    entities = {"card_id": [1, 2]}
    with pytest.raises(RequestError, match="missing request field 'merchant_country'"):
        synced.online_features(["txn_risk"], entities, request_data={"amount": [1.0, 2.0]})
    with pytest.raises(RequestError, match="1 value.*2 entity row"):
        synced.online_features(["txn_risk"], entities,
                               request_data={"amount": [1.0], "merchant_country": ["FR"]})
    with pytest.raises(RequestError, match="'amount' .*float64.*not a number"):
        synced.online_features(["txn_risk"], entities, request_data={
            "amount": ["1", 2.0], "merchant_country": ["FR", "FR"]})
    with pytest.raises(RequestError, match="'amount' .*float64"):  # too large for a float
        synced.online_features(["txn_risk"], entities, request_data={
            "amount": [10**400, 2.0], "merchant_country": ["FR", "FR"]})
    with pytest.raises(RequestError, match="'merchant_country' .*not a string"):
        synced.online_features(["txn_risk"], entities, request_data={
            "amount": [1, 2], "merchant_country": [{"a": 1}, "FR"]})
    with pytest.raises(RequestError, match="unexpected request field"):
        synced.online_features(["txn_risk"], entities, request_data={
            "amount": [1, 2], "merchant_country": ["FR", "FR"], "amont": [1, 2]})


def test_cli_get_request(synced: fsql.Project) -> None:
    run = cli(synced.root, "get", "txn_risk", "-e", "card_id=1", "--request", "amount=125",
              "--request", "merchant_country=DE", "--json")
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    names = body["metadata"]["feature_names"]
    values = {n: r["values"][0] for n, r in zip(names, body["results"], strict=True)}
    assert values["amount_vs_avg"] == 2.5 and values["abroad"] is True
    assert values["risk_band"] == "mid" and values["txns_2x"] == 0
    run = cli(synced.root, "get", "txn_risk", "-e", "card_id=1", "--request", "amount=abc",
              "--request", "merchant_country=DE")
    assert run.returncode == 2 and "amount" in run.stderr and "abc" in run.stderr
    run = cli(synced.root, "get", "txn_risk", "-e", "card_id=1", "--request", "amount=1")
    assert run.returncode == 2 and "missing request field 'merchant_country'" in run.stderr


def test_http_request_data(synced: fsql.Project) -> None:
    body = {"features": ["txn_risk.amount_vs_avg", "txn_risk.risk_band"],
            "entities": {"card_id": [1, 2]},
            "request_data": {"amount": [125.0, 2000], "merchant_country": ["FR", "FR"]}}
    with serving(synced.root) as served:
        ok = served.post(body)
        assert ok.status_code == 200, ok.text
        results = ok.json()["results"]
        assert results[1]["values"] == [2.5, None] and results[2]["values"] == ["mid", "high"]
        assert results[1]["statuses"] == ["PRESENT", "PRESENT"]
        for bad, message in [({**body, "request_data": {"amount": [1.0, 2.0]}},
                              "missing request field"),
                             ({**body, "request_data": [1]}, "request_data"),
                             ({**body, "request_data": {"amount": [True, 1.0],
                                                        "merchant_country": ["a", "b"]}},
                              "not a number")]:
            refused = served.post(bad)
            assert refused.status_code == 400, refused.text
            assert message in refused.json()["error"]


def test_overflow_fails_on_both_paths(make_project: MakeProject,
                                      redis_server: RedisServer) -> None:
    project = cards_project(make_project, online_profile("cards", redis_server.url))
    (project.root / "features" / "txn_risk.yml").write_text(TXN_RISK_YML.lstrip() + OVERFLOW)
    with pytest.raises(EngineError, match=r"txn_risk \(features/txn_risk.yml\).*Overflow"):
        project.build(test=False)
    project.sync()
    request = {"amount": [1.0], "merchant_country": ["FR"]}
    assert project.online_features(["txn_risk.txns_after"], {"card_id": [1]},
                                   request_data=request).values == {"txns_after": [4]}
    with pytest.raises(OnDemandError, match="txn_risk.txns_after.*[Oo]verflow"):
        project.online_features(["txn_risk.txns_after"], {"card_id": [4]},
                                request_data=request)
    with serving(project.root) as served:
        refused = served.post({"features": ["txn_risk.txns_after"],
                               "entities": {"card_id": [4]},
                               "request_data": {"amount": [1.0], "merchant_country": ["FR"]}})
        assert refused.status_code == 422, refused.text
        assert "txn_risk.txns_after" in refused.json()["error"]
