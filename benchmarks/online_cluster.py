"""Benchmark: the Redis Cluster online store (``fsql.online.cluster.ClusterStore``) vs. raw
redis-py ``RedisCluster`` on the same keys, against a 3-master cluster this script starts on
loopback ports (``tests.redis_server.RedisClusterServers``).

* **write** -- the store's part of ``fsql sync``: ``ClusterStore.write`` of ``--entities``
  encoded vectors (one view with a ttl, batches of ``--batch`` entities) under a held lock, into
  a fresh generation (a full refresh: plain SETs, a fence per master and batch) and, guarded,
  into the live one (an incremental sync: the guard script per key) vs. **raw**: a
  non-transactional ``RedisCluster.pipeline()`` of ``SET key value PXAT at`` for the same keys
  and values, per batch. Entity-vectors/s (target: fsql full refresh >= 0.7x raw). The DuckDB
  query a real sync also runs costs both the same and is left out, so the ratio is over the
  part that differs (stricter than a whole-sync ratio).
* **read** -- ``ClusterStore.read_keys`` of 1 and of 100 random entities of one view (the
  values on their masters and the view's meta hash, checked against the cached generation) vs.
  **raw**: ``RedisCluster.get`` (1) or ``mget_nonatomic`` (100) of the same keys. p50/p99
  latency (target: fsql p99 <= 1.5x raw). Also **sequential**: ``ClusterStore`` with each
  master's pipeline sent and read before the next one's (the design not taken). All must return
  the same bytes (checked first).

The contenders alternate (blocks of calls for reads, whole passes for writes), ``--rounds``
times; medians over the rounds are reported with the load average before and after. Results:
``benchmarks/results/online_cluster.json`` and ``.md``.

    .venv/bin/python benchmarks/online_cluster.py [--entities 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common

# (importable after common, which puts the repository root on sys.path)
from tests.redis_server import RedisClusterServers

from fsql.config import OnlineConfig
from fsql.online.base import Batch, SyncLock, WriteCounts
from fsql.online.cluster import ClusterStore
from fsql.online.keys import INT_KEY, ViewLayout

RESULTS = Path(__file__).parent / "results"


class SequentialStore(ClusterStore):  # type: ignore[misc]  # (fsql is Any to this mypy run)
    """The design not taken: each master's pipeline sent and its replies read before the next
    master's (``ClusterStore`` sends to every master first, then reads)."""

    def _pipelines(self, work: dict[str, Any]) -> dict[str, list[Any]]:
        return {name: super(SequentialStore, self)._pipelines({name: item})[name]
                for name, item in work.items()}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def encoded(layout: ViewLayout, entities: int, version: int) -> tuple[list[str], list[bytes]]:
    now = int(time.time() * 1e6)
    ids = list(range(entities))
    values = layout.encode_rows([now - 1000 + version] * entities, [None] * entities,
                                [[i * 7 + version for i in ids], [i * 0.5 for i in ids],
                                 [f"channel-{i % 13}" for i in ids]])
    return layout.key_suffixes([ids]), values


def fsql_write(store: ClusterStore, layout: ViewLayout, lock: SyncLock, generation: str,
               suffixes: list[str], values: list[bytes], expire: int, size: int,
               guarded: bool) -> float:
    counts = WriteCounts()
    started = time.perf_counter()
    for at in range(0, len(values), size):
        part = values[at:at + size]
        store.write(layout, generation, Batch(suffixes[at:at + size], part, [expire] * len(part)),
                    counts, lock, guarded=guarded)
    return time.perf_counter() - started


def raw_write(client: Any, keys: list[str], values: list[bytes], expire: int, size: int
              ) -> float:
    started = time.perf_counter()
    for at in range(0, len(values), size):
        pipe = client.pipeline(transaction=False)
        for key, value in zip(keys[at:at + size], values[at:at + size], strict=True):
            pipe.set(key, value, pxat=expire)
        pipe.execute()
    return time.perf_counter() - started


def part_write(args: argparse.Namespace, store: ClusterStore, client: Any,
               layout: ViewLayout) -> dict[str, Any]:
    expire = int(time.time() * 1000) + 3_600_000
    rates: dict[str, list[float]] = {"fsql_full": [], "fsql_guarded": [], "raw": []}
    with store.locked() as lock:
        live = store.new_generation(layout, lock)
        suffixes, values = encoded(layout, args.entities, 0)
        fsql_write(store, layout, lock, live, suffixes, values, expire, args.batch, False)
        store.publish(layout, {"generation": live}, lock)
        keys = store.value_keys(f"{layout.prefix}:{live}:", suffixes)
        for round_ in range(args.rounds):
            suffixes, values = encoded(layout, args.entities, round_ + 1)
            order = ["fsql_full", "fsql_guarded", "raw"]
            for contender in order[round_ % 3:] + order[:round_ % 3]:
                if contender == "raw":  # over the live generation's keys, as a cron job would
                    seconds = raw_write(client, keys, values, expire, args.batch)
                elif contender == "fsql_full":
                    generation = store.new_generation(layout, lock)
                    seconds = fsql_write(store, layout, lock, generation, suffixes, values,
                                         expire, args.batch, False)
                    store.drop_generation(layout, generation, forget="pending_generation")
                else:  # newer values than raw's of this round: every one is written
                    newer = encoded(layout, args.entities, round_ + 100)[1]
                    seconds = fsql_write(store, layout, lock, live, suffixes, newer, expire,
                                         args.batch, True)
                rates[contender].append(args.entities / seconds)
                common.log(f"write round {round_}: {contender} {args.entities / seconds:,.0f}/s")
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {"entities_per_s": medians, "rounds": rates,
            "ratio_full": medians["fsql_full"] / medians["raw"],
            "ratio_guarded": medians["fsql_guarded"] / medians["raw"]}


