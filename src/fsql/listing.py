"""What ``fsql ls`` and ``fsql show`` report, as plain JSON-able data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlglot import exp

from fsql.compile import CompiledProject
from fsql.definitions import FeatureRef, FeatureView, Ttl
from fsql.errors import RequestError, did_you_mean
from fsql.loader import ProjectSpec

if TYPE_CHECKING:
    from fsql.engines import Engine

SECTIONS = ("views", "on_demand_views", "features", "entities", "training_sets", "models",
            "sources")


def _ttl(view: FeatureView) -> str:
    return str(view.ttl) if view.ttl else "none"


def listing(spec: ProjectSpec, kind: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rows per section, in a stable order, with JSON's own types: names as lists, durations
    (``ttl``, ``freshness``, ``window``) as whole seconds or null, flags as booleans."""
    if kind is not None and kind not in SECTIONS:
        raise RequestError(f"unknown kind '{kind}'; {did_you_mean(kind, list(SECTIONS))}"
                           f"use one of: {', '.join(SECTIONS)}")
    views = sorted(spec.views.values(), key=lambda v: v.name)
    on_demand = sorted(spec.on_demand.values(), key=lambda o: o.name)
    sections: dict[str, list[dict[str, Any]]] = {
        "views": [{"name": v.name, "entities": list(v.entities), "features": len(v.features),
                   "ttl": _seconds(v.ttl), "online": v.online,
                   "freshness": _seconds(v.freshness),
                   "owner": v.owner, "description": v.description} for v in views],
        "on_demand_views": [
            {"name": o.name, "request": {r.name: r.dtype.name for r in o.request},
             "inputs": list(map(str, o.inputs)), "features": len(o.features),
             "owner": o.owner, "description": o.description} for o in on_demand],
        "features": [{"feature": f"{v.name}.{f.name}", "type": f.dtype.name,
                      "entities": list(v.entities), "on_demand": False,
                      "ttl": _seconds(v.ttl) if f.aggregation is None else None,
                      "window": _seconds(f.aggregation.window) if f.aggregation else None,
                      "description": f.description} for v in views for f in v.features]
        + [{"feature": f"{o.name}.{f.name}", "type": f.dtype.name, "entities": [],
            "on_demand": True, "ttl": None, "window": None,
            "description": f.description or f.sql} for o in on_demand for f in o.features],
        "entities": [{"name": e.name, "join_keys": list(e.join_keys),
                      "description": e.description}
                     for e in sorted(spec.entities.values(), key=lambda e: e.name)],
        "training_sets": [{"name": t.name, "spine": t.spine.target,
                           "timestamp": t.spine.timestamp,
                           "features": list(map(str, t.features)), "owner": t.owner,
                           "description": t.description}
                          for t in sorted(spec.training_sets.values(), key=lambda t: t.name)],
        "models": [{"name": m.name, "path": m.sql_path, "tags": list(m.tags),
                    "description": m.description}
                   for m in sorted(spec.models.values(), key=lambda m: m.name)],
        "sources": [{"name": s.name, "reads": s.location or s.table, "format": s.format,
                     "description": s.description}
                    for s in sorted(spec.sources.values(), key=lambda s: s.name)],
    }
    return {kind: sections[kind]} if kind else sections


#: the columns of ``listing()`` holding durations in seconds
DURATIONS = ("ttl", "freshness", "window")


def _seconds(duration: Ttl | None) -> int | None:
    return None if duration is None else duration.seconds


def _uses(ref: FeatureRef, view: str, feature: str | None) -> bool:
    """Whether a feature list entry reads ``view`` (``feature`` of it, when given)."""
    return ref.view == view and (feature is None or ref.feature in (None, feature))


def downstream(spec: ProjectSpec, view: str, feature: str | None = None
               ) -> dict[str, list[str]]:
    """The training sets and on-demand views reading ``view`` (or its ``feature``); a
    training set asking for an on-demand view over it counts too."""
    on_demand = sorted(o.name for o in spec.on_demand.values()
                       if any(_uses(r, view, feature) for r in o.inputs))
    return {"on_demand_views": on_demand,
            "training_sets": sorted(t.name for t in spec.training_sets.values()
                                    if any(_uses(r, view, feature) or r.view in on_demand
                                           for r in t.features))}


def describe_feature(spec: ProjectSpec, name: str) -> dict[str, Any]:
    """``fsql show view.feature``: the feature's definition and what uses it downstream."""
    view_name, _, feature_name = name.partition(".")
    if view_name in spec.on_demand:
        odv = spec.on_demand[view_name]
        odf = odv.feature(feature_name)
        if odf is None:
            raise RequestError(f"on-demand view '{view_name}' has no feature '{feature_name}'"
                               + _did_you_mean(feature_name, [f.name for f in odv.features]))
        return {"kind": "on_demand_feature", "name": name, "path": odv.path,
                "type": odf.dtype.name, "expression": odf.sql, "description": odf.description,
                "request": [r.name for r in odv.request], "inputs": [str(r) for r in odv.inputs],
                **downstream(spec, view_name, feature_name)}
    view = spec.views[view_name]
    feature = view.feature(feature_name)
    if feature is None:
        raise RequestError(f"view '{view_name}' has no feature '{feature_name}'"
                           + _did_you_mean(feature_name, [f.name for f in view.features]))
    agg = feature.aggregation
    return {"kind": "feature", "name": name, "path": view.path, "line": feature.line,
            "type": feature.dtype.name, "description": feature.description,
            "aggregation": None if agg is None else {
                "function": agg.function, "column": agg.column, "window": str(agg.window),
                "hop": str(agg.hop)},
            "entities": list(view.entities), "timestamp": view.timestamp, "ttl": _ttl(view),
            "online": view.online, "owner": view.owner,
            "tests": [t.name for t in feature.tests],
            **downstream(spec, view_name, feature_name)}


