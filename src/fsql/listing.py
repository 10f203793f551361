"""What ``fsql ls`` and ``fsql show`` report, as plain JSON-able data."""

from __future__ import annotations

from typing import Any

from fsql.compile import CompiledProject
from fsql.definitions import FeatureView, Ttl
from fsql.errors import RequestError, did_you_mean
from fsql.loader import ProjectSpec

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


def describe(project: CompiledProject, name: str) -> dict[str, Any]:
    """One definition with its columns and compiled SQL (``fsql show NAME``)."""
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
        known = sorted({n.name for n in project.nodes.values()} | set(project.training_sets)
                       | set(project.spec.on_demand))
        raise RequestError(f"nothing named '{name}'; {did_you_mean(name, known)}"
                           f"known: {', '.join(known)}")
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
    info["columns"] = {c.name: c.dtype.sql(dialect) for c in node.columns}
    info["hash"] = node.hash
    info["compiled_sql"] = node.query.sql(dialect, pretty=True)
    return info
