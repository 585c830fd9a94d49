import pytest

from accord import errors
from accord.engine.graph import Graph


def test_topological_order_respects_every_edge() -> None:
    graph = Graph.compile([("c", ["b"]), ("a", []), ("b", ["a"]), ("d", ["a", "c"])])
    position = {graph.ids[i]: n for n, i in enumerate(graph.order)}
    assert position["a"] < position["b"] < position["c"] < position["d"]


def test_unknown_dependency_is_named() -> None:
    with pytest.raises(errors.GraphError, match=r"'b' depends on unknown id 'zz'"):
        Graph.compile([("a", []), ("b", ["zz"])])


def test_cycle_is_reported_as_a_path() -> None:
    with pytest.raises(errors.GraphError, match="dependency cycle") as info:
        Graph.compile([("ok", []), ("a", ["c"]), ("b", ["a"]), ("c", ["b"])])
    loop = str(info.value).split(": ", 1)[1].split(" → ")
    assert loop[0] == loop[-1] and set(loop) == {"a", "b", "c"}


def test_duplicate_dependencies_count_once() -> None:
    graph = Graph.compile([("a", []), ("b", ["a", "a"])])
    assert graph.preds[1] == (0,) and graph.succs[0] == (1,)


def test_reversed_swaps_edges() -> None:
    graph = Graph.compile([("a", []), ("b", ["a"])]).reversed()
    assert graph.preds == ((1,), ()) and [graph.ids[i] for i in graph.order] == ["b", "a"]
