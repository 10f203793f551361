"""Run a compiled project: materialize models and views, write training sets atomically.

Order of a build (a failure at any step before "publish" leaves every previous output intact):

1. in one engine transaction: create models, sources and feature views in DAG order, run their
   data tests (before the costly step, so a failing view test fails fast), then write each
   selected training set to a temporary Parquet file next to its final path (one pass, the
   leakage guard checking every row on its way), check that it has exactly one row per spine
   row, and run the training sets' data tests;
2. commit;
3. publish: rename each temporary file over its final path (atomic per file), write its build
   record beside it, and (re)create an engine view over the published file.

An engine that writes a Parquet directory (Spark) is published the same way, by renames: the
previous directory is moved aside, the new one renamed into place, then the old one deleted.
A crash between the two renames leaves the previous output under ``.NAME.<pid>.old``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlglot import exp

from fsql import __version__, quality
from fsql.attribution import attribute, describe_training_set
from fsql.compile import CompiledProject, CompiledTrainingSet, build_record
from fsql.engines.base import Engine
from fsql.errors import EngineError, QueryFailed
from fsql.graph import Selectors
from fsql.pit import PitPlan, guarded_query, leakage_checks
from fsql.quality import TestTarget

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives build progress (the CLI draws a bar; the API default ignores it)."""

    def start(self, total: int) -> None: ...

    def step(self, label: str, seconds: float | None) -> None:
        """Called before (``seconds`` None) and after each step."""


class Silent:
    def start(self, total: int) -> None:
        pass

    def step(self, label: str, seconds: float | None) -> None:
        pass


@dataclass(frozen=True, slots=True)
class TrainingSetResult:
    """What one training set build produced."""

    name: str
    output: Path
    record: Path
    rows: int
    columns: int
    seconds: float
    time_range: tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class BuildResult:
    """Summary of one ``fsql build``."""

    relations: tuple[tuple[str, str, float], ...]  # (node id, materialized, seconds)
    training_sets: tuple[TrainingSetResult, ...]
    seconds: float
    #: failing data tests with ``severity: warn`` (they do not block the build)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "relations": [{"node": n, "materialized": m, "seconds": round(s, 3)}
                          for n, m, s in self.relations],
            "training_sets": [{
                "name": t.name, "output": str(t.output), "record": str(t.record),
                "rows": t.rows, "columns": t.columns, "seconds": round(t.seconds, 3),
                "spine_time_range": list(t.time_range)} for t in self.training_sets],
            "warnings": list(self.warnings),
        }


