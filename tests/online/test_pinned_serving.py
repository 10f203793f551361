"""Serving is pinned to training (issue 8): a training set served after one of its online views
changed its computation says so (DEFINITION_CHANGED), and ``fsql serve --strict`` refuses it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import fsql
from fsql.serve import DEFINITION_CHANGED, PIN_RECHECK
from tests.conftest import MakeProject, online_profile
from tests.online.served import FSQL, assert_documented, serving, wait_until
from tests.quality.test_diff_lineage import cards_project, edit
from tests.redis_server import RedisServer

BODY = {"feature_service": "fraud_training", "entities": {"card_id": [1, 2]}}


def fsql_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(root), *args], text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def changed(make_project: MakeProject, redis_server: RedisServer) -> fsql.Project:
    """The cards project built and synced, then card_activity's spend_1h computed another way
    and re-synced (--full-refresh): fraud_training's build no longer matches what is online."""
    project = cards_project(make_project, online_profile("cards", redis_server.url))
    project.build(test=False)
    project.sync()
    assert project.online_features("fraud_training", {"card_id": [1]}).definition_changed == []
    edit(project.root / "features/card_activity.sql", "spend('amount')",
         "spend('round(amount)')")
    run = fsql_cli(project.root, "sync", "--full-refresh")
    assert run.returncode == 0, run.stderr
    return fsql.Project(project.root)


def test_get_reports_definition_changed(changed: fsql.Project) -> None:
    result = changed.online_features("fraud_training", {"card_id": [1, 2]})
    assert result.definition_changed == ["card_activity"]
    assert result.to_json()["metadata"]["status"] == DEFINITION_CHANGED
    # plain feature lists are not pinned to any training set
    plain = changed.online_features(["card_activity.spend_1h"], {"card_id": [1]})
    assert plain.definition_changed == [] and "status" not in plain.to_json()["metadata"]
    run = fsql_cli(changed.root, "get", "fraud_training", "-e", "card_id=1")
    assert run.returncode == 0, run.stderr
    assert DEFINITION_CHANGED in run.stderr and "card_activity" in run.stderr
    run = fsql_cli(changed.root, "get", "fraud_training", "-e", "card_id=1", "--json")
    assert json.loads(run.stdout)["metadata"]["definition_changed"] == ["card_activity"]
    # a rebuild pins the training set to the new definitions
    changed.build(test=False)
    assert changed.online_features("fraud_training", {"card_id": [1]}).definition_changed == []


def test_serve_strict_refuses_and_plain_serve_reports(changed: fsql.Project) -> None:
    with serving(changed.root, "--strict") as served:
        refused = served.post(BODY)
        assert refused.status_code == 409, refused.text
        assert refused.json()["definition_changed"] == ["card_activity"]
        assert_documented(served.get("/openapi.json").json(), "/get-online-features", "post",
                          refused)
        assert served.post({"features": ["card_activity.spend_1h"],
                            "entities": {"card_id": [1]}}).status_code == 200
    with serving(changed.root) as served:
        answer = served.post(BODY)
        assert answer.status_code == 200
        assert answer.json()["metadata"]["definition_changed"] == ["card_activity"]
        assert_documented(served.get("/openapi.json").json(), "/get-online-features", "post",
                          answer)
        # the running server re-reads the build record when it changes: a rebuild clears it
        changed.build(test=False)
        wait_until(lambda: "definition_changed" not in served.post(BODY).json()["metadata"],
                   10, "the rebuilt training set to be pinned to the new definitions")


def test_never_built_training_set_is_not_pinned(make_project: MakeProject,
                                                redis_server: RedisServer) -> None:
    project = cards_project(make_project, online_profile("cards", redis_server.url))
    project.sync()
    edit(project.root / "features/card_activity.sql", "spend('amount')",
         "spend('round(amount)')")
    project = fsql.Project(project.root)
    project.sync(full_refresh=True)
    assert project.online_features("fraud_training", {"card_id": [1]}).definition_changed == []


def test_verify_reports_training_sets_built_before_the_online_definitions(
        changed: fsql.Project) -> None:
    run = fsql_cli(changed.root, "verify", "--all")
    assert run.returncode == 5, run.stdout + run.stderr
    assert "fraud_training (card_activity)" in run.stderr
    checks = changed.verify(sample=None)
    assert [(c.view, c.stale_training_sets, c.mismatched) for c in checks] == [
        ("card_activity", ["fraud_training"], 0)]
    changed.build(test=False)
    run = fsql_cli(changed.root, "verify", "--all", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)[0]["stale_training_sets"] == []


def test_damaged_build_record_counts_every_view_as_changed(changed: fsql.Project) -> None:
    changed.build(test=False)
    record = changed.paths.training_sets / "fraud_training.build.json"
    service = changed.online_service()
    try:
        assert service.get("fraud_training", {"card_id": [1]}).definition_changed == []
        record.write_text("{not json")
        time.sleep(PIN_RECHECK + 0.05)  # a running service looks at the record that often
        assert service.get("fraud_training", {"card_id": [1]}).definition_changed == [
            "card_activity"]
    finally:
        service.close()
