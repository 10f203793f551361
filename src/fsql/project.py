"""The Python API. The CLI is a thin skin over ``Project``; notebooks use it directly.

Every method opens the engine for the duration of the call, so a notebook holding a ``Project``
never keeps the DuckDB file locked against ``fsql build`` in a terminal. Only ``build`` writes
the file; the other methods run on an in-memory database (reading the file only for sources
declared as its tables).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from fsql.attribution import attribute
from fsql.build import BuildResult, Progress, build
from fsql.compile import CompiledProject, Compiler, manifest, plan_training_set, write_target
from fsql.config import Target, load_project_config, load_target
from fsql.definitions import FEATURE_CUTOFFS, FeatureCutoff, FeatureRef, FeatureView, OnDemandView
from fsql.engines import Column, Engine, connect
from fsql.errors import EngineError, QueryFailed, RequestError, known_names
from fsql.graph import Selection
from fsql.loader import ProjectSpec, load_project
from fsql.paths import TargetPaths, migrate_legacy_layout
from fsql.pit import ROW_ID

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from fsql.diff import Change
    from fsql.freshness import Freshness
    from fsql.online.base import OnlineStore
    from fsql.online.sync import SyncResult
    from fsql.quality import TestResult
    from fsql.serve import OnlineResult, OnlineService
    from fsql.verify import ViewCheck

_SPINE_RELATION = "__fsql_spine"
log = logging.getLogger(__name__)
# a library stays quiet unless its user configures logging (the CLI logs to the target's file)
logging.getLogger("fsql").addHandler(logging.NullHandler())


@contextmanager
def spine_relation(engine: Engine, table: pa.Table) -> Iterator[tuple[exp.Table, list[Column]]]:
    """``table`` registered as the spine of a point-in-time query (``historical_features``),
    with its columns as the engine types them, until exit."""
    engine.register(_SPINE_RELATION, table)
    try:
        relation = exp.to_table(_SPINE_RELATION, quoted=True)
        yield relation, engine.describe(exp.select("*").from_(relation))
    finally:
        engine.unregister(_SPINE_RELATION)


class Project:
    """An fsql project directory bound to one target.

    Args:
        path: the project directory (holding ``fsql_project.yml``).
        target: a target of ``profiles.yml``; default ``FSQL_TARGET`` or the profile's default.
        profiles_dir: where ``profiles.yml`` is; default ``FSQL_PROFILES_DIR`` or ``path``.
        vars: values replacing the ``vars:`` of ``fsql_project.yml`` (``--vars``).

    Outputs of the old shared ``target/`` layout are moved into this target's folder (see
    ``fsql.paths``) the first time a project is opened, with one line on stderr.
    """

    def __init__(self, path: str | Path = ".", target: str | None = None,
                 profiles_dir: str | Path | None = None,
                 vars: dict[str, Any] | None = None) -> None:
        self.config = load_project_config(Path(path).resolve(), vars)
        self.target: Target = load_target(self.config, target,
                                          Path(profiles_dir) if profiles_dir else None)
        migration = migrate_legacy_layout(self.paths)
        if migration is not None:
            sys.stderr.write(migration.message() + "\n")
            log.info("%s", migration.message())

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def paths(self) -> TargetPaths:
        """Where fsql writes this target's outputs (``target/<target>/`` by default)."""
        return self.target.paths

    def selection(self, project: CompiledProject, select: Iterable[str] = (),
                  exclude: Iterable[str] = ()) -> Selection:
        """``--select`` minus ``--exclude``, with the nodes ``state:modified`` matches: those
        whose definition hash differs from (or is missing in) this target's last build
        manifest."""
        import json

        modified = None
        path = self.paths.build_manifest
        if path.is_file():
            built = json.loads(path.read_text())
            before = {**built.get("nodes", {}),
                      **{f"training_set:{n}": e for n, e in built.get("training_sets", {}).items()}}
            now = {**{i: n.hash for i, n in project.nodes.items()},
                   **{f"training_set:{n}": t.hash for n, t in project.training_sets.items()}}
            modified = frozenset(i for i, h in now.items() if before.get(i, {}).get("hash") != h)
        return Selection(tuple(select), tuple(exclude), modified)

    def load(self) -> ProjectSpec:
        """Read and validate every definition file (no SQL rendering)."""
        return load_project(self.config)

    @contextmanager
    def _engine(self, writable: bool = False) -> Iterator[Engine]:
        """An engine session for one call. Only ``build`` asks for a ``writable`` one (the
        project's database file, read-write); every other verb reads, so any number of them
        run side by side (see ``fsql.engines.duckdb``)."""
        engine = connect(self.target.offline, str(self.root), writable)
        try:
            yield engine
        finally:
            engine.close()

    @contextmanager
    def _compiled(self) -> Iterator[tuple[Engine, CompiledProject]]:
        """Engine plus compiled project, with every relation present as a view until exit;
        nothing is committed. A failure on the data names the node whose SQL failed
        (``fsql.attribution``)."""
        spec = self.load()
        project: CompiledProject | None = None
        with self._engine() as engine:
            try:
                with engine.rollback_only():
                    project = _compile(spec, engine, self.paths)
                    yield engine, project
            except QueryFailed as err:
                if project is None:
                    raise
                raise attribute(project, engine, project.graph.order, err) from None

    def compile(self, write: bool = True) -> CompiledProject:
        """Validate everything and render all SQL; with ``write``, fill ``target/``."""
        with self._compiled() as (_, project):
            pass
        if write:
            write_target(project, self.paths)
        return project

    def preview(self, name: str, limit: int) -> dict[str, Any]:
        """``fsql show NAME --limit N``: the first rows of a model, view, source or training
        set, as ``{"name", "columns", "rows"}`` (computed on an in-memory session)."""
        from fsql.listing import preview

        with self._compiled() as (engine, project):
            return preview(project, engine, name, limit)

    def build(self, select: Iterable[str] = (), progress: Progress | None = None,
              test: bool = True, exclude: Iterable[str] = ()) -> BuildResult:
        """``fsql build``: materialize models and views, write training sets. With ``test``,
        the data tests of everything built run first; a failure publishes nothing."""
        spec = self.load()
        with self._engine(writable=True) as engine:  # one connection: validate, then build
            with engine.rollback_only():
                project = _compile(spec, engine, self.paths)
            write_target(project, self.paths)
            result = build(project, engine, self.selection(project, select, exclude),
                           self.target.name, progress, run_tests=test)
        _write_json(self.paths.build_manifest, manifest(project))
        return result

    def training_set(self, name: str, rebuild: bool = False) -> pd.DataFrame:
        """The training set ``fsql build`` last published for this target, as a DataFrame.
        With ``rebuild``, compute it afresh instead (nothing is written)."""
        return _to_pandas(self.training_set_arrow(name, rebuild))

    def training_set_arrow(self, name: str, rebuild: bool = False) -> pa.Table:
        """``training_set`` as an Arrow table."""
        spec = self.load()
        definition = spec.training_sets.get(name)
        if definition is None:
            raise RequestError(f"no training set named '{name}'; "
                               f"{known_names(name, spec.training_sets)}")
        if not rebuild:
            import pyarrow.parquet as pq

            published = self.paths.training_set(definition)
            if not published.exists():  # a file, or a directory (Spark)
                raise RequestError(
                    f"training set '{name}' has not been built for target "
                    f"'{self.target.name}' (no {published}); run `fsql -t {self.target.name} "
                    f"build -s training_set:{name}`, or pass rebuild=True to compute it")
            return pq.read_table(published)
        with self._compiled() as (engine, project):
            ts = project.training_sets[name]
            try:
                return engine.fetch_arrow(ts.query)
            except EngineError as err:
                from fsql.build import on_demand_failure

                raise on_demand_failure(f"training set '{name}'", ts.plan, err) from None

    def historical_features(self, spine: Any, features: str | Sequence[str],
                            timestamp: str | None = None,
                            feature_cutoff: FeatureCutoff | None = None) -> pd.DataFrame:
        """Join features point-in-time onto ``spine`` (a DataFrame or Arrow table).

        Same rules and same SQL generator as ``fsql build``. ``features`` is a list of
        ``view`` / ``view.feature`` names, or the name of a training set (feature service),
        whose spine timestamp column is then the default ``timestamp`` and whose
        ``feature_cutoff`` the default cutoff. ``feature_cutoff="exclusive"`` leaves out
        feature rows stamped exactly at the spine time (default: ``"inclusive"``). Returns the
        spine's rows in their original order and index, with the feature columns appended.
        """
        import pandas as pd
        import pyarrow as pa

        if feature_cutoff is not None and feature_cutoff not in FEATURE_CUTOFFS:
            raise RequestError(f"feature_cutoff must be 'inclusive' or 'exclusive', "
                               f"not {feature_cutoff!r}")
        refs, timestamp, naming, cutoff = self._resolve_features(features, timestamp)
        frame = spine if isinstance(spine, pd.DataFrame) else spine.to_pandas()
        table = spine if isinstance(spine, pa.Table) else pa.Table.from_pandas(
            spine, preserve_index=False)
        if ROW_ID in table.column_names:
            raise RequestError(f"the spine may not have a column named {ROW_ID}")
        table = table.append_column(ROW_ID, pa.array(range(table.num_rows), pa.int64()))
        with self._compiled() as (engine, project), spine_relation(engine, table) as (
                relation, columns):
            plan = plan_training_set(project.spec, refs, relation, columns, timestamp,
                                     naming, project.nodes, spine_output=(),
                                     order_by=(ROW_ID,),
                                     feature_cutoff=feature_cutoff or cutoff)
            try:
                result = engine.fetch_arrow(engine.pit_strategy().query(plan))
            except EngineError as err:
                from fsql.build import on_demand_failure

                raise on_demand_failure("historical_features", plan, err) from None
        joined = _to_pandas(result)
        joined.index = frame.index
        return pd.concat([frame, joined], axis=1)

    def test(self, select: Iterable[str] = (), exclude: Iterable[str] = (),
             progress: Progress | None = None, store_failures: bool = False
             ) -> list[TestResult]:
        """``fsql test``: run the declared data tests of the selected nodes (default: all) and
        write the target's ``test_results.json``, replacing the results of the tested objects
        only. With ``store_failures`` the failing rows of each failed test go to the target's
        ``test_failures/<test id>.parquet``. Returns every result; failures do not raise."""
        import json

        from fsql.quality import run, targets

        with self._compiled() as (engine, project):
            chosen = targets(project,
                             project.graph.select(self.selection(project, select, exclude)))
            results = run(project, engine, chosen, progress,
                          self.paths.test_failures if store_failures else None)
        path = self.paths.test_results
        tested = {t.id for t in chosen}
        kept: list[Any] = []
        if path.is_file():
            try:
                kept = [r for r in json.loads(path.read_text(encoding="utf-8"))
                        if r.get("object") not in tested]
            except (ValueError, AttributeError):  # unreadable or of an older layout: replace
                kept = []
        _write_json(path, kept + [r.to_json() for r in results])
        log.info("data tests: %d passed, %d did not", sum(r.status == "pass" for r in results),
                 sum(r.status != "pass" for r in results))
        return results

    def views(self) -> dict[str, FeatureView | OnDemandView]:
        """The definitions of every feature view and on-demand view, by name."""
        spec = self.load()
        return {**spec.views, **spec.on_demand}

    def view(self, name: str) -> FeatureView | OnDemandView:
        """The definition of one feature view or on-demand view."""
        views = self.views()
        if name not in views:
            raise RequestError(f"no feature view or on-demand view named '{name}'; "
                               f"{known_names(name, views)}")
        return views[name]

    def freshness(self, now: float | None = None) -> list[Freshness]:
        """``fsql freshness``: data and sync age of every view with a freshness SLA."""
        from fsql.freshness import check

        with self._compiled() as (engine, project):  # loads the definitions (once)
            online = any(v.online and v.freshness for v in project.spec.views.values())
            store = self.store() if online else None
            try:
                return check(project, engine, store, now)
            finally:
                if store is not None:
                    store.close()

    def verify(self, select: Iterable[str] = (), sample: int | None = 1000,
               seed: int | None = None, exclude: Iterable[str] = ()) -> list[ViewCheck]:
        """``fsql verify``: compare the online values of ``sample`` entities per online view
        (all with ``sample=None``) with the training path's values as of the sync. The
        sample is new on each call; ``seed`` (see ``ViewCheck.seed``) repeats one."""
        from fsql.verify import verify

        store = self.store()
        try:
            with self._compiled() as (engine, project):
                return verify(project, engine, store, engine.pit_strategy(),
                              self.selection(project, select, exclude), sample, seed)
        finally:
            store.close()

    def diff(self) -> dict[str, list[Change]]:
        """``fsql diff``: changes since the last build and since each view's last sync."""
        import json

        from fsql.diff import diff, view_manifest

        compiled = self.compile(write=False)
        current = manifest(compiled)
        result: dict[str, list[Change]] = {}
        built = self.paths.build_manifest
        if built.is_file():
            result["build"] = diff(json.loads(built.read_text()), current)
        online = [v for v in compiled.spec.views.values() if v.online]
        if online:
            store = self.store()
            try:
                changes: list[Change] = []
                for view in sorted(online, key=lambda v: v.name):
                    node = f"view:{view.name}"
                    meta = store.meta(_meta_layout(self, view.name))
                    if "manifest" in meta and node in current["nodes"]:
                        changes += diff(json.loads(meta["manifest"]),
                                        view_manifest(current, view.name))
                result["online"] = list(dict.fromkeys(changes))  # shared upstream: once
            finally:
                store.close()
        return result

    # -- online ----------------------------------------------------------------------------
    def store(self) -> OnlineStore:
        """A connection to this target's online store (close it when done)."""
        from fsql.online.base import connect

        return connect(self.target.online)

    def sync(self, select: Iterable[str] = (), full_refresh: bool = False,
             dry_run: bool = False, progress: Progress | None = None,
             now: float | None = None, test: bool = True, allow_drop: bool = False,
             warn: Callable[[str], None] | None = None, exclude: Iterable[str] = ()
             ) -> SyncResult:
        """``fsql sync``: write the latest row per entity of each online view to the store.

        ``now`` (epoch seconds) overrides the clock, for tests and backfills. With ``test``
        the views' data tests must pass first; ``allow_drop`` lets a full refresh drop more
        than the profile's ``max_drop`` share of a view's entities; ``warn`` receives warnings
        as they arise (they are also in the result).
        """
        from fsql.build import Silent
        from fsql.online.sync import Syncer

        store = self.store()
        try:
            # the lock first: an overlapping sync fails fast on it (exit 75) before it
            # competes for the DuckDB file
            with (nullcontext(None) if dry_run else store.locked()) as lock, \
                    self._compiled() as (engine, project):
                syncer = Syncer(project, engine, store, lock, progress or Silent(),
                                self.target.online.batch_size, warn or (lambda _: None))
                result = syncer.run(self.selection(project, select, exclude), full_refresh,
                                    dry_run, now, test, allow_drop)
        finally:
            store.close()
        for view in result.views:
            log.info("sync%s %s (%s): %d entities, %d written, %d unchanged, %d stale, "
                     "%d dropped, watermark %s", " (dry run)" if dry_run else "", view.view,
                     view.mode, view.entities, view.written, view.unchanged, view.stale,
                     view.dropped, view.watermark)
        for warning in result.warnings:
            log.warning("sync: %s", warning)
        return result

    def online_service(self, max_entities: int | None = None,
                       max_features: int | None = None) -> OnlineService:
        """A long-lived reader (what ``fsql serve`` uses); needs no offline engine."""
        from fsql.serve import DEFAULT_MAX_ENTITIES, DEFAULT_MAX_FEATURES, OnlineService

        return OnlineService(self.load(), self.store(), self.paths,
                             max_entities=max_entities or DEFAULT_MAX_ENTITIES,
                             max_features=max_features or DEFAULT_MAX_FEATURES)

    def online_features(self, features: str | Sequence[str], entities: dict[str, Sequence[Any]],
                        request_data: dict[str, Sequence[Any]] | None = None) -> OnlineResult:
        """Feature values for entities from the online store (Feast's get_online_features).

        ``features``: a training set name (its feature list, as trained) or ``view`` /
        ``view.feature`` names; ``entities``: join key -> list of values; ``request_data``:
        request field of on-demand features -> one value per entity row.
        """
        service = self.online_service()
        try:
            return service.get(features, entities, request_data=request_data)
        finally:
            service.store.close()

    def _resolve_features(self, features: str | Sequence[str], timestamp: str | None
                          ) -> tuple[list[FeatureRef], str, str, FeatureCutoff]:
        """Feature references, spine timestamp, naming and cutoff: a training set's, or
        the given names with plain naming and the inclusive cutoff."""
        spec = self.load()
        if isinstance(features, str):
            ts = spec.training_sets.get(features)
            if ts is None:
                raise RequestError(f"'{features}' is not a training set; pass a list of "
                                   "'view' or 'view.feature' names, or a training set name")
            return (list(ts.features), timestamp or ts.spine.timestamp, ts.naming,
                    ts.feature_cutoff)
        if timestamp is None:
            raise RequestError("give timestamp= (the spine's event time column)")
        try:
            return [FeatureRef.parse(f) for f in features], timestamp, "plain", "inclusive"
        except ValueError as err:
            raise RequestError(str(err)) from None


def _compile(spec: ProjectSpec, engine: Engine, paths: TargetPaths) -> CompiledProject:
    """Compile inside the caller's rollback-only session, data-test declarations included."""
    from fsql.errors import ProjectErrors
    from fsql.quality import check_declarations

    project = Compiler(spec, engine, engine.pit_strategy(), paths=paths).compile()
    problems = check_declarations(project)
    if problems:
        raise problems[0] if len(problems) == 1 else ProjectErrors(problems)
    return project





def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas keeping declared types: integers and booleans with nulls stay exact
    (nullable ``Int64``/``boolean``), never a float round trip."""
    import pandas as pd
    import pyarrow as pa

    exact = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
             pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
             pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
             pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
             pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=exact.get)


def _write_json(path: Path, payload: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _meta_layout(project: Project, view: str) -> Any:
    """Enough of a view's online layout to read its metadata hash."""
    from fsql.online.keys import ViewLayout

    return ViewLayout(project.target.online.namespace, view, (), (), ())
