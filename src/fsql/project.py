"""The Python API. The CLI is a thin skin over ``Project``; notebooks use it directly.

Every method opens the engine for the duration of the call, so a notebook holding a ``Project``
never keeps the DuckDB file locked against ``fsql build`` in a terminal. Only ``build`` writes
the file; the other methods run on an in-memory database (reading the file only for sources
declared as its tables).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from fsql.build import BuildResult, Progress, build
from fsql.compile import CompiledProject, Compiler, manifest, plan_training_set, write_target
from fsql.config import Target, load_project_config, load_target
from fsql.definitions import FEATURE_CUTOFFS, FeatureCutoff, FeatureRef
from fsql.engines import Engine, connect
from fsql.errors import EngineError, RequestError
from fsql.loader import ProjectSpec, load_project
from fsql.pit import ROW_ID, AsofJoin

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from fsql.diff import Change
    from fsql.freshness import Freshness
    from fsql.online.redis_store import RedisStore
    from fsql.online.sync import SyncResult
    from fsql.quality import TestResult
    from fsql.serve import OnlineResult, OnlineService
    from fsql.verify import ViewCheck

_SPINE_RELATION = "__fsql_spine"
#: the manifest the last successful ``fsql build`` used (``fsql diff`` compares with it)
BUILD_MANIFEST = Path("target", "run", "build_manifest.json")


class Project:
    """An fsql project directory bound to one target.

    Args:
        path: the project directory (holding ``fsql_project.yml``).
        target: a target of ``profiles.yml``; default ``FSQL_TARGET`` or the profile's default.
        profiles_dir: where ``profiles.yml`` is; default ``FSQL_PROFILES_DIR`` or ``path``.
    """

    def __init__(self, path: str | Path = ".", target: str | None = None,
                 profiles_dir: str | Path | None = None) -> None:
        self.config = load_project_config(Path(path).resolve())
        self.target: Target = load_target(self.config, target,
                                          Path(profiles_dir) if profiles_dir else None)

    @property
    def root(self) -> Path:
        return self.config.root

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
        nothing is committed."""
        spec = self.load()
        with self._engine() as engine, engine.rollback_only():
            yield engine, _compile(spec, engine)

    def compile(self, write: bool = True) -> CompiledProject:
        """Validate everything and render all SQL; with ``write``, fill ``target/``."""
        with self._compiled() as (_, project):
            pass
        if write:
            write_target(project)
        return project

    def build(self, select: Iterable[str] = (), progress: Progress | None = None,
              test: bool = True) -> BuildResult:
        """``fsql build``: materialize models and views, write training sets. With ``test``,
        the data tests of everything built run first; a failure publishes nothing."""
        spec = self.load()
        with self._engine(writable=True) as engine:  # one connection: validate, then build
            with engine.rollback_only():
                project = _compile(spec, engine)
            write_target(project)
            result = build(project, engine, list(select), self.target.name, progress,
                           run_tests=test)
        _write_json(self.root / BUILD_MANIFEST, manifest(project))
        return result

    def training_set(self, name: str) -> pd.DataFrame:
        """Compute a declared training set and return it as a DataFrame (nothing written)."""
        return _to_pandas(self.training_set_arrow(name))

    def training_set_arrow(self, name: str) -> pa.Table:
        with self._compiled() as (engine, project):
            ts = project.training_sets.get(name)
            if ts is None:
                raise RequestError(f"no training set named '{name}' (known: "
                                   f"{', '.join(sorted(project.training_sets)) or 'none'})")
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
        with self._compiled() as (engine, project):
            engine.register(_SPINE_RELATION, table)
            try:
                relation = exp.to_table(_SPINE_RELATION, quoted=True)
                columns = engine.describe(exp.select("*").from_(relation))
                plan = plan_training_set(project.spec, refs, relation, columns, timestamp,
                                         naming, project.nodes, spine_output=(),
                                         order_by=(ROW_ID,),
                                         feature_cutoff=feature_cutoff or cutoff)
                try:
                    result = engine.fetch_arrow(_strategy(engine).query(plan))
                except EngineError as err:
                    from fsql.build import on_demand_failure

                    raise on_demand_failure("historical_features", plan, err) from None
            finally:
                engine.unregister(_SPINE_RELATION)
        joined = _to_pandas(result)
        joined.index = frame.index
        return pd.concat([frame, joined], axis=1)

    def test(self, select: Iterable[str] = ()) -> list[TestResult]:
        """``fsql test``: run the declared data tests of the selected nodes (default: all) and
        write ``target/test_results.json``. Returns every result; failures do not raise."""
        from fsql.quality import run, targets

        with self._compiled() as (engine, project):
            chosen = project.graph.select(list(select))
            results = run(project, engine, targets(project, chosen))
        _write_json(self.root / "target" / "test_results.json",
                    [r.to_json() for r in results])
        return results

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
               seed: int | None = None) -> list[ViewCheck]:
        """``fsql verify``: compare the online values of ``sample`` entities per online view
        (all with ``sample=None``) with the training path's values as of the sync. The
        sample is new on each call; ``seed`` (see ``ViewCheck.seed``) repeats one."""
        from fsql.verify import verify

        store = self.store()
        try:
            with self._compiled() as (engine, project):
                return verify(project, engine, store, _strategy(engine), list(select), sample,
                              seed)
        finally:
            store.close()

    def diff(self) -> dict[str, list[Change]]:
        """``fsql diff``: changes since the last build and since each view's last sync."""
        import json

        from fsql.diff import diff, view_manifest

        compiled = self.compile(write=False)
        current = manifest(compiled)
        result: dict[str, list[Change]] = {}
        built = self.root / BUILD_MANIFEST
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
    def store(self) -> RedisStore:
        """A connection to this target's online store (close it when done)."""
        from fsql.online.redis_store import RedisStore

        return RedisStore(self.target.online)

    def sync(self, select: Iterable[str] = (), full_refresh: bool = False,
             dry_run: bool = False, progress: Progress | None = None,
             now: float | None = None, test: bool = True, allow_drop: bool = False,
             warn: Callable[[str], None] | None = None) -> SyncResult:
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
                return syncer.run(select, full_refresh, dry_run, now, test, allow_drop)
        finally:
            store.close()

    def online_service(self, max_entities: int | None = None,
                       max_features: int | None = None) -> OnlineService:
        """A long-lived reader (what ``fsql serve`` uses); needs no offline engine."""
        from fsql.serve import DEFAULT_MAX_ENTITIES, DEFAULT_MAX_FEATURES, OnlineService

        return OnlineService(self.load(), self.store(),
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


def _compile(spec: ProjectSpec, engine: Engine) -> CompiledProject:
    """Compile inside the caller's rollback-only session, data-test declarations included."""
    from fsql.errors import ProjectErrors
    from fsql.quality import check_declarations

    project = Compiler(spec, engine, _strategy(engine)).compile()
    problems = check_declarations(project)
    if problems:
        raise problems[0] if len(problems) == 1 else ProjectErrors(problems)
    return project


def _strategy(engine: Engine) -> AsofJoin:
    if not engine.supports_asof:
        raise RequestError(f"the {engine.dialect} engine has no point-in-time join strategy yet")
    return AsofJoin()


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
