"""What the benchmark scripts (``pit_build.py``, ``online.py``) share: measuring a run (CPU
time, peak RSS, a run in a fresh subprocess, median/min/max, the machine, writing the results)
and setting up what they measure: the seeded synthetic data (heavy-tailed keys, the
``activity`` and ``profile`` feature views) and the fsql project over it.

The scripts run as ``python benchmarks/<script>.py`` (also in the subprocesses they start with
``--run ...``), so ``benchmarks/`` is first on ``sys.path`` and ``import common`` finds this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The repository root, so that the scripts can import ``tests.redis_server`` (the redis-server
# the tests start is the one online.py benchmarks against). Added once, here.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def log(message: str) -> None:
    """Progress goes to stderr (stdout carries the results)."""
    print(message, file=sys.stderr, flush=True)


# -- measuring -----------------------------------------------------------------------------------

def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


class DiskPeak:
    """The peak disk space taken by the files under the directories matching ``pattern`` in
    ``parent`` (DuckDB's spill directory), sampled every ``interval`` seconds by a background
    thread while the ``with`` block runs (allocated blocks, as ``du`` counts them)."""

    def __init__(self, parent: Path, pattern: str, interval: float = 0.2) -> None:
        import threading

        self.parent, self.pattern, self.interval = parent, pattern, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.used())
            if self._stop.wait(self.interval):
                return

    def used(self) -> int:
        total = 0
        for directory in self.parent.glob(self.pattern):
            for path, _, files in os.walk(directory):
                for name in files:
                    try:
                        total += os.stat(os.path.join(path, name)).st_blocks * 512
                    except FileNotFoundError:  # removed while we looked
                        continue
        return total


def run_report(command: list[str], what: str) -> dict[str, Any]:
    """Run ``command`` (a fresh interpreter doing one ``what`` run) and return the JSON report
    it printed last on stdout; stop the benchmark if it failed."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {what} run failed (exit {done.returncode}):\n"
                         f"{done.stderr[-4000:]}")
    report = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(report))


def stats(values: list[float], digits: int = 3) -> dict[str, Any]:
    """median/min/max (and every run) of one measurement."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "runs": [round(v, digits) for v in values]}


def cell(s: dict[str, Any], digits: int = 2) -> str:
    """A markdown table cell of ``stats``: ``median (min-max)``."""
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def machine(**extra: str) -> dict[str, Any]:
    """CPUs, RAM and the versions that matter; ``extra`` versions go before the platform."""
    import duckdb

    import fsql

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {"nproc": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1), "cpu": cpu,
            "python": platform.python_version(), "duckdb": duckdb.__version__,
            "fsql": fsql.__version__, **extra, "platform": platform.platform()}


def publish(result: dict[str, Any], path: Path, markdown: str) -> None:
    """Write ``result`` as JSON to ``path``; its ``markdown`` goes to stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    log(f"\nresults: {path}")


# -- DuckDB (the hand-written contenders) --------------------------------------------------------

def sql_string(path: Path | str) -> str:
    """``path`` as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def duckdb_connect(threads: int, memory_limit: str, database: str = ":memory:") -> Any:
    """A DuckDB connection with the settings fsql's profile gives its own."""
    import duckdb

    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET memory_limit = ?", [memory_limit])
    return con


# -- synthetic data ------------------------------------------------------------------------------

def cached_data(directory: Path, version: int, generate: Callable[[Path], dict[str, Any]],
                max_age_h: float | None = None) -> dict[str, Any]:
    """The meta of the data in ``directory``: reused if it is of ``version`` (and younger than
    ``max_age_h`` hours), else ``generate(directory)`` writes it afresh and returns its meta."""
    meta_path = directory / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        age_h = (time.time() - meta.get("generated_at", 0)) / 3600
        if meta.get("version") == version and (max_age_h is None or age_h < max_age_h):
            return dict(meta)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    started = time.perf_counter()
    log(f"generating data in {directory} ...")
    meta = generate(directory)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"  done in {meta['seconds']} s")
    return meta