class _Step:
    """Times one step and reports it to the progress display."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.label, self.seconds = progress, label, 0.0

    def __enter__(self) -> _Step:
        self.progress.step(self.label, None)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        if exc[0] is None:
            self.progress.step(self.label, self.seconds)
            log.info("%s: done in %.2fs", self.label, self.seconds)
        else:
            log.info("%s: failed after %.2fs", self.label, self.seconds)


def build(project: CompiledProject, engine: Engine, selectors: Selectors = (),
          target: str = "dev", progress: Progress | None = None, run_tests: bool = True
          ) -> BuildResult:
    """Build the selected nodes (and everything they depend on). With ``run_tests``, the data
    tests of every built relation and staged training set must pass before anything is
    committed or published."""
    step = progress or Silent()
    started = time.perf_counter()
    graph = project.graph
    selected = graph.select(selectors)
    order = [n for n in graph.with_upstream(selected)
             if not n.startswith("training_set:") or n in selected]
    with_tests = run_tests and any(project.training_sets[n.split(":", 1)[1]].definition.tests
                                   for n in order if n.startswith("training_set:"))
    step.start(len(order) + int(run_tests) + int(with_tests))
    relations: list[tuple[str, str, float]] = []
    staged: list[_Staged] = []
    temporary: list[Path] = []
    running: str | None = None  # the training set being written, for a runtime error
    warned: list[str] = []
    try:
        with engine.transaction():
            for node_id in order:
                if node_id.startswith("training_set:"):
                    continue
                node = project.nodes[node_id]
                with _Step(step, f"{node.materialized} {node_id}") as timer:
                    engine.replace_relation(node.relation, node.query, node.materialized)
                relations.append((node_id, node.materialized, timer.seconds))
            if run_tests:
                with _Step(step, "data tests"):
                    warned += _run_tests(project, engine, quality.targets(
                        project, [n for n in order if not n.startswith("training_set:")]))
            for node_id in order:
                if node_id.startswith("training_set:"):
                    ts = project.training_sets[node_id.split(":", 1)[1]]
                    tmp = ts.output.with_name(f".{ts.output.name}.{os.getpid()}.tmp")
                    tmp.parent.mkdir(parents=True, exist_ok=True)
                    temporary.append(tmp)
                    running = describe_training_set(ts)
                    with _Step(step, f"training set {ts.definition.name}") as timer:
                        rows, time_range, guard = _write_training_set(engine, ts, tmp)
                    staged.append(_Staged(ts, tmp, rows, time_range, timer.seconds, guard))
                    running = None
            if with_tests:
                with _Step(step, "training set data tests"):
                    warned += _run_tests(project, engine, [
                        t for s in staged if (t := quality.training_set_target(
                            s.ts, engine.parquet_query(s.tmp).subquery())) is not None])
    except BaseException as err:
        for tmp in temporary:
            _remove(tmp)
        if isinstance(err, QueryFailed):
            raise attribute(project, engine, [n for n in order if n in project.nodes], err,
                            running) from None
        raise
    results = [_publish(project, engine, s, target) for s in staged]
    return BuildResult(tuple(relations), tuple(results), time.perf_counter() - started,
                       tuple(warned))


def _run_tests(project: CompiledProject, engine: Engine, chosen: list[TestTarget]
               ) -> list[str]:
    """The build's gate; returns the failing ``severity: warn`` tests, one line each."""
    return [f"data test {r.summary()}" for r in quality.require_passing(
        project, engine, chosen, "nothing was published", "build with --no-test")]


@dataclass(frozen=True, slots=True)
class _Staged:
    """A training set written to its temporary file, not yet published."""

    ts: CompiledTrainingSet
    tmp: Path
    rows: int
    time_range: tuple[str | None, str | None]
    seconds: float
    leakage_guard: dict[str, Any]


def on_demand_failure(what: str, plan: PitPlan, err: EngineError) -> EngineError:
    """A failed point-in-time query of a training set with on-demand features: DuckDB raises
    where an expression fails (an integer overflow, a division by zero), so the message names
    the on-demand views' files; other failures pass unchanged."""
    views = plan.on_demand
    if not views or not any(word in str(err) for word in ("Out of Range", "Division by zero",
                                                            "Conversion Error")):
        return err
    where = ", ".join(f"{od.name} ({od.path})" for od in views)
    return EngineError(f"{what}: an on-demand expression failed on its spine rows, in "
                       f"on-demand view {where}: {err}")


