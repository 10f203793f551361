"""Benchmark: time-window aggregations (README point-in-time rule 7), offline and online.

One feature view of six aggregations over card transactions, ``card_windows``::

    spend_1h       sum(amount)         1h   hop 5m
    txns_1h        count(*)            1h   hop 5m
    txns_24h       count(*)            24h  hop 1h
    avg_24h        avg(amount)         24h  hop 1h
    max_7d         max(amount)         7d   hop 1h
    last_merchant  last(merchant_id)   7d   hop 1h

(the default hops), and a plain view ``card_latest`` of six columns of the latest transaction,
used only as the baseline of the online reads.

Parts (``--part``, default ``all``):

* **offline** -- ``fsql.Project(project).build(select=["training"])`` of a training set (the
  spine x ``card_windows``; the whole call is timed, as in ``pit_build.py``) vs. **hand**: the
  fastest hand-written DuckDB SQL we found for exactly the same semantics (``hand_query``; one
  ``COPY (...) TO '...' (FORMAT parquet)`` straight over ``read_parquet(...)``). Both with the
  same DuckDB settings, each run a fresh subprocess printing its wall time, CPU time and peak
  RSS. After one warm-up each, the contenders alternate ``--repeat`` times (A B A B ...);
  medians are reported with the ratio fsql / hand (target <= 1.5x). The two outputs are
  compared after the warm-up and after every pair: the same columns and types and the same
  rows (integers and the ``last`` value exact, sums and averages within 1e-9 relative).
* **online** -- against a redis-server this script starts (loopback, free port, no
  persistence): ``Project.sync(select=["card_windows"], full_refresh=True)`` in fresh
  subprocesses (``--repeat`` times after a warm-up; ``card_latest`` is synced the same way
  for comparison): wall time, entities/s, CPU, peak RSS; then the stored bytes per entity
  (``MEMORY USAGE`` of a sample of keys, and ``INFO`` used_memory per entity) of both views.
  A check: the aggregations read online at the sync's instant for 100 random cards equal
  ``historical_features`` at that instant. Then ``OnlineService.get`` latency of the six
  aggregations (computed at the reader's clock from the stored tiles) vs. the same call on
  ``card_latest``'s six features, for the same entities: 1 entity per call (``--calls``,
  default 2000) and 100 entities per call (``--calls-100``, default 500), after a warm-up, in
  fresh subprocesses alternating ``--read-repeat`` times each; p50/p99 and the ratio of p99s
  (target <= 2x).

The data (numpy, seeded; written once per scale and regenerated when older than
``MAX_DATA_AGE_H`` hours so that it ends about an hour before now and the online windows hold
recent rows): 100,000 cards and 10,000,000 transactions over 30 days ending an hour before the
data was generated, heavy-tailed (Pareto) transactions per card with ~5% of cards without any
(``common.Synthetic.keys``), at whole seconds, plus ~1% same-second duplicates (another
transaction of the card in the same second, other values); ~0.5% null amounts and ~0.5% null
merchants. A spine of 1,000,000 (card, ts, label) rows at random seconds of the same 30 days,
~5% of its cards without transactions.

Run (from the repository root, or ``make bench``). The full size needs ~3 GB of RAM and takes
an estimated 15-20 minutes on 2 cores (extrapolated from scale 0.1; never run here), plus ~30 s
to generate the data the first time::

    .venv/bin/python benchmarks/windows.py                                # everything, scale 1
    .venv/bin/python benchmarks/windows.py --scale 0.01 --repeat 1        # smoke run
    .venv/bin/python benchmarks/windows.py --part offline --repeat 5
    .venv/bin/python benchmarks/windows.py --part online --engine spark   # sync from Spark

At scale 1 the results go to ``benchmarks/results/windows.json``; at any other scale to
``benchmarks/out/windows/windows.<scale>.json`` (never committed); with ``--engine spark`` (the
online part synced from a local Spark session started by each sync: its start-up is in the
wall time) to ``windows.spark.json`` / ``windows.spark.<scale>.json``. A markdown summary goes to
stdout, progress to stderr. Timings are only comparable on an otherwise idle machine: the JSON
records the load average.

Files: ``benchmarks/out/windows/`` (data, the fsql project, the hand contender's output, the
redis-server's directory); all rewritten or reused, never committed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import common

# (importable after common, which puts the repository root on sys.path)
from tests.redis_server import RedisServer, redis_binary

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "windows"
RESULTS = HERE / "results" / "windows.json"
PROJECT = OUT / "project"
HAND_DIR = OUT / "hand"
TRAINING_SET = "training"
WINDOWS_VIEW, LATEST_VIEW = "card_windows", "card_latest"
NAMESPACE = "wbench"
DATA_VERSION = 1  # bump when the generator changes, so old data is not reused
MAX_DATA_AGE_H = 12  # regenerate older data: it must end near now for the online windows

# Sizes at --scale 1.
ENTITIES = 100_000
EVENTS = 10_000_000
SPINE_ROWS = 1_000_000
SEED = 20261129

SPAN_S = 30 * common.DAY_S  # 30 days of transactions ...
LEAD_S = 3_600  # ... ending an hour before the data was generated
MERCHANTS = 20_000
H, D = 3600, common.DAY_S

# The aggregations: name -> (function, column, window s, hop s, type). Hops are fsql's
# defaults (5m for 1h, 1h for 24h and 7d); they are spelled out in the YAML all the same.
AGGREGATIONS: dict[str, tuple[str, str | None, int, int, str]] = {
    "spend_1h": ("sum", "amount", H, 300, "float64"),
    "txns_1h": ("count", None, H, 300, "int64"),
    "txns_24h": ("count", None, D, H, "int64"),
    "avg_24h": ("avg", "amount", D, H, "float64"),
    "max_7d": ("max", "amount", 7 * D, H, "float64"),
    "last_merchant": ("last", "merchant_id", 7 * D, H, "int64"),
}
# card_latest: six columns of the latest transaction
LATEST_FEATURES = [("amount", "float64"), ("merchant_id", "int64"), ("mcc", "int64"),
                   ("channel", "string"), ("country", "string"), ("approved", "bool")]
FLOAT_FEATURES = {"spend_1h", "avg_24h"}  # compared within 1e-9 relative; the rest exactly


# -- data ------------------------------------------------------------------------------------

def data_dir(scale: float) -> Path:
    return OUT / "data" / f"scale-{scale:g}"


def paths(scale: float) -> dict[str, Path]:
    return {name: data_dir(scale) / f"{name}.parquet" for name in ("spine", "txns")}


def ensure_data(scale: float) -> dict[str, Any]:
    """Generate the Parquet files for ``scale`` unless recent ones are already there."""
    return common.cached_data(data_dir(scale), DATA_VERSION,
                              lambda directory: generate(directory, scale),
                              max_age_h=MAX_DATA_AGE_H)


def generate(directory: Path, scale: float) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    entities = max(100, round(ENTITIES * scale))
    events = max(1000, round(EVENTS * scale))
    spine_rows = max(100, round(SPINE_ROWS * scale))
    synth = common.Synthetic(SEED, entities)
    rng = synth.rng
    generated_at = time.time()
    end_us = (int(generated_at) - LEAD_S) * 1_000_000
    start_us = end_us - SPAN_S * 1_000_000

    # transactions: unique (card, second) keys, then ~1% same-second duplicates
    duplicates = events // 100
    card, second = synth.keys(events - duplicates, SPAN_S)
    again = np.sort(rng.choice(len(card), duplicates, replace=False))
    card = np.concatenate([card, card[again]])
    second = np.concatenate([second, second[again]])
    order = np.argsort(second, kind="stable")  # a log appended in event order
    card, second = card[order], second[order]
    n = len(card)
    txns = pa.table({
        "card": pa.array(card, pa.int64()),
        "ts": synth.timestamps(start_us + second * 1_000_000),
        "amount": pa.array(np.round(rng.lognormal(3.0, 1.2, n), 2), pa.float64(),
                           mask=rng.random(n) < 0.005),
        "merchant_id": synth.ints(np.minimum(rng.zipf(1.2, n), MERCHANTS), 0.005),
        "mcc": pa.array(rng.integers(5000, 6000, n), pa.int64()),
        "channel": synth.strings(common.CHANNELS, rng.choice(len(common.CHANNELS), n,
                                                             p=common.CHANNEL_P)),
        "country": synth.strings(common.COUNTRIES, rng.zipf(1.5, n) % len(common.COUNTRIES)),
        "approved": pa.array(rng.random(n) < 0.97, pa.bool_()),
    })
    pq.write_table(txns, directory / "txns.parquet")

    # spine: random seconds of the same span; ~5% of its cards have no transactions at all
    spine = pa.table({
        "card": pa.array(rng.integers(0, round(entities * 1.05), spine_rows), pa.int64()),
        "label_ts": synth.timestamps(start_us + rng.integers(0, SPAN_S + 1, spine_rows)
                                     * 1_000_000),
        "label": pa.array(rng.random(spine_rows) < 0.02, pa.bool_()),
    })
    pq.write_table(spine, directory / "spine.parquet")
    return {"version": DATA_VERSION, "scale": scale, "entities": entities, "events": n,
            "same_second_duplicates": int(duplicates), "spine_rows": spine_rows,
            "span_days": SPAN_S // common.DAY_S, "start_us": start_us, "end_us": end_us,
            "generated_at": generated_at}


# -- the fsql project --------------------------------------------------------------------------

def _duration(seconds: int) -> str:
    for unit, size in (("d", D), ("h", H), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def write_project(scale: float, threads: int, memory_limit: str,
                  redis_port: int | None = None, engine: str = "duckdb") -> Path:
    """(Re)write the benchmark's fsql project; sources point at the data for ``scale``, the
    online store (if any) at our redis-server, the offline engine is ``engine`` (Spark: local
    mode, ``threads`` cores, ``memory_limit`` of driver memory)."""
    files = paths(scale)
    offline = {"duckdb": "{type: duckdb, path: target/bench.duckdb, threads: "
                         f"{threads}, memory_limit: {memory_limit}}}",
               "spark": f"{{type: spark, master: 'local[{threads}]', conf: "
                        f"{{spark.driver.memory: {memory_limit.lower().removesuffix('b')}}}}}"}

    aggregations = "".join(
        f"    - {{name: {name}, function: {function}, "
        + (f"column: {column}, " if column else "")
        + f"window: {_duration(window)}, hop: {_duration(hop)}, type: {dtype}}}\n"
        for name, (function, column, window, hop, dtype) in AGGREGATIONS.items())
    store = (f"      online:\n        type: redis\n"
             f"        url: redis://127.0.0.1:{redis_port}/0\n"
             f"        namespace: {NAMESPACE}\n") if redis_port else ""
    texts = {
        "fsql_project.yml": "name: windows_bench\nprofile: windows_bench\n",
        "profiles.yml": textwrap.dedent(f"""\
            windows_bench:
              target: bench
              outputs:
                bench:
                  offline: {offline[engine]}
            """) + store,
        "models/sources.yml": "sources:\n  - name: bench\n    tables:\n" + "".join(
            f"      - name: {table}\n        path: {json.dumps(os.path.relpath(path, PROJECT))}\n"
            for table, path in files.items()),
        "features/entities.yml": "entities:\n  - name: card\n    join_keys: [card]\n",
        f"features/{WINDOWS_VIEW}.yml": f"feature_view:\n  name: {WINDOWS_VIEW}\n"
                                        "  entities: [card]\n  timestamp: ts\n  online: true\n"
                                        f"  aggregations:\n{aggregations}",
        f"features/{WINDOWS_VIEW}.sql": "SELECT card, ts, amount, merchant_id\n"
                                        "FROM {{ source('bench', 'txns') }}\n",
        f"features/{LATEST_VIEW}.yml": f"feature_view:\n  name: {LATEST_VIEW}\n"
                                       "  entities: [card]\n  timestamp: ts\n  online: true\n"
                                       "  features:\n" + "".join(
                                           f"    - {{name: {name}, type: {dtype}}}\n"
                                           for name, dtype in LATEST_FEATURES),
        f"features/{LATEST_VIEW}.sql": "SELECT card, ts, "
                                       + ", ".join(name for name, _ in LATEST_FEATURES)
                                       + "\nFROM {{ source('bench', 'txns') }}\n",
        "features/training_sets.yml": textwrap.dedent(f"""\
            training_sets:
              - name: {TRAINING_SET}
                spine:
                  source: bench.spine
                  timestamp: label_ts
                features: [{WINDOWS_VIEW}]
            """),
    }
    for file, text in texts.items():
        path = PROJECT / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return PROJECT


def fsql_output() -> Path:
    import fsql

    return fsql.Project(PROJECT).paths.training_sets / f"{TRAINING_SET}.parquet"


def hand_output() -> Path:
    return HAND_DIR / f"{TRAINING_SET}.parquet"


# -- the hand-written contender ----------------------------------------------------------------

def hand_query(scale: float) -> str:
    """Rule 7 at every spine row, by hand: the value at t aggregates the card's transactions
    with ``floor(t / h) * h - w <= e <= t`` (microseconds; times are after 1970, so ``%`` is
    the floor's remainder); count 0 on an empty window; avg = sum / count of the non-null
    amounts as a double; last = the merchant of the greatest (e, merchant) among non-null
    merchants. Exact for any float64 amounts and int64 merchants, like fsql.

    The spine rows (with their label) and the transactions in one UNION ALL, sorted once by
    (card, time), and the windows evaluated over it with RANGE frames reaching back by a
    per-row offset (``us % h + w``), kept at the spine rows only. Two tricks over the
    straightforward query: the 24h window's two counts (rows, non-null amounts) are one sum of
    ``1 + 2^32 * (amount IS NOT NULL)`` (exact below 2^32 rows per window), and ``last`` is a
    cumulative ``max`` (RANGE UNBOUNDED PRECEDING, so rows tied with the spine time count) of
    the HUGEINT ``e * 2^64 + (merchant + 2^63)`` (its order is (e, merchant)) whose e is then
    checked against the 7d window's start, instead of an ``arg_max`` over the 7d frame.

    Tried at scale 0.1 (1,000,000 transactions, 100,000 spine rows), one thread, CPU seconds
    of the COPY (min-median of 3-5 alternating runs on a shared machine):

    * the straightforward query (seven windowed aggregates, ``last`` as ``arg_max(merchant,
      {t: e, v: merchant})`` over the 7d frame; fsql's shape): 4.2-4.5. fsql's own compiled
      query, run the same way in a copy of its database: 4.1-4.8 (4.0-4.5 with ``us % h``
      instead of its ``((us % h) + h) % h``);
    * this query: 2.4-3.1. The gain is ``last``'s HUGEINT ``max``: this query with a struct
      ``arg_max`` over the cumulative frame instead takes 4.9 (the struct comparisons are the
      cost, not the frame); the packed counts save one aggregate, within the noise;
    * ``last`` by an ASOF join of the spine rows to the latest non-null merchant per (card, e)
      (a GROUP BY), the rest as here: 2.9-3.3 (no gain);
    * every count and sum as a difference of cumulative (streaming) aggregates, with the
      spine rows plus one probe row per window start (at start - 1 us) in the union, pivoted
      back by a GROUP BY, sums in integer cents to stay exact: 3.0-3.7 (no gain; and integer
      cents only hold for amounts with at most two decimals, while double prefix sums lose
      the small windows of busy cards to cancellation);
    * DuckDB's windowed ``max`` is the expensive aggregate (a cumulative or 7d ``max`` costs
      about as much as the sort); ``count`` and ``sum`` much less. Pre-aggregating into
      5-minute tiles saves nothing here: 94% of the (card, 5 min) tiles hold one transaction
      (hourly: 71%).
    """
    files = {name: common.sql_string(path) for name, path in paths(scale).items()}
    return f"""
        WITH u AS (
            SELECT card, epoch_us(ts) AS us, amount, merchant_id,
                   CASE WHEN amount IS NULL THEN 1 ELSE 4294967297 END AS marks,
                   NULL::BOOLEAN AS label, 0 AS point
            FROM read_parquet({files["txns"]})
            WHERE card IS NOT NULL AND ts IS NOT NULL
            UNION ALL
            SELECT card, epoch_us(label_ts), NULL, NULL, NULL, label, 1
            FROM read_parquet({files["spine"]})
        ), w AS (
            SELECT card, us, label,
                sum(amount) OVER h1 AS spend_1h,
                count(marks) OVER h1 AS txns_1h,
                sum(marks) OVER d1 AS marks_24h,
                sum(amount) OVER d1 AS sum_24h,
                max(amount) OVER d7 AS max_7d,
                max(us::HUGEINT * 18446744073709551616
                    + (merchant_id::HUGEINT + 9223372036854775808))
                    OVER (PARTITION BY card ORDER BY us) AS last_key
            FROM u
            WINDOW h1 AS (PARTITION BY card ORDER BY us
                          RANGE BETWEEN us % 300000000 + 3600000000 PRECEDING AND CURRENT ROW),
                   d1 AS (PARTITION BY card ORDER BY us
                          RANGE BETWEEN us % 3600000000 + 86400000000 PRECEDING
                          AND CURRENT ROW),
                   d7 AS (PARTITION BY card ORDER BY us
                          RANGE BETWEEN us % 3600000000 + 604800000000 PRECEDING
                          AND CURRENT ROW)
            QUALIFY point = 1
        )
        SELECT card, make_timestamp(us) AS label_ts, label, spend_1h, txns_1h,
               coalesce(marks_24h % 4294967296, 0)::BIGINT AS txns_24h,
               sum_24h / nullif(marks_24h // 4294967296, 0)::DOUBLE AS avg_24h,
               max_7d,
               CASE WHEN last_key // 18446744073709551616
                         >= us - us % 3600000000 - 604800000000
                    THEN (last_key % 18446744073709551616 - 9223372036854775808)::BIGINT
               END AS last_merchant
        FROM w
        ORDER BY label_ts, card, label
    """


# -- one run (in a fresh subprocess) -----------------------------------------------------------

def preload() -> None:
    """Imports made before the timed call (not timed, for either contender)."""
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def run_fsql_build(args: argparse.Namespace) -> dict[str, Any]:
    import fsql

    preload()
    cpu, started = common.cpu_seconds(), time.perf_counter()
    result = fsql.Project(PROJECT).build(select=[TRAINING_SET])
    seconds = time.perf_counter() - started
    (built,) = result.training_sets
    if built.output != fsql_output():
        raise SystemExit(f"fsql wrote {built.output}, expected {fsql_output()}")
    return {"seconds": seconds, "cpu_seconds": common.cpu_seconds() - cpu,
            "peak_rss_kib": common.peak_rss_kib(), "training_set_seconds": built.seconds}


def run_hand_build(args: argparse.Namespace) -> dict[str, Any]:
    preload()
    output = hand_output()
    output.parent.mkdir(parents=True, exist_ok=True)
    cpu, started = common.cpu_seconds(), time.perf_counter()
    con = common.duckdb_connect(args.threads, args.memory_limit, str(HAND_DIR / "hand.duckdb"))
    con.execute(f"COPY ({hand_query(args.scale)}) TO {common.sql_string(output)} "
                "(FORMAT parquet)")
    con.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": common.cpu_seconds() - cpu,
            "peak_rss_kib": common.peak_rss_kib()}


def run_sync(args: argparse.Namespace) -> dict[str, Any]:
    import fsql

    preload()
    import jinja2  # noqa: F401  (fsql's lazy imports: not timed)
    import msgpack  # noqa: F401
    import redis  # noqa: F401
    import sqlglot.dialects.duckdb  # noqa: F401

    view = WINDOWS_VIEW if args.run == "sync-windows" else LATEST_VIEW
    cpu, started = common.cpu_seconds(), time.perf_counter()
    result = fsql.Project(PROJECT).sync(select=[view], full_refresh=True, allow_drop=True,
                                        now=args.now_us / 1_000_000)
    seconds = time.perf_counter() - started
    (synced,) = result.views
    return {"seconds": seconds, "cpu_seconds": common.cpu_seconds() - cpu,
            "peak_rss_kib": common.peak_rss_kib(), "entities": synced.entities,
            "written": synced.written, "view_seconds": synced.seconds, "mode": synced.mode}


READ_WARMUP = 200


def id_batches(entities: int, size: int, count: int) -> list[list[int]]:
    """The same pseudo-random card ids for both views (~5% of them without transactions)."""
    import numpy as np

    rng = np.random.default_rng(SEED + size)
    ids: list[list[int]] = rng.integers(0, round(entities * 1.05), (count, size)).tolist()
    return ids


def percentiles(nanos: list[int]) -> dict[str, float]:
    ordered = sorted(nanos)
    return {**{name: ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)] / 1e6
               for name, p in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1.0))},
            "mean": statistics.fmean(ordered) / 1e6}


def run_read(args: argparse.Namespace) -> dict[str, Any]:
    import fsql

    view = WINDOWS_VIEW if args.run == "read-windows" else LATEST_VIEW
    service = fsql.Project(PROJECT).online_service()
    clock = time.perf_counter_ns
    out: dict[str, Any] = {}
    for size, calls in ((1, args.calls), (100, args.calls_100)):
        batches = id_batches(args.entities, size, READ_WARMUP + calls)
        for ids in batches[:READ_WARMUP]:
            service.get([view], {"card": ids})
        latencies = []
        for ids in batches[READ_WARMUP:]:
            started = clock()
            service.get([view], {"card": ids})
            latencies.append(clock() - started)
        out[str(size)] = {"calls": len(latencies), **percentiles(latencies)}
    service.store.close()
    return out


RUNS = {"fsql-build": run_fsql_build, "hand-build": run_hand_build, "sync-windows": run_sync,
        "sync-latest": run_sync, "read-windows": run_read, "read-latest": run_read}


def spawn(run: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """One run in a fresh interpreter; returns its JSON report."""
    command = [sys.executable, str(Path(__file__).resolve()), "--run", run,
               "--scale", f"{args.scale:g}", "--threads", str(args.threads),
               "--memory-limit", args.memory_limit, "--calls", str(args.calls),
               "--calls-100", str(args.calls_100)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return common.run_report(command, run)


# -- offline -----------------------------------------------------------------------------------

def compare_outputs(fsql_path: Path, hand_path: Path) -> dict[str, Any]:
    """Fail loudly unless both files have the same columns and types and the same rows
    (spine columns, counts and ``last_merchant`` exact; sums and averages within 1e-9
    relative); return a few facts about the values (a sanity check of the data)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ours, theirs = pq.read_table(fsql_path), pq.read_table(hand_path)
    def columns(table: Any) -> list[tuple[str, Any]]:  # names and types (not nullability)
        return [(f.name, f.type) for f in table.schema]

    if columns(ours) != columns(theirs):
        raise SystemExit(f"OUTPUTS DIFFER: schemas\nfsql:\n{ours.schema}\nhand:\n{theirs.schema}")
    if ours.num_rows != theirs.num_rows:
        raise SystemExit(f"OUTPUTS DIFFER: fsql {ours.num_rows:,} rows, hand "
                         f"{theirs.num_rows:,}")
    # one order for both (fsql's is by spine time, card, label; rows equal on all three are
    # the same point, hence the same features, so this order makes the files comparable)
    keys = [("label_ts", "ascending"), ("card", "ascending"), ("label", "ascending")]
    ours, theirs = ours.sort_by(keys), theirs.sort_by(keys)
    for name in ours.column_names:
        a, b = ours.column(name), theirs.column(name)
        if name not in FLOAT_FEATURES:
            if not a.equals(b):
                bad = pc.sum(pc.invert(pc.fill_null(pc.equal(a, b), False))).as_py()
                raise SystemExit(f"OUTPUTS DIFFER: column {name}: {bad:,} rows differ")
            continue
        x = a.to_numpy(zero_copy_only=False).astype(float)
        y = b.to_numpy(zero_copy_only=False).astype(float)
        nulls = np.isnan(x) != np.isnan(y)
        both = ~np.isnan(x) & ~np.isnan(y)
        far = np.abs(x[both] - y[both]) > 1e-9 * np.maximum(np.abs(x[both]), np.abs(y[both]))
        if nulls.any() or far.any():
            raise SystemExit(f"OUTPUTS DIFFER: column {name}: {int(nulls.sum()):,} rows null on "
                             f"one side only, {int(far.sum()):,} beyond 1e-9 relative")
    rows = ours.num_rows
    return {"rows": rows, "columns": ours.num_columns,
            "nonzero_txns_1h": round(pc.sum(pc.greater(ours.column("txns_1h"), 0)).as_py()
                                     / rows, 4),
            "nonzero_txns_24h": round(pc.sum(pc.greater(ours.column("txns_24h"), 0)).as_py()
                                      / rows, 4),
            "mean_txns_24h": round(pc.mean(ours.column("txns_24h")).as_py(), 3),
            "last_merchant_present": round(1 - pc.sum(ours.column("last_merchant").is_null())
                                           .as_py() / rows, 4)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = {"seconds": 1.0, "cpu_seconds": 1.0, "peak_rss_kib": 1 / 1024,
               "training_set_seconds": 1.0}
    return {"peak_rss_mib" if key == "peak_rss_kib" else key:
            common.stats([r[key] * factor for r in runs])
            for key, factor in metrics.items() if key in runs[0]}


def part_offline(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"fsql": [], "hand": []}
    checks: dict[str, Any] = {}
    for i in range(args.repeat + 1):
        label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
        for contender in ("fsql", "hand"):
            report = spawn(f"{contender}-build", args)
            common.log(f"  offline {label:>9}  {contender:<4}  {report['seconds']:7.2f} s  "
                       f"{report['peak_rss_kib'] / 1024:8,.0f} MiB")
            if i > 0:
                runs[contender].append(report)
        checks = compare_outputs(fsql_output(), hand_output())
    fsql_stats, hand_stats = summarize(runs["fsql"]), summarize(runs["hand"])
    return {
        "fsql": fsql_stats, "hand": hand_stats,
        "ratios": {name: round(fsql_stats[key]["median"] / hand_stats[key]["median"], 3)
                   for name, key in (("seconds", "seconds"), ("cpu_seconds", "cpu_seconds"),
                                     ("peak_rss", "peak_rss_mib"))},
        "target": "fsql / hand wall time <= 1.5x",
        "output": checks,
        "hand_query": textwrap.dedent(hand_query(args.scale)).strip(),
    }


# -- online ------------------------------------------------------------------------------------

def stored_bytes(server: RedisServer, view: str, entities: int,
                 sample: int = 2000) -> dict[str, Any]:
    """``MEMORY USAGE`` (key, value and Redis' overhead) of a sample of the view's keys."""
    import numpy as np

    client = server.client()
    generation = client.hget(f"{NAMESPACE}:v1:{view}:meta", "generation")
    assert generation is not None, f"{view} was not synced"
    prefix = f"{NAMESPACE}:v1:{view}:{generation.decode()}:"
    keys = [key for key in client.scan_iter(match=prefix + "*", count=10_000)]
    rng = np.random.default_rng(SEED)
    chosen = [keys[i] for i in rng.choice(len(keys), min(sample, len(keys)), replace=False)]
    pipe = client.pipeline(transaction=False)
    for key in chosen:
        pipe.execute_command("MEMORY USAGE", key, "SAMPLES", "0")
    usage = [int(u) for u in pipe.execute()]
    pipe = client.pipeline(transaction=False)
    for key in chosen:
        pipe.strlen(key)
    lengths = [int(n) for n in pipe.execute()]
    client.close()
    return {"keys": len(keys), "sampled": len(chosen),
            "memory_usage_mean": round(statistics.fmean(usage), 1) if usage else 0,
            "memory_usage_p99": float(np.percentile(usage, 99)) if usage else 0,
            "value_bytes_mean": round(statistics.fmean(lengths), 1) if lengths else 0}


def used_memory(server: RedisServer) -> int:
    client = server.client()
    used = int(client.info("memory")["used_memory"])
    client.close()
    return used


def part_online(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    server = RedisServer(OUT / "redis").start()
    try:
        write_project(args.scale, args.threads, args.memory_limit, server.port, args.engine)
        now_us = int(time.time() * 1_000_000)  # one "now" for every sync
        runs: dict[str, list[dict[str, Any]]] = {"windows": [], "latest": []}
        memory: dict[str, Any] = {}
        for i in range(args.repeat + 1):
            label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
            for which in ("windows", "latest"):
                before = used_memory(server)
                report = spawn(f"sync-{which}", args, now_us=now_us)
                if i == 0:  # the first sync of a view: its whole footprint is new
                    memory[which] = {"used_memory_delta": used_memory(server) - before}
                common.log(f"  sync {label:>9}  {which:<7}  {report['seconds']:7.2f} s  "
                           f"{report['entities'] / report['seconds']:>10,.0f} entities/s  "
                           f"{report['peak_rss_kib'] / 1024:6,.0f} MiB")
                if i > 0:
                    runs[which].append(report)
        sync: dict[str, Any] = {"now_us": now_us}
        for which, reports in runs.items():
            view = WINDOWS_VIEW if which == "windows" else LATEST_VIEW
            entities = reports[-1]["entities"]
            stored = stored_bytes(server, view, entities)
            delta = memory[which]["used_memory_delta"]
            sync[which] = {
                "view": view, "entities": entities,
                "seconds": common.stats([r["seconds"] for r in reports]),
                "entities_per_second": common.stats([r["entities"] / r["seconds"]
                                                     for r in reports], 0),
                "cpu_seconds": common.stats([r["cpu_seconds"] for r in reports]),
                # fsql's own timing of the view's sync (without loading the project)
                "view_seconds": common.stats([r["view_seconds"] for r in reports]),
                "peak_rss_mib": common.stats([r["peak_rss_kib"] / 1024 for r in reports], 0),
                "bytes_per_entity": {**stored, "used_memory_delta": delta,
                                     "used_memory_delta_per_entity":
                                         round(delta / entities, 1) if entities else 0}}
        checks = check_reads(data["entities"], now_us)
        read = part_read(args, data["entities"])
    finally:
        server.stop()
    return {"sync": sync, "read": read, "online_equals_offline": checks}


def check_reads(entities: int, now_us: int) -> dict[str, Any]:
    """Before timing: every requested feature comes back for 100 random cards, and the six
    aggregations read online at the sync's instant equal ``historical_features`` at that
    instant (counts, max and last exactly, sums and averages within 1e-9 relative)."""
    import pandas as pd

    import fsql
    from fsql.serve import OnlineService

    project = fsql.Project(PROJECT)
    ids = id_batches(entities, 100, 1)[0]
    service = project.online_service()
    for view, names in ((WINDOWS_VIEW, ["max_7d", *AGGREGATIONS]),
                        (LATEST_VIEW, [name for name, _ in LATEST_FEATURES])):
        result = service.get([view], {"card": ids})
        for name in names:
            if len(result.values[name]) != len(ids) or len(result.statuses[name]) != len(ids):
                raise SystemExit(f"READ FAILED: {view}.{name}")
        if not any(v is not None for v in result.values[names[0]]):
            raise SystemExit(f"READ FAILED: {view}: no {names[0]} for 100 random cards")
    service.store.close()

    at = OnlineService(project.load(), project.store(), project.target.paths,
                       clock=lambda: now_us / 1_000_000)
    online = at.get([WINDOWS_VIEW], {"card": ids}).values
    at.store.close()
    spine = pd.DataFrame({"card": ids, "ts": pd.Series([pd.Timestamp(now_us, unit="us")]
                                                       * len(ids), dtype="datetime64[us]")})
    offline = project.historical_features(spine, [WINDOWS_VIEW], timestamp="ts")
    compared = 0
    for name in AGGREGATIONS:
        for i, got in enumerate(online[name]):
            wanted = offline[name].iloc[i]
            wanted = None if pd.isna(wanted) else wanted.item() if hasattr(wanted, "item") \
                else wanted
            same = (got is None and wanted is None) or (
                got is not None and wanted is not None
                and (got == wanted or (name in FLOAT_FEATURES and math.isclose(
                    got, wanted, rel_tol=1e-9))))
            if not same:
                raise SystemExit(f"ONLINE != OFFLINE: {name} of card {ids[i]}: online {got!r}, "
                                 f"historical_features {wanted!r}")
            compared += wanted is not None
    return {"cards": len(ids), "non_null_values_compared": compared}


def part_read(args: argparse.Namespace, entities: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"windows": [], "latest": []}
    for i in range(args.read_repeat):
        for which in ("windows", "latest"):
            report = spawn(f"read-{which}", args, entities=entities)
            runs[which].append(report)
            common.log(f"  read run {i + 1}/{args.read_repeat}  {which:<7}  "
                       + "  ".join(f"{size}: p50 {report[size]['p50']:.3f} p99 "
                                   f"{report[size]['p99']:.3f} ms" for size in ("1", "100")))
    out: dict[str, Any] = {"calls": {"1": args.calls, "100": args.calls_100},
                           "warmup": READ_WARMUP}
    for size in ("1", "100"):
        out[size] = {which: {p: common.stats([r[size][p] for r in reports], 4)
                             for p in ("p50", "p90", "p99", "max", "mean")}
                     for which, reports in runs.items()}
        for p in ("p50", "p99"):
            out[size][f"ratio_{p}"] = round(out[size]["windows"][p]["median"]
                                            / out[size]["latest"][p]["median"], 3)
    out["target"] = "windows / latest p99 <= 2x"
    return out


# -- report ------------------------------------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    data, m, cell = result["data"], result["machine"], common.cell
    lines = [f"{data['events']:,} transactions of {data['entities']:,} cards over "
             f"{data['span_days']} days, {data['spine_rows']:,} spine rows (scale "
             f"{data['scale']:g}); six aggregations over 1h/24h/7d; "
             f"{result['settings'].get('engine', 'duckdb')} threads="
             f"{result['settings']['threads']}, memory_limit="
             f"{result['settings']['memory_limit']}; medians (min-max).", ""]
    off = result.get("offline")
    if off:
        f, h, r = off["fsql"], off["hand"], off["ratios"]
        lines += [f"### Training set ({result['settings']['repeat']} alternating runs each, "
                  "fresh processes)", "",
                  "| contender | wall time (s) | CPU time (s) | peak RSS (MiB) |",
                  "|---|---:|---:|---:|"]
        for name, s in (("`fsql build`", f), ("hand-written DuckDB SQL", h)):
            lines.append(f"| {name} | {cell(s['seconds'])} | {cell(s['cpu_seconds'])} | "
                         f"{cell(s['peak_rss_mib'], 0)} |")
        lines.append(f"| **fsql / hand** | **{r['seconds']:.2f}x** (target <= 1.5x) | "
                     f"{r['cpu_seconds']:.2f}x | {r['peak_rss']:.2f}x |")
        o = off["output"]
        lines += ["", f"Outputs identical (sums and averages within 1e-9 relative): "
                      f"{o['rows']:,} rows x {o['columns']} columns; {o['nonzero_txns_1h']:.1%} "
                      f"of spine rows have a transaction in their 1h window, "
                      f"{o['nonzero_txns_24h']:.1%} in their 24h window (mean "
                      f"{o['mean_txns_24h']:.2f}).", ""]
    on = result.get("online")
    if on:
        sync, read = on["sync"], on["read"]
        lines += [f"### Full sync ({result['settings']['repeat']} runs each, fresh processes)",
                  "", "| view | entities | wall (s) | entities/s | CPU (s) | peak RSS (MiB) | "
                      "bytes/entity (MEMORY USAGE) | value bytes | used_memory/entity |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for which in ("windows", "latest"):
            s = sync[which]
            b = s["bytes_per_entity"]
            lines.append(f"| `{s['view']}` | {s['entities']:,} | {cell(s['seconds'])} | "
                         f"{cell(s['entities_per_second'], 0)} | {cell(s['cpu_seconds'])} | "
                         f"{cell(s['peak_rss_mib'], 0)} | {b['memory_usage_mean']:,.0f} | "
                         f"{b['value_bytes_mean']:,.0f} | "
                         f"{b['used_memory_delta_per_entity']:,.0f} |")
        eq = on["online_equals_offline"]
        lines += ["", f"Before the reads: the six aggregations read online at the sync's instant "
                      f"equal `historical_features` at that instant for {eq['cards']} random "
                      f"cards ({eq['non_null_values_compared']} non-null values).", ""]
        lines += [f"### `OnlineService.get` latency, six aggregations vs six latest-row "
                      f"features ({read['calls']['1']:,} calls of 1 entity, "
                      f"{read['calls']['100']:,} of 100, per run; "
                      f"{result['settings']['read_repeat']} runs each)", "",
                  "| entities | windows p50 (ms) | windows p99 (ms) | latest p50 (ms) | "
                  "latest p99 (ms) | p50 ratio | p99 ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for size in ("1", "100"):
            r = read[size]
            w, la = r["windows"], r["latest"]
            lines.append(f"| {size} | {cell(w['p50'], 3)} | {cell(w['p99'], 3)} | "
                         f"{cell(la['p50'], 3)} | {cell(la['p99'], 3)} | "
                         f"{r['ratio_p50']:.2f}x | **{r['ratio_p99']:.2f}x** (target <= 2x) |")
        lines.append("")
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM; "
                 f"Python {m['python']}, DuckDB {m['duckdb']}, fsql {m['fsql']}"
                 + (f", {m['redis_server'].split(' sha')[0]}" if "redis_server" in m else "")
                 + f". Load average before/after: {result['load_average']['before'][0]:.2f} / "
                   f"{result['load_average']['after'][0]:.2f}.")
    return "\n".join(lines)


def redis_version() -> str:
    import subprocess

    try:
        done = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True,
                              check=False)
    except OSError:
        return "missing"
    return (done.stdout or done.stderr).splitlines()[0].strip()


# -- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("offline", "online", "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every size by this (e.g. 0.01 for a smoke run)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="counted build and sync runs per contender, after one warm-up "
                             "each (default 3)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="timed reads of 1 entity per run (default 2000)")
    parser.add_argument("--calls-100", type=int, default=500,
                        help="timed reads of 100 entities per run (default 500)")
    parser.add_argument("--read-repeat", type=int, default=3,
                        help="read runs per view (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="DuckDB threads for both contenders (default: all CPUs)")
    parser.add_argument("--memory-limit", default="4GB",
                        help="DuckDB memory_limit for both contenders (default 4GB)")
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                        help="the offline engine the online part syncs from (spark: only "
                             "with --part online)")
    parser.add_argument("--results", type=Path,
                        help=f"where to write the JSON results (default {RESULTS} at scale "
                             f"1, else {OUT}/windows.<scale>.json)")
    # internal: one run in this process
    parser.add_argument("--run", choices=tuple(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--now-us", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine == "spark" and args.part != "online":
        parser.error("--engine spark benchmarks the online part only (--part online)")
    if args.scale <= 0 or min(args.repeat, args.calls, args.calls_100, args.read_repeat) < 1:
        parser.error("--scale must be > 0; --repeat, --calls, --calls-100, --read-repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run:
        print(json.dumps(RUNS[args.run](args)))
        return

    started = time.perf_counter()
    load_before = os.getloadavg()
    data = ensure_data(args.scale)
    write_project(args.scale, args.threads, args.memory_limit, engine=args.engine)
    result: dict[str, Any] = {"benchmark": "windows", "data": data}
    if args.part in ("offline", "all"):
        common.log("offline ...")
        result["offline"] = part_offline(args)
    if args.part in ("online", "all"):
        common.log("online ...")
        result["online"] = part_online(args, data)
    result.update({
        "aggregations": {name: {"function": f, "column": c, "window_s": w, "hop_s": h,
                                "type": t} for name, (f, c, w, h, t) in AGGREGATIONS.items()},
        "settings": {"engine": args.engine, "threads": args.threads,
                     "memory_limit": args.memory_limit,
                     "repeat": args.repeat, "read_repeat": args.read_repeat},
        "machine": common.machine(redis_server=redis_version()),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "total_seconds": round(time.perf_counter() - started, 1)})
    engine = "" if args.engine == "duckdb" else f"{args.engine}."
    path = args.results or (RESULTS.with_name(f"windows.{engine}json") if args.scale == 1
                            else OUT / f"windows.{engine}{args.scale:g}.json")
    common.publish(result, path, markdown(result))


if __name__ == "__main__":
    main()
