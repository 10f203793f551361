"""Benchmark: Spark's point-in-time strategy (``UnionWindowJoin``) vs. hand-written Spark SQL.

Same data as benchmarks/pit_build.py (its generator, reused; ``--scale 0.1`` = the S workload:
a spine of 100,000 labels and two views of 1,000,000 rows each, ``activity`` with a 30-day ttl
and ``profile`` with created-timestamp corrections), same semantics, one local Spark session
(``local[N]``, session time zone UTC), each run writing its result to Parquet:

* **fsql** -- the query ``UnionWindowJoin`` generates from the training set's ``PitPlan`` (the
  plan comes from fsql's compiler; the three relations are Spark temporary views of the
  Parquet files with the columns the compiled views select);
* **hand** -- the fastest hand-written Spark SQL we found for the same rules (``hand_query``).

After one warm-up run each, the contenders alternate for ``--repeat`` runs each in the same
session; the two outputs are compared (same rows, as multisets, both ways) after the first
pair. Then DuckDB's ``fsql build`` of the same training set (benchmarks/pit_build.py's ``fsql``
contender, fresh processes) is timed for the Spark/DuckDB ratio. Medians, ratios and the load
average go to ``benchmarks/results/spark_build.json`` and a markdown table on stdout.

    .venv/bin/python benchmarks/spark_build.py                         # S, 5 runs each
    .venv/bin/python benchmarks/spark_build.py --scale 0.01 --repeat 2 # smoke run

Needs pyspark (``pip install '.[spark]'``) and Java 17+.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import common
import pit_build

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "spark"
RESULTS = HERE / "results" / "spark_build.json"


def session(threads: int, memory: str) -> Any:
    return common.spark_session("fsql-spark-bench", threads, memory,
                                {"spark.sql.shuffle.partitions": str(4 * threads)})


def fsql_query(spark: Any, scale: float, threads: int) -> str:
    """Compile the benchmark project with fsql (DuckDB) for its plan, register its relations
    in Spark, and return the Spark SQL ``UnionWindowJoin`` generates."""
    import fsql
    from fsql.engines.spark.pit import UnionWindowJoin

    pit_build.write_project(scale, threads, "4GB")
    files = pit_build.paths(scale)
    with fsql.Project(pit_build.PROJECT)._compiled() as (_, compiled):
        plan = compiled.training_sets[pit_build.TRAINING_SET].plan
        nodes = {n.relation: n for n in compiled.nodes.values()}
    tables = {plan.spine.name: "spine", **{j.relation: j.view.name for j in plan.joins}}
    for relation, name in tables.items():
        columns = [c.name for c in nodes[relation].columns]
        spark.read.parquet(str(files[name])).select(*columns).createOrReplaceTempView(relation)
    return str(UnionWindowJoin().query(plan).sql(dialect="spark"))


def hand_query(scale: float) -> str:
    """The fastest hand-written Spark SQL we found for the rules: both views share the entity
    key, so ONE union of spine and both views' rows and ONE window pass (one shuffle, one
    sort) pick each view's latest row with ``last(struct, true)``; the ttl on the chosen
    row's time. Tried: one union + window per view, joined back on a row id: slower (three
    shuffles). The spine's null keys and times fall out as in fsql's strategy."""
    files = {name: f"parquet.`{path}`" for name, path in pit_build.paths(scale).items()}
    ttl_us = pit_build.TTL_DAYS * common.DAY_S * 1_000_000
    return f"""
        SELECT entity_id, label_ts, label,
               CASE WHEN a.t >= t - {ttl_us} THEN a.clicks END AS clicks,
               CASE WHEN a.t >= t - {ttl_us} THEN a.spend END AS spend,
               CASE WHEN a.t >= t - {ttl_us} THEN a.channel END AS channel,
               CASE WHEN a.t >= t - {ttl_us} THEN a.last_item END AS last_item,
               p.tier, p.credit_limit, p.score, p.country
        FROM (
            SELECT entity_id, label_ts, label, t, side,
                   last(a, true) OVER w AS a, last(p, true) OVER w AS p
            FROM (
                SELECT entity_id, label_ts, label,
                       unix_micros(CAST(label_ts AS TIMESTAMP)) AS t, 1 AS side,
                       CAST(NULL AS BIGINT) AS c,
                       NULL AS a, NULL AS p
                FROM {files["spine"]}
                UNION ALL
                SELECT entity_id, NULL, NULL, unix_micros(CAST(event_ts AS TIMESTAMP)), 0, NULL,
                       named_struct('t', unix_micros(CAST(event_ts AS TIMESTAMP)),
                                    'clicks', clicks, 'spend', spend, 'channel', channel,
                                    'last_item', last_item), NULL
                FROM {files["activity"]}
                WHERE event_ts IS NOT NULL AND entity_id IS NOT NULL
                UNION ALL
                SELECT entity_id, NULL, NULL, unix_micros(CAST(snapshot_ts AS TIMESTAMP)), 0,
                       unix_micros(CAST(ingested_at AS TIMESTAMP)), NULL,
                       named_struct('tier', tier, 'credit_limit', credit_limit,
                                    'score', score, 'country', country)
                FROM {files["profile"]}
                WHERE snapshot_ts IS NOT NULL AND entity_id IS NOT NULL
            )
            WINDOW w AS (PARTITION BY entity_id ORDER BY t, side, c NULLS FIRST
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )
        WHERE side = 1
        ORDER BY label_ts, entity_id, label
    """


def timed(spark: Any, sql: str, output: Path) -> dict[str, Any]:
    cpu, started = common.cpu_seconds(), time.perf_counter()
    spark.sql(sql).write.mode("overwrite").parquet(str(output))
    return {"seconds": time.perf_counter() - started,
            "driver_cpu_seconds": common.cpu_seconds() - cpu}


def same_rows(spark: Any, a: Path, b: Path) -> int:
    ours, theirs = spark.read.parquet(str(a)), spark.read.parquet(str(b))
    if ours.columns != theirs.columns:
        raise SystemExit(f"OUTPUTS DIFFER: columns {ours.columns} vs {theirs.columns}")
    rows = ours.count()
    if rows != theirs.count() or ours.exceptAll(theirs).count() or theirs.exceptAll(ours).count():
        raise SystemExit("OUTPUTS DIFFER: not the same rows")
    return int(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    common.spark_arguments(parser, repeat=5, memory="4g")
    parser.add_argument("--duckdb-repeat", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    meta = pit_build.ensure_data(args.scale)
    spark = session(args.threads, args.memory)
    sql = {"fsql": fsql_query(spark, args.scale, args.threads), "hand": hand_query(args.scale)}
    outputs = {name: OUT / name for name in sql}
    shutil.rmtree(OUT, ignore_errors=True)
    load = [os.getloadavg()]
    runs: dict[str, list[dict[str, Any]]] = {"fsql": [], "hand": []}
    for name in sql:  # warm-up
        common.log(f"warm-up {name}: {timed(spark, sql[name], outputs[name])['seconds']:.2f} s")
    rows = same_rows(spark, outputs["fsql"], outputs["hand"])
    for i in range(args.repeat):
        for name in (("fsql", "hand") if i % 2 == 0 else ("hand", "fsql")):
            runs[name].append(timed(spark, sql[name], outputs[name]))
            common.log(f"run {i + 1} {name}: {runs[name][-1]['seconds']:.2f} s")
    load.append(os.getloadavg())
    spark.stop()
    pit_build.write_project(args.scale, args.threads, "4GB")
    duck_args = argparse.Namespace(scale=args.scale, threads=args.threads, memory_limit="4GB")
    duck = [pit_build.spawn("fsql", duck_args) for _ in range(args.duckdb_repeat)]
    load.append(os.getloadavg())
    medians = {name: common.stats([r["seconds"] for r in values]) for name, values in runs.items()}
    duck_median = common.stats([r["seconds"] for r in duck])
    result = {
        "data": meta, "rows": rows, "threads": args.threads, "repeat": args.repeat,
        "spark": {name: medians[name] for name in runs},
        "duckdb_fsql_build": duck_median,
        "ratio_fsql_to_hand": round(medians["fsql"]["median"] / medians["hand"]["median"], 3),
        "ratio_spark_to_duckdb": round(medians["fsql"]["median"] / duck_median["median"], 3),
        "loadavg": [[round(x, 2) for x in triple] for triple in load],
        "machine": common.machine(pyspark=__import__("pyspark").__version__),
    }
    table = "\n".join([
        f"Spark local[{args.threads}], scale {args.scale:g} ({rows:,} spine rows, "
        f"{meta['activity_rows']:,} + {meta['profile_rows']:,} view rows), "
        f"load average {result['loadavg']}",
        "", "| contender | seconds, median (min-max) |", "|---|---|",
        f"| fsql UnionWindowJoin (Spark) | {common.cell(medians['fsql'])} |",
        f"| hand-written Spark SQL | {common.cell(medians['hand'])} |",
        f"| fsql build (DuckDB, whole command) | {common.cell(duck_median)} |",
        "", f"fsql/hand: {result['ratio_fsql_to_hand']}x; "
        f"Spark/DuckDB: {result['ratio_spark_to_duckdb']}x"])
    common.publish(result, RESULTS, table)


if __name__ == "__main__":
    main()
