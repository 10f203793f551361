"""Compile a project: render -> parse -> check against the engine -> plan training sets.

``Compiler.compile`` must run inside ``engine.rollback_only()``: every model and view is created
as a view so the engine can type its columns; nothing is materialized, no data is read, and the
rollback leaves no trace.
``write_target`` is the only I/O here: the target's ``compiled/**.sql`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlglot import exp

from fsql import __version__
from fsql.analyze import check_view, parse_query
from fsql.definitions import Feature, FeatureCutoff, FeatureView, Model, Source, TrainingSet
from fsql.dtypes import TIME_TYPES, FeatureType
from fsql.engines.base import PROJECT_DIALECT, Column, DialectError, Engine
from fsql.errors import (
    DefinitionError,
    EngineError,
    ErrorCollector,
    RequestError,
    did_you_mean,
    known_names,
)
from fsql.graph import Graph
from fsql.labels import label_leaks
from fsql.loader import ProjectSpec
from fsql.paths import TargetPaths
from fsql.pit import OnDemandJoin, PitPlan, PitStrategy, ViewJoin, default_order
from fsql.render import Renderer
from fsql.row_windows import row_windows

# Fields that do not change a definition's values: they do not change its hash.
# a label and its lineage opt-out are checked at compile; they do not change the built rows
_COSMETIC = {"path", "line", "sql_path", "description", "owner", "tags", "tests", "freshness",
             "label", "label_line", "allow_label_lineage"}


@dataclass(frozen=True, slots=True)
class CompiledNode:
    """A source, model or feature view, ready to run."""

    id: str
    kind: str
    name: str
    relation: str
    query: exp.Query
    materialized: str
    columns: tuple[Column, ...]
    definition: Source | Model | FeatureView
    hash: str
    #: a feature view's rows with their identity, when the engine can name them
    #: (``Engine.row_identity``; not part of the hash: it reads the same rows)
    rows: exp.Select | None = None


@dataclass(frozen=True, slots=True)
class CompiledTrainingSet:
    """A training set's point-in-time query and where its output goes."""

    definition: TrainingSet
    plan: PitPlan
    query: exp.Select
    output: Path
    hash: str
    #: the same query plus each view's chosen event time, for the build's leakage guard
    audit_query: exp.Select


@dataclass(frozen=True, slots=True)
class CompiledProject:
    """Everything needed to build, inspect or serve a project."""

    spec: ProjectSpec
    graph: Graph
    nodes: MappingProxyType[str, CompiledNode]
    training_sets: MappingProxyType[str, CompiledTrainingSet]
    dialect: str

    def view(self, name: str) -> CompiledNode:
        node = self.nodes.get(f"view:{name}")
        if node is None:
            raise RequestError(f"no feature view named '{name}'; "
                               f"{known_names(name, self.spec.views)}")
        return node


def _near(feature: str, features: list[str]) -> str:
    """The hint for a feature a view does not have: the nearest name and all of them."""
    return f"{did_you_mean(feature, features)}its features: {', '.join(features)}."


def _semantic(value: Any) -> Any:
    """The parts of a definition that change results (not descriptions or file positions)."""
    if isinstance(value, FeatureType):
        return value.name
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _semantic(getattr(value, f.name)) for f in fields(value)
                if f.name not in _COSMETIC}
    if isinstance(value, tuple | list):
        return [_semantic(v) for v in value]
    return value