def describe_entity(spec: ProjectSpec, name: str) -> dict[str, Any]:
    """``fsql show entity:x``: the entity and the views and training sets keyed by it."""
    entity = spec.entities.get(name)
    if entity is None:
        raise RequestError(f"no entity named '{name}'" + _did_you_mean(name, spec.entities))
    views = sorted(v.name for v in spec.views.values() if name in v.entities)
    used = {ts for v in views for ts in downstream(spec, v)["training_sets"]}
    return {"kind": "entity", "name": name, "path": entity.path, "line": entity.line,
            "join_keys": list(entity.join_keys), "description": entity.description,
            "views": views, "on_demand_views": sorted(
                {o for v in views for o in downstream(spec, v)["on_demand_views"]}),
            "training_sets": sorted(used)}


def _did_you_mean(name: str, known: Any) -> str:
    hint = did_you_mean(name, sorted(known)).rstrip()
    return f"; {hint}" if hint else ""


def _relation_query(project: CompiledProject, name: str) -> exp.Query:
    """The query of the model, view, source or training set called ``name``."""
    if name in project.training_sets:
        return project.training_sets[name].query
    for node in project.nodes.values():
        if node.name == name:
            return exp.select("*").from_(exp.to_table(node.relation, quoted=True))
    raise _unknown(project, name)


def preview(project: CompiledProject, engine: Engine, name: str, limit: int
            ) -> dict[str, Any]:
    """``fsql show NAME --limit N``: the first ``limit`` rows of a model, view, source or
    training set (computed, never read from build outputs)."""
    query = exp.select("*").from_(_relation_query(project, name).subquery("preview"))
    table = engine.fetch_arrow(query.limit(limit))
    return {"name": name, "columns": table.column_names, "rows": table.to_pylist()}


def _unknown(project: CompiledProject, name: str) -> RequestError:
    spec = project.spec
    known = sorted({n.name for n in project.nodes.values()} | set(project.training_sets)
                   | set(spec.on_demand))
    hint = _did_you_mean(name, known + [f"{v.name}.{f.name}" for v in spec.views.values()
                                        for f in v.features]
                         + [f"entity:{e}" for e in spec.entities])
    return RequestError(f"nothing named '{name}'{hint or ''}"
                        + ("" if hint else f" (known: {', '.join(known)}; or view.feature, "
                                           "entity:NAME)"))


def describe_uncompiled(spec: ProjectSpec, name: str) -> dict[str, Any] | None:
    """``view.feature`` or ``entity:NAME`` described from the definitions alone (no SQL, so
    nothing to compile); ``None`` for any other name."""
    if name.startswith("entity:"):
        return describe_entity(spec, name.removeprefix("entity:"))
    if "." in name and name.split(".", 1)[0] in (spec.views.keys() | spec.on_demand.keys()):
        return describe_feature(spec, name)
    return None


def describe(project: CompiledProject, name: str) -> dict[str, Any]:
    """One definition with its columns and compiled SQL (``fsql show NAME``); ``view.feature``
    and ``entity:NAME`` describe a feature or an entity and what uses it (no SQL)."""
    described = describe_uncompiled(project.spec, name)
    if described is not None:
        return described
    dialect = project.dialect
    if name in project.training_sets:
        ts = project.training_sets[name]
        d = ts.definition
        return {"kind": "training_set", "name": name, "path": d.path,
                "description": d.description, "spine": d.spine.target,
                "timestamp": d.spine.timestamp, "features": [str(f) for f in d.features],
                "columns": [*ts.plan.output_spine, *ts.plan.feature_columns],
                "output": str(ts.output), "hash": ts.hash,
                "compiled_sql": ts.query.sql(dialect, pretty=True)}
    if name in project.spec.on_demand_bound and f"view:{name}" not in project.nodes:
        from fsql.compile import on_demand_entry

        entry = on_demand_entry(project.spec.on_demand_bound[name], dialect)
        expressions = entry.pop("expressions")
        entry.pop("uses", None)
        entry.pop("input_of", None)
        return {**entry, "compiled_sql": "\n".join(f"{expr} AS {feature}"
                                                   for feature, expr in expressions.items())}
    candidates = [n for n in project.nodes.values() if n.name == name]
    if not candidates:
        raise _unknown(project, name)
    node = candidates[0]
    view = node.definition
    info: dict[str, Any] = {"kind": node.kind, "name": node.name,
                            "path": getattr(view, "sql_path", getattr(view, "path", None)),
                            "relation": node.relation, "materialized": node.materialized,
                            "depends_on": sorted(project.graph.deps[node.id])}
    if isinstance(view, FeatureView):
        info.update(entities=list(view.entities), timestamp=view.timestamp,
                    created_timestamp=view.created_timestamp, ttl=_ttl(view), online=view.online,
                    owner=view.owner, description=view.description,
                    features={f.name: f.stored_type for f in view.features})
    info["used_by"] = sorted(project.graph.downstream(node.id))
    info["columns"] = {c.name: c.dtype.sql(dialect) for c in node.columns}
    info["hash"] = node.hash
    info["compiled_sql"] = node.query.sql(dialect, pretty=True)
    return info