def part_read(args: argparse.Namespace, store: ClusterStore, sequential: ClusterStore,
              client: Any, layout: ViewLayout, size: int) -> dict[str, Any]:
    rng = random.Random(size)
    generation = store.meta(layout)["generation"]
    prefix = f"{layout.prefix}:{generation}:"

    def draw() -> list[str]:
        return [str(rng.randrange(args.entities)) for _ in range(size)]

    def fsql(suffixes: list[str]) -> list[bytes | None]:
        found: list[bytes | None] = store.read_keys([(layout, suffixes)])[0][1]
        return found

    def fsql_sequential(suffixes: list[str]) -> list[bytes | None]:
        found: list[bytes | None] = sequential.read_keys([(layout, suffixes)])[0][1]
        return found

    def raw(suffixes: list[str]) -> list[bytes | None]:
        keys = store.value_keys(prefix, suffixes)
        if size == 1:
            one: bytes | None = client.get(keys[0])
            return [one]
        return list(client.mget_nonatomic(keys))

    calls = {"fsql": fsql, "fsql_sequential": fsql_sequential, "raw": raw}
    for _ in range(20):  # the same bytes, first
        sample = draw()
        assert fsql(sample) == raw(sample) == fsql_sequential(sample)
        assert None not in fsql(sample)
    times: dict[str, list[int]] = {name: [] for name in calls}
    p99: dict[str, list[float]] = {name: [] for name in calls}
    p50: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for round_ in range(args.rounds):
        for name in order[round_ % 3:] + order[:round_ % 3]:
            call = calls[name]
            block: list[int] = []
            for _ in range(args.calls):
                sample = draw()
                started = time.perf_counter_ns()
                call(sample)
                block.append(time.perf_counter_ns() - started)
            block.sort()
            times[name] += block
            p50[name].append(block[len(block) // 2] / 1e6)
            p99[name].append(block[int(len(block) * 0.99)] / 1e6)
    result: dict[str, Any] = {name: {"p50_ms": statistics.median(p50[name]),
                                     "p99_ms": statistics.median(p99[name])} for name in times}
    result["p99_ratio"] = result["fsql"]["p99_ms"] / result["raw"]["p99_ms"]
    result["sequential_p99_ratio"] = (result["fsql_sequential"]["p99_ms"] /
                                      result["raw"]["p99_ms"])
    result["p50_ratio"] = result["fsql"]["p50_ms"] / result["raw"]["p50_ms"]
    return result


def markdown(result: dict[str, Any]) -> str:
    write = result["write"]
    lines = [f"# Redis Cluster online store ({result['masters']} masters, loopback)", "",
             f"load average before {result['load_before']}, after {result['load_after']}; "
             f"{result['entities']:,} entities, batches of {result['batch']}, "
             f"{result['rounds']} alternating rounds (medians)", "",
             "| write | entity-vectors/s | vs raw |", "|---|---:|---:|"]
    for name in ("fsql_full", "fsql_guarded", "raw"):
        rate = write["entities_per_s"][name]
        lines.append(f"| {name} | {rate:,.0f} | {rate / write['entities_per_s']['raw']:.2f}x |")
    lines += ["", "| read | fsql p50 / p99 | sequential p50 / p99 | raw p50 / p99 | "
              "p99 fsql/raw | p99 sequential/raw |", "|---|---:|---:|---:|---:|---:|"]
    for size in ("1", "100"):
        r = result["read"][size]
        cells = " | ".join(f"{r[n]['p50_ms']:.3f} / {r[n]['p99_ms']:.3f} ms"
                           for n in ("fsql", "fsql_sequential", "raw"))
        lines.append(f"| {size} entities | {cells} | {r['p99_ratio']:.2f}x | "
                     f"{r['sequential_p99_ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000, help="reads per contender and round")
    args = parser.parse_args()
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisClusterServers(Path(directory)).start()
        try:
            config = OnlineConfig(type="redis_cluster", url=None, path=None, db=0, password=None,
                                  namespace="bench", pool_size=16, batch_size=args.batch,
                                  socket_timeout=5.0, lock_timeout=600.0,
                                  startup_nodes=(cluster.url.split("//", 1)[1].split(",")))
            store = ClusterStore(config, time.time)
            sequential = SequentialStore(config, time.time)
            client = cluster.client()
            layout = ViewLayout("bench", "activity", ("customer_id",), (INT_KEY,), ())
            result: dict[str, Any] = {"masters": 3, "entities": args.entities,
                                      "batch": args.batch, "rounds": args.rounds,
                                      "load_before": load_before, "pid": os.getpid()}
            result["write"] = part_write(args, store, client, layout)
            result["read"] = {str(size): part_read(args, store, sequential, client, layout,
                                                   size) for size in (1, 100)}
            result["load_after"] = loadavg()
            store.close()
            sequential.close()
        finally:
            cluster.stop()
    result["machine"] = common.machine()
    common.publish(result, RESULTS / "online_cluster.json", markdown(result))


if __name__ == "__main__":
    main()
