"""Bad on-demand views fail at load or compile with the file and line at fault and the fix."""

from __future__ import annotations

import re

import pytest

from fsql.errors import DefinitionError, FsqlError
from tests.conftest import MakeProject
from tests.ondemand.project import TXN_RISK_YML, cards_project


def _error(make_project: MakeProject, txn_risk: str | None = None,
           training: str | None = None) -> FsqlError:
    extra = {}
    if txn_risk is not None:
        extra["features/txn_risk.yml"] = txn_risk
    if training is not None:
        extra["features/training_sets.yml"] = training
    project = cards_project(make_project, **extra)
    with pytest.raises(FsqlError) as caught:
        project.compile(write=False)
    return caught.value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.lstrip().splitlines(), 1) if needle in line)


def _replace(old: str, new: str) -> str:
    assert old in TXN_RISK_YML
    return TXN_RISK_YML.replace(old, new)


@pytest.mark.parametrize(("old", "new", "message", "hint"), [
    ('"amount / nullif(avg_7d, 0)"', '"upper(amount)"',
     r"txn_risk.amount_vs_avg: function upper\(\) is not in the on-demand subset",
     "the on-demand subset: literals"),
    ('"amount / nullif(avg_7d, 0)"', '"md5(amount)"', r"function md5\(\) is not in",
     "starts_with"),
    ('{name: amount_vs_avg, type: float64,', '{name: amount_vs_avg, type: int64,',
     "txn_risk.amount_vs_avg is declared int64 but its expression is float64",
     "declare type: float64"),
    ('"coalesce(txns_24h, 0) = 0"', '"coalesce(txns_24h, 0) + amunt"',
     "'amunt' is neither a request field nor an input", "did you mean 'amount'"),
    ('"merchant_country <> country"', '"merchant_country + 1"',
     r"needs numbers, not a string value", "the on-demand subset"),
])
def test_expression_errors_name_file_and_line(make_project: MakeProject, old: str, new: str,
                                              message: str, hint: str) -> None:
    text = _replace(old, new)
    err = _error(make_project, text)
    assert isinstance(err, DefinitionError), err
    assert err.location == f"features/txn_risk.yml:{_line_of(text, new)}", str(err)
    assert re.search(message, err.message), err.message
    assert hint in (err.hint or ""), err.hint


@pytest.mark.parametrize(("old", "new", "message", "hint"), [
    ("card_activity.txns_24h,", "card_activity.txns_42h,",
     "view 'card_activity' has no feature 'txns_42h'", "did you mean 'txns_24h'?"),
    ("card_activity.txns_24h,", "card_activty.txns_24h,",
     "input card_activty.txns_24h names no feature view 'card_activty'",
     "did you mean 'card_activity'?"),
    ("{name: merchant_country, type: string}", "{name: country, type: string}",
     "input card_activity.country is called 'country' in expressions, like the request field",
     "rename one"),
    ("{name: amount, type: float64}", "{name: amount, type: float32}",
     "request field 'amount' has type float32", "use one of"),
    ("  description:", "  descripton:", "unknown key 'descripton'", "allowed keys"),
])
def test_definition_errors_name_file_and_line(make_project: MakeProject, old: str, new: str,
                                              message: str, hint: str) -> None:
    text = _replace(old, new)
    err = _error(make_project, text)
    assert isinstance(err, DefinitionError), err
    at = "inputs:" if "called 'country'" in message else new.strip()
    assert err.location == f"features/txn_risk.yml:{_line_of(text, at)}", str(err)
    assert message in err.message and hint in (err.hint or ""), str(err)


def test_name_clash_with_a_feature_view(make_project: MakeProject) -> None:
    err = _error(make_project, TXN_RISK_YML.replace("name: txn_risk", "name: card_activity"))
    assert "'card_activity' is defined twice" in str(err), str(err)
    assert "features/txn_risk.yml:" in str(err) and "features/card_activity.yml" in str(err)


TRAINING = """
training_sets:
  - name: fraud_training
    spine: {source: raw.txns, timestamp: ts}
    features: [FEATURES]
    label: is_fraud
"""


@pytest.mark.parametrize(("features", "message"), [
    ("txn_risk", "needs request field 'amount' (float64): the spine has no column 'amount'"),
    ("txn_risk.nope", "on-demand view 'txn_risk' has no feature 'nope'"),
])
def test_training_set_errors_name_the_training_set(make_project: MakeProject, features: str,
                                                   message: str) -> None:
    training = TRAINING.replace("FEATURES", features)
    project = cards_project(make_project, **{"features/training_sets.yml": training})
    if "amount" in message:  # a spine without the request field's column
        import pyarrow.parquet as pq

        path = project.root / "data" / "txns.parquet"
        pq.write_table(pq.read_table(path).drop(["amount"]), path)
    with pytest.raises(DefinitionError) as caught:
        project.compile(write=False)
    err = caught.value
    assert err.path == "features/training_sets.yml" and err.line, str(err)
    assert "fraud_training" in err.message and message in err.message, str(err)


def test_request_field_that_is_the_label_is_refused(make_project: MakeProject) -> None:
    text = (TXN_RISK_YML.replace("{name: amount, type: float64}",
                                 "{name: amount, type: float64}, {name: is_fraud, type: bool}")
            + '    - {name: leaky, type: bool, sql: "is_fraud AND amount > 0"}\n')
    err = _error(make_project, text)
    assert "txn_risk.leaky reads request field 'is_fraud', which is the label" in str(err)
    assert "features/training_sets.yml" in str(err)
