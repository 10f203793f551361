"""On-demand views in the manifest (fsql compile), fsql ls / show, and fsql diff (a changed
expression is breaking)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import MakeProject
from tests.ondemand.project import TXN_RISK_YML, cards_project
from tests.online.served import FSQL


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(root), *args], text=True,
                          capture_output=True, timeout=120)


def test_manifest_ls_and_show(make_project: MakeProject) -> None:
    project = cards_project(make_project)
    run = cli(project.root, "compile")
    assert run.returncode == 0, run.stderr
    manifest = json.loads(project.paths.manifest.read_text())
    entry = manifest["on_demand_views"]["txn_risk"]
    assert entry["path"] == "features/txn_risk.yml"
    assert entry["request"] == {"amount": "float64", "merchant_country": "string"}
    assert entry["expressions"]["amount_vs_avg"] == "amount / NULLIF(avg_7d, 0)"
    assert entry["features"]["first_txn_today"] == "bool"
    assert "amount_vs_avg" in manifest["training_sets"]["fraud_training"]["columns"]

    run = cli(project.root, "ls", "--json")
    assert run.returncode == 0, run.stderr
    listed = json.loads(run.stdout)
    assert [v["name"] for v in listed["on_demand_views"]] == ["txn_risk"]
    assert "txn_risk.risk_band" in {f["feature"] for f in listed["features"]}
    run = cli(project.root, "ls", "-k", "on_demand_views")
    assert run.returncode == 0 and "txn_risk" in run.stdout

    run = cli(project.root, "show", "txn_risk", "--json")
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert shown["kind"] == "on_demand_view" and shown["inputs"][0] == "card_activity.avg_7d"
    assert "amount / NULLIF(avg_7d, 0) AS amount_vs_avg" in shown["compiled_sql"]


def test_changed_expression_is_breaking(make_project: MakeProject) -> None:
    project = cards_project(make_project)
    project.build(test=False)
    run = cli(project.root, "diff", "--fail-on-breaking")
    assert run.returncode == 0, run.stdout + run.stderr
    (project.root / "features" / "txn_risk.yml").write_text(TXN_RISK_YML.lstrip().replace(
        "amount / nullif(avg_7d, 0)", "amount / nullif(avg_7d, 1)"))
    run = cli(project.root, "diff", "--json", "--fail-on-breaking")
    assert run.returncode == 5, run.stdout + run.stderr
    changes = json.loads(run.stdout)["build"]
    changed = [c for c in changes if c["object"] == "on_demand_view:txn_risk.amount_vs_avg"]
    assert changed and changed[0]["breaking"] and changed[0]["what"] == "sql"
    assert changed[0]["affects"] == ["training_set:fraud_training"]
    assert "nullif(avg_7d, 1)" in changed[0]["detail"].lower()