def fingerprint(*parts: Any) -> str:
    payload = json.dumps([_semantic(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Compiler:
    """Turns a ``ProjectSpec`` into a ``CompiledProject`` on one engine."""

    def __init__(self, spec: ProjectSpec, engine: Engine,
                 strategy: PitStrategy | None = None, *, paths: TargetPaths) -> None:
        self.spec = spec
        self.engine = engine
        self.strategy = strategy or engine.pit_strategy()
        self.paths = paths
        self.errors = ErrorCollector()
        #: node ids whose rendered SQL has the template's lines (a line number can be shown)
        self._same_lines: set[str] = set()

    def compile(self) -> CompiledProject:
        spec = self.spec
        renderer = Renderer(spec, PROJECT_DIALECT)
        queries: dict[str, tuple[exp.Query, str, Any, list[str]]] = {}
        for src in spec.sources.values():
            queries[f"source:{src.name}"] = (self.engine.source_query(src, spec.root), "view",
                                             src, [])
        templated: list[Model | FeatureView] = [*spec.models.values(), *spec.views.values()]
        for definition in templated:
            kind = "view" if isinstance(definition, FeatureView) else "model"
            node_id = f"{kind}:{definition.name}"
            try:
                rendered = renderer.render(definition.sql_path)
                template = spec.templates[definition.sql_path]
                query = parse_query(rendered.sql, definition.sql_path, PROJECT_DIALECT,
                                    template)
            except DefinitionError as err:
                self.errors.add(err)
                continue
            materialized = (definition.materialized if isinstance(definition, FeatureView)
                            else rendered.materialized or "view")
            if template.count("\n") == rendered.sql.count("\n"):
                self._same_lines.add(node_id)
            deps = [self._relation_id(r) for r in rendered.refs]
            deps += [f"source:{s}" for s in rendered.sources]
            queries[node_id] = (query, materialized, definition, deps)
        self._check_training_refs()
        self.errors.raise_if_any()

        graph = self._graph(queries)
        nodes = self._check_on_engine(graph, queries)
        for problem in row_windows(((n.definition, n.query) for n in nodes.values()
                                    if isinstance(n.definition, FeatureView)),
                                   self.engine.dialect):
            self.errors.add(problem)
        if spec.on_demand_bound:
            self._check_on_demand()
        self.errors.raise_if_any()
        planned = {name: self._plan(ts, nodes) for name, ts in spec.training_sets.items()}
        self.errors.raise_if_any()
        training = {name: ts for name, ts in planned.items() if ts is not None}
        project = CompiledProject(spec, graph, MappingProxyType(nodes),
                                  MappingProxyType(training), self.engine.dialect)
        if any(ts.label for ts in spec.training_sets.values()):
            for leak in label_leaks(manifest(project), spec.training_sets.values()):
                self.errors.add(leak)
            self.errors.raise_if_any()
        return project

    def _relation_id(self, name: str) -> str:
        return f"view:{name}" if name in self.spec.views else f"model:{name}"

    def _spine_id(self, ts: TrainingSet) -> str:
        return f"model:{ts.spine.model}" if ts.spine.model else f"source:{ts.spine.source}"

    def _check_training_refs(self) -> None:
        spec = self.spec
        for ts in spec.training_sets.values():
            spine = ts.spine
            if spine.model and spine.model not in spec.models and spine.model not in spec.views:
                self.errors.add(DefinitionError(
                    ts.path, f"training set '{ts.name}': spine model '{spine.model}' does not "
                    "exist", line=spine.line,
                    hint=f"{did_you_mean(spine.model, [*spec.models, *spec.views])}known "
                    f"models: {', '.join(sorted(spec.models)) or 'none'}."))
            if spine.source and spine.source not in spec.sources:
                self.errors.add(DefinitionError(
                    ts.path, f"training set '{ts.name}': spine source '{spine.source}' is not "
                    "declared", line=spine.line,
                    hint=f"{did_you_mean(spine.source, spec.sources)}known sources: "
                    f"{', '.join(sorted(spec.sources)) or 'none'}."))
            for ref in ts.features:
                view = spec.views.get(ref.view)
                odv = spec.on_demand.get(ref.view)
                if view is None and odv is not None:
                    if ref.feature and odv.feature(ref.feature) is None:
                        self.errors.add(DefinitionError(
                            ts.path, f"training set '{ts.name}': on-demand view '{ref.view}' "
                            f"has no feature '{ref.feature}'", line=ref.line,
                            hint=_near(ref.feature, [f.name for f in odv.features])))
                    continue
                if view is None:
                    self.errors.add(DefinitionError(
                        ts.path, f"training set '{ts.name}': unknown feature view '{ref.view}'",
                        line=ref.line,
                        hint=f"{did_you_mean(ref.view, [*spec.views, *spec.on_demand])}known "
                        f"views: {', '.join(sorted(spec.views)) or 'none'}."))
                elif ref.feature and view.feature(ref.feature) is None:
                    self.errors.add(DefinitionError(
                        ts.path, f"training set '{ts.name}': view '{ref.view}' has no feature "
                        f"'{ref.feature}'", line=ref.line,
                        hint=_near(ref.feature, [f.name for f in view.features])))

    def _graph(self, queries: dict[str, tuple[exp.Query, str, Any, list[str]]]) -> Graph:
        deps: dict[str, list[str]] = {node: d for node, (_, _, _, d) in queries.items()}
        tags: dict[str, tuple[str, ...]] = {}
        locations: dict[str, str] = {}
        for node, (_, _, definition, _) in queries.items():
            tags[node] = getattr(definition, "tags", ())
            locations[node] = getattr(definition, "sql_path", getattr(definition, "path", ""))
        for ts in self.spec.training_sets.values():
            node = f"training_set:{ts.name}"
            deps[node] = [self._spine_id(ts), *dict.fromkeys(
                f"view:{v}" for r in ts.features for v in self._views_of(r.view))]
            tags[node], locations[node] = ts.tags, ts.path
        return Graph(deps, tags, locations)

    def _views_of(self, name: str) -> list[str]:
        """The feature views a training set reads for a requested view: itself, or an
        on-demand view's inputs."""
        odv = self.spec.on_demand.get(name)
        if odv is None or name in self.spec.views:
            return [name]
        return list(dict.fromkeys(ref.view for ref in odv.inputs))

    def _check_on_demand(self) -> None:
        """Every node of every on-demand expression has, in DuckDB, the type fsql's evaluator
        gives it (so both paths compute in the same types); a node typed otherwise is refused
        with the fix (an explicit CAST)."""
        from fsql.ondemand import duck_type, first_mismatch, infer, typing_query

        for bound in self.spec.on_demand_bound.values():
            for feature in bound.features:
                query, nodes = typing_query(feature.tree, bound.kinds)
                if not nodes:
                    continue
                where = (f"on-demand feature {bound.view.name}.{feature.feature.name}")
                try:
                    described = self.engine.describe(query)
                except EngineError as err:
                    self.errors.add(DefinitionError(
                        bound.view.path, f"{where}: DuckDB rejects the expression: {err}",
                        line=feature.feature.line))
                    continue
                types = infer(feature.tree, bound.kinds)
                mismatch = first_mismatch(nodes, types, [c.dtype for c in described])
                if mismatch is not None:
                    node, expected = mismatch
                    actual = described[nodes.index(node)].dtype.sql(self.engine.dialect)
                    self.errors.add(DefinitionError(
                        bound.view.path, f"{where}: DuckDB types {node.sql('duckdb')} as "
                        f"{actual.upper()}, fsql as {duck_type(expected)}; the two paths "
                        "could compute it differently", line=feature.feature.line,
                        hint=f"CAST it: CAST({node.sql('duckdb')} AS {duck_type(expected)}) "
                        "or to the type you mean."))

    def _check_on_engine(self, graph: Graph,
                         queries: dict[str, tuple[exp.Query, str, Any, list[str]]]
                         ) -> dict[str, CompiledNode]:
        nodes: dict[str, CompiledNode] = {}
        failed: set[str] = set()
        # Runs inside the caller's transaction: compile-only callers roll it back, and
        # queries (historical_features) run against these views before rolling back.
        for node_id in graph.order:
            if node_id.startswith("training_set:"):
                continue
            query, materialized, definition, deps = queries[node_id]
            if failed.intersection(deps):
                failed.add(node_id)  # its own error would only repeat the upstream one
                continue
            kind, name = node_id.split(":", 1)
            relation = definition.relation if isinstance(definition, Source) else name
            if not isinstance(definition, Source):
                try:
                    query = self.engine.adapt(query, {n.relation: {c.name: c.dtype for c in
                                                                    n.columns}
                                                      for n in nodes.values()})
                except DialectError as err:
                    failed.add(node_id)
                    self.errors.add(DefinitionError(
                        definition.sql_path, str(err),
                        line=err.line if node_id in self._same_lines else None,
                        hint=err.hint))
                    continue
            try:
                columns = self.engine.describe(query)
            except EngineError as err:
                failed.add(node_id)
                self.errors.add(self._engine_error(definition, err))
                continue
            if isinstance(definition, FeatureView):
                problems = check_view(definition, dict(self.spec.entities), columns,
                                      self.engine.dialect)
                for problem in problems:
                    self.errors.add(problem)
                if problems:
                    failed.add(node_id)
            self.engine.replace_relation(relation, query, "view")
            upstream = sorted(nodes[d].hash for d in deps if d in nodes)
            nodes[node_id] = CompiledNode(
                node_id, kind, name, relation, query, materialized, tuple(columns),
                definition, fingerprint(definition, query.sql(self.engine.dialect),
                                        materialized, upstream),
                self._rows(definition, query, materialized,
                           [nodes[d] for d in deps if d in nodes]))
        return nodes

    def _rows(self, definition: Any, query: exp.Query, materialized: str,
              upstream: list[CompiledNode]) -> exp.Select | None:
        """The rows of a feature view with their identity (``Engine.row_identity``), for a
        view the training sets read as it is defined (materialized as a view, no windows);
        ``upstream`` are the nodes it reads."""
        if not isinstance(definition, FeatureView) or definition.aggregations \
                or materialized != "view":
            return None
        sources = {n.relation: (n.query, tuple(c.name for c in n.columns))
                   for n in upstream if isinstance(n.definition, Source)}
        return self.engine.row_identity(query, sources)

    @staticmethod
    def _engine_error(definition: Any, err: EngineError) -> DefinitionError:
        if isinstance(definition, Source):
            return DefinitionError(
                definition.path, f"source '{definition.name}' cannot be read: {err}",
                line=definition.line,
                hint="check the path (relative to the project directory) or the table name; "
                "for the example project run: python scripts/generate_demo_data.py.")
        return DefinitionError(definition.sql_path, f"the engine rejected the SQL: {err}",
                               hint="see the rendered SQL with: fsql compile.")

    def _plan(self, ts: TrainingSet, nodes: dict[str, CompiledNode]
              ) -> CompiledTrainingSet | None:
        spine_node = nodes[self._spine_id(ts)]
        try:
            plan = plan_training_set(
                self.spec, ts.features, exp.to_table(spine_node.relation, quoted=True),
                spine_node.columns, ts.spine.timestamp, ts.naming, nodes, spine_output=None,
                feature_cutoff=ts.feature_cutoff)
        except RequestError as err:
            self.errors.add(DefinitionError(ts.path, f"training set '{ts.name}': {err}",
                                            line=ts.line))
            return None
        query = self.strategy.query(plan)
        upstream = sorted(n.hash for n in nodes.values()
                          if n.id in {self._spine_id(ts), *(f"view:{j.view.name}"
                                                            for j in plan.joins)})
        return CompiledTrainingSet(ts, plan, query, self.paths.training_set(ts),
                                   fingerprint(ts, query.sql(self.engine.dialect), upstream),
                                   self.strategy.query(replace(plan, audit=True)))


def build_record(output: Path) -> Path:
    """The build record of the training set written to ``output``."""
    return output.with_suffix(".build.json")


def built_definitions(output: Path) -> dict[str, str] | None:
    """The definition hashes the training set at ``output`` was last built with, by node id:
    ``{}`` when it was never built, None when its build record cannot be read (then nothing
    proves what it was built from)."""
    try:
        record = json.loads(build_record(output).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in record["definitions"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def plan_training_set(spec: ProjectSpec, refs: Any, spine: exp.Expression,
                      spine_columns: tuple[Column, ...] | list[Column], spine_ts: str,
                      naming: str, nodes: dict[str, CompiledNode] | MappingProxyType[str, Any],
                      spine_output: tuple[str, ...] | None,
                      order_by: tuple[str, ...] | None = None,
                      feature_cutoff: FeatureCutoff = "inclusive") -> PitPlan:
    """Resolve feature references against a spine; raises ``RequestError`` on any mismatch.

    Shared by compiled training sets and ``historical_features`` so both take one path.
    """
    columns = {c.name: c.dtype for c in spine_columns}
    if spine_ts not in columns:
        raise RequestError(f"the spine has no timestamp column '{spine_ts}' "
                           f"(it has: {', '.join(columns)})")
    if columns[spine_ts].this not in TIME_TYPES:
        raise RequestError(f"spine timestamp '{spine_ts}' has type {columns[spine_ts].sql()}; "
                           "it must be a timestamp or date")
    wanted: dict[str, list[Feature]] = {}
    demanded: dict[str, list[str]] = {}  # on-demand view -> its requested features
    for ref in refs:
        if ref.view in spec.on_demand and ref.view not in spec.views:
            odv = spec.on_demand[ref.view]
            asked = [ref.feature] if ref.feature else [f.name for f in odv.features]
            if odv.feature(asked[0]) is None:
                raise RequestError(f"on-demand view '{ref.view}' has no feature "
                                   f"'{ref.feature}' (it has: "
                                   f"{', '.join(f.name for f in odv.features)})")
            chosen_names = demanded.setdefault(odv.name, [])
            chosen_names += [n for n in asked if n not in chosen_names]
            continue
        view = spec.views.get(ref.view)
        if view is None:
            raise RequestError(f"unknown feature view '{ref.view}'; "
                               f"{did_you_mean(ref.view, [*spec.views, *spec.on_demand])}"
                               f"known: {', '.join(sorted(spec.views)) or 'none'}")
        chosen = [view.feature(ref.feature)] if ref.feature else list(view.features)
        if chosen[0] is None:
            raise RequestError(f"feature view '{ref.view}' has no feature '{ref.feature}' "
                               f"(it has: {', '.join(f.name for f in view.features)})")
        bucket = wanted.setdefault(view.name, [])
        bucket += [f for f in chosen if f is not None and f not in bucket]
    hidden: dict[str, list[Feature]] = {}  # inputs of on-demand features not requested
    for odv_name in demanded:
        for ref in spec.on_demand[odv_name].inputs:
            feature = spec.views[ref.view].feature(ref.feature or "")
            if feature is not None and feature not in wanted.get(ref.view, []):
                bucket = hidden.setdefault(ref.view, [])
                bucket += [feature] if feature not in bucket else []
    for view_name in hidden:
        wanted.setdefault(view_name, [])
    joins: list[ViewJoin] = []
    seen_outputs: dict[str, str] = {}
    all_keys: list[str] = []
    for view_name, feats in wanted.items():
        view = spec.views[view_name]
        node = nodes[f"view:{view_name}"]
        view_types = {c.name: c.dtype for c in node.columns}
        keys = tuple(k for e in view.entities for k in spec.entities[e].join_keys)
        for key in keys:
            if key not in columns:
                raise RequestError(
                    f"the spine has no column '{key}', the join key of view '{view_name}' "
                    f"(spine columns: {', '.join(columns)})")
            if not _key_compatible(columns[key], view_types[key]):
                raise RequestError(
                    f"join key '{key}' is {columns[key].sql()} in the spine but "
                    f"{view_types[key].sql()} in view '{view_name}'; cast one side")
        all_keys += [k for k in keys if k not in all_keys]
        outputs = tuple(f.name if naming == "plain" else f"{view_name}__{f.name}" for f in feats)
        for out in outputs:
            clash = seen_outputs.get(out) or ("the spine" if out in columns else None)
            if clash:
                raise RequestError(f"output column '{out}' of view '{view_name}' collides with "
                                   f"{clash}; use naming: prefixed (view__feature)")
            seen_outputs[out] = f"view '{view_name}'"
        created = view_types.get(view.created_timestamp) if view.created_timestamp else None
        joins.append(ViewJoin(view, node.relation, keys, tuple(feats), outputs,
                              view_types[view.timestamp], created,
                              tuple(hidden.get(view_name, ())), node.rows))
    on_demand = [_plan_on_demand(spec, name, chosen, columns, naming, seen_outputs)
                 for name, chosen in demanded.items()]
    names = tuple(columns)
    out_spine = names if spine_output is None else spine_output
    return PitPlan(spine, tuple(spine_columns), spine_ts, tuple(joins), out_spine,
                   order_by or default_order(spine_ts, all_keys, names),
                   feature_cutoff=feature_cutoff, on_demand=tuple(on_demand))


def _plan_on_demand(spec: ProjectSpec, name: str, chosen: list[str],
                    columns: dict[str, exp.DataType], naming: str,
                    seen_outputs: dict[str, str]) -> OnDemandJoin:
    """An on-demand view's part of a point-in-time plan: request fields from the spine
    columns of the same names (the same type, or one the online path also accepts for it)."""
    bound = spec.on_demand_bound[name]
    odv = bound.view
    request = []
    for field in odv.request:
        if field.name not in columns:
            raise RequestError(
                f"on-demand view '{name}' needs request field '{field.name}' "
                f"({field.dtype.name}): the spine has no column '{field.name}' (spine "
                f"columns: {', '.join(columns)})")
        if not request_compatible(columns[field.name], field.dtype):
            raise RequestError(
                f"request field '{field.name}' of on-demand view '{name}' is "
                f"{field.dtype.name} but the spine column is {columns[field.name].sql()}; "
                "cast it in the spine")
        request.append((field.name, columns[field.name], field.dtype.sql))
    features = []
    for feature_name in chosen:
        out = feature_name if naming == "plain" else f"{name}__{feature_name}"
        clash = seen_outputs.get(out) or ("the spine" if out in columns else None)
        if clash:
            raise RequestError(f"output column '{out}' of on-demand view '{name}' collides "
                               f"with {clash}; use naming: prefixed (view__feature)")
        seen_outputs[out] = f"on-demand view '{name}'"
        features.append((out, bound.feature(feature_name).tree))
    inputs = tuple((n, ref.view, ref.feature) for n, ref in bound.inputs.items())
    return OnDemandJoin(name, tuple(features), tuple(request), inputs, odv.path)


def request_compatible(spine: exp.DataType, field: FeatureType) -> bool:
    """A spine column may stand for a request field of the same type, an integer for a wider
    integer or for a float64 field (what ``OnlineService`` accepts online too)."""
    if field.matches(spine):
        return True
    if spine.this in _INTEGERS:
        widths = [exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT,
                  exp.DataType.Type.INT, exp.DataType.Type.BIGINT]
        if field.name == "float64":
            return True
        if field.sql.this in widths and spine.this in widths:
            return widths.index(spine.this) <= widths.index(field.sql.this)
    return False


_INTEGERS = {exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
             exp.DataType.Type.BIGINT, exp.DataType.Type.UTINYINT, exp.DataType.Type.USMALLINT,
             exp.DataType.Type.UINT, exp.DataType.Type.UBIGINT}


def _key_compatible(a: exp.DataType, b: exp.DataType) -> bool:
    if a.this in _INTEGERS and b.this in _INTEGERS:
        return True
    return FeatureType("", a).matches(b)


def manifest(project: CompiledProject) -> dict[str, Any]:
    """A JSON-able description of every compiled node (dbt's manifest.json)."""
    dialect = project.dialect
    out: dict[str, Any] = {"fsql_version": __version__, "project": project.spec.config.name,
                           "dialect": dialect, "nodes": {}, "training_sets": {}}
    for node in project.nodes.values():
        d = node.definition
        entry: dict[str, Any] = {
            "kind": node.kind, "name": node.name, "relation": node.relation,
            "materialized": node.materialized, "hash": node.hash,
            "path": getattr(d, "sql_path", getattr(d, "path", None)),
            "depends_on": sorted(project.graph.deps[node.id]),
            "columns": {c.name: c.dtype.sql(dialect) for c in node.columns},
            "compiled_sql": node.query.sql(dialect, pretty=True),
        }
        if isinstance(d, FeatureView):
            entry.update(entities=list(d.entities), timestamp=d.timestamp,
                         join_keys=[k for e in d.entities
                                    for k in project.spec.entities[e].join_keys],
                         created_timestamp=d.created_timestamp,
                         ttl_seconds=d.ttl.seconds if d.ttl else None, online=d.online,
                         owner=d.owner, tags=list(d.tags), description=d.description,
                         features={f.name: f.stored_type for f in d.features})
            if d.aggregations:  # the view column each aggregation reads (lineage: diff, labels)
                entry["aggregated"] = {f.name: f.aggregation.column or d.timestamp
                                       for f in d.aggregations if f.aggregation}
        out["nodes"][node.id] = entry
    if project.spec.on_demand:
        out["on_demand_views"] = {
            name: on_demand_entry(bound, dialect)
            for name, bound in project.spec.on_demand_bound.items()}
    for name, ts in project.training_sets.items():
        out["training_sets"][name] = {
            "hash": ts.hash, "path": ts.definition.path, "output": str(ts.output),
            "features": [str(r) for r in ts.definition.features],
            "feature_cutoff": ts.plan.feature_cutoff,
            "columns": [*ts.plan.output_spine, *ts.plan.feature_columns],
            "depends_on": sorted(project.graph.deps[f"training_set:{name}"]),
            "compiled_sql": ts.query.sql(dialect, pretty=True),
        }
    return out


def on_demand_entry(bound: Any, dialect: str) -> dict[str, Any]:
    """The manifest entry of an on-demand view (``bound``: ``ondemand.BoundView``): request
    fields, inputs, and each feature's type and expression as run offline, with a hash of what
    it computes (``fsql diff``)."""
    from fsql.ondemand import columns

    odv = bound.view
    return {
        "kind": "on_demand_view", "name": odv.name, "path": odv.path,
        "description": odv.description, "owner": odv.owner, "tags": list(odv.tags),
        "request": {r.name: r.dtype.name for r in odv.request},
        "inputs": [str(r) for r in odv.inputs],
        "features": {f.feature.name: f.feature.dtype.name for f in bound.features},
        "expressions": {f.feature.name: f.tree.sql(dialect) for f in bound.features},
        "uses": {f.feature.name: columns(f.tree) for f in bound.features},
        "input_of": {name: str(ref) for name, ref in bound.inputs.items()},
        "hash": fingerprint(odv, [f.tree.sql(dialect) for f in bound.features]),
    }


def write_target(project: CompiledProject, paths: TargetPaths) -> Path:
    """Write the target's ``compiled/<kind>/<name>.sql`` and ``manifest.json``."""
    compiled = paths.compiled
    for node in project.nodes.values():
        _write(compiled / node.kind / f"{node.name}.sql",
               node.query.sql(project.dialect, pretty=True) + "\n")
    for name, ts in project.training_sets.items():
        _write(compiled / "training_set" / f"{name}.sql",
               ts.query.sql(project.dialect, pretty=True) + "\n")
    path = paths.manifest
    _write(path, json.dumps(manifest(project), indent=2) + "\n")
    return path


def _write(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
