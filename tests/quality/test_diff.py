"""fsql diff and the sync's refusal of breaking changes."""

from __future__ import annotations

from pathlib import Path

import pytest

import fsql
from fsql.errors import CheckFailed
from tests.conftest import online_profile
from tests.redis_server import RedisServer


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def build_changes(project: fsql.Project) -> dict[str, fsql.diff.Change]:
    return {f"{c.object}:{c.what}": c for c in project.diff()["build"]}


@pytest.fixture
def built(example_dir: Path) -> fsql.Project:
    project = fsql.Project(example_dir)
    project.build(test=False)
    return project


def test_no_changes_after_build(built: fsql.Project) -> None:
    assert built.diff()["build"] == []


def test_upstream_change_flags_exactly_the_features_it_feeds(built: fsql.Project) -> None:
    edit(built.root / "models" / "orders_enriched.sql", "    o.amount,",
         "    o.amount * 1.19 AS amount,")
    changes = build_changes(built)
    flagged = {k for k, c in changes.items() if c.breaking}
    assert flagged == {"view:customer_orders.spend_30d:sql",
                       "view:customer_orders.avg_amount_30d:sql"}
    assert changes["view:customer_orders.spend_30d:sql"].affects == (
        "online:customer_orders", "training_set:churn_training")
    assert "model:orders_enriched:sql" in changes


def test_removed_and_retyped_features_are_breaking(built: fsql.Project) -> None:
    yml = built.root / "features" / "customer_profile.yml"
    edit(yml, "    - name: country\n      type: string\n", "")
    edit(built.root / "features" / "customer_product.yml", "type: int64\n      description: "
         "Orders of", "type: int32\n      description: Orders of")
    edit(built.root / "features" / "customer_product.sql", "AS BIGINT) AS times_bought",
         "AS INTEGER) AS times_bought")
    changes = build_changes(built)
    removed = changes["view:customer_profile.country:feature"]
    assert removed.kind == "removed" and removed.breaking  # served online
    retyped = changes["view:customer_product.times_bought:type"]
    assert retyped.breaking and retyped.detail == "int64 -> int32"
    assert "training_set:purchase_training" in retyped.affects


def test_added_feature_and_ttl_change_are_not_breaking(built: fsql.Project) -> None:
    edit(built.root / "features" / "customer_product.yml", "ttl: 180d", "ttl: 60d")
    edit(built.root / "features" / "customer_product.yml", "  features:\n",
         "  features:\n    - name: max_quantity\n      type: int64\n")
    edit(built.root / "features" / "customer_product.sql", "FROM {{",
         "    , CAST(max(quantity) OVER (PARTITION BY customer_id, product_id) AS BIGINT)"
         " AS max_quantity\nFROM {{")
    changes = build_changes(built)
    assert changes["view:customer_product:ttl"].detail == "15552000s -> 5184000s"
    assert changes["view:customer_product.max_quantity:feature"].kind == "added"
    # a new aggregation is not breaking either
    edit(built.root / "features" / "product_ratings.yml", "  aggregations:\n",
         "  aggregations:\n    - {name: reviews_7d, function: count, window: 7d}\n")
    changes = build_changes(built)
    assert changes["view:product_ratings.reviews_7d:feature"].kind == "added"
    assert not any(c.breaking for c in changes.values())


def test_key_change_is_breaking(built: fsql.Project) -> None:
    edit(built.root / "features" / "customer_product.yml", "entities: [customer, product]",
         "entities: [customer]")
    change = build_changes(built)["view:customer_product:keys"]
    assert change.breaking and "purchase_training" in " ".join(change.affects)


def test_sync_refuses_breaking_change_unless_full_refresh(online_template: Path,
                                                          tmp_path: Path,
                                                          redis_server: RedisServer) -> None:
    import shutil

    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    (root / "profiles.yml").write_text(online_profile("shop", redis_server.url))
    project = fsql.Project(root)
    project.sync()
    edit(root / "models" / "orders_enriched.sql", "    o.amount,", "    -o.amount AS amount,")
    with pytest.raises(CheckFailed, match="customer_orders.spend_30d"):
        project.sync()
    assert project.diff()["online"]
    result = project.sync(full_refresh=True)
    assert {v.mode for v in result.views} == {"full"}
    assert project.diff()["online"] == []
    # a non-breaking edit (a comment) syncs without --full-refresh
    edit(root / "features" / "customer_profile.sql", "SELECT", "SELECT -- profile\n")
    assert project.sync().views
