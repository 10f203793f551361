"""The Python API's reads: the published training set of the current target, and the view
definitions."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import fsql
from fsql.definitions import FeatureView, OnDemandView


@pytest.fixture
def project(example_dir: Path) -> fsql.Project:
    return fsql.Project(example_dir)


def test_training_set_reads_what_build_published(project: fsql.Project) -> None:
    with pytest.raises(fsql.RequestError) as missing:
        project.training_set("churn_training")
    assert str(missing.value) == (
        f"training set 'churn_training' has not been built for target 'dev' (no "
        f"{project.paths.training_sets / 'churn_training.parquet'}); run `fsql -t dev build "
        f"-s training_set:churn_training`, or pass rebuild=True to compute it")

    published = project.build(select=["churn_training"]).training_sets[0].output
    assert published == project.paths.training_sets / "churn_training.parquet"
    assert project.training_set_arrow("churn_training").equals(pq.read_table(published))

    # what the API returns is the file, not a recomputation: shrink the file and see it
    pq.write_table(pq.read_table(published).slice(0, 3), published)
    assert len(project.training_set("churn_training")) == 3
    rebuilt = project.training_set("churn_training", rebuild=True)
    assert len(rebuilt) > 3
    assert pq.read_table(published).num_rows == 3  # rebuild=True writes nothing


def test_training_set_names_a_near_miss(project: fsql.Project) -> None:
    with pytest.raises(fsql.RequestError, match="no training set named 'churn_trainin'; did "
                                                "you mean 'churn_training'?"):
        project.training_set("churn_trainin", rebuild=True)
    with pytest.raises(fsql.RequestError, match="no training set named 'zzz'; known: "
                                                "churn_training, purchase_training"):
        project.training_set_arrow("zzz")


def test_views_and_view(project: fsql.Project) -> None:
    views = project.views()
    assert set(views) == {"customer_orders", "customer_product", "customer_profile",
                          "product_ratings", "purchase_context"}
    assert isinstance(views["purchase_context"], OnDemandView)
    orders = project.view("customer_orders")
    assert isinstance(orders, FeatureView)
    assert orders.name == "customer_orders"
    assert "orders_30d" in {f.name for f in orders.features}
    with pytest.raises(fsql.RequestError, match="no feature view or on-demand view named "
                                                "'customer_order'; did you mean "
                                                "'customer_orders'?"):
        project.view("customer_order")