DAY_S = 86_400
CHANNELS = ["web", "ios", "android", "email", "store", "partner"]
CHANNEL_P = [.4, .2, .2, .1, .07, .03]
TIERS, TIER_P = ["free", "basic", "pro", "enterprise"], [.6, .25, .12, .03]
COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "IT", "MX", "NL", "PL", "SE",
             "AU", "KR", "TR", "AR", "ZA", "NG"]


class Synthetic:
    """Seeded columns and tables over ``entities`` entities (ids ``0 .. entities - 1``).

    Every method draws from the one generator ``rng``, so the data depends on the order of the
    calls (and of the draws inside each method): changing either changes the data, and the
    scripts' cached data must then get a new ``DATA_VERSION``.
    """

    def __init__(self, seed: int, entities: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.entities = entities

    def timestamps(self, micros: Any, null_fraction: float = 0.0) -> Any:
        """Microseconds since the epoch as a timestamp column (a draw only for the nulls)."""
        import numpy as np
        import pyarrow as pa

        mask = self.rng.random(len(micros)) < null_fraction if null_fraction else None
        return pa.array(micros.astype(np.int64), pa.timestamp("us"), mask=mask)

    def ints(self, values: Any, null_fraction: float) -> Any:
        import numpy as np
        import pyarrow as pa

        return pa.array(values.astype(np.int64), pa.int64(),
                        mask=self.rng.random(len(values)) < null_fraction)

    @staticmethod
    def strings(values: list[str], index: Any) -> Any:
        """``values[index]`` as a plain string column."""
        import pyarrow as pa

        return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()),
                                              pa.array(values)).cast(pa.string())

    def keys(self, rows: int, span: int) -> tuple[Any, Any]:
        """(entity, second in ``[0, span)``) pairs, unique, with heavy-tailed rows per entity,
        ~5% of entities without rows; sorted by time (a log appended in event order)."""
        import numpy as np

        rng, entities = self.rng, self.entities
        weights = rng.pareto(1.5, entities) + 0.05
        weights[rng.random(entities) < 0.05] = 0.0
        extra = rows // 100 + 100  # oversample, then drop duplicates and the surplus
        counts = rng.multinomial(rows + extra, weights / weights.sum())
        entity = np.repeat(np.arange(entities, dtype=np.int64), counts)
        key = np.sort(entity * span + rng.integers(0, span, len(entity)))
        key = key[np.concatenate(([True], key[1:] != key[:-1]))]
        key = np.sort(rng.choice(key, rows, replace=False))
        entity, second = np.divmod(key, span)
        order = np.argsort(second, kind="stable")
        return entity[order], second[order]

    def corrected_keys(self, rows: int, span: int) -> tuple[Any, Any, Any, Any, int]:
        """``rows`` keys of a view with a created timestamp, in ingestion (created) order:
        ``entity, second, created second, created is null, corrections``. ~1% are
        same-timestamp corrections (later created, other values); created = second + 1 minute
        to 2 days (+ 1 s to 7 days more for a correction); ~0.5% null created timestamps
        (never a correction's), which lose every tie."""
        import numpy as np

        rng = self.rng
        corrections = rows // 100
        base = rows - corrections
        entity, second = self.keys(base, span)
        fixed = np.sort(rng.choice(base, corrections, replace=False))
        delay = rng.integers(60, 2 * DAY_S, base)
        created = np.concatenate([second + delay, second[fixed] + delay[fixed]
                                  + rng.integers(1, 7 * DAY_S, corrections)])
        entity = np.concatenate([entity, entity[fixed]])
        second = np.concatenate([second, second[fixed]])
        created_null = np.concatenate([rng.random(base) < 0.005, np.zeros(corrections, bool)])
        order = np.argsort(created, kind="stable")  # the file is in ingestion order
        return entity[order], second[order], created[order], created_null[order], corrections

    def activity(self, entity: Any, micros: Any, null_ts: float) -> Any:
        """The ``activity`` view's table: clicks int64, spend float64, channel string."""
        import numpy as np
        import pyarrow as pa

        rng, n = self.rng, len(entity)
        return pa.table({
            "entity_id": pa.array(entity, pa.int64()),
            "event_ts": self.timestamps(micros, null_ts),
            "clicks": self.ints(rng.poisson(3.0, n), 0.05),
            "spend": pa.array(np.round(rng.lognormal(3.0, 1.0, n), 2), pa.float64()),
            "channel": self.strings(CHANNELS, rng.choice(len(CHANNELS), n, p=CHANNEL_P)),
        })

    def profile(self, entity: Any, micros: Any, created: Any, created_null: Any,
                null_ts: float) -> Any:
        """The ``profile`` view's table: tier string, credit_limit int64, score float64,
        country string."""
        import numpy as np
        import pyarrow as pa

        rng, n = self.rng, len(entity)
        return pa.table({
            "entity_id": pa.array(entity, pa.int64()),
            "snapshot_ts": self.timestamps(micros, null_ts),
            "ingested_at": pa.array(created.astype(np.int64), pa.timestamp("us"),
                                    mask=created_null),
            "tier": self.strings(TIERS, rng.choice(len(TIERS), n, p=TIER_P)),
            "credit_limit": self.ints(rng.integers(0, 100, n) * 10_000, 0.1),
            "score": pa.array(rng.normal(0.0, 1.0, n), pa.float64()),
            "country": self.strings(COUNTRIES, rng.zipf(1.5, n) % len(COUNTRIES)),
        })


