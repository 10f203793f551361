from __future__ import annotations

import pytest

from fsql.errors import DefinitionError, RequestError
from fsql.graph import Graph, Selection, parse_selector

DEPS = {
    "source:s.a": [],
    "model:m": ["source:s.a"],
    "view:v": ["model:m"],
    "view:w": ["source:s.a"],
    "training_set:t": ["model:m", "view:v", "view:w"],
}
TAGS = {"view:v": ["orders"], "view:w": [], "model:m": ["orders"]}


def graph() -> Graph:
    return Graph(DEPS, TAGS, {})


def test_topological_order_puts_dependencies_first() -> None:
    order = graph().order
    for node, deps in DEPS.items():
        for dep in deps:
            assert order.index(dep) < order.index(node)


@pytest.mark.parametrize(("selectors", "expected"), [
    (["v"], {"view:v"}),
    (["+v"], {"view:v", "model:m", "source:s.a"}),
    (["m+"], {"model:m", "view:v", "training_set:t"}),
    (["tag:orders"], {"view:v", "model:m"}),
    (["view:w"], {"view:w"}),
    (["v", "w"], {"view:v", "view:w"}),
    (["v w"], {"view:v", "view:w"}),
    (["tag:orders,view:v"], {"view:v"}),
    (["tag:orders,+w"], set()),
    (["1+v"], {"view:v", "model:m"}),
    (["2+v"], {"view:v", "model:m", "source:s.a"}),
    (["s.a+1"], {"source:s.a", "model:m", "view:w"}),
    (["2+t+1"], {"training_set:t", "model:m", "view:v", "view:w", "source:s.a"}),
])
def test_select(selectors: list[str], expected: set[str]) -> None:
    assert graph().select(selectors) == expected


def test_no_selector_selects_everything() -> None:
    assert graph().select([]) == set(DEPS)


def test_with_upstream_is_ordered_and_complete() -> None:
    nodes = graph().with_upstream({"training_set:t"})
    assert set(nodes) == set(DEPS)
    assert nodes[-1] == "training_set:t"


def test_selector_matching_nothing_is_an_error() -> None:
    with pytest.raises(RequestError, match="matches nothing"):
        graph().select(["nope"])


def test_bad_selector_method() -> None:
    with pytest.raises(RequestError, match="unknown selector method"):
        parse_selector("colour:red")


def test_cycle_reports_the_path() -> None:
    with pytest.raises(DefinitionError, match="dependency cycle: .*model:a.*model:b"):
        Graph({"model:a": ["model:b"], "model:b": ["model:a"]}, {}, {"model:a": "models/a.sql"})


def test_exclude_and_state() -> None:
    g = graph()
    assert g.select(Selection(exclude=("tag:orders",))) == {"source:s.a", "view:w",
                                                          "training_set:t"}
    assert g.select(Selection(("m+",), ("t",))) == {"model:m", "view:v"}
    changed = frozenset({"view:w", "training_set:t"})
    assert g.select(Selection(("state:modified",), (), changed)) == set(changed)
    assert g.select(Selection(("state:modified,view:w",), (), changed)) == {"view:w"}
    with pytest.raises(RequestError, match="run fsql build first"):
        g.select(Selection(("state:modified",)))


@pytest.mark.parametrize(("text", "message"), [
    ("mm", "did you mean 'm'"), ("tag:order", "did you mean 'tag:orders'"),
    ("view:ww", "did you mean 'view:w'"),
])
def test_did_you_mean(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        graph().select([text])


def test_no_suggestion_from_a_shared_prefix_alone() -> None:
    # 'tag:nope' and 'tag:orders' share 'tag:': the bare names are compared
    with pytest.raises(RequestError) as raised:
        graph().select(["tag:nope"])
    assert "did you mean" not in str(raised.value)


@pytest.mark.parametrize("text", ["+", "state:new", "colour:red", ","])
def test_bad_selectors(text: str) -> None:
    with pytest.raises(RequestError):
        graph().select([text])
