"""``fsql diff``: what changed since the last build or sync, and what it breaks.

Compares two manifests (``compile.manifest``): the current one and the one recorded by the last
``fsql build`` of the current target (``TargetPaths.build_manifest``) or stored with each view's
online data by ``fsql sync``. Reports added, removed and changed views, features, models and
training sets.

A change is **breaking** when something trained or served would silently change meaning:

* a feature that a training set uses (or an online view serves) is removed or retyped;
* a view's entity keys change;
* an on-demand feature's expression, type, request fields or inputs change (always: it is
  computed from the definitions at request time, so every caller sees the change at once);
* a feature's computation changes: its column lineage (sqlglot, through every upstream model,
  macro and var, with the column types of every source, model and view) differs between the
  two manifests — e.g. an upstream model now computes ``amount`` another way. Features whose
  lineage does not touch the change are not flagged. A lineage that cannot be resolved counts
  as a possible change: breaking, never "unchanged".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node, lineage


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two manifests."""

    kind: str  # added | removed | changed
    object: str  # view:x, view:x.feature, model:m, training_set:t
    what: str  # view, feature, model, training set, sql, type, ttl, keys, features
    detail: str
    breaking: bool = False
    affects: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.object, "what": self.what,
                "detail": self.detail, "breaking": self.breaking, "affects": list(self.affects)}


def _views(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k.split(":", 1)[1]: v for k, v in manifest.get("nodes", {}).items()
            if k.startswith("view:")}