# -- the fsql project ----------------------------------------------------------------------------

def write_project(root: Path, name: str, tables: dict[str, Path], training_set: str,
                  views: dict[str, str], threads: int, memory_limit: str,
                  online: dict[str, str] | None = None) -> Path:
    """(Re)write a benchmark's fsql project in ``root``. ``views`` (file -> text, dedented)
    define its feature views; the rest is common: the source ``bench`` of the ``tables``
    (``spine`` and one per view), the entity ``entity`` (``entity_id``), the training set
    ``training_set`` over every view, and the profile ``name`` with the contenders' DuckDB
    settings and the ``online`` store's, if any."""
    features = [table for table in tables if table != "spine"]
    store = ["online:", *(f"  {key}: {value}" for key, value in online.items())] if online else []
    texts = {
        "fsql_project.yml": f"name: {name}\nprofile: {name}\n",
        "profiles.yml": textwrap.dedent(f"""\
            {name}:
              target: bench
              outputs:
                bench:
                  offline:
                    type: duckdb
                    path: target/bench.duckdb
                    threads: {threads}
                    memory_limit: {memory_limit}
            """) + "".join(f"      {line}\n" for line in store),
        "models/sources.yml": "sources:\n  - name: bench\n    tables:\n" + "".join(
            f"      - name: {table}\n        path: {json.dumps(os.path.relpath(path, root))}\n"
            for table, path in tables.items()),
        "features/entities.yml": "entities:\n  - name: entity\n    join_keys: [entity_id]\n",
        **views,
        "features/training_sets.yml": textwrap.dedent(f"""\
            training_sets:
              - name: {training_set}
                spine:
                  source: bench.spine
                  timestamp: label_ts
                features: [{", ".join(features)}]
            """),
    }
    for file, text in texts.items():
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def spark_arguments(parser: argparse.ArgumentParser, repeat: int, memory: str) -> None:
    """The options every Spark benchmark takes: runs, local threads, driver memory."""
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", default=memory, help="Spark driver memory")


def spark_session(app: str, threads: int, memory: str, conf: dict[str, str]) -> Any:
    """A local Spark session (``local[threads]``, no UI, UTC) with ``conf`` on top."""
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(f"local[{threads}]").appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.driver.memory", memory))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
