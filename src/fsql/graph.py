"""The dependency graph of a project and dbt-style node selection.

Node ids are ``kind:name`` with kind in ``source``, ``model``, ``view``, ``training_set``.
Selectors are parsed first (``parse_selector``) and applied second (``Graph.select``):

    name          the model, feature view or training set called ``name``
    +name         it and everything upstream        name+    it and everything downstream
    tag:x         every node tagged ``x``           kind:x   e.g. ``view:customer_orders``

Building a node always builds what it depends on as well (see ``Graph.with_upstream``), so a
selected training set never joins against a stale view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from fsql.errors import DefinitionError, RequestError

KINDS = ("source", "model", "view", "training_set")


@dataclass(frozen=True, slots=True)
class Selector:
    """One parsed selector."""

    method: str  # "name" | "tag" | one of KINDS
    value: str
    upstream: bool
    downstream: bool


def parse_selector(text: str) -> Selector:
    """Parse ``[+]method:value[+]`` or ``[+]name[+]``."""
    raw = text.strip()
    up, down = raw.startswith("+"), raw.endswith("+")
    core = raw.strip("+")
    if not core:
        raise RequestError(f"empty selector '{text}'")
    method, _, value = core.partition(":")
    if not value:
        method, value = "name", core
    if method not in ("name", "tag", *KINDS):
        raise RequestError(
            f"unknown selector method '{method}' in '{text}'; use a name, tag:x or "
            f"{', '.join(k + ':x' for k in KINDS)}"
        )
    return Selector(method, value, up, down)


class Graph:
    """Immutable DAG: ``deps[node]`` is the set of nodes ``node`` reads from."""

    def __init__(self, deps: Mapping[str, Iterable[str]], tags: Mapping[str, Iterable[str]],
                 locations: Mapping[str, str]) -> None:
        self.deps = {node: frozenset(d) for node, d in deps.items()}
        self.tags = {node: frozenset(t) for node, t in tags.items()}
        self.locations = dict(locations)
        self.children: dict[str, set[str]] = {node: set() for node in self.deps}
        for node, parents in self.deps.items():
            for parent in parents:
                self.children.setdefault(parent, set()).add(node)
        self.order = self._topological_order()

    def _topological_order(self) -> tuple[str, ...]:
        try:
            return tuple(TopologicalSorter(self.deps).static_order())
        except CycleError as err:
            cycle = list(err.args[1])
            path = " -> ".join(reversed(cycle))
            first = cycle[0]
            raise DefinitionError(
                self.locations.get(first), f"dependency cycle: {path}",
                hint="a model or view cannot (indirectly) ref() itself; break the loop.",
            ) from None

    def upstream(self, node: str) -> set[str]:
        return self._walk(node, self.deps)

    def downstream(self, node: str) -> set[str]:
        return self._walk(node, self.children)

    @staticmethod
    def _walk(node: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(edges.get(node, ()))
        while stack:
            nxt = stack.pop()
            if nxt not in seen:
                seen.add(nxt)
                stack.extend(edges.get(nxt, ()))
        return seen

    def matches(self, sel: Selector) -> set[str]:
        if sel.method == "tag":
            return {n for n, tags in self.tags.items() if sel.value in tags}
        if sel.method == "name":
            return {n for n in self.deps if n.split(":", 1)[1] == sel.value}
        return {n for n in self.deps if n == f"{sel.method}:{sel.value}"}

    def select(self, selectors: Iterable[str]) -> set[str]:
        """Nodes chosen by ``selectors`` (all nodes when there are none)."""
        parsed = [parse_selector(s) for s in selectors]
        if not parsed:
            return set(self.deps)
        chosen: set[str] = set()
        for sel in parsed:
            hits = self.matches(sel)
            if not hits:
                raise RequestError(f"selector '{sel.value}' matches nothing in the project")
            for node in hits:
                chosen.add(node)
                if sel.upstream:
                    chosen |= self.upstream(node)
                if sel.downstream:
                    chosen |= self.downstream(node)
        return chosen

    def with_upstream(self, nodes: Iterable[str]) -> list[str]:
        """``nodes`` plus all their dependencies, in topological order."""
        wanted = set(nodes)
        for node in list(wanted):
            wanted |= self.upstream(node)
        return [n for n in self.order if n in wanted]
