"""The label-leak guard: a training set's features must not be computed from its label.

A training set may declare ``label: churned`` (or a list): columns of its spine. With the
sqlglot column lineage of ``diff.column_lineage`` (through every upstream model), each label
and each requested feature is traced down to its leaf columns (``relation.column`` of sources,
or of anything fsql cannot see through). A feature whose leaves share one with a label's leaves
reads what the label is computed from, e.g. a running fraud rate that includes the current
row's ``is_fraud``: a leak the timestamp guard cannot see. Such a feature is refused at compile
(so ``fsql compile`` and ``fsql build`` both exit 2) with the lineage path, unless the training
set lists it under ``allow_label_lineage``, a deliberate, documented exception.

A lineage that cannot be resolved (of a label or of a feature) is refused too, as a possible
leak, with the same opt-out: the guard never passes what it could not check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlglot import exp
from sqlglot.lineage import Node

from fsql.definitions import TrainingSet
from fsql.diff import column_lineage
from fsql.errors import DefinitionError

#: a leaf column: (relation, column)
Leaf = tuple[str, str]


def leaf_paths(root: Node) -> dict[Leaf, list[str]]:
    """Each leaf column a lineage tree reaches, with the node names on the way to it (first
    path found). Leaves that are not table columns (literals, ``count(*)``) read nothing."""
    found: dict[Leaf, list[str]] = {}

    def visit(node: Node, path: list[str]) -> None:
        path = [*path, node.name]
        if node.downstream:
            for child in node.downstream:
                visit(child, path)
        elif isinstance(node.source, exp.Table) and node is not root:
            # a table function (read_parquet('x')) has no name: the call is the relation
            relation = node.source.name or node.source.this.sql()
            found.setdefault((relation, node.name.split(".")[-1]), path)

    visit(root, [])
    return found


def label_leaks(manifest: dict[str, Any],
                training_sets: Iterable[TrainingSet]) -> list[DefinitionError]:
    """Every label problem of every training set that declares a label: an unknown label
    column, a bad ``allow_label_lineage`` entry, or a feature computed from a label's inputs."""
    errors: list[DefinitionError] = []
    for ts in training_sets:
        if ts.label:
            errors += _check(manifest, ts)
    return errors


def _check(manifest: dict[str, Any], ts: TrainingSet) -> list[DefinitionError]:
    nodes = manifest["nodes"]
    names = {n["relation"]: n["name"] for n in nodes.values() if n.get("relation")}
    what = f"training set '{ts.name}'"
    hint = "remove it, or list it under allow_label_lineage if the lineage is deliberate"

    def error(message: str, line: int, fix: str = hint) -> DefinitionError:
        return DefinitionError(ts.path, f"{what}: {message}", line=line or ts.line, hint=fix)

    spine_key = next(k for k in (f"model:{ts.spine.model}", f"view:{ts.spine.model}",
                                 f"source:{ts.spine.source}") if k in nodes)
    spine = nodes[spine_key]
    errors = [error(f"label '{c}' is not a column of the spine {spine['name']}", ts.label_line,
                    f"spine columns: {', '.join(spine['columns'])}")
              for c in ts.label if c not in spine["columns"]]
    views = {ref.view: ref for ref in ts.features}
    on_demand = manifest.get("on_demand_views", {})

    def features_of(view: str) -> Iterable[str]:
        entry = nodes.get(f"view:{view}") or on_demand.get(view, {})
        return entry.get("features", {})  # type: ignore[no-any-return]

    requested = {(ref.view, f) for ref in ts.features
                 for f in ([ref.feature] if ref.feature else features_of(ref.view))}
    allowed = set()
    for ref in ts.allow_label_lineage:
        if (ref.view, ref.feature) not in requested:
            errors.append(error(f"allow_label_lineage names {ref}, which is not a feature of "
                                "this training set", ref.line,
                                f"its features: {', '.join(str(r) for r in ts.features)}"))
        allowed.add((ref.view, ref.feature))
    if errors:
        return errors

    label_leaves: dict[Leaf, tuple[str, list[str]]] = {}
    for column in ts.label:
        if spine_key.startswith("source:"):
            label_leaves[(spine["relation"], column)] = (column, [])
            continue
        root = column_lineage(manifest, spine_key, column)
        if root is None:
            return [error(f"the lineage of label '{column}' through {spine['name']} cannot be "
                          "resolved, so no feature can be checked against it", ts.label_line,
                          "list the features under allow_label_lineage, or compute the "
                          "label from columns fsql knows the schema of")]
        for leaf, path in leaf_paths(root).items():
            label_leaves.setdefault(leaf, (column, path))

    for view, feature in sorted(requested - allowed):
        line = views[view].line
        traced: list[tuple[str, str, list[str]]] = [(f"view:{view}", feature, [])]
        if view in on_demand and f"view:{view}" not in nodes:
            # an on-demand feature reads its inputs and, offline, the spine columns of its
            # request fields: its lineage is theirs
            entry = on_demand[view]
            traced = []
            for name in entry["uses"][feature]:
                if name in entry["request"]:
                    if name in ts.label:
                        errors.append(error(f"on-demand feature {view}.{feature} reads request "
                                            f"field '{name}', which is the label", line))
                    traced.append((spine_key, name, [f"request field {name}"]))
                else:
                    input_view, input_feature = entry["input_of"][name].split(".")
                    traced.append((f"view:{input_view}", input_feature,
                                   [f"{input_view}.{input_feature}"]))
        for node_id, column_name, via in traced:
            problem = _leak(manifest, node_id, column_name, label_leaves, names)
            if isinstance(problem, str):
                errors.append(error(f"the lineage of feature {view}.{feature} cannot be "
                                    "resolved, so it may read what the label is computed from",
                                    line))
            elif problem is not None:
                source, label, path = problem
                chain = " <- ".join([f"{view}.{feature}", *via, *path, source])
                errors.append(error(f"feature {view}.{feature} reads {source}, which label "
                                    f"{label} is computed from ({chain})", line))
            else:
                continue
            break
    return errors


def _leak(manifest: dict[str, Any], node_id: str, column: str,
          label_leaves: dict[Leaf, tuple[str, list[str]]], names: dict[str, str]
          ) -> tuple[str, str, list[str]] | str | None:
    """Whether ``column`` of ``node_id`` reads a leaf a label is computed from: (the leaf,
    the label, the path between them), ``"unresolved"``, or None."""
    node = manifest["nodes"][node_id]
    if node_id.startswith("source:"):
        leaves: dict[Leaf, list[str]] = {(node["relation"], column): [node["name"]]}
    else:
        root = column_lineage(manifest, node_id, column)
        if root is None:
            return "unresolved"
        leaves = leaf_paths(root)
    for (relation, leaf_column), path in sorted(leaves.items()):
        if (relation, leaf_column) in label_leaves:
            label, _ = label_leaves[(relation, leaf_column)]
            return f"{names.get(relation, relation)}.{leaf_column}", label, path[1:-1]
    return None