def _write_training_set(engine: Engine, ts: CompiledTrainingSet, tmp: Path
                        ) -> tuple[int, tuple[str | None, str | None], dict[str, Any]]:
    """Write the training set to ``tmp`` after checking it; return its row count, spine time
    range and the leakage guard's record.

    The point-in-time query runs once, with each view's chosen event time (audit columns),
    and its rows go through the leakage guard on their way to the file (``guarded_query``: no
    feature from a row stamped after its spine time, none from a row older than the ttl); a
    leaking row fails the write. Only then is the file checked to hold exactly one row per
    spine row.
    """
    name = ts.definition.name
    # a feature value from the future or past its ttl is a bug in fsql: never publish
    leaked = (f"training set '{name}': the leakage guard found rows joined outside [spine time "
              f"- ttl, spine time{')' if ts.plan.exclusive else ']'} in view ")
    try:
        engine.write_parquet(guarded_query(ts.plan, ts.audit_query, lambda view: (
            engine.raise_error(f"{leaked}'{view}'; nothing was published"))), tmp)
    except EngineError as err:
        message = str(err)
        if leaked in message:  # the engine's prefix dropped
            raise EngineError(message[message.index(leaked):]) from None
        raise on_demand_failure(f"training set '{name}'", ts.plan, err) from None
    spine = exp.column(ts.plan.spine_ts, quoted=True)
    written, low, high = engine.fetch_arrow(exp.select(
        exp.alias_(exp.func("count", exp.Star()), "rows"),
        exp.alias_(exp.Min(this=spine.copy()), "low"),
        exp.alias_(exp.Max(this=spine), "high")).from_(
        engine.parquet_query(tmp).subquery())).to_pylist()[0].values()
    spine_rows = engine.fetch_arrow(exp.select(exp.func("count", exp.Star())).from_(
        ts.plan.spine.copy())).column(0)[0].as_py()
    if written != spine_rows:
        # every spine row exactly once: anything else would silently corrupt training data
        raise EngineError(f"training set '{name}': wrote {written} rows for "
                          f"{spine_rows} spine rows; nothing was published")
    upper = "<" if ts.plan.exclusive else "<="
    guard = {"checked_rows": written,
             "violations": {view: 0 for view, _ in leakage_checks(ts.plan)},
             "rule": f"every joined row has spine_ts - ttl <= event_ts {upper} spine_ts"}
    return written, (None if low is None else str(low), None if high is None else str(high)), \
        guard


def _publish(project: CompiledProject, engine: Engine, staged: _Staged, target: str
             ) -> TrainingSetResult:
    ts, rows, seconds = staged.ts, staged.rows, staged.seconds
    name = ts.definition.name
    graph_id = f"training_set:{name}"
    upstream = project.graph.upstream(graph_id)
    record = {
        "training_set": name,
        "fsql_version": __version__,
        "project": project.spec.config.name,
        "target": target,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "output": str(ts.output),
        "rows": rows,
        "seconds": round(seconds, 3),
        "spine": {"model": ts.definition.spine.model, "source": ts.definition.spine.source,
                  "timestamp": ts.plan.spine_ts, "time_range": list(staged.time_range)},
        "feature_cutoff": ts.plan.feature_cutoff,
        "hash": ts.hash,
        "leakage_guard": staged.leakage_guard,
        "definitions": {n: project.nodes[n].hash for n in sorted(upstream)
                        if n in project.nodes},
        "features": [{"view": j.view.name, "feature": f.name, "column": out,
                      "type": f.dtype.name, "ttl": str(j.view.ttl) if j.view.ttl else None}
                     for j in ts.plan.joins for f, out in zip(j.features, j.output_names,
                                                               strict=True)],
        "compiled_sql": ts.query.sql(project.dialect, pretty=True),
    }
    record_path = build_record(ts.output)
    tmp_record = record_path.with_name(f".{record_path.name}.tmp")
    tmp_record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    # the data, then its record: two atomic renames, back to back
    _rename_over(staged.tmp, ts.output)
    tmp_record.replace(record_path)
    with engine.transaction():
        engine.replace_relation(name, engine.parquet_query(ts.output), "view")
    columns = len(ts.plan.output_spine) + len(ts.plan.feature_columns)
    log.info("published training set %s: %d rows -> %s", name, rows, ts.output)
    return TrainingSetResult(name, ts.output, record_path, rows, columns, seconds,
                             staged.time_range)


def _remove(path: Path) -> None:
    """Delete a Parquet output: a file, or the directory an engine like Spark writes."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _rename_over(new: Path, final: Path) -> None:
    """Put ``new`` at ``final``: one atomic rename for a file over a file; for a directory
    (or a file replacing one) move the old output aside first, then delete it."""
    if not new.is_dir() and not final.is_dir():
        new.replace(final)
        return
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        final.replace(old)
    new.replace(final)
    _remove(old)
