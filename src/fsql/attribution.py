"""Name the node whose SQL failed at runtime.

The engine reports a failure on the data (a bad cast, a division by zero, an overflow) against
the statement it was running: for a training set, fsql's generated point-in-time SQL, whose
aliases mean nothing to the user. On such a failure (``QueryFailed.on_data``) the upstream
nodes are materialized one by one in DAG order in a rolled-back transaction; the first one that
fails on its data is the culprit (all its inputs materialized), and the error names it and its
file. When none does, the failure is in the statement's own node (``statement``, e.g. the
training set). Probing reads the data again, but only on this failure path.
"""

from __future__ import annotations

from collections.abc import Iterable

from fsql.compile import CompiledNode, CompiledProject, CompiledTrainingSet
from fsql.definitions import FeatureView, Model
from fsql.engines.base import Engine
from fsql.errors import EngineError, QueryFailed


def describe_node(node: CompiledNode) -> str:
    """``model 'spine' (models/spine.sql)``: how an error names a node."""
    d = node.definition
    where = d.sql_path if isinstance(d, Model | FeatureView) else d.path
    kind = "feature view" if isinstance(d, FeatureView) else node.kind
    return f"{kind} '{node.name}' ({where})"


def describe_training_set(ts: CompiledTrainingSet) -> str:
    return f"training set '{ts.definition.name}' ({ts.definition.path})"


def attribute(project: CompiledProject, engine: Engine, candidates: Iterable[str],
              err: QueryFailed, statement: str | None = None) -> EngineError:
    """``err`` naming the first of ``candidates`` (node ids, DAG order, upstream first) that
    fails on its data when materialized, else ``statement``. ``engine`` must be outside any
    transaction (the failed one rolled back)."""
    if not err.on_data:
        return err
    with engine.rollback_only():
        for node_id in candidates:
            node = project.nodes.get(node_id)
            if node is None:
                continue
            try:
                engine.replace_relation(node.relation, node.query, "table")
            except QueryFailed as failure:
                if not failure.on_data:  # the probe itself could not run: no guessing
                    return EngineError(str(err))
                return EngineError(f"{describe_node(node)} failed on its data: "
                                   f"{_first_line(str(failure))}\n"
                                   f"  hint: fix the SQL of {describe_node(node)} or its data")
    if statement is None:
        return EngineError(str(err))
    return EngineError(f"{statement} failed on its data: {_first_line(str(err))}")


def _first_line(message: str) -> str:
    """The engine's message without its SQL excerpt (``LINE 1: ...``) and fsql's prefix."""
    return message.removeprefix("DuckDB: ").strip().splitlines()[0] if message.strip() else ""
