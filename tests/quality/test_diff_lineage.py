"""Computation changes are breaking (issue 8, failure 2): the probes of the issue on a card-fraud
project whose views read sources through a join (where column lineage needs the schemas)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fsql
from fsql.diff import Change, diff, feature_lineage
from tests.conftest import MakeProject, online_profile
from tests.redis_server import RedisServer

FILES = {
    "fsql_project.yml": "name: cards\nprofile: cards\nvars:\n  fee: 0\n",
    "models/sources.yml": """
        sources:
          - name: bank
            tables:
              - name: transactions
                path: data/transactions.parquet
              - name: cards
                path: data/cards.parquet
        models:
          - name: tx
        """,
    "models/tx.sql": """
        SELECT t.*, c.country
        FROM {{ source('bank', 'transactions') }} AS t
        JOIN {{ source('bank', 'cards') }} AS c USING (card_id)
        """,
    "macros/spend.sql": """
        {% macro spend(col) -%}
        sum({{ col }})
        {%- endmacro %}
        """,
    "features/entities.yml": "entities:\n  - name: card\n    join_keys: [card_id]\n",
    "features/card_activity.yml": """
        feature_view:
          name: card_activity
          entities: [card]
          timestamp: ts
          online: true
          features:             # windows at each row, deliberately (the issue's probes)
            - name: spend_1h
              type: float64
              row_window: true
            - name: count_1h
              type: int64
              row_window: true
            - name: country
              type: string
        """,
    "features/card_activity.sql": """
        SELECT card_id, ts,
            CAST({{ spend('amount') }} OVER w AS DOUBLE) + {{ var('fee') }} AS spend_1h,
            count(*) OVER w AS count_1h,
            country
        FROM {{ ref('tx') }}
        WINDOW w AS (PARTITION BY card_id ORDER BY ts
                     RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW)
        """,
    "features/training_sets.yml": """
        training_sets:
          - name: fraud_training
            spine:
              model: tx
              timestamp: ts
            features:
              - card_activity.spend_1h
              - card_activity.count_1h
        """,
}

DATA = """
import sys, duckdb
out = sys.argv[1]
con = duckdb.connect()
con.execute(f'''COPY (SELECT i % 7 AS card_id,
    TIMESTAMP '2025-01-01' + INTERVAL (i * 11) MINUTE AS ts,
    round(1.37 * (i % 13) + 0.45, 2) AS amount, i % 17 = 0 AS is_fraud
    FROM range(300) r(i)) TO '{out}/transactions.parquet' (FORMAT PARQUET)''')
con.execute(f'''COPY (SELECT i AS card_id, ['fr', 'de'][i % 2 + 1] AS country
    FROM range(7) r(i)) TO '{out}/cards.parquet' (FORMAT PARQUET)''')
"""

# (file, old, new) for each probe of the issue
PROBES = {
    "view_expression": ("features/card_activity.sql", "spend('amount')",
                        "spend('round(amount)')"),
    "upstream_model": ("models/tx.sql", "SELECT t.*, c.country",
                       "SELECT t.* REPLACE (t.amount * 1.1 AS amount), c.country"),
    "macro": ("macros/spend.sql", "sum({{ col }})", "sum({{ col }} * 2)"),
    "var": ("fsql_project.yml", "fee: 0", "fee: 1"),
}


def cards_project(make_project: MakeProject, profile: str | None = None) -> fsql.Project:
    files = dict(FILES)
    if profile:
        files["profiles.yml"] = profile
    project = make_project(files, name="cards")
    (project.root / "data").mkdir()
    subprocess.run([sys.executable, "-c", DATA, str(project.root / "data")], check=True)
    return fsql.Project(project.root)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def fsql_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("fsql")), *args], cwd=root, text=True,
                          capture_output=True, timeout=120)


def breaking(changes: list[Change]) -> set[str]:
    return {c.object for c in changes if c.breaking}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_computation_change_is_breaking(make_project: MakeProject, probe: str) -> None:
    project = cards_project(make_project)
    project.build(test=False)
    assert fsql.Project(project.root).diff()["build"] == []
    path, old, new = PROBES[probe]
    edit(project.root / path, old, new)
    changes = fsql.Project(project.root).diff()["build"]
    assert "view:card_activity.spend_1h" in breaking(changes), changes
    assert "view:card_activity.count_1h" not in breaking(changes)  # its lineage is untouched
    spend = next(c for c in changes if c.object == "view:card_activity.spend_1h")
    assert spend.affects == ("online:card_activity", "training_set:fraud_training")
    run = fsql_cli(project.root, "diff", "--fail-on-breaking")
    assert run.returncode == 5, run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_unresolvable_lineage_is_breaking(make_project: MakeProject) -> None:
    """A lineage sqlglot cannot follow (here: a model now joins a table fsql does not know, so
    ``t.*`` cannot be expanded) counts as a possible computation change, never as unchanged."""
    project = cards_project(make_project)
    project.build(test=False)
    old = json.loads(project.paths.build_manifest.read_text())
    new = copy.deepcopy(old)
    new["nodes"]["model:tx"]["compiled_sql"] = (
        'SELECT t.*, c.country FROM "elsewhere" AS t JOIN "bank__cards" AS c USING (card_id)')
    assert feature_lineage(old, "card_activity", "spend_1h") is not None
    assert feature_lineage(new, "card_activity", "spend_1h") is None
    change = {c.object: c for c in diff(old, new)}["view:card_activity.spend_1h"]
    assert change.breaking and "could not be resolved" in change.detail
    assert change.affects == ("online:card_activity", "training_set:fraud_training")


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_sync_refuses_computation_change_without_full_refresh(
        make_project: MakeProject, redis_server: RedisServer, probe: str) -> None:
    project = cards_project(make_project, online_profile("cards", redis_server.url))
    project.sync()
    path, old, new = PROBES[probe]
    edit(project.root / path, old, new)
    run = fsql_cli(project.root, "sync")
    assert run.returncode == 5, run.stdout + run.stderr
    assert "card_activity.spend_1h" in run.stderr + run.stdout
    assert fsql_cli(project.root, "sync", "--full-refresh").returncode == 0
    assert fsql.Project(project.root).diff()["online"] == []
