"""The dependency graph of a project and dbt-style node selection.

Node ids are ``kind:name`` with kind in ``source``, ``model``, ``view``, ``training_set``.
Selectors are parsed first (``parse_selector``) and applied second (``Graph.select``):

    name          the model, feature view or training set called ``name``
    +name         it and everything upstream        name+    it and everything downstream
    2+name        it and two levels upstream        name+1   it and its direct children
    tag:x         every node tagged ``x``           kind:x   e.g. ``view:customer_orders``
    state:modified  nodes whose definition hash differs from the target's last build
    tag:a,tag:b   nodes matching both (comma = intersection; several selectors = union)

A ``Selection`` is what one command asks for: ``--select`` (union of its selectors, all nodes
when empty) minus ``--exclude``. Building a node always builds what it depends on as well
(see ``Graph.with_upstream``), so a selected training set never joins against a stale view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from fsql.errors import DefinitionError, RequestError, did_you_mean

KINDS = ("source", "model", "view", "training_set")
METHODS = ("name", "tag", "state", *KINDS)
#: ``[N+]core[+N]``: optional upstream / downstream markers with an optional depth
_SELECTOR = re.compile(r"^(?:(\d*)\+)?(.+?)(?:\+(\d*))?$")


@dataclass(frozen=True, slots=True)
class Selector:
    """One parsed selector. ``upstream`` / ``downstream`` is the depth to walk: 0 for none,
    ``None`` for all the way."""

    method: str  # "name" | "tag" | "state" | one of KINDS
    value: str
    upstream: int | None = 0
    downstream: int | None = 0


@dataclass(frozen=True, slots=True)
class Selection:
    """What a command selects: the union of ``select`` (everything when empty), each a
    space-separated list of comma-joined intersections, minus the nodes ``exclude`` matches.

    ``modified`` is the set of node ids ``state:modified`` matches (``None``: the target was
    never built, so the method cannot be used).
    """

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    modified: frozenset[str] | None = None


#: what selecting functions accept: a ``Selection`` or plain ``--select`` specs
Selectors = Selection | Iterable[str]


def parse_selector(text: str) -> Selector:
    """Parse ``[N+]method:value[+N]`` or ``[N+]name[+N]``."""
    raw = text.strip()
    match = _SELECTOR.match(raw)
    core = match.group(2).strip("+") if match else ""
    if match is None or not core:
        raise RequestError(f"empty selector '{text}'")
    up, down = match.group(1), match.group(3)
    method, _, value = core.partition(":")
    if not value:
        method, value = "name", core
    if method not in METHODS:
        hint = did_you_mean(method, METHODS, lambda m: f"{m}:{value}").rstrip()
        raise RequestError(
            f"unknown selector method '{method}' in '{text}'" + (f"; {hint}" if hint else ".")
            + f" Use a name, tag:x, state:modified or {', '.join(k + ':x' for k in KINDS)}")
    if method == "state" and value != "modified":
        raise RequestError(f"unknown state selector '{text}'; the one state method is "
                           "state:modified")
    return Selector(method, value, _depth(up), _depth(down))


def _depth(marker: str | None) -> int | None:
    """``None`` (no ``+``) -> 0; ``""`` (a bare ``+``) -> unlimited; ``"2"`` -> 2."""
    if marker is None:
        return 0
    return int(marker) if marker else None


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

    def upstream(self, node: str, depth: int | None = None) -> set[str]:
        return self._walk(node, self.deps, depth)

    def downstream(self, node: str, depth: int | None = None) -> set[str]:
        return self._walk(node, self.children, depth)

    @staticmethod
    def _walk(node: str, edges: Mapping[str, Iterable[str]], depth: int | None) -> set[str]:
        """Nodes reachable from ``node`` along ``edges`` within ``depth`` steps (all: None)."""
        seen: set[str] = set()
        frontier, level = {node}, 0
        while frontier and (depth is None or level < depth):
            frontier = {n for f in frontier for n in edges.get(f, ())} - seen
            seen |= frontier
            level += 1
        return seen

    def matches(self, sel: Selector, modified: frozenset[str] | None = None) -> set[str]:
        if sel.method == "state":
            if modified is None:
                raise RequestError("state:modified compares with the target's last build, and "
                                   "there is none yet: run fsql build first")
            return set(modified) & set(self.deps)
        if sel.method == "tag":
            return {n for n, tags in self.tags.items() if sel.value in tags}
        if sel.method == "name":
            return {n for n in self.deps if n.split(":", 1)[1] == sel.value}
        return {n for n in self.deps if n == f"{sel.method}:{sel.value}"}

    def _expand(self, text: str, modified: frozenset[str] | None) -> set[str]:
        """The nodes of one selector with its ``+`` expansions."""
        sel = parse_selector(text)
        hits = self.matches(sel, modified)
        if not hits and sel.method != "state":
            raise RequestError(f"selector '{text}' matches nothing in the project"
                               + self._suggestion(sel))
        chosen = set(hits)
        for node in hits:
            if sel.upstream != 0:
                chosen |= self.upstream(node, sel.upstream)
            if sel.downstream != 0:
                chosen |= self.downstream(node, sel.downstream)
        return chosen

    def _suggestion(self, sel: Selector) -> str:
        if sel.method == "tag":
            known, prefix = {t for tags in self.tags.values() for t in tags}, "tag:"
        elif sel.method == "name":
            known, prefix = {n.split(":", 1)[1] for n in self.deps}, ""
        else:
            prefix = sel.method + ":"
            known = {n.removeprefix(prefix) for n in self.deps if n.startswith(prefix)}
        hint = did_you_mean(sel.value, sorted(known), lambda k: prefix + k).rstrip()
        return f"; {hint}" if hint else ""

    def _union(self, specs: Iterable[str], modified: frozenset[str] | None) -> set[str]:
        """Space-separated (or repeated) specs are a union; comma-joined parts intersect."""
        chosen: set[str] = set()
        for spec in specs:
            for term in spec.split():
                parts = [self._expand(p, modified) for p in term.split(",") if p]
                if not parts:
                    raise RequestError(f"empty selector '{term}'")
                chosen |= set.intersection(*parts)
        return chosen

    def select(self, selection: Selectors) -> set[str]:
        """Nodes chosen by ``selection`` (a ``Selection`` or a list of ``--select`` specs)."""
        if not isinstance(selection, Selection):
            selection = Selection(tuple(selection))
        specs = [s for s in selection.select if s.strip()]
        chosen = self._union(specs, selection.modified) if specs else set(self.deps)
        return chosen - self._union(selection.exclude, selection.modified)

    def with_upstream(self, nodes: Iterable[str]) -> list[str]:
        """``nodes`` plus all their dependencies, in topological order."""
        wanted = set(nodes)
        for node in list(wanted):
            wanted |= self.upstream(node)
        return [n for n in self.order if n in wanted]
