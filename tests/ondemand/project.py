"""A small card project with one on-demand view, written by tests (dbt functional style)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import fsql
from tests.conftest import MakeProject, raw_sources

DAY = dt.datetime(2024, 1, 1)

ACTIVITY_SQL = """
select card_id, ts, avg_7d, txns_24h, country from {{ source('raw', 'activity') }}
"""
ACTIVITY_YML = """
feature_view:
  name: card_activity
  entities: [card]
  timestamp: ts
  online: true
  features:
    - {name: avg_7d, type: float64}
    - {name: txns_24h, type: int64}
    - {name: country, type: string}
"""
TXN_RISK_YML = """
on_demand_view:
  name: txn_risk
  description: How unusual the transaction being scored is for its card.
  request: [{name: amount, type: float64}, {name: merchant_country, type: string}]
  inputs: [card_activity.avg_7d, card_activity.txns_24h, card_activity.country]
  features:
    - {name: amount_vs_avg, type: float64, sql: "amount / nullif(avg_7d, 0)"}
    - {name: first_txn_today, type: bool, sql: "coalesce(txns_24h, 0) = 0"}
    - {name: abroad, type: bool, sql: "merchant_country <> country"}
    - name: risk_band
      type: string
      sql: "case when amount > 1000 then 'high' when amount > 100 then 'mid' else 'low' end"
    - {name: txns_2x, type: int64, sql: "coalesce(txns_24h, 0) // 2 - 1"}
"""
#: a feature that overflows int64 for card 4 (its txns_24h is the largest int64)
OVERFLOW = '    - {name: txns_after, type: int64, sql: "coalesce(txns_24h, 0) + 1"}\n'
TRAINING_YML = """
training_sets:
  - name: fraud_training
    spine: {source: raw.txns, timestamp: ts}
    features: [txn_risk, card_activity.country]
    label: is_fraud
"""


def write_data(root: Path) -> None:
    (root / "data").mkdir(exist_ok=True)
    pq.write_table(pa.table({
        "card_id": pa.array([1, 2, 3, 4], pa.int64()),
        "ts": pa.array([DAY] * 4, pa.timestamp("us")),
        "avg_7d": pa.array([50.0, 0.0, None, -2.5], pa.float64()),
        "txns_24h": pa.array([3, 0, None, 9223372036854775807], pa.int64()),
        "country": pa.array(["FR", "DE", None, "Ελλάδα"], pa.string()),
    }), root / "data" / "activity.parquet")
    spine_ts = DAY + dt.timedelta(days=1)
    pq.write_table(pa.table({
        "card_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "ts": pa.array([spine_ts] * 5, pa.timestamp("us")),
        "amount": pa.array([125.0, 10.0, 2000.0, -0.0, 7.0], pa.float64()),
        "merchant_country": pa.array(["FR", "FR", "DE", "Ελλάδα", None], pa.string()),
        "is_fraud": pa.array([False, False, True, False, False]),
    }), root / "data" / "txns.parquet")


def files(**extra: str) -> dict[str, str]:
    return {
        "models/sources.yml": raw_sources(activity=Path("data/activity.parquet"),
                                          txns=Path("data/txns.parquet")),
        "features/entities.yml": "entities:\n  - {name: card, join_keys: [card_id]}\n",
        "features/card_activity.yml": ACTIVITY_YML,
        "features/card_activity.sql": ACTIVITY_SQL,
        "features/txn_risk.yml": TXN_RISK_YML,
        "features/training_sets.yml": TRAINING_YML,
        **extra,
    }


def cards_project(make_project: MakeProject, profile: str | None = None,
                  **extra: str) -> fsql.Project:
    more = {"profiles.yml": profile} if profile else {}
    project = make_project({**files(**extra), **more}, name="cards")
    write_data(project.root)
    return project