def _users(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """``view.feature`` -> the training sets and online views that use it."""
    users: dict[str, set[str]] = {}
    views = _views(manifest)
    for name, ts in manifest.get("training_sets", {}).items():
        for ref in ts.get("features", []):
            view, _, feature = ref.partition(".")
            for f in ([feature] if feature else list(views.get(view, {}).get("features", {}))):
                users.setdefault(f"{view}.{f}", set()).add(f"training_set:{name}")
    on_demand = manifest.get("on_demand_views", {})
    for name, ts in manifest.get("training_sets", {}).items():
        for ref in ts.get("features", []):
            view, _, feature = ref.partition(".")
            if view in on_demand and view not in views:
                # a training set listing an on-demand feature uses it and its inputs
                entry = on_demand[view]
                for f in ([feature] if feature else list(entry.get("features", {}))):
                    users.setdefault(f"{view}.{f}", set()).add(f"training_set:{name}")
                for input_ref in entry.get("inputs", []):
                    users.setdefault(input_ref, set()).add(f"training_set:{name}")
    for view, entry in views.items():
        if entry.get("online"):
            for f in entry.get("features", {}):
                users.setdefault(f"{view}.{f}", set()).add(f"online:{view}")
    return users


def _schema(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Every relation's columns and types (sources, models, views), as sqlglot lineage needs
    them to resolve ``*`` and unqualified columns across joins."""
    return {n["relation"]: n["columns"] for n in manifest.get("nodes", {}).values()
            if n.get("relation") and n.get("columns")}


def column_lineage(manifest: dict[str, Any], node: str, column: str) -> Node | None:
    """The sqlglot lineage tree of ``column`` of manifest node ``node`` (e.g. ``view:x``), or
    None when it cannot be resolved.

    The walk goes through every upstream model's SQL (``sources=``), with the column types of
    every node the manifest knows (``schema=``); its leaves are source (or unknown) relations.
    """
    nodes = manifest.get("nodes", {})
    entry = nodes.get(node)
    if entry is None:
        return None
    # an aggregation feature is computed from one column of its view (count: the timestamp)
    column = entry.get("aggregated", {}).get(column, column)
    dialect = manifest.get("dialect")
    try:
        sources = {n["relation"]: _parsed(n["compiled_sql"], dialect) for k, n in nodes.items()
                   if k.startswith(("model:", "view:")) and k != node}
        # copy=False: the parsed sources are shared between calls, and lineage only ever uses
        # copies of them (``Query.subquery``); the query itself is parsed afresh from its SQL
        root = lineage(column, entry["compiled_sql"], _schema(manifest), sources=sources,
                       dialect=dialect, copy=False)
        walked = list(root.walk())
    except (SqlglotError, KeyError, ValueError):
        return None
    if any(n.name.split(".")[-1] == "*" for n in walked):
        return None  # a star over a relation fsql has no schema for: the walk stopped there
    return root


@lru_cache(maxsize=1024)
def _parsed(sql: str, dialect: str | None) -> exp.Query:
    """A model's or view's compiled SQL parsed once per process (``column_lineage`` is called
    for many columns of the same manifests: parsing every upstream query each time took most
    of ``fsql compile``)."""
    parsed = parse_one(sql, dialect=dialect)
    if not isinstance(parsed, exp.Query):
        raise SqlglotError(f"not a query: {sql[:60]}")
    return parsed


def feature_lineage(manifest: dict[str, Any], view: str, feature: str) -> str | None:
    """A fingerprint of everything a feature's value is computed from (None if unknown)."""
    root = column_lineage(manifest, f"view:{view}", feature)
    if root is None:
        return None
    dialect = manifest.get("dialect")
    parts = sorted(f"{n.name}={n.expression.sql(dialect=dialect)}" for n in root.walk())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every change from ``old`` to ``new``, breaking ones flagged with what they affect."""
    changes: list[Change] = []
    users = _users(old)
    for key in sorted(set(old.get("nodes", {})) | set(new.get("nodes", {}))):
        if key.startswith("view:"):
            continue
        before, after = old.get("nodes", {}).get(key), new.get("nodes", {}).get(key)
        if before is None:
            changes.append(Change("added", key, key.split(":")[0], "new"))
        elif after is None:
            changes.append(Change("removed", key, key.split(":")[0], "removed"))
        elif before.get("compiled_sql") != after.get("compiled_sql"):
            changes.append(Change("changed", key, "sql", "compiled SQL changed"))
    old_views, new_views = _views(old), _views(new)
    for view in sorted(set(old_views) | set(new_views)):
        before, after = old_views.get(view), new_views.get(view)
        if before is None:
            changes.append(Change("added", f"view:{view}", "view", "new feature view"))
            continue
        if after is None:
            affected = sorted(set().union(*(users.get(f"{view}.{f}", set())
                                            for f in before.get("features", {}))))
            changes.append(Change("removed", f"view:{view}", "view", "feature view removed",
                                  bool(affected), tuple(affected)))
            continue
        changes += _view_changes(old, new, view, before, after, users)
    changes += _on_demand_changes(old.get("on_demand_views", {}),
                                  new.get("on_demand_views", {}), users)
    for name in sorted(set(old.get("training_sets", {})) | set(new.get("training_sets", {}))):
        before = old.get("training_sets", {}).get(name)
        after = new.get("training_sets", {}).get(name)
        if before is None:
            changes.append(Change("added", f"training_set:{name}", "training set", "new"))
        elif after is None:
            changes.append(Change("removed", f"training_set:{name}", "training set",
                                  "removed"))
        elif before.get("features") != after.get("features"):
            changes.append(Change("changed", f"training_set:{name}", "features",
                                  f"{before.get('features')} -> {after.get('features')}"))
    return changes


def _view_changes(old: dict[str, Any], new: dict[str, Any], view: str, before: dict[str, Any],
                  after: dict[str, Any], users: dict[str, set[str]]) -> list[Change]:
    changes: list[Change] = []
    obj = f"view:{view}"
    all_users = sorted(set().union(*(users.get(f"{view}.{f}", set())
                                     for f in before.get("features", {}))))
    if before.get("join_keys") != after.get("join_keys"):
        changes.append(Change("changed", obj, "keys", f"{before.get('join_keys')} -> "
                              f"{after.get('join_keys')}", bool(all_users), tuple(all_users)))
    if before.get("ttl_seconds") != after.get("ttl_seconds"):
        changes.append(Change("changed", obj, "ttl", f"{before.get('ttl_seconds')}s -> "
                              f"{after.get('ttl_seconds')}s"))
    if before.get("compiled_sql") != after.get("compiled_sql"):
        changes.append(Change("changed", obj, "sql", "compiled SQL changed"))
    old_features, new_features = before.get("features", {}), after.get("features", {})
    for feature in sorted(set(old_features) | set(new_features)):
        ref = f"{obj}.{feature}"
        affected = tuple(sorted(users.get(f"{view}.{feature}", set())))
        if feature not in old_features:
            changes.append(Change("added", ref, "feature", new_features[feature]))
        elif feature not in new_features:
            changes.append(Change("removed", ref, "feature", "removed", bool(affected),
                                  affected))
        elif old_features[feature] != new_features[feature]:
            changes.append(Change("changed", ref, "type", f"{old_features[feature]} -> "
                                  f"{new_features[feature]}", bool(affected), affected))
        elif _inputs_changed(old, new, view):
            before_lineage = feature_lineage(old, view, feature)
            after_lineage = feature_lineage(new, view, feature)
            if before_lineage is None or after_lineage is None:
                changes.append(Change("changed", ref, "sql", "its computation may have changed "
                                      "(column lineage could not be resolved)", bool(affected),
                                      affected))
            elif before_lineage != after_lineage:
                changes.append(Change("changed", ref, "sql", "its computation changed (column "
                                      "lineage through upstream models)", bool(affected),
                                      affected))
    return changes


def _on_demand_changes(old: dict[str, Any], new: dict[str, Any],
                       users: dict[str, set[str]]) -> list[Change]:
    """Changes of on-demand views. They are computed at request time from the definitions
    (nothing is synced), so a changed expression, type, request field or input changes what
    every caller is served at once: always breaking, listing the training sets trained on it."""
    changes: list[Change] = []
    for view in sorted(set(old) | set(new)):
        before, after = old.get(view), new.get(view)
        obj = f"on_demand_view:{view}"
        if before is None:
            changes.append(Change("added", obj, "on-demand view", "new on-demand view"))
            continue
        features = before.get("features", {})
        every = tuple(sorted(set().union(*(users.get(f"{view}.{f}", set())
                                           for f in features))))
        if after is None:
            changes.append(Change("removed", obj, "on-demand view", "on-demand view removed",
                                  True, every))
            continue
        for key in ("request", "inputs"):
            if before.get(key) != after.get(key):
                changes.append(Change("changed", obj, key, f"{before.get(key)} -> "
                                      f"{after.get(key)}", True, every))
        old_sql, new_sql = before.get("expressions", {}), after.get("expressions", {})
        for feature in sorted(set(features) | set(after.get("features", {}))):
            ref = f"{obj}.{feature}"
            affected = tuple(sorted(users.get(f"{view}.{feature}", set())))
            if feature not in features:
                changes.append(Change("added", ref, "feature", after["features"][feature]))
            elif feature not in after.get("features", {}):
                changes.append(Change("removed", ref, "feature", "removed", True, affected))
            elif features[feature] != after["features"][feature]:
                changes.append(Change("changed", ref, "type", f"{features[feature]} -> "
                                      f"{after['features'][feature]}", True, affected))
            elif old_sql.get(feature) != new_sql.get(feature):
                changes.append(Change("changed", ref, "sql", f"expression {old_sql.get(feature)}"
                                      f" -> {new_sql.get(feature)}", True, affected))
    return changes


def _closure(manifest: dict[str, Any], node: str) -> set[str]:
    nodes = manifest.get("nodes", {})
    seen, stack = {node}, [node]
    while stack:
        for dep in nodes.get(stack.pop(), {}).get("depends_on", []):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def _inputs_changed(old: dict[str, Any], new: dict[str, Any], view: str) -> bool:
    """Whether the SQL of the view or of anything upstream of it differs."""
    nodes = _closure(old, f"view:{view}") | _closure(new, f"view:{view}")
    old_nodes, new_nodes = old.get("nodes", {}), new.get("nodes", {})
    return any(old_nodes.get(n, {}).get("compiled_sql") != new_nodes.get(n, {}).get(
        "compiled_sql") for n in nodes)


def view_manifest(manifest: dict[str, Any], view: str) -> dict[str, Any]:
    """The part of a manifest one view depends on (stored with its online data)."""
    nodes = manifest.get("nodes", {})
    return {"dialect": manifest.get("dialect"), "training_sets": {},
            "nodes": {n: nodes[n] for n in _closure(manifest, f"view:{view}") if n in nodes}}


def breaking(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.breaking]
