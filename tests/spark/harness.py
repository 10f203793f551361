"""Runs one point-in-time plan on both engines: DuckDB's ``AsofJoin`` and Spark's
``UnionWindowJoin``.

Until a Spark engine compiles projects itself, the plan comes from the DuckDB compiler (as in
``historical_features``, with every spine column kept and a row id to order by): the relations
it reads (the spine and each view) are fetched from DuckDB as Arrow tables and registered in
Spark as temporary views of the same names, then both strategies run on the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from sqlglot import exp

import fsql
from fsql.compile import plan_training_set
from fsql.engines.duckdb.pit import AsofJoin
from fsql.engines.spark.pit import UnionWindowJoin
from fsql.pit import ROW_ID, PitPlan, leakage_checks
from fsql.project import spine_relation


@dataclass(frozen=True)
class Outputs:
    """Both engines' rows for one plan, in spine order (by ``ROW_ID``)."""

    plan: PitPlan
    duckdb: list[dict[str, Any]]
    spark: list[dict[str, Any]]
    spark_sql: str
    #: leakage guard counts over Spark's audited output (``plan.audit``)
    violations: dict[str, int]


def load_plan(project: fsql.Project, spark: Any, spine: pa.Table, features: Sequence[str],
              timestamp: str, cutoff: str = "inclusive", duckdb: bool = True
              ) -> tuple[PitPlan, pa.Table | None]:
    """The plan (every spine column kept, plus ``ROW_ID`` to order by), with its relations
    registered in Spark; and DuckDB's result when ``duckdb``."""
    refs, _, naming, _ = project._resolve_features(list(features), timestamp)
    spine = spine.append_column(ROW_ID, pa.array(range(spine.num_rows), pa.int64()))
    with project._compiled() as (engine, compiled), spine_relation(engine, spine) as (
            relation, columns):
        plan = plan_training_set(compiled.spec, refs, relation, columns, timestamp, naming,
                                 compiled.nodes, spine_output=None, order_by=(ROW_ID,),
                                 feature_cutoff=cutoff)
        for name in {relation.name, *(j.relation for j in plan.joins)}:
            table = engine.fetch_arrow(exp.select("*").from_(exp.to_table(name, quoted=True)))
            spark.createDataFrame(table).createOrReplaceTempView(name)
        duck = engine.fetch_arrow(AsofJoin().query(plan)) if duckdb else None
    return plan, duck


def run_both(project: fsql.Project, spark: Any, spine: pa.Table, features: Sequence[str],
             timestamp: str, cutoff: str = "inclusive") -> Outputs:
    plan, duck = load_plan(project, spark, spine, features, timestamp, cutoff)
    assert duck is not None
    sql = UnionWindowJoin().query(plan).sql(dialect="spark")
    result = spark.sql(sql).toArrow()
    assert result.column_names == duck.column_names, (result.column_names, duck.column_names)
    audited = UnionWindowJoin().query(replace(plan, audit=True)).sql(dialect="spark")
    spark.sql(audited).createOrReplaceTempView("__fsql_audited")
    guard = exp.select(exp.alias_(exp.func("count", exp.Star()), "rows"), *[
        exp.alias_(exp.func("count_if", bad), f"violations__{view}", quoted=True)
        for view, bad in leakage_checks(plan)]).from_(exp.to_table("__fsql_audited"))
    counts = spark.sql(guard.sql(dialect="spark")).collect()[0].asDict()
    assert counts["rows"] == spine.num_rows
    return Outputs(plan, duck.to_pylist(), result.to_pylist(), sql,
                   {k: v for k, v in counts.items() if k.startswith("violations__")})
