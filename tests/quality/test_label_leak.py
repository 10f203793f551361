"""The label-leak guard (issue 8, failure 3): a feature computed from what the training set's
label is computed from is refused at compile, with the lineage path, unless opted out."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fsql
from fsql.errors import DefinitionError, ProjectErrors
from tests.conftest import MakeProject
from tests.quality.test_diff_lineage import DATA, FILES, fsql_cli

# a running fraud rate that includes the current row's is_fraud: the leak
RISK_YML = """
    feature_view:
      name: card_risk
      entities: [card]
      timestamp: ts
      features:
        - name: fraud_rate
          type: float64
        - name: spend_so_far
          type: float64
    """
RISK_SQL = """
    SELECT card_id, ts,
        avg(CAST(is_fraud AS DOUBLE)) OVER w AS fraud_rate,
        CAST(sum(amount) OVER w AS DOUBLE) AS spend_so_far
    FROM {{ ref('tx') }}
    WINDOW w AS (PARTITION BY card_id ORDER BY ts)
    """
# the label built in an upstream model from the same source column
FRAUD_LABELS = """
    SELECT card_id, ts, is_fraud OR amount > 15 AS flagged
    FROM {{ source('bank', 'transactions') }}
    """


def training(spine: str, label: str, features: list[str], extra: str = "") -> str:
    listed = "".join(f"\n          - {f}" for f in features)
    return f"""
    training_sets:
      - name: fraud
        spine:
          {spine}
          timestamp: ts
        label: {label}{extra}
        features:{listed}
    """


def project(make_project: MakeProject, training_yml: str) -> fsql.Project:
    files = {**FILES, "features/card_risk.yml": RISK_YML, "features/card_risk.sql": RISK_SQL,
             "models/fraud_labels.sql": FRAUD_LABELS,
             "models/sources.yml": FILES["models/sources.yml"] + "  - name: fraud_labels\n",
             "features/training_sets.yml": training_yml}
    made = make_project(files, name="cards")
    (made.root / "data").mkdir()
    subprocess.run([sys.executable, "-c", DATA, str(made.root / "data")], check=True)
    return fsql.Project(made.root)


def refused(p: fsql.Project) -> str:
    with pytest.raises((DefinitionError, ProjectErrors)) as err:
        p.compile(write=False)
    return str(err.value)


def test_running_fraud_rate_over_the_label_is_refused_with_its_path(
        make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud", ["card_risk.fraud_rate"]))
    message = refused(p)
    assert "features/training_sets.yml:" in message
    assert ("feature card_risk.fraud_rate reads bank.transactions.is_fraud, which label "
            "is_fraud is computed from (card_risk.fraud_rate <- ") in message, message
    assert "allow_label_lineage" in message


def test_feature_from_an_unrelated_column_is_accepted(make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud",
                                       ["card_risk.spend_so_far", "card_activity.count_1h"]))
    p.compile(write=False)


def test_label_computed_upstream_from_the_same_column_is_refused(
        make_project: MakeProject) -> None:
    p = project(make_project, training("model: fraud_labels", "flagged",
                                       ["card_risk.fraud_rate", "card_risk.spend_so_far"]))
    message = refused(p)
    # both is_fraud and amount feed the label: each feature is named with its own column
    assert "feature card_risk.fraud_rate reads bank.transactions.is_fraud, which label " \
           "flagged" in message, message
    assert "feature card_risk.spend_so_far reads bank.transactions.amount" in message, message


def test_source_spine_label_is_its_own_column(make_project: MakeProject) -> None:
    p = project(make_project, training("source: bank.transactions", "[is_fraud]",
                                       ["card_risk"]))
    message = refused(p)
    assert "feature card_risk.fraud_rate reads bank.transactions.is_fraud" in message
    assert "spend_so_far" not in message


def test_opt_out_is_accepted_and_builds(make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud", ["card_risk.fraud_rate"],
                                       "\n        allow_label_lineage: [card_risk.fraud_rate]"))
    result = fsql_cli(p.root, "build")
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_refuses_with_exit_2(make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud", ["card_risk.fraud_rate"]))
    result = fsql_cli(p.root, "build")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "card_risk.fraud_rate reads bank.transactions.is_fraud" in result.stderr
    assert "Traceback" not in result.stderr


RAW_YML = """
    feature_view:
      name: card_raw
      entities: [card]
      timestamp: ts
      features:
        - name: raw_amount
          type: float64
    """
# a star over a file fsql has no schema for: the lineage cannot be resolved
RAW_SQL = """
    SELECT card_id, ts, CAST(amount AS DOUBLE) AS raw_amount
    FROM (SELECT * FROM read_parquet('data/transactions.parquet'))
    """


def test_unresolvable_feature_lineage_is_refused_unless_opted_out(
        make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud", ["card_raw.raw_amount"]))
    (p.root / "features/card_raw.yml").write_text(RAW_YML)
    (p.root / "features/card_raw.sql").write_text(RAW_SQL.replace("data/", f"{p.root}/data/"))
    message = refused(fsql.Project(p.root))
    assert "the lineage of feature card_raw.raw_amount cannot be resolved" in message, message
    ts_yml = p.root / "features/training_sets.yml"
    ts_yml.write_text(ts_yml.read_text().replace(
        "    label: is_fraud",
        "    label: is_fraud\n    allow_label_lineage: [card_raw.raw_amount]"))
    fsql.Project(p.root).compile(write=False)


# the fraud rate as an aggregation: its lineage is the column it aggregates
WINDOWS_YML = """
    feature_view:
      name: card_windows
      entities: [card]
      timestamp: ts
      aggregations:
        - {name: frauds_24h, function: sum, column: fraud, window: 24h, type: int64}
        - {name: spend_24h, function: sum, column: amount, window: 24h, type: float64}
    """
WINDOWS_SQL = """
    SELECT card_id, ts, CAST(is_fraud AS INT) AS fraud, CAST(amount AS DOUBLE) AS amount
    FROM {{ ref('tx') }}
    """


def test_aggregation_of_the_label_column_is_refused(make_project: MakeProject) -> None:
    p = project(make_project, training("model: tx", "is_fraud",
                                       ["card_windows.frauds_24h", "card_windows.spend_24h"]))
    for name, text in (("card_windows.yml", WINDOWS_YML), ("card_windows.sql", WINDOWS_SQL)):
        (p.root / "features" / name).write_text(text)
    message = refused(fsql.Project(p.root))
    assert "feature card_windows.frauds_24h reads bank.transactions.is_fraud" in message, message
    assert "spend_24h" not in message
